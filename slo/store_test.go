package slo

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// Series created by concurrent appenders while queries read the postings
// they are added to: under the race detector this fails if the TSDB's
// appends are not serialised (prometheus/prometheus#15317), and without it
// no query may return a series twice.
func TestConcurrentSeriesCreationAndQueries(t *testing.T) {
	db, err := OpenTSDB(t.TempDir(), TSDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	const writers, perWriter = 4, 300
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	done := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				app := db.Appender(ctx)
				l := labels.FromStrings("__name__", "m", "shared", "x", "w", fmt.Sprint(w), "i", fmt.Sprint(i))
				if _, err := app.Append(0, l, 1000, float64(i)); err != nil {
					errs <- err
					return
				}
				if err := app.Commit(); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	var qwg sync.WaitGroup
	qwg.Add(1)
	go func() {
		defer qwg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			q, err := db.Querier(0, 2000)
			if err != nil {
				errs <- err
				return
			}
			ss := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "shared", "x"), labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
			seen := map[string]bool{}
			for ss.Next() {
				l := ss.At().Labels().String()
				if seen[l] {
					errs <- fmt.Errorf("series %s returned twice by one query", l)
					_ = q.Close()
					return
				}
				seen[l] = true
			}
			err = ss.Err()
			_ = q.Close()
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(done)
	qwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	q, err := db.Querier(0, 2000)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "shared", "x"))
	n := 0
	for ss.Next() {
		n++
	}
	if n != writers*perWriter {
		t.Fatalf("%d series, want %d", n, writers*perWriter)
	}
}

package slo

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// TestScraperSetTargets: targets added while the scraper runs are scraped
// with their labels, removed ones stop being scraped.
func TestScraperSetTargets(t *testing.T) {
	serve := func(hits *atomic.Int64) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			fmt.Fprintln(w, "# TYPE g gauge\ng 1")
		}))
	}
	var hitsA, hitsB atomic.Int64
	a, b := serve(&hitsA), serve(&hitsB)
	defer a.Close()
	defer b.Close()
	db, err := OpenTSDB(t.TempDir(), TSDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sc, err := NewScraper(db, ScrapeConfig{Targets: []Target{{URL: a.URL}}, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("a scrape of A", func() bool { return hitsA.Load() > 0 })
	if err := sc.SetTargets([]Target{{URL: a.URL}, {URL: a.URL}}); err == nil {
		t.Fatal("SetTargets accepted a URL listed twice")
	}
	if err := sc.SetTargets([]Target{{URL: b.URL, Labels: map[string]string{"cell": "z"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor("series of B with its label", func() bool {
		q, err := db.Querier(0, time.Now().UnixMilli()+1)
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "g"), labels.MustNewMatcher(labels.MatchEqual, "cell", "z"))
		return ss.Next()
	})
	// A stops: after one more scrape at most, its hits stay put.
	before := hitsA.Load()
	waitFor("B to be scraped several more times", func() bool { return hitsB.Load() > 10 })
	if after := hitsA.Load(); after > before+1 {
		t.Fatalf("A was scraped %d more times after it was removed", after-before)
	}
	if ths := sc.Targets(); len(ths) != 1 || ths[0].URL != b.URL {
		t.Fatalf("Targets() = %+v, want only B", ths)
	}
}

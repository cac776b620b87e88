package slo

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// The default health rules share subexpressions, and evaluating each once
// per cycle changes no rule's result: two engines over the same synthetic
// fleet (storage histograms with slow brokers, probes failing towards one
// broker), one sharing and one evaluating the rules as written, raise the
// same signals with the same values at every cycle.
func TestSharedSubexpressionsChangeNoResult(t *testing.T) {
	defaults := Defaults()
	for _, spec := range []*Spec{defaults, FastDefaults()} {
		db := openTestDB(t)
		a := db.Appender(context.Background())
		app := appFunc(func(l labels.Labels, ts int64, v float64) error { _, err := a.Append(0, l, ts, v); return err })
		writeProbeFleet(t, app, []probeFailure{{"a", "2", "l1"}, {"a", "2", "l2"}})
		// Storage, scraped every 5 s (the fast rules' ranges are 10 s):
		// the bucket each broker's fsyncs and canary writes fall in;
		// broker a/2 is slow from 2m on, every broker of cell b is slow
		// (slow, not degraded relative to its cell).
		bounds := []float64{0.001, 0.01, 0.1, 1}
		cum := map[string][]float64{}
		for i := 0; i <= 6*12; i++ {
			ms := int64(i) * 5000
			for _, cell := range []string{"a", "b"} {
				for _, b := range []string{"0", "1", "2"} {
					k := cell + b
					if cum[k] == nil {
						cum[k] = make([]float64, len(bounds)+1)
					}
					if i > 0 {
						switch {
						case cell == "b", cell == "a" && b == "2" && ms > 2*60_000:
							cum[k][3] += 10
						default:
							cum[k][0] += 10
						}
					}
					for _, m := range []string{"vigil_storage_fsync_seconds", "vigil_storage_canary_seconds"} {
						writeHistF(t, app, m, labels.FromStrings("cluster", "c1", "cell", cell, "broker", b), bounds, cum[k], ms)
					}
				}
			}
		}
		if err := a.Commit(); err != nil {
			t.Fatal(err)
		}
		clock := &fakeClock{}
		engine := func(noSharing bool) *Engine {
			e, err := New(Config{Spec: spec, Raw: &LocalQuerier{Engine: NewPromQLEngine(nil), Store: db}, Store: openTestDB(t), Now: clock.Now, NoSharing: noSharing})
			if err != nil {
				t.Fatal(err)
			}
			return e
		}
		shared, plain := engine(false), engine(true)
		sq, ok := shared.base.(*LocalQuerier)
		if !ok {
			t.Fatal("the engine does not share subexpressions")
		}
		n := len(sq.Store.(*sharedQueryable).exprs)
		// The canary p99, the fsync p99, the probe failure ratio per
		// location (and what the fast rules share likewise).
		if n < 3 {
			t.Fatalf("%d shared subexpressions: %q", n, sq.Store.(*sharedQueryable).exprs)
		}
		fired := map[string]bool{}
		for at := 15 * time.Second; at <= 6*time.Minute; at += 15 * time.Second {
			clock.t = time.UnixMilli(0).Add(at)
			for _, e := range []*Engine{shared, plain} {
				if err := e.Cycle(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			got, want := signalValues(shared), signalValues(plain)
			if got != want {
				t.Fatalf("at %s:\nshared: %s\nplain:  %s", at, got, want)
			}
			for _, s := range shared.Signals() {
				fired[s.Name] = true
			}
		}
		want := []string{"storage_degraded", "storage_slow"}
		if spec == defaults {
			// The probe series are scraped every 15 s: too rarely for
			// the fast rules' 10 s ranges.
			want = append(want, "unreachable", "probe_failing")
		}
		for _, name := range want {
			if !fired[name] {
				t.Errorf("no %s signal: the fleet does not exercise every shared subexpression", name)
			}
		}
	}
}

func signalValues(e *Engine) string {
	var out []string
	for _, s := range e.Signals() {
		out = append(out, fmt.Sprintf("%s=%v since %s", s.ID, s.Evidence[0].Value, s.Since.Format(time.TimeOnly)))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// factorShared finds what occurs twice, the largest first, and never
// reaches into subqueries.
func TestFactorShared(t *testing.T) {
	sh, err := factorShared([]string{
		`sum by (a) (rate(x[1m])) > 1`,
		`(sum by (a) (rate(x[1m]))) / 2 > 3`,
		`max_over_time(sum by (a) (rate(x[1m]))[5m:1m]) > 1`,
		`rate(y[1m]) * 2 > 0 and rate(y[1m]) * 2 < 9`,
		`up == 0`,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`sum by (a) (rate(x[1m]))`, `rate(y[1m]) * 2`}
	if strings.Join(sh.exprs, "|") != strings.Join(want, "|") {
		t.Fatalf("shared %q, want %q", sh.exprs, want)
	}
	sel := func(j int) string { return sharedSelector(j).String() }
	for i, w := range []string{
		sel(0) + " > 1",
		"(" + sel(0) + ") / 2 > 3",
		`max_over_time(sum by (a) (rate(x[1m]))[5m:1m]) > 1`,
		sel(1) + " > 0 and " + sel(1) + " < 9",
		`up == 0`,
	} {
		if sh.rewritten[i] != w {
			t.Errorf("rewritten %d: %s\nwant %s", i, sh.rewritten[i], w)
		}
	}
	// Selecting a shared subexpression outside a cycle is an error, not a
	// silently empty result.
	db := openTestDB(t)
	q := &LocalQuerier{Engine: NewPromQLEngine(nil), Store: &sharedQueryable{Queryable: db, exprs: sh.exprs}}
	if _, err := q.Instant(context.Background(), sh.rewritten[0], time.UnixMilli(1000)); err == nil || !strings.Contains(err.Error(), "no shared subexpression") {
		t.Fatalf("outside a cycle: %v", err)
	}
	// A shared comparison keeps its series' metric name, as written.
	a := db.Appender(context.Background())
	for i, v := range []float64{2, 0, 5} {
		if _, err := a.Append(0, labels.FromStrings("__name__", "x", "a", fmt.Sprint(i)), 1000, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	sh, err = factorShared([]string{`x > 1`, `x > 1 unless x > 4`})
	if err != nil || len(sh.exprs) != 1 {
		t.Fatalf("%v %q", err, sh.exprs)
	}
	plain := &LocalQuerier{Engine: NewPromQLEngine(nil), Store: db}
	q.Store = &sharedQueryable{Queryable: db, exprs: sh.exprs}
	ctx := withMemo(context.Background(), newMemo(q))
	for i, expr := range []string{`x > 1`, `x > 1 unless x > 4`} {
		want, err := plain.Instant(ctx, expr, time.UnixMilli(1000))
		if err != nil {
			t.Fatal(err)
		}
		got, err := q.Instant(ctx, sh.rewritten[i], time.UnixMilli(1000))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || len(want) == 0 || want[0].Labels.Get("__name__") != "x" {
			t.Errorf("%s: shared %v, as written %v", expr, got, want)
		}
	}
}

// A slow subscriber loses its oldest updates, never the newest; the
// publisher never blocks; cancel closes the channel.
func TestFanoutKeepsTheNewest(t *testing.T) {
	var f Fanout
	ch, cancel := f.Subscribe(2)
	other, cancelOther := f.Subscribe(0)
	defer cancelOther()
	for i := 1; i <= 5; i++ {
		f.Publish(Update{At: time.UnixMilli(int64(i))})
	}
	if a, b := (<-ch).At.UnixMilli(), (<-ch).At.UnixMilli(); a != 4 || b != 5 {
		t.Fatalf("buffer of 2 kept updates %d and %d, want 4 and 5", a, b)
	}
	if u := <-other; u.At.UnixMilli() != 5 {
		t.Fatalf("buffer of 1 kept update %d, want 5", u.At.UnixMilli())
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("the channel is open after cancel")
	}
	f.Publish(Update{}) // to the remaining subscriber only
	cancel()            // twice is harmless
}

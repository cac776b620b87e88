package slo

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

func TestFastDefaults(t *testing.T) {
	fast := FastDefaults()
	base := Defaults()
	if len(fast.SLOs) != len(base.SLOs) || len(fast.HealthRules) != len(base.HealthRules) {
		t.Fatalf("fast defaults: %d SLOs, %d rules; the defaults have %d and %d (every fast rule replaces one)",
			len(fast.SLOs), len(fast.HealthRules), len(base.SLOs), len(base.HealthRules))
	}
	for _, r := range fast.HealthRules {
		if r.Name == "storage-canary-slow-vs-cell" && r.For.D() != 3*time.Second {
			t.Errorf("%s: for %v, want the fast rule's 3s", r.Name, r.For.D())
		}
	}
	if _, err := Merge(fast); err != nil {
		t.Fatal(err)
	}
}

// TestFastRulesFireWithinTheBar: scraped every second and evaluated every
// second, the fast rules raise storage_degraded (disk canary of broker 2
// at 300 ms while its peers take 1 ms), storage_stuck and unreachable
// (probe Metadata requests from the only location failing) within
// seconds of the fault, and name only broker 2. The times are of the fake
// clock, so they are exact.
func TestFastRulesFireWithinTheBar(t *testing.T) {
	db := openTestDB(t)
	bounds := []float64{0.001, 0.01, 0.1, 0.5, 1}
	a := db.Appender(context.Background())
	app := appFunc(func(l labels.Labels, ts int64, v float64) error { _, err := a.Append(0, l, ts, v); return err })
	const faultAt = 60 * time.Second
	canary := map[string][]float64{}
	attempts, failures := map[string]float64{}, map[string]float64{}
	for s := 0; s <= 120; s++ {
		at := time.Duration(s) * time.Second
		ms := at.Milliseconds()
		for _, b := range []string{"1", "2", "3"} {
			sick := b == "2" && at > faultAt
			c := canary[b]
			if c == nil {
				c = make([]float64, len(bounds)+1)
				canary[b] = c
			}
			// One canary a second; broker 2's take 300 ms once sick.
			if sick {
				c[3]++
			} else {
				c[0]++
			}
			bl := labels.FromStrings("cluster", "dev", "cell", "a", "broker", b)
			writeHistF(t, app, "vigil_storage_canary_seconds", bl, bounds, c, ms)
			stuck := 0.0
			if sick {
				stuck = 3
			}
			if err := app(labels.NewBuilder(bl).Set("__name__", "vigil_storage_stuck_operations").Labels(), ms, stuck); err != nil {
				t.Fatal(err)
			}
			// Probe Metadata requests: one a second, or one failing
			// every 2s (the probe's timeout) once sick.
			if !sick || s%2 == 0 {
				attempts[b]++
			}
			if sick && s%2 == 0 {
				failures[b]++
			}
			pl := labels.FromStrings("cluster", "x", "cell", "a", "broker", b, "location", "dev", "op", "metadata")
			if err := app(labels.NewBuilder(pl).Set("__name__", "vigil_probe_attempts_total").Labels(), ms, attempts[b]); err != nil {
				t.Fatal(err)
			}
			if err := app(labels.NewBuilder(pl).Set("__name__", "vigil_probe_failures_total").Labels(), ms, failures[b]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	spec := &Spec{}
	for _, r := range FastDefaults().HealthRules {
		switch r.Name {
		case "storage-canary-slow-vs-cell", "storage-stuck", "unreachable-from-locations":
			spec.HealthRules = append(spec.HealthRules, r)
		}
	}
	clock := &fakeClock{}
	e, err := New(Config{Spec: spec, Raw: &LocalQuerier{Engine: NewPromQLEngine(nil), Store: db}, Store: db, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]time.Duration{}
	for at := time.Second; at <= 2*time.Minute; at += time.Second {
		clock.t = time.UnixMilli(0).Add(at)
		if err := e.Cycle(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, s := range e.Signals() {
			if s.Labels["broker"] != "2" {
				t.Fatalf("at %v: signal %s names broker %s; only broker 2 is sick", at, s.ID, s.Labels["broker"])
			}
			if _, ok := first[s.Name]; !ok {
				first[s.Name] = at - faultAt
			}
		}
	}
	for name, bar := range map[string]time.Duration{"storage_degraded": 10 * time.Second, "storage_stuck": 10 * time.Second, "unreachable": 10 * time.Second} {
		d, ok := first[name]
		if !ok {
			t.Errorf("%s never fired", name)
			continue
		}
		if d <= 0 || d > bar {
			t.Errorf("%s fired %v after the fault, want within (0, %v]", name, d, bar)
		}
		t.Logf("%s fired %s after the fault", name, strconv.FormatFloat(d.Seconds(), 'f', 0, 64)+"s")
	}
}

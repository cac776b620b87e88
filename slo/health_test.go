package slo

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

func TestHealthRuleSignalsWithEvidence(t *testing.T) {
	db := openTestDB(t)
	bounds := []float64{0.001, 0.01, 0.1, 1}
	a := db.Appender(context.Background())
	app := appFunc(func(l labels.Labels, ts int64, v float64) error { _, err := a.Append(0, l, ts, v); return err })
	// Three brokers of cell a; fsyncs take under 1 ms, except broker 2's
	// from 2m on, which take 0.1-1 s.
	cum := map[string][]float64{}
	for i := 0; i <= 5*4; i++ {
		ms := int64(i) * scrape.Milliseconds()
		for _, b := range []string{"1", "2", "3"} {
			c := cum[b]
			if c == nil {
				c = make([]float64, len(bounds)+1)
				cum[b] = c
			}
			if i > 0 {
				if b == "2" && ms > 2*60_000 {
					c[3] += 10
				} else {
					c[0] += 10
				}
			}
			writeHistF(t, app, "vigil_storage_fsync_seconds", labels.FromStrings("cluster", "c1", "cell", "a", "broker", b), bounds, c, ms)
		}
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	spec := &Spec{}
	for _, r := range Defaults().HealthRules {
		if r.Name == "storage-slow-vs-cell" {
			spec.HealthRules = append(spec.HealthRules, r)
		}
	}
	clock := &fakeClock{}
	e, err := New(Config{Spec: spec, Raw: &LocalQuerier{Engine: NewPromQLEngine(nil), Store: db}, Store: db, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	updates, cancel := e.Subscribe(100)
	defer cancel()
	var firstFiring time.Duration
	for at := 15 * time.Second; at <= 5*time.Minute; at += 15 * time.Second {
		clock.t = time.UnixMilli(0).Add(at)
		if err := e.Cycle(context.Background()); err != nil {
			t.Fatal(err)
		}
		if sigs := e.Signals(); len(sigs) > 0 && firstFiring == 0 {
			firstFiring = at
			s := sigs[0]
			if len(sigs) != 1 || s.Name != "storage_degraded" || s.Labels["broker"] != "2" || s.Labels["cell"] != "a" {
				t.Fatalf("signals %+v", sigs)
			}
			// The rule's series appears with the first slow scrape in
			// the 1m rate (2m15s: more than 1% of the fsyncs are slow,
			// so the p99 is in the 0.1-1 s bucket); it fires a minute
			// later.
			if !s.Since.Equal(time.UnixMilli(0).Add(2*time.Minute+15*time.Second)) || len(s.Evidence) != 1 ||
				s.Evidence[0].Labels["broker"] != "2" || !(s.Evidence[0].Value > 0.1) || s.Evidence[0].Expr == "" {
				t.Errorf("signal %+v", s)
			}
		}
	}
	if firstFiring != 3*time.Minute+15*time.Second {
		t.Errorf("first fired at %v, want 3m15s", firstFiring)
	}
	var started int
	for len(updates) > 0 {
		u := <-updates
		started += len(u.Started)
	}
	if started != 1 {
		t.Errorf("%d signals started in the updates, want 1", started)
	}
}

// appFunc appends one sample.
type appFunc func(l labels.Labels, t int64, v float64) error

// writeHistF appends a classic histogram with the cumulative bucket
// counts of counts (the last is +Inf).
func writeHistF(t *testing.T, app appFunc, name string, base labels.Labels, bounds []float64, counts []float64, ms int64) {
	t.Helper()
	var cum float64
	for i := 0; i <= len(bounds); i++ {
		cum += counts[i]
		le := "+Inf"
		if i < len(bounds) {
			le = strconv.FormatFloat(bounds[i], 'g', -1, 64)
		}
		if err := app(labels.NewBuilder(base).Set("__name__", name+"_bucket").Set("le", le).Labels(), ms, cum); err != nil {
			t.Fatal(err)
		}
	}
	if err := app(labels.NewBuilder(base).Set("__name__", name+"_count").Labels(), ms, cum); err != nil {
		t.Fatal(err)
	}
}

// Kora's roll-up: per broker-minute p99, the worst broker per cluster
// minute, the p99 of a cluster's minutes over the period, and the fleet's
// median, p90 and p99 of those.
func TestKoraLatencyRollup(t *testing.T) {
	db := openTestDB(t)
	bounds := []float64{0.01, 0.1, 1}
	a := db.Appender(context.Background())
	app := appFunc(func(l labels.Labels, ts int64, v float64) error { _, err := a.Append(0, l, ts, v); return err })
	cum := map[string][]float64{}
	for i := 0; i <= 10*4; i++ {
		ms := int64(i) * scrape.Milliseconds()
		for _, cb := range [][2]string{{"c1", "1"}, {"c1", "2"}, {"c2", "1"}, {"c2", "2"}} {
			k := cb[0] + "/" + cb[1]
			c := cum[k]
			if c == nil {
				c = make([]float64, len(bounds)+1)
				cum[k] = c
			}
			if i > 0 {
				// c1's broker 2 is slow (0.1-1 s) in the increments
				// of 3:00-4:45 plus 5:00; the others 0.01-0.1 s.
				if k == "c1/2" && ms > 2*60_000+45_000 && ms <= 5*60_000 {
					c[2] += 10
				} else {
					c[1] += 10
				}
			}
			writeHistF(t, app, "vigil_probe_produce_seconds", labels.FromStrings("cluster", cb[0], "cell", "a", "broker", cb[1]), bounds, c, ms)
		}
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	spec, err := Parse("r.yaml", []byte(`
latency_rollups:
  - name: produce
    metric: vigil_probe_produce_seconds
    period: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	e, err := New(Config{Spec: spec, Raw: &LocalQuerier{Engine: NewPromQLEngine(nil), Store: db}, Store: db, Now: clock.Now, RollupEvery: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	for m := 1; m <= 10; m++ {
		clock.t = time.UnixMilli(0).Add(time.Duration(m)*time.Minute + 5*time.Second)
		if err := e.Cycle(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	rs := e.Rollups()
	if len(rs) != 1 {
		t.Fatalf("roll-ups %+v", rs)
	}
	r := rs[0]
	// A minute's p99 within bucket (0.01, 0.1] is 0.01 + 0.99*0.09; in
	// (0.1, 1], 0.1 + 0.99*0.9. c1's minutes 3, 4 and 5 are slow (their
	// 1m rates see only slow increments), 7 are fast: the p99 of 10
	// minutes (rank 8.91 of 0..9) is slow. c2 is fast throughout.
	fast, slow := 0.01+0.99*0.09, 0.1+0.99*0.9
	if len(r.Clusters) != 2 || r.Clusters[0].Cluster != "c1" || !near(float64(r.Clusters[0].Value), slow) || r.Clusters[0].Minutes != 10 ||
		r.Clusters[1].Cluster != "c2" || !near(float64(r.Clusters[1].Value), fast) {
		t.Fatalf("clusters %+v", r.Clusters)
	}
	if r.Fleet.Clusters != 2 || !near(float64(r.Fleet.P50), (fast+slow)/2) || !near(float64(r.Fleet.P90), fast+0.9*(slow-fast)) ||
		!near(float64(r.Fleet.P99), fast+0.99*(slow-fast)) {
		t.Errorf("fleet %+v", r.Fleet)
	}
}

// The relative storage rules compute the broker's p99 twice: filtered by
// the absolute floor, then compared with 5× the cell median. They return
// what the form that computes it three times returns (p99 > 5× median and
// p99 > floor): a broker slow against its cell, one under the floor
// (cell b), a cell all slow (c), and in cell d a slow broker next to one
// without fsyncs: broker 2 of cells a and d.
func TestRelativeStorageRulesMatchTheirLongForm(t *testing.T) {
	db := openTestDB(t)
	bounds := []float64{0.001, 0.01, 0.1, 1}
	a := db.Appender(context.Background())
	app := appFunc(func(l labels.Labels, ts int64, v float64) error { _, err := a.Append(0, l, ts, v); return err })
	// The bucket each broker's fsyncs fall in (-1: none).
	bucket := map[string][]int{"a": {0, 0, 3}, "b": {0, 0, 1}, "c": {3, 3, 3}, "d": {0, -1, 3}}
	cum := map[string][]float64{}
	for s := 0; s <= 60; s++ {
		for cell, bs := range bucket {
			for i, k := range bs {
				key := cell + strconv.Itoa(i)
				if cum[key] == nil {
					cum[key] = make([]float64, len(bounds)+1)
				}
				if s > 0 && k >= 0 {
					cum[key][k] += 10
				}
				for _, m := range []string{"vigil_storage_fsync_seconds", "vigil_storage_canary_seconds"} {
					writeHistF(t, app, m, labels.FromStrings("cluster", "c1", "cell", cell, "broker", strconv.Itoa(i)), bounds, cum[key], int64(s)*1000)
				}
			}
		}
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	q := &LocalQuerier{Engine: NewPromQLEngine(nil), Store: db}
	at := time.UnixMilli(60_000)
	eval := func(expr string) map[string]float64 {
		t.Helper()
		ss, err := q.Instant(context.Background(), expr, at)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, s := range ss {
			out[s.Labels.String()] = s.Points[0].V
		}
		return out
	}
	for _, set := range []struct {
		spec        *Spec
		rng, floor  string
		wantBrokers int
	}{{Defaults(), "1m", "0.01", 2}, {FastDefaults(), "10s", "0.05", 2}} {
		checked := 0
		for _, r := range set.spec.HealthRules {
			m := map[string]string{"storage-slow-vs-cell": "fsync", "storage-canary-slow-vs-cell": "canary"}[r.Name]
			if m == "" {
				continue
			}
			p99 := "histogram_quantile(0.99, sum by (cluster, cell, broker, le) (rate(vigil_storage_" + m + "_seconds_bucket[" + set.rng + "])))"
			long := p99 + " > on (cluster, cell) group_left () 5 * quantile by (cluster, cell) (0.5, " + p99 + ") and " + p99 + " > " + set.floor
			got, want := eval(r.Expr), eval(long)
			if len(want) != set.wantBrokers || len(got) != len(want) {
				t.Fatalf("%s [%s]: %v, long form %v", r.Name, set.rng, got, want)
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s [%s]: %s = %v, long form %v", r.Name, set.rng, k, got[k], v)
				}
			}
			checked++
		}
		if checked != 2 {
			t.Errorf("[%s]: %d relative storage rules, want 2", set.rng, checked)
		}
	}
}

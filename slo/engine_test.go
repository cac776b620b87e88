package slo

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// The synthetic fleet of these tests: one cluster, cells a and b, a
// scrape every 15 s from t=0 (the epoch) to 60 min, two counters per cell:
//
//	req_total{cluster="c1",cell=X}      +10 per scrape (40 per 1 m step)
//	req_good_total{cluster="c1",cell=X} +10 per scrape, except in cell a
//	                                     from 30:15 to 40:00 where +5
//
// Cell b's counters reset at 20:00 (the process restarted just after
// 19:45: they read 10 at 20:00) and cell b is not scraped from 45:15 to
// 49:45.
//
// PromQL's rate over (t-1m, t] sees 4 samples (t-45s ... t); the increase
// over those 45 s extrapolated to the 60 s range is exact for these
// linear counters, so every step of 1 m counts 40 events; a step whose
// three increments (t-30s, t-15s, t) fall in cell a's bad period counts
// 20 good of 40: steps 31m..40m. A reset is corrected by PromQL (the
// counter restarted from 0: no event lost). Cell b's gap loses steps
// 46m..50m (no samples, then a single one at 50:00).
const scrape = 15 * time.Second

func writeFleet(t *testing.T, db *TSDB) {
	t.Helper()
	app := db.Appender(context.Background())
	var va, vb, ga, gb float64 = 1000, 1000, 1000, 1000
	for ts := time.Duration(0); ts <= 60*time.Minute; ts += scrape {
		if ts > 0 {
			va += 10
			vb += 10
			if ts > 30*time.Minute && ts <= 40*time.Minute {
				ga += 5
			} else {
				ga += 10
			}
			gb += 10
			if ts == 20*time.Minute {
				vb, gb = 10, 10
			}
		}
		ms := ts.Milliseconds()
		add := func(name, cell string, v float64) {
			if _, err := app.Append(0, labels.FromStrings("__name__", name, "cluster", "c1", "cell", cell, "job", "x"), ms, v); err != nil {
				t.Fatal(err)
			}
		}
		add("req_total", "a", va)
		add("req_good_total", "a", ga)
		if ts <= 45*time.Minute || ts >= 50*time.Minute {
			add("req_total", "b", vb)
			add("req_good_total", "b", gb)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

const testSpec = `
slos:
  - name: requests
    description: good requests per cell
    sli:
      ratio:
        good: rate(req_good_total[{{.window}}])
        total: rate(req_total[{{.window}}])
    objective: 90
    window: 1h
    group_by: [cluster, cell]
    alerting:
      page:
        - {long: 30m, short: 5m, budget_percent: 50}
      ticket:
        - {long: 1h, short: 30m, budget_percent: 100}
`

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func newTestEngine(t *testing.T, db *TSDB, spec string, clock *fakeClock) *Engine {
	t.Helper()
	s, err := Parse("test.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Spec: s, Raw: &LocalQuerier{Engine: NewPromQLEngine(nil), Store: db}, Store: db,
		Windows: []time.Duration{5 * time.Minute, 30 * time.Minute}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func openTestDB(t *testing.T) *TSDB {
	t.Helper()
	db, err := OpenTSDB(t.TempDir(), TSDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// cycleAt runs a cycle at minute m (plus 10 s: the step ending at m).
func cycleAt(t *testing.T, e *Engine, c *fakeClock, m int) {
	t.Helper()
	c.t = time.UnixMilli(0).Add(time.Duration(m)*time.Minute + 10*time.Second)
	if err := e.Cycle(context.Background()); err != nil {
		t.Fatalf("cycle at %dm: %v", m, err)
	}
}

func groupOf(t *testing.T, st *Status, cell string) GroupStatus {
	t.Helper()
	for _, g := range st.Groups {
		if g.Labels["cell"] == cell {
			return g
		}
	}
	t.Fatalf("no group for cell %s in %+v", cell, st.Groups)
	return GroupStatus{}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func checkWindow(t *testing.T, g GroupStatus, w time.Duration, good, total float64) {
	t.Helper()
	ws, ok := g.Window(w)
	if !ok {
		t.Fatalf("%v: no %s window", g.Labels, w)
	}
	if !near(ws.Good, good) || !near(ws.Total, total) {
		t.Errorf("%v %s: good %v total %v, want %v and %v", g.Labels, w, ws.Good, ws.Total, good, total)
	}
	wantErr := 1 - good/total
	if !near(float64(ws.ErrorRatio), wantErr) || !near(float64(ws.BurnRate), wantErr/0.1) {
		t.Errorf("%v %s: error ratio %v burn %v, want %v and %v", g.Labels, w, ws.ErrorRatio, ws.BurnRate, wantErr, wantErr/0.1)
	}
}

func TestBudgetsAndBurnRates(t *testing.T) {
	db := openTestDB(t)
	writeFleet(t, db)
	clock := &fakeClock{}
	e := newTestEngine(t, db, testSpec, clock)
	states := map[int]string{}
	for m := 1; m <= 60; m++ {
		cycleAt(t, e, clock, m)
		st, _ := e.Status("requests")
		states[m] = groupOf(t, st, "a").State
		if m == 40 {
			a := groupOf(t, st, "a")
			// 5m: steps 36..40, all bad. 30m: steps 11..40, 10 bad. 1h:
			// the 40 steps recorded so far.
			checkWindow(t, a, 5*time.Minute, 100, 200)
			checkWindow(t, a, 30*time.Minute, 1000, 1200)
			checkWindow(t, a, time.Hour, 1400, 1600)
			if a.State != statePage || !a.Since.Equal(time.UnixMilli(0).Add(37*time.Minute)) {
				t.Errorf("cell a at 40m: state %s since %v, want page since 37m", a.State, a.Since.UTC())
			}
			// Page (30m burn 1.67 and 5m burn 5, over 1) and ticket (1h
			// burn 1.25 and 30m 1.67, over 1) both fire.
			if len(a.Burning) != 2 {
				t.Errorf("cell a at 40m burning %+v, want page and ticket", a.Burning)
			}
			sigs := e.Signals()
			if len(sigs) != 1 || sigs[0].Name != "slo_burning" || sigs[0].Labels["cell"] != "a" || sigs[0].Severity != "page" {
				t.Fatalf("signals at 40m: %+v", sigs)
			}
		}
	}
	// Cell a pages from 37m (30m burn first over 1 with 7 bad steps)
	// to 43m (at 44m the 5m window has one bad step: burn 1, not over);
	// then the ticket still fires until 49m: the 1h window holds the 10
	// bad steps of 49 (burn 200/1960/0.1 = 1.02), at 50m 200/2000 = 1.
	for m := 1; m <= 60; m++ {
		want := stateOK
		switch {
		case m >= 37 && m <= 43:
			want = statePage
		case m >= 44 && m <= 49:
			want = stateTicket
		}
		if states[m] != want {
			t.Errorf("cell a at %dm: %s, want %s", m, states[m], want)
		}
	}
	st, _ := e.Status("requests")
	a, b := groupOf(t, st, "a"), groupOf(t, st, "b")
	checkWindow(t, a, 5*time.Minute, 200, 200)
	checkWindow(t, a, 30*time.Minute, 1000, 1200)
	checkWindow(t, a, time.Hour, 2200, 2400)
	// Budget: 1h error ratio 1/12 of a 10% budget: 1/6 left.
	if !near(float64(a.BudgetRemaining), 1-(1.0/12)/0.1) || !near(float64(a.Attainment), 100*2200.0/2400) {
		t.Errorf("cell a: budget remaining %v attainment %v", a.BudgetRemaining, a.Attainment)
	}
	// Cell b: the reset loses nothing, the gap loses steps 46..50.
	checkWindow(t, b, 5*time.Minute, 200, 200)
	checkWindow(t, b, 30*time.Minute, 1000, 1000)
	checkWindow(t, b, time.Hour, 2200, 2200)
	// Roll-ups: cluster c1 and the fleet sum both cells.
	if len(st.Rollups) != 2 || st.Rollups[0].Level != "cluster" || st.Rollups[1].Level != "fleet" {
		t.Fatalf("rollups %+v", st.Rollups)
	}
	for _, r := range st.Rollups {
		checkWindow(t, r, time.Hour, 4400, 4600)
		if r.Groups != 2 {
			t.Errorf("%s roll-up of %d groups", r.Level, r.Groups)
		}
	}
	if len(st.Worst) != 2 || st.Worst[0].Labels["cell"] != "a" {
		t.Errorf("worst offenders %+v, want a first", st.Worst)
	}
	if len(e.Signals()) != 0 {
		t.Errorf("signals at 60m: %+v", e.Signals())
	}
}

// A restarted engine continues from the recorded counts, and one that
// missed cycles fills the steps it missed from the raw metrics: the
// answers are the same as those of an engine that never stopped.
func TestRestartAndCatchUp(t *testing.T) {
	db := openTestDB(t)
	writeFleet(t, db)
	clock := &fakeClock{}
	e := newTestEngine(t, db, testSpec, clock)
	for m := 1; m <= 25; m++ {
		cycleAt(t, e, clock, m)
	}
	// Down from 25m to 52m; a new engine starts at 52m and catches up in
	// one cycle (a range query over the 27 missed steps).
	e2 := newTestEngine(t, db, testSpec, clock)
	cycleAt(t, e2, clock, 52)
	for m := 53; m <= 60; m++ {
		cycleAt(t, e2, clock, m)
	}
	st, _ := e2.Status("requests")
	a, b := groupOf(t, st, "a"), groupOf(t, st, "b")
	checkWindow(t, a, 30*time.Minute, 1000, 1200)
	checkWindow(t, a, time.Hour, 2200, 2400)
	checkWindow(t, b, time.Hour, 2200, 2200)
}

func TestBadEventsAndLatencySLI(t *testing.T) {
	db := openTestDB(t)
	app := db.Appender(context.Background())
	// A histogram with buckets 0.1, 0.5, +Inf: per scrape 10 requests,
	// 6 under 0.1 s, 9 under 0.5 s.
	for i := 0; i <= 40; i++ {
		ms := int64(i) * scrape.Milliseconds()
		n := float64(i)
		for _, b := range []struct {
			le string
			v  float64
		}{{"0.1", 6 * n}, {"0.5", 9 * n}, {"+Inf", 10 * n}} {
			_, _ = app.Append(0, labels.FromStrings("__name__", "lat_seconds_bucket", "cell", "a", "le", b.le), ms, 100+b.v)
		}
		_, _ = app.Append(0, labels.FromStrings("__name__", "lat_seconds_count", "cell", "a"), ms, 100+10*n)
		_, _ = app.Append(0, labels.FromStrings("__name__", "errs_total", "cell", "a"), ms, 100+n)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	spec := `
slos:
  - name: latency
    sli: {latency: {metric: lat_seconds, threshold: 0.5}}
    objective: 95
    window: 5m
    group_by: [cell]
  - name: errors
    sli:
      ratio:
        bad: rate(errs_total[{{.window}}])
        total: rate(lat_seconds_count[{{.window}}])
    objective: 95
    window: 5m
    group_by: [cell]
`
	clock := &fakeClock{}
	e := newTestEngine(t, db, spec, clock)
	for m := 1; m <= 10; m++ {
		cycleAt(t, e, clock, m)
	}
	st, _ := e.Status("latency")
	// Steps 6..10, 40 requests each, 36 under 0.5 s.
	ws, _ := st.Groups[0].Window(5 * time.Minute)
	if !near(ws.Good, 180) || !near(ws.Total, 200) {
		t.Errorf("latency: %+v", ws)
	}
	st, _ = e.Status("errors")
	ws, _ = st.Groups[0].Window(5 * time.Minute)
	if !near(ws.Good, 180) || !near(ws.Total, 200) {
		t.Errorf("errors: %+v", ws)
	}
}

// newBackfillEngine returns an engine of testSpec at 60m that backfills
// an hour, maxSteps steps per cycle (0: the default).
func newBackfillEngine(t *testing.T, db *TSDB, maxSteps int) *Engine {
	t.Helper()
	s, err := Parse("test.yaml", []byte(testSpec))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.UnixMilli(0).Add(60*time.Minute + 10*time.Second)}
	e, err := New(Config{Spec: s, Raw: &LocalQuerier{Engine: NewPromQLEngine(nil), Store: db}, Store: db,
		Windows: []time.Duration{5 * time.Minute, 30 * time.Minute}, Now: clock.Now, Backfill: time.Hour, MaxStepsPerCycle: maxSteps})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// checkAt60m checks the windows of both cells at 60m against those of
// TestBudgetsAndBurnRates and returns the groups.
func checkAt60m(t *testing.T, e *Engine) (a, b GroupStatus) {
	t.Helper()
	st, _ := e.Status("requests")
	a, b = groupOf(t, st, "a"), groupOf(t, st, "b")
	checkWindow(t, a, 5*time.Minute, 200, 200)
	checkWindow(t, a, 30*time.Minute, 1000, 1200)
	checkWindow(t, a, time.Hour, 2200, 2400)
	checkWindow(t, b, time.Hour, 2200, 2200)
	return a, b
}

// A first run with Backfill records the past from the raw metrics, at
// most MaxStepsPerCycle steps per cycle, and ends with the answers of an
// engine that ran throughout (TestBudgetsAndBurnRates at 60m).
func TestBackfillSpreadOverCycles(t *testing.T) {
	db := openTestDB(t)
	writeFleet(t, db)
	e := newBackfillEngine(t, db, 25)
	// The backfill reaches one SLO window back, steps 1..60 (step 0 would
	// be out of the window): 1-25m, 26-50m, 51-60m, then nothing new.
	for i, want := range []time.Duration{25 * time.Minute, 50 * time.Minute, 60 * time.Minute, 60 * time.Minute} {
		if err := e.Cycle(context.Background()); err != nil {
			t.Fatal(err)
		}
		st, _ := e.Status("requests")
		if !st.At.Equal(time.UnixMilli(0).Add(want)) {
			t.Fatalf("cycle %d: status at %v, want %s", i+1, st.At.UTC(), want)
		}
	}
	a, b := checkAt60m(t, e)
	if a.State != stateOK || b.State != stateOK {
		t.Errorf("states at 60m: a %s, b %s, want ok", a.State, b.State)
	}
}

// A catch-up more than an hour behind the TSDB head goes through its
// out-of-order path; committed in batches of a few samples (appendBatch),
// it records every step and ends with the answers of an engine that ran
// throughout (TestBudgetsAndBurnRates at 60m).
func TestOutOfOrderCatchUpInBatches(t *testing.T) {
	defer func(n int) { appendBatch = n }(appendBatch)
	appendBatch = 3
	db := openTestDB(t)
	writeFleet(t, db)
	// Another target scraped up to 3h: the head's newest sample.
	app := db.Appender(context.Background())
	if _, err := app.Append(0, labels.FromStrings("__name__", "up", "job", "y"), (3 * time.Hour).Milliseconds(), 1); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	e := newBackfillEngine(t, db, 0)
	if err := e.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if db.Head().MinOOOTime() > time.Minute.Milliseconds() {
		t.Fatalf("the catch-up did not take the out-of-order path (first out-of-order sample at %d ms)", db.Head().MinOOOTime())
	}
	checkAt60m(t, e)
	// Every step of the cumulative counts is there: good and total per
	// group, steps 1..60.
	q, err := db.Querier(0, (3 * time.Hour).Milliseconds())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metricEvents))
	n := 0
	for ss.Next() {
		it := ss.At().Iterator(nil)
		k := 0
		for it.Next() != chunkenc.ValNone {
			k++
		}
		if k != 60 {
			t.Errorf("%s: %d samples, want 60", ss.At().Labels(), k)
		}
		n++
	}
	if err := ss.Err(); err != nil || n != 4 {
		t.Errorf("%d recorded events series (%v), want 4", n, err)
	}
}

// runRecording runs an engine of testSpec over the test fleet for minutes
// 1..minutes with the given recorded windows and step rates, and returns
// its TSDB.
func runRecording(t *testing.T, windows []time.Duration, stepRates bool, minutes int) *TSDB {
	t.Helper()
	db := openTestDB(t)
	writeFleet(t, db)
	s, err := Parse("test.yaml", []byte(testSpec))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	e, err := New(Config{Spec: s, Raw: &LocalQuerier{Engine: NewPromQLEngine(nil), Store: db}, Store: db, Now: clock.Now,
		Windows: []time.Duration{5 * time.Minute, 30 * time.Minute}, RecordWindows: windows, RecordStepRates: stepRates})
	if err != nil {
		t.Fatal(err)
	}
	for m := 1; m <= minutes; m++ {
		cycleAt(t, e, clock, m)
	}
	return db
}

// By default the engine records, per group, the cumulative good and total
// counts, the budget remaining and the 1h burn rate; RecordWindows and
// RecordStepRates add the other windows' burn rates and the step rates.
func TestRecordedSeries(t *testing.T) {
	for _, c := range []struct {
		windows []time.Duration
		steps   bool
		want    []string
	}{
		{nil, false, []string{`vigil_slo_budget_remaining`, `vigil_slo_burn_rate{window="1h"}`, `vigil_slo_events_total{event="good"}`, `vigil_slo_events_total{event="total"}`}},
		{[]time.Duration{5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour}, true, []string{`vigil_slo_budget_remaining`,
			`vigil_slo_burn_rate{window="1h"}`, `vigil_slo_burn_rate{window="30m"}`, `vigil_slo_burn_rate{window="5m"}`,
			`vigil_slo_events:rate{event="good"}`, `vigil_slo_events:rate{event="total"}`, `vigil_slo_events_total{event="good"}`, `vigil_slo_events_total{event="total"}`}},
	} {
		db := runRecording(t, c.windows, c.steps, 3)
		q, err := db.Querier(0, time.Hour.Milliseconds())
		if err != nil {
			t.Fatal(err)
		}
		ss := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "slo", "requests"),
			labels.MustNewMatcher(labels.MatchEqual, "cell", "a"))
		var got []string
		for ss.Next() {
			l := ss.At().Labels()
			name := l.Get(labels.MetricName)
			for _, x := range []string{"event", "window"} {
				if v := l.Get(x); v != "" {
					name += "{" + x + "=\"" + v + "\"}"
				}
			}
			got = append(got, name)
		}
		q.Close()
		if !slices.Equal(got, c.want) {
			t.Errorf("record windows %v, step rates %v: recorded %q, want %q", c.windows, c.steps, got, c.want)
		}
	}
}

// The burn rate of a window not recorded is two point lookups of the
// recorded counts (docs/slo.md, "How windows are computed"): the PromQL
// the docs give matches the recorded 30m burn rate at every minute.
func TestBurnRateFromCounts(t *testing.T) {
	db := runRecording(t, []time.Duration{30 * time.Minute}, false, 60)
	const fromCounts = `(1 - (vigil_slo_events_total{slo="requests",event="good"} - vigil_slo_events_total{slo="requests",event="good"} offset 30m)
	   / ignoring (event) (vigil_slo_events_total{slo="requests",event="total"} - vigil_slo_events_total{slo="requests",event="total"} offset 30m))
	  / (1 - 0.9)`
	q := &LocalQuerier{Engine: NewPromQLEngine(nil), Store: db}
	for m := 31; m <= 60; m++ {
		at := time.UnixMilli(0).Add(time.Duration(m) * time.Minute)
		got, err := q.Instant(context.Background(), fromCounts, at)
		if err != nil {
			t.Fatal(err)
		}
		want, err := q.Instant(context.Background(), `vigil_slo_burn_rate{slo="requests",window="30m"}`, at)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || len(want) != 2 {
			t.Fatalf("%dm: %d series from the counts, %d recorded", m, len(got), len(want))
		}
		for _, w := range want {
			found := false
			for _, g := range got {
				if g.Labels.Get("cell") == w.Labels.Get("cell") {
					found = true
					if !near(g.Points[0].V, w.Points[0].V) {
						t.Errorf("%dm cell %s: %v from the counts, %v recorded", m, w.Labels.Get("cell"), g.Points[0].V, w.Points[0].V)
					}
				}
			}
			if !found {
				t.Errorf("%dm: no cell %s from the counts", m, w.Labels.Get("cell"))
			}
		}
	}
}

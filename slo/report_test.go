package slo

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The cron schedule writes the JSON and Markdown reports of the engine's
// latest evaluation. The engine is evaluated on the synthetic fleet up to
// 40m (cell a pages, see TestBudgetsAndBurnRates) with a fake clock; the
// schedule is robfig/cron's "@every 1s" (the real scheduler, with a real
// timer: cron has no clock to inject, and a descriptor with seconds saves
// waiting for a minute), and the test polls the directory until both
// files are there, with a deadline.
func TestScheduledReportsWriteJSONAndMarkdown(t *testing.T) {
	db := openTestDB(t)
	writeFleet(t, db)
	clock := &fakeClock{}
	e := newTestEngine(t, db, testSpec, clock)
	for m := 1; m <= 40; m++ {
		cycleAt(t, e, clock, m)
	}
	// The clock stays at 40m10s from here on: the report is named and
	// dated after it.
	dir := filepath.Join(t.TempDir(), "reports") // created by ScheduleReports
	if _, err := e.ScheduleReports(context.Background(), "every minute", dir, nil); err == nil || !strings.Contains(err.Error(), `report schedule "every minute"`) {
		t.Errorf("a bad schedule: %v, want an error naming it", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, err := e.ScheduleReports(ctx, "@every 1s", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "slo-report-19700101T004010Z")
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, errJ := os.Stat(base + ".json")
		_, errM := os.Stat(base + ".md")
		if errJ == nil && errM == nil {
			break
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(dir)
			t.Fatalf("no report after 30s of an @every 1s schedule: %v %v; %s holds %v", errJ, errM, dir, entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The schedule stops with its context, after the report being
	// written (so the files are complete and the directory can go).
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the schedule did not stop 30s after its context ended")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if strings.HasSuffix(en.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", en.Name())
		}
	}

	// JSON: the engine's state at 40m, as hand-computed in
	// TestBudgetsAndBurnRates.
	b, err := os.ReadFile(base + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("JSON report does not decode: %v\n%s", err, b)
	}
	if !r.GeneratedAt.Equal(clock.t) || len(r.SLOs) != 1 || r.SLOs[0].Name != "requests" || !r.SLOs[0].At.Equal(time.UnixMilli(0).Add(40*time.Minute)) {
		t.Fatalf("JSON report: generated %v, SLOs %+v", r.GeneratedAt, r.SLOs)
	}
	a, bg := groupOf(t, r.SLOs[0], "a"), groupOf(t, r.SLOs[0], "b")
	checkWindow(t, a, time.Hour, 1400, 1600)
	checkWindow(t, bg, time.Hour, 1600, 1600)
	if a.State != statePage || !near(float64(a.BudgetRemaining), -0.25) || !near(float64(a.Attainment), 87.5) || bg.State != stateOK {
		t.Errorf("JSON report: cell a %s budget %v attainment %v, cell b %s; want page, -0.25, 87.5 and ok", a.State, a.BudgetRemaining, a.Attainment, bg.State)
	}
	if len(r.Signals) != 1 || r.Signals[0].Name != "slo_burning" || r.Signals[0].Labels["cell"] != "a" || len(r.Signals[0].Evidence) == 0 {
		t.Errorf("JSON report signals %+v, want slo_burning for cell a with evidence", r.Signals)
	}
	if r.LatencyRollups == nil {
		t.Error("JSON report: latency_rollups is null, want []")
	}

	// Markdown: title, the SLO's header and table (roll-ups, then the
	// worst offenders with attainment, budget, state and the 5m, 30m and
	// 1h burn rates), and the signal.
	b, err = os.ReadFile(base + ".md")
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"# SLO report, 1970-01-01T00:40:10Z\n",
		"## requests\n\ngood requests per cell\n\nObjective 90% over 1h, per cluster, cell; evaluated at 1970-01-01T00:40:00Z.\n",
		"| | attainment | budget left | state | burn 5m | burn 30m | burn 1h |\n",
		`| cluster {cluster="c1"} | 93.750% | 37.5% | ok | 2.5 | 0.833 | 0.625 |` + "\n",
		`| fleet {} | 93.750% | 37.5% | ok | 2.5 | 0.833 | 0.625 |` + "\n",
		`| worst {cell="a", cluster="c1"} | 87.500% | -25.0% | page | 5 | 1.67 | 1.25 |` + "\n",
		`| worst {cell="b", cluster="c1"} | 100.000% | 100.0% | ok | 0 | 0 | 0 |` + "\n",
		"## Signals\n\n- **slo_burning** {cell=\"a\", cluster=\"c1\", slo=\"requests\"} (requests, page) since 1970-01-01T00:37:00Z\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown report lacks %q:\n%s", want, md)
		}
	}
}

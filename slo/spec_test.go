package slo

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	s := Defaults()
	if len(s.SLOs) < 3 || len(s.HealthRules) < 3 || len(s.LatencyRollups) != 1 {
		t.Fatalf("defaults: %d SLOs, %d rules, %d roll-ups", len(s.SLOs), len(s.HealthRules), len(s.LatencyRollups))
	}
	for i := range s.SLOs {
		if _, err := compile(&s.SLOs[i], time.Minute, DefaultWindows); err != nil {
			t.Error(err)
		}
	}
}

// Each bad spec is reported at its file, line, column and field.
func TestValidationSaysWhereAndWhat(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		want       []string // substrings of the error, in order of the errors
	}{
		{"PromQL that does not parse", `
slos:
  - name: x
    sli:
      ratio:
        good: rate(a_total[{{.window}}]
        total: rate(b_total[{{.window}}])
    objective: 99
    window: 28d
`, []string{"f.yaml:6:15: slos[0].sli.ratio.good: PromQL does not parse"}},
		{"no window placeholder", `
slos:
  - name: x
    sli:
      ratio:
        good: rate(a_total[5m])
        total: rate(b_total[{{.window}}])
    objective: 99
    window: 28d
`, []string{"f.yaml:6:15: slos[0].sli.ratio.good: must contain {{.window}}"}},
		{"objective, window, group_by, names", `
slos:
  - name: Bad Name
    sli: {latency: {metric: lat_seconds_bucket, threshold: 0}}
    objective: 100
    group_by: [cell, cell, slo]
`, []string{
			"f.yaml:3:11: slos[0].name: \"Bad Name\"",
			"f.yaml:4:29: slos[0].sli.latency.metric: \"lat_seconds_bucket\": give the histogram's name without _bucket",
			"f.yaml:4:60: slos[0].sli.latency.threshold: must be > 0",
			"f.yaml:5:16: slos[0].objective: 100: must be a percentage",
			"f.yaml:3:5: slos[0].window: missing",
			"f.yaml:6:22: slos[0].group_by[1]: \"cell\" is listed twice",
			"f.yaml:6:28: slos[0].group_by[2]: \"slo\" is reserved",
		}},
		{"unknown field", `
slos:
  - name: x
    objective: 99
    windw: 28d
`, []string{"f.yaml:5: field windw not found"}},
		{"bad duration", `
health_rules:
  - name: r
    expr: up == 0
    for: 5 minutes
`, []string{"f.yaml:5: \"5 minutes\" is not a duration"}},
		{"health rule returning a range", `
health_rules:
  - name: r
    expr: up[5m]
    severity: urgent
`, []string{"f.yaml:4:11: health_rules[0].expr: PromQL returns a matrix", "f.yaml:5:15: health_rules[0].severity: \"urgent\""}},
		{"alerting", `
slos:
  - name: x
    sli: {latency: {metric: m_seconds, threshold: 1}}
    objective: 99
    window: 1d
    alerting:
      page: [{long: 5m, short: 1h, budget_percent: 2}, {long: 3d, short: 1h, budget_percent: 0}]
`, []string{"page[0].short: 1h must be shorter", "page[1].budget_percent: 0", "page[1].long: 3d is longer than the SLO's window"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.spec))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v, want a ValidationError", err)
			}
			msg := err.Error()
			at := 0
			for _, w := range tc.want {
				i := strings.Index(msg[at:], w)
				if i < 0 {
					t.Fatalf("error:\n%s\nwant (in order) %q", msg, w)
				}
				at += i + len(w)
			}
		})
	}
}

func TestLatencyThresholdMatchesRenderings(t *testing.T) {
	s := &SLO{Name: "x", SLI: SLI{Latency: &LatencySLI{Metric: "m_seconds", Threshold: 1, Selector: `{op="p"}`}}, Objective: 99, Window: Duration(time.Hour)}
	c, err := compile(s, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `sum by () (rate(m_seconds_bucket{le=~"1|1\\.0|1e\\+00", op="p"}[1m]))`
	if c.good != want {
		t.Errorf("good = %s\nwant   %s", c.good, want)
	}
}

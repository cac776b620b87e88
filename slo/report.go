package slo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Report is a snapshot of every SLO, roll-up and signal.
type Report struct {
	GeneratedAt    time.Time       `json:"generated_at"`
	SLOs           []*Status       `json:"slos"`
	LatencyRollups []*RollupStatus `json:"latency_rollups"`
	Signals        []Signal        `json:"signals"`
}

// Report returns the engine's latest state as a report.
func (e *Engine) Report() *Report {
	r := &Report{GeneratedAt: e.cfg.Now(), SLOs: e.Statuses(), LatencyRollups: e.Rollups(), Signals: e.Signals()}
	if r.SLOs == nil {
		r.SLOs = []*Status{}
	}
	if r.LatencyRollups == nil {
		r.LatencyRollups = []*RollupStatus{}
	}
	if r.Signals == nil {
		r.Signals = []Signal{}
	}
	return r
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func pct(f Float) string {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return "–"
	}
	return fmt.Sprintf("%.3f%%", float64(f))
}

func num(f Float) string {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return "–"
	}
	return fmt.Sprintf("%.3g", float64(f))
}

func budget(f Float) string {
	if math.IsNaN(float64(f)) {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(f))
}

// WriteMarkdown writes the report as Markdown: per SLO its roll-ups and
// worst offenders with budget and burn rates, then the latency roll-ups
// and the active signals.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# SLO report, %s\n\n", r.GeneratedAt.UTC().Format(time.RFC3339))
	for _, s := range r.SLOs {
		fmt.Fprintf(&b, "## %s\n\n", s.Name)
		if s.Description != "" {
			fmt.Fprintf(&b, "%s\n\n", s.Description)
		}
		fmt.Fprintf(&b, "Objective %g%% over %s, per %s; evaluated at %s.\n\n", s.Objective, s.Window, groupByText(s.GroupBy), s.At.UTC().Format(time.RFC3339))
		if s.Error != "" {
			fmt.Fprintf(&b, "**Error:** %s\n\n", s.Error)
		}
		if len(s.Groups) == 0 {
			b.WriteString("No data.\n\n")
			continue
		}
		rows := append(append([]GroupStatus{}, s.Rollups...), s.Worst...)
		var header []string
		for _, ws := range s.Groups[0].Windows {
			header = append(header, "burn "+ws.Window.String())
		}
		fmt.Fprintf(&b, "| | attainment | budget left | state | %s |\n|---|---|---|---|%s\n", strings.Join(header, " | "), strings.Repeat("---|", len(header)))
		for i, g := range rows {
			name := g.Level + " " + describeGroup(g.Labels)
			if i >= len(s.Rollups) {
				name = "worst " + describeGroup(g.Labels)
			}
			var burns []string
			for _, ws := range g.Windows {
				burns = append(burns, num(ws.BurnRate))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", name, pct(g.Attainment), budget(g.BudgetRemaining), g.State, strings.Join(burns, " | "))
		}
		b.WriteString("\n")
	}
	for _, lr := range r.LatencyRollups {
		fmt.Fprintf(&b, "## Latency roll-up %s\n\np%g of %s per broker-minute, worst broker per cluster-minute, p%g of the minutes over %s: fleet median %s s, p90 %s s, p99 %s s over %d clusters.\n\n",
			lr.Name, 100*lr.Quantile, lr.Metric, 100*lr.Quantile, lr.Period, num(lr.Fleet.P50), num(lr.Fleet.P90), num(lr.Fleet.P99), lr.Fleet.Clusters)
		if len(lr.Clusters) > 0 {
			b.WriteString("| cluster | value (s) | minutes |\n|---|---|---|\n")
			for i, c := range lr.Clusters {
				if i == 10 {
					break
				}
				fmt.Fprintf(&b, "| %s | %s | %d |\n", c.Cluster, num(c.Value), c.Minutes)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("## Signals\n\n")
	if len(r.Signals) == 0 {
		b.WriteString("None.\n")
	}
	for _, s := range r.Signals {
		fmt.Fprintf(&b, "- **%s** %s (%s, %s) since %s\n", s.Name, describeGroup(s.Labels), s.Rule, s.Severity, s.Since.UTC().Format(time.RFC3339))
		for _, ev := range s.Evidence {
			note := ""
			if ev.Note != "" {
				note = " — " + ev.Note
			}
			fmt.Fprintf(&b, "  - %s = %s %s%s\n", oneLine(ev.Expr), num(ev.Value), describeGroup(ev.Labels), note)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func groupByText(g []string) string {
	if len(g) == 0 {
		return "the whole fleet"
	}
	return strings.Join(g, ", ")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// ScheduleReports writes a JSON and a Markdown report into dir on the
// cron schedule spec (robfig/cron syntax, e.g. "@daily", "0 8 * * MON" or
// "@every 1h"), as slo-report-<time>.json and .md, until ctx ends. The
// returned channel is closed once ctx has ended and a report being
// written has been finished, so a caller can wait before it removes dir
// or closes what the engine reads.
func (e *Engine) ScheduleReports(ctx context.Context, spec, dir string, logger *slog.Logger) (done <-chan struct{}, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := cron.New()
	if _, err := c.AddFunc(spec, func() {
		if paths, err := e.WriteReportFiles(dir); err != nil {
			logger.Warn("SLO report", "err", err)
		} else {
			logger.Info("SLO report written", "files", strings.Join(paths, ","))
		}
	}); err != nil {
		return nil, fmt.Errorf("report schedule %q: %w", spec, err)
	}
	c.Start()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		<-c.Stop().Done()
	}()
	return stopped, nil
}

// WriteReportFiles writes the current report into dir as JSON and
// Markdown and returns their paths.
func (e *Engine) WriteReportFiles(dir string) ([]string, error) {
	r := e.Report()
	base := filepath.Join(dir, "slo-report-"+r.GeneratedAt.UTC().Format("20060102T150405Z"))
	var paths []string
	for _, f := range []struct {
		ext   string
		write func(io.Writer) error
	}{{".json", r.WriteJSON}, {".md", r.WriteMarkdown}} {
		tmp := base + f.ext + ".tmp"
		out, err := os.Create(tmp)
		if err != nil {
			return paths, err
		}
		err = f.write(out)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, base+f.ext)
		}
		if err != nil {
			os.Remove(tmp)
			return paths, err
		}
		paths = append(paths, base+f.ext)
	}
	return paths, nil
}

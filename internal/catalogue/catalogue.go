// Package catalogue is the list of every metric Vigil exposes: each
// package declares its metrics here (name, kind, labels, meaning) and builds
// its Prometheus descriptors and collectors from the declarations, so the
// catalogue in docs/metrics.md is generated from the same source the
// metrics come from. A test renders the catalogue and fails when the docs
// differ (run it with -update to rewrite them), when a metric is exposed
// without a declaration, or when a name breaks the naming rules.
//
// Naming rules (Prometheus conventions, after the architecture's
// vigil_<subsystem>_<name>_<unit>):
//
//   - every name starts with vigil_ and a known subsystem (Subsystems);
//   - counters end in _total;
//   - durations end in _seconds, sizes in _bytes (base units);
//   - a gauge that counts things ends in the plural of the thing
//     (_partitions, _brokers, _groups, _clients, _records, ...) rather than
//     a unit.
package catalogue

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Kind is a metric's type.
type Kind string

// Metric kinds.
const (
	Counter   Kind = "counter"
	Gauge     Kind = "gauge"
	Histogram Kind = "histogram"
	Summary   Kind = "summary"
)

// Subsystems are the known second words of metric names.
var Subsystems = []string{
	"broker", "request", "connection", "topic", "partition", "replica", "storage",
	"group", "coordinator", "controller", "client", "probe", "slo", "mitigator",
}

// Def declares one metric family.
type Def struct {
	Name   string
	Kind   Kind
	Help   string
	Labels []string
	// Scope says who exposes it: "broker" (labelled broker=<id>),
	// "controller" (labelled controller=<id>), "location" (a probe,
	// labelled location=<its vantage point>) or "mitigator" (the
	// mitigator of vigil dev or vigil observer; no scope label).
	Scope string
}

var (
	mu   sync.Mutex
	defs = map[string]*Def{}
)

// Declare records a metric family and returns its declaration. Declaring a
// name twice panics (two packages would fight over one name).
func Declare(scope, name string, kind Kind, help string, labels ...string) *Def {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := defs[name]; dup {
		panic("metric " + name + " declared twice")
	}
	d := &Def{Name: name, Kind: kind, Help: help, Labels: labels, Scope: scope}
	defs[name] = d
	return d
}

// Desc returns the Prometheus descriptor of a counter or gauge family.
func (d *Def) Desc() *prometheus.Desc { return prometheus.NewDesc(d.Name, d.Help, d.Labels, nil) }

// All returns every declaration, by name.
func All() []*Def {
	mu.Lock()
	defer mu.Unlock()
	out := make([]*Def, 0, len(defs))
	for _, d := range defs {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the declaration of name, or nil.
func Lookup(name string) *Def {
	mu.Lock()
	defer mu.Unlock()
	return defs[name]
}

// CheckName reports what is wrong with a declaration's name, or nil.
func CheckName(d *Def) error {
	rest, ok := strings.CutPrefix(d.Name, "vigil_")
	if !ok {
		return fmt.Errorf("%s: must start with vigil_", d.Name)
	}
	known := false
	for _, s := range Subsystems {
		if strings.HasPrefix(rest, s+"_") {
			known = true
		}
	}
	switch {
	case !known:
		return fmt.Errorf("%s: the word after vigil_ must be a subsystem (%s)", d.Name, strings.Join(Subsystems, ", "))
	case d.Kind == Counter && !strings.HasSuffix(d.Name, "_total"):
		return fmt.Errorf("%s: a counter's name ends in _total", d.Name)
	case d.Kind != Counter && strings.HasSuffix(d.Name, "_total"):
		return fmt.Errorf("%s: only counters end in _total", d.Name)
	case strings.Contains(d.Name, "_ms") || strings.Contains(d.Name, "_millis") || strings.Contains(d.Name, "_kb") || strings.Contains(d.Name, "_mb"):
		return fmt.Errorf("%s: use base units (_seconds, _bytes)", d.Name)
	case d.Name != strings.ToLower(d.Name):
		return fmt.Errorf("%s: lower case only", d.Name)
	}
	return nil
}

// Render returns the catalogue as a Markdown table.
func Render() string { return RenderDefs(All()) }

// Native histogram resolution shared by every histogram Vigil exposes
// with native buckets: a bucket factor of 1.1 (about 5% relative error)
// and at most 100 buckets.
const (
	NativeHistogramBucketFactor    = 1.1
	NativeHistogramMaxBucketNumber = 100
)

// Buckets are a histogram's buckets: the classic ones, always exposed, and
// whether it has native (sparse) buckets as well. Native buckets cost ~50
// ns more per observation (a sparse-bucket lookup), which matters only for
// histograms observed on every request.
type Buckets struct {
	Classic []float64
	Native  bool
}

func (d *Def) histogramOpts(b Buckets) prometheus.HistogramOpts {
	o := prometheus.HistogramOpts{Name: d.Name, Help: d.Help, Buckets: b.Classic}
	if b.Native {
		o.NativeHistogramBucketFactor = NativeHistogramBucketFactor
		o.NativeHistogramMaxBucketNumber = NativeHistogramMaxBucketNumber
	}
	return o
}

// HistogramVec builds a histogram family from a declaration.
func (d *Def) HistogramVec(b Buckets) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(d.histogramOpts(b), d.Labels)
}

// Histogram builds the histogram of a declaration without labels.
func (d *Def) Histogram(b Buckets) prometheus.Histogram {
	return prometheus.NewHistogram(d.histogramOpts(b))
}

// Counter builds the counter of a declaration without labels.
func (d *Def) Counter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: d.Name, Help: d.Help})
}

// CounterVec builds a counter family from a declaration.
func (d *Def) CounterVec() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: d.Name, Help: d.Help}, d.Labels)
}

// GaugeVec builds a gauge family from a declaration.
func (d *Def) GaugeVec() *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: d.Name, Help: d.Help}, d.Labels)
}

// InScope returns the declarations of one scope, by name.
func InScope(scope string) []*Def {
	var out []*Def
	for _, d := range All() {
		if d.Scope == scope {
			out = append(out, d)
		}
	}
	return out
}

// RenderDefs returns defs as a Markdown table, like Render.
func RenderDefs(defs []*Def) string {
	var b strings.Builder
	b.WriteString("| metric | type | labels | meaning |\n|---|---|---|---|\n")
	for _, d := range defs {
		labels := append([]string{d.Scope}, d.Labels...)
		for i, l := range labels {
			labels[i] = "`" + l + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", d.Name, d.Kind, strings.Join(labels, ", "), strings.ReplaceAll(d.Help, "|", "\\|"))
	}
	return b.String()
}

// ReplaceSection returns doc with the text between the lines begin and end
// (each including its newline) replaced by body, or an error when the
// markers are missing.
func ReplaceSection(doc, begin, end, body string) (string, error) {
	i := strings.Index(doc, begin)
	if i < 0 {
		return "", fmt.Errorf("no marker %q", begin)
	}
	j := strings.Index(doc[i:], end)
	if j < 0 {
		return "", fmt.Errorf("no marker %q after %q", end, begin)
	}
	j += i
	return doc[:i] + begin + body + end + doc[j+len(end):], nil
}

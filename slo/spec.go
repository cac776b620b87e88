package slo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// WindowPlaceholder is replaced, in the expressions of a ratio SLI, by the
// range the engine evaluates them over (its recording step, e.g. "1m"), as
// in Sloth's specs.
const WindowPlaceholder = "{{.window}}"

// Spec is one spec file: SLOs, health rules and latency roll-ups.
type Spec struct {
	// SLOs are service level objectives judged over a rolling window.
	SLOs []SLO `yaml:"slos,omitempty" json:"slos,omitempty"`
	// HealthRules are conditions that are not objectives (a broker much
	// slower than its peers, probe failures towards one broker): each
	// series an expression returns for long enough is a signal.
	HealthRules []HealthRule `yaml:"health_rules,omitempty" json:"health_rules,omitempty"`
	// LatencyRollups are Kora-style fleet latency roll-ups.
	LatencyRollups []LatencyRollup `yaml:"latency_rollups,omitempty" json:"latency_rollups,omitempty"`
}

// SLO is one service level objective.
type SLO struct {
	// Name identifies the SLO: lower case letters, digits, '-' and '_'.
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// SLI says which events are good: a ratio of two event rates or the
	// share of a histogram under a threshold.
	SLI SLI `yaml:"sli" json:"sli"`
	// Objective is the target share of good events in percent, e.g. 99.9.
	Objective float64 `yaml:"objective" json:"objective"`
	// Window is the rolling window the objective is judged over, e.g. 28d.
	Window Duration `yaml:"window" json:"window"`
	// GroupBy lists the labels the SLO is judged per (cluster, cell,
	// broker, tenant ...): one status, budget and alert state per
	// combination of their values. Empty: one status for everything.
	GroupBy []string `yaml:"group_by,omitempty" json:"group_by,omitempty"`
	// Breakdown lists labels (such as broker) by which a burning group's
	// bad events are broken down in its signal's evidence, so a cell's
	// burning SLO names the broker behind it.
	Breakdown []string `yaml:"breakdown,omitempty" json:"breakdown,omitempty"`
	// Alerting sets the multiwindow multi-burn-rate alerts.
	Alerting Alerting `yaml:"alerting,omitempty" json:"alerting"`
	// Labels are attached to the SLO's signals and recorded series.
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// SLI is either a ratio or a latency indicator; exactly one is set.
type SLI struct {
	Ratio   *RatioSLI   `yaml:"ratio,omitempty" json:"ratio,omitempty"`
	Latency *LatencySLI `yaml:"latency,omitempty" json:"latency,omitempty"`
}

// RatioSLI is the share of good events among all events. Good (or Bad)
// and Total are PromQL expressions of event rates containing
// {{.window}} where their range goes, e.g.
// rate(vigil_probe_produce_attempts_total[{{.window}}]). The engine sums
// them by the SLO's group_by labels itself.
type RatioSLI struct {
	Good  string `yaml:"good,omitempty" json:"good,omitempty"`
	Bad   string `yaml:"bad,omitempty" json:"bad,omitempty"`
	Total string `yaml:"total" json:"total"`
}

// LatencySLI is the share of events of a (classic) histogram at or
// under a threshold: good = the histogram's bucket with le=Threshold,
// total = its _count.
type LatencySLI struct {
	// Metric is the histogram's name without _bucket/_count.
	Metric string `yaml:"metric" json:"metric"`
	// Selector holds extra label matchers, e.g. {result="success"}.
	Selector string `yaml:"selector,omitempty" json:"selector,omitempty"`
	// Threshold in the histogram's unit (seconds); it must be one of the
	// histogram's bucket bounds.
	Threshold float64 `yaml:"threshold" json:"threshold"`
}

// Alerting sets the multiwindow multi-burn-rate alerts of the Google SRE
// workbook: a page (or ticket) fires when both the long and the short
// window burn faster than the rate that spends BudgetPercent of the
// budget in the long window.
type Alerting struct {
	// Page and Ticket default to the workbook's: page 2% in 1h (short
	// 5m) or 5% in 6h (short 30m); ticket 10% in 1d (short 2h) or 10% in
	// 3d (short 6h).
	Page   []BurnRule `yaml:"page,omitempty" json:"page,omitempty"`
	Ticket []BurnRule `yaml:"ticket,omitempty" json:"ticket,omitempty"`
	// Disabled turns the alerts (and the SLO's signals) off.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
}

// BurnRule is one multiwindow condition.
type BurnRule struct {
	Long          Duration `yaml:"long" json:"long"`
	Short         Duration `yaml:"short" json:"short"`
	BudgetPercent float64  `yaml:"budget_percent" json:"budget_percent"`
}

// Factor is the burn rate that spends BudgetPercent of the budget of a
// window of length window in r.Long.
func (r BurnRule) Factor(window time.Duration) float64 {
	return r.BudgetPercent / 100 * float64(window) / float64(r.Long)
}

// DefaultPage and DefaultTicket are the SRE workbook's rules.
var (
	DefaultPage = []BurnRule{
		{Long: Duration(time.Hour), Short: Duration(5 * time.Minute), BudgetPercent: 2},
		{Long: Duration(6 * time.Hour), Short: Duration(30 * time.Minute), BudgetPercent: 5},
	}
	DefaultTicket = []BurnRule{
		{Long: Duration(24 * time.Hour), Short: Duration(2 * time.Hour), BudgetPercent: 10},
		{Long: Duration(72 * time.Hour), Short: Duration(6 * time.Hour), BudgetPercent: 10},
	}
)

// HealthRule is a condition per broker (or any group) that is not an
// objective. Each series Expr returns, continuously for For, is a firing
// signal named Signal whose evidence is the series and its value.
type HealthRule struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Signal names the signal it raises (storage_degraded, unreachable,
	// ...); default: the rule's name.
	Signal string `yaml:"signal,omitempty" json:"signal,omitempty"`
	// Expr is an instant PromQL expression; every series it returns is an
	// offender (use comparisons to filter).
	Expr string `yaml:"expr" json:"expr"`
	// For is how long a series must keep being returned before it fires.
	For Duration `yaml:"for,omitempty" json:"for,omitempty"`
	// Severity is passed on with the signal (page, ticket, info).
	Severity string            `yaml:"severity,omitempty" json:"severity,omitempty"`
	Labels   map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// LatencyRollup is Kora's fleet latency roll-up: the Quantile of a latency
// histogram per entity (broker) and minute, the worst entity as its
// cluster's value for that minute, the Quantile of those minute values
// over Period (a week) per cluster, and the median, p90 and p99 of the
// clusters' values across the fleet.
type LatencyRollup struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Metric is the histogram's name without _bucket.
	Metric   string `yaml:"metric" json:"metric"`
	Selector string `yaml:"selector,omitempty" json:"selector,omitempty"`
	// Quantile of the histogram per entity-minute and of the minutes over
	// the period; default 0.99.
	Quantile float64 `yaml:"quantile,omitempty" json:"quantile,omitempty"`
	// Entity and Cluster are label names; defaults broker and cluster.
	Entity  string `yaml:"entity,omitempty" json:"entity,omitempty"`
	Cluster string `yaml:"cluster,omitempty" json:"cluster,omitempty"`
	// Period is the span of minutes per cluster value; default 7d.
	Period Duration `yaml:"period,omitempty" json:"period,omitempty"`
}

// Duration is a time.Duration written the Prometheus way: 5m, 1h, 28d, 1w.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := model.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (like 30s, 5m, 1h, 28d): %w", n.Line, s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText implements encoding.TextMarshaler (JSON).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (JSON).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := model.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

func (d Duration) String() string { return model.Duration(d).String() }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// FieldError is one problem in a spec file: where and what.
type FieldError struct {
	File   string
	Line   int
	Column int
	Field  string // path such as slos[1].sli.ratio.good
	Msg    string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ValidationError lists every problem found in a spec file.
type ValidationError struct{ Errs []*FieldError }

func (e *ValidationError) Error() string {
	s := make([]string, len(e.Errs))
	for i, fe := range e.Errs {
		s[i] = fe.Error()
	}
	return strings.Join(s, "\n")
}

// LoadFile reads and validates a spec file.
func LoadFile(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, b)
}

// Parse decodes and validates a spec; name is used in error messages.
// Unknown fields are errors. Every problem found is reported, each with
// its file, line, column and field.
func Parse(name string, data []byte) (*Spec, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &ValidationError{Errs: []*FieldError{yamlError(name, err)}}
	}
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			ve := &ValidationError{}
			for _, m := range te.Errors {
				ve.Errs = append(ve.Errs, yamlLineError(name, m))
			}
			return nil, ve
		}
		return nil, &ValidationError{Errs: []*FieldError{yamlError(name, err)}}
	}
	v := &validator{file: name, root: docRoot(&root)}
	v.spec(&s)
	if len(v.errs) > 0 {
		return nil, &ValidationError{Errs: v.errs}
	}
	return &s, nil
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func yamlLineError(file, msg string) *FieldError {
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FieldError{File: file, Line: line, Msg: m[2]}
	}
	return &FieldError{File: file, Msg: msg}
}

func yamlError(file string, err error) *FieldError { return yamlLineError(file, err.Error()) }

func docRoot(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return n.Content[0]
	}
	return n
}

// validator checks a decoded spec, finding positions in the YAML tree.
type validator struct {
	file string
	root *yaml.Node
	errs []*FieldError
}

// at finds the node for a path of map keys (string) and sequence indexes
// (int): the value node if present, else the deepest node found.
func (v *validator) at(path ...any) *yaml.Node {
	n := v.root
	for _, p := range path {
		if n == nil {
			return nil
		}
		switch p := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return n
			}
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					next = n.Content[i+1]
				}
			}
			if next == nil {
				return n
			}
			n = next
		case int:
			if n.Kind != yaml.SequenceNode || p >= len(n.Content) {
				return n
			}
			n = n.Content[p]
		}
	}
	return n
}

func fieldName(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(p)
		case int:
			fmt.Fprintf(&b, "[%d]", p)
		}
	}
	return b.String()
}

func (v *validator) errorf(path []any, format string, args ...any) {
	fe := &FieldError{File: v.file, Field: fieldName(path), Msg: fmt.Sprintf(format, args...)}
	if n := v.at(path...); n != nil {
		fe.Line, fe.Column = n.Line, n.Column
	}
	v.errs = append(v.errs, fe)
}

func p(base []any, more ...any) []any { return append(slices.Clone(base), more...) }

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// reservedLabels are labels the engine sets on what it records.
var reservedLabels = []string{"__name__", "slo", "event", "window", "rule", "signal"}

func (v *validator) spec(s *Spec) {
	seen := map[string]bool{}
	for i := range s.SLOs {
		v.slo(&s.SLOs[i], []any{"slos", i}, seen)
	}
	seen = map[string]bool{}
	for i := range s.HealthRules {
		v.health(&s.HealthRules[i], []any{"health_rules", i}, seen)
	}
	seen = map[string]bool{}
	for i := range s.LatencyRollups {
		v.rollup(&s.LatencyRollups[i], []any{"latency_rollups", i}, seen)
	}
}

func (v *validator) name(name string, path []any, seen map[string]bool) {
	switch {
	case name == "":
		v.errorf(p(path, "name"), "missing: every entry needs a name")
	case !nameRE.MatchString(name):
		v.errorf(p(path, "name"), "%q: use lower case letters, digits, '-' and '_'", name)
	case seen[name]:
		v.errorf(p(path, "name"), "%q is used twice", name)
	}
	seen[name] = true
}

func (v *validator) slo(s *SLO, path []any, seen map[string]bool) {
	v.name(s.Name, path, seen)
	switch {
	case s.SLI.Ratio == nil && s.SLI.Latency == nil:
		v.errorf(p(path, "sli"), "missing: set sli.ratio (good or bad, and total) or sli.latency (metric and threshold)")
	case s.SLI.Ratio != nil && s.SLI.Latency != nil:
		v.errorf(p(path, "sli"), "set either ratio or latency, not both")
	case s.SLI.Ratio != nil:
		r := s.SLI.Ratio
		rp := p(path, "sli", "ratio")
		switch {
		case r.Good == "" && r.Bad == "":
			v.errorf(rp, "missing good or bad: the expression of good (or bad) events")
		case r.Good != "" && r.Bad != "":
			v.errorf(p(rp, "bad"), "set good or bad, not both")
		}
		if r.Total == "" {
			v.errorf(p(rp, "total"), "missing: the expression of all events")
		}
		for _, f := range []struct {
			key, expr string
		}{{"good", r.Good}, {"bad", r.Bad}, {"total", r.Total}} {
			if f.expr == "" {
				continue
			}
			if !strings.Contains(f.expr, WindowPlaceholder) {
				v.errorf(p(rp, f.key), "must contain %s where the rate's range goes, e.g. rate(x_total[%s]): the engine evaluates it per recording step", WindowPlaceholder, WindowPlaceholder)
				continue
			}
			v.promql(p(rp, f.key), strings.ReplaceAll(f.expr, WindowPlaceholder, "1m"), true)
		}
	case s.SLI.Latency != nil:
		l := s.SLI.Latency
		lp := p(path, "sli", "latency")
		v.metricName(p(lp, "metric"), l.Metric)
		v.selector(p(lp, "selector"), l.Selector)
		if !(l.Threshold > 0) {
			v.errorf(p(lp, "threshold"), "must be > 0 (a bucket bound of the histogram, in its unit)")
		}
	}
	if !(s.Objective > 0 && s.Objective < 100) {
		v.errorf(p(path, "objective"), "%v: must be a percentage between 0 and 100 (exclusive), e.g. 99.9", s.Objective)
	}
	if s.Window <= 0 {
		v.errorf(p(path, "window"), "missing: the rolling window, e.g. 28d")
	}
	for j, l := range s.GroupBy {
		switch {
		case !model.LabelName(l).IsValidLegacy():
			v.errorf(p(path, "group_by", j), "%q is not a label name", l)
		case slices.Contains(reservedLabels, l):
			v.errorf(p(path, "group_by", j), "%q is reserved for the engine's own labels", l)
		case slices.Index(s.GroupBy, l) != j:
			v.errorf(p(path, "group_by", j), "%q is listed twice", l)
		}
	}
	for j, l := range s.Breakdown {
		if !model.LabelName(l).IsValidLegacy() {
			v.errorf(p(path, "breakdown", j), "%q is not a label name", l)
		} else if slices.Contains(s.GroupBy, l) {
			v.errorf(p(path, "breakdown", j), "%q is already in group_by", l)
		}
	}
	v.labels(p(path, "labels"), s.Labels)
	for _, kind := range []string{"page", "ticket"} {
		rules := s.Alerting.Page
		if kind == "ticket" {
			rules = s.Alerting.Ticket
		}
		for j, r := range rules {
			rp := p(path, "alerting", kind, j)
			if r.Long <= 0 || r.Short <= 0 {
				v.errorf(rp, "long and short windows are required, e.g. {long: 1h, short: 5m, budget_percent: 2}")
			} else if r.Short >= r.Long {
				v.errorf(p(rp, "short"), "%s must be shorter than long (%s)", r.Short, r.Long)
			}
			if !(r.BudgetPercent > 0 && r.BudgetPercent <= 100) {
				v.errorf(p(rp, "budget_percent"), "%v: must be in (0, 100]", r.BudgetPercent)
			}
			if s.Window > 0 && r.Long > s.Window {
				v.errorf(p(rp, "long"), "%s is longer than the SLO's window %s", r.Long, s.Window)
			}
		}
	}
}

func (v *validator) health(h *HealthRule, path []any, seen map[string]bool) {
	v.name(h.Name, path, seen)
	if h.Signal != "" && !nameRE.MatchString(h.Signal) {
		v.errorf(p(path, "signal"), "%q: use lower case letters, digits, '-' and '_'", h.Signal)
	}
	if h.Expr == "" {
		v.errorf(p(path, "expr"), "missing: the PromQL whose series are the offenders")
	} else {
		v.promql(p(path, "expr"), h.Expr, true)
	}
	if h.For < 0 {
		v.errorf(p(path, "for"), "must not be negative")
	}
	switch h.Severity {
	case "", "page", "ticket", "info":
	default:
		v.errorf(p(path, "severity"), "%q: want page, ticket or info", h.Severity)
	}
	v.labels(p(path, "labels"), h.Labels)
}

func (v *validator) rollup(r *LatencyRollup, path []any, seen map[string]bool) {
	v.name(r.Name, path, seen)
	v.metricName(p(path, "metric"), r.Metric)
	v.selector(p(path, "selector"), r.Selector)
	if r.Quantile != 0 && !(r.Quantile > 0 && r.Quantile < 1) {
		v.errorf(p(path, "quantile"), "%v: must be in (0, 1), e.g. 0.99", r.Quantile)
	}
	for _, f := range []struct{ key, val string }{{"entity", r.Entity}, {"cluster", r.Cluster}} {
		if f.val != "" && !model.LabelName(f.val).IsValidLegacy() {
			v.errorf(p(path, f.key), "%q is not a label name", f.val)
		}
	}
	if r.Period < 0 || (r.Period > 0 && r.Period.D() < time.Hour) {
		v.errorf(p(path, "period"), "%s: must be at least 1h (Kora uses a week)", r.Period)
	}
}

func (v *validator) metricName(path []any, name string) {
	if name == "" {
		v.errorf(path, "missing: the histogram's name, without _bucket")
		return
	}
	if !model.IsValidLegacyMetricName(name) {
		v.errorf(path, "%q is not a metric name", name)
	}
	for _, suf := range []string{"_bucket", "_count", "_sum"} {
		if strings.HasSuffix(name, suf) {
			v.errorf(path, "%q: give the histogram's name without %s", name, suf)
		}
	}
}

func (v *validator) selector(path []any, sel string) {
	if sel == "" {
		return
	}
	if _, err := parseSelector(sel); err != nil {
		v.errorf(path, "%q: %v", sel, err)
	}
}

func (v *validator) labels(path []any, l map[string]string) {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !model.LabelName(k).IsValidLegacy() || slices.Contains(reservedLabels, k) {
			v.errorf(p(path, k), "%q cannot be a label name here", k)
		}
	}
}

// promql checks that expr parses and, if wantVector, returns an instant
// vector (or a scalar).
func (v *validator) promql(path []any, expr string, wantVector bool) {
	e, err := promParser.ParseExpr(expr)
	if err != nil {
		v.errorf(path, "PromQL does not parse: %v", err)
		return
	}
	if wantVector && e.Type() != parser.ValueTypeVector && e.Type() != parser.ValueTypeScalar {
		v.errorf(path, "PromQL returns a %s; want an instant vector", e.Type())
	}
}

// promParser parses every PromQL expression of the package.
var promParser = parser.NewParser(parser.Options{})

// parseSelector parses "{a="b",...}" (braces optional) into matcher text
// to splice into a selector.
func parseSelector(sel string) (string, error) {
	s := strings.TrimSpace(sel)
	s = strings.TrimPrefix(s, "{")
	s = strings.TrimSuffix(s, "}")
	if strings.TrimSpace(s) == "" {
		return "", nil
	}
	ms, err := promParser.ParseMetricSelector("{" + s + "}")
	if err != nil {
		return "", fmt.Errorf("not a label selector: %v", err)
	}
	for _, m := range ms {
		if m.Name == "__name__" {
			return "", errors.New("must not select the metric name")
		}
	}
	return s, nil
}

// Merge returns the SLOs, rules and roll-ups of every spec in one, and an
// error if a name is used in more than one.
func Merge(specs ...*Spec) (*Spec, error) {
	out := &Spec{}
	seen := map[string]bool{}
	for _, s := range specs {
		for _, x := range s.SLOs {
			if seen["slo/"+x.Name] {
				return nil, fmt.Errorf("SLO %q is defined twice", x.Name)
			}
			seen["slo/"+x.Name] = true
			out.SLOs = append(out.SLOs, x)
		}
		for _, x := range s.HealthRules {
			if seen["rule/"+x.Name] {
				return nil, fmt.Errorf("health rule %q is defined twice", x.Name)
			}
			seen["rule/"+x.Name] = true
			out.HealthRules = append(out.HealthRules, x)
		}
		for _, x := range s.LatencyRollups {
			if seen["rollup/"+x.Name] {
				return nil, fmt.Errorf("latency roll-up %q is defined twice", x.Name)
			}
			seen["rollup/"+x.Name] = true
			out.LatencyRollups = append(out.LatencyRollups, x)
		}
	}
	return out, nil
}

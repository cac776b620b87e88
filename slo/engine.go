package slo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
)

// DefaultWindows are the windows of multiwindow multi-burn-rate alerting;
// every SLO also reports its own window.
var DefaultWindows = []time.Duration{
	5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour,
}

// Store is where the engine keeps what it records: the embedded TSDB (in
// embedded mode the same one the scraper fills) or a local TSDB of its own
// in remote mode.
type Store interface {
	storage.Appendable
	storage.Queryable
}

// Config configures an Engine.
type Config struct {
	Spec *Spec
	// Raw evaluates PromQL over the raw metrics.
	Raw Querier
	// Store keeps the recorded series.
	Store Store
	// Step is the recording step: the SLIs are evaluated over [Step]
	// ranges every Step, and every window is a multiple of it. Default 1m.
	Step time.Duration
	// Delay holds evaluation back behind the clock, for the ingestion lag
	// of a remote store (a scrape interval or two). Default 0.
	Delay time.Duration
	// Backfill is how far back the first run records from the raw
	// metrics (with range queries); after a restart the engine fills the
	// steps it missed, up to one SLO window. Default 0: start now.
	Backfill time.Duration
	// MaxStepsPerCycle bounds the steps recorded in one cycle, so a long
	// backfill is spread over cycles. Default 1440.
	MaxStepsPerCycle int
	// Windows are reported for every SLO (those longer than its window are
	// left out). Default DefaultWindows.
	Windows []time.Duration
	// RecordWindows are the windows whose burn rate is recorded per group
	// after each evaluation, as vigil_slo_burn_rate{window}. Default 1h,
	// the history the API serves. Each window costs a series per group
	// (a TSDB head entry, docs/slo.md "Memory"), and any window's burn
	// rate at any recorded step is two point lookups of
	// vigil_slo_events_total (C(T) - C(T-W)) anyway. Windows an SLO does
	// not report are skipped.
	RecordWindows []time.Duration
	// RecordStepRates records vigil_slo_events:rate, each step's good and
	// total events per second, per group (Sloth's short-window rates).
	// Default off: they are (C(T) - C(T-step)) / step.
	RecordStepRates bool
	// NoRateSeries turns off recording vigil_slo_burn_rate,
	// vigil_slo_budget_remaining and vigil_slo_events:rate (the status
	// history); the cumulative counts are always recorded.
	NoRateSeries bool
	// TopN is the number of worst offenders listed per SLO. Default 10.
	TopN int
	// Concurrency is the number of SLOs evaluated at once. Default
	// GOMAXPROCS.
	Concurrency int
	// RollupEvery is how often latency roll-ups are recomputed (their
	// per-minute values are recorded every minute). Default 5m.
	RollupEvery time.Duration
	// NoSharing evaluates each health rule as written, even with the
	// embedded TSDB, instead of evaluating the subexpressions they share
	// once per cycle (shared.go; for comparisons and benchmarks).
	NoSharing bool
	Logger    *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Engine evaluates SLOs and health rules and publishes signals.
type Engine struct {
	cfg Config
	// raw is base behind a per-cycle memo (set by Cycle).
	raw Querier
	// base is cfg.Raw, or, with the embedded TSDB, a querier of it that
	// also serves the health rules' shared subexpressions (shared.go).
	base   Querier
	slos   []*sloState
	health []*healthState
	rolls  []*rollupState
	// cost is how long each SLO, health rule and roll-up (in that order)
	// took in the last cycle.
	cost []time.Duration

	mu       sync.RWMutex
	statuses map[string]*Status
	rollups  map[string]*RollupStatus
	signals  []Signal
	lastAt   time.Time
	updates  Fanout
}

// New validates cfg and returns an engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Spec == nil {
		cfg.Spec = &Spec{}
	}
	if cfg.Raw == nil || cfg.Store == nil {
		return nil, errors.New("slo: Config.Raw and Config.Store are required")
	}
	if cfg.Step <= 0 {
		cfg.Step = time.Minute
	}
	if cfg.Step%time.Second != 0 {
		return nil, fmt.Errorf("slo: step %s is not a whole number of seconds", cfg.Step)
	}
	if cfg.MaxStepsPerCycle <= 0 {
		cfg.MaxStepsPerCycle = 1440
	}
	if cfg.Windows == nil {
		cfg.Windows = DefaultWindows
	}
	if cfg.TopN <= 0 {
		cfg.TopN = 10
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = runtime.GOMAXPROCS(0)
	}
	if cfg.RollupEvery <= 0 {
		cfg.RollupEvery = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RecordWindows == nil {
		cfg.RecordWindows = []time.Duration{time.Hour}
	}
	e := &Engine{cfg: cfg, statuses: map[string]*Status{}, rollups: map[string]*RollupStatus{}}
	for i := range cfg.Spec.SLOs {
		c, err := compile(&cfg.Spec.SLOs[i], cfg.Step, cfg.Windows)
		if err != nil {
			return nil, err
		}
		st := &sloState{c: c, groups: map[string]*group{}, evicted: map[string]bool{}, index: map[string]int{},
			lcache: map[time.Duration]*windowCache{}, recordBurn: make([]bool, len(c.windows))}
		for j, w := range c.windows {
			st.recordBurn[j] = slices.Contains(cfg.RecordWindows, w)
		}
		e.slos = append(e.slos, st)
	}
	e.base = cfg.Raw
	for i := range cfg.Spec.HealthRules {
		r := &cfg.Spec.HealthRules[i]
		e.health = append(e.health, &healthState{rule: r, query: r.Expr, active: map[string]*activeSeries{}})
	}
	if lq, ok := cfg.Raw.(*LocalQuerier); ok && len(e.health) > 1 && !cfg.NoSharing {
		exprs := make([]string, len(e.health))
		for i, h := range e.health {
			exprs[i] = h.rule.Expr
		}
		sh, err := factorShared(exprs)
		if err != nil {
			return nil, err
		}
		if len(sh.exprs) > 0 {
			for i, h := range e.health {
				h.query = sh.rewritten[i]
			}
			e.base = &LocalQuerier{Engine: lq.Engine, Store: &sharedQueryable{Queryable: lq.Store, exprs: sh.exprs}}
		}
	}
	for i := range cfg.Spec.LatencyRollups {
		r, err := newRollupState(&cfg.Spec.LatencyRollups[i])
		if err != nil {
			return nil, err
		}
		e.rolls = append(e.rolls, r)
	}
	return e, nil
}

// Step returns the recording step.
func (e *Engine) Step() time.Duration { return e.cfg.Step }

// Run evaluates every interval (default: the step) until ctx ends.
func (e *Engine) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = e.cfg.Step
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := e.Cycle(ctx); err != nil && ctx.Err() == nil {
			e.cfg.Logger.Warn("SLO evaluation", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Cycle runs one evaluation at the clock's time: it records the steps
// that ended since the last cycle, computes every SLO's status, evaluates
// the health rules, refreshes the roll-ups when due and publishes the
// signals. Errors of single SLOs or rules are reported in their status
// and joined into the returned error; the others are still evaluated.
func (e *Engine) Cycle(ctx context.Context) error {
	now := e.cfg.Now()
	step := e.cfg.Step.Milliseconds()
	T := (now.Add(-e.cfg.Delay).UnixMilli() / step) * step

	e.raw = newMemo(e.base)
	ctx = withMemo(ctx, e.raw)
	// SLOs (with their signals), health rules and roll-ups share a pool
	// of Concurrency workers, the items that took longest in the last
	// cycle first, so that a long one does not start last and run alone.
	ns, nh := len(e.slos), len(e.health)
	n := ns + nh + len(e.rolls)
	statuses := make([]*Status, ns)
	sigs := make([][]Signal, n)
	errs := make([]error, n)
	if len(e.cost) != n {
		e.cost = make([]time.Duration, n)
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return e.cost[order[a]] > e.cost[order[b]] })
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(e.cfg.Concurrency, max(1, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				t0 := time.Now()
				switch {
				case i < ns:
					statuses[i], errs[i] = e.evalSLO(ctx, e.slos[i], T)
					sigs[i] = e.sloSignals(ctx, e.slos[i], statuses[i])
				case i < ns+nh:
					sigs[i], errs[i] = e.evalHealth(ctx, e.health[i-ns], now)
				default:
					errs[i] = e.evalRollup(ctx, e.rolls[i-ns-nh], now)
				}
				e.cost[i] = time.Since(t0)
			}
		}()
	}
	for _, i := range order {
		work <- i
	}
	close(work)
	wg.Wait()

	var signals []Signal
	for _, s := range sigs {
		signals = append(signals, s...)
	}
	sort.Slice(signals, func(i, j int) bool { return signals[i].ID < signals[j].ID })
	e.publish(now, statuses, signals)
	return errors.Join(errs...)
}

// Float is a float64 that encodes NaN and infinities as JSON null.
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(v)
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Float) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = Float(math.NaN())
		return nil
	}
	var v float64
	err := json.Unmarshal(b, &v)
	*f = Float(v)
	return err
}

// Status is an SLO's state at one evaluation.
type Status struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Objective   float64   `json:"objective"`
	Window      Duration  `json:"window"`
	GroupBy     []string  `json:"group_by"`
	SLI         string    `json:"sli"`
	At          time.Time `json:"at"`
	// Groups has one entry per group, sorted by labels.
	Groups []GroupStatus `json:"groups"`
	// Rollups aggregates the groups per cell, per cluster and for the
	// whole fleet (the levels coarser than group_by).
	Rollups []GroupStatus `json:"rollups,omitempty"`
	// Worst lists the groups with the least budget left.
	Worst []GroupStatus `json:"worst,omitempty"`
	Error string        `json:"error,omitempty"`
}

// Alert states.
const (
	stateOK     = "ok"
	stateTicket = "ticket"
	statePage   = "page"
	stateNoData = "no_data"
)

// GroupStatus is the state of one group (or one roll-up) of an SLO.
type GroupStatus struct {
	// Level is "group", or the roll-up level: cell, cluster, fleet.
	Level string `json:"level"`
	// Labels are the group's labels; the statuses of one group share
	// the map, so it is read-only.
	Labels map[string]string `json:"labels"`
	// Groups counts the groups in a roll-up.
	Groups int `json:"groups,omitempty"`
	// Attainment is the share of good events over the SLO window, in
	// percent.
	Attainment Float `json:"attainment"`
	// BudgetRemaining is the share of the window's error budget left: 1
	// untouched, 0 spent, negative overspent.
	BudgetRemaining Float          `json:"budget_remaining"`
	Windows         []WindowStatus `json:"windows"`
	// State is ok, ticket, page or no_data (no events in the window).
	State string    `json:"state"`
	Since time.Time `json:"since,omitzero"`
	// Burning lists the multiwindow rules that fire.
	Burning []BurningRule `json:"burning,omitempty"`
}

// WindowStatus is one window's events, error ratio and burn rate.
type WindowStatus struct {
	Window     Duration `json:"window"`
	Good       float64  `json:"good"`
	Total      float64  `json:"total"`
	ErrorRatio Float    `json:"error_ratio"`
	BurnRate   Float    `json:"burn_rate"`
}

// BurningRule is a multiwindow rule that fires.
type BurningRule struct {
	Severity  string   `json:"severity"`
	Long      Duration `json:"long"`
	Short     Duration `json:"short"`
	Factor    float64  `json:"factor"`
	LongBurn  float64  `json:"long_burn"`
	ShortBurn float64  `json:"short_burn"`
}

// Window returns the status of window w, if reported.
func (g *GroupStatus) Window(w time.Duration) (WindowStatus, bool) {
	for _, x := range g.Windows {
		if x.Window.D() == w {
			return x, true
		}
	}
	return WindowStatus{}, false
}

func (e *Engine) evalSLO(ctx context.Context, s *sloState, T int64) (*Status, error) {
	c := s.c
	st := &Status{Name: c.slo.Name, Description: c.slo.Description, Objective: c.slo.Objective, Window: c.slo.Window,
		GroupBy: c.slo.GroupBy, SLI: c.sliExpr()}
	if st.GroupBy == nil {
		st.GroupBy = []string{}
	}
	if err := e.record(ctx, s, T); err != nil {
		st.Error = err.Error()
		st.At = time.UnixMilli(s.last)
		if s.last == 0 {
			return st, err
		}
		// Report what was recorded so far.
		defer func() { st.Error = err.Error() }()
	}
	if s.last == 0 {
		st.At = time.UnixMilli(T)
		return st, nil
	}
	at := s.last
	st.At = time.UnixMilli(at)
	prev := make([]func(int) (float64, float64), len(c.windows))
	for i, w := range c.windows {
		m, err := e.lookup(ctx, s, i, at-w.Milliseconds())
		if err != nil {
			st.Error = err.Error()
			return st, err
		}
		prev[i] = m
	}
	budget := 1 - c.slo.Objective/100
	keys := make([]string, 0, len(s.groups))
	for k := range s.groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ordered := make([]*group, 0, len(keys))
	st.Groups = make([]GroupStatus, 0, len(keys))
	for _, k := range keys {
		g := s.groups[k]
		ordered = append(ordered, g)
		if g.labelMap == nil {
			g.labelMap = labelsMap(g.labels)
		}
		gs := GroupStatus{Level: "group", Labels: g.labelMap, Windows: make([]WindowStatus, 0, len(c.windows))}
		idx := s.index[k]
		for i, w := range c.windows {
			pg, pt := prev[i](idx)
			dg, dt := max(0, g.cumGood-pg), max(0, g.cumTotal-pt)
			gs.Windows = append(gs.Windows, windowStatus(w, dg, dt, budget))
		}
		e.judge(c, &gs, budget)
		// Track state changes.
		if gs.State != g.state {
			g.state, g.stateSince = gs.State, at
		}
		gs.Since = time.UnixMilli(g.stateSince)
		st.Groups = append(st.Groups, gs)
	}
	st.Rollups = rollup(c, st.Groups, ordered, budget, e)
	st.Worst = worst(st.Groups, e.cfg.TopN)
	if !e.cfg.NoRateSeries {
		if err := e.recordStatus(ctx, s, st, ordered, at); err != nil {
			st.Error = err.Error()
			return st, err
		}
	}
	return st, nil
}

func windowStatus(w time.Duration, good, total, budget float64) WindowStatus {
	ws := WindowStatus{Window: Duration(w), Good: good, Total: total, ErrorRatio: Float(math.NaN()), BurnRate: Float(math.NaN())}
	if total > 0 {
		er := 1 - good/total
		ws.ErrorRatio = Float(er)
		ws.BurnRate = Float(er / budget)
	}
	return ws
}

// judge sets attainment, budget and the alert state from the windows.
func (e *Engine) judge(c *compiled, gs *GroupStatus, budget float64) {
	gs.Attainment, gs.BudgetRemaining = Float(math.NaN()), Float(math.NaN())
	full, _ := gs.Window(c.slo.Window.D())
	if full.Total > 0 {
		gs.Attainment = Float(100 * full.Good / full.Total)
		gs.BudgetRemaining = Float(1 - float64(full.BurnRate))
	}
	gs.State = stateOK
	if full.Total <= 0 {
		gs.State = stateNoData
		return
	}
	check := func(sev string, rules []BurnRule) {
		for _, r := range rules {
			lw, ok1 := gs.Window(r.Long.D())
			sw, ok2 := gs.Window(r.Short.D())
			f := r.Factor(c.slo.Window.D())
			if !ok1 || !ok2 || math.IsNaN(float64(lw.BurnRate)) || math.IsNaN(float64(sw.BurnRate)) {
				continue
			}
			if float64(lw.BurnRate) > f && float64(sw.BurnRate) > f {
				gs.Burning = append(gs.Burning, BurningRule{Severity: sev, Long: r.Long, Short: r.Short, Factor: f,
					LongBurn: float64(lw.BurnRate), ShortBurn: float64(sw.BurnRate)})
				if gs.State != statePage {
					gs.State = sev
				}
			}
		}
	}
	check(statePage, c.pageRules())
	check(stateTicket, c.ticketRules())
}

// rollupLevels are the aggregation levels of SLO roll-ups.
var rollupLevels = []struct {
	name   string
	labels []string
}{{"cell", []string{"cluster", "cell"}}, {"cluster", []string{"cluster"}}, {"fleet", nil}}

// rollup sums the groups' events per cell, per cluster and for the fleet,
// for the levels strictly coarser than the SLO's groups (gs are the
// groups' states, in the order of groups).
func rollup(c *compiled, groups []GroupStatus, gs []*group, budget float64, e *Engine) []GroupStatus {
	var out []GroupStatus
	for li, lv := range rollupLevels {
		if len(lv.labels) >= len(c.slo.GroupBy) && lv.name != "fleet" {
			continue
		}
		if lv.name == "fleet" && len(c.slo.GroupBy) == 0 {
			continue
		}
		ok := true
		for _, l := range lv.labels {
			ok = ok && slices.Contains(c.slo.GroupBy, l)
		}
		if !ok {
			continue
		}
		agg := map[string]*GroupStatus{}
		var order []string
		for gi, g := range groups {
			k := gs[gi].rollKey(li)
			a := agg[k]
			if a == nil {
				m := map[string]string{}
				for _, l := range lv.labels {
					m[l] = g.Labels[l]
				}
				a = &GroupStatus{Level: lv.name, Labels: m}
				for _, w := range g.Windows {
					a.Windows = append(a.Windows, WindowStatus{Window: w.Window})
				}
				agg[k] = a
				order = append(order, k)
			}
			a.Groups++
			for i, w := range g.Windows {
				a.Windows[i].Good += w.Good
				a.Windows[i].Total += w.Total
			}
		}
		sort.Strings(order)
		for _, k := range order {
			a := agg[k]
			for i, w := range a.Windows {
				a.Windows[i] = windowStatus(w.Window.D(), w.Good, w.Total, budget)
			}
			e.judge(c, a, budget)
			out = append(out, *a)
		}
	}
	return out
}

// rollKey returns the key of the group's labels at roll-up level li.
func (g *group) rollKey(li int) string {
	if g.rollKeys == nil {
		g.rollKeys = make([]string, len(rollupLevels))
		for i, lv := range rollupLevels {
			m := map[string]string{}
			for _, l := range lv.labels {
				m[l] = g.labels.Get(l)
			}
			g.rollKeys[i] = labelsString(m)
		}
	}
	return g.rollKeys[li]
}

// worst returns the n groups with the least budget left (then the
// highest short-window burn), skipping those without data.
func worst(groups []GroupStatus, n int) []GroupStatus {
	var idx []int32
	for i, g := range groups {
		if !math.IsNaN(float64(g.BudgetRemaining)) {
			idx = append(idx, int32(i))
		}
	}
	burn := func(g *GroupStatus) float64 {
		if len(g.Windows) == 0 || math.IsNaN(float64(g.Windows[0].BurnRate)) {
			return 0
		}
		return float64(g.Windows[0].BurnRate)
	}
	sort.SliceStable(idx, func(i, j int) bool {
		a, b := &groups[idx[i]], &groups[idx[j]]
		if a.BudgetRemaining != b.BudgetRemaining {
			return a.BudgetRemaining < b.BudgetRemaining
		}
		return burn(a) > burn(b)
	})
	gs := make([]GroupStatus, 0, min(n, len(idx)))
	for _, i := range idx[:min(n, len(idx))] {
		gs = append(gs, groups[i])
	}
	return gs
}

// recordStatus appends the budget remaining and the burn rates of the
// recorded windows of every group, for history and dashboards.
func (e *Engine) recordStatus(ctx context.Context, s *sloState, st *Status, groups []*group, t int64) error {
	app := newBatchAppender(ctx, e.cfg.Store)
	for i, gs := range st.Groups {
		g := groups[i]
		if v := float64(gs.BudgetRemaining); !math.IsNaN(v) {
			if err := g.appendOut(app, s.c, outBudget, t, v); err != nil {
				_ = app.Rollback()
				return err
			}
		}
		for j, w := range gs.Windows {
			if v := float64(w.BurnRate); s.recordBurn[j] && !math.IsNaN(v) {
				if err := g.appendOut(app, s.c, outBurn+j, t, v); err != nil {
					_ = app.Rollback()
					return err
				}
			}
		}
	}
	return app.Commit()
}

// Statuses returns the latest status of every SLO, in spec order.
func (e *Engine) Statuses() []*Status {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]*Status, 0, len(e.slos))
	for _, s := range e.slos {
		if st := e.statuses[s.c.slo.Name]; st != nil {
			out = append(out, st)
		}
	}
	return out
}

// Status returns the latest status of the named SLO.
func (e *Engine) Status(name string) (*Status, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	st, ok := e.statuses[name]
	return st, ok
}

// SLO returns the spec of the named SLO.
func (e *Engine) SLO(name string) (*SLO, bool) {
	for _, s := range e.slos {
		if s.c.slo.Name == name {
			return s.c.slo, true
		}
	}
	return nil, false
}

// History returns the recorded budget remaining and burn rate over the
// given window of the named SLO, per group, from start to end at step.
func (e *Engine) History(ctx context.Context, name string, start, end time.Time, step time.Duration) (map[string][]Series, error) {
	if _, ok := e.SLO(name); !ok {
		return nil, fmt.Errorf("no SLO %q", name)
	}
	q := &LocalQuerier{Engine: localEngine(), Store: e.cfg.Store}
	out := map[string][]Series{}
	for key, expr := range map[string]string{
		"budget_remaining": fmt.Sprintf(`%s{slo=%q}`, metricBudgetRemaining, name),
		"burn_rate_1h":     fmt.Sprintf(`%s{slo=%q,window="1h"}`, metricBurnRate, name),
	} {
		ss, err := q.Range(ctx, expr, start, end, step)
		if err != nil {
			return nil, err
		}
		for i := range ss {
			ss[i].Labels = labels.NewBuilder(ss[i].Labels).Del(labels.MetricName, "slo", "window").Labels()
		}
		out[key] = ss
	}
	return out, nil
}

var (
	localEngineOnce sync.Once
	localEng        *promql.Engine
)

// localEngine is the PromQL engine for queries of the record store.
func localEngine() *promql.Engine {
	localEngineOnce.Do(func() { localEng = NewPromQLEngine(nil) })
	return localEng
}

func describeGroup(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

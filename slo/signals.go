package slo

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// Signal is a condition a consumer (the mitigator, a person) should know
// about: a firing health rule, or an SLO group whose budget burns fast
// enough to page or ticket.
type Signal struct {
	// ID identifies the signal while it lasts: name and labels.
	ID string `json:"id"`
	// Name is the health rule's signal (storage_degraded, unreachable,
	// ...) or slo_burning.
	Name string `json:"name"`
	// Source is "health_rule" or "slo"; Rule names the rule or SLO.
	Source string `json:"source"`
	Rule   string `json:"rule"`
	// Severity is page, ticket or info.
	Severity    string `json:"severity,omitempty"`
	Description string `json:"description,omitempty"`
	// Labels identify what the signal is about (broker, cell, cluster ...).
	Labels map[string]string `json:"labels"`
	// Since is when the condition started to hold (for a health rule,
	// when its series first appeared, before its `for`).
	Since time.Time `json:"since"`
	// At is the evaluation that last saw it.
	At       time.Time  `json:"at"`
	Evidence []Evidence `json:"evidence"`
}

// Evidence is one measurement behind a signal.
type Evidence struct {
	Expr   string            `json:"expr"`
	Value  Float             `json:"value"`
	Labels map[string]string `json:"labels,omitempty"`
	At     time.Time         `json:"at"`
	Note   string            `json:"note,omitempty"`
}

// Update is what subscribers receive after every evaluation: every active
// signal, and which started and ended since the previous update.
type Update struct {
	At       time.Time `json:"at"`
	Signals  []Signal  `json:"signals"`
	Started  []Signal  `json:"started,omitempty"`
	Resolved []Signal  `json:"resolved,omitempty"`
}

// SignalSource is what the mitigator consumes: the engine in process, or
// an adapter of Alertmanager webhooks.
type SignalSource interface {
	// Signals returns the active signals.
	Signals() []Signal
	// Subscribe returns a channel that receives an Update after every
	// evaluation; a slow reader loses older updates, never the latest
	// (each holds every active signal). cancel ends the subscription.
	Subscribe(buffer int) (updates <-chan Update, cancel func())
}

var _ SignalSource = (*Engine)(nil)

// Signals implements SignalSource.
func (e *Engine) Signals() []Signal {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return append([]Signal(nil), e.signals...)
}

// LastEvaluation is when the last cycle ran (zero before the first).
func (e *Engine) LastEvaluation() time.Time {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.lastAt
}

// Subscribe implements SignalSource.
func (e *Engine) Subscribe(buffer int) (<-chan Update, func()) { return e.updates.Subscribe(buffer) }

// Fanout hands Updates to subscribers without ever blocking the publisher:
// a subscriber whose buffer is full loses its oldest update, never the
// newest (each holds every active signal). The zero value is ready; a
// SignalSource embeds one for its Subscribe.
type Fanout struct {
	mu   sync.Mutex
	subs map[int]chan Update
	next int
}

// Subscribe implements SignalSource's Subscribe.
func (f *Fanout) Subscribe(buffer int) (<-chan Update, func()) {
	ch := make(chan Update, max(buffer, 1))
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[int]chan Update{}
	}
	id := f.next
	f.next++
	f.subs[id] = ch
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if c, ok := f.subs[id]; ok {
			delete(f.subs, id)
			close(c)
		}
	}
}

// Publish hands u to every subscriber. Publishers that need their updates
// in order publish under their own lock.
func (f *Fanout) Publish(u Update) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.subs {
		for {
			select {
			case ch <- u:
			default:
				// Full: drop the oldest, keep the newest.
				select {
				case <-ch:
				default:
				}
				continue
			}
			break
		}
	}
}

func (e *Engine) publish(at time.Time, statuses []*Status, signals []Signal) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, st := range statuses {
		if st != nil {
			e.statuses[st.Name] = st
		}
	}
	old := map[string]bool{}
	for _, s := range e.signals {
		old[s.ID] = true
	}
	now := map[string]bool{}
	u := Update{At: at, Signals: signals}
	for _, s := range signals {
		now[s.ID] = true
		if !old[s.ID] {
			u.Started = append(u.Started, s)
		}
	}
	for _, s := range e.signals {
		if !now[s.ID] {
			u.Resolved = append(u.Resolved, s)
		}
	}
	e.signals, e.lastAt = signals, at
	e.updates.Publish(u)
}

func signalID(name string, l map[string]string) string {
	return name + describeGroup(l)
}

// sloSignals turns the groups of an SLO that page or ticket into
// slo_burning signals, with the burn rates as evidence and, if the SLO
// sets breakdown, the labels (brokers) its bad events come from.
func (e *Engine) sloSignals(ctx context.Context, s *sloState, st *Status) []Signal {
	if st == nil || s.c.slo.Alerting.Disabled {
		return nil
	}
	var burning []GroupStatus
	for _, g := range st.Groups {
		if len(g.Burning) > 0 {
			burning = append(burning, g)
		}
	}
	if len(burning) == 0 {
		return nil
	}
	c := s.c
	var breakdown map[string][]Evidence
	if len(c.slo.Breakdown) > 0 {
		rng := c.windows[0]
		expr := c.breakdown(c.slo.Breakdown, rng)
		ss, err := e.raw.Instant(ctx, expr, st.At)
		if err != nil {
			e.cfg.Logger.Warn("SLO breakdown", "slo", c.slo.Name, "err", err)
		}
		breakdown = map[string][]Evidence{}
		ss = append([]Series(nil), ss...) // the result is shared: sort a copy
		sort.Slice(ss, func(i, j int) bool { return ss[i].Points[0].V > ss[j].Points[0].V })
		for _, x := range ss {
			k := groupKey(groupLabels(x.Labels, c.slo.GroupBy))
			if len(breakdown[k]) >= 5 {
				continue
			}
			breakdown[k] = append(breakdown[k], Evidence{Expr: expr, Value: Float(x.Points[0].V), Labels: labelsMap(x.Labels),
				At: st.At, Note: fmt.Sprintf("bad events per second over %s by %s", promDuration(rng), strings.Join(c.slo.Breakdown, ", "))})
		}
	}
	var out []Signal
	for _, g := range burning {
		l := map[string]string{"slo": c.slo.Name}
		for k, v := range g.Labels {
			l[k] = v
		}
		for k, v := range c.slo.Labels {
			if _, ok := l[k]; !ok {
				l[k] = v
			}
		}
		sig := Signal{ID: signalID("slo_burning", l), Name: "slo_burning", Source: "slo", Rule: c.slo.Name, Severity: g.State,
			Description: c.slo.Description, Labels: l, Since: g.Since, At: st.At}
		for _, b := range g.Burning {
			for _, w := range []Duration{b.Long, b.Short} {
				ws, _ := g.Window(w.D())
				sig.Evidence = append(sig.Evidence, Evidence{
					Expr:   fmt.Sprintf("burn rate over %s of %s", w, c.sliExpr()),
					Value:  ws.BurnRate,
					Labels: g.Labels,
					At:     st.At,
					Note: fmt.Sprintf("%s: %.0f of %.0f events bad (error ratio %.4g) over %s; %s fires above %.4g (%.3g%% of the %s budget in %s)",
						b.Severity, ws.Total-ws.Good, ws.Total, float64(ws.ErrorRatio), w, b.Severity, b.Factor, 100*b.Factor*b.Long.D().Hours()/c.slo.Window.D().Hours(), c.slo.Window, b.Long),
				})
			}
		}
		sig.Evidence = append(sig.Evidence, breakdown[groupKey(labels.FromMap(g.Labels))]...)
		out = append(out, sig)
	}
	return out
}

// healthState tracks the series of one health rule over evaluations.
type healthState struct {
	rule *HealthRule
	// query is what the engine evaluates: the rule's expression, with its
	// shared subexpressions read from their selectors (shared.go).
	query  string
	active map[string]*activeSeries
}

type activeSeries struct {
	labels map[string]string
	since  time.Time
	value  float64
}

// evalHealth evaluates a health rule at t: a series returned for at least
// `for` is a signal.
func (e *Engine) evalHealth(ctx context.Context, h *healthState, t time.Time) ([]Signal, error) {
	ss, err := e.raw.Instant(ctx, h.query, t)
	if err != nil {
		return nil, fmt.Errorf("health rule %s: %w", h.rule.Name, err)
	}
	seen := map[string]bool{}
	for _, s := range ss {
		if len(s.Points) == 0 || math.IsNaN(s.Points[0].V) {
			continue
		}
		m := labelsMap(s.Labels)
		k := describeGroup(m)
		seen[k] = true
		a := h.active[k]
		if a == nil {
			a = &activeSeries{labels: m, since: t}
			h.active[k] = a
		}
		a.value = s.Points[0].V
	}
	for k := range h.active {
		if !seen[k] {
			delete(h.active, k)
		}
	}
	name := h.rule.Signal
	if name == "" {
		name = h.rule.Name
	}
	var out []Signal
	for _, a := range h.active {
		if t.Sub(a.since) < h.rule.For.D() {
			continue
		}
		l := map[string]string{}
		for k, v := range a.labels {
			l[k] = v
		}
		for k, v := range h.rule.Labels {
			l[k] = v
		}
		out = append(out, Signal{ID: signalID(name, l), Name: name, Source: "health_rule", Rule: h.rule.Name, Severity: h.rule.Severity,
			Description: h.rule.Description, Labels: l, Since: a.since, At: t,
			Evidence: []Evidence{{Expr: strings.TrimSpace(h.rule.Expr), Value: Float(a.value), Labels: a.labels, At: t}}})
	}
	return out, nil
}

package slo

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Recorded series. Per SLO and group, the engine records at every step
// the cumulative number of good and of all events since the group was
// first seen (a counter it never resets):
//
//	vigil_slo_events_total{slo="NAME", event="good"|"total", <group labels>}
//
// The events of any window W ending at T are then C(T) - C(T-W): two
// point lookups per window, whatever its length, instead of a 28-day
// range query over the raw metrics. The step rates themselves are
// recorded too, as Sloth does, for graphs:
//
//	vigil_slo_events:rate{slo, event, <group>} (events per second over the step)
//
// and, after each evaluation, the budget remaining and burn rates:
//
//	vigil_slo_budget_remaining{slo, <group>}
//	vigil_slo_burn_rate{slo, window, <group>}
const (
	metricEvents          = "vigil_slo_events_total"
	metricEventRate       = "vigil_slo_events:rate"
	metricBudgetRemaining = "vigil_slo_budget_remaining"
	metricBurnRate        = "vigil_slo_burn_rate"
	metricRollupMinute    = "vigil_slo_latency_rollup_minute"
)

// group is the recording state of one SLO group.
type group struct {
	labels   labels.Labels // group_by labels only
	key      string
	cumGood  float64
	cumTotal float64
	lastSeen int64 // ms of the last step with data
	refGood  storage.SeriesRef
	refTotal storage.SeriesRef
	// alert state
	state      string
	stateSince int64
}

// sloState is the engine's state of one SLO.
type sloState struct {
	c      *compiled
	groups map[string]*group
	// last is the last recorded step (ms), 0 before the first.
	last   int64
	loaded bool
	// history: the store held recorded series of this SLO when the
	// engine started; evicted: groups dropped after a window without
	// data. A new group in either case resumes from the store.
	history bool
	evicted map[string]bool
}

func groupKey(l labels.Labels) string { return l.String() }

// groupLabels keeps the group_by labels of a query result.
func groupLabels(l labels.Labels, by []string) labels.Labels {
	b := labels.NewScratchBuilder(len(by))
	for _, n := range by {
		if v := l.Get(n); v != "" {
			b.Add(n, v)
		}
	}
	b.Sort()
	return b.Labels()
}

func seriesLabels(name, slo string, g labels.Labels, extra ...string) labels.Labels {
	b := labels.NewBuilder(g)
	b.Set(labels.MetricName, name)
	b.Set("slo", slo)
	for i := 0; i+1 < len(extra); i += 2 {
		b.Set(extra[i], extra[i+1])
	}
	return b.Labels()
}

// loadState finds, in the record store, the last recorded step of s and
// every group's cumulative counts at it. It looks back at most the SLO
// window, in growing spans so a short restart reads little.
func (e *Engine) loadState(ctx context.Context, s *sloState, now int64) error {
	s.loaded = true
	win := s.c.slo.Window.D().Milliseconds()
	for _, span := range []int64{time.Hour.Milliseconds(), 24 * time.Hour.Milliseconds(), win} {
		if span > win {
			span = win
		}
		found, err := e.readLast(ctx, s, now-span, now)
		if err != nil || found {
			return err
		}
		if span == win {
			return nil
		}
	}
	return nil
}

// readLast reads the last sample of each recorded events series of s in
// [mint, maxt]; the groups present at the last step become the state.
func (e *Engine) readLast(ctx context.Context, s *sloState, mint, maxt int64) (bool, error) {
	q, err := e.cfg.Store.Querier(mint, maxt)
	if err != nil {
		return false, err
	}
	defer q.Close()
	ss := q.Select(ctx, false, &storage.SelectHints{Start: mint, End: maxt},
		labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metricEvents),
		labels.MustNewMatcher(labels.MatchEqual, "slo", s.c.slo.Name))
	type last struct {
		t int64
		v float64
	}
	found := map[string]last{}
	var it chunkenc.Iterator
	for ss.Next() {
		ser := ss.At()
		it = ser.Iterator(it)
		var lt int64
		var lv float64
		ok := false
		for it.Next() == chunkenc.ValFloat {
			lt, lv = it.At()
			ok = true
		}
		if ok {
			found[ser.Labels().String()] = last{lt, lv}
			if lt > s.last {
				s.last = lt
			}
		}
	}
	if err := ss.Err(); err != nil {
		return false, err
	}
	if len(found) == 0 {
		return false, nil
	}
	s.history = true
	// Rebuild the groups from the series present at the last step.
	q2, err := e.cfg.Store.Querier(s.last, s.last)
	if err != nil {
		return false, err
	}
	defer q2.Close()
	ss = q2.Select(ctx, false, nil,
		labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metricEvents),
		labels.MustNewMatcher(labels.MatchEqual, "slo", s.c.slo.Name))
	for ss.Next() {
		l := ss.At().Labels()
		lv, ok := found[l.String()]
		if !ok || lv.t != s.last {
			continue
		}
		gl := groupLabels(l, s.c.slo.GroupBy)
		k := groupKey(gl)
		g := s.groups[k]
		if g == nil {
			g = &group{labels: gl, key: k, lastSeen: s.last, state: stateOK}
			s.groups[k] = g
		}
		switch l.Get("event") {
		case "good":
			g.cumGood = lv.v
		case "total":
			g.cumTotal = lv.v
		}
	}
	return true, ss.Err()
}

// record evaluates the SLI for every step after the last recorded one up
// to T (at most maxSteps of them per call), and appends the recorded
// series. It returns the last step recorded.
func (e *Engine) record(ctx context.Context, s *sloState, T int64) error {
	step := e.cfg.Step.Milliseconds()
	win := s.c.slo.Window.D().Milliseconds()
	if !s.loaded {
		if err := e.loadState(ctx, s, T); err != nil {
			return fmt.Errorf("loading the recorded state of %s: %w", s.c.slo.Name, err)
		}
	}
	first := s.last + step
	if s.last == 0 {
		first = T - e.cfg.Backfill.Milliseconds()/step*step
	}
	if first < T-win+step {
		first = T - win + step
	}
	if first > T {
		return nil
	}
	last := T
	if n := (last-first)/step + 1; n > int64(e.cfg.MaxStepsPerCycle) {
		last = first + int64(e.cfg.MaxStepsPerCycle-1)*step
	}
	total, err := e.eval(ctx, s.c.total, first, last)
	if err != nil {
		return fmt.Errorf("SLO %s: total: %w", s.c.slo.Name, err)
	}
	var good, bad map[int64][]Series
	if s.c.good != "" {
		good, err = e.eval(ctx, s.c.good, first, last)
	} else {
		bad, err = e.eval(ctx, s.c.bad, first, last)
	}
	if err != nil {
		return fmt.Errorf("SLO %s: good/bad: %w", s.c.slo.Name, err)
	}
	app := e.cfg.Store.Appender(ctx)
	secs := e.cfg.Step.Seconds()
	for t := first; t <= last; t += step {
		seen := map[string]bool{}
		tot := byGroup(total[t], s.c.slo.GroupBy)
		gd := byGroup(good[t], s.c.slo.GroupBy)
		bd := byGroup(bad[t], s.c.slo.GroupBy)
		for k, tv := range tot {
			g := s.groups[k.key]
			if g == nil {
				g = &group{labels: k.labels, key: k.key, state: stateOK}
				if s.history || s.evicted[k.key] {
					if err := e.resume(ctx, s, g, t); err != nil {
						_ = app.Rollback()
						return err
					}
					delete(s.evicted, k.key)
				}
				s.groups[k.key] = g
			}
			seen[k.key] = true
			if tv < 0 || math.IsNaN(tv) || math.IsInf(tv, 0) {
				tv = 0
			}
			var gv float64
			if bad != nil {
				bv := clean(bd[k])
				gv = tv - bv
			} else {
				gv = clean(gd[k])
			}
			gv = max(0, min(gv, tv))
			g.cumGood += gv * secs
			g.cumTotal += tv * secs
			g.lastSeen = t
			if err := e.appendGroup(app, s, g, t, gv, tv, true); err != nil {
				_ = app.Rollback()
				return err
			}
		}
		// Groups without data this step carry their counts forward for a
		// window, so every lookup within a window finds a sample.
		for k, g := range s.groups {
			if seen[k] {
				continue
			}
			if t-g.lastSeen > win {
				delete(s.groups, k)
				s.evicted[k] = true
				continue
			}
			if err := e.appendGroup(app, s, g, t, 0, 0, false); err != nil {
				_ = app.Rollback()
				return err
			}
		}
	}
	if err := app.Commit(); err != nil {
		return err
	}
	s.last = last
	return nil
}

func clean(v float64) float64 {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

type gkey struct {
	key    string
	labels labels.Labels
}

// byGroup sums series by their group labels (a user expression may return
// more than one series per group if it keeps other labels).
func byGroup(ss []Series, by []string) map[gkey]float64 {
	if len(ss) == 0 {
		return nil
	}
	out := make(map[gkey]float64, len(ss))
	keys := map[string]gkey{}
	for _, s := range ss {
		gl := groupLabels(s.Labels, by)
		k := groupKey(gl)
		gk, ok := keys[k]
		if !ok {
			gk = gkey{key: k, labels: gl}
			keys[k] = gk
		}
		out[gk] += s.Points[0].V
	}
	return out
}

// resume continues a group that reappears (or that the engine had not
// seen since it started) from its last recorded counts within a window,
// so C(T)-C(T-W) never mixes two lives of a group.
func (e *Engine) resume(ctx context.Context, s *sloState, g *group, t int64) error {
	win := s.c.slo.Window.D().Milliseconds()
	q, err := e.cfg.Store.Querier(t-win, t-1)
	if err != nil {
		return err
	}
	defer q.Close()
	ms := []*labels.Matcher{
		labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metricEvents),
		labels.MustNewMatcher(labels.MatchEqual, "slo", s.c.slo.Name),
	}
	for _, n := range s.c.slo.GroupBy {
		ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, n, g.labels.Get(n)))
	}
	ss := q.Select(ctx, false, nil, ms...)
	var it chunkenc.Iterator
	for ss.Next() {
		it = ss.At().Iterator(it)
		var v float64
		for it.Next() == chunkenc.ValFloat {
			_, v = it.At()
		}
		switch ss.At().Labels().Get("event") {
		case "good":
			g.cumGood = v
		case "total":
			g.cumTotal = v
		}
	}
	return ss.Err()
}

func (e *Engine) appendGroup(app storage.Appender, s *sloState, g *group, t int64, goodRate, totalRate float64, rates bool) error {
	var err error
	g.refGood, err = app.Append(g.refGood, seriesLabels(metricEvents, s.c.slo.Name, g.labels, "event", "good"), t, g.cumGood)
	if err != nil && !isSkippable(err) {
		return err
	}
	g.refTotal, err = app.Append(g.refTotal, seriesLabels(metricEvents, s.c.slo.Name, g.labels, "event", "total"), t, g.cumTotal)
	if err != nil && !isSkippable(err) {
		return err
	}
	if rates && !e.cfg.NoRateSeries {
		for _, x := range []struct {
			ev string
			v  float64
		}{{"good", goodRate}, {"total", totalRate}} {
			if _, err := app.Append(0, seriesLabels(metricEventRate, s.c.slo.Name, g.labels, "event", x.ev), t, x.v); err != nil && !isSkippable(err) {
				return err
			}
		}
	}
	return nil
}

// eval runs expr at every step in [first, last] and returns the series by
// step.
func (e *Engine) eval(ctx context.Context, expr string, first, last int64) (map[int64][]Series, error) {
	var ss []Series
	var err error
	if first == last {
		ss, err = e.cfg.Raw.Instant(ctx, expr, time.UnixMilli(first))
	} else {
		ss, err = e.cfg.Raw.Range(ctx, expr, time.UnixMilli(first), time.UnixMilli(last), e.cfg.Step)
	}
	if err != nil {
		return nil, err
	}
	out := map[int64][]Series{}
	for _, s := range ss {
		for _, p := range s.Points {
			out[p.T] = append(out[p.T], Series{Labels: s.Labels, Points: []Point{p}})
		}
	}
	return out, nil
}

// lookup returns, for every group of s, the cumulative good and total
// counts recorded at step t (zero for a group without a sample there:
// it did not exist yet).
func (e *Engine) lookup(ctx context.Context, s *sloState, t int64) (map[string][2]float64, error) {
	step := e.cfg.Step.Milliseconds()
	q, err := e.cfg.Store.Querier(t-step+1, t)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	ss := q.Select(ctx, false, &storage.SelectHints{Start: t - step + 1, End: t},
		labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metricEvents),
		labels.MustNewMatcher(labels.MatchEqual, "slo", s.c.slo.Name))
	out := map[string][2]float64{}
	var it chunkenc.Iterator
	for ss.Next() {
		l := ss.At().Labels()
		it = ss.At().Iterator(it)
		if it.Seek(t-step+1) != chunkenc.ValFloat {
			continue
		}
		ts, v := it.At()
		if ts > t {
			continue
		}
		k := groupKey(groupLabels(l, s.c.slo.GroupBy))
		c := out[k]
		if l.Get("event") == "good" {
			c[0] = v
		} else {
			c[1] = v
		}
		out[k] = c
	}
	return out, ss.Err()
}

func labelsMap(l labels.Labels) map[string]string {
	m := make(map[string]string, l.Len())
	l.Range(func(x labels.Label) {
		if x.Name != labels.MetricName {
			m[x.Name] = x.Value
		}
	})
	return m
}

func labelsString(m map[string]string) string {
	return strings.TrimSpace(labels.FromMap(m).String())
}

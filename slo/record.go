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
// range query over the raw metrics. After each evaluation, for history
// and graphs, the budget remaining and the burn rate of the windows in
// Config.RecordWindows (1h by default):
//
//	vigil_slo_budget_remaining{slo, <group>}
//	vigil_slo_burn_rate{slo, window, <group>}
//
// and, with Config.RecordStepRates, the step rates, as Sloth records
// them:
//
//	vigil_slo_events:rate{slo, event, <group>} (events per second over the step)
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
	// the recorded series (labels and refs), by place: outEventsGood ...
	out []outSeries
	// labelMap is labels as a map, shared by every status of the group
	// (GroupStatus.Labels); rollKeys are its keys at each roll-up level
	// (rollupLevels). Both are built once.
	labelMap map[string]string
	rollKeys []string
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
	// recordBurn tells, per window of c.windows, whether its burn rate is
	// recorded (Config.RecordWindows).
	recordBurn []bool
	// index numbers every group key ever seen, for the lookup caches.
	index  map[string]int
	lcache map[time.Duration]*windowCache
}

// indexOf returns the number of a group key, adding it if new.
func (s *sloState) indexOf(key string) int {
	if i, ok := s.index[key]; ok {
		return i
	}
	s.index[key] = len(s.index)
	return s.index[key]
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
			s.indexOf(k)
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
	app := newBatchAppender(ctx, e.cfg.Store)
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
				s.indexOf(k.key)
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

// outSeries is a recorded series of a group: its labels and last ref.
type outSeries struct {
	labels labels.Labels
	ref    storage.SeriesRef
}

// The recorded series of a group, by their place in group.out.
const (
	outEventsGood  = iota // vigil_slo_events_total{event="good"}
	outEventsTotal        // vigil_slo_events_total{event="total"}
	outRateGood           // vigil_slo_events:rate{event="good"}
	outRateTotal          // vigil_slo_events:rate{event="total"}
	outBudget             // vigil_slo_budget_remaining
	outBurn               // vigil_slo_burn_rate{window=c.windowNames[i-outBurn]}
)

// outLabels returns the labels of recorded series i of group g.
func (c *compiled) outLabels(i int, g labels.Labels) labels.Labels {
	switch i {
	case outEventsGood:
		return seriesLabels(metricEvents, c.slo.Name, g, "event", "good")
	case outEventsTotal:
		return seriesLabels(metricEvents, c.slo.Name, g, "event", "total")
	case outRateGood:
		return seriesLabels(metricEventRate, c.slo.Name, g, "event", "good")
	case outRateTotal:
		return seriesLabels(metricEventRate, c.slo.Name, g, "event", "total")
	case outBudget:
		return seriesLabels(metricBudgetRemaining, c.slo.Name, g)
	default:
		return seriesLabels(metricBurnRate, c.slo.Name, g, "window", c.windowNames[i-outBurn])
	}
}

// appendOut appends v to the group's recorded series i, keeping its
// labels and ref for the next steps.
func (g *group) appendOut(app storage.Appender, c *compiled, i int, t int64, v float64) error {
	if g.out == nil {
		g.out = make([]outSeries, outBurn+len(c.windows))
	}
	o := &g.out[i]
	if o.labels.IsEmpty() {
		o.labels = c.outLabels(i, g.labels)
	}
	ref, err := app.Append(o.ref, o.labels, t, v)
	if err != nil && !isSkippable(err) {
		return err
	}
	o.ref = ref
	return nil
}

func (e *Engine) appendGroup(app storage.Appender, s *sloState, g *group, t int64, goodRate, totalRate float64, rates bool) error {
	if err := g.appendOut(app, s.c, outEventsGood, t, g.cumGood); err != nil {
		return err
	}
	if err := g.appendOut(app, s.c, outEventsTotal, t, g.cumTotal); err != nil {
		return err
	}
	if rates && e.cfg.RecordStepRates && !e.cfg.NoRateSeries {
		if err := g.appendOut(app, s.c, outRateGood, t, goodRate); err != nil {
			return err
		}
		if err := g.appendOut(app, s.c, outRateTotal, t, totalRate); err != nil {
			return err
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
		ss, err = e.raw.Instant(ctx, expr, time.UnixMilli(first))
	} else {
		ss, err = e.raw.Range(ctx, expr, time.UnixMilli(first), time.UnixMilli(last), e.cfg.Step)
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

// lookupAhead is how many steps a window's lookup reads at once: the
// next cycles' lookups of the window (one step later each) are then
// served from memory.
const lookupAhead = 8

// windowCache holds the cumulative counts of every group at a run of
// recorded steps: vals[i][2*idx], vals[i][2*idx+1] are group idx's good
// and total counts at step from+i*step (NaN: no sample).
type windowCache struct {
	from, to int64
	vals     [][]float64
}

// lookup returns a function giving, for a group's number (s.index), the
// cumulative good and total counts recorded at step t (zero for a group
// without a sample there: it did not exist yet). Recorded steps never
// change, so a read covers the lookups of the next lookupAhead cycles of
// this window (wi is its index in s.c.windows).
func (e *Engine) lookup(ctx context.Context, s *sloState, wi int, t int64) (func(idx int) (float64, float64), error) {
	step := e.cfg.Step.Milliseconds()
	w := s.c.windows[wi]
	c := s.lcache[w]
	if c == nil || t < c.from || t > c.to {
		ahead := int64(lookupAhead - 1)
		if c == nil {
			// The first reads cover one step less per window, so that
			// later the windows' reads fall in different cycles, not
			// all in every lookupAhead-th one.
			ahead -= int64(wi % lookupAhead)
		}
		to := min(t+ahead*step, s.last)
		if to < t {
			to = t
		}
		var err error
		if c, err = e.readSteps(ctx, s, t, to); err != nil {
			return nil, err
		}
		s.lcache[w] = c
	}
	row := c.vals[(t-c.from)/step]
	return func(idx int) (float64, float64) {
		if idx < 0 || 2*idx+1 >= len(row) || math.IsNaN(row[2*idx+1]) {
			return 0, 0
		}
		g := row[2*idx]
		if math.IsNaN(g) {
			g = 0
		}
		return g, row[2*idx+1]
	}, nil
}

// readSteps reads the recorded counts of s at every step in [from, to].
func (e *Engine) readSteps(ctx context.Context, s *sloState, from, to int64) (*windowCache, error) {
	step := e.cfg.Step.Milliseconds()
	c := &windowCache{from: from, to: to}
	n := 2 * len(s.index)
	for t := from; t <= to; t += step {
		row := make([]float64, n)
		for i := range row {
			row[i] = math.NaN()
		}
		c.vals = append(c.vals, row)
	}
	q, err := e.cfg.Store.Querier(from-step+1, to)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	ss := q.Select(ctx, false, &storage.SelectHints{Start: from - step + 1, End: to},
		labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metricEvents),
		labels.MustNewMatcher(labels.MatchEqual, "slo", s.c.slo.Name))
	var it chunkenc.Iterator
	for ss.Next() {
		l := ss.At().Labels()
		idx, ok := s.index[groupKey(groupLabels(l, s.c.slo.GroupBy))]
		if !ok {
			continue
		}
		off := 2 * idx
		if l.Get("event") == "total" {
			off++
		}
		it = ss.At().Iterator(it)
		for vt := it.Seek(from - step + 1); vt == chunkenc.ValFloat; vt = it.Next() {
			ts, v := it.At()
			if ts > to {
				break
			}
			// The sample of step t is the last one in (t-step, t].
			i := (ts - from + step - 1) / step
			if i >= 0 && i < int64(len(c.vals)) {
				c.vals[i][off] = v
			}
		}
	}
	return c, ss.Err()
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

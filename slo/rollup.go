package slo

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// RollupStatus is the state of a Kora latency roll-up.
type RollupStatus struct {
	Name     string    `json:"name"`
	Metric   string    `json:"metric"`
	Quantile float64   `json:"quantile"`
	Period   Duration  `json:"period"`
	At       time.Time `json:"at"`
	// Clusters has each cluster's value: the Quantile, over the period,
	// of its per-minute values (each the worst entity's Quantile that
	// minute), worst first.
	Clusters []ClusterLatency `json:"clusters"`
	// Fleet is the median, p90 and p99 of the clusters' values.
	Fleet FleetLatency `json:"fleet"`
	Error string       `json:"error,omitempty"`
}

// ClusterLatency is one cluster's roll-up value.
type ClusterLatency struct {
	Cluster string `json:"cluster"`
	Value   Float  `json:"value"`
	Minutes int    `json:"minutes"`
}

// FleetLatency summarises the clusters' values.
type FleetLatency struct {
	Clusters int   `json:"clusters"`
	P50      Float `json:"p50"`
	P90      Float `json:"p90"`
	P99      Float `json:"p99"`
}

type rollupState struct {
	r          *LatencyRollup
	q          float64
	entity     string
	cluster    string
	period     time.Duration
	minuteExpr string
	last       int64
	loaded     bool
	lastEval   time.Time
}

func newRollupState(r *LatencyRollup) (*rollupState, error) {
	s := &rollupState{r: r, q: r.Quantile, entity: r.Entity, cluster: r.Cluster, period: r.Period.D()}
	if s.q == 0 {
		s.q = 0.99
	}
	if s.entity == "" {
		s.entity = "broker"
	}
	if s.cluster == "" {
		s.cluster = "cluster"
	}
	if s.period == 0 {
		s.period = 7 * 24 * time.Hour
	}
	sel, err := parseSelector(r.Selector)
	if err != nil {
		return nil, fmt.Errorf("latency roll-up %s: %w", r.Name, err)
	}
	if sel != "" {
		sel = "{" + sel + "}"
	}
	// The entity's quantile per minute; the worst entity is its cluster's
	// value for the minute.
	s.minuteExpr = fmt.Sprintf("max by (%s) (histogram_quantile(%g, sum by (%s, %s, le) (rate(%s_bucket%s[1m]))))",
		s.cluster, s.q, s.cluster, s.entity, r.Metric, sel)
	if _, err := promParser.ParseExpr(s.minuteExpr); err != nil {
		return nil, fmt.Errorf("latency roll-up %s: %w", r.Name, err)
	}
	return s, nil
}

// evalRollup records the minutes since the last cycle and, every
// RollupEvery, recomputes the clusters' and the fleet's values.
func (e *Engine) evalRollup(ctx context.Context, s *rollupState, now time.Time) error {
	const minute = int64(60_000)
	T := now.Add(-e.cfg.Delay).UnixMilli() / minute * minute
	if !s.loaded {
		s.loaded = true
		if err := s.loadLast(ctx, e.cfg.Store, T); err != nil {
			return err
		}
	}
	first := s.last + minute
	if s.last == 0 {
		first = T - e.cfg.Backfill.Milliseconds()/minute*minute
	}
	if first < T-s.period.Milliseconds()+minute {
		first = T - s.period.Milliseconds() + minute
	}
	var errRec error
	if first <= T {
		last := min(T, first+int64(e.cfg.MaxStepsPerCycle-1)*minute)
		var ss []Series
		var err error
		if first == last {
			ss, err = e.raw.Instant(ctx, s.minuteExpr, time.UnixMilli(first))
		} else {
			ss, err = e.raw.Range(ctx, s.minuteExpr, time.UnixMilli(first), time.UnixMilli(last), time.Minute)
		}
		if err != nil {
			errRec = fmt.Errorf("latency roll-up %s: %w", s.r.Name, err)
		} else {
			app := newBatchAppender(ctx, e.cfg.Store)
			for _, x := range ss {
				l := labels.FromStrings(labels.MetricName, metricRollupMinute, "rollup", s.r.Name, s.cluster, x.Labels.Get(s.cluster))
				var ref storage.SeriesRef
				for _, p := range x.Points {
					if math.IsNaN(p.V) {
						continue
					}
					if ref, err = app.Append(ref, l, p.T, p.V); err != nil && !isSkippable(err) {
						_ = app.Rollback()
						return err
					}
				}
			}
			if err := app.Commit(); err != nil {
				return err
			}
			s.last = last
		}
	}
	if !s.lastEval.IsZero() && now.Sub(s.lastEval) < e.cfg.RollupEvery && errRec == nil {
		return nil
	}
	st := e.computeRollup(ctx, s, time.UnixMilli(T))
	if errRec != nil {
		st.Error = errRec.Error()
	}
	s.lastEval = now
	e.mu.Lock()
	e.rollups[s.r.Name] = st
	e.mu.Unlock()
	return errRec
}

func (s *rollupState) loadLast(ctx context.Context, st Store, T int64) error {
	mint := T - s.period.Milliseconds()
	q, err := st.Querier(mint, T)
	if err != nil {
		return err
	}
	defer q.Close()
	ss := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metricRollupMinute),
		labels.MustNewMatcher(labels.MatchEqual, "rollup", s.r.Name))
	var it chunkenc.Iterator
	for ss.Next() {
		it = ss.At().Iterator(it)
		for it.Next() == chunkenc.ValFloat {
			if t, _ := it.At(); t > s.last && t <= T {
				s.last = t
			}
		}
	}
	return ss.Err()
}

func (e *Engine) computeRollup(ctx context.Context, s *rollupState, at time.Time) *RollupStatus {
	st := &RollupStatus{Name: s.r.Name, Metric: s.r.Metric, Quantile: s.q, Period: Duration(s.period), At: at}
	q := &LocalQuerier{Engine: localEngine(), Store: e.cfg.Store}
	sel := fmt.Sprintf(`%s{rollup=%q}[%s]`, metricRollupMinute, s.r.Name, promDuration(s.period))
	vals, err := q.Instant(ctx, fmt.Sprintf("quantile_over_time(%g, %s)", s.q, sel), at)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	counts, err := q.Instant(ctx, "count_over_time("+sel+")", at)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	n := map[string]int{}
	for _, c := range counts {
		n[c.Labels.Get(s.cluster)] = int(c.Points[0].V)
	}
	var xs []float64
	for _, v := range vals {
		c := v.Labels.Get(s.cluster)
		st.Clusters = append(st.Clusters, ClusterLatency{Cluster: c, Value: Float(v.Points[0].V), Minutes: n[c]})
		xs = append(xs, v.Points[0].V)
	}
	sort.Slice(st.Clusters, func(i, j int) bool {
		if st.Clusters[i].Value != st.Clusters[j].Value {
			return st.Clusters[i].Value > st.Clusters[j].Value
		}
		return st.Clusters[i].Cluster < st.Clusters[j].Cluster
	})
	st.Fleet = FleetLatency{Clusters: len(xs), P50: Float(quantile(0.5, xs)), P90: Float(quantile(0.9, xs)), P99: Float(quantile(0.99, xs))}
	return st
}

// quantile is PromQL's quantile: linear interpolation between the closest
// ranks, NaN for no values.
func quantile(q float64, xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	rank := q * float64(len(s)-1)
	lo := math.Floor(rank)
	hi := math.Ceil(rank)
	w := rank - lo
	return s[int(lo)]*(1-w) + s[int(hi)]*w
}

// Rollups returns the latest latency roll-ups, in spec order.
func (e *Engine) Rollups() []*RollupStatus {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []*RollupStatus
	for _, r := range e.rolls {
		if st := e.rollups[r.r.Name]; st != nil {
			out = append(out, st)
		}
	}
	return out
}

package slo

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// Health rules share subexpressions: the default rules compute a broker's
// disk canary p99 three times (twice in the rule relative to the cell, once
// in the absolute one), its fsync p99 twice and the probe failure ratio per
// location twice, each over every bucket series of the fleet. With the
// embedded TSDB the engine evaluates each such subexpression once per
// cycle: a vector subexpression that occurs more than once among the
// health rules is replaced in each rule by a selector of a metric no
// scrape has, which a storage layer in front of the TSDB answers with the
// subexpression's result at the evaluation time (through the cycle's memo,
// so the first rule to need it evaluates it and the others wait for it).
// The rules' results are unchanged: a test compares every default rule
// with and without this on a synthetic fleet. Remote mode sends the rules
// as written; a Prometheus-compatible store has its own caches.

// sharedMetricPrefix names the metrics that stand for shared
// subexpressions; sharedNameLabel carries a result series' own metric
// name through the substitution.
const (
	sharedMetricPrefix = "__vigil_shared_"
	sharedNameLabel    = "__vigil_shared_name__"
)

// sharedExprs is the outcome of factoring a set of expressions.
type sharedExprs struct {
	// exprs are the shared subexpressions, by index.
	exprs []string
	// rewritten are the input expressions, each shared subexpression
	// replaced by its selector (an expression without one is unchanged).
	rewritten []string
}

// factorShared finds the vector subexpressions (aggregations, function
// calls, binary operations) that occur at least twice in exprs, the
// largest first, and rewrites exprs to read them from their selectors.
// Subqueries are left whole: their inner expressions are evaluated at
// other times than the query's.
func factorShared(exprs []string) (*sharedExprs, error) {
	parsed := make([]parser.Expr, len(exprs))
	count := map[string]int{}
	for i, s := range exprs {
		e, err := promParser.ParseExpr(s)
		if err != nil {
			return nil, err
		}
		parsed[i] = e
		walkShareable(e, func(n parser.Expr) bool { count[n.String()]++; return true })
	}
	out := &sharedExprs{rewritten: slices.Clone(exprs)}
	index := map[string]int{}
	for i, e := range parsed {
		changed := false
		e = rewriteShareable(e, func(n parser.Expr) parser.Expr {
			k := n.String()
			if count[k] < 2 {
				return nil
			}
			j, ok := index[k]
			if !ok {
				j = len(out.exprs)
				index[k] = j
				out.exprs = append(out.exprs, k)
			}
			changed = true
			return sharedSelector(j)
		})
		if changed {
			out.rewritten[i] = e.String()
		}
	}
	return out, nil
}

// shareable reports whether n may stand for a shared subexpression: a
// vector-valued aggregation, call or binary operation.
func shareable(n parser.Expr) bool {
	switch n.(type) {
	case *parser.AggregateExpr, *parser.Call, *parser.BinaryExpr:
		return n.Type() == parser.ValueTypeVector
	}
	return false
}

// walkShareable calls f on every shareable node of e, outermost first,
// descending into a node's operands only while f returns true; it does not
// enter subqueries.
func walkShareable(e parser.Expr, f func(parser.Expr) bool) {
	if e == nil {
		return
	}
	if shareable(e) && !f(e) {
		return
	}
	switch n := e.(type) {
	case *parser.AggregateExpr:
		walkShareable(n.Expr, f)
		walkShareable(n.Param, f)
	case *parser.BinaryExpr:
		walkShareable(n.LHS, f)
		walkShareable(n.RHS, f)
	case *parser.Call:
		for _, a := range n.Args {
			walkShareable(a, f)
		}
	case *parser.ParenExpr:
		walkShareable(n.Expr, f)
	case *parser.UnaryExpr:
		walkShareable(n.Expr, f)
	}
}

// rewriteShareable replaces, outermost first, every shareable node of e
// for which f returns a replacement, and returns the new root.
func rewriteShareable(e parser.Expr, f func(parser.Expr) parser.Expr) parser.Expr {
	if e == nil {
		return nil
	}
	if shareable(e) {
		if r := f(e); r != nil {
			return r
		}
	}
	switch n := e.(type) {
	case *parser.AggregateExpr:
		n.Expr = rewriteShareable(n.Expr, f)
		n.Param = rewriteShareable(n.Param, f)
	case *parser.BinaryExpr:
		n.LHS = rewriteShareable(n.LHS, f)
		n.RHS = rewriteShareable(n.RHS, f)
	case *parser.Call:
		for i := range n.Args {
			n.Args[i] = rewriteShareable(n.Args[i], f)
		}
	case *parser.ParenExpr:
		n.Expr = rewriteShareable(n.Expr, f)
	case *parser.UnaryExpr:
		n.Expr = rewriteShareable(n.Expr, f)
	}
	return e
}

// sharedSelector is what stands for shared subexpression j: its selector,
// with each series' own metric name (carried in sharedNameLabel) put back
// and the helper label dropped, so that the result is the
// subexpression's, labels and all.
func sharedSelector(j int) parser.Expr {
	s := fmt.Sprintf(`label_replace(label_replace(%s%d, "__name__", "$1", %q, "(.*)"), %q, "", "", "")`,
		sharedMetricPrefix, j, sharedNameLabel, sharedNameLabel)
	e, err := promParser.ParseExpr(s)
	if err != nil {
		panic("slo: shared selector does not parse: " + err.Error()) // a constant expression
	}
	return e
}

// sharedIndex returns j when ms select shared subexpression j by name.
func sharedIndex(ms []*labels.Matcher) (int, bool) {
	for _, m := range ms {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual && strings.HasPrefix(m.Value, sharedMetricPrefix) {
			j, err := strconv.Atoi(strings.TrimPrefix(m.Value, sharedMetricPrefix))
			return j, err == nil
		}
	}
	return 0, false
}

// sharedQueryable serves the shared subexpressions' selectors in front of
// the raw metrics' storage.
type sharedQueryable struct {
	storage.Queryable
	exprs []string
}

type memoKey struct{}

// withMemo returns ctx carrying the cycle's memo, which evaluates the
// shared subexpressions.
func withMemo(ctx context.Context, m Querier) context.Context {
	return context.WithValue(ctx, memoKey{}, m)
}

func (q *sharedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	base, err := q.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return &sharedQuerier{Querier: base, exprs: q.exprs}, nil
}

type sharedQuerier struct {
	storage.Querier
	exprs []string
}

// Select implements storage.Querier: a shared subexpression's selector
// gets the subexpression's result at the selection's end (the evaluation
// time of the instant query whose selector it is), one sample per series.
func (q *sharedQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	j, ok := sharedIndex(ms)
	if !ok {
		return q.Querier.Select(ctx, sortSeries, hints, ms...)
	}
	memo, _ := ctx.Value(memoKey{}).(Querier)
	if j >= len(q.exprs) || memo == nil || hints == nil {
		return storage.ErrSeriesSet(fmt.Errorf("%s%d: no shared subexpression here (they exist only in a health rule's evaluation)", sharedMetricPrefix, j))
	}
	t := hints.End
	res, err := memo.Instant(ctx, q.exprs[j], time.UnixMilli(t))
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	name := sharedMetricPrefix + strconv.Itoa(j)
	out := make([]storage.Series, 0, len(res))
	for _, s := range res {
		if len(s.Points) == 0 {
			continue
		}
		b := labels.NewBuilder(s.Labels)
		if n := s.Labels.Get(labels.MetricName); n != "" {
			b.Set(sharedNameLabel, n)
		}
		b.Set(labels.MetricName, name)
		l := b.Labels()
		if !matchAll(ms, l) {
			continue
		}
		out = append(out, storage.NewListSeries(l, []chunks.Sample{fSample{t: t, f: s.Points[0].V}}))
	}
	sort.Slice(out, func(a, b int) bool { return labels.Compare(out[a].Labels(), out[b].Labels()) < 0 })
	return &listSeriesSet{series: out, i: -1}
}

func matchAll(ms []*labels.Matcher, l labels.Labels) bool {
	for _, m := range ms {
		if !m.Matches(l.Get(m.Name)) {
			return false
		}
	}
	return true
}

// fSample is a float sample of a shared subexpression's series.
type fSample struct {
	t int64
	f float64
}

func (s fSample) T() int64                      { return s.t }
func (s fSample) ST() int64                     { return 0 }
func (s fSample) F() float64                    { return s.f }
func (s fSample) H() *histogram.Histogram       { return nil }
func (s fSample) FH() *histogram.FloatHistogram { return nil }
func (s fSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fSample) Copy() chunks.Sample           { return s }

// listSeriesSet is a storage.SeriesSet over a sorted slice.
type listSeriesSet struct {
	series []storage.Series
	i      int
}

func (l *listSeriesSet) Next() bool                        { l.i++; return l.i < len(l.series) }
func (l *listSeriesSet) At() storage.Series                { return l.series[l.i] }
func (l *listSeriesSet) Err() error                        { return nil }
func (l *listSeriesSet) Warnings() annotations.Annotations { return nil }

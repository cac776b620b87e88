package slo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
)

// Series is one labelled result of a query: one point for an instant
// query, one per step for a range query.
type Series struct {
	Labels labels.Labels
	Points []Point
}

// Point is a sample of a query result.
type Point struct {
	T int64 // milliseconds since the epoch
	V float64
}

// Querier evaluates PromQL over the raw metrics: the embedded TSDB
// (LocalQuerier) or a Prometheus-compatible HTTP API (RemoteQuerier).
type Querier interface {
	// Instant evaluates expr at t; the result must be an instant vector
	// (or a scalar, returned as one series without labels).
	Instant(ctx context.Context, expr string, t time.Time) ([]Series, error)
	// Range evaluates expr at start, start+step, ... up to end.
	Range(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error)
}

// NewPromQLEngine returns the PromQL engine the package uses: up to 50M
// samples per query, 2 minute timeout, 5 minute lookback, @ and negative
// offsets enabled.
func NewPromQLEngine(logger *slog.Logger) *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{
		Logger: logger, MaxSamples: 50_000_000, Timeout: 2 * time.Minute, LookbackDelta: 5 * time.Minute,
		EnableAtModifier: true, EnableNegativeOffset: true, Parser: promParser,
	})
}

// LocalQuerier evaluates with the real PromQL engine over a storage (the
// embedded TSDB).
type LocalQuerier struct {
	Engine *promql.Engine
	Store  storage.Queryable
}

// Instant implements Querier.
func (q *LocalQuerier) Instant(ctx context.Context, expr string, t time.Time) ([]Series, error) {
	qry, err := q.Engine.NewInstantQuery(ctx, q.Store, nil, expr, t)
	if err != nil {
		return nil, err
	}
	defer qry.Close()
	return fromResult(qry.Exec(ctx))
}

// Range implements Querier.
func (q *LocalQuerier) Range(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	qry, err := q.Engine.NewRangeQuery(ctx, q.Store, nil, expr, start, end, step)
	if err != nil {
		return nil, err
	}
	defer qry.Close()
	return fromResult(qry.Exec(ctx))
}

func fromResult(r *promql.Result) ([]Series, error) {
	if r.Err != nil {
		return nil, r.Err
	}
	switch v := r.Value.(type) {
	case promql.Vector:
		out := make([]Series, 0, len(v))
		for _, s := range v {
			if s.H != nil {
				continue
			}
			out = append(out, Series{Labels: s.Metric, Points: []Point{{T: s.T, V: s.F}}})
		}
		return out, nil
	case promql.Scalar:
		return []Series{{Labels: labels.EmptyLabels(), Points: []Point{{T: v.T, V: v.V}}}}, nil
	case promql.Matrix:
		out := make([]Series, 0, len(v))
		for _, s := range v {
			ps := make([]Point, len(s.Floats))
			for i, f := range s.Floats {
				ps[i] = Point{T: f.T, V: f.F}
			}
			out = append(out, Series{Labels: s.Metric, Points: ps})
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unexpected PromQL result type %s", r.Value.Type())
	}
}

// RemoteQuerier evaluates through the HTTP query API of Prometheus or a
// compatible store (Thanos, Mimir, VictoriaMetrics): /api/v1/query and
// /api/v1/query_range under URL.
type RemoteQuerier struct {
	URL    string // e.g. http://prometheus:9090 (or a Mimir prefix such as http://mimir/prometheus)
	Client *http.Client
	// Header is added to every request (e.g. X-Scope-OrgID for Mimir,
	// Authorization).
	Header http.Header
}

// Instant implements Querier.
func (q *RemoteQuerier) Instant(ctx context.Context, expr string, t time.Time) ([]Series, error) {
	v := url.Values{"query": {expr}, "time": {formatTime(t)}}
	return q.do(ctx, "/api/v1/query", v)
}

// Range implements Querier.
func (q *RemoteQuerier) Range(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	v := url.Values{"query": {expr}, "start": {formatTime(start)}, "end": {formatTime(end)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	return q.do(ctx, "/api/v1/query_range", v)
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

type apiResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

type apiSeries struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`
	Values [][]any           `json:"values"`
}

func (q *RemoteQuerier) do(ctx context.Context, path string, v url.Values) ([]Series, error) {
	cl := q.Client
	if cl == nil {
		cl = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(q.URL, "/")+path, strings.NewReader(v.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, vs := range q.Header {
		for _, x := range vs {
			req.Header.Add(k, x)
		}
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%s: HTTP %s: %.200s", path, resp.Status, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	switch r.Data.ResultType {
	case "scalar":
		var pair []any
		if err := json.Unmarshal(r.Data.Result, &pair); err != nil {
			return nil, err
		}
		pt, err := parsePair(pair)
		if err != nil {
			return nil, err
		}
		return []Series{{Labels: labels.EmptyLabels(), Points: []Point{pt}}}, nil
	case "vector", "matrix":
		var ss []apiSeries
		if err := json.Unmarshal(r.Data.Result, &ss); err != nil {
			return nil, err
		}
		out := make([]Series, 0, len(ss))
		for _, s := range ss {
			se := Series{Labels: labels.FromMap(s.Metric)}
			if s.Value != nil {
				pt, err := parsePair(s.Value)
				if err != nil {
					return nil, err
				}
				se.Points = []Point{pt}
			}
			for _, pair := range s.Values {
				pt, err := parsePair(pair)
				if err != nil {
					return nil, err
				}
				se.Points = append(se.Points, pt)
			}
			if len(se.Points) > 0 {
				out = append(out, se)
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%s: unexpected result type %q", path, r.Data.ResultType)
	}
}

func parsePair(pair []any) (Point, error) {
	if len(pair) != 2 {
		return Point{}, fmt.Errorf("bad sample %v", pair)
	}
	ts, ok := pair[0].(float64)
	if !ok {
		return Point{}, fmt.Errorf("bad timestamp %v", pair[0])
	}
	s, ok := pair[1].(string)
	if !ok {
		return Point{}, fmt.Errorf("bad value %v", pair[1])
	}
	var f float64
	switch s {
	case "NaN":
		f = math.NaN()
	case "+Inf":
		f = math.Inf(1)
	case "-Inf":
		f = math.Inf(-1)
	default:
		var err error
		if f, err = strconv.ParseFloat(s, 64); err != nil {
			return Point{}, err
		}
	}
	return Point{T: int64(math.Round(ts * 1000)), V: f}, nil
}

// memoQuerier shares the results of identical instant queries within one
// evaluation cycle (SLOs over the same histogram share its _count, health
// rules repeat subexpressions across rules).
type memoQuerier struct {
	q  Querier
	mu sync.Mutex
	m  map[string]*memoEntry
}

type memoEntry struct {
	once sync.Once
	ss   []Series
	err  error
}

func newMemo(q Querier) *memoQuerier { return &memoQuerier{q: q, m: map[string]*memoEntry{}} }

// Instant implements Querier; callers must not modify the result.
func (m *memoQuerier) Instant(ctx context.Context, expr string, t time.Time) ([]Series, error) {
	key := strconv.FormatInt(t.UnixMilli(), 10) + "\xff" + expr
	m.mu.Lock()
	e := m.m[key]
	if e == nil {
		e = &memoEntry{}
		m.m[key] = e
	}
	m.mu.Unlock()
	e.once.Do(func() { e.ss, e.err = m.q.Instant(ctx, expr, t) })
	return e.ss, e.err
}

// Range implements Querier (not shared: range queries are backfills).
func (m *memoQuerier) Range(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	return m.q.Range(ctx, expr, start, end, step)
}

package slo

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// TSDBOptions configures the embedded TSDB.
type TSDBOptions struct {
	// Retention is how long samples are kept. Default 30d: longer than
	// the default SLO windows, whose cumulative counts it must hold.
	Retention time.Duration
	// MaxBytes bounds the size of the blocks (0: no bound).
	MaxBytes int64
	// OutOfOrder accepts samples up to this much older than the newest,
	// which backfilling recorded series after a restart needs. Default 1d.
	OutOfOrder time.Duration
	// Isolation keeps Prometheus' append isolation: a query sees all or
	// none of each commit (one scrape of one target). Default off, as in
	// Mimir's ingesters: it keeps a ring of append IDs per series (about
	// 65 bytes per series, 8% of the TSDB head's heap in `vigil bench
	// slo`) and bookkeeping on every commit and query, and the engine does
	// not rely on it: an SLI's good and total events are separate queries
	// anyway, and a health rule that sees half a scrape at one evaluation
	// sees all of it at the next.
	Isolation bool
	Logger    *slog.Logger
}

// TSDB is the embedded Prometheus TSDB with series creation serialised.
//
// Prometheus v0.316's head numbers a new series before it adds the series
// to its postings lists, and repairs the order in place when two appenders
// add theirs the other way round (index.MemPostings.addFor); a query that
// is reading that postings list at the same moment reads elements being
// swapped: a data race, and a series a query can miss
// (prometheus/prometheus#15317, open). The engine evaluates SLOs in
// parallel, each recording its series, while the scraper appends and
// queries run, so this wrapper makes every Append of one TSDB take one
// lock: series are then numbered and indexed in the same order, the
// postings lists only ever grow at their ends, and a reader never sees an
// element change. Appending a sample to the head is a few hundred
// nanoseconds of mostly locked work already; the lock costs little (see
// docs/benchmarks.md §8).
type TSDB struct {
	*tsdb.DB
	appendMu sync.Mutex
}

// Appender implements storage.Appendable.
func (d *TSDB) Appender(ctx context.Context) storage.Appender {
	return &serialAppender{Appender: d.DB.Appender(ctx), mu: &d.appendMu}
}

// serialAppender is an appender whose calls that may create a series hold
// its TSDB's append lock.
type serialAppender struct {
	storage.Appender
	mu *sync.Mutex
}

func (a *serialAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.Appender.Append(ref, l, t, v)
}

func (a *serialAppender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.Appender.AppendHistogram(ref, l, t, h, fh)
}

func (a *serialAppender) AppendSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64) (storage.SeriesRef, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.Appender.AppendSTZeroSample(ref, l, t, st)
}

func (a *serialAppender) AppendHistogramSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.Appender.AppendHistogramSTZeroSample(ref, l, t, st, h, fh)
}

// OpenTSDB opens (or creates) the embedded Prometheus TSDB in dir.
func OpenTSDB(dir string, o TSDBOptions) (*TSDB, error) {
	opts := tsdb.DefaultOptions()
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.OutOfOrder <= 0 {
		o.OutOfOrder = 24 * time.Hour
	}
	opts.RetentionDuration = o.Retention.Milliseconds()
	opts.MaxBytes = o.MaxBytes
	opts.OutOfOrderTimeWindow = o.OutOfOrder.Milliseconds()
	opts.IsolationDisabled = !o.Isolation
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db, err := tsdb.Open(dir, logger, nil, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("opening the SLO engine's TSDB in %s: %w", dir, err)
	}
	return &TSDB{DB: db}, nil
}

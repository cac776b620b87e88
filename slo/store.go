package slo

import (
	"fmt"
	"log/slog"
	"time"

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

// OpenTSDB opens (or creates) the embedded Prometheus TSDB in dir.
func OpenTSDB(dir string, o TSDBOptions) (*tsdb.DB, error) {
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
	return db, nil
}

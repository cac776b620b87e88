package slo

import (
	"context"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// appendBatch is the most samples the engine appends to the record store
// in one commit.
//
// Samples more than an hour older than the newest in the TSDB head (a
// catch-up after a restart of over an hour, a backfill) take its
// out-of-order path. There, in Prometheus v0.316, every series that begins
// a new out-of-order chunk allocates a slice as long as the number of
// chunks begun so far in the same commit (oooMmapMarkersCount is not
// reset within a commit), so a commit of n such series allocates about 8n²
// bytes: 18 GB for the 48,000 recorded series of one per-broker SLO over
// 12,000 brokers. Commits of at most appendBatch samples keep that under
// 8 MB each; in order, they cost one more WAL record per batch.
var appendBatch = 1000

// batchAppender is an appender of the record store that commits every
// appendBatch samples; Commit commits the rest, Rollback drops only the
// samples since the last commit.
type batchAppender struct {
	storage.Appender
	ctx context.Context
	st  storage.Appendable
	n   int
}

func newBatchAppender(ctx context.Context, st storage.Appendable) *batchAppender {
	return &batchAppender{Appender: st.Appender(ctx), ctx: ctx, st: st}
}

// Append implements storage.Appender. Refs returned before a commit stay
// valid after it.
func (b *batchAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	if b.n >= appendBatch {
		err := b.Appender.Commit()
		b.Appender, b.n = b.st.Appender(b.ctx), 0
		if err != nil {
			return 0, err
		}
	}
	b.n++
	return b.Appender.Append(ref, l, t, v)
}

package log

import (
	"github.com/twmb/franz-go/pkg/kerr"
)

// Maintain applies the time-based policies; the broker calls it
// periodically (log.retention.check.interval.ms). In order, it:
//
//   - rolls the active segment if it is non-empty and its first append is
//     older than segment.ms;
//   - deletes the oldest segments whose largest timestamp is older than
//     retention.ms (stopping at the first segment that is not);
//   - deletes the oldest segments while the log is larger than
//     retention.bytes by at least the segment's size;
//   - expires idle idempotent producers (Config.ProducerExpiration);
//   - fsyncs if the oldest unflushed append is older than flush.ms;
//   - checkpoints the high watermark if it changed.
//
// As in Kafka, the active segment is deleted only when it is expired and
// not empty: the log is rolled first, so the log always has an active
// segment starting at the log end offset. Deleting segments moves the log
// start offset to the first remaining segment's base offset. It returns the
// number of segments deleted.
func (l *Log) Maintain() (deleted int, err error) {
	if deleted, err = l.maintainSegments(); err != nil {
		return deleted, err
	}
	return deleted, l.writeHighWatermark()
}

// maintainSegments is Maintain's work under mu (which it takes): rolls,
// deletions, producer expiry and the flush.ms policy.
func (l *Log) maintainSegments() (deleted int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	cfg := l.cfg.Load()
	nowMs := l.now().UnixMilli()

	if seg := l.active(); seg.size.Load() > 0 && segmentExpired(seg, cfg, nowMs) {
		if err := l.rollLocked(); err != nil {
			return 0, err
		}
	}

	if cfg.RetentionMs >= 0 {
		retMs := cfg.RetentionMs.Milliseconds()
		n := l.countDeletable(func(s *segment) bool { return nowMs-s.largestTimestamp() > retMs })
		if n > 0 {
			if err := l.deleteOldestLocked(n, "retention.ms"); err != nil {
				return deleted, err
			}
			deleted += n
		}
	}

	if cfg.RetentionBytes >= 0 {
		diff := l.Size() - cfg.RetentionBytes
		n := l.countDeletable(func(s *segment) bool {
			if diff-s.size.Load() < 0 {
				return false
			}
			diff -= s.size.Load()
			return true
		})
		if n > 0 {
			if err := l.deleteOldestLocked(n, "retention.bytes"); err != nil {
				return deleted, err
			}
			deleted += n
		}
	}

	if n := l.producers.expire(nowMs, cfg.ProducerExpiration.Milliseconds()); n > 0 {
		l.logger.Debug("expired idle producers", "dir", l.dir, "producers", n)
	}

	if l.unflushed > 0 && cfg.FlushMs >= 0 && nowMs-l.firstUnflushed >= cfg.FlushMs.Milliseconds() {
		if err := l.flushLocked(); err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// countDeletable counts the oldest segments, in order, for which del
// holds, as Kafka's UnifiedLog.deletableSegments: it stops at the first
// segment for which it does not, and never counts an empty last segment.
func (l *Log) countDeletable(del func(*segment) bool) int {
	segs := l.segments()
	n := 0
	for i, s := range segs {
		if i == len(segs)-1 && s.size.Load() == 0 {
			break
		}
		if !del(s) {
			break
		}
		n++
	}
	return n
}

// DeleteRecordsBefore moves the log start offset up to offset and deletes
// segments wholly below it. It returns the new log start offset. offset must
// be at most the log end offset (else OFFSET_OUT_OF_RANGE); an offset at or
// below the current start offset changes nothing. Deleting up to the log end
// rolls the active segment (if not empty) and deletes all the others, so the
// log is left with one empty segment starting at the end offset.
//
// The new start offset is checkpointed before segments are deleted; records
// below it are no longer readable (Read returns OFFSET_OUT_OF_RANGE) even
// when they share a segment or a batch with records above it.
func (l *Log) DeleteRecordsBefore(offset int64) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	start, end := l.start.Load(), l.end.Load()
	if offset < 0 || offset > end {
		return start, errorf(kerr.OffsetOutOfRange, "cannot delete records before offset %d: the log holds offsets [%d, %d)", offset, start, end)
	}
	if offset <= start {
		return start, nil
	}
	if err := l.setStartOffsetLocked(offset); err != nil {
		return start, err
	}
	if offset == end {
		if err := l.rollLocked(); err != nil {
			return offset, err
		}
	}
	segs := l.segments()
	n := 0
	for n+1 < len(segs) && segs[n+1].base <= offset {
		n++
	}
	if n > 0 {
		if err := l.deleteOldestLocked(n, "delete records"); err != nil {
			return offset, err
		}
	}
	return offset, nil
}

// setStartOffsetLocked moves the log start offset up, checkpointing it and
// the leader epoch cache (whose entries before it are folded into one).
func (l *Log) setStartOffsetLocked(off int64) error {
	if off <= l.start.Load() {
		return nil
	}
	if err := l.writeStartOffsetLocked(off); err != nil {
		return err
	}
	l.start.Store(off)
	if l.epochs.truncateFromStart(off) {
		return l.writeEpochsLocked()
	}
	return nil
}

// deleteOldestLocked deletes the n oldest segments, rolling first if that
// would take the active segment. The start offset moves (and is
// checkpointed) before any file is touched, so a crash in between leaves
// segments that Open deletes. The files are renamed to *.deleted at once
// and removed when the last reader of the segment is done.
func (l *Log) deleteOldestLocked(n int, reason string) error {
	if n >= len(l.segments()) {
		if err := l.rollLocked(); err != nil {
			return err
		}
	}
	segs := l.segments()
	victims, rest := segs[:n], segs[n:]
	if err := l.setStartOffsetLocked(rest[0].base); err != nil {
		return err
	}
	for _, s := range victims {
		if err := s.markDeleted(); err != nil {
			return l.fail("deleting a segment", err)
		}
	}
	l.publishSegments(append([]*segment(nil), rest...))
	var bytes int64
	for _, s := range victims {
		bytes += s.size.Load()
		s.release()
	}
	l.logger.Info("deleted segments", "dir", l.dir, "reason", reason, "segments", n, "bytes", bytes,
		"log_start_offset", l.start.Load())
	l.pruneSnapshots(l.end.Load())
	return nil
}

package log

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// highWatermarkFile holds the partition's high watermark (Kafka keeps one
// replication-offset-checkpoint per log directory; one small file per
// partition is simpler here).
const highWatermarkFile = "high-watermark-checkpoint"

// HighWatermark returns the high watermark: the offset below which every
// record is committed (replicated to every in-sync replica), the largest
// offset a consumer may read up to. It is what was last set with
// SetHighWatermark (or recovered from the high-watermark-checkpoint file,
// or lowered by a truncation), raised to the log start offset if retention
// or DeleteRecordsBefore moved the start past it, and it is never above the
// log end offset. A log whose high watermark was never set has it at its
// log start offset.
//
// How the broker reads with it: a consumer's fetch passes
// HighWatermark() as Read's maxOffset, a follower's fetch passes
// EndOffset() (followers replicate everything, committed or not). A
// partition without replication (a single broker, the ISR is the leader
// alone) may keep passing EndOffset() to consumers, as the broker does
// today, or, as Kafka's leader does when it is the only in-sync replica,
// call SetHighWatermark(info.LastOffset+1) after each append; both give
// consumers everything appended.
//
// It takes no lock.
func (l *Log) HighWatermark() int64 {
	return max(l.hw.Load(), l.start.Load())
}

// SetHighWatermark moves the high watermark up to hw, clamped to the log end
// offset, and reports whether it advanced. The high watermark never moves
// back here: a value at or below the current one (or below the log start
// offset) changes nothing. Only TruncateTo and TruncateFullyAndStartAt
// lower it.
//
// The new value is kept in memory; Flush, Maintain and Close write it to
// the high-watermark-checkpoint file (Kafka writes its checkpoint
// periodically too), so after a crash the recovered high watermark may be
// older (lower), never higher than what was set. SetHighWatermark takes a
// small lock of its own, never the writer lock, so appends and fsyncs do
// not delay it. It does nothing on a closed log.
func (l *Log) SetHighWatermark(hw int64) (advanced bool) {
	l.hwMu.Lock()
	defer l.hwMu.Unlock()
	if l.closed.Load() {
		return false
	}
	hw = min(hw, l.end.Load())
	if hw <= l.HighWatermark() {
		return false
	}
	l.hw.Store(hw)
	l.hwUsed.Store(true)
	return true
}

// lowerEndLocked publishes a lower log end offset after a
// truncation and lowers the high watermark to it if it was above. Under
// mu.
func (l *Log) lowerEndLocked(end int64) {
	l.hwMu.Lock()
	if l.hw.Load() > end {
		l.hw.Store(end)
	}
	l.end.Store(end)
	l.hwMu.Unlock()
}

// writeHighWatermark checkpoints the high watermark if it was ever set and
// changed since the last checkpoint. A log whose high watermark is not used
// (no replication) never writes the file. Callers may hold mu (flushes,
// truncations) or not (Maintain: the checkpoint is two fsyncs, which under
// heavy write-back took 0.3-2.5 s on the benchmark machine, and holding mu
// for them stalled every append to the partition that long). Its own lock
// orders the writes, and each reads the high watermark under it, so the
// file ends with a value read after any lowering whose caller then wrote
// it.
func (l *Log) writeHighWatermark() error {
	if !l.hwUsed.Load() {
		return nil
	}
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	if l.closed.Load() {
		return nil // Close wrote the last one; the directory may be gone
	}
	hw := l.HighWatermark()
	if hw == l.hwWritten {
		return nil
	}
	if err := writeFileAtomic(l.fs, filepath.Join(l.dir, highWatermarkFile), encodeHighWatermark(hw)); err != nil {
		return l.fail("writing the high watermark checkpoint", err)
	}
	l.hwWritten = hw
	return nil
}

// recoverHighWatermark loads the high watermark checkpoint on Open and
// clamps it to [start, end]. Without a (readable) checkpoint the high
// watermark is the log start offset, as Kafka starts from 0 and clamps.
func (l *Log) recoverHighWatermark(start, end int64) {
	path := filepath.Join(l.dir, highWatermarkFile)
	hw := start
	b, err := readFile(l.fs, path)
	if err == nil {
		var ck int64
		if ck, err = decodeHighWatermark(b); err == nil {
			hw = min(max(ck, start), end)
			l.hwUsed.Store(true)
			l.hwWritten = ck
			if ck > end {
				l.logger.Warn("the high watermark checkpoint is beyond the recovered log end; lowering it",
					"dir", l.dir, "high_watermark", ck, "end_offset", end)
			}
		}
	}
	if err != nil && !isNotExist(err) {
		l.logger.Warn("ignoring an unreadable high watermark checkpoint; the high watermark starts at the log start offset",
			"file", path, "err", err)
	}
	l.hw.Store(hw)
}

// The high watermark checkpoint: a version line (0) and the offset.
func encodeHighWatermark(hw int64) []byte { return fmt.Appendf(nil, "0\n%d\n", hw) }

func decodeHighWatermark(b []byte) (int64, error) {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "0" {
		return 0, fmt.Errorf("high watermark checkpoint: unexpected contents %q", b)
	}
	hw, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || hw < 0 {
		return 0, fmt.Errorf("high watermark checkpoint: bad offset %q", lines[1])
	}
	return hw, nil
}

package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
)

// truncationFile is the truncation record: it exists only while a
// truncation runs, and says what Open must finish if it finds it.
const truncationFile = "truncation-in-progress"

// TruncateTo removes every record at and after offset, as a follower does
// with the divergent tail of its log after a leader change (Kafka's
// UnifiedLog.truncateTo). Batches are never split: a batch that holds
// offset is removed whole, with everything after it. The log end offset
// becomes the offset after the last batch kept, which is offset itself
// when offset is a batch boundary (as the end offsets of leader epochs and
// high watermarks are) and lower otherwise; when the cut empties a segment
// that begins after the last batch kept (a compacted log's gap), it is that
// segment's base offset. It is never above offset: read EndOffset
// afterwards, and fetch from there (Kafka sets the end to offset itself,
// which only differs inside a batch, never the case of its truncations).
//
//   - offset >= EndOffset: nothing is removed, but leader epochs recorded at
//     or after the end offset (by AssignLeaderEpoch, with no batch written
//     since) are dropped from the epoch cache, as Kafka does.
//   - offset <= StartOffset: the log is emptied and restarts at offset, as
//     TruncateFullyAndStartAt(offset); the start offset moves back if
//     offset is below it. So does a truncation whose last kept batch would
//     end below the log start offset (a batch straddling both): the log
//     restarts empty at its start offset.
//   - otherwise segments wholly at or after the new end are deleted, the
//     segment holding it is cut there (file and indexes), the leader epoch
//     cache loses the epochs that start at or after it (truncateFromEnd),
//     the producer state is rebuilt as of the new end (the newest producer
//     snapshot at or below it plus the batch headers after it; snapshots
//     above it are removed), the cleaner checkpoint is lowered to it, and
//     the high watermark too if it was above (an unclean leader election
//     truncates below the high watermark).
//
// A cleaning of the log in progress is stopped first (it returns without an
// error and the next one starts over), and cleanings wait until the
// truncation is done. Concurrent readers are safe: a read that started
// before the truncation may still return the batches it removes (whole and
// valid: a segment being cut is cut on disk only after the reads using it
// are done, so appends block behind the slowest such read), a read that
// starts after it sees the new end, and a read beyond it fails with
// OFFSET_OUT_OF_RANGE. Wait channels are woken.
//
// Crash safety: a truncation record (truncation-in-progress, written
// atomically) is the first change on disk and the last one removed, after
// the cut segment is fsynced, the removed files are renamed away, the
// checkpoints are rewritten and the directory is fsynced. If Open finds
// it, it completes the truncation, so after a crash the log ends at or
// below the truncation point; a crash before the record is in place leaves
// the log as it was.
//
// A storage error takes the log offline (KAFKA_STORAGE_ERROR); reopening
// it completes the truncation. A negative offset fails with
// OFFSET_OUT_OF_RANGE.
func (l *Log) TruncateTo(offset int64) error {
	if offset < 0 {
		return errorf(kerr.OffsetOutOfRange, "partition log %s: cannot truncate to offset %d", l.dir, offset)
	}
	if done, err := l.truncateNothing(offset); done {
		return err
	}
	resume := l.pauseCleaning()
	defer resume()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	start, end := l.start.Load(), l.end.Load()
	if offset >= end { // another truncation came first
		if l.epochs.truncateFromEnd(end) {
			return l.writeEpochsLocked()
		}
		return nil
	}
	if offset <= start {
		return l.truncateFullyLocked(offset)
	}
	p, err := l.planTruncation(offset)
	if err != nil {
		return err
	}
	if p.end < start {
		return l.truncateFullyLocked(start)
	}
	return l.truncateLocked(offset, p)
}

// truncateNothing handles a TruncateTo at or beyond the log end offset,
// which removes no batch (and so does not stop a cleaning): it only drops
// the epochs recorded at the end. done is false if there is a tail to cut.
func (l *Log) truncateNothing(offset int64) (done bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return true, err
	}
	end := l.end.Load()
	if offset < end {
		return false, nil
	}
	if l.epochs.truncateFromEnd(end) {
		return true, l.writeEpochsLocked()
	}
	return true, nil
}

// TruncateFullyAndStartAt empties the log and restarts it at offset, as a
// follower does when the leader's log start offset moved past the
// follower's log end offset (the leader answers its fetch with
// OFFSET_OUT_OF_RANGE and a log start offset above the follower's end), or
// when AppendAsFollower gets a first batch that starts below the end of an
// empty log (Kafka's UnifiedLog.truncateFullyAndStartAt): every segment and
// producer snapshot is deleted, a new empty segment starts at offset, the
// log start offset, log end offset and high watermark become offset (the
// start offset and high watermark may move back), the leader epoch cache
// and producer state are cleared.
//
// It pauses cleaning, is safe for concurrent readers and is crash-safe like
// TruncateTo: after a crash the log is either as it was (crash before the
// truncation record was in place) or empty at offset.
func (l *Log) TruncateFullyAndStartAt(offset int64) error {
	if offset < 0 {
		return errorf(kerr.OffsetOutOfRange, "partition log %s: cannot restart at offset %d", l.dir, offset)
	}
	resume := l.pauseCleaning()
	defer resume()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	return l.truncateFullyLocked(offset)
}

// pauseCleaning stops a cleaning of the log in progress and keeps new ones
// from starting until resume is called: it takes cleanMu, which a cleaning
// holds throughout (Kafka's abortAndPauseCleaning). A cleaning notices the
// cancellation between two batches or in its I/O throttle; one that starts
// meanwhile sees truncating and returns at once.
func (l *Log) pauseCleaning() (resume func()) {
	l.truncating.Add(1)
	if cancel := l.cleanCancel.Load(); cancel != nil {
		(*cancel)(errCleaningAborted)
	}
	l.cleanMu.Lock()
	return func() {
		l.cleanMu.Unlock()
		l.truncating.Add(-1)
	}
}

// truncation is the plan of a TruncateTo that keeps part of the log: the
// segment segs[i] keeps its first size bytes, its batches below the
// truncation offset, and becomes the active segment.
type truncation struct {
	i               int
	size            int64 // bytes of segs[i] kept
	end             int64 // the new log end offset: after the last batch kept, or segs[i]'s base
	offsets         []offsetEntry
	times           []timeEntry
	maxTs, maxTsOff int64
	bytesSinceIndex int
}

// planTruncation finds where segment data ends below offset (start <
// offset < end) and what the cut segment's indexes and statistics become.
// It reads only the batch headers after the last offset index entry that
// stays.
func (l *Log) planTruncation(offset int64) (truncation, error) {
	segs := l.segments()
	i := findSegment(segs, offset)
	s := segs[i]
	p := truncation{i: i, end: s.base}

	// Index entries name the last offset of a batch: an entry stays when
	// its batch does, that is when that offset is below the truncation
	// point (every later batch ends at or after it). The batches from the
	// last entry that stays are read.
	offs := s.offsets.load()
	k := sort.Search(len(offs), func(j int) bool { return s.base+int64(offs[j].rel) >= offset })
	p.offsets = offs[:k]
	pos := int64(0)
	if k > 0 {
		pos = int64(offs[k-1].pos)
	}
	from := pos
	size := s.size.Load()
	scanTs, scanTsOff := int64(-1), s.base
	hr := newHeaderReader(s.f)
	defer hr.close()
	for pos < size {
		h, err := hr.header(pos, size)
		if errors.Is(err, errTruncated) && pos > from {
			// Damaged on disk: cut there too (recovery would), and let the
			// follower fetch it again.
			l.logger.Error("a truncation found a damaged batch before the truncation offset; cutting the log there",
				"segment", s.path(logSuffix), "position", pos, "offset", p.end, "truncation_offset", offset)
			break
		}
		if err != nil {
			return p, l.readFailed(s, pos, err)
		}
		if h.LastOffset() >= offset {
			break
		}
		if h.MaxTimestamp > scanTs {
			scanTs, scanTsOff = h.MaxTimestamp, h.LastOffset()
		}
		p.end = h.LastOffset() + 1
		pos += int64(h.Size())
	}
	p.size = pos
	p.bytesSinceIndex = int(pos - from)

	// The time index entries of the batches that stay; the last one holds
	// the largest timestamp up to the batch of the last offset entry that
	// stays (entries are added with the running maximum), the batches read
	// give the rest.
	times := s.times.load()
	kt := sort.Search(len(times), func(j int) bool { return s.base+int64(times[j].rel) >= p.end })
	p.times = times[:kt]
	p.maxTs, p.maxTsOff = scanTs, scanTsOff
	if kt > 0 && times[kt-1].ts >= scanTs {
		p.maxTs, p.maxTsOff = times[kt-1].ts, s.base+int64(times[kt-1].rel)
	}
	return p, nil
}

// truncateLocked carries out a TruncateTo plan; see TruncateTo for the
// order of the steps and why it is crash-safe.
func (l *Log) truncateLocked(offset int64, p truncation) error {
	segs := l.segments()
	old := segs[p.i]
	later := segs[p.i+1:]
	oldEnd := l.end.Load()

	// The cut segment is a new segment object on the same file (opened
	// again), so that reads holding the old object keep their sizes and
	// indexes until they are done.
	keep := old
	if p.size < old.size.Load() {
		f, err := l.fs.OpenFile(old.path(logSuffix), os.O_RDWR, 0)
		if err != nil {
			return l.fail("opening a segment to truncate it", err)
		}
		keep = newSegment(l.fs, l.dir, old.base, f, l.logger)
		keep.size.Store(p.size)
		// Reads still holding the old object must not trust bytes past
		// the cut, which appends will overwrite.
		old.verified.Store(min(old.verified.Load(), p.size))
		keep.verified.Store(old.verified.Load())
		keep.next.Store(p.end)
		keep.offsets.reset(p.offsets)
		keep.times.reset(p.times)
		keep.maxTs, keep.maxTsOff = p.maxTs, p.maxTsOff
		keep.bytesSinceIndex = p.bytesSinceIndex
		keep.lastAppendMs = old.lastAppendMs
		if p.size > 0 {
			keep.firstAppendMs = old.firstAppendMs
			keep.firstTs.Store(old.firstTs.Load())
		}
	}

	// 1. The truncation record: from here on Open completes the truncation.
	if err := writeFileAtomic(l.fs, filepath.Join(l.dir, truncationFile), encodeTruncation(offset, false)); err != nil {
		if keep != old {
			keep.release()
		}
		return l.fail("writing the truncation record", err)
	}
	// 2. Later segments go, newest first (their files are removed when
	// their last reader is done).
	for j := len(later) - 1; j >= 0; j-- {
		if err := later[j].markDeleted(); err != nil {
			if keep != old {
				keep.release()
			}
			return l.fail("deleting a segment after the truncation point", err)
		}
	}
	// 3. Publish: the epoch cache and the end first, so a reader never
	// looks for offsets in [new end, old end) in a segment that no longer
	// has them.
	epochsChanged := l.epochs.truncateFromEnd(p.end)
	l.lowerEndLocked(p.end)
	l.publishSegments(append(slices.Clip(segs[:p.i]), keep))
	for _, s := range later {
		s.release()
	}
	// 4. Cut the segment's file once no read uses the old object (it is
	// never acquired again: it left the segment list).
	if keep != old {
		old.release()
		<-old.gone
		if err := keep.f.Truncate(p.size); err != nil {
			return l.fail("truncating "+keep.path(logSuffix), err)
		}
		if err := keep.f.Sync(); err != nil {
			return l.fail("fsync of "+keep.path(logSuffix), err)
		}
		// Its index files describe the removed batches; the active
		// segment's indexes are rebuilt on Open and written when it rolls.
		for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
			if err := l.fs.Remove(keep.path(suffix)); err != nil && !isNotExist(err) {
				return l.fail("removing the index of a truncated segment", err)
			}
		}
	}
	l.unflushed, l.firstUnflushed = 0, -1
	if err := l.afterTruncationLocked(p.end, false, epochsChanged); err != nil {
		return err
	}
	l.logger.Info("truncated log", "dir", l.dir, "offset", offset, "end_offset", p.end, "previous_end_offset", oldEnd,
		"segments_deleted", len(later), "high_watermark", l.HighWatermark())
	return nil
}

// truncateFullyLocked empties the log and restarts it at offset; see
// TruncateFullyAndStartAt.
func (l *Log) truncateFullyLocked(offset int64) error {
	segs := l.segments()
	oldStart, oldEnd := l.start.Load(), l.end.Load()
	if err := writeFileAtomic(l.fs, filepath.Join(l.dir, truncationFile), encodeTruncation(offset, true)); err != nil {
		return l.fail("writing the truncation record", err)
	}
	for j := len(segs) - 1; j >= 0; j-- {
		if err := segs[j].markDeleted(); err != nil {
			return l.fail("deleting a segment", err)
		}
	}
	seg, err := createSegment(l.fs, l.dir, offset, l.logger)
	if err != nil {
		return l.fail("creating the segment of an emptied log", err)
	}
	// Publish the segment list first: a reader that still has the old
	// end offset then finds nothing below the new start (and looks again).
	epochsChanged := len(l.epochs.load()) > 0
	l.epochs.store(nil)
	l.publishSegments([]*segment{seg})
	l.hwMu.Lock()
	l.hw.Store(offset)
	l.end.Store(offset)
	l.start.Store(offset)
	l.hwMu.Unlock()
	for _, s := range segs {
		s.release()
	}
	if err := l.writeStartOffsetLocked(offset); err != nil {
		return err
	}
	l.unflushed, l.firstUnflushed = 0, -1
	if err := l.afterTruncationLocked(offset, true, epochsChanged); err != nil {
		return err
	}
	l.logger.Info("emptied log and restarted it", "dir", l.dir, "offset", offset,
		"previous_start_offset", oldStart, "previous_end_offset", oldEnd, "segments_deleted", len(segs))
	return nil
}

// afterTruncationLocked brings the producer state and the leader epoch
// (already truncated in memory), cleaner and high watermark checkpoints in
// line with a log that now ends at end (and, if full, holds nothing), makes
// it all durable and removes the truncation record.
func (l *Log) afterTruncationLocked(end int64, full, epochsChanged bool) error {
	if epochsChanged {
		if err := l.writeEpochsLocked(); err != nil {
			return err
		}
	}

	if fd := l.firstDirty.Load(); fd > end {
		l.firstDirty.Store(end)
		if full {
			l.deleteHorizon.Store(-1)
		}
		if err := writeFileAtomic(l.fs, filepath.Join(l.dir, cleanerCkptFile), encodeCleanerCheckpoint(end, l.deleteHorizon.Load())); err != nil {
			// Open lowers a checkpoint beyond the log's segments anyway.
			l.logger.Warn("writing the cleaner checkpoint after a truncation", "dir", l.dir, "err", err)
		}
	}

	snaps, err := l.listSnapshots()
	if err != nil {
		return l.fail("listing producer snapshots", err)
	}
	if full {
		for _, off := range snaps {
			if err := l.fs.Remove(snapshotPath(l.dir, off)); err != nil && !isNotExist(err) {
				return l.fail("removing a producer snapshot", err)
			}
		}
		l.producers = make(producerStates)
	} else if err := l.recoverProducers(l.segments(), snaps, end, l.now().UnixMilli(), l.cfg.Load()); err != nil {
		return l.fail("rebuilding the producer state", err)
	}

	if err := l.writeHighWatermark(); err != nil {
		return err
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return l.fail("fsync of the directory after a truncation", err)
	}
	if err := l.fs.Remove(filepath.Join(l.dir, truncationFile)); err != nil {
		return l.fail("removing the truncation record", err)
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return l.fail("fsync of the directory after a truncation", err)
	}
	l.wake()
	return nil
}

// finishTruncation completes, on Open, a truncation that a crash
// interrupted (see TruncateTo): for TruncateTo(offset) it removes every
// segment whose base offset is above offset and cuts the segment holding
// offset before the first batch that ends at or after it (removing its
// index files: it is the last segment now, whose indexes are rebuilt);
// for TruncateFullyAndStartAt(offset) it removes every segment and
// producer snapshot and writes the start offset and an empty leader epoch
// checkpoint. The rest of recovery then drops what lies beyond the new end
// from the epoch cache, the producer snapshots and the high watermark.
func (l *Log) finishTruncation() error {
	path := filepath.Join(l.dir, truncationFile)
	b, err := readFile(l.fs, path)
	if isNotExist(err) {
		return nil
	}
	var (
		offset int64
		full   bool
	)
	if err == nil {
		offset, full, err = decodeTruncation(b)
	}
	if err != nil {
		// Written atomically, so only damage gets here. A follower finds
		// its divergence again when it next fetches.
		l.logger.Error("removing an unreadable truncation record; the truncation it describes may not be complete",
			"file", path, "err", err)
		if err := l.fs.Remove(path); err != nil && !isNotExist(err) {
			return fmt.Errorf("removing %s: %w", path, err)
		}
		return nil
	}
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("listing the directory: %w", err)
	}
	var bases []int64
	for _, name := range names {
		stem, suffix, ok := splitSuffix(name)
		if !ok {
			continue
		}
		off, ok := parseOffsetName(stem)
		if !ok {
			continue
		}
		switch {
		case suffix == logSuffix:
			bases = append(bases, off)
		case suffix == snapshotSuffix && full:
			if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil && !isNotExist(err) {
				return fmt.Errorf("completing a truncation: removing %s: %w", name, err)
			}
		}
	}
	slices.Sort(bases)
	cut := int64(-1)
	for _, base := range bases {
		if full || base > offset {
			if err := l.removeSegmentFiles(base); err != nil {
				return fmt.Errorf("completing a truncation: %w", err)
			}
		} else {
			cut = base
		}
	}
	if cut >= 0 {
		if err := l.cutSegmentFile(cut, offset); err != nil {
			return fmt.Errorf("completing a truncation: %w", err)
		}
	}
	if full {
		if err := writeFileAtomic(l.fs, filepath.Join(l.dir, startOffsetFile), encodeStartOffset(offset)); err != nil {
			return fmt.Errorf("completing a truncation: writing the log start offset checkpoint: %w", err)
		}
		if err := writeFileAtomic(l.fs, filepath.Join(l.dir, leaderEpochFile), encodeEpochs(nil)); err != nil {
			return fmt.Errorf("completing a truncation: writing the leader epoch checkpoint: %w", err)
		}
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return fmt.Errorf("fsync of the directory: %w", err)
	}
	if err := l.fs.Remove(path); err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return fmt.Errorf("fsync of the directory: %w", err)
	}
	l.logger.Warn("completed a truncation that a crash interrupted", "dir", l.dir, "offset", offset, "full", full)
	return nil
}

// cutSegmentFile truncates the segment file at base before its first
// batch that ends at or after offset (or its first invalid batch) and
// removes its index files.
func (l *Log) cutSegmentFile(base, offset int64) error {
	path := filepath.Join(l.dir, offsetName(base)+logSuffix)
	size, err := l.fs.Stat(path)
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	f, err := l.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	res, err := scanBatches(f, base, size, func(h *BatchHeader, _ int64) string {
		if h.LastOffset() >= offset {
			return "at the truncation offset"
		}
		return ""
	})
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if res.validSize < size {
		if err := f.Truncate(res.validSize); err != nil {
			return fmt.Errorf("truncating %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", path, err)
		}
	}
	for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
		p := filepath.Join(l.dir, offsetName(base)+suffix)
		if err := l.fs.Remove(p); err != nil && !isNotExist(err) {
			return fmt.Errorf("removing %s: %w", p, err)
		}
	}
	return nil
}

// The truncation record: a version line (0) and "<offset> <full>", full
// being 1 for TruncateFullyAndStartAt and 0 for TruncateTo.
func encodeTruncation(offset int64, full bool) []byte {
	f := 0
	if full {
		f = 1
	}
	return fmt.Appendf(nil, "0\n%d %d\n", offset, f)
}

func decodeTruncation(b []byte) (offset int64, full bool, err error) {
	offset, f, err := decodeTwoOffsets(b, "truncation record")
	if err == nil && f != 0 && f != 1 {
		err = fmt.Errorf("truncation record: bad mode %d", f)
	}
	return offset, f == 1, err
}

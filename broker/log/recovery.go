package log

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// segmentFiles records which files of a segment exist.
type segmentFiles struct {
	log, index, timeIndex bool
}

// recover loads the log directory: it completes an interrupted swap of a
// cleaned segment or truncation, removes leftovers of interrupted
// operations, opens the segments, checks or rebuilds the indexes of the
// older segments, validates the last segment batch by batch and truncates a
// torn tail, and restores the log start offset, the high watermark, the
// leader epoch cache and the producer state. Errors are I/O errors;
// damaged data is repaired and logged.
func (l *Log) recover() error {
	if err := l.fs.MkdirAll(l.dir, 0o755); err != nil {
		return fmt.Errorf("creating the directory: %w", err)
	}
	if err := l.finishSwaps(); err != nil {
		return err
	}
	if err := l.finishTruncation(); err != nil {
		return err
	}
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("listing the directory: %w", err)
	}
	found := map[int64]*segmentFiles{}
	var snaps []int64
	for _, name := range names {
		path := filepath.Join(l.dir, name)
		if strings.HasSuffix(name, tmpSuffix) || strings.HasSuffix(name, deletedSuffix) || strings.HasSuffix(name, cleanedSuffix) {
			// Leftovers of an interrupted atomic write, segment deletion
			// or cleaning (one whose swap record was not written).
			l.logger.Info("removing leftover file", "file", path)
			if err := l.fs.Remove(path); err != nil && !isNotExist(err) {
				return fmt.Errorf("removing leftover %s: %w", path, err)
			}
			continue
		}
		stem, suffix, ok := splitSuffix(name)
		if !ok {
			continue // not the log's (the broker keeps partition metadata here)
		}
		off, ok := parseOffsetName(stem)
		if !ok {
			l.logger.Warn("ignoring a file whose name is not a 20-digit offset", "file", path)
			continue
		}
		if suffix == snapshotSuffix {
			snaps = append(snaps, off)
			continue
		}
		f := found[off]
		if f == nil {
			f = &segmentFiles{}
			found[off] = f
		}
		switch suffix {
		case logSuffix:
			f.log = true
		case indexSuffix:
			f.index = true
		case timeIndexSuffix:
			f.timeIndex = true
		}
	}

	var bases []int64
	for off, f := range found {
		if f.log {
			bases = append(bases, off)
			continue
		}
		// Indexes of a segment that is gone.
		for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
			path := filepath.Join(l.dir, offsetName(off)+suffix)
			if err := l.fs.Remove(path); err != nil && !isNotExist(err) {
				return fmt.Errorf("removing orphaned index %s: %w", path, err)
			}
		}
		l.logger.Warn("removed indexes without a segment", "dir", l.dir, "base_offset", off)
	}
	slices.Sort(bases)

	nowMs := l.now().UnixMilli()
	var segs []*segment
	for i, base := range bases {
		path := filepath.Join(l.dir, offsetName(base)+logSuffix)
		size, err := l.fs.Stat(path)
		if err != nil {
			return fmt.Errorf("stat %s: %w", path, err)
		}
		// An empty first segment is kept: the cleaner leaves one when it
		// removed every record of the first segments, and its base offset
		// is where the log starts.
		if size == 0 && i > 0 && i < len(bases)-1 {
			l.logger.Warn("removing an empty segment that is not the last one", "segment", path)
			if err := l.removeSegmentFiles(base); err != nil {
				return err
			}
			continue
		}
		f, err := l.fs.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("opening segment: %w", err)
		}
		s := newSegment(l.fs, l.dir, base, f, l.logger)
		s.size.Store(size)
		s.lastAppendMs = nowMs
		segs = append(segs, s)
		l.publishSegments(segs) // so that a failed Open closes what it opened
	}

	cfg := l.cfg.Load()
	for i := 0; i+1 < len(segs); i++ {
		if err := l.loadSegment(segs[i], segs[i+1].base, found[segs[i].base], cfg); err != nil {
			return err
		}
	}
	var epochsSeen []epochEntry
	if len(segs) > 0 {
		if epochsSeen, err = l.recoverLastSegment(segs[len(segs)-1], cfg, nowMs); err != nil {
			return err
		}
	}

	// The log start offset.
	ckStart, ckErr := l.readStartOffset()
	if ckErr != nil && !isNotExist(ckErr) {
		l.logger.Warn("ignoring an unreadable log start offset checkpoint", "dir", l.dir, "err", ckErr)
	}
	if len(segs) == 0 {
		s, err := createSegment(l.fs, l.dir, max(ckStart, 0), l.logger)
		if err != nil {
			return err
		}
		segs = []*segment{s}
		l.publishSegments(segs)
	}
	end := segs[len(segs)-1].next.Load()
	start := max(ckStart, segs[0].base)
	if start > end {
		// Data the start offset covered was lost (it was never fsynced).
		// Offsets must not go back: start an empty log at the start offset.
		l.logger.Warn("the log start offset is beyond the recovered log end; starting an empty log at the start offset",
			"dir", l.dir, "log_start_offset", start, "recovered_end_offset", end)
		l.publishSegments(nil)
		for _, s := range segs {
			s.release()
			if err := l.removeSegmentFiles(s.base); err != nil {
				return err
			}
		}
		s, err := createSegment(l.fs, l.dir, start, l.logger)
		if err != nil {
			return err
		}
		segs = []*segment{s}
		l.publishSegments(segs)
		end = start
		epochsSeen = nil
	}
	// Segments wholly below the start offset (their deletion was cut short).
	n := 0
	for n+1 < len(segs) && segs[n+1].base <= start {
		n++
	}
	below := segs[:n]
	segs = segs[n:]
	l.publishSegments(segs)
	for _, s := range below {
		s.release()
		if err := l.removeSegmentFiles(s.base); err != nil {
			return err
		}
	}
	l.start.Store(start)
	l.end.Store(end)
	l.recoverHighWatermark(start, end)
	if ckErr != nil || ckStart != start {
		if err := writeFileAtomic(l.fs, filepath.Join(l.dir, startOffsetFile), encodeStartOffset(start)); err != nil {
			return fmt.Errorf("writing the log start offset checkpoint: %w", err)
		}
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return fmt.Errorf("fsync of the directory: %w", err)
	}

	if err := l.recoverEpochs(segs, epochsSeen, start, end); err != nil {
		return err
	}
	l.loadCleanerCheckpoint()
	if fd := l.firstDirty.Load(); fd > end {
		// The tail it covered is gone (a truncation, or data that was
		// never fsynced): what is appended there next was never cleaned.
		l.firstDirty.Store(end)
		if err := writeFileAtomic(l.fs, filepath.Join(l.dir, cleanerCkptFile), encodeCleanerCheckpoint(end, l.deleteHorizon.Load())); err != nil {
			return fmt.Errorf("writing the cleaner checkpoint: %w", err)
		}
	}
	return l.recoverProducers(segs, snaps, end, nowMs, cfg)
}

// loadCleanerCheckpoint restores where the last cleaning ended. Without
// the checkpoint the whole log counts as dirty.
func (l *Log) loadCleanerCheckpoint() {
	path := filepath.Join(l.dir, cleanerCkptFile)
	b, err := readFile(l.fs, path)
	if err != nil {
		if !isNotExist(err) {
			l.logger.Warn("ignoring an unreadable cleaner checkpoint; the whole log will be cleaned again", "file", path, "err", err)
		}
		return
	}
	firstDirty, horizon, err := decodeTwoOffsets(b, "cleaner checkpoint")
	if err != nil {
		l.logger.Warn("ignoring an unreadable cleaner checkpoint; the whole log will be cleaned again", "file", path, "err", err)
		return
	}
	l.firstDirty.Store(firstDirty)
	l.deleteHorizon.Store(horizon)
}

// finishSwaps completes the swaps of cleaned segments that a crash
// interrupted: see Log.swapCleaned for the steps. A swap record
// <base>.swap says that the segments in [base, end) are being replaced by
// <base>.*.cleaned. If <base>.log.cleaned still exists, no old file was
// replaced by a new one yet: every old segment file in [base, end) is
// removed (some may already be *.deleted, removed later) and the cleaned
// files renamed into place. Otherwise the new <base>.log is in place and
// every old segment was already renamed away; only index renames may be
// left, and no segment file is removed. Either way the result is the
// cleaned segment, never a mix.
func (l *Log) finishSwaps() error {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("listing the directory: %w", err)
	}
	has := make(map[string]bool, len(names))
	for _, name := range names {
		has[name] = true
	}
	for _, name := range names {
		stem, ok := strings.CutSuffix(name, swapSuffix)
		if !ok {
			continue
		}
		base, ok := parseOffsetName(stem)
		if !ok {
			continue
		}
		if err := l.finishSwap(base, names, has); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) finishSwap(base int64, names []string, has map[string]bool) error {
	swap := swapPath(l.dir, base)
	remove := func(name string) error {
		if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil && !isNotExist(err) {
			return fmt.Errorf("completing the swap of cleaned segment %s: removing %s: %w", offsetName(base), name, err)
		}
		return nil
	}
	b, err := readFile(l.fs, swap)
	var rbase, end int64
	if err == nil {
		rbase, end, err = decodeSwapRecord(b)
		if err == nil && (rbase != base || end <= base) {
			err = fmt.Errorf("swap record of %d names the range [%d, %d)", base, rbase, end)
		}
	}
	if err != nil {
		// Written atomically, so only damage gets here: roll back.
		l.logger.Error("removing an unreadable swap record and its cleaned segment; the cleaning is rolled back",
			"file", swap, "err", err)
		for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
			if err := remove(offsetName(base) + suffix + cleanedSuffix); err != nil {
				return err
			}
		}
		return remove(filepath.Base(swap))
	}
	stem := offsetName(base)
	// Once the new log file is in place every old segment had been renamed
	// away (to *.deleted, removed below): nothing of [base, end) is touched
	// then.
	newLogInPlace := !has[stem+logSuffix+cleanedSuffix]
	for _, name := range names {
		s, suffix, ok := splitSuffix(name)
		if newLogInPlace || !ok || suffix == snapshotSuffix {
			continue
		}
		if off, ok := parseOffsetName(s); ok && off >= base && off < end {
			if err := remove(name); err != nil {
				return err
			}
		}
	}
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		if !has[stem+suffix+cleanedSuffix] {
			continue
		}
		if err := l.fs.Rename(filepath.Join(l.dir, stem+suffix+cleanedSuffix), filepath.Join(l.dir, stem+suffix)); err != nil {
			return fmt.Errorf("completing the swap of cleaned segment %s: %w", stem, err)
		}
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return fmt.Errorf("fsync of the directory: %w", err)
	}
	if err := remove(filepath.Base(swap)); err != nil {
		return err
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return fmt.Errorf("fsync of the directory: %w", err)
	}
	l.logger.Warn("completed the swap of a cleaned segment that a crash interrupted",
		"dir", l.dir, "base_offset", base, "replaced_up_to", end, "new_log_was_in_place", newLogInPlace)
	return nil
}

// removeSegmentFiles removes a segment's log and index files.
func (l *Log) removeSegmentFiles(base int64) error {
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		path := filepath.Join(l.dir, offsetName(base)+suffix)
		if err := l.fs.Remove(path); err != nil && !isNotExist(err) {
			return fmt.Errorf("removing %s: %w", path, err)
		}
	}
	return nil
}

func (l *Log) readStartOffset() (int64, error) {
	b, err := readFile(l.fs, filepath.Join(l.dir, startOffsetFile))
	if err != nil {
		return -1, err
	}
	off, err := decodeStartOffset(b)
	if err != nil {
		return -1, err
	}
	return off, nil
}

// loadSegment loads the indexes of a segment that is not the last one and
// checks them against the segment: entries in order and inside the file,
// the last offset index entry pointing at a batch ending at that offset,
// the first batch starting at the segment's base offset. Indexes that are
// missing or fail a check are rebuilt by reading the segment, validating
// every batch.
func (l *Log) loadSegment(s *segment, end int64, files *segmentFiles, cfg *Config) error {
	offs, times, next, why := l.loadIndexes(s, end, files)
	if why == "" {
		s.offsets.reset(offs)
		s.times.reset(times)
		s.next.Store(next)
		if n := len(times); n > 0 {
			s.maxTs, s.maxTsOff = times[n-1].ts, s.base+int64(times[n-1].rel)
		}
		return nil
	}
	l.logger.Warn("rebuilding the indexes of a segment", "segment", s.path(logSuffix), "reason", why)
	size := s.size.Load()
	s.offsets.reset(nil)
	s.times.reset(nil)
	s.bytesSinceIndex = 0
	res, err := scanBatches(s.f, s.base, size, func(h *BatchHeader, pos int64) string {
		if h.LastOffset() >= end {
			return fmt.Sprintf("last offset %d overlaps the next segment, which starts at %d", h.LastOffset(), end)
		}
		s.track(h, pos, cfg.IndexIntervalBytes)
		return ""
	})
	if err != nil {
		return fmt.Errorf("reading segment %s: %w", s.path(logSuffix), err)
	}
	if res.reason != "" {
		l.logger.Error("a segment that is not the last one has corrupt data; truncating it there (the offsets up to the next segment are lost)",
			"segment", s.path(logSuffix), "bytes", size-res.validSize, "position", res.validSize, "offset", res.next,
			"next_segment_base_offset", end, "reason", res.reason)
		if err := s.f.Truncate(res.validSize); err != nil {
			return fmt.Errorf("truncating %s: %w", s.path(logSuffix), err)
		}
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", s.path(logSuffix), err)
		}
		s.size.Store(res.validSize)
	}
	s.verified.Store(res.validSize) // every batch was checked
	s.next.Store(res.next)
	return s.finish()
}

// loadIndexes reads and checks a segment's index files and returns them
// with the offset after the segment's last batch; why says what is wrong
// when they cannot be used.
func (l *Log) loadIndexes(s *segment, end int64, files *segmentFiles) (offs []offsetEntry, times []timeEntry, next int64, why string) {
	if !files.index || !files.timeIndex {
		return nil, nil, 0, "an index file is missing"
	}
	size := s.size.Load()
	b, err := readFile(l.fs, s.path(indexSuffix))
	if err != nil {
		return nil, nil, 0, err.Error()
	}
	if offs, err = decodeOffsetIndex(b, s.base, size, end); err != nil {
		return nil, nil, 0, err.Error()
	}
	if b, err = readFile(l.fs, s.path(timeIndexSuffix)); err != nil {
		return nil, nil, 0, err.Error()
	}
	if times, err = decodeTimeIndex(b, s.base, end); err != nil {
		return nil, nil, 0, err.Error()
	}
	if size == 0 {
		// An empty first segment, left by the cleaner.
		if len(times) > 0 {
			return nil, nil, 0, "the time index of an empty segment has entries"
		}
		return nil, nil, s.base, ""
	}
	hr := newHeaderReader(s.f)
	defer hr.close()
	h, err := hr.header(0, size)
	if err != nil {
		return nil, nil, 0, fmt.Sprintf("reading the first batch: %v", err)
	}
	// The cleaner may have removed the first batches: a cleaned segment
	// keeps the name (base offset) of the first segment it replaced.
	if h.Magic != 2 || h.BaseOffset < s.base {
		return nil, nil, 0, fmt.Sprintf("the first batch has magic %d and base offset %d, want 2 and at least %d", h.Magic, h.BaseOffset, s.base)
	}
	// The time index ends with the segment's max timestamp, which is at
	// least that of any batch.
	maxSeen := h.MaxTimestamp
	if n := len(offs); n > 0 {
		e := offs[n-1]
		h, err := hr.header(int64(e.pos), size)
		if err != nil {
			return nil, nil, 0, fmt.Sprintf("reading the batch of the last index entry: %v", err)
		}
		if h.Magic != 2 || h.LastOffset() != s.base+int64(e.rel) {
			return nil, nil, 0, fmt.Sprintf("the last index entry maps offset %d to position %d, where a batch ends at offset %d", s.base+int64(e.rel), e.pos, h.LastOffset())
		}
		maxSeen = max(maxSeen, h.MaxTimestamp)
	}
	// The batches after the last index entry (at most about
	// index.interval.bytes of them) must chain to the end of the file and
	// stay below the next segment.
	pos, prev := int64(0), int64(-1)
	if n := len(offs); n > 0 {
		pos = int64(offs[n-1].pos)
	}
	for pos < size {
		h, err := hr.header(pos, size)
		if err != nil || h.Magic != 2 {
			return nil, nil, 0, fmt.Sprintf("the batches after the last index entry do not reach the end of the segment: at position %d: %v", pos, err)
		}
		if h.BaseOffset <= prev || h.LastOffset() >= end {
			return nil, nil, 0, fmt.Sprintf("the batch at position %d holds offsets [%d, %d], after %d and before %d expected", pos, h.BaseOffset, h.LastOffset(), prev, end)
		}
		prev = h.LastOffset()
		maxSeen = max(maxSeen, h.MaxTimestamp)
		pos += int64(h.Size())
	}
	if maxSeen >= 0 && (len(times) == 0 || times[len(times)-1].ts < maxSeen) {
		return nil, nil, 0, fmt.Sprintf("the time index does not reach timestamp %d, which the segment holds", maxSeen)
	}
	return offs, times, prev + 1, ""
}

// recoverLastSegment validates the last segment batch by batch, truncates
// it after the last valid batch and rebuilds its indexes. It returns the
// leader epochs its batches carry where they first appear.
func (l *Log) recoverLastSegment(s *segment, cfg *Config, nowMs int64) ([]epochEntry, error) {
	size := s.size.Load()
	s.offsets.reset(nil)
	s.times.reset(nil)
	s.bytesSinceIndex = 0
	var (
		epochs  []epochEntry
		firstTs int64 = -1
		any     bool
	)
	res, err := scanBatches(s.f, s.base, size, func(h *BatchHeader, pos int64) string {
		s.track(h, pos, cfg.IndexIntervalBytes)
		if !any {
			any, firstTs = true, h.MaxTimestamp
		}
		if e := h.PartitionLeaderEpoch; e >= 0 && (len(epochs) == 0 || e > epochs[len(epochs)-1].epoch) {
			epochs = append(epochs, epochEntry{e, h.BaseOffset})
		}
		return ""
	})
	if err != nil {
		return nil, fmt.Errorf("reading segment %s: %w", s.path(logSuffix), err)
	}
	if res.reason != "" {
		l.logger.Warn("truncating a torn or corrupt tail of the last segment",
			"segment", s.path(logSuffix), "bytes", size-res.validSize, "position", res.validSize, "offset", res.next, "reason", res.reason)
		if err := s.f.Truncate(res.validSize); err != nil {
			return nil, fmt.Errorf("truncating %s: %w", s.path(logSuffix), err)
		}
		if err := s.f.Sync(); err != nil {
			return nil, fmt.Errorf("fsync %s: %w", s.path(logSuffix), err)
		}
	}
	s.size.Store(res.validSize)
	s.verified.Store(res.validSize) // every batch was checked
	s.next.Store(res.next)
	if any {
		// segment.ms counts from the first append; after a restart the
		// first batch's max timestamp (the append time for LogAppendTime)
		// is the best estimate, as Kafka's rollingBasedTimestamp.
		s.firstAppendMs = nowMs
		if firstTs >= 0 && firstTs <= nowMs {
			s.firstAppendMs = firstTs
		}
	}
	return epochs, nil
}

// recoverEpochs loads the leader epoch cache and brings it in line with the
// log: entries at or beyond the end are dropped, epochs found in the last
// segment are added, and the entries before the start offset are folded
// into one. A missing or unreadable checkpoint is rebuilt from the batch
// headers of all segments.
func (l *Log) recoverEpochs(segs []*segment, seen []epochEntry, start, end int64) error {
	path := filepath.Join(l.dir, leaderEpochFile)
	changed := false
	b, err := readFile(l.fs, path)
	var es []epochEntry
	if err == nil {
		es, err = decodeEpochs(b)
	}
	if err != nil {
		if !isNotExist(err) {
			l.logger.Warn("rebuilding an unreadable leader epoch checkpoint from the log", "file", path, "err", err)
		}
		changed = true
		for _, s := range segs {
			if err := s.forEachHeader(s.base, func(h *BatchHeader) { l.epochs.assign(h.PartitionLeaderEpoch, h.BaseOffset) }); err != nil {
				l.logger.Warn("rebuilding the leader epoch cache", "err", err)
			}
		}
	} else {
		l.epochs.store(es)
		changed = l.epochs.truncateFromEnd(end)
		for _, e := range seen {
			changed = l.epochs.assign(e.epoch, e.start) || changed
		}
	}
	changed = l.epochs.truncateFromStart(start) || changed
	if changed {
		if err := writeFileAtomic(l.fs, path, encodeEpochs(l.epochs.load())); err != nil {
			return fmt.Errorf("writing the leader epoch checkpoint: %w", err)
		}
	}
	return nil
}

// recoverProducers loads the newest valid producer snapshot at or below the
// log end and replays the batch headers after it.
func (l *Log) recoverProducers(segs []*segment, snaps []int64, end, nowMs int64, cfg *Config) error {
	slices.Sort(snaps)
	var (
		ps      producerStates
		snapOff int64 = -1
	)
	for i := len(snaps) - 1; i >= 0; i-- {
		off := snaps[i]
		path := snapshotPath(l.dir, off)
		if off > end {
			l.logger.Info("removing a producer snapshot beyond the log end", "file", path, "end_offset", end)
			if err := l.fs.Remove(path); err != nil && !isNotExist(err) {
				return fmt.Errorf("removing %s: %w", path, err)
			}
			continue
		}
		if ps != nil {
			continue
		}
		b, err := readFile(l.fs, path)
		if err == nil {
			ps, err = decodeSnapshot(b)
		}
		if err != nil {
			l.logger.Warn("removing an unreadable producer snapshot", "file", path, "err", err)
			if err := l.fs.Remove(path); err != nil && !isNotExist(err) {
				return fmt.Errorf("removing %s: %w", path, err)
			}
			ps = nil
			continue
		}
		snapOff = off
	}
	if ps == nil {
		ps = make(producerStates)
	}
	from := max(snapOff, segs[0].base)
	replayed := 0
	for _, s := range segs {
		if s.next.Load() <= from {
			continue
		}
		err := s.forEachHeader(from, func(h *BatchHeader) {
			if h.BaseOffset >= from {
				ps.replay(h)
				replayed++
			}
		})
		if err != nil {
			l.logger.Warn("replaying producer state", "err", err)
		}
	}
	expired := ps.expire(nowMs, cfg.ProducerExpiration.Milliseconds())
	l.producers = ps
	l.pruneSnapshots(end)
	l.logger.Debug("recovered producer state", "dir", l.dir, "snapshot_offset", snapOff,
		"batches_replayed", replayed, "producers", len(ps), "expired", expired)
	return nil
}

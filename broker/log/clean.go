package log

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Files of log compaction in a partition directory.
const (
	cleanedSuffix   = ".cleaned" // a cleaned segment being written: <base>.log.cleaned, .index.cleaned, .timeindex.cleaned
	swapSuffix      = ".swap"    // <base>.swap: the swap record of a cleaned segment being swapped in
	cleanerCkptFile = "cleaner-offset-checkpoint"

	defaultDedupeBufferBytes = 128 << 20
	// mapEntryOverhead is what the offset map costs per key beyond the
	// key's bytes (string header, offset, map bucket share).
	mapEntryOverhead = 64
	// cleanerIOChunk is the unit of the cleaner's reads and writes.
	cleanerIOChunk = 1 << 20
)

// Cleaner compacts logs whose Config.Compact is set, as Kafka's
// LogCleaner: see the package documentation. One Cleaner serves many logs
// and may be used by several goroutines at once (Kafka's
// log.cleaner.threads); each log is cleaned by one goroutine at a time, and
// the I/O limit is shared by all of them.
type Cleaner struct {
	dedupeBytes int64
	logger      *slog.Logger
	throttle    *throttle
}

// NewCleaner returns a Cleaner.
func NewCleaner(cfg CleanerConfig) *Cleaner {
	c := &Cleaner{dedupeBytes: cfg.DedupeBufferBytes, logger: cfg.Logger}
	if c.dedupeBytes <= 0 {
		c.dedupeBytes = defaultDedupeBufferBytes
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if cfg.IOMaxBytesPerSecond > 0 && !math.IsInf(cfg.IOMaxBytesPerSecond, 1) {
		c.throttle = newThrottle(cfg.IOMaxBytesPerSecond, cfg.Now, cfg.Sleep)
	}
	return c
}

// CleanFilthiest cleans one of logs: among the compacted logs that need
// cleaning it picks the one with the largest dirty ratio, as Kafka does. A
// log needs cleaning when its dirty part (the bytes written since its last
// cleaning, excluding the active segment and segments younger than
// min.compaction.lag.ms) is more than min.cleanable.dirty.ratio of its
// cleanable bytes, when a dirty record is older than max.compaction.lag.ms,
// or when a tombstone's delete horizon has passed. Logs that are closed,
// offline, being cleaned, or whose cleaning failed before (see
// Log.CleanerError) are skipped. It returns the log it cleaned, or nil if
// none needed cleaning.
//
// A cleaning that fails marks only that log uncleanable (logged once); the
// error is returned with the log. ctx ending stops a cleaning between two
// batches, leaving the log as it was (or with some of its segments cleaned).
func (c *Cleaner) CleanFilthiest(ctx context.Context, logs []*Log) (*Log, CleanResult, error) {
	type candidate struct {
		l    *Log
		plan cleanPlan
	}
	var cands []candidate
	for _, l := range logs {
		cfg := l.cfg.Load()
		if !cfg.Compact || l.usable() != nil || l.CleanerError() != nil {
			continue
		}
		p := l.planCleaning(cfg, l.now().UnixMilli())
		if p.needed(cfg) {
			cands = append(cands, candidate{l, p})
		}
	}
	slices.SortStableFunc(cands, func(a, b candidate) int {
		switch {
		case a.plan.ratio > b.plan.ratio:
			return -1
		case a.plan.ratio < b.plan.ratio:
			return 1
		}
		return 0
	})
	for _, cand := range cands {
		l := cand.l
		if !l.cleanMu.TryLock() {
			continue // another goroutine is cleaning it
		}
		res, err := c.cleanLocked(ctx, l, false)
		l.cleanMu.Unlock()
		if res.Cleaned || err != nil {
			return l, res, err
		}
	}
	return nil, CleanResult{}, nil
}

// Clean cleans l now if it is compacted and anything is cleanable,
// ignoring min.cleanable.dirty.ratio (but not the compaction lags, and
// never the active segment). It waits for a cleaning of l in progress.
func (c *Cleaner) Clean(ctx context.Context, l *Log) (CleanResult, error) {
	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()
	return c.cleanLocked(ctx, l, true)
}

// CleanerError returns the error that made the cleaner give up on this
// log, if any. Appends and reads are not affected; the log is not cleaned
// again until it is reopened.
func (l *Log) CleanerError() error {
	if p := l.cleanErr.Load(); p != nil {
		return *p
	}
	return nil
}

// errCleaningAborted ends a cleaning whose segments changed under it
// (retention or DeleteRecords deleted some) or that a truncation stopped;
// it is not an error.
var errCleaningAborted = errors.New("the segments being cleaned were deleted meanwhile")

// cleanPlan is what a log's cleaning would cover.
type cleanPlan struct {
	segs             []*segment // the segment list planned on; the last is the active segment
	firstDirty       int64      // offsets below are clean
	firstUncleanable int64      // the dirty part ends here: the active segment or the first one within min.compaction.lag.ms
	cleanBytes       int64
	dirtyBytes       int64
	ratio            float64
	lagDue           bool // a dirty record is older than max.compaction.lag.ms
	horizonDue       bool // a tombstone in the clean part may be removed
}

func (p *cleanPlan) needed(cfg *Config) bool {
	return p.dirtyBytes > 0 && (p.ratio > cfg.MinCleanableDirtyRatio || p.lagDue) || p.horizonDue
}

// planCleaning computes the clean and dirty parts of the log, as Kafka's
// LogCleanerManager.cleanableOffsets: the dirty part starts at the cleaner
// checkpoint (or the log start) and ends at the active segment, or earlier
// at the first segment whose newest record is younger than
// min.compaction.lag.ms.
func (l *Log) planCleaning(cfg *Config, nowMs int64) cleanPlan {
	segs := l.segments()
	p := cleanPlan{segs: segs}
	if len(segs) < 2 {
		return p
	}
	start := l.start.Load()
	active := segs[len(segs)-1]
	fd := l.firstDirty.Load()
	if fd < start || fd > active.base {
		fd = start
	}
	p.firstDirty = fd
	fu := active.base
	i0 := max(findSegment(segs, fd), 0)
	inactive := segs[:len(segs)-1]
	if lag := cfg.MinCompactionLag.Milliseconds(); lag > 0 {
		for _, s := range inactive[min(i0, len(inactive)):] {
			if s.largestTimestamp() > nowMs-lag {
				fu = min(fu, s.base)
				break
			}
		}
	}
	fu = max(fu, fd)
	p.firstUncleanable = fu
	for i, s := range inactive {
		size := s.size.Load()
		if s.base < fd {
			p.cleanBytes += size
		}
		if s.base < fu && segs[i+1].base > fd {
			p.dirtyBytes += size
		}
	}
	if total := p.cleanBytes + p.dirtyBytes; total > 0 {
		p.ratio = float64(p.dirtyBytes) / float64(total)
	}
	if p.dirtyBytes > 0 && cfg.MaxCompactionLag < DefaultMaxCompactionLag {
		lag := cfg.MaxCompactionLag.Milliseconds()
		for _, s := range inactive[min(i0, len(inactive)):] {
			if s.base >= fu {
				break
			}
			if ts := s.firstBatchTimestamp(); ts > 0 && ts < nowMs-lag {
				p.lagDue = true
				break
			}
		}
	}
	if h := l.deleteHorizon.Load(); h >= 0 && nowMs >= h && fd > segs[0].base {
		p.horizonDue = true
	}
	return p
}

// firstBatchTimestamp is the max timestamp of the segment's first batch
// (what Kafka measures max.compaction.lag.ms from), or -1.
func (s *segment) firstBatchTimestamp() int64 {
	if ts := s.firstTs.Load(); ts != unknownTs {
		return ts
	}
	ts := int64(-1)
	if s.size.Load() >= BatchHeaderSize && s.acquire() {
		var b [BatchHeaderSize]byte
		if _, err := readFullAt(s.f, b[:], 0); err == nil {
			ts = parseHeader(b[:]).MaxTimestamp
		}
		s.release()
	}
	s.firstTs.Store(ts)
	return ts
}

const unknownTs = math.MinInt64

// cleanLocked cleans l under l.cleanMu; force ignores the dirty ratio.
func (c *Cleaner) cleanLocked(ctx context.Context, l *Log, force bool) (res CleanResult, err error) {
	if err := l.usable(); err != nil {
		return res, err
	}
	cfg := l.cfg.Load()
	if !cfg.Compact || l.CleanerError() != nil {
		return res, l.CleanerError()
	}
	nowMs := l.now().UnixMilli()
	plan := l.planCleaning(cfg, nowMs)
	if !plan.needed(cfg) && !(force && plan.dirtyBytes > 0) {
		return res, nil
	}
	// Stop when the caller gives up, the log is closed or truncated
	// (TruncateTo cancels with errCleaningAborted and waits for cleanMu).
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(l.closeCtx, func() { cancel(nil) })
	defer stop()
	l.cleanCancel.Store(&cancel)
	defer l.cleanCancel.Store(nil)
	if l.truncating.Load() > 0 {
		return res, nil // a truncation is waiting: let it go first
	}

	began := time.Now()
	res, err = c.clean(ctx, l, cfg, plan, nowMs)
	switch {
	case err == nil:
		if res.Cleaned {
			c.logger.Info("cleaned log", "dir", l.dir, "first_dirty_offset", res.FirstDirtyOffset, "end_offset", res.EndOffset,
				"dirty_ratio", fmt.Sprintf("%.3f", res.DirtyRatio), "segments", res.Segments, "cleaned_segments", res.Groups,
				"bytes_read", res.BytesRead, "bytes_written", res.BytesWritten, "records", res.RecordsRead,
				"records_removed", res.RecordsRemoved, "duration", time.Since(began).Round(time.Millisecond))
		}
		return res, nil
	case errors.Is(err, errCleaningAborted), errors.Is(context.Cause(ctx), errCleaningAborted):
		return res, nil
	case l.usable() != nil:
		// Closed meanwhile, or taken offline by a failed swap (logged then).
		return res, l.usable()
	case ctx.Err() != nil:
		return res, ctx.Err()
	}
	e := fmt.Errorf("cleaning partition log %s: %w", l.dir, err)
	if l.cleanErr.CompareAndSwap(nil, &e) {
		l.logger.Error("log cleaning failed; this partition is not compacted again until it is reopened (appends and reads are not affected)",
			"dir", l.dir, "err", err)
	}
	return res, e
}

// clean runs one cleaning: it builds the offset map of the dirty part,
// then rewrites every inactive segment below where the map ends, group by
// group, swapping each cleaned group in as it is done.
func (c *Cleaner) clean(ctx context.Context, l *Log, cfg *Config, plan cleanPlan, nowMs int64) (CleanResult, error) {
	res := CleanResult{FirstDirtyOffset: plan.firstDirty, DirtyRatio: plan.ratio}
	inactive := plan.segs[:len(plan.segs)-1]
	held := make([]*segment, 0, len(inactive))
	defer func() {
		for _, s := range held {
			s.release()
		}
	}()
	for _, s := range inactive {
		if !s.acquire() {
			return res, errCleaningAborted
		}
		held = append(held, s)
	}

	l.mu.Lock()
	lastBatch := make(map[int64]int64, len(l.producers))
	for id, e := range l.producers {
		if e.nbatches > 0 {
			lastBatch[id] = e.batches[e.nbatches-1].lastOff
		}
	}
	l.mu.Unlock()

	f := &cleanFilter{
		keys:       newOffsetMap(),
		nowMs:      nowMs,
		horizonMs:  satAdd(nowMs, cfg.DeleteRetention.Milliseconds()),
		lastBatch:  lastBatch,
		minHorizon: -1,
	}
	var err error
	if f.mapEnd, err = c.buildOffsetMap(ctx, l, inactive, plan, f.keys, &res); err != nil {
		return res, err
	}
	res.EndOffset = f.mapEnd

	// Every inactive segment that starts below mapEnd is rewritten.
	n := 0
	for n < len(inactive) && inactive[n].base < f.mapEnd {
		n++
	}
	if n == 0 {
		return res, nil
	}
	groups := groupSegments(plan.segs[:n+1], cfg)
	for gi, g := range groups {
		end := plan.segs[n].base
		if gi+1 < len(groups) {
			end = groups[gi+1][0].base
		}
		cleaned, err := c.cleanGroup(ctx, l, g, cfg, f, &res)
		if err != nil {
			return res, err
		}
		if err := l.swapCleaned(g, cleaned, end); err != nil {
			cleaned.release()
			if errors.Is(err, errCleaningAborted) || errors.Is(err, ErrClosed) {
				removeCleaned(l.fs, l.dir, g[0].base)
			}
			return res, err
		}
		res.Segments += len(g)
		res.Groups++
		res.Cleaned = true
	}
	res.RecordsRead, res.RecordsRemoved = f.records, f.removed
	l.firstDirty.Store(f.mapEnd)
	l.deleteHorizon.Store(f.minHorizon)
	if err := writeFileAtomic(l.fs, filepath.Join(l.dir, cleanerCkptFile), encodeCleanerCheckpoint(f.mapEnd, f.minHorizon)); err != nil {
		// Only costs cleaning the same records again after a restart.
		l.logger.Warn("writing the cleaner checkpoint", "dir", l.dir, "err", err)
	}
	return res, nil
}

// buildOffsetMap records the latest offset of every key in the dirty part,
// [plan.firstDirty, plan.firstUncleanable), until the map holds about the
// Cleaner's dedupe buffer of keys. It returns where the map ends: offsets
// below are covered.
func (c *Cleaner) buildOffsetMap(ctx context.Context, l *Log, inactive []*segment, plan cleanPlan, keys *offsetMap, res *CleanResult) (int64, error) {
	fd, fu := plan.firstDirty, plan.firstUncleanable
	if fd >= fu {
		return fd, nil
	}
	var scratch []byte
	for i, s := range inactive {
		if s.base >= fu {
			break
		}
		if i+1 < len(plan.segs) && plan.segs[i+1].base <= fd {
			continue
		}
		sc := newBatchScanner(s, lookupOffset(s.offsets.load(), s.base, fd), c.throttle)
		for {
			batch, h, err := sc.next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				return fd, err
			}
			res.BytesRead += int64(h.Size())
			if h.LastOffset() < fd || h.IsControl() {
				continue
			}
			if keys.bytes >= c.dedupeBytes && keys.len() > 0 {
				return max(h.BaseOffset, fd), nil // the map is full
			}
			data := batch[BatchHeaderSize:h.Size()]
			if h.Compression() != CompressionNone {
				if scratch, err = decompressInto(scratch[:0], h.Compression(), data); err != nil {
					return fd, fmt.Errorf("segment %s, batch at offset %d: %w", s.path(logSuffix), h.BaseOffset, err)
				}
				data = scratch
			}
			err = forEachRecordKey(data, &h, func(off int64, key []byte) {
				if off < fd || key == nil {
					return
				}
				keys.put(key, off)
			})
			if err != nil {
				return fd, fmt.Errorf("segment %s: %w", s.path(logSuffix), err)
			}
		}
	}
	return fu, nil
}

// offsetMap maps keys to the latest offset seen for them. Updating a key
// that is already there allocates nothing.
type offsetMap struct {
	index map[string]int32 // key → index in offs
	offs  []int64
	bytes int64 // estimated memory
}

func newOffsetMap() *offsetMap { return &offsetMap{index: map[string]int32{}} }

func (m *offsetMap) len() int { return len(m.offs) }

func (m *offsetMap) put(key []byte, off int64) {
	if i, ok := m.index[string(key)]; ok {
		m.offs[i] = off
		return
	}
	m.index[string(key)] = int32(len(m.offs))
	m.offs = append(m.offs, off)
	m.bytes += int64(len(key)) + mapEntryOverhead
}

func (m *offsetMap) get(key []byte) (int64, bool) {
	if i, ok := m.index[string(key)]; ok {
		return m.offs[i], true
	}
	return 0, false
}

// forEachRecordKey calls fn with the offset and key of every record of the
// (decompressed) records data of the batch with header h.
func forEachRecordKey(data []byte, h *BatchHeader, fn func(off int64, key []byte)) error {
	p := 0
	for i := int32(0); i < h.NumRecords; i++ {
		length, n := binary.Varint(data[p:])
		if n <= 0 || length < 1 || length > int64(len(data)-p-n) {
			return errorf(kerr.CorruptMessage, "record %d of the batch at offset %d: bad length", i, h.BaseOffset)
		}
		body := data[p+n+1 : p+n+int(length)] // after the attributes
		p += n + int(length)
		_, rest, ok1 := varint(body)
		offDelta, rest, ok2 := varint(rest)
		key, _, ok3 := bytesField(rest)
		if !ok1 || !ok2 || !ok3 {
			return errorf(kerr.CorruptMessage, "record %d of the batch at offset %d: malformed", i, h.BaseOffset)
		}
		fn(h.BaseOffset+offDelta, key)
	}
	if p != len(data) {
		return errorf(kerr.CorruptMessage, "batch at offset %d has %d bytes after its %d records", h.BaseOffset, len(data)-p, h.NumRecords)
	}
	return nil
}

// groupSegments splits segs[:len(segs)-1] into runs of adjacent segments
// that are cleaned into one segment each, as Kafka's groupSegmentsBySize:
// a group's segments add up to at most segment.bytes, its offset indexes to
// at most segment.index.bytes, and its offsets fit a 32-bit offset relative
// to the group's base. segs[len(segs)-1] only bounds the last offset.
func groupSegments(segs []*segment, cfg *Config) [][]*segment {
	var groups [][]*segment
	maxEntries := cfg.SegmentIndexBytes / offsetEntrySize
	for i := 0; i < len(segs)-1; {
		g := []*segment{segs[i]}
		size, entries := segs[i].size.Load(), len(segs[i].offsets.load())
		j := i + 1
		for ; j < len(segs)-1; j++ {
			s := segs[j]
			if size+s.size.Load() > cfg.SegmentBytes || entries+len(s.offsets.load()) > maxEntries ||
				segs[j+1].base-1-g[0].base > math.MaxInt32 {
				break
			}
			size += s.size.Load()
			entries += len(s.offsets.load())
			g = append(g, s)
		}
		groups = append(groups, g)
		i = j
	}
	return groups
}

// cleanGroup writes the cleaned form of the group's segments to
// <base>.log.cleaned (and its indexes), fsynced, and returns it as a
// segment, not yet in the log.
func (c *Cleaner) cleanGroup(ctx context.Context, l *Log, group []*segment, cfg *Config, flt *cleanFilter, res *CleanResult) (_ *segment, err error) {
	base := group[0].base
	removeCleaned(l.fs, l.dir, base)
	path := filepath.Join(l.dir, offsetName(base)+logSuffix+cleanedSuffix)
	file, err := l.fs.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	seg := newSegment(l.fs, l.dir, base, file, l.logger)
	defer func() {
		if err != nil {
			seg.release()
			removeCleaned(l.fs, l.dir, base)
		}
	}()
	var (
		out     []byte // batches not written yet
		written int64  // bytes written to the file
		next    = base
	)
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		if err := writeFullAt(file, out, written); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		written += int64(len(out))
		res.BytesWritten += int64(len(out))
		n := len(out)
		out = out[:0]
		return c.throttle.wait(ctx, n)
	}
	for _, s := range group {
		seg.lastAppendMs = max(seg.lastAppendMs, s.lastAppendMs)
		sc := newBatchScanner(s, 0, c.throttle)
		for {
			batch, h, err := sc.next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			res.BytesRead += int64(h.Size())
			at := len(out)
			if out, err = flt.filterBatch(out, batch, &h); err != nil {
				return nil, fmt.Errorf("segment %s: %w", s.path(logSuffix), err)
			}
			if len(out) > at {
				nh := parseHeader(out[at:])
				pos := written + int64(at)
				if pos+int64(nh.Size()) > math.MaxInt32 {
					return nil, fmt.Errorf("the cleaned segment %s would exceed 2 GiB", path)
				}
				seg.track(&nh, pos, cfg.IndexIntervalBytes)
				next = nh.LastOffset() + 1
			}
			if len(out) >= cleanerIOChunk {
				if err := flush(); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if err := file.Sync(); err != nil {
		return nil, fmt.Errorf("fsync %s: %w", path, err)
	}
	seg.size.Store(written)
	seg.next.Store(next)
	maxTs, maxTsOff := seg.stats()
	seg.maybeAddTime(maxTs, maxTsOff)
	// The atomic writes fsync the directory, which makes the log file's
	// name durable too.
	if err := writeFileAtomic(l.fs, seg.path(indexSuffix)+cleanedSuffix, encodeOffsetIndex(seg.offsets.load())); err != nil {
		return nil, fmt.Errorf("writing the offset index of %s: %w", path, err)
	}
	if err := writeFileAtomic(l.fs, seg.path(timeIndexSuffix)+cleanedSuffix, encodeTimeIndex(seg.times.load())); err != nil {
		return nil, fmt.Errorf("writing the time index of %s: %w", path, err)
	}
	return seg, nil
}

// removeCleaned removes the .cleaned files of the segment at base.
func removeCleaned(fsys FS, dir string, base int64) {
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		_ = fsys.Remove(filepath.Join(dir, offsetName(base)+suffix+cleanedSuffix))
	}
}

// swapCleaned replaces group, adjacent segments of the log that end where
// the segment at end begins, with cleaned, whose files are the fsynced
// <base>.*.cleaned. The steps, each of which recovery can finish:
//
//  1. write the swap record <base>.swap, "segments [base, end) are replaced
//     by <base>.*.cleaned" (atomically: temp file, fsync, rename, directory
//     fsync). From here on recovery completes the swap; before, it deletes
//     the .cleaned files.
//  2. rename the group's files to *.deleted (readers holding them finish;
//     the files are removed when the last one is done);
//  3. rename <base>.log.cleaned to <base>.log, then the indexes;
//  4. fsync the directory, remove the swap record, fsync the directory.
//
// Then the new segment list is published. A failure in steps 1 to 4 takes
// the log offline (like any failed rename or fsync): reopening it completes
// the swap. If the group is no longer in the log (retention deleted part
// of it) nothing is done and errCleaningAborted returned.
func (l *Log) swapCleaned(group []*segment, cleaned *segment, end int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	segs := l.segments()
	i := slices.Index(segs, group[0])
	if i < 0 || i+len(group) >= len(segs) || !slices.Equal(segs[i:i+len(group)], group) || segs[i+len(group)].base != end {
		return errCleaningAborted
	}
	base := group[0].base
	swap := swapPath(l.dir, base)
	if err := writeFileAtomic(l.fs, swap, encodeSwapRecord(base, end)); err != nil {
		return l.fail("writing the swap record of a cleaned segment", err)
	}
	for _, s := range group {
		if err := s.markDeleted(); err != nil {
			return l.fail("swapping in a cleaned segment", err)
		}
	}
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		if err := l.fs.Rename(cleaned.path(suffix)+cleanedSuffix, cleaned.path(suffix)); err != nil {
			return l.fail("swapping in a cleaned segment", err)
		}
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return l.fail("fsync of the directory after swapping in a cleaned segment", err)
	}
	if err := l.fs.Remove(swap); err != nil {
		return l.fail("removing the swap record of a cleaned segment", err)
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return l.fail("fsync of the directory after swapping in a cleaned segment", err)
	}
	l.publishSegments(slices.Concat(segs[:i], []*segment{cleaned}, segs[i+len(group):]))
	for _, s := range group {
		s.release()
	}
	return nil
}

func swapPath(dir string, base int64) string {
	return filepath.Join(dir, offsetName(base)+swapSuffix)
}

// The swap record: a version line (0) and "<base> <end>".
func encodeSwapRecord(base, end int64) []byte { return fmt.Appendf(nil, "0\n%d %d\n", base, end) }

func decodeSwapRecord(b []byte) (base, end int64, err error) {
	return decodeTwoOffsets(b, "swap record")
}

// The cleaner checkpoint: a version line (0) and "<first dirty offset>
// <earliest delete horizon of the clean part, -1 for none>".
func encodeCleanerCheckpoint(firstDirty, horizon int64) []byte {
	return fmt.Appendf(nil, "0\n%d %d\n", firstDirty, horizon)
}

func decodeTwoOffsets(b []byte, what string) (int64, int64, error) {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "0" {
		return 0, 0, fmt.Errorf("%s: unexpected contents %q", what, b)
	}
	f := strings.Fields(lines[1])
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("%s: unexpected contents %q", what, b)
	}
	a, err1 := strconv.ParseInt(f[0], 10, 64)
	c, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || a < 0 || c < -1 {
		return 0, 0, fmt.Errorf("%s: bad offsets %q", what, lines[1])
	}
	return a, c, nil
}

// batchScanner reads a segment's batches in order through a buffer,
// validating each (ValidateStoredBatch), charging the reads to a throttle.
type batchScanner struct {
	s        *segment
	size     int64
	pos      int64 // file position of the next batch
	buf      []byte
	bufStart int64
	bufN     int
	throttle *throttle
}

func newBatchScanner(s *segment, from int64, t *throttle) *batchScanner {
	return &batchScanner{s: s, size: s.size.Load(), pos: from, throttle: t}
}

// next returns the next batch (valid until the next call) or io.EOF.
func (sc *batchScanner) next(ctx context.Context) ([]byte, BatchHeader, error) {
	if err := ctx.Err(); err != nil {
		return nil, BatchHeader{}, err
	}
	if sc.pos >= sc.size {
		return nil, BatchHeader{}, io.EOF
	}
	need := int64(batchLengthOverhead)
	for {
		avail := sc.bufStart + int64(sc.bufN) - sc.pos
		if avail >= batchLengthOverhead {
			length := int64(int32(binary.BigEndian.Uint32(sc.buf[sc.pos-sc.bufStart+offLength:])))
			need = batchLengthOverhead + max(length, 0)
		}
		if avail >= need {
			break
		}
		if sc.pos+need > sc.size {
			return nil, BatchHeader{}, fmt.Errorf("segment %s: a batch at position %d runs past the end of the segment", sc.s.path(logSuffix), sc.pos)
		}
		n := min(max(need, cleanerIOChunk), sc.size-sc.pos)
		if int64(cap(sc.buf)) < n {
			sc.buf = make([]byte, n)
		}
		sc.buf = sc.buf[:n]
		if _, err := readFullAt(sc.s.f, sc.buf, sc.pos); err != nil {
			return nil, BatchHeader{}, fmt.Errorf("reading segment %s at position %d: %w", sc.s.path(logSuffix), sc.pos, err)
		}
		sc.bufStart, sc.bufN = sc.pos, int(n)
		if err := sc.throttle.wait(ctx, int(n)); err != nil {
			return nil, BatchHeader{}, err
		}
	}
	b := sc.buf[sc.pos-sc.bufStart:]
	h, err := ValidateStoredBatch(b[:need])
	if err != nil {
		return nil, h, fmt.Errorf("segment %s at position %d: %w", sc.s.path(logSuffix), sc.pos, err)
	}
	sc.pos += need
	return b[:need], h, nil
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// throttle limits the cleaner's I/O to a rate shared by all cleanings, as
// Kafka's Throttler: every read or write is charged to it and the caller
// sleeps while the bytes so far are ahead of the rate (allowing a short
// burst).
type throttle struct {
	rate  float64 // bytes per second
	now   func() time.Time
	sleep func(context.Context, time.Duration) error

	mu   sync.Mutex
	paid time.Time // the bytes charged so far are paid for at this time
}

// throttleBurst is how far ahead of the rate I/O may run before sleeping.
const throttleBurst = 50 * time.Millisecond

func newThrottle(rate float64, now func() time.Time, sleep func(context.Context, time.Duration) error) *throttle {
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	return &throttle{rate: rate, now: now, sleep: sleep}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait charges n bytes and sleeps as long as the rate requires. A nil
// throttle does not limit.
func (t *throttle) wait(ctx context.Context, n int) error {
	if t == nil || n <= 0 {
		return nil
	}
	t.mu.Lock()
	now := t.now()
	if t.paid.Before(now) {
		t.paid = now
	}
	t.paid = t.paid.Add(time.Duration(float64(n) / t.rate * float64(time.Second)))
	d := t.paid.Sub(now)
	t.mu.Unlock()
	if d <= throttleBurst {
		return ctx.Err()
	}
	return t.sleep(ctx, d)
}

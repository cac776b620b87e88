package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
)

// segment is one file of record batches and its two sparse indexes.
//
// The log's writer (holding Log.mu) appends; readers use the published
// size, next offset and index prefixes without locks. A segment is
// reference counted: the log holds one reference while the segment is in
// its segment list and every reader holds one while it reads. Deleting a
// segment renames its files to *.deleted and drops the log's reference; the
// last reference to go closes the file and removes it, so a read that
// started before the deletion finishes normally.
type segment struct {
	base   int64
	dir    string
	fsys   FS
	logger *slog.Logger
	f      File

	size atomic.Int64 // bytes of whole, valid batches
	// verified is how many bytes from the start of the file this process
	// has checked (CRC-32C included) since it opened the segment: appended
	// after validation, scanned by recovery or read with a check. Reads
	// skip the CRC check below it (see Read).
	verified atomic.Int64
	next     atomic.Int64 // offset after the last batch (base when empty)
	offsets  appendOnly[offsetEntry]
	times    appendOnly[timeEntry]

	statMu   sync.Mutex
	maxTs    int64 // largest batch max timestamp; -1 when none
	maxTsOff int64 // last offset of the first batch with maxTs

	// Writer state, under Log.mu (the cleaner reads lastAppendMs of
	// inactive segments, which no longer change, without it).
	bytesSinceIndex int
	firstAppendMs   int64 // wall clock of the first append (see recovery); -1 when empty
	lastAppendMs    int64 // wall clock of the last append, for retention of segments without timestamps

	firstTs atomic.Int64 // max timestamp of the first batch, for max.compaction.lag.ms; unknownTs until read

	refs    atomic.Int32
	deleted atomic.Bool
	gone    chan struct{} // closed when the last reference is released
}

func newSegment(fsys FS, dir string, base int64, f File, logger *slog.Logger) *segment {
	s := &segment{base: base, dir: dir, fsys: fsys, f: f, logger: logger, maxTs: -1, maxTsOff: base, firstAppendMs: -1, lastAppendMs: -1}
	s.next.Store(base)
	s.firstTs.Store(unknownTs)
	s.refs.Store(1)
	s.gone = make(chan struct{})
	return s
}

func (s *segment) path(suffix string) string {
	return filepath.Join(s.dir, offsetName(s.base)+suffix)
}

// createSegment creates the empty files of a new segment at base.
func createSegment(fsys FS, dir string, base int64, logger *slog.Logger) (*segment, error) {
	path := filepath.Join(dir, offsetName(base)+logSuffix)
	if size, err := fsys.Stat(path); err == nil && size > 0 {
		return nil, fmt.Errorf("creating segment %s: the file already exists with %d bytes", path, size)
	}
	f, err := fsys.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating segment: %w", err)
	}
	s := newSegment(fsys, dir, base, f, logger)
	for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
		if err := fsys.Remove(s.path(suffix)); err != nil && !isNotExist(err) {
			f.Close()
			return nil, fmt.Errorf("removing stale index: %w", err)
		}
	}
	return s, nil
}

// appended extends verified over bytes just appended at pos, if it
// reached pos: appends are validated before they are written.
func (s *segment) appended(pos, end int64) {
	s.verified.CompareAndSwap(pos, end)
}

// checked extends verified to end after a read checked the bytes from pos,
// if verified reached pos.
func (s *segment) checked(pos, end int64) {
	for {
		v := s.verified.Load()
		if v < pos || v >= end {
			return
		}
		if s.verified.CompareAndSwap(v, end) {
			return
		}
	}
}

// acquire takes a reader's reference; it fails once the segment is closed.
func (s *segment) acquire() bool {
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference; the last one closes the file and, if the
// segment was deleted, removes its files, then closes gone.
func (s *segment) release() {
	if s.refs.Add(-1) != 0 {
		return
	}
	defer close(s.gone)
	if err := s.f.Close(); err != nil {
		s.logger.Warn("closing segment file", "segment", s.path(logSuffix), "err", err)
	}
	if !s.deleted.Load() {
		return
	}
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		if err := s.fsys.Remove(s.path(suffix + deletedSuffix)); err != nil && !isNotExist(err) {
			// Open removes *.deleted leftovers.
			s.logger.Warn("removing deleted segment file", "file", s.path(suffix+deletedSuffix), "err", err)
		}
	}
}

// markDeleted renames the segment's files to *.deleted. The caller then
// removes the segment from the log and releases the log's reference.
func (s *segment) markDeleted() error {
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		if err := s.fsys.Rename(s.path(suffix), s.path(suffix+deletedSuffix)); err != nil {
			if suffix != logSuffix && isNotExist(err) {
				continue
			}
			return fmt.Errorf("renaming %s for deletion: %w", s.path(suffix), err)
		}
	}
	s.deleted.Store(true)
	return nil
}

// stats returns the segment's max timestamp and the last offset of the
// batch that first carried it.
func (s *segment) stats() (maxTs, maxTsOff int64) {
	s.statMu.Lock()
	defer s.statMu.Unlock()
	return s.maxTs, s.maxTsOff
}

// largestTimestamp is what retention.ms compares with: the max timestamp,
// or the last append time for a segment without timestamps (Kafka uses the
// file's modification time).
func (s *segment) largestTimestamp() int64 {
	ts, _ := s.stats()
	if ts >= 0 {
		return ts
	}
	return s.lastAppendMs
}

// track updates the indexes and statistics for a batch written at pos, as
// Kafka's LogSegment.append does per batch. Only the writer calls it; the
// caller publishes size and next offset afterwards.
func (s *segment) track(h *BatchHeader, pos int64, indexInterval int) {
	last := h.LastOffset()
	s.statMu.Lock()
	if h.MaxTimestamp > s.maxTs {
		s.maxTs, s.maxTsOff = h.MaxTimestamp, last
	}
	maxTs, maxTsOff := s.maxTs, s.maxTsOff
	s.statMu.Unlock()
	if s.bytesSinceIndex > indexInterval {
		s.offsets.add(offsetEntry{rel: uint32(last - s.base), pos: uint32(pos)})
		s.maybeAddTime(maxTs, maxTsOff)
		s.bytesSinceIndex = 0
	}
	s.bytesSinceIndex += h.Size()
}

// maybeAddTime appends a time index entry if ts is larger than the last.
func (s *segment) maybeAddTime(ts, off int64) {
	if n := s.times.count(); n > 0 && s.times.buf[n-1].ts >= ts || ts < 0 {
		return
	}
	s.times.add(timeEntry{ts: ts, rel: uint32(off - s.base)})
}

// finish makes a segment that stops being the active one complete and
// durable: the time index gets the segment's max timestamp, both indexes
// are written, and the log and indexes are fsynced.
func (s *segment) finish() error {
	maxTs, maxTsOff := s.stats()
	s.maybeAddTime(maxTs, maxTsOff)
	if err := s.writeIndexes(); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", s.path(logSuffix), err)
	}
	return nil
}

// writeIndexes writes both index files atomically (each fsynced).
func (s *segment) writeIndexes() error {
	if err := writeFileAtomic(s.fsys, s.path(indexSuffix), encodeOffsetIndex(s.offsets.load())); err != nil {
		return fmt.Errorf("writing offset index: %w", err)
	}
	if err := writeFileAtomic(s.fsys, s.path(timeIndexSuffix), encodeTimeIndex(s.times.load())); err != nil {
		return fmt.Errorf("writing time index: %w", err)
	}
	return nil
}

// findSegment returns the index in segs of the segment that holds off: the
// last one whose base offset is <= off, or -1.
func findSegment(segs []*segment, off int64) int {
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base > off })
	return i - 1
}

// readFullAt reads len(p) bytes at off or fails.
func readFullAt(f File, p []byte, off int64) (int, error) {
	n, err := f.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// headerReader reads batch headers of a segment through a small buffer, so
// that scanning many small batches costs one read per buffer, not one per
// batch.
type headerReader struct {
	f     File
	bufp  *[]byte
	buf   []byte
	start int64 // file position of buf[0]
	n     int   // valid bytes in buf
	reads int   // reads from the file so far
}

var headerBufPool = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

func newHeaderReader(f File) headerReader {
	bp := headerBufPool.Get().(*[]byte)
	return headerReader{f: f, bufp: bp, buf: *bp, start: -1}
}

func (r *headerReader) close() {
	if r.bufp != nil {
		headerBufPool.Put(r.bufp)
		r.bufp, r.buf = nil, nil
	}
}

// errTruncated reports a batch that extends past the end of its segment.
var errTruncated = errors.New("batch extends past the end of the segment")

// header returns the header of the batch at pos, which must end at or
// before limit. Only the fields up to the record count are read.
func (r *headerReader) header(pos, limit int64) (BatchHeader, error) {
	if pos+BatchHeaderSize > limit {
		return BatchHeader{}, errTruncated
	}
	if r.start < 0 || pos < r.start || pos+BatchHeaderSize > r.start+int64(r.n) {
		n := int(min(int64(len(r.buf)), limit-pos))
		r.reads++
		if _, err := readFullAt(r.f, r.buf[:n], pos); err != nil {
			r.start = -1
			return BatchHeader{}, err
		}
		r.start, r.n = pos, n
	}
	off := pos - r.start
	h := parseHeader(r.buf[off : off+BatchHeaderSize])
	if h.Length < minBatchLength || pos+int64(h.Size()) > limit {
		return h, errTruncated
	}
	return h, nil
}

// cached returns the n bytes at pos if the last read brought them in, else
// nil.
func (r *headerReader) cached(pos int64, n int) []byte {
	if r.start < 0 || pos < r.start || pos+int64(n) > r.start+int64(r.n) {
		return nil
	}
	off := int(pos - r.start)
	return r.buf[off : off+n]
}

// scanResult is the outcome of validating a segment batch by batch.
type scanResult struct {
	validSize int64  // bytes of whole valid batches from the start
	next      int64  // offset after the last valid batch
	reason    string // why the scan stopped before the end; "" if it did not
}

// scanBatches reads the segment file sequentially from position 0 to size,
// validating each batch (ValidateStoredBatch: structure and CRC-32C; and
// that its base offset is at least the segment's base offset and lies
// after the previous batch's last offset) and calling fn for it. It stops
// at the first invalid batch, or at a batch for which fn returns a reason
// to stop. Only I/O errors are returned as errors; invalid data is
// reported in the result.
//
// Batches are validated as stored batches and offsets may leave gaps,
// because segments hold what the cleaner writes (see Compaction) and, in
// any segment including the last one, batches a follower copied from a
// compacted leader (see Replication), as Kafka's LogSegment.recover
// accepts them.
func scanBatches(f File, base, size int64, fn func(h *BatchHeader, pos int64) string) (scanResult, error) {
	const chunk = 1 << 20
	buf := make([]byte, min(chunk, size))
	var (
		pos       int64 // file position of the next batch
		bufStart  int64 // file position of buf[0]
		bufN      int   // valid bytes in buf
		next      = base
		stopWhy   string
		needBytes int
	)
	for pos < size {
		// Make sure the batch at pos is in buf: first its length field,
		// then the whole batch.
		avail := bufStart + int64(bufN) - pos
		needBytes = batchLengthOverhead
		if avail >= batchLengthOverhead {
			length := int64(int32(binary.BigEndian.Uint32(buf[pos-bufStart+offLength:])))
			needBytes = batchLengthOverhead + int(max(0, min(length, math.MaxInt32-batchLengthOverhead)))
		}
		if avail < int64(needBytes) {
			if pos+int64(needBytes) > size {
				stopWhy = fmt.Sprintf("a batch of %d bytes at position %d runs past the end of the %d-byte file", needBytes, pos, size)
				break
			}
			want := int(min(max(int64(needBytes), chunk), size-pos))
			if want > cap(buf) {
				buf = make([]byte, want)
			}
			buf = buf[:cap(buf)]
			n := int(min(int64(len(buf)), size-pos))
			if _, err := readFullAt(f, buf[:n], pos); err != nil {
				return scanResult{validSize: pos, next: next}, err
			}
			bufStart, bufN = pos, n
			continue // recompute with the length field in hand
		}
		b := buf[pos-bufStart : pos-bufStart+int64(needBytes)]
		h, err := validateBatch(b, true)
		if err != nil {
			stopWhy = fmt.Sprintf("invalid batch at position %d: %v", pos, err)
			break
		}
		if h.BaseOffset < next {
			stopWhy = fmt.Sprintf("batch at position %d has base offset %d, want %d", pos, h.BaseOffset, next)
			break
		}
		if pos+int64(h.Size()) > math.MaxInt32 {
			stopWhy = fmt.Sprintf("batch at position %d ends beyond the 2 GiB a segment can index", pos)
			break
		}
		if h.LastOffset()-base > math.MaxInt32 {
			stopWhy = fmt.Sprintf("batch at position %d has last offset %d, too far from the segment base %d", pos, h.LastOffset(), base)
			break
		}
		if fn != nil {
			if why := fn(&h, pos); why != "" {
				stopWhy = fmt.Sprintf("batch at position %d: %s", pos, why)
				break
			}
		}
		next = h.LastOffset() + 1
		pos += int64(h.Size())
	}
	return scanResult{validSize: pos, next: next, reason: stopWhy}, nil
}

// forEachHeader calls fn with the header of every batch of seg whose last
// offset is >= from, in order, reading only headers. It stops early, with
// an error, at a batch that does not fit in the segment.
func (s *segment) forEachHeader(from int64, fn func(h *BatchHeader)) error {
	size := s.size.Load()
	pos := lookupOffset(s.offsets.load(), s.base, from)
	hr := newHeaderReader(s.f)
	defer hr.close()
	for pos < size {
		h, err := hr.header(pos, size)
		if err != nil {
			return fmt.Errorf("segment %s at position %d: %w", s.path(logSuffix), pos, err)
		}
		if h.LastOffset() >= from {
			fn(&h)
		}
		pos += int64(h.Size())
	}
	return nil
}

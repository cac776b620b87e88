package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Read appends to dst whole batches starting with the batch that contains
// offset, stopping before maxBytes would be exceeded — but always returning at
// least one whole batch when one exists — and never returning a batch whose
// base offset is at or beyond maxOffset (the high watermark) or the log end
// offset.
//
// offset must be within [StartOffset, EndOffset], else the error wraps
// OFFSET_OUT_OF_RANGE; at the end offset the result is empty. Every batch
// returned has passed a CRC-32C check by this process: when it was
// appended (appends are validated before they are written), when recovery
// scanned it, or in this or an earlier read (the bytes of a segment that
// this process has not checked since it opened it are checked as they are
// read). A read that starts at a batch damaged on disk before it was
// checked fails with CORRUPT_MESSAGE. Damage to bytes after they were
// checked is not detected here, as in Kafka, which checks nothing on read:
// followers check every batch they copy and consumers may check CRCs. The
// check on read cost a sixth of the broker's CPU serving a consumer. The
// batches
// come from one segment: a read that reaches the end of a segment stops
// there, and the next read continues in the next segment. The first batch
// may start before offset (a consumer skips the records before it), or, in
// a compacted log where offset was removed, after it: it is the first batch
// holding an offset >= offset.
//
// Read takes no lock: it runs concurrently with appends, cleaning,
// retention and DeleteRecordsBefore, and a segment deleted (or replaced by
// its cleaned form) during the read is removed from disk only when the read
// is done.
func (l *Log) Read(dst []byte, offset int64, maxBytes int, maxOffset int64) (ReadInfo, error) {
	return l.ReadBounded(dst, offset, maxBytes, math.MaxInt, maxOffset)
}

// ReadBounded is Read with a bound on the first batch too: when the batch
// that contains offset is larger than maxFirst it is not read, and the
// result is empty (but not an error). A fetch reads the partitions after
// the first one that returned data this way: only the first may exceed its
// limits (KIP-74), so a larger batch elsewhere would be read only to be
// thrown away.
func (l *Log) ReadBounded(dst []byte, offset int64, maxBytes, maxFirst int, maxOffset int64) (ReadInfo, error) {
	for attempt := 0; ; attempt++ {
		if err := l.usable(); err != nil {
			return ReadInfo{Records: dst}, err
		}
		if attempt > 1000 {
			return ReadInfo{Records: dst}, fmt.Errorf("partition log %s: read at offset %d kept racing with segment deletion", l.dir, offset)
		}
		end := l.end.Load()
		start := l.start.Load()
		info := ReadInfo{Records: dst, LogStartOffset: start, EndOffset: end}
		if offset < start || offset > end {
			return info, errorf(kerr.OffsetOutOfRange, "offset %d is outside the log, which holds offsets [%d, %d)", offset, start, end)
		}
		limit := min(maxOffset, end)
		if offset >= limit {
			return info, nil
		}
		segs := l.segments()
		i := findSegment(segs, offset)
		if i < 0 {
			// Segments were deleted between loading the start offset and
			// the segment list: look again.
			continue
		}
		for ; i < len(segs); i++ {
			seg := segs[i]
			if !seg.acquire() {
				break // deleted or closed meanwhile: start over
			}
			out, found, err := l.readSegment(seg, dst, offset, maxBytes, maxFirst, limit)
			seg.release()
			if err != nil {
				return info, err
			}
			if found {
				info.Records = out
				return info, nil
			}
			// offset lies after the segment's last batch (a gap left by a
			// repaired segment): continue with the next one.
		}
		if i == len(segs) {
			return info, nil
		}
	}
}

// readSegment reads from seg, see Read. found is false when no batch of the
// segment holds an offset >= offset.
func (l *Log) readSegment(seg *segment, dst []byte, offset int64, maxBytes, maxFirst int, limit int64) (_ []byte, found bool, _ error) {
	size := seg.size.Load()
	entries := seg.offsets.load()
	pos := lookupOffset(entries, seg.base, offset)
	hr := newHeaderReader(seg.f)
	defer hr.close()
	var first BatchHeader
	for {
		if pos >= size {
			return dst, false, nil
		}
		h, err := hr.header(pos, size)
		if err != nil {
			return dst, false, l.readFailed(seg, pos, err)
		}
		if h.LastOffset() >= offset {
			first = h
			break
		}
		pos += int64(h.Size())
	}
	if first.BaseOffset >= limit || first.Size() > maxFirst {
		return dst, true, nil
	}
	n := readLength(&hr, entries, pos, first, int64(max(maxBytes, 1)), size, limit)
	have := len(dst)
	if cap(dst)-have < n {
		grown := make([]byte, have, have+n)
		copy(grown, dst)
		dst = grown
	}
	buf := dst[have : have+n]
	if b := hr.cached(pos, n); b != nil {
		// The header read brought the batches in already: a consumer
		// at the end of the log reads once, not twice.
		copy(buf, b)
	} else if _, err := readFullAt(seg.f, buf, pos); err != nil {
		return dst, false, l.readFailed(seg, pos, err)
	}
	// Keep the whole batches below limit, checking the CRC of each one
	// this process has not checked yet (see Read): a batch damaged on disk
	// before that is never served.
	verified := seg.verified.Load()
	p := 0
	for p+BatchHeaderSize <= n {
		length := int(int32(binary.BigEndian.Uint32(buf[p+offLength:])))
		total := batchLengthOverhead + length
		if length < minBatchLength || p+total > n {
			break
		}
		if int64(binary.BigEndian.Uint64(buf[p+offBaseOffset:])) >= limit {
			break
		}
		if pos+int64(p+total) > verified && batchCRC(buf[p:p+total]) != binary.BigEndian.Uint32(buf[p+offCRC:]) {
			if p == 0 {
				return dst, false, l.readFailed(seg, pos, errBadCRC)
			}
			break // serve the good batches; the next read reports this one
		}
		p += total
	}
	if p == 0 {
		return dst, false, l.readFailed(seg, pos, errInconsistent)
	}
	seg.checked(pos, pos+int64(p))
	return dst[:have+p], true, nil
}

// readLength returns how many bytes to read from pos, where the batch first
// starts: the whole batches below limit that fit in maxBytes (at least
// first), so that a read ends at a batch boundary instead of in the middle
// of a batch that would be read only to be thrown away (batches of hundreds
// of KiB, as producers send at high rates, made a quarter of every fetch's
// read such waste). The boundary comes from the offset index, whose entries
// are batch positions, and from the headers after the last entry that
// fits, which lie within about one index interval: a couple of header
// reads. Where the index is too sparse for that (a large
// index.interval.bytes), the read goes to maxBytes, as if no boundary were
// known. The result is a length, not a promise: the read that follows
// checks every batch it keeps, so a wrong index entry costs at most a
// shorter read.
func readLength(hr *headerReader, entries []offsetEntry, pos int64, first BatchHeader, maxBytes, size, limit int64) int {
	end := pos + int64(first.Size())
	want := min(pos+maxBytes, size)
	if end >= want {
		return first.Size()
	}
	// The last index entry at or before want.
	i := sort.Search(len(entries), func(i int) bool { return int64(entries[i].pos) > want }) - 1
	if i >= 0 && int64(entries[i].pos) > end {
		end = int64(entries[i].pos)
	}
	const maxHeaderReads = 2
	for reads := hr.reads; end < want; {
		if hr.reads-reads >= maxHeaderReads {
			return int(want - pos)
		}
		h, err := hr.header(end, size)
		if err != nil || end+int64(h.Size()) > want || h.BaseOffset >= limit {
			break // the read reports a damaged batch if it starts here
		}
		end += int64(h.Size())
	}
	return int(end - pos)
}

var (
	// errInconsistent reports segment data that does not match what the
	// log wrote or validated on recovery.
	errInconsistent = errors.New("the batch read back does not match its header")
	// errBadCRC reports a batch whose CRC-32C no longer matches: damaged on
	// disk after it was validated.
	errBadCRC = errors.New("the batch read back fails its CRC-32C check")
)

// readFailed handles a failure reading a segment. An I/O error takes the
// log offline, as in Kafka. Data that does not parse or fails its CRC (a
// segment damaged after it was validated) fails only this read, with
// CORRUPT_MESSAGE, and is logged as an error.
func (l *Log) readFailed(seg *segment, pos int64, err error) error {
	if l.closed.Load() {
		return ErrClosed
	}
	if errors.Is(err, errTruncated) || errors.Is(err, errInconsistent) || errors.Is(err, errBadCRC) {
		l.logger.Error("corrupt data in a segment", "segment", seg.path(logSuffix), "position", pos, "err", err)
		return errorf(kerr.CorruptMessage, "partition log %s: segment %s is damaged at position %d: %v", l.dir, seg.path(logSuffix), pos, err)
	}
	return l.fail(fmt.Sprintf("reading segment %s at position %d", seg.path(logSuffix), pos), err)
}

// OffsetForTimestamp returns the first offset whose record timestamp is >= ts
// and that record's timestamp; found is false when no record qualifies.
// Offsets below the log start offset are not considered. It looks for the
// first segment whose largest timestamp is >= ts, finds a starting batch
// with the time and offset indexes, and decodes the first batch whose max
// timestamp is >= ts (decompressing it if needed); for LogAppendTime
// batches every record has the batch's max timestamp.
func (l *Log) OffsetForTimestamp(ts int64) (offset, timestamp int64, found bool, err error) {
	if err := l.usable(); err != nil {
		return 0, 0, false, err
	}
	end := l.end.Load()
	start := l.start.Load()
	for _, seg := range l.segments() {
		if seg.next.Load() <= start {
			continue
		}
		if maxTs, _ := seg.stats(); maxTs < ts {
			continue
		}
		if !seg.acquire() {
			continue
		}
		offset, timestamp, found, err = l.searchTimestamp(seg, ts, start, end)
		seg.release()
		if err != nil || found {
			return offset, timestamp, found, err
		}
	}
	return 0, 0, false, nil
}

// searchTimestamp scans seg for the first record at or after startOffset
// (and below end) with a timestamp >= target, as Kafka's
// LogSegment.findOffsetByTimestamp.
func (l *Log) searchTimestamp(seg *segment, target, startOffset, end int64) (int64, int64, bool, error) {
	_, tsOff := lookupTime(seg.times.load(), seg.base, target)
	pos := lookupOffset(seg.offsets.load(), seg.base, max(tsOff, startOffset))
	size := seg.size.Load()
	hr := newHeaderReader(seg.f)
	defer hr.close()
	var batch []byte
	for pos < size {
		h, err := hr.header(pos, size)
		if err != nil {
			return 0, 0, false, l.readFailed(seg, pos, err)
		}
		if h.BaseOffset >= end {
			break
		}
		if h.MaxTimestamp >= target && h.LastOffset() >= startOffset {
			if h.IsLogAppendTime() {
				return max(h.BaseOffset, startOffset), h.MaxTimestamp, true, nil
			}
			batch = growTo(batch, h.Size())
			if _, err := readFullAt(seg.f, batch, pos); err != nil {
				return 0, 0, false, l.readFailed(seg, pos, err)
			}
			var fo, fts int64
			ok := false
			err := forEachRecordTimestamp(batch, func(off, ts int64) bool {
				if ts >= target && off >= startOffset {
					fo, fts, ok = off, ts, true
					return false
				}
				return true
			})
			if err != nil {
				// A producer wrote records that do not decode (batches are
				// not decoded on append). The batch is the first that can
				// hold the answer: answer with its start.
				l.logger.Warn("cannot decode a batch to find an offset by timestamp; answering with the batch's first offset",
					"dir", l.dir, "offset", h.BaseOffset, "err", err)
				return max(h.BaseOffset, startOffset), h.MaxTimestamp, true, nil
			}
			if ok {
				return fo, fts, true, nil
			}
		}
		pos += int64(h.Size())
	}
	return 0, 0, false, nil
}

// MaxTimestamp returns the largest record timestamp in the log and the
// offset of the record carrying it; offset is -1 for an empty log (and for a
// log whose batches carry no timestamps), as Kafka's ListOffsets
// MAX_TIMESTAMP since 3.8 (KIP-734, KAFKA-16310): it finds the segment with
// the largest timestamp, the first batch there with that max timestamp, and
// decodes it for the offset of the first record with that timestamp (the
// batch's base offset for LogAppendTime). If no record carries the batch's
// max timestamp (a producer wrote an inconsistent header) the batch's last
// offset is returned.
func (l *Log) MaxTimestamp() (timestamp, offset int64, err error) {
	if err := l.usable(); err != nil {
		return -1, -1, err
	}
	// The statistics of the active segment run ahead of the published end
	// offset during an append; the writer lock gives a consistent view. It
	// is released before any I/O.
	l.mu.Lock()
	end := l.end.Load()
	var (
		best              *segment
		bestTs, bestTsOff int64 = -1, -1
	)
	for _, seg := range l.segments() {
		if ts, off := seg.stats(); ts > bestTs {
			best, bestTs, bestTsOff = seg, ts, off
		}
	}
	if best != nil && !best.acquire() {
		best = nil
	}
	l.mu.Unlock()
	if best == nil {
		if err := l.usable(); err != nil {
			return -1, -1, err
		}
		return -1, -1, nil
	}
	defer best.release()
	pos := lookupOffset(best.offsets.load(), best.base, bestTsOff)
	size := best.size.Load()
	hr := newHeaderReader(best.f)
	defer hr.close()
	for pos < size {
		h, err := hr.header(pos, size)
		if err != nil {
			return -1, -1, l.readFailed(best, pos, err)
		}
		if h.BaseOffset >= end {
			break
		}
		if h.MaxTimestamp == bestTs {
			if h.IsLogAppendTime() {
				return bestTs, h.BaseOffset, nil
			}
			batch := make([]byte, h.Size())
			if _, err := readFullAt(best.f, batch, pos); err != nil {
				return -1, -1, l.readFailed(best, pos, err)
			}
			found := h.LastOffset()
			err := forEachRecordTimestamp(batch, func(off, ts int64) bool {
				if ts == bestTs {
					found = off
					return false
				}
				return true
			})
			if err != nil {
				l.logger.Warn("cannot decode a batch to find the offset of the max timestamp; answering with the batch's last offset",
					"dir", l.dir, "offset", h.BaseOffset, "err", err)
			}
			return bestTs, found, nil
		}
		pos += int64(h.Size())
	}
	return bestTs, bestTsOff, nil
}

func growTo(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

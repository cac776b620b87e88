package log

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy/xerial"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
)

// cleanFilter decides, record by record, what a cleaning keeps. It follows
// Kafka's LogCleaner:
//
//   - records at or beyond mapEnd (not covered by the offset map) are kept;
//   - a record without a key is removed;
//   - a record whose key has a later offset in the map is removed;
//   - a tombstone (null value) that is the latest for its key is kept until
//     its batch's delete horizon has passed. The first cleaning that keeps a
//     tombstone sets the horizon of its batch to now + delete.retention.ms
//     (KIP-534: the batch's firstTimestamp field holds it and attribute bit
//     6 says so).
//
// A batch keeps its base offset, last offset delta (so the batch still ends
// where it ended and an idempotent producer's last sequence is unchanged),
// producer fields, leader epoch, codec and timestamp type; its record count,
// max timestamp (for CreateTime) and CRC are recomputed. A batch left with
// no records is dropped, unless it is the last batch of an idempotent
// producer the log has state for: that one is kept, empty, so that producer
// state rebuilt from the log after a restart still knows the producer's
// last sequence and epoch.
type cleanFilter struct {
	keys      *offsetMap // key → latest offset in [firstDirty, mapEnd)
	mapEnd    int64
	nowMs     int64
	horizonMs int64           // the delete horizon of batches whose tombstones are first kept now
	lastBatch map[int64]int64 // producer id → last offset of its last batch

	// minHorizon is the earliest delete horizon of the tombstones kept
	// below mapEnd (-1: none): when the next cleaning may remove one.
	minHorizon int64

	scratch []byte       // decompressed records
	raw     []byte       // retained records, uncompressed
	compBuf bytes.Buffer // compressed records
	recs    []recordRef
	records int64 // records seen
	removed int64 // records removed
}

// recordRef locates one record of a batch's (decompressed) records.
type recordRef struct {
	start, end int   // the record's bytes, length prefix included
	body       int   // start of the body (after the length prefix)
	tsEnd      int   // end of the timestamp delta varint
	ts         int64 // the record's timestamp (from the original first timestamp)
	keep       bool
}

// filterBatch appends to dst what the cleaned segment keeps of batch (a
// whole stored batch with header h).
func (f *cleanFilter) filterBatch(dst, batch []byte, h *BatchHeader) ([]byte, error) {
	if h.IsControl() {
		// No transactions yet, so no control batches; keep them whole.
		return append(dst, batch[:h.Size()]...), nil
	}
	data := batch[BatchHeaderSize:h.Size()]
	xerialFramed := false
	if c := h.Compression(); c != CompressionNone {
		xerialFramed = c == CompressionSnappy && len(data) >= xerialHeaderSize && bytes.Equal(data[:len(xerialMagic)], xerialMagic)
		var err error
		if f.scratch, err = decompressInto(f.scratch[:0], c, data); err != nil {
			return dst, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
		}
		data = f.scratch
	}
	f.recs = f.recs[:0]
	var (
		kept           int32
		tombstone      bool // a kept record is a tombstone
		tombstoneBelow bool // ... below mapEnd
		p              int
	)
	horizonPassed := h.HasDeleteHorizon() && f.nowMs >= h.FirstTimestamp
	for i := int32(0); i < h.NumRecords; i++ {
		length, n := binary.Varint(data[p:])
		if n <= 0 || length < 1 || length > int64(len(data)-p-n) {
			return dst, errorf(kerr.CorruptMessage, "record %d of the batch at offset %d: bad length", i, h.BaseOffset)
		}
		r := recordRef{start: p, body: p + n, end: p + n + int(length)}
		p = r.end
		b := data[r.body+1 : r.end] // after the attributes
		tsDelta, rest, ok1 := varint(b)
		r.tsEnd = r.end - len(rest)
		offDelta, rest, ok2 := varint(rest)
		key, rest, ok3 := bytesField(rest)
		valueLen, _, ok4 := varint(rest)
		if !ok1 || !ok2 || !ok3 || !ok4 || valueLen < -1 {
			return dst, errorf(kerr.CorruptMessage, "record %d of the batch at offset %d: malformed", i, h.BaseOffset)
		}
		r.ts = h.FirstTimestamp + tsDelta
		off := h.BaseOffset + offDelta
		isTombstone := valueLen < 0
		r.keep = true
		if off < f.mapEnd {
			switch latest, ok := f.keys.get(key); {
			case key == nil:
				r.keep = false
			case ok && latest > off:
				r.keep = false
			case isTombstone && horizonPassed:
				r.keep = false
			}
		}
		if r.keep {
			kept++
			if isTombstone {
				tombstone = true
				tombstoneBelow = tombstoneBelow || off < f.mapEnd
			}
		}
		f.recs = append(f.recs, r)
	}
	if p != len(data) {
		return dst, errorf(kerr.CorruptMessage, "batch at offset %d has %d bytes after its %d records", h.BaseOffset, len(data)-p, h.NumRecords)
	}
	f.records += int64(h.NumRecords)
	f.removed += int64(h.NumRecords - kept)

	setHorizon := tombstone && !h.HasDeleteHorizon()
	if tombstoneBelow {
		horizon := h.FirstTimestamp
		if setHorizon {
			horizon = f.horizonMs
		}
		if f.minHorizon < 0 || horizon < f.minHorizon {
			f.minHorizon = horizon
		}
	}
	switch {
	case kept == 0:
		if h.ProducerID < 0 || f.lastBatch[h.ProducerID] != h.LastOffset() {
			return dst, nil
		}
		if h.NumRecords == 0 {
			return append(dst, batch[:h.Size()]...), nil
		}
		return appendEmptyBatch(dst, h), nil
	case kept == h.NumRecords && !setHorizon:
		return append(dst, batch[:h.Size()]...), nil
	}

	// Rebuild the batch with the kept records.
	firstTs := h.FirstTimestamp
	attrs := uint16(h.Attributes)
	if setHorizon {
		firstTs = f.horizonMs
		attrs |= AttrDeleteHorizon
	}
	maxTs := h.MaxTimestamp
	if !h.IsLogAppendTime() {
		maxTs = -1
	}
	f.raw = f.raw[:0]
	for _, r := range f.recs {
		if !r.keep {
			continue
		}
		if !h.IsLogAppendTime() {
			maxTs = max(maxTs, r.ts)
		}
		if !setHorizon {
			f.raw = append(f.raw, data[r.start:r.end]...)
			continue
		}
		// The timestamp delta becomes relative to the delete horizon.
		var tmp [binary.MaxVarintLen64]byte
		delta := binary.PutVarint(tmp[:], r.ts-firstTs)
		bodyLen := 1 + delta + (r.end - r.tsEnd)
		f.raw = binary.AppendVarint(f.raw, int64(bodyLen))
		f.raw = append(f.raw, data[r.body])
		f.raw = append(f.raw, tmp[:delta]...)
		f.raw = append(f.raw, data[r.tsEnd:r.end]...)
	}
	records := f.raw
	if c := h.Compression(); c != CompressionNone {
		var err error
		if records, err = compressRecords(&f.compBuf, c, xerialFramed, f.raw); err != nil {
			return dst, fmt.Errorf("recompressing the batch at offset %d: %w", h.BaseOffset, err)
		}
	}
	start := len(dst)
	dst = append(dst, batch[:BatchHeaderSize]...)
	dst = append(dst, records...)
	out := dst[start:]
	binary.BigEndian.PutUint32(out[offLength:], uint32(len(out)-batchLengthOverhead))
	binary.BigEndian.PutUint16(out[offAttributes:], attrs)
	binary.BigEndian.PutUint64(out[offFirstTs:], uint64(firstTs))
	binary.BigEndian.PutUint64(out[offMaxTs:], uint64(maxTs))
	binary.BigEndian.PutUint32(out[offRecordCount:], uint32(kept))
	binary.BigEndian.PutUint32(out[offCRC:], batchCRC(out))
	return dst, nil
}

// appendEmptyBatch appends a batch with h's offsets, producer fields,
// leader epoch, timestamp type, transactional and control bits, max
// timestamp, and no records, as Kafka's DefaultRecordBatch.writeEmptyHeader
// (no codec, no first timestamp).
func appendEmptyBatch(dst []byte, h *BatchHeader) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, BatchHeaderSize)...)
	b := dst[start:]
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(h.BaseOffset))
	binary.BigEndian.PutUint32(b[offLength:], uint32(minBatchLength))
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(h.PartitionLeaderEpoch))
	b[offMagic] = 2
	attrs := uint16(h.Attributes) & (AttrLogAppendTime | AttrTransactional | AttrControl)
	binary.BigEndian.PutUint16(b[offAttributes:], attrs)
	binary.BigEndian.PutUint32(b[offLastDelta:], uint32(h.LastOffsetDelta))
	binary.BigEndian.PutUint64(b[offFirstTs:], ^uint64(0)) // -1
	binary.BigEndian.PutUint64(b[offMaxTs:], uint64(h.MaxTimestamp))
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(h.ProducerID))
	binary.BigEndian.PutUint16(b[offProducerEpoch:], uint16(h.ProducerEpoch))
	binary.BigEndian.PutUint32(b[offBaseSequence:], uint32(h.BaseSequence))
	binary.BigEndian.PutUint32(b[offRecordCount:], 0)
	binary.BigEndian.PutUint32(b[offCRC:], batchCRC(b))
	return dst
}

// decompressInto appends the decompressed records of a batch to dst.
func decompressInto(dst []byte, codec int, data []byte) ([]byte, error) {
	r, release, err := decompressReader(codec, data)
	if err != nil {
		return dst, err
	}
	defer release()
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, corruptRecords(err)
		}
	}
}

var (
	gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}
	lz4Writers  = sync.Pool{New: func() any {
		w := lz4.NewWriter(nil)
		_ = w.Apply(lz4.BlockSizeOption(lz4.Block64Kb)) // kept by Reset
		return w
	}}
	zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	})
)

// compressRecords compresses raw records with codec the way producers do
// (snappy with the Java client's xerial framing if the original batch used
// it, LZ4 frames with 64 KiB blocks as Kafka's Java client writes). The
// result aliases buf.
func compressRecords(buf *bytes.Buffer, codec int, xerialFramed bool, raw []byte) ([]byte, error) {
	buf.Reset()
	switch codec {
	case CompressionGzip:
		w := gzipWriters.Get().(*gzip.Writer)
		defer gzipWriters.Put(w)
		w.Reset(buf)
		if _, err := w.Write(raw); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case CompressionSnappy:
		n := s2.MaxEncodedLen(len(raw))
		if n < 0 {
			return nil, fmt.Errorf("%d bytes are too many for snappy", len(raw))
		}
		// Room for the xerial header and one length per 32 KiB block too.
		buf.Grow(n + xerialHeaderSize + 4*(len(raw)/(32<<10)+1))
		if xerialFramed {
			return xerial.Encode(buf.AvailableBuffer(), raw), nil
		}
		return s2.EncodeSnappy(buf.AvailableBuffer()[:n], raw), nil
	case CompressionLZ4:
		w := lz4Writers.Get().(*lz4.Writer)
		defer lz4Writers.Put(w)
		w.Reset(buf)
		if _, err := w.Write(raw); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case CompressionZstd:
		enc, err := zstdEncoder()
		if err != nil {
			return nil, err
		}
		return enc.EncodeAll(raw, buf.Bytes()[:0]), nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

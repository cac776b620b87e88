package log

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Record is one decoded record of a v2 batch.
type Record struct {
	Attributes int8
	Offset     int64 // the batch's base offset plus the record's offset delta
	Timestamp  int64 // the batch's max timestamp for LogAppendTime batches
	Key        []byte
	Value      []byte
	Headers    []RecordHeader
}

// RecordHeader is a record header.
type RecordHeader struct {
	Key   string
	Value []byte
}

// DecodeRecords validates the batch at the start of batch (see
// ValidateStoredBatch: batches of compacted logs may have gaps between
// their records' offsets, and no records at all), decompresses its records
// if needed and calls fn with each record in order; it stops at and returns
// the first error fn returns. The Record and its slices are only valid
// during the call; Key and Value alias the decompressed buffer (or batch
// itself when uncompressed). Malformed records give an error wrapping
// CORRUPT_MESSAGE.
func DecodeRecords(batch []byte, fn func(*Record) error) error {
	h, err := ValidateStoredBatch(batch)
	if err != nil {
		return err
	}
	return decodeRecords(h, batch, fn)
}

// DecodeTrustedRecords is DecodeRecords for a batch whose CRC was checked
// before (on its way into the log, or as a produce request was
// validated): it skips the checksum, which costs more than reading the
// first record of a large batch. Everything else is still checked, so
// malformed bytes give an error, never a panic.
func DecodeTrustedRecords(batch []byte, fn func(*Record) error) error {
	if len(batch) < BatchHeaderSize {
		return errorf(kerr.CorruptMessage, "record batch truncated: %d bytes, the header has %d", len(batch), BatchHeaderSize)
	}
	h := parseHeader(batch)
	if h.Size() < BatchHeaderSize || h.Size() > len(batch) || h.Magic != 2 || h.Compression() > CompressionZstd ||
		h.NumRecords < 0 || h.LastOffsetDelta < 0 || h.LastOffsetDelta < h.NumRecords-1 {
		return errorf(kerr.CorruptMessage, "malformed record batch header")
	}
	return decodeRecords(h, batch, fn)
}

func decodeRecords(h BatchHeader, batch []byte, fn func(*Record) error) error {
	data := batch[BatchHeaderSize:h.Size()]
	if h.Compression() != CompressionNone {
		r, release, err := decompressReader(h.Compression(), data)
		if err != nil {
			return err
		}
		data, err = io.ReadAll(r)
		release()
		if err != nil {
			return corruptRecords(err)
		}
	}
	var rec Record
	for i := int32(0); i < h.NumRecords; i++ {
		length, n := binary.Varint(data)
		if n <= 0 || length < 0 || length > int64(len(data)-n) {
			return errorf(kerr.CorruptMessage, "record %d of the batch at offset %d: bad length", i, h.BaseOffset)
		}
		body := data[n : n+int(length)]
		data = data[n+int(length):]
		if err := decodeRecord(&h, body, &rec); err != nil {
			return errorf(kerr.CorruptMessage, "record %d of the batch at offset %d: %v", i, h.BaseOffset, err)
		}
		if err := fn(&rec); err != nil {
			return err
		}
	}
	if len(data) != 0 {
		return errorf(kerr.CorruptMessage, "batch at offset %d has %d bytes after its %d records", h.BaseOffset, len(data), h.NumRecords)
	}
	return nil
}

var errRecordTruncated = errors.New("record truncated")

func decodeRecord(h *BatchHeader, b []byte, r *Record) error {
	if len(b) < 1 {
		return errRecordTruncated
	}
	r.Attributes = int8(b[0])
	b = b[1:]
	var tsDelta, offDelta int64
	var ok bool
	if tsDelta, b, ok = varint(b); !ok {
		return errRecordTruncated
	}
	if offDelta, b, ok = varint(b); !ok {
		return errRecordTruncated
	}
	r.Offset = h.BaseOffset + offDelta
	r.Timestamp = h.FirstTimestamp + tsDelta
	if h.IsLogAppendTime() {
		r.Timestamp = h.MaxTimestamp
	}
	if r.Key, b, ok = bytesField(b); !ok {
		return errors.New("bad key")
	}
	if r.Value, b, ok = bytesField(b); !ok {
		return errors.New("bad value")
	}
	var nh int64
	if nh, b, ok = varint(b); !ok || nh < 0 || nh > int64(len(b)) {
		return errors.New("bad header count")
	}
	r.Headers = r.Headers[:0]
	for range nh {
		var k, v []byte
		if k, b, ok = bytesField(b); !ok || k == nil {
			return errors.New("bad header key")
		}
		if v, b, ok = bytesField(b); !ok {
			return errors.New("bad header value")
		}
		r.Headers = append(r.Headers, RecordHeader{Key: string(k), Value: v})
	}
	if len(b) != 0 {
		return errors.New("trailing bytes")
	}
	return nil
}

func varint(b []byte) (int64, []byte, bool) {
	v, n := binary.Varint(b)
	if n <= 0 {
		return 0, b, false
	}
	return v, b[n:], true
}

// bytesField reads a varint length (-1 for null) and that many bytes.
func bytesField(b []byte) ([]byte, []byte, bool) {
	n, b, ok := varint(b)
	if !ok || n < -1 || n > int64(len(b)) {
		return nil, b, false
	}
	if n == -1 {
		return nil, b, true
	}
	return b[:n:n], b[n:], true
}

func corruptRecords(err error) error {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return err
	}
	return errorf(kerr.CorruptMessage, "decompressing records: %v", err)
}

var bufioPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

// countingReader counts the bytes read through ReadByte.
type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// forEachRecordTimestamp streams the records of a whole batch, calling fn
// with each record's offset and timestamp until fn returns false. Only the
// record headers are parsed; keys, values and headers are skipped, so the
// memory used does not depend on the batch's decompressed size.
func forEachRecordTimestamp(batch []byte, fn func(off, ts int64) bool) error {
	h := parseHeader(batch)
	r, release, err := decompressReader(h.Compression(), batch[BatchHeaderSize:h.Size()])
	if err != nil {
		return err
	}
	defer release()
	br := bufioPool.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() {
		br.Reset(nil)
		bufioPool.Put(br)
	}()
	cr := countingReader{r: br}
	bad := func(i int32, what string, err error) error {
		if err != nil {
			var ke *kerr.Error
			if errors.As(err, &ke) {
				return err
			}
			return errorf(kerr.CorruptMessage, "record %d of the batch at offset %d: %s: %v", i, h.BaseOffset, what, err)
		}
		return errorf(kerr.CorruptMessage, "record %d of the batch at offset %d: %s", i, h.BaseOffset, what)
	}
	for i := int32(0); i < h.NumRecords; i++ {
		length, err := binary.ReadVarint(br)
		if err != nil || length < 0 {
			return bad(i, "bad length", err)
		}
		cr.n = 0
		if _, err := cr.ReadByte(); err != nil {
			return bad(i, "truncated", err)
		}
		tsDelta, err := binary.ReadVarint(&cr)
		if err != nil {
			return bad(i, "bad timestamp delta", err)
		}
		offDelta, err := binary.ReadVarint(&cr)
		if err != nil {
			return bad(i, "bad offset delta", err)
		}
		rest := length - cr.n
		if rest < 0 {
			return bad(i, "length shorter than its fields", nil)
		}
		ts := h.FirstTimestamp + tsDelta
		if h.IsLogAppendTime() {
			ts = h.MaxTimestamp
		}
		if !fn(h.BaseOffset+offDelta, ts) {
			return nil
		}
		for rest > 0 {
			n, err := br.Discard(int(min(rest, 1<<30)))
			rest -= int64(n)
			if err != nil {
				return bad(i, "truncated", err)
			}
		}
	}
	return nil
}

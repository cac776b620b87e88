package log

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/twmb/franz-go/pkg/kerr"
)

// keylessRecords appends to out a RecordError for every record of the
// validated batch that has a null key (an empty key is a key, as in Kafka),
// numbering records from first. It is the only place an append decodes
// records, and only compacted logs call it. Every record is parsed whole
// (lengths of key, value and headers against the record's length, the
// record count, nothing after the last record), so that whatever a
// compacted log accepts the cleaner can decode. An uncompressed batch is
// parsed in place; a compressed one is streamed through its decompressor
// without holding its decompressed records. Records that do not parse fail
// with CORRUPT_MESSAGE.
func keylessRecords(batch []byte, h *BatchHeader, first int32, out []RecordError) ([]RecordError, error) {
	data := batch[BatchHeaderSize:h.Size()]
	keyless := func(i int32) {
		out = append(out, RecordError{
			Index:   first + i,
			Message: fmt.Sprintf("record %d has no key, which a compacted topic requires", first+i),
		})
	}
	if h.Compression() == CompressionNone {
		for i := int32(0); i < h.NumRecords; i++ {
			length, n := binary.Varint(data)
			if n <= 0 || length < 1 || length > int64(len(data)-n) {
				return out, errorf(kerr.CorruptMessage, "record %d of the batch: bad length", i)
			}
			hasKey, err := parseRecordBody(data[n : n+int(length)])
			if err != nil {
				return out, errorf(kerr.CorruptMessage, "record %d of the batch: %v", i, err)
			}
			data = data[n+int(length):]
			if !hasKey {
				keyless(i)
			}
		}
		if len(data) != 0 {
			return out, errorf(kerr.CorruptMessage, "the batch has %d bytes after its %d records", len(data), h.NumRecords)
		}
		return out, nil
	}

	r, release, err := decompressReader(h.Compression(), data)
	if err != nil {
		return out, err
	}
	defer release()
	br := bufioPool.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() {
		br.Reset(nil)
		bufioPool.Put(br)
	}()
	rs := recordStream{r: br}
	for i := int32(0); i < h.NumRecords; i++ {
		hasKey, err := rs.record()
		if err != nil {
			var ke *kerr.Error
			if errors.As(err, &ke) {
				return out, err
			}
			return out, errorf(kerr.CorruptMessage, "record %d of the batch: %v", i, err)
		}
		if !hasKey {
			keyless(i)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		var ke *kerr.Error
		if errors.As(err, &ke) {
			return out, err
		}
		return out, errorf(kerr.CorruptMessage, "the batch has bytes after its %d records", h.NumRecords)
	}
	return out, nil
}

// recordStream parses records from a stream, skipping their keys, values
// and headers.
type recordStream struct {
	r    *bufio.Reader
	left int64 // bytes left in the current record
}

var errRecordOverrun = errors.New("a field runs past the end of the record")

func (s *recordStream) ReadByte() (byte, error) {
	if s.left <= 0 {
		return 0, errRecordOverrun
	}
	b, err := s.r.ReadByte()
	if err == nil {
		s.left--
	}
	return b, err
}

func (s *recordStream) varint() (int64, error) { return binary.ReadVarint(s) }

// skip discards n bytes of the record.
func (s *recordStream) skip(n int64) error {
	if n > s.left {
		return errRecordOverrun
	}
	for n > 0 {
		m, err := s.r.Discard(int(min(n, 1<<30)))
		n -= int64(m)
		s.left -= int64(m)
		if err != nil {
			return err
		}
	}
	return nil
}

// bytesField skips a varint-length-prefixed field and reports whether it
// was null (length -1).
func (s *recordStream) bytesField() (null bool, err error) {
	n, err := s.varint()
	if err != nil {
		return false, err
	}
	if n < -1 {
		return false, fmt.Errorf("negative length %d", n)
	}
	if n == -1 {
		return true, nil
	}
	return false, s.skip(n)
}

// record parses one record and reports whether it has a key.
func (s *recordStream) record() (hasKey bool, err error) {
	s.left = 1 << 62
	length, err := s.varint()
	if err != nil {
		return false, fmt.Errorf("bad length: %w", err)
	}
	if length < 1 {
		return false, fmt.Errorf("bad length %d", length)
	}
	s.left = length
	if _, err := s.ReadByte(); err != nil { // attributes
		return false, err
	}
	for range 2 { // timestamp delta, offset delta
		if _, err := s.varint(); err != nil {
			return false, err
		}
	}
	keyNull, err := s.bytesField()
	if err != nil {
		return false, fmt.Errorf("bad key: %w", err)
	}
	if _, err := s.bytesField(); err != nil {
		return false, fmt.Errorf("bad value: %w", err)
	}
	nh, err := s.varint()
	if err != nil || nh < 0 {
		return false, fmt.Errorf("bad header count %d: %v", nh, err)
	}
	for range nh {
		if null, err := s.bytesField(); err != nil || null {
			return false, fmt.Errorf("bad header key: %v", err)
		}
		if _, err := s.bytesField(); err != nil {
			return false, fmt.Errorf("bad header value: %w", err)
		}
	}
	if s.left != 0 {
		return false, fmt.Errorf("%d bytes after the record's headers", s.left)
	}
	return !keyNull, nil
}

// parseRecordBody checks a whole record body (after its length), without
// allocating, and reports whether it has a key.
func parseRecordBody(b []byte) (hasKey bool, err error) {
	if len(b) < 1 {
		return false, errRecordTruncated
	}
	b = b[1:] // attributes
	var ok bool
	for range 2 { // timestamp delta, offset delta
		if _, b, ok = varint(b); !ok {
			return false, errRecordTruncated
		}
	}
	var key []byte
	if key, b, ok = bytesField(b); !ok {
		return false, errors.New("bad key")
	}
	if _, b, ok = bytesField(b); !ok {
		return false, errors.New("bad value")
	}
	var nh int64
	if nh, b, ok = varint(b); !ok || nh < 0 || nh > int64(len(b)) {
		return false, errors.New("bad header count")
	}
	for range nh {
		var k []byte
		if k, b, ok = bytesField(b); !ok || k == nil {
			return false, errors.New("bad header key")
		}
		if _, b, ok = bytesField(b); !ok {
			return false, errors.New("bad header value")
		}
	}
	if len(b) != 0 {
		return false, errors.New("trailing bytes")
	}
	return key != nil, nil
}

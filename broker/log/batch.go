package log

import (
	"encoding/binary"
	"hash/crc32"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
)

// The v2 record batch header, as Kafka lays it out (all integers big endian):
//
//	off len field
//	  0   8 baseOffset             \
//	  8   4 batchLength            | not covered by the CRC; baseOffset and
//	 12   4 partitionLeaderEpoch   | partitionLeaderEpoch are assigned by the
//	 16   1 magic (2)              | broker in place
//	 17   4 crc (CRC-32C of bytes 21..end)
//	 21   2 attributes
//	 23   4 lastOffsetDelta
//	 27   8 firstTimestamp (baseTimestamp)
//	 35   8 maxTimestamp
//	 43   8 producerId
//	 51   2 producerEpoch
//	 53   4 baseSequence
//	 57   4 recordCount
//	 61     records
const (
	offBaseOffset    = 0
	offLength        = 8
	offLeaderEpoch   = 12
	offMagic         = 16
	offCRC           = 17
	offAttributes    = 21
	offLastDelta     = 23
	offFirstTs       = 27
	offMaxTs         = 35
	offProducerID    = 43
	offProducerEpoch = 51
	offBaseSequence  = 53
	offRecordCount   = 57

	// BatchHeaderSize is the size of a v2 record batch header: the bytes
	// before the first record.
	BatchHeaderSize = 61
	// batchLengthOverhead is the part of the header before and including
	// the batchLength field, which batchLength does not count.
	batchLengthOverhead = offLength + 4
	// minBatchLength is the smallest valid batchLength: a header and no
	// records.
	minBatchLength = BatchHeaderSize - batchLengthOverhead
)

// Batch attribute bits.
const (
	AttrCompressionMask = 0x07
	AttrLogAppendTime   = 0x08
	AttrTransactional   = 0x10
	AttrControl         = 0x20
	AttrDeleteHorizon   = 0x40
)

// Compression codecs, the low three attribute bits.
const (
	CompressionNone   = 0
	CompressionGzip   = 1
	CompressionSnappy = 2
	CompressionLZ4    = 3
	CompressionZstd   = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BatchHeader is the decoded header of a v2 record batch.
type BatchHeader struct {
	BaseOffset           int64
	Length               int32 // the batchLength field: bytes after it
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	FirstTimestamp       int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	NumRecords           int32
}

// ParseBatchHeader decodes the header at the start of b, which must hold at
// least BatchHeaderSize bytes. It does not validate anything; see
// ValidateBatch.
func ParseBatchHeader(b []byte) (BatchHeader, error) {
	if len(b) < BatchHeaderSize {
		return BatchHeader{}, errorf(kerr.CorruptMessage, "record batch header truncated: %d bytes, need %d", len(b), BatchHeaderSize)
	}
	return parseHeader(b), nil
}

func parseHeader(b []byte) BatchHeader {
	_ = b[BatchHeaderSize-1]
	return BatchHeader{
		BaseOffset:           int64(binary.BigEndian.Uint64(b[offBaseOffset:])),
		Length:               int32(binary.BigEndian.Uint32(b[offLength:])),
		PartitionLeaderEpoch: int32(binary.BigEndian.Uint32(b[offLeaderEpoch:])),
		Magic:                int8(b[offMagic]),
		CRC:                  binary.BigEndian.Uint32(b[offCRC:]),
		Attributes:           int16(binary.BigEndian.Uint16(b[offAttributes:])),
		LastOffsetDelta:      int32(binary.BigEndian.Uint32(b[offLastDelta:])),
		FirstTimestamp:       int64(binary.BigEndian.Uint64(b[offFirstTs:])),
		MaxTimestamp:         int64(binary.BigEndian.Uint64(b[offMaxTs:])),
		ProducerID:           int64(binary.BigEndian.Uint64(b[offProducerID:])),
		ProducerEpoch:        int16(binary.BigEndian.Uint16(b[offProducerEpoch:])),
		BaseSequence:         int32(binary.BigEndian.Uint32(b[offBaseSequence:])),
		NumRecords:           int32(binary.BigEndian.Uint32(b[offRecordCount:])),
	}
}

// Size is the size of the whole batch in bytes.
func (h *BatchHeader) Size() int { return batchLengthOverhead + int(h.Length) }

// LastOffset is the offset of the batch's last record.
func (h *BatchHeader) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// Compression is the batch's compression codec (CompressionNone...).
func (h *BatchHeader) Compression() int { return int(h.Attributes & AttrCompressionMask) }

// IsLogAppendTime reports whether the batch's timestamps are the broker's
// append time (maxTimestamp) rather than the producer's create times.
func (h *BatchHeader) IsLogAppendTime() bool { return h.Attributes&AttrLogAppendTime != 0 }

// IsTransactional reports the transactional attribute bit.
func (h *BatchHeader) IsTransactional() bool { return h.Attributes&AttrTransactional != 0 }

// HasDeleteHorizon reports whether the cleaner has set the batch's delete
// horizon (KIP-534): then FirstTimestamp holds the time after which the
// batch's tombstones may be removed, and record timestamp deltas are
// relative to it.
func (h *BatchHeader) HasDeleteHorizon() bool { return h.Attributes&AttrDeleteHorizon != 0 }

// IsControl reports the control attribute bit.
func (h *BatchHeader) IsControl() bool { return h.Attributes&AttrControl != 0 }

// HasProducerID reports whether the batch comes from an idempotent producer.
func (h *BatchHeader) HasProducerID() bool { return h.ProducerID >= 0 }

// LastSequence is the sequence number of the batch's last record, wrapping
// past math.MaxInt32 to 0 as Kafka's DefaultRecordBatch.incrementSequence.
func (h *BatchHeader) LastSequence() int32 {
	return incrementSequence(h.BaseSequence, h.LastOffsetDelta)
}

func incrementSequence(seq, inc int32) int32 {
	if seq > math.MaxInt32-inc {
		return inc - (math.MaxInt32 - seq) - 1
	}
	return seq + inc
}

// ValidateBatch checks the structure of the record batch at the start of b,
// as a producer sends it, and returns its header. It checks what a broker
// can check without decoding records: the batch length against the bytes
// available and the header size, magic 2, the CRC-32C, a known compression
// codec, a record count of at least one that matches lastOffsetDelta.
// Errors wrap CORRUPT_MESSAGE, INVALID_RECORD or UNSUPPORTED_COMPRESSION_TYPE.
//
// Batches of a compacted log may fail the last check once the cleaner has
// removed records from them (see ValidateStoredBatch).
func ValidateBatch(b []byte) (BatchHeader, error) { return validateBatch(b, false) }

// ValidateStoredBatch is ValidateBatch for batches read from a log: it also
// accepts what the cleaner writes, batches with fewer records than their
// offset range (lastOffsetDelta > records-1: the batch keeps its original
// offsets and last sequence) and, for idempotent producers, empty batches
// (no records), as Kafka does.
func ValidateStoredBatch(b []byte) (BatchHeader, error) { return validateBatch(b, true) }

func validateBatch(b []byte, stored bool) (BatchHeader, error) {
	if len(b) < batchLengthOverhead {
		return BatchHeader{}, errorf(kerr.CorruptMessage, "record batch truncated: %d bytes left, the length field ends at byte %d", len(b), batchLengthOverhead)
	}
	length := int32(binary.BigEndian.Uint32(b[offLength:]))
	if length < minBatchLength {
		return BatchHeader{}, errorf(kerr.CorruptMessage, "record batch length %d is less than the %d-byte v2 header", length, minBatchLength)
	}
	size := batchLengthOverhead + int64(length)
	if size > int64(len(b)) {
		return BatchHeader{}, errorf(kerr.CorruptMessage, "record batch length %d (%d bytes in all) exceeds the %d bytes left in the records", length, size, len(b))
	}
	if magic := int8(b[offMagic]); magic != 2 {
		if magic >= 0 && magic < 2 {
			return BatchHeader{}, errorf(kerr.InvalidRecord, "record batch has magic %d: only v2 record batches (magic 2, produce v3+) are supported", magic)
		}
		return BatchHeader{}, errorf(kerr.CorruptMessage, "record batch has unknown magic %d, want 2", magic)
	}
	b = b[:size]
	h := parseHeader(b)
	if got := crc32.Checksum(b[offAttributes:], castagnoli); got != h.CRC {
		return h, errorf(kerr.CorruptMessage, "record batch CRC-32C mismatch: header says %08x, bytes give %08x", h.CRC, got)
	}
	if c := h.Compression(); c > CompressionZstd {
		return h, errorf(kerr.UnsupportedCompressionType, "record batch uses unknown compression codec %d (known: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)", c)
	}
	if stored {
		if h.NumRecords < 0 || h.LastOffsetDelta < 0 || h.LastOffsetDelta < h.NumRecords-1 {
			return h, errorf(kerr.CorruptMessage, "record batch has a record count of %d and lastOffsetDelta %d", h.NumRecords, h.LastOffsetDelta)
		}
		return h, nil
	}
	if h.NumRecords < 1 {
		return h, errorf(kerr.InvalidRecord, "record batch has a record count of %d, need at least 1", h.NumRecords)
	}
	if h.LastOffsetDelta != h.NumRecords-1 {
		return h, errorf(kerr.InvalidRecord, "record batch has lastOffsetDelta %d but %d records (want lastOffsetDelta = records-1)", h.LastOffsetDelta, h.NumRecords)
	}
	return h, nil
}

// batchCRC computes the CRC-32C of a whole batch, as stored at offset 17.
func batchCRC(b []byte) uint32 { return crc32.Checksum(b[offAttributes:], castagnoli) }

// setLogAppendTime stamps the batch in b with the broker's clock the way
// Kafka does: the timestamp type bit, maxTimestamp and (unless the delete
// horizon bit gives firstTimestamp another meaning) firstTimestamp become ts,
// and the CRC is recomputed.
func setLogAppendTime(b []byte, ts int64) {
	attrs := binary.BigEndian.Uint16(b[offAttributes:])
	binary.BigEndian.PutUint16(b[offAttributes:], attrs|AttrLogAppendTime)
	if attrs&AttrDeleteHorizon == 0 {
		binary.BigEndian.PutUint64(b[offFirstTs:], uint64(ts))
	}
	binary.BigEndian.PutUint64(b[offMaxTs:], uint64(ts))
	binary.BigEndian.PutUint32(b[offCRC:], batchCRC(b))
}

package probes

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Payload is what a probe record carries in its value: who sent it, its
// place in its partition's sequence, and when.
//
// The encoding (version 1, big endian, 33 bytes):
//
//	0  "vprb"        magic
//	4  1             version
//	5  probe id      uint64, random per probe run
//	13 sequence      uint64, per partition, from 1
//	21 send time     int64, Unix nanoseconds
//	29 broker        int32, the broker the record was produced through
//
// Decoders accept longer values (a later version may append fields).
type Payload struct {
	ProbeID uint64
	Seq     uint64
	SentAt  time.Time
	Broker  int32
}

const (
	payloadMagic   = "vprb"
	payloadVersion = 1
	payloadSize    = 33
)

// Errors of DecodePayload.
var (
	ErrNotProbeRecord     = errors.New("not a probe record (no vprb magic)")
	ErrPayloadVersion     = errors.New("probe record of an unknown version")
	ErrPayloadTooShort    = errors.New("probe record shorter than its version's 33 bytes")
	ErrTraceparentInvalid = errors.New("invalid W3C traceparent")
)

// AppendTo appends the encoded payload to dst.
func (p Payload) AppendTo(dst []byte) []byte {
	dst = append(dst, payloadMagic...)
	dst = append(dst, payloadVersion)
	dst = binary.BigEndian.AppendUint64(dst, p.ProbeID)
	dst = binary.BigEndian.AppendUint64(dst, p.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(p.SentAt.UnixNano()))
	return binary.BigEndian.AppendUint32(dst, uint32(p.Broker))
}

// DecodePayload decodes a record value written by AppendTo.
func DecodePayload(b []byte) (Payload, error) {
	if len(b) < len(payloadMagic)+1 || string(b[:len(payloadMagic)]) != payloadMagic {
		return Payload{}, ErrNotProbeRecord
	}
	if b[4] != payloadVersion {
		return Payload{}, fmt.Errorf("%w: %d", ErrPayloadVersion, b[4])
	}
	if len(b) < payloadSize {
		return Payload{}, ErrPayloadTooShort
	}
	return Payload{
		ProbeID: binary.BigEndian.Uint64(b[5:]),
		Seq:     binary.BigEndian.Uint64(b[13:]),
		SentAt:  time.Unix(0, int64(binary.BigEndian.Uint64(b[21:]))),
		Broker:  int32(binary.BigEndian.Uint32(b[29:])),
	}, nil
}

// TraceContext is a W3C trace context (https://www.w3.org/TR/trace-context/),
// carried by every probe record in a traceparent header so that a tracing
// system can follow it through produce, replication and fetch.
type TraceContext struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   byte
}

// TraceparentHeader is the record header key of the trace context.
const TraceparentHeader = "traceparent"

// newTraceContext returns a random, sampled trace context.
func newTraceContext() TraceContext {
	var tc TraceContext
	for tc.TraceID == ([16]byte{}) {
		binary.BigEndian.PutUint64(tc.TraceID[:8], rand.Uint64())
		binary.BigEndian.PutUint64(tc.TraceID[8:], rand.Uint64())
	}
	for tc.SpanID == ([8]byte{}) {
		binary.BigEndian.PutUint64(tc.SpanID[:], rand.Uint64())
	}
	tc.Flags = 1 // sampled
	return tc
}

// String returns the traceparent header value (version 00).
func (tc TraceContext) String() string {
	b := make([]byte, 0, 55)
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, tc.TraceID[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, tc.SpanID[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, []byte{tc.Flags})
	return string(b)
}

// ParseTraceparent parses a traceparent header value as the W3C
// specification asks: lower-case hex, version ff invalid, all-zero trace
// and span ids invalid, version 00 exactly 55 characters, later versions
// at least 55 with a '-' after the flags.
func ParseTraceparent(s string) (TraceContext, error) {
	var tc TraceContext
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return tc, ErrTraceparentInvalid
	}
	var version [1]byte
	if !lowerHex(s[0:2]) || !lowerHex(s[3:35]) || !lowerHex(s[36:52]) || !lowerHex(s[53:55]) {
		return tc, ErrTraceparentInvalid
	}
	_, _ = hex.Decode(version[:], []byte(s[0:2]))
	_, _ = hex.Decode(tc.TraceID[:], []byte(s[3:35]))
	_, _ = hex.Decode(tc.SpanID[:], []byte(s[36:52]))
	var flags [1]byte
	_, _ = hex.Decode(flags[:], []byte(s[53:55]))
	tc.Flags = flags[0]
	switch {
	case version[0] == 0xff,
		version[0] == 0 && len(s) != 55,
		version[0] != 0 && len(s) > 55 && s[55] != '-',
		tc.TraceID == [16]byte{}, tc.SpanID == [8]byte{}:
		return TraceContext{}, ErrTraceparentInvalid
	}
	return tc, nil
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordBatch encodes one record as a Kafka v2 record batch (magic 2, no
// compression, no producer id: the probe never retries, so a duplicate in
// the log is the cluster's doing).
func recordBatch(value []byte, headers []kmsg.Header, ts time.Time) []byte {
	rec := kmsg.Record{Value: value, Headers: headers}
	body := rec.AppendTo(nil)
	rec.Length = int32(len(body) - 1) // Length 0 took one byte as a varint
	records := rec.AppendTo(nil)
	ms := ts.UnixMilli()
	batch := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2,
		FirstTimestamp: ms, MaxTimestamp: ms,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: 1, Records: records,
	}
	raw := batch.AppendTo(nil)
	// Length counts the bytes after itself; the CRC covers those after it.
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32c(raw[21:]))
	return raw
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

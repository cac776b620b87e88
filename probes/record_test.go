package probes

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestPayloadRoundTrip(t *testing.T) {
	p := Payload{ProbeID: 0xdeadbeefcafe, Seq: 42, SentAt: time.Unix(1700000000, 123456789), Broker: -3}
	b := p.AppendTo(nil)
	if len(b) != payloadSize {
		t.Fatalf("encoded %d bytes, want %d", len(b), payloadSize)
	}
	got, err := DecodePayload(b)
	if err != nil || got != (Payload{ProbeID: p.ProbeID, Seq: p.Seq, SentAt: time.Unix(0, p.SentAt.UnixNano()), Broker: p.Broker}) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	// A later version may append fields.
	if got, err := DecodePayload(append(b, 1, 2, 3)); err != nil || got.Seq != 42 {
		t.Fatalf("with a longer value: %+v, %v", got, err)
	}
	for _, tc := range []struct {
		in   []byte
		want error
	}{
		{nil, ErrNotProbeRecord},
		{[]byte("hello world, this is not a probe record"), ErrNotProbeRecord},
		{append([]byte("vprb\x02"), make([]byte, 40)...), ErrPayloadVersion},
		{b[:payloadSize-1], ErrPayloadTooShort},
	} {
		if _, err := DecodePayload(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("DecodePayload(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

func TestTraceparent(t *testing.T) {
	tc := newTraceContext()
	s := tc.String()
	if len(s) != 55 || !strings.HasPrefix(s, "00-") || !strings.HasSuffix(s, "-01") {
		t.Fatalf("traceparent %q", s)
	}
	got, err := ParseTraceparent(s)
	if err != nil || got != tc {
		t.Fatalf("ParseTraceparent(%q) = %+v, %v", s, got, err)
	}
	valid := []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // the specification's example
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future",
	}
	for _, s := range valid {
		if _, err := ParseTraceparent(s); err != nil {
			t.Errorf("ParseTraceparent(%q): %v", s, err)
		}
	}
	invalid := []string{
		"",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // version 00 is exactly 55
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",       // version ff
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",       // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",       // zero span id
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",       // upper case
		"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",       // separator
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",      // no '-' after the flags
		"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",       // not hex
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",        // short
	}
	for _, s := range invalid {
		if _, err := ParseTraceparent(s); !errors.Is(err, ErrTraceparentInvalid) {
			t.Errorf("ParseTraceparent(%q) = %v, want invalid", s, err)
		}
	}
}

// TestRecordBatch checks the hand-built batch with franz-go's decoder,
// CRC included.
func TestRecordBatch(t *testing.T) {
	now := time.UnixMilli(1700000000123)
	value := Payload{ProbeID: 1, Seq: 2, SentAt: now, Broker: 3}.AppendTo(nil)
	hdr := []kmsg.Header{{Key: TraceparentHeader, Value: []byte(newTraceContext().String())}}
	raw := recordBatch(value, hdr, now)
	var b kmsg.RecordBatch
	if err := b.ReadFrom(raw); err != nil {
		t.Fatal(err)
	}
	if int(b.Length) != len(raw)-12 || b.Magic != 2 || b.NumRecords != 1 || b.FirstTimestamp != now.UnixMilli() || b.ProducerID != -1 {
		t.Fatalf("batch header %+v", b)
	}
	if crc := int32(crc32c(raw[21:])); b.CRC != crc {
		t.Fatalf("CRC %x, want %x", b.CRC, crc)
	}
	var r kmsg.Record
	if err := r.ReadFrom(b.Records); err != nil {
		t.Fatal(err)
	}
	var lenBuf [binary.MaxVarintLen32]byte
	if n := binary.PutVarint(lenBuf[:], int64(r.Length)); n+int(r.Length) != len(b.Records) {
		t.Fatalf("record length %d and %d bytes of varint, for %d bytes", r.Length, n, len(b.Records))
	}
	if !bytes.Equal(r.AppendTo(nil), b.Records) || !bytes.Equal(r.Value, value) || len(r.Key) != 0 || len(r.Headers) != 1 || r.Headers[0].Key != TraceparentHeader {
		t.Fatalf("record %+v", r)
	}
}

// FuzzDecodePayload: decoding never panics, and what decodes encodes back
// to the same first 33 bytes.
func FuzzDecodePayload(f *testing.F) {
	f.Add(Payload{ProbeID: 7, Seq: 1, SentAt: time.Unix(0, 1), Broker: 2}.AppendTo(nil))
	f.Add([]byte("vprb\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePayload(b)
		if err != nil {
			return
		}
		if again := p.AppendTo(nil); !bytes.Equal(again, b[:payloadSize]) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", b, p, again)
		}
	})
}

// FuzzParseTraceparent: parsing never panics, and what parses as version
// 00 prints back unchanged.
func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future")
	f.Add("ff-00000000000000000000000000000000-0000000000000000-00")
	f.Fuzz(func(t *testing.T, s string) {
		tc, err := ParseTraceparent(s)
		if err != nil || !strings.HasPrefix(s, "00-") {
			return
		}
		if tc.String() != s {
			t.Fatalf("%q parses to %+v, which prints as %q", s, tc, tc.String())
		}
	})
}

package log

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestDecompressLimit decompresses every codec at and just over its limit:
// exactly limit bytes decode, one more fails with CORRUPT_MESSAGE and
// ErrDecompressLimit, garbage with CORRUPT_MESSAGE only, and an unknown
// codec is UNSUPPORTED_COMPRESSION_TYPE.
func TestDecompressLimit(t *testing.T) {
	raw := bytes.Repeat([]byte("client telemetry "), 1000)
	for _, c := range []struct {
		codec  int
		framed bool
	}{{CompressionNone, false}, {CompressionGzip, false}, {CompressionSnappy, false}, {CompressionSnappy, true}, {CompressionLZ4, false}, {CompressionZstd, false}} {
		t.Run(fmt.Sprintf("codec%d-framed%v", c.codec, c.framed), func(t *testing.T) {
			data := compress(t, c.codec, c.framed, raw)
			out, err := Decompress([]byte("prefix"), c.codec, data, len(raw))
			if err != nil || !bytes.Equal(out, append([]byte("prefix"), raw...)) {
				t.Fatalf("at the limit: %d bytes, %v", len(out), err)
			}
			if _, err := Decompress(nil, c.codec, data, len(raw)-1); !errors.Is(err, kerr.CorruptMessage) || !errors.Is(err, ErrDecompressLimit) {
				t.Fatalf("one byte over the limit: %v, want CORRUPT_MESSAGE and ErrDecompressLimit", err)
			}
			if c.codec != CompressionNone {
				if _, err := Decompress(nil, c.codec, []byte("not compressed at all"), 1<<20); !errors.Is(err, kerr.CorruptMessage) || errors.Is(err, ErrDecompressLimit) {
					t.Fatalf("garbage: %v, want CORRUPT_MESSAGE", err)
				}
			}
		})
	}
	if _, err := Decompress(nil, 7, raw, 1<<20); !errors.Is(err, kerr.UnsupportedCompressionType) {
		t.Fatalf("codec 7: %v, want UNSUPPORTED_COMPRESSION_TYPE", err)
	}
}

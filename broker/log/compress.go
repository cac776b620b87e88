package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
)

// MaxDecompressedBatchBytes bounds how much a compressed batch may expand
// when the log decodes its records (for ListOffsets by timestamp and
// DecodeRecords). Producers write batches of at most max.message.bytes
// compressed; this bound keeps a decompression bomb from exhausting memory
// or time.
const MaxDecompressedBatchBytes = 256 << 20

var (
	gzipPool sync.Pool // *gzip.Reader
	lz4Pool  = sync.Pool{New: func() any { return lz4.NewReader(nil) }}
	zstdPool sync.Pool // *zstd.Decoder
)

// xerialMagic starts snappy data framed by the Java client's
// snappy-java SnappyOutputStream: the magic, a version and a compatible
// version (int32 each), then blocks of (int32 length, raw snappy block).
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderSize = 16

// decompressReader returns a reader of the decompressed form of data (the
// records section of a batch compressed with codec) and a function that
// returns pooled decoders; the caller must call it when done. The reader
// fails after MaxDecompressedBatchBytes.
func decompressReader(codec int, data []byte) (io.Reader, func(), error) {
	return decompressReaderLimit(codec, data, MaxDecompressedBatchBytes)
}

// ErrDecompressLimit is wrapped by Decompress's error when the data
// decompresses to more than its limit.
var ErrDecompressLimit = errors.New("decompression limit exceeded")

// Decompress appends to dst the decompressed form of data, compressed with
// codec (CompressionNone, CompressionGzip, CompressionSnappy — raw or
// xerial-framed —, CompressionLZ4 or CompressionZstd: the codec ids of
// record batches, which KIP-714 PushTelemetry requests also use). It fails
// with an error wrapping kerr.CorruptMessage when data does not decode, or
// when it decodes to more than limit bytes (at most
// MaxDecompressedBatchBytes; the error then also wraps ErrDecompressLimit),
// and with kerr.UnsupportedCompressionType for another codec. It allocates
// about limit bytes at most, whatever data claims.
func Decompress(dst []byte, codec int, data []byte, limit int) ([]byte, error) {
	limit = max(min(limit, MaxDecompressedBatchBytes), 0)
	// The reader fails when it reaches its limit: one more byte lets
	// data of exactly limit bytes end.
	r, release, err := decompressReaderLimit(codec, data, limit+1)
	if err != nil {
		return dst, err
	}
	defer release()
	start := len(dst)
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err != nil && len(dst)-start > limit {
			// The reader reached its limit (and maybe the end).
			return dst, fmt.Errorf("data decompresses to more than %d bytes: %w: %w", limit, ErrDecompressLimit, kerr.CorruptMessage)
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			if !errors.Is(err, kerr.CorruptMessage) {
				err = errorf(kerr.CorruptMessage, "%v", err)
			}
			return dst, err
		}
	}
}

// decompressReaderLimit is decompressReader failing after limit bytes.
func decompressReaderLimit(codec int, data []byte, limit int) (io.Reader, func(), error) {
	var (
		r       io.Reader
		release = func() {}
	)
	switch codec {
	case CompressionNone:
		r = bytes.NewReader(data)
	case CompressionGzip:
		var zr *gzip.Reader
		if v := gzipPool.Get(); v != nil {
			zr = v.(*gzip.Reader)
			if err := zr.Reset(bytes.NewReader(data)); err != nil {
				gzipPool.Put(zr)
				return nil, nil, errorf(kerr.CorruptMessage, "gzip: %v", err)
			}
		} else {
			var err error
			if zr, err = gzip.NewReader(bytes.NewReader(data)); err != nil {
				return nil, nil, errorf(kerr.CorruptMessage, "gzip: %v", err)
			}
		}
		r, release = zr, func() { gzipPool.Put(zr) }
	case CompressionSnappy:
		if len(data) >= xerialHeaderSize && bytes.Equal(data[:len(xerialMagic)], xerialMagic) {
			r = &xerialReader{src: data[xerialHeaderSize:], limit: limit}
			break
		}
		out, err := decodeSnappyBlock(data, limit)
		if err != nil {
			return nil, nil, err
		}
		r = bytes.NewReader(out)
	case CompressionLZ4:
		zr := lz4Pool.Get().(*lz4.Reader)
		zr.Reset(bytes.NewReader(data))
		r, release = zr, func() {
			zr.Reset(nil)
			lz4Pool.Put(zr)
		}
	case CompressionZstd:
		var zr *zstd.Decoder
		if v := zstdPool.Get(); v != nil {
			zr = v.(*zstd.Decoder)
			if err := zr.Reset(bytes.NewReader(data)); err != nil {
				zstdPool.Put(zr)
				return nil, nil, errorf(kerr.CorruptMessage, "zstd: %v", err)
			}
		} else {
			var err error
			zr, err = zstd.NewReader(bytes.NewReader(data),
				zstd.WithDecoderConcurrency(1),
				zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxMemory(MaxDecompressedBatchBytes))
			if err != nil {
				return nil, nil, errorf(kerr.CorruptMessage, "zstd: %v", err)
			}
		}
		r, release = zr, func() {
			_ = zr.Reset(nil)
			zstdPool.Put(zr)
		}
	default:
		return nil, nil, errorf(kerr.UnsupportedCompressionType, "unknown compression codec %d", codec)
	}
	return &limitedReader{r: r, left: int64(limit), limit: limit}, release, nil
}

// limitedReader fails, rather than ending, after a limit.
type limitedReader struct {
	r     io.Reader
	left  int64
	limit int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errorf(kerr.CorruptMessage, "data decompresses to %d bytes or more", l.limit)
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// decodeSnappyBlock decodes one raw snappy block of at most limit bytes.
func decodeSnappyBlock(src []byte, limit int) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, errorf(kerr.CorruptMessage, "snappy: %v", err)
	}
	if n > limit {
		return nil, fmt.Errorf("snappy block decompresses to %d bytes, more than %d: %w: %w", n, limit, ErrDecompressLimit, kerr.CorruptMessage)
	}
	out, err := s2.Decode(make([]byte, n), src)
	if err != nil {
		return nil, errorf(kerr.CorruptMessage, "snappy: %v", err)
	}
	return out, nil
}

// xerialReader decodes xerial-framed snappy one block at a time.
type xerialReader struct {
	src   []byte // remaining framed input
	out   []byte // decoded, not yet read
	limit int    // of one block
}

func (x *xerialReader) Read(p []byte) (int, error) {
	for len(x.out) == 0 {
		if len(x.src) == 0 {
			return 0, io.EOF
		}
		if len(x.src) < 4 {
			return 0, errorf(kerr.CorruptMessage, "snappy (xerial): truncated block length")
		}
		n := binary.BigEndian.Uint32(x.src)
		if uint64(n) > uint64(len(x.src)-4) {
			return 0, errorf(kerr.CorruptMessage, "snappy (xerial): block of %d bytes, %d left", n, len(x.src)-4)
		}
		block := x.src[4 : 4+n]
		x.src = x.src[4+n:]
		// The caller's limitedReader bounds the total.
		out, err := decodeSnappyBlock(block, x.limit)
		if err != nil {
			return 0, fmt.Errorf("xerial framing: %w", err)
		}
		x.out = out
	}
	n := copy(p, x.out)
	x.out = x.out[n:]
	return n, nil
}

package log

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

// benchBatch makes an uncompressed batch of 100-byte records of about
// size bytes.
func benchBatch(b *testing.B, s batchSpec, size int) ([]byte, int) {
	n := size / 110
	recs := make([]rec, n)
	for i := range recs {
		v := make([]byte, 100)
		for j := range v {
			v[j] = byte('a' + (i+j)%26)
		}
		recs[i] = rec{value: v, ts: t0 + int64(i)}
	}
	return buildBatch(b, s, recs), n
}

// benchConfig keeps a benchmark's disk use bounded: retention is applied
// every few thousand appends.
func benchConfig() Config {
	c := DefaultConfig()
	c.SegmentBytes = 128 << 20
	c.RetentionBytes = 512 << 20
	c.RetentionMs = -1
	return c
}

func reportRecords(b *testing.B, records int64) {
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{16 << 10, 64 << 10} {
		for _, mode := range []string{"CreateTime", "LogAppendTime", "Idempotent", "FlushEvery"} {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, mode), func(b *testing.B) {
				cfg := benchConfig()
				cfg.LogAppendTime = mode == "LogAppendTime"
				if mode == "FlushEvery" {
					cfg.FlushMessages = 1
				}
				l := openTest(b, cfg)
				// A ring of batches; idempotent ones carry consecutive
				// sequences and move to a new epoch when the ring wraps.
				const ring = 256
				spec := plain()
				if mode == "Idempotent" {
					spec = idem(1, 0, 0)
				}
				bs := make([][]byte, ring)
				var n int
				for i := range bs {
					bs[i], n = benchBatch(b, spec, size)
					if mode == "Idempotent" {
						binary.BigEndian.PutUint32(bs[i][offBaseSequence:], uint32(i*n))
						resign(bs[i])
					}
				}
				epoch := int16(0)
				b.SetBytes(int64(len(bs[0])))
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					if i%ring == 0 && i > 0 {
						b.StopTimer()
						if mode == "Idempotent" {
							epoch++
							for _, bb := range bs {
								binary.BigEndian.PutUint16(bb[offProducerEpoch:], uint16(epoch))
								resign(bb)
							}
						}
						if i%(16*ring) == 0 {
							if _, err := l.Maintain(); err != nil {
								b.Fatal(err)
							}
						}
						b.StartTimer()
					}
					if _, err := l.Append(bs[i%ring], 0); err != nil {
						b.Fatal(err)
					}
				}
				reportRecords(b, int64(b.N)*int64(n))
			})
		}
	}
}

// BenchmarkAppendParallel appends from several goroutines to one log (the
// broker handles produce requests for a partition concurrently).
func BenchmarkAppendParallel(b *testing.B) {
	l := openTest(b, benchConfig())
	batch, n := benchBatch(b, plain(), 16<<10)
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	b.ResetTimer()
	var count atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		mine := append([]byte(nil), batch...)
		for pb.Next() {
			if _, err := l.Append(mine, 0); err != nil {
				b.Fatal(err)
			}
			if count.Add(1)%4096 == 0 {
				if _, err := l.Maintain(); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	reportRecords(b, count.Load()*int64(n))
}

// fillBench appends about total bytes of 16 KiB batches.
func fillBench(b *testing.B, l *testLog, total int) (batchSize, perBatch int) {
	return fillBenchSized(b, l, total, 16<<10)
}

// fillBenchSized is fillBench with batches of about size bytes.
func fillBenchSized(b *testing.B, l *testLog, total, size int) (batchSize, perBatch int) {
	batch, n := benchBatch(b, plain(), size)
	for range total / len(batch) {
		if _, err := l.Append(batch, 0); err != nil {
			b.Fatal(err)
		}
	}
	return len(batch), n
}

// BenchmarkRead reads the log sequentially, as a consumer catching up does,
// with fetches of maxBytes. The batches are of 16 KiB, and in batch=720KiB
// of ~720 KiB (what four producers at full speed send, docs/benchmarks.md),
// where a read of 1 MiB returns one batch, and should read only that batch.
// batch=1KiB reads one small batch at a time, as a consumer keeping up
// with a low rate does.
func BenchmarkRead(b *testing.B) {
	for _, bc := range []struct {
		name                string
		batchSize, maxBytes int
	}{
		{"max=64KiB", 16 << 10, 64 << 10},
		{"max=1024KiB", 16 << 10, 1 << 20},
		{"batch=720KiB", 720 << 10, 1 << 20},
		{"batch=1KiB", 1 << 10, 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := benchConfig()
			cfg.SegmentBytes = 32 << 20
			l := openTest(b, cfg)
			batchSize, perBatch := fillBenchSized(b, l, 128<<20, bc.batchSize)
			maxBytes := bc.maxBytes
			dst := make([]byte, 0, maxBytes+batchSize)
			end := l.EndOffset()
			off := int64(0)
			var total int64
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				info, err := l.Read(dst[:0], off, maxBytes, end)
				if err != nil {
					b.Fatal(err)
				}
				total += int64(len(info.Records))
				off += int64(len(info.Records)/batchSize) * int64(perBatch)
				if off >= end {
					off = 0
				}
			}
			b.SetBytes(total / int64(b.N))
			reportRecords(b, total/int64(batchSize)*int64(perBatch))
		})
	}
}

// BenchmarkReadRandom reads 64 KiB at random offsets (index lookups and
// header scans dominate).
func BenchmarkReadRandom(b *testing.B) {
	l := openTest(b, benchConfig())
	fillBench(b, l, 64<<20)
	end := l.EndOffset()
	dst := make([]byte, 0, 128<<10)
	r := rand.New(rand.NewPCG(1, 2))
	var total int64
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		info, err := l.Read(dst[:0], r.Int64N(end), 64<<10, end)
		if err != nil {
			b.Fatal(err)
		}
		total += int64(len(info.Records))
	}
	b.SetBytes(total / int64(b.N))
}

// BenchmarkReadWhileAppending: consumers tail the log while a producer
// appends, to show readers and the writer do not block each other.
func BenchmarkReadWhileAppending(b *testing.B) {
	l := openTest(b, benchConfig())
	batchSize, _ := fillBench(b, l, 16<<20)
	batch, _ := benchBatch(b, plain(), 16<<10)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := l.Append(batch, 0); err != nil {
				panic(err)
			}
			if i%4096 == 0 {
				l.Maintain()
			}
		}
	}()
	var total atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]byte, 0, 1<<20+batchSize)
		off := l.StartOffset()
		for pb.Next() {
			end := l.EndOffset()
			info, err := l.Read(dst[:0], off, 1<<20, end)
			if err != nil {
				off = l.StartOffset()
				continue
			}
			total.Add(int64(len(info.Records)))
			if len(info.Records) > 0 {
				hs := info.Records
				for len(hs) > 0 {
					h := parseHeader(hs)
					off = h.LastOffset() + 1
					hs = hs[h.Size():]
				}
			} else {
				off = l.StartOffset()
			}
		}
	})
	b.StopTimer()
	close(stop)
	<-done
	b.SetBytes(total.Load() / int64(b.N))
}

func BenchmarkValidateBatch(b *testing.B) {
	batch, n := benchBatch(b, plain(), 64<<10)
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := ValidateBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	reportRecords(b, int64(b.N)*int64(n))
}

// BenchmarkClean measures cleaning throughput: a log of 16 MiB of 100-byte
// values over 20000 keys (about 8 updates per key), uncompressed and with
// zstd, cleaned from scratch every iteration (copying the directory is not
// timed). Bytes/s counts the log's size before cleaning.
func BenchmarkClean(b *testing.B) {
	const (
		total    = 16 << 20
		nkeys    = 20000
		perBatch = 100
	)
	for _, codec := range []int{CompressionNone, CompressionZstd} {
		b.Run(fmt.Sprintf("codec=%d", codec), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Compact = true
			cfg.SegmentBytes = 4 << 20
			cfg.RetentionMs, cfg.RetentionBytes = -1, -1
			tmpl := openAt(b, b.TempDir(), cfg, newClock(t0), nil)
			spec := plain()
			spec.codec = codec
			rng := rand.New(rand.NewPCG(1, 2))
			value := make([]byte, 100)
			var records int64
			for raw := 0; raw < total; raw += perBatch * 120 {
				kvs := make([]kv, perBatch)
				for i := range kvs {
					for j := range value {
						value[j] = byte('a' + rng.IntN(26))
					}
					kvs[i] = put(fmt.Sprintf("key-%06d", rng.IntN(nkeys)), string(value))
				}
				tmpl.mustAppend(kvBatch(b, spec, t0, kvs...))
				records += perBatch
			}
			tmpl.roll()
			size := tmpl.Size()
			tmpl.Close()
			c := NewCleaner(CleanerConfig{Logger: testLogger()})
			b.SetBytes(size)
			b.ResetTimer()
			var res CleanResult
			for range b.N {
				b.StopTimer()
				dir := b.TempDir()
				copyDir(b, tmpl.dir, dir)
				l := openAt(b, dir, cfg, newClock(t0), nil)
				b.StartTimer()
				var err error
				if res, err = c.Clean(context.Background(), l.Log); err != nil || !res.Cleaned {
					b.Fatalf("%+v %v", res, err)
				}
				b.StopTimer()
				l.Close()
			}
			reportRecords(b, records*int64(b.N))
			b.ReportMetric(float64(res.BytesWritten)/float64(size), "written/read")
		})
	}
}

// BenchmarkAppendCompacted compares appending the same keyed 16 KiB batches
// to a topic that is not compacted (no record is decoded) and to a compacted
// one (every record is parsed to check its key), uncompressed and zstd.
func BenchmarkAppendCompacted(b *testing.B) {
	for _, codec := range []int{CompressionNone, CompressionZstd} {
		for _, compact := range []bool{false, true} {
			b.Run(fmt.Sprintf("codec=%d/compact=%v", codec, compact), func(b *testing.B) {
				cfg := benchConfig()
				cfg.Compact = compact
				l := openTest(b, cfg)
				spec := plain()
				spec.codec = codec
				kvs := make([]kv, 16<<10/120)
				for i := range kvs {
					kvs[i] = put(fmt.Sprintf("key-%06d", i), string(make([]byte, 100)))
				}
				batch := kvBatch(b, spec, t0, kvs...)
				buf := make([]byte, len(batch))
				b.SetBytes(int64(len(batch)))
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					if i%4096 == 0 && i > 0 {
						b.StopTimer()
						if _, err := l.Maintain(); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
					copy(buf, batch)
					if _, err := l.Append(buf, 0); err != nil {
						b.Fatal(err)
					}
				}
				reportRecords(b, int64(b.N)*int64(len(kvs)))
			})
		}
	}
}

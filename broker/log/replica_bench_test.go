package log

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// followerResponse makes a fetch response of n batches of about size bytes
// each (uncompressed 100-byte records), and returns it with the offsets of
// each batch's start in it.
func followerResponse(b *testing.B, s batchSpec, size, n int) ([]byte, []int, int) {
	var (
		resp []byte
		at   []int
		recs int
	)
	for range n {
		bt, k := benchBatch(b, s, size)
		at = append(at, len(resp))
		resp = append(resp, bt...)
		recs += k
	}
	return resp, at, recs
}

// setOffsets writes consecutive base offsets from base into the batches of
// a fetch response (the base offset is not covered by the CRC) and returns
// the offset after them.
func setOffsets(resp []byte, at []int, base int64) int64 {
	for _, p := range at {
		binary.BigEndian.PutUint64(resp[p+offBaseOffset:], uint64(base))
		base += int64(int32(binary.BigEndian.Uint32(resp[p+offLastDelta:]))) + 1
	}
	return base
}

// BenchmarkAppendAsFollower appends fetch responses as a follower: 64 KiB
// (four 16 KiB batches) and 1 MiB (sixty-four), plain and idempotent, and
// with every append fsynced (flush.messages=1). MB/s is of record batches.
func BenchmarkAppendAsFollower(b *testing.B) {
	for _, tc := range []struct {
		name    string
		batches int
		spec    batchSpec
		flush   bool
	}{
		{"64KiB", 4, plain(), false},
		{"1MiB", 64, plain(), false},
		{"64KiB/Idempotent", 4, idem(1, 0, 0), false},
		{"64KiB/FlushEvery", 4, plain(), true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := benchConfig()
			if tc.flush {
				cfg.FlushMessages = 1
			}
			l := openTest(b, cfg)
			resp, at, recs := followerResponse(b, tc.spec, 16<<10, tc.batches)
			b.SetBytes(int64(len(resp)))
			b.ReportAllocs()
			b.ResetTimer()
			next := int64(0)
			for i := range b.N {
				next = setOffsets(resp, at, next)
				if _, err := l.AppendAsFollower(resp); err != nil {
					b.Fatal(err)
				}
				if i%(16<<20/len(resp)+1) == 0 && i > 0 {
					if _, err := l.Maintain(); err != nil { // retention keeps the disk use bounded
						b.Fatal(err)
					}
				}
			}
			reportRecords(b, int64(b.N)*int64(recs))
		})
	}
}

// BenchmarkTruncateTo measures TruncateTo on a log of 1 MiB segments of
// 16 KiB batches: cutting the last four batches of the active segment (a
// follower's usual divergent tail), and cutting three segments back (the
// segments after the cut are deleted). Each iteration then appends the
// removed batches again, outside the timer. Every truncation writes and
// removes its record, fsyncs the cut segment and the directory and
// rewrites the checkpoints it changes, and rebuilds the producer state from
// the newest snapshot below the cut.
func BenchmarkTruncateTo(b *testing.B) {
	for _, tc := range []struct {
		name string
		back int // batches cut
	}{
		{"ActiveSegmentTail", 4},
		{"ThreeSegments", 3 * 64},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := benchConfig()
			cfg.SegmentBytes = 1 << 20
			l := openTest(b, cfg)
			one, at, _ := followerResponse(b, idem(1, 0, 0), 16<<10, 1)
			var all [][]byte
			next := int64(0)
			for i := range 8*64 + tc.back/2 { // eight segments and some
				binary.BigEndian.PutUint32(one[offBaseSequence:], uint32(i*len(at)))
				resign(one)
				next = setOffsets(one, at, next)
				all = append(all, append([]byte(nil), one...))
				if _, err := l.AppendAsFollower(one); err != nil {
					b.Fatal(err)
				}
			}
			cut := all[len(all)-tc.back:]
			x := parseHeader(cut[0]).BaseOffset
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := l.TruncateTo(x); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if l.EndOffset() != x {
					b.Fatalf("end %d, want %d", l.EndOffset(), x)
				}
				for i := 0; i < len(cut); i += 16 {
					if _, err := l.AppendAsFollower(bytes.Join(cut[i:min(i+16, len(cut))], nil)); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(len(l.segments())), "segments")
		})
	}
}

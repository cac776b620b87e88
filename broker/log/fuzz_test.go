package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// fuzzSeeds are record batches of all kinds, whole and damaged.
func fuzzSeeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, cc := range allCodecs {
		s := plain()
		s.codec, s.xerial = cc.codec, cc.xerial
		out = append(out, buildBatch(t, s, values("seed", 3, t0)))
	}
	good := simple(t, 2, t0)
	two := append(append([]byte(nil), good...), pbatch(t, 1, 0, 0, 2)...)
	out = append(out,
		two,
		good[:len(good)-1],
		good[:20],
		append(append([]byte(nil), good...), 0, 0, 0),
		sizedBatch(t, 1, 5000, t0),
		[]byte{},
		[]byte("garbage garbage garbage garbage garbage garbage garbage garbage"),
	)
	bad := append([]byte(nil), good...)
	bad[len(bad)-1] ^= 1
	return append(out, bad)
}

// FuzzAppend appends arbitrary bytes between two good batches. Append must
// not panic, must either append or reject without changing the log, must
// only fail with a client error, and the log must stay readable (every
// batch valid) before and after a reopen.
func FuzzAppend(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := smallConfig()
		cfg.MaxMessageBytes = 8 << 10
		l := openFast(t, cfg)
		l.mustAppend(simple(t, 2, t0))
		end := l.EndOffset()
		info, err := l.Append(append([]byte(nil), data...), 0)
		if err != nil {
			var ke *kerr.Error
			if !errors.As(err, &ke) || ke == kerr.KafkaStorageError {
				t.Fatalf("Append failed with %v, want a client error", err)
			}
			if l.EndOffset() != end {
				t.Fatalf("rejected append moved the end offset from %d to %d", end, l.EndOffset())
			}
		} else if info.BaseOffset != end || info.LastOffset < info.BaseOffset-1 {
			t.Fatalf("append info %+v at end %d", info, end)
		}
		l.mustAppend(simple(t, 1, t0))
		hs := readAll(t, l.Log)
		l2 := l.reopen(true)
		if l2.EndOffset() != l.EndOffset() {
			t.Fatalf("end %d after reopen, %d before", l2.EndOffset(), l.EndOffset())
		}
		if got := readAll(t, l2.Log); len(got) != len(hs) {
			t.Fatalf("%d batches after reopen, %d before", len(got), len(hs))
		}
		l2.mustAppend(simple(t, 1, t0))
	})
}

// FuzzRecover opens a log whose only segment holds arbitrary bytes. Open
// must not panic and must give a readable log of valid batches that takes
// appends. It runs on memFS: recovery's file operations and fsyncs on a
// real disk made each run (and the minimizing of every new input) take
// milliseconds.
func FuzzRecover(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	// A proper segment: batches with consecutive offsets.
	l := openAt(f, f.TempDir(), smallConfig(), newClock(t0), nil)
	for i := range 5 {
		l.mustAppend(buildBatch(f, idem(1, 0, int32(i*3)), values("s", 3, t0+int64(i))))
	}
	l.Close()
	seg, err := os.ReadFile(filepath.Join(l.dir, offsetName(0)+logSuffix))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seg)
	f.Add(seg[:len(seg)-7])
	f.Add(append(append([]byte(nil), seg...), seg...)) // offsets that do not continue
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys, dir := newMemFS(), "/data/fuzz-0"
		if err := writeFSFile(fsys, filepath.Join(dir, offsetName(0)+logSuffix), data); err != nil {
			t.Fatal(err)
		}
		l := openAt(t, dir, smallConfig(), newClock(t0), fsys)
		if l.StartOffset() != 0 {
			t.Fatalf("start offset %d", l.StartOffset())
		}
		// Recovery keeps valid stored batches with increasing offsets
		// (gaps and cleaned batches included: a follower copies them).
		hs := storedBatches(t, l.Log) // fails on any invalid batch
		size := int64(0)
		for _, h := range hs {
			size += int64(len(h))
		}
		if size != l.Size() || size > int64(len(data)) {
			t.Fatalf("the log holds %d bytes of batches and has size %d (from %d bytes)", size, l.Size(), len(data))
		}
		end := l.EndOffset()
		l.OffsetForTimestamp(t0)
		l.MaxTimestamp()
		if info := l.mustAppend(simple(t, 1, t0)); info.BaseOffset != end {
			t.Fatalf("append at %d, end was %d", info.BaseOffset, end)
		}
		l2 := l.reopen(true)
		if l2.EndOffset() != end+1 {
			t.Fatalf("end %d after reopen, want %d", l2.EndOffset(), end+1)
		}
		storedBatches(t, l2.Log)
	})
}

// FuzzRecoverMetadata puts arbitrary bytes in one of the files next to the
// segments: an older segment's offset or time index, a producer snapshot,
// the leader epoch or start offset checkpoint. Open must repair or ignore
// it and serve the same data.
func FuzzRecoverMetadata(f *testing.F) {
	files := []string{
		offsetName(0) + indexSuffix,
		offsetName(0) + timeIndexSuffix,
		offsetName(0) + snapshotSuffix,
		leaderEpochFile,
		startOffsetFile,
		cleanerCkptFile,
		offsetName(0) + swapSuffix, // a swap record without a cleaned segment
	}
	for i := range files {
		f.Add(uint8(i), []byte{})
		f.Add(uint8(i), []byte("0\n1\n0 0\n"))
		f.Add(uint8(i), make([]byte, 24))
		f.Add(uint8(i), []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 200})
	}
	f.Add(uint8(2), encodeSnapshot(producerStates{1: &producerEntry{id: 1, epoch: 3, nbatches: 0, lastTs: t0}}))
	f.Add(uint8(5), encodeCleanerCheckpoint(12, t0))
	f.Add(uint8(6), encodeSwapRecord(0, 24))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		cfg := smallConfig()
		cfg.SegmentBytes = 1200
		cfg.IndexIntervalBytes = 100
		l := openFast(t, cfg)
		for i := range 12 {
			recs := values("m", 2, t0+int64(i))
			recs[0].value = make([]byte, 100)
			l.mustAppend(buildBatch(t, idem(1, 0, int32(i*2)), recs))
		}
		l.Close()
		if len(segmentLogs(t, l.dir)) < 2 {
			t.Fatal("want two segments")
		}
		name := files[int(which)%len(files)]
		if err := os.WriteFile(filepath.Join(l.dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		l2 := openAt(t, l.dir, cfg, l.clock, l.fs)
		if l2.EndOffset() != 24 {
			t.Fatalf("end %d", l2.EndOffset())
		}
		if l2.StartOffset() > 24 {
			t.Fatalf("start %d", l2.StartOffset())
		}
		for o := l2.StartOffset(); o < 24; o++ {
			info, err := l2.Read(nil, o, 1, 24)
			if err != nil {
				t.Fatal(err)
			}
			if h := batches(t, info.Records)[0]; h.BaseOffset > o || h.LastOffset() < o {
				t.Fatalf("offset %d: batch [%d, %d]", o, h.BaseOffset, h.LastOffset())
			}
		}
		// The producer either is known (and the next sequence is in order) or
		// is not (and any sequence goes).
		if _, err := l2.Append(pbatch(t, 1, 0, 24, 1), 0); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzCompactedAppend appends arbitrary bytes to a compacted log, whose
// appends decode every record to check its key. Append must not panic and
// must accept only batches whose records all decode and have keys; then the
// cleaner must clean whatever was accepted without an error, and the
// cleaned log must keep the latest record of every key.
func FuzzCompactedAppend(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	for _, cc := range allCodecs {
		s := plain()
		s.codec, s.xerial = cc.codec, cc.xerial
		f.Add(kvBatch(f, s, t0, put("a", "1"), del("b"), put("a", "2")))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := compactConfig()
		cfg.MaxMessageBytes = 8 << 10
		l := openFast(t, cfg)
		l.mustAppend(kvBatch(t, plain(), t0, put("a", "0"), put("z", "0")))
		end := l.EndOffset()
		if _, err := l.Append(append([]byte(nil), data...), 0); err != nil {
			var ke *kerr.Error
			if !errors.As(err, &ke) || ke == kerr.KafkaStorageError {
				t.Fatalf("Append failed with %v, want a client error", err)
			}
			if l.EndOffset() != end {
				t.Fatalf("rejected append moved the end offset from %d to %d", end, l.EndOffset())
			}
		}
		before, _ := readLog(t, l.Log)
		for _, r := range before {
			if r.key == "" && r.off >= end {
				// An empty key is fine; a null one is not. readLog gives
				// "" for both, so look again.
				info, _ := l.Read(nil, r.off, 1, l.EndOffset())
				_ = DecodeRecords(info.Records, func(rec *Record) error {
					if rec.Offset == r.off && rec.Key == nil {
						t.Fatalf("accepted a record without a key at %d", r.off)
					}
					return nil
				})
			}
		}
		l.mustAppend(kvBatch(t, plain(), t0, put("z", "1")))
		l.roll()
		if _, err := newTestCleaner().Clean(context.Background(), l.Log); err != nil {
			t.Fatalf("cleaning what a compacted log accepted: %v", err)
		}
		after, _ := readLog(t, l.Log)
		want := latestByKey(append(before, logRecord{off: l.EndOffset() - 1, key: "z", value: ptr("1")}))
		if got := latestByKey(after); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after cleaning\n got %v\nwant %v", got, want)
		}
	})
}

// followerFuzzSeeds are batches as a leader stores them, starting at
// offset 2 (where the fuzzed follower's log ends): plain, idempotent,
// compressed, a transaction marker, and what the cleaner makes of a
// compacted log (offset gaps, batches with fewer records than offsets, an
// empty batch kept for an idempotent producer).
func followerFuzzSeeds(f *testing.F) [][]byte {
	leader := openAt(f, f.TempDir(), compactConfig(), newClock(t0), noSyncFS{OSFS()})
	leader.mustAppend(kvBatch(f, plain(), t0, put("x", "0"), put("y", "0")))
	leader.mustAppend(kvBatch(f, idem(7, 0, 0), t0, put("a", "1"), put("b", "1")))
	for _, cc := range allCodecs {
		s := plain()
		s.codec, s.xerial = cc.codec, cc.xerial
		if _, err := leader.Append(kvBatch(f, s, t0+1, put("a", "2"), del("c"), put("d", "2")), 3); err != nil {
			f.Fatal(err)
		}
	}
	leader.roll()
	leader.clean(newTestCleaner())
	stored := storedBatches(f, leader.Log)
	ctl := idem(7, 0, -1)
	ctl.control, ctl.transactional = true, true
	marker := buildBatch(f, ctl, []rec{{key: []byte{0, 0, 0, 1}, value: []byte{0, 0, 0, 0, 0, 5}, ts: t0}})
	putBase(marker, 2)
	out := [][]byte{bytes.Join(stored[1:], nil), marker}
	for _, b := range stored[1:] {
		out = append(out, b)
	}
	for _, s := range fuzzSeeds(f) {
		if len(s) >= 8 {
			s = append([]byte(nil), s...)
			putBase(s, 2)
		}
		out = append(out, s)
	}
	return out
}

// FuzzAppendAsFollower appends arbitrary bytes to a follower's log, then
// truncates it at an arbitrary offset. AppendAsFollower must not panic, must
// either append the batches exactly as given (offsets kept) or reject them
// with a client error leaving the log, its producer state and leader epochs
// unchanged; the log must read back as valid stored batches with increasing
// offsets, before and after a reopen, and after the truncation.
func FuzzAppendAsFollower(f *testing.F) {
	for i, s := range followerFuzzSeeds(f) {
		f.Add(s, uint16(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		cfg := smallConfig()
		l := openFast(t, cfg)
		first := simple(t, 2, t0)
		if _, err := l.AppendAsFollower(first); err != nil {
			t.Fatal(err)
		}
		end, size := l.EndOffset(), l.Size()
		state := fmt.Sprint(l.Producers(), l.epochs.load())
		info, err := l.AppendAsFollower(append([]byte(nil), data...))
		if err != nil {
			var ke *kerr.Error
			if !errors.As(err, &ke) || ke == kerr.KafkaStorageError {
				t.Fatalf("AppendAsFollower failed with %v, want a client error", err)
			}
			if l.EndOffset() != end || l.Size() != size || fmt.Sprint(l.Producers(), l.epochs.load()) != state {
				t.Fatalf("a rejected append changed the log")
			}
		} else {
			if info.BaseOffset < end || l.EndOffset() != info.LastOffset+1 || info.Bytes != len(data) {
				t.Fatalf("append info %+v at end %d, now %d", info, end, l.EndOffset())
			}
			got := storedBatches(t, l.Log)
			if !bytes.Equal(bytes.Join(got, nil), append(append([]byte(nil), first...), data...)) {
				t.Fatal("the batches read back differ from those appended")
			}
		}
		l.OffsetForTimestamp(t0)
		l.MaxTimestamp()
		want := storedBatches(t, l.Log)
		l2 := l.reopen(true)
		if l2.EndOffset() != l.EndOffset() {
			t.Fatalf("end %d after reopen, %d before", l2.EndOffset(), l.EndOffset())
		}
		if got := storedBatches(t, l2.Log); !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatal("the log reads differently after reopening")
		}
		x := int64(uint64(cut) % uint64(l2.EndOffset()+1))
		if err := l2.TruncateTo(x); err != nil {
			t.Fatalf("TruncateTo(%d): %v", x, err)
		}
		// The end is after the last batch kept, or where the segment cut
		// empty begins (after a gap); never beyond x.
		kept, natural := cutAt(want, x)
		if x <= l2.StartOffset() {
			kept, natural = nil, x
		}
		wantEnd := l2.EndOffset()
		if wantEnd < natural || wantEnd > x {
			t.Fatalf("TruncateTo(%d): end %d, want %d or up to %d", x, wantEnd, natural, x)
		}
		if got := storedBatches(t, l2.Log); !slices.EqualFunc(got, kept, bytes.Equal) {
			t.Fatalf("after TruncateTo(%d): %d batches, want %d", x, len(got), len(kept))
		}
		l3 := l2.reopen(true)
		if got := storedBatches(t, l3.Log); l3.EndOffset() != wantEnd || !slices.EqualFunc(got, kept, bytes.Equal) {
			t.Fatalf("after TruncateTo(%d) and reopening: end %d, %d batches; want %d, %d", x, l3.EndOffset(), len(got), wantEnd, len(kept))
		}
		if l3.EndOffset() < 1<<40 {
			l3.mustAppend(simple(t, 1, t0))
		}
	})
}

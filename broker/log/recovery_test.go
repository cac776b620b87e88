package log

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// openCapture opens dir with a logger that records what recovery logs.
func openCapture(t *testing.T, dir string, cfg Config) (*testLog, *captureHandler) {
	t.Helper()
	h := &captureHandler{}
	clock := newClock(t0)
	l, err := Open(dir, cfg, Options{Now: clock.Now, Logger: slog.New(h)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return &testLog{Log: l, t: t, dir: dir, clock: clock, cfg: cfg, fs: OSFS()}, h
}

func TestRecoverTornTail(t *testing.T) {
	type fixture struct {
		path  string // the last segment
		good  int64  // size of the last segment's good prefix
		extra []byte // a batch appended after the good prefix
	}
	cases := []struct {
		name     string
		mutate   func(t *testing.T, f fixture)
		wantEnd  int64 // end offset after recovery
		wantTrim bool  // whether recovery truncates
	}{
		{"clean", func(*testing.T, fixture) {}, 20, false},
		{"cut mid-batch", func(t *testing.T, f fixture) {
			appendFile(t, f.path, f.extra[:len(f.extra)/2])
		}, 20, true},
		{"cut mid-header", func(t *testing.T, f fixture) {
			appendFile(t, f.path, f.extra[:30])
		}, 20, true},
		{"cut in the length field", func(t *testing.T, f fixture) {
			appendFile(t, f.path, f.extra[:10])
		}, 20, true},
		{"garbage after the last batch", func(t *testing.T, f fixture) {
			appendFile(t, f.path, []byte("this is not a record batch, it is garbage that a crash left behind"))
		}, 20, true},
		{"zeros after the last batch", func(t *testing.T, f fixture) {
			appendFile(t, f.path, make([]byte, 4096))
		}, 20, true},
		{"flipped byte in the last batch", func(t *testing.T, f fixture) {
			b := append([]byte(nil), f.extra...)
			b[len(b)-5] ^= 0x40
			appendFile(t, f.path, b)
		}, 20, true},
		{"flipped byte in the CRC field", func(t *testing.T, f fixture) {
			b := append([]byte(nil), f.extra...)
			b[offCRC+2] ^= 1
			appendFile(t, f.path, b)
		}, 20, true},
		{"wrong base offset", func(t *testing.T, f fixture) {
			b := append([]byte(nil), f.extra...)
			b[7] ^= 4 // not covered by the CRC
			appendFile(t, f.path, b)
		}, 20, true},
		{"huge length field", func(t *testing.T, f fixture) {
			b := append([]byte(nil), f.extra...)
			b[offLength] = 0x7f
			appendFile(t, f.path, b)
		}, 20, true},
		{"good batch then garbage", func(t *testing.T, f fixture) {
			appendFile(t, f.path, f.extra)
			appendFile(t, f.path, []byte{0, 0, 0, 0, 0, 0, 0, 25, 0, 0, 0, 100})
		}, 25, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig()
			l := openTest(t, cfg)
			for i := range 10 { // two records per batch; several segments
				l.mustAppend(sizedBatch(t, 2, 500, t0+int64(i)))
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			segsBefore := segmentLogs(t, l.dir)
			last := segsBefore[len(segsBefore)-1]
			fi, _ := os.Stat(last)
			// The extra batch as the log would have written it: offsets 20..24.
			extra := sizedBatch(t, 5, 10, t0)
			putBase(extra, 20)
			f := fixture{path: last, good: fi.Size(), extra: extra}
			tc.mutate(t, f)

			l2, h := openCapture(t, l.dir, cfg)
			if l2.EndOffset() != tc.wantEnd {
				t.Fatalf("end offset %d after recovery, want %d", l2.EndOffset(), tc.wantEnd)
			}
			warn := h.find(slog.LevelWarn, "torn or corrupt tail")
			if (warn != nil) != tc.wantTrim {
				t.Fatalf("truncation warning logged: %v, want %v", warn != nil, tc.wantTrim)
			}
			if warn != nil {
				if warn["offset"].Int64() != tc.wantEnd || warn["bytes"].Int64() <= 0 {
					t.Fatalf("warning attributes %v", warn)
				}
				fi, _ := os.Stat(last)
				wantSize := f.good
				if tc.wantEnd == 25 {
					wantSize += int64(len(extra))
				}
				if fi.Size() != wantSize {
					t.Fatalf("last segment is %d bytes after recovery, want %d", fi.Size(), wantSize)
				}
			}
			hs := readAll(t, l2.Log)
			if got := hs[len(hs)-1].LastOffset() + 1; got != tc.wantEnd {
				t.Fatalf("readable up to %d", got)
			}
			info := l2.mustAppend(simple(t, 3, t0))
			if info.BaseOffset != tc.wantEnd {
				t.Fatalf("next append at %d, want %d", info.BaseOffset, tc.wantEnd)
			}
			l3 := l2.reopen(true)
			if l3.EndOffset() != tc.wantEnd+3 {
				t.Fatalf("after another reopen: end %d", l3.EndOffset())
			}
			readAll(t, l3.Log)
		})
	}
}

func putBase(b []byte, off int64) {
	for i := range 8 {
		b[i] = byte(off >> (56 - 8*i))
	}
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverLastSegmentAllBad: a last segment whose first batch is bad is
// emptied, and the log continues at its base offset.
func TestRecoverLastSegmentAllBad(t *testing.T) {
	l := openTest(t, smallConfig())
	for i := range 6 {
		l.mustAppend(sizedBatch(t, 1, 1500, t0+int64(i)))
	}
	l.Close()
	segs := segmentLogs(t, l.dir)
	last := segs[len(segs)-1]
	data, _ := os.ReadFile(last)
	data[offAttributes+3] ^= 0xff
	os.WriteFile(last, data, 0o644)
	l2 := openAt(t, l.dir, smallConfig(), newClock(t0), nil)
	base, _ := parseOffsetName(filepath.Base(last)[:20])
	if l2.EndOffset() != base {
		t.Fatalf("end %d, want the last segment's base %d", l2.EndOffset(), base)
	}
	if info := l2.mustAppend(simple(t, 1, t0)); info.BaseOffset != base {
		t.Fatalf("append at %d", info.BaseOffset)
	}
	readAll(t, l2.Log)
}

func TestRecoverIndexes(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(t *testing.T, seg string) // seg is a path without suffix
	}{
		{"offset index missing", func(t *testing.T, seg string) { os.Remove(seg + indexSuffix) }},
		{"time index missing", func(t *testing.T, seg string) { os.Remove(seg + timeIndexSuffix) }},
		{"both missing", func(t *testing.T, seg string) {
			os.Remove(seg + indexSuffix)
			os.Remove(seg + timeIndexSuffix)
		}},
		{"offset index garbage", func(t *testing.T, seg string) {
			os.WriteFile(seg+indexSuffix, []byte("garbage!garbage!garbage!"), 0o644)
		}},
		{"offset index partial entry", func(t *testing.T, seg string) { truncateBy(t, seg+indexSuffix, 3) }},
		{"time index lost its tail", func(t *testing.T, seg string) { truncateBy(t, seg+timeIndexSuffix, 12) }},
		{"offset index position beyond the file", func(t *testing.T, seg string) {
			b, _ := os.ReadFile(seg + indexSuffix)
			b[len(b)-4] = 0x7f
			os.WriteFile(seg+indexSuffix, b, 0o644)
		}},
		{"offset index last entry points at the wrong batch", func(t *testing.T, seg string) {
			b, _ := os.ReadFile(seg + indexSuffix)
			b[len(b)-5]++ // relative offset of the last entry
			os.WriteFile(seg+indexSuffix, b, 0o644)
		}},
		{"offset index not increasing", func(t *testing.T, seg string) {
			b, _ := os.ReadFile(seg + indexSuffix)
			copy(b[8:16], b[0:8])
			os.WriteFile(seg+indexSuffix, b, 0o644)
		}},
		{"time index not increasing", func(t *testing.T, seg string) {
			b, _ := os.ReadFile(seg + timeIndexSuffix)
			copy(b[12:24], b[0:12])
			os.WriteFile(seg+timeIndexSuffix, b, 0o644)
		}},
		{"time index empty", func(t *testing.T, seg string) { os.WriteFile(seg+timeIndexSuffix, nil, 0o644) }},
		{"time index offset beyond the segment", func(t *testing.T, seg string) {
			b, _ := os.ReadFile(seg + timeIndexSuffix)
			b[len(b)-3] = 0x10
			os.WriteFile(seg+timeIndexSuffix, b, 0o644)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig()
			cfg.SegmentBytes = 32 << 10
			cfg.IndexIntervalBytes = 100
			l := openTest(t, cfg)
			spans := fillRandom(t, l, 120, 7)
			if len(l.segments()) < 3 {
				t.Fatalf("%d segments", len(l.segments()))
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			seg := filepath.Join(l.dir, offsetName(0))
			origIndex, _ := os.ReadFile(seg + indexSuffix)
			origTime, _ := os.ReadFile(seg + timeIndexSuffix)
			if len(origIndex) < 24 || len(origTime) < 24 {
				t.Fatalf("index sizes %d %d: too few entries for the test", len(origIndex), len(origTime))
			}
			tc.mutate(t, seg)

			l2, h := openCapture(t, l.dir, cfg)
			if h.find(slog.LevelWarn, "rebuilding the indexes") == nil {
				t.Fatal("no rebuild warning")
			}
			for _, sp := range spans {
				for o := sp[0]; o <= sp[1]; o++ {
					info, err := l2.Read(nil, o, 1, l2.EndOffset())
					if err != nil {
						t.Fatal(err)
					}
					if h := batches(t, info.Records)[0]; h.BaseOffset != sp[0] {
						t.Fatalf("offset %d: batch %d, want %d", o, h.BaseOffset, sp[0])
					}
				}
			}
			gotIndex, _ := os.ReadFile(seg + indexSuffix)
			gotTime, _ := os.ReadFile(seg + timeIndexSuffix)
			if !bytes.Equal(gotIndex, origIndex) || !bytes.Equal(gotTime, origTime) {
				t.Fatalf("rebuilt indexes differ from the originals")
			}
			if ts, _, err := l2.MaxTimestamp(); err != nil || ts != t0+119 {
				t.Fatalf("MaxTimestamp %d %v", ts, err)
			}
		})
	}
}

func truncateBy(t *testing.T, path string, n int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()-n); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverCorruptOlderSegment: an older segment whose indexes are lost
// and whose data is damaged is truncated at the damage when the indexes are
// rebuilt; later segments stay, and reads skip the gap.
func TestRecoverCorruptOlderSegment(t *testing.T) {
	cfg := smallConfig()
	l := openTest(t, cfg)
	for i := range 12 {
		l.mustAppend(sizedBatch(t, 1, 1000, t0+int64(i))) // ~1070 bytes: three per segment
	}
	l.Close()
	seg := filepath.Join(l.dir, offsetName(0))
	os.Remove(seg + indexSuffix)
	data, _ := os.ReadFile(seg + logSuffix)
	h := parseHeader(data)
	data[h.Size()+200] ^= 1 // inside the second batch (offset 1)
	os.WriteFile(seg+logSuffix, data, 0o644)

	l2, logs := openCapture(t, l.dir, cfg)
	if logs.find(slog.LevelError, "corrupt data") == nil {
		t.Fatal("no error logged for the damaged segment")
	}
	info, err := l2.Read(nil, 1, 1, l2.EndOffset())
	if err != nil {
		t.Fatal(err)
	}
	if got := batches(t, info.Records)[0].BaseOffset; got != 3 {
		t.Fatalf("read at the lost offset 1 returned batch %d, want the next segment's first batch 3", got)
	}
	if l2.EndOffset() != 12 {
		t.Fatalf("end %d", l2.EndOffset())
	}
	// Every batch served is valid.
	for o := int64(0); o < 12; o++ {
		info, err := l2.Read(nil, o, 1<<20, 12)
		if err != nil {
			t.Fatal(err)
		}
		batches(t, info.Records)
	}
}

func TestRecoverDirectoryLeftovers(t *testing.T) {
	cfg := smallConfig()
	l := openTest(t, cfg)
	for i := range 8 {
		l.mustAppend(sizedBatch(t, 1, 1500, t0+int64(i)))
	}
	l.Close()
	dir := l.dir
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(offsetName(0)+indexSuffix+tmpSuffix, []byte("half-written index"))
	write(leaderEpochFile+tmpSuffix, []byte("0\n1\n"))
	write(offsetName(0)+logSuffix+deletedSuffix, []byte("a deleted segment"))
	write(offsetName(99)+indexSuffix, make([]byte, 16)) // orphan index
	write("notanoffset.log", []byte("whatever"))
	write("123.log", []byte("short name"))
	write("partition.metadata", []byte("version: 0\n")) // the broker's
	// An empty segment that is not the last (between two real ones).
	segs := segmentLogs(t, dir)
	base1, _ := parseOffsetName(filepath.Base(segs[1])[:20])
	write(offsetName(base1-1)+logSuffix, nil)

	l2, h := openCapture(t, dir, cfg)
	if h.find(slog.LevelWarn, "not a 20-digit offset") == nil {
		t.Fatal("no warning for the unparsable names")
	}
	for name, want := range map[string]bool{
		offsetName(0) + indexSuffix + tmpSuffix:   false,
		leaderEpochFile + tmpSuffix:               false,
		offsetName(0) + logSuffix + deletedSuffix: false,
		offsetName(99) + indexSuffix:              false,
		offsetName(base1-1) + logSuffix:           false,
		"notanoffset.log":                         true,
		"123.log":                                 true,
		"partition.metadata":                      true,
		offsetName(0) + logSuffix:                 true,
	} {
		_, err := os.Stat(filepath.Join(dir, name))
		if got := err == nil; got != want {
			t.Errorf("%s exists: %v, want %v", name, got, want)
		}
	}
	if l2.EndOffset() != 8 {
		t.Fatalf("end %d", l2.EndOffset())
	}
	readAll(t, l2.Log)
}

func TestRecoverEmptyAndNewDirs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "topic-0")
	l := openAt(t, dir, smallConfig(), newClock(t0), nil)
	if l.StartOffset() != 0 || l.EndOffset() != 0 || l.Size() != 0 {
		t.Fatalf("new log: %d %d %d", l.StartOffset(), l.EndOffset(), l.Size())
	}
	if info, err := l.Read(nil, 0, 100, 0); err != nil || len(info.Records) != 0 {
		t.Fatalf("read of an empty log: %v %d", err, len(info.Records))
	}
	if ts, off, err := l.MaxTimestamp(); ts != -1 || off != -1 || err != nil {
		t.Fatalf("MaxTimestamp of an empty log: %d %d %v", ts, off, err)
	}
	if _, _, found, err := l.OffsetForTimestamp(0); found || err != nil {
		t.Fatalf("OffsetForTimestamp of an empty log: %v %v", found, err)
	}
	l2 := l.reopen(true)
	if info := l2.mustAppend(simple(t, 1, t0)); info.BaseOffset != 0 {
		t.Fatal(info.BaseOffset)
	}
	// A zero-length only segment is a valid empty log too.
	dir2 := t.TempDir()
	os.WriteFile(filepath.Join(dir2, offsetName(0)+logSuffix), nil, 0o644)
	l3 := openAt(t, dir2, smallConfig(), newClock(t0), nil)
	if l3.EndOffset() != 0 {
		t.Fatal(l3.EndOffset())
	}
}

func TestRecoverStartOffsetBeyondEnd(t *testing.T) {
	l := openTest(t, smallConfig())
	for range 5 {
		l.mustAppend(simple(t, 2, t0))
	}
	l.Close()
	// As if DeleteRecords(50) was checkpointed but the data up to 50 never
	// reached the disk.
	os.WriteFile(filepath.Join(l.dir, startOffsetFile), encodeStartOffset(50), 0o644)
	l2 := openAt(t, l.dir, smallConfig(), newClock(t0), nil)
	if l2.StartOffset() != 50 || l2.EndOffset() != 50 {
		t.Fatalf("start %d end %d, want 50 50", l2.StartOffset(), l2.EndOffset())
	}
	if info := l2.mustAppend(simple(t, 1, t0)); info.BaseOffset != 50 {
		t.Fatalf("append at %d", info.BaseOffset)
	}
	if segs := segmentLogs(t, l.dir); len(segs) != 1 || filepath.Base(segs[0]) != offsetName(50)+logSuffix {
		t.Fatalf("segments %v", segs)
	}
}

func TestRecoverCorruptCheckpoints(t *testing.T) {
	l := openTest(t, smallConfig())
	for range 5 {
		l.mustAppend(simple(t, 2, t0))
	}
	if _, err := l.DeleteRecordsBefore(3); err != nil {
		t.Fatal(err)
	}
	l.Close()
	os.WriteFile(filepath.Join(l.dir, startOffsetFile), []byte("garbage"), 0o644)
	os.WriteFile(filepath.Join(l.dir, leaderEpochFile), []byte("0\n2\n0 0\n"), 0o644)
	l2, h := openCapture(t, l.dir, smallConfig())
	// The start offset falls back to the first segment's base offset.
	if l2.StartOffset() != 0 || l2.EndOffset() != 10 {
		t.Fatalf("start %d end %d", l2.StartOffset(), l2.EndOffset())
	}
	if h.find(slog.LevelWarn, "log start offset checkpoint") == nil || h.find(slog.LevelWarn, "leader epoch checkpoint") == nil {
		t.Fatal("no warnings for the unreadable checkpoints")
	}
	if ep, end := l2.EndOffsetForEpoch(0); ep != 0 || end != 10 {
		t.Fatalf("epoch cache rebuilt as %d %d", ep, end)
	}
}

// TestCrashWithoutClose: a log that is not closed (kill -9) reopens with all
// the data that reached the page cache, rebuilding what Close would have
// written.
func TestCrashWithoutClose(t *testing.T) {
	cfg := smallConfig()
	l := openTest(t, cfg)
	for i := range 30 {
		if _, err := l.Append(sizedBatch(t, 3, 200, t0+int64(i)), int32(i/10)); err != nil {
			t.Fatal(err)
		}
	}
	want := readAll(t, l.Log)
	c := l.crashCopy()
	got := readAll(t, c.Log)
	if len(got) != len(want) || c.EndOffset() != l.EndOffset() {
		t.Fatalf("after the crash: %d batches end %d, want %d end %d", len(got), c.EndOffset(), len(want), l.EndOffset())
	}
	for ep := int32(0); ep < 3; ep++ {
		a1, b1 := l.EndOffsetForEpoch(ep)
		a2, b2 := c.EndOffsetForEpoch(ep)
		if a1 != a2 || b1 != b2 {
			t.Fatalf("epoch %d: %d %d after the crash, %d %d before", ep, a2, b2, a1, b1)
		}
	}
	if ts1, o1, _ := l.MaxTimestamp(); true {
		ts2, o2, _ := c.MaxTimestamp()
		if ts1 != ts2 || o1 != o2 {
			t.Fatalf("MaxTimestamp %d %d after the crash, %d %d before", ts2, o2, ts1, o1)
		}
	}
}

// TestReadNeverServesDamagedBatch: a batch damaged on disk after recovery
// validated it (an older segment is not re-validated on Open when its
// indexes are sound) fails its CRC check on read: the read that starts there
// fails with CORRUPT_MESSAGE, a read before it stops short of it, and the
// rest of the log stays readable.
func TestReadNeverServesDamagedBatch(t *testing.T) {
	cfg := smallConfig()
	l := openTest(t, cfg)
	for i := range 12 {
		l.mustAppend(sizedBatch(t, 1, 1000, t0+int64(i))) // three per segment
	}
	l.Close()
	seg := filepath.Join(l.dir, offsetName(0)+logSuffix)
	data, _ := os.ReadFile(seg)
	h := parseHeader(data)
	data[h.Size()+500] ^= 1 // inside the second batch's records (offset 1)
	os.WriteFile(seg, data, 0o644)

	l2, logs := openCapture(t, l.dir, cfg)
	info, err := l2.Read(nil, 0, 1<<20, l2.EndOffset())
	if err != nil {
		t.Fatal(err)
	}
	if hs := batches(t, info.Records); len(hs) != 1 || hs[0].BaseOffset != 0 {
		t.Fatalf("read before the damage returned %+v", hs)
	}
	_, err = l2.Read(nil, 1, 1<<20, l2.EndOffset())
	wantKerr(t, err, kerr.CorruptMessage)
	if logs.find(slog.LevelError, "corrupt data") == nil {
		t.Fatal("damage not logged")
	}
	if l2.Offline() != nil {
		t.Fatalf("damaged data took the log offline: %v", l2.Offline())
	}
	if info, err := l2.Read(nil, 2, 1<<20, l2.EndOffset()); err != nil || batches(t, info.Records)[0].BaseOffset != 2 {
		t.Fatalf("read after the damaged batch: %v", err)
	}
}

// TestReadChecksWhatThisProcessHasNot follows the bytes a log has checked
// (segment.verified): an older segment opened with sound indexes is
// unchecked until a read from its start checks it; a read in its middle
// checks that part without extending the checked prefix; the last segment
// is checked by recovery; appends extend the prefix and a truncation keeps
// only what is left of it. A damaged batch past the checked prefix is still
// refused.
func TestReadChecksWhatThisProcessHasNot(t *testing.T) {
	cfg := smallConfig()
	l := openTest(t, cfg)
	for i := range 12 {
		l.mustAppend(sizedBatch(t, 1, 1000, t0+int64(i))) // three per segment
	}
	for _, s := range l.segments() {
		if v, n := s.verified.Load(), s.size.Load(); v != n {
			t.Fatalf("segment %d: %d of %d bytes checked after appends", s.base, v, n)
		}
	}
	l.Close()
	first := filepath.Join(l.dir, offsetName(0)+logSuffix)
	data, _ := os.ReadFile(first)
	h := parseHeader(data)
	batch := h.Size()
	data[2*batch+500] ^= 1 // the third batch (offset 2)
	os.WriteFile(first, data, 0o644)

	l2 := openAt(t, l.dir, cfg, l.clock, nil)
	segs := l2.segments()
	if v := segs[0].verified.Load(); v != 0 {
		t.Fatalf("an older segment opened with %d bytes checked", v)
	}
	last := segs[len(segs)-1]
	if v, n := last.verified.Load(), last.size.Load(); v != n {
		t.Fatalf("last segment: recovery checked %d of %d bytes", v, n)
	}
	// The middle of the first segment: checked, but not a prefix.
	if _, err := l2.Read(nil, 1, batch, l2.EndOffset()); err != nil {
		t.Fatal(err)
	}
	if v := segs[0].verified.Load(); v != 0 {
		t.Fatalf("a read from offset 1 extended the checked prefix to %d", v)
	}
	// From the start: the good batches are served and checked, the damaged
	// one is not served.
	info, err := l2.Read(nil, 0, 1<<20, l2.EndOffset())
	if err != nil {
		t.Fatal(err)
	}
	if hs := batches(t, info.Records); len(hs) != 2 {
		t.Fatalf("read from the start returned %d batches, want the 2 before the damage", len(hs))
	}
	if v := segs[0].verified.Load(); v != int64(2*batch) {
		t.Fatalf("checked prefix %d after reading two batches of %d bytes", v, batch)
	}
	_, err = l2.Read(nil, 2, 1<<20, l2.EndOffset())
	wantKerr(t, err, kerr.CorruptMessage)

	// Appends extend the last segment's checked prefix; a truncation keeps
	// what is left of it.
	l2.mustAppend(sizedBatch(t, 1, 1000, t0+20))
	last = l2.active()
	if v, n := last.verified.Load(), last.size.Load(); v != n {
		t.Fatalf("after an append %d of %d bytes checked", v, n)
	}
	if err := l2.TruncateTo(l2.EndOffset() - 2); err != nil {
		t.Fatal(err)
	}
	segs = l2.segments()
	last = segs[findSegment(segs, l2.EndOffset()-1)]
	if v, n := last.verified.Load(), last.size.Load(); v != n || n == 0 {
		t.Fatalf("after a truncation %d of %d bytes checked", v, n)
	}
}

package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// truncConfig has small segments and a small index interval, so a
// truncation crosses segments and index entries.
func truncConfig() Config {
	c := smallConfig()
	c.SegmentBytes = 1000
	c.IndexIntervalBytes = 100
	return c
}

// followerOf opens a log in a new directory holding the given batches
// (appended as a follower, a few at a time).
func followerOf(t testing.TB, cfg Config, batches [][]byte, fsys FS) *testLog {
	t.Helper()
	l := openAt(t, t.TempDir(), cfg, newClock(t0), fsys)
	appendChunks(t, l.Log, batches)
	return l
}

// appendChunks appends batches as a follower, three at a time.
func appendChunks(t testing.TB, l *Log, batches [][]byte) {
	t.Helper()
	for i := 0; i < len(batches); i += 3 {
		if _, err := l.AppendAsFollower(bytes.Join(batches[i:min(i+3, len(batches))], nil)); err != nil {
			t.Fatalf("AppendAsFollower: %v", err)
		}
	}
}

// cutAt is what TruncateTo(offset) keeps of batches: the batches that end
// before offset, and the end offset after them.
func cutAt(batches [][]byte, offset int64) ([][]byte, int64) {
	end := int64(0)
	for i, b := range batches {
		h := parseHeader(b)
		if h.LastOffset() >= offset {
			if i == 0 {
				end = h.BaseOffset
			}
			return batches[:i], end
		}
		end = h.LastOffset() + 1
	}
	return batches, end
}

// sameReads checks that every offset of [start, end] reads the same first
// batch from both logs, that timestamp lookups and the max timestamp agree.
func sameReads(t testing.TB, what string, got, want *Log) {
	t.Helper()
	for o := want.StartOffset(); o <= want.EndOffset(); o++ {
		g, gerr := got.Read(nil, o, 1, got.EndOffset())
		w, werr := want.Read(nil, o, 1, want.EndOffset())
		if (gerr == nil) != (werr == nil) || !bytes.Equal(g.Records, w.Records) {
			t.Fatalf("%s: Read(%d) = %d bytes %v, want %d bytes %v", what, o, len(g.Records), gerr, len(w.Records), werr)
		}
	}
	for ts := t0 - 1000; ts <= t0+25000; ts += 250 {
		go1, gt, gf, gerr := got.OffsetForTimestamp(ts)
		wo, wt, wf, werr := want.OffsetForTimestamp(ts)
		if gerr != nil || werr != nil || go1 != wo || gt != wt || gf != wf {
			t.Fatalf("%s: OffsetForTimestamp(%d) = (%d %d %v %v), want (%d %d %v %v)", what, ts, go1, gt, gf, gerr, wo, wt, wf, werr)
		}
	}
	gts, goff, gerr := got.MaxTimestamp()
	wts, woff, werr := want.MaxTimestamp()
	if gerr != nil || werr != nil || gts != wts || goff != woff {
		t.Fatalf("%s: MaxTimestamp = (%d, %d, %v), want (%d, %d, %v)", what, gts, goff, gerr, wts, woff, werr)
	}
}

// TestTruncateToEveryOffset truncates a follower's log (several segments,
// three leader epochs, idempotent producers, timestamps out of order) at
// every offset and compares it with a log that only ever received the
// batches that stay: the same batches, reads and indexes at every offset,
// timestamp lookups, leader epochs, producer state and high watermark;
// again after appending the rest of the batches, and after reopening.
func TestTruncateToEveryOffset(t *testing.T) {
	cfg := truncConfig()
	leader := openFast(t, cfg)
	leaderWorkload(t, leader, 45)
	all := storedBatches(t, leader.Log)
	template := followerOf(t, cfg, all, noSyncFS{OSFS()})
	template.SetHighWatermark(template.EndOffset())
	if len(template.segments()) < 4 {
		t.Fatalf("%d segments; want more", len(template.segments()))
	}
	template.Close()
	end := leader.EndOffset()
	for x := int64(0); x <= end; x++ {
		dir := t.TempDir()
		copyDir(t, template.dir, dir)
		f := openAt(t, dir, cfg, newClock(t0), noSyncFS{OSFS()})
		if err := f.TruncateTo(x); err != nil {
			t.Fatalf("TruncateTo(%d): %v", x, err)
		}
		kept, wantEnd := cutAt(all, x)
		if f.EndOffset() != wantEnd || f.HighWatermark() != wantEnd {
			t.Fatalf("TruncateTo(%d): end %d, high watermark %d; want %d", x, f.EndOffset(), f.HighWatermark(), wantEnd)
		}
		var ref *testLog
		if len(kept) > 0 {
			ref = followerOf(t, cfg, kept, noSyncFS{OSFS()})
		} else {
			ref = openFast(t, cfg)
		}
		what := fmt.Sprint("truncated to ", x)
		sameLog(t, what, f.Log, ref.Log)
		sameReads(t, what, f.Log, ref.Log)
		if m, _ := filepath.Glob(filepath.Join(dir, "*"+deletedSuffix)); len(m) > 0 || fileExists(filepath.Join(dir, truncationFile)) {
			t.Fatalf("%s: left %v", what, m)
		}
		for _, s := range snapshotOffsets(t, dir) {
			if s > wantEnd {
				t.Fatalf("%s: a producer snapshot at %d is left beyond the end", what, s)
			}
		}

		// The rest of the batches append again: indexes, producer state
		// and epochs continue as they did the first time.
		appendChunks(t, f.Log, all[len(kept):])
		appendChunks(t, ref.Log, all[len(kept):])
		sameLog(t, what+", appended again", f.Log, leader.Log)
		sameReads(t, what+", appended again", f.Log, ref.Log)
		r := f.reopen(true)
		sameLog(t, what+", reopened", r.Log, leader.Log)
		sameReads(t, what+", reopened", r.Log, leader.Log)
		r.Close()
		ref.Close()
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func snapshotOffsets(t testing.TB, dir string) []int64 {
	t.Helper()
	var out []int64
	m, _ := filepath.Glob(filepath.Join(dir, "*"+snapshotSuffix))
	for _, p := range m {
		off, ok := parseOffsetName(strings.TrimSuffix(filepath.Base(p), snapshotSuffix))
		if !ok {
			t.Fatalf("snapshot name %s", p)
		}
		out = append(out, off)
	}
	return out
}

// TestTruncateToFiles: what a truncation leaves in the directory.
func TestTruncateToFiles(t *testing.T) {
	cfg := truncConfig()
	cfg.Compact = true
	l := openTest(t, cfg)
	updates(t, l, 30, 2, 3, idem(1, 0, 0))
	l.roll()
	l.clean(newTestCleaner()) // the cleaner checkpoint is at the end now
	fd := l.firstDirty.Load()
	updates(t, l, 30, 2, 3, idem(1, 0, 60))
	if len(l.segments()) < 5 || fd < 10 {
		t.Fatalf("%d segments, cleaner checkpoint %d", len(l.segments()), fd)
	}
	// Cut a cleaned segment (below the cleaner checkpoint) after its
	// first batch.
	_, hs := readLog(t, l.Log)
	var (
		cut *segment
		x   int64
	)
	for _, s := range l.segments() {
		var in []BatchHeader
		for _, h := range hs {
			if h.BaseOffset >= s.base && h.LastOffset() < s.next.Load() && h.LastOffset() < fd {
				in = append(in, h)
			}
		}
		if len(in) >= 2 && s != l.active() {
			cut, x = s, in[1].BaseOffset
			break
		}
	}
	if cut == nil {
		t.Fatal("no segment to cut")
	}
	nsegs := slices.Index(l.segments(), cut) + 1
	if err := l.TruncateTo(x); err != nil {
		t.Fatal(err)
	}
	if l.EndOffset() != x {
		t.Fatalf("end %d, want %d", l.EndOffset(), x)
	}
	logs := segmentLogs(t, l.dir)
	if len(logs) != nsegs || filepath.Base(logs[nsegs-1]) != offsetName(cut.base)+logSuffix {
		t.Fatalf("segments left: %v", logs)
	}
	if fileExists(cut.path(indexSuffix)) || fileExists(cut.path(timeIndexSuffix)) {
		t.Fatal("the truncated segment kept its stale index files")
	}
	if fi, _ := os.Stat(cut.path(logSuffix)); fi.Size() != l.active().size.Load() {
		t.Fatalf("the truncated segment file has %d bytes, want %d", fi.Size(), l.active().size.Load())
	}
	if l.firstDirty.Load() != x {
		t.Fatalf("cleaner checkpoint %d, want %d", l.firstDirty.Load(), x)
	}
	b, _ := os.ReadFile(filepath.Join(l.dir, cleanerCkptFile))
	if fd, _, err := decodeTwoOffsets(b, ""); err != nil || fd != x {
		t.Fatalf("cleaner checkpoint file %q", b)
	}
	for _, s := range snapshotOffsets(t, l.dir) {
		if s > x {
			t.Fatalf("snapshot %d beyond the end %d", s, x)
		}
	}
	// The cleaner cleans what is appended at the truncation point.
	seq := l.Producers()[0].LastSequence + 1
	updates(t, l, 30, 2, 3, idem(1, 0, seq))
	l.roll()
	l.clean(newTestCleaner())
	got, _ := readLog(t, l.Log)
	if keys := latestByKey(got); len(keys) != 30 || len(got) != 30 {
		t.Fatalf("after truncating and cleaning again: %v", got)
	}
}

// TestTruncateToLogStart covers truncations at and below the log start
// offset and one whose kept data would end below it.
func TestTruncateToLogStart(t *testing.T) {
	build := func(t *testing.T) *testLog {
		l := openTest(t, truncConfig())
		for i := range 20 {
			l.mustAppend(buildBatch(t, idem(1, 0, int32(3*i)), values("s", 3, t0)))
		}
		l.AssignLeaderEpoch(3)
		l.SetHighWatermark(60)
		if _, err := l.DeleteRecordsBefore(31); err != nil { // inside the batch 30..32
			t.Fatal(err)
		}
		return l
	}
	for _, tc := range []struct {
		offset    int64
		wantStart int64
	}{
		{31, 31}, // at the start: empty there
		{20, 20}, // below the start: the start moves back
		{0, 0},
		{32, 31}, // the batch 30..32 holds both: empty at the start
	} {
		t.Run(fmt.Sprint(tc.offset), func(t *testing.T) {
			l := build(t)
			if err := l.TruncateTo(tc.offset); err != nil {
				t.Fatal(err)
			}
			for _, l := range []*testLog{l, l.crashCopy()} {
				if l.StartOffset() != tc.wantStart || l.EndOffset() != tc.wantStart || l.HighWatermark() != tc.wantStart {
					t.Fatalf("[%d, %d) hw %d, want empty at %d", l.StartOffset(), l.EndOffset(), l.HighWatermark(), tc.wantStart)
				}
				if len(l.Producers()) != 0 || len(l.epochs.load()) != 0 || len(snapshotOffsets(t, l.dir)) > 1 {
					t.Fatalf("producers %v, epochs %v, snapshots %v", l.Producers(), l.epochs.load(), snapshotOffsets(t, l.dir))
				}
				if r, err := l.Read(nil, tc.wantStart, 1<<20, l.EndOffset()); err != nil || len(r.Records) != 0 {
					t.Fatalf("read at the start: %v", err)
				}
			}
			// A follower restarting there takes the leader's batches.
			b := buildBatch(t, idem(1, 0, 0), values("n", 2, t0))
			putBase(b, tc.wantStart)
			if _, err := l.AppendAsFollower(b); err != nil {
				t.Fatal(err)
			}
			l2 := l.reopen(true)
			if l2.StartOffset() != tc.wantStart || l2.EndOffset() != tc.wantStart+2 {
				t.Fatalf("reopened: [%d, %d)", l2.StartOffset(), l2.EndOffset())
			}
		})
	}
}

func TestTruncateFullyAndStartAt(t *testing.T) {
	for _, at := range []int64{0, 7, 30, 1000} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			l := openTest(t, truncConfig())
			for i := range 10 {
				l.Append(buildBatch(t, idem(1, 0, int32(3*i)), values("s", 3, t0)), 2)
			}
			l.DeleteRecordsBefore(10)
			l.SetHighWatermark(20)
			l.Flush()
			if err := l.TruncateFullyAndStartAt(at); err != nil {
				t.Fatal(err)
			}
			for _, l := range []*testLog{l, l.crashCopy()} {
				if l.StartOffset() != at || l.EndOffset() != at || l.HighWatermark() != at || len(l.segments()) != 1 {
					t.Fatalf("[%d, %d) hw %d, %d segments", l.StartOffset(), l.EndOffset(), l.HighWatermark(), len(l.segments()))
				}
				if _, ok := l.LatestEpoch(); ok || len(l.Producers()) != 0 || len(snapshotOffsets(t, l.dir)) > 1 {
					t.Fatal("epochs or producers survived")
				}
				if len(segmentLogs(t, l.dir)) != 1 {
					t.Fatalf("segment files %v", segmentLogs(t, l.dir))
				}
			}
			// The first sequence of an unknown producer goes.
			b := buildBatch(t, idem(1, 0, 50), values("n", 2, t0))
			putBase(b, at)
			binary32(b, offLeaderEpoch, 4)
			if _, err := l.AppendAsFollower(b); err != nil {
				t.Fatal(err)
			}
			if ep, off := l.EndOffsetForEpoch(4); ep != 4 || off != at+2 {
				t.Fatalf("EndOffsetForEpoch(4) = (%d, %d)", ep, off)
			}
			if ep, off := l.EndOffsetForEpoch(2); ep != 2 || off != at {
				t.Fatalf("EndOffsetForEpoch(2) = (%d, %d), want (2, %d): below the earliest epoch", ep, off, at)
			}
			if _, err := l.Append(buildBatch(t, idem(1, 0, 52), values("n", 1, t0)), 5); err != nil {
				t.Fatal(err)
			}
			l2 := l.reopen(true)
			if l2.StartOffset() != at || l2.EndOffset() != at+3 || len(readAll(t, l2.Log)) != 2 {
				t.Fatalf("reopened: [%d, %d)", l2.StartOffset(), l2.EndOffset())
			}
		})
	}
}

func binary32(b []byte, off int, v uint32) {
	b[off], b[off+1], b[off+2], b[off+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

// TestTruncateRollsBackProducerState: sequences appended after the
// truncation point are accepted again (they were never written, as far as
// the log knows), while retries of batches that stay are still duplicates.
func TestTruncateRollsBackProducerState(t *testing.T) {
	l := openTest(t, truncConfig())
	var written [][]byte
	for i := range 40 { // several segments, so snapshots exist on both sides
		b := buildBatch(t, idem(int64(1+i%2), 0, int32(2*(i/2))), values("p", 2, t0+int64(i)))
		l.mustAppend(b)
		written = append(written, b)
	}
	x := parseHeader(written[25]).BaseOffset
	if err := l.TruncateTo(x); err != nil {
		t.Fatal(err)
	}
	for _, l := range []*testLog{l, l.crashCopy()} {
		want := []ProducerInfo{
			{ProducerID: 1, Epoch: 0, LastSequence: 25, LastTimestamp: t0 + 24 + 1, CoordinatorEpoch: -1, TxnStartOffset: -1},
			{ProducerID: 2, Epoch: 0, LastSequence: 23, LastTimestamp: t0 + 23 + 1, CoordinatorEpoch: -1, TxnStartOffset: -1},
		}
		if got := l.Producers(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("producers after truncation\n got %+v\nwant %+v", got, want)
		}
		// Kept batches are duplicates; the truncated ones are new again.
		for i := 20; i < 25; i++ {
			info, err := l.Append(append([]byte(nil), written[i]...), 0)
			if err != nil || !info.Duplicate {
				t.Fatalf("retry of kept batch %d: %+v %v", i, info, err)
			}
		}
		for i := 25; i < 30; i++ {
			info, err := l.Append(append([]byte(nil), written[i]...), 0)
			if err != nil || info.Duplicate || info.BaseOffset != parseHeader(written[i]).BaseOffset {
				t.Fatalf("batch %d again after truncation: %+v %v", i, info, err)
			}
		}
	}
}

// TestTruncateCrashAtEveryStep crashes truncations (within the active
// segment, across segments, of a compacted log whose cleaner checkpoint is
// lowered, and a full one) at every one of their file system operations
// and recovers a copy of the directory as the crash left it: the log is
// exactly as before if the crash came before the truncation record was in
// place, and otherwise exactly what the truncation makes of it (batches,
// leader epochs, producer state, a high watermark at or below the end),
// with no leftover files; and it goes on taking appends.
func TestTruncateCrashAtEveryStep(t *testing.T) {
	cfg := truncConfig()
	leader := openFast(t, cfg)
	leaderWorkload(t, leader, 45)
	all := storedBatches(t, leader.Log)
	end := leader.EndOffset()
	for _, tc := range []struct {
		name string
		x    int64
		full bool
	}{
		{"active segment", end - 2, false},
		{"across segments", end / 3, false},
		{"mid-batch", parseHeader(all[10]).BaseOffset + 1, false},
		{"full", end + 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := followerOf(t, cfg, all, nil)
			src.SetHighWatermark(end - 1)
			if err := src.Flush(); err != nil {
				t.Fatal(err)
			}
			// What the truncation makes of the log, without a crash.
			ref := src.crashCopy()
			truncate := func(l *Log) error {
				if tc.full {
					return l.TruncateFullyAndStartAt(tc.x)
				}
				return l.TruncateTo(tc.x)
			}
			if err := truncate(ref.Log); err != nil {
				t.Fatal(err)
			}
			src.Close()
			// Copies of a directory as a crash left it, opened without
			// fsync (durability across power loss is not under test).
			open := func(src string) *testLog {
				dir := t.TempDir()
				copyDir(t, src, dir)
				return openAt(t, dir, cfg, newClock(t0), noSyncFS{OSFS()})
			}
			before := open(src.dir)
			for n := 0; ; n++ {
				dir := t.TempDir()
				copyDir(t, src.dir, dir)
				fsys := &crashFS{FS: noSyncFS{OSFS()}}
				l := openAt(t, dir, cfg, newClock(t0), fsys)
				fsys.arm(n)
				err := truncate(l.Log)
				crashed := fsys.crashed.Load()
				if !crashed && err != nil {
					t.Fatalf("truncation without a crash: %v", err)
				}
				if crashed && (err == nil || l.Offline() == nil) {
					t.Fatalf("crash at op %d: TruncateTo returned %v, offline %v", n, err, l.Offline())
				}
				recordInPlace := slices.Contains(fsys.ops, "rename "+truncationFile+tmpSuffix+" → "+truncationFile)
				r := open(l.dir)
				want := ref
				if !recordInPlace {
					want = before
				}
				what := fmt.Sprintf("crash at op %d (after %v)", n, fsys.ops)
				sameLog(t, what, r.Log, want.Log)
				sameReads(t, what, r.Log, want.Log)
				if r.HighWatermark() != want.HighWatermark() {
					t.Fatalf("%s: high watermark %d, end %d", what, r.HighWatermark(), r.EndOffset())
				}
				ents, _ := os.ReadDir(r.dir)
				for _, e := range ents {
					if strings.HasSuffix(e.Name(), deletedSuffix) || strings.HasSuffix(e.Name(), tmpSuffix) || e.Name() == truncationFile {
						t.Fatalf("%s: recovery left %s", what, e.Name())
					}
				}
				b := buildBatch(t, plain(), values("after", 2, t0))
				putBase(b, r.EndOffset())
				if _, err := r.AppendAsFollower(b); err != nil {
					t.Fatalf("%s: append after recovery: %v", what, err)
				}
				r2 := r.reopen(true)
				if r2.EndOffset() != want.EndOffset()+2 {
					t.Fatalf("%s: end %d after appending and reopening, want %d", what, r2.EndOffset(), want.EndOffset()+2)
				}
				r2.Close()
				l.Close()
				if !crashed {
					if n < 10 {
						t.Fatalf("the truncation took only %d file system operations", n)
					}
					t.Logf("crashed a truncation at each of its %d file system operations: %v", n, fsys.ops)
					return
				}
			}
		})
	}
}

// TestTruncateWithConcurrentReaders runs a follower that appends,
// truncates (within the active segment and across segments) and appends
// other data again, next to readers, timestamp lookups and a cleaner (run
// it with -race). Every record read is whole and holds what was written
// at its offset by some generation of the writer; no read fails with
// anything but OFFSET_OUT_OF_RANGE, and the log never goes offline.
func TestTruncateWithConcurrentReaders(t *testing.T) {
	cfg := truncConfig()
	cfg.Compact = true
	l := openTest(t, cfg)
	// Record o of generation g has key k<o%5> and value "<o>/<g>".
	batchAt := func(off int64, gen, n int) []byte {
		kvs := make([]kv, n)
		for i := range kvs {
			o := off + int64(i)
			kvs[i] = put(fmt.Sprintf("k%d", o%5), fmt.Sprintf("%d/%d", o, gen))
		}
		b := kvBatch(t, plain(), t0+off, kvs...)
		putBase(b, off)
		return b
	}
	check := func(b []byte) error {
		for len(b) > 0 {
			h, err := ValidateStoredBatch(b)
			if err != nil {
				return err
			}
			err = DecodeRecords(b[:h.Size()], func(r *Record) error {
				var o int64
				var g int
				if _, err := fmt.Sscanf(string(r.Value), "%d/%d", &o, &g); err != nil || o != r.Offset || string(r.Key) != fmt.Sprintf("k%d", o%5) {
					return fmt.Errorf("record at %d is %s=%s", r.Offset, r.Key, r.Value)
				}
				return nil
			})
			if err != nil {
				return err
			}
			b = b[h.Size():]
		}
		return nil
	}

	const rounds = 150
	done := make(chan struct{})
	errs := make(chan error, 10)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	outOfRange := func(err error) bool {
		var ke *kerr.Error
		return errors.As(err, &ke) && ke == kerr.OffsetOutOfRange
	}
	var wg sync.WaitGroup
	var truncations atomic.Int64
	wg.Add(1)
	go func() { // the follower
		defer wg.Done()
		defer close(done)
		rng := rand.New(rand.NewPCG(1, 2))
		for gen := range rounds {
			for range 1 + rng.IntN(6) {
				if _, err := l.AppendAsFollower(batchAt(l.EndOffset(), gen, 1+rng.IntN(4))); err != nil {
					report(fmt.Errorf("append: %w", err))
					return
				}
			}
			if gen%3 == 2 {
				back := int64(1 + rng.IntN(40))
				if err := l.TruncateTo(max(l.EndOffset()-back, l.StartOffset()+1)); err != nil {
					report(fmt.Errorf("truncate: %w", err))
					return
				}
				truncations.Add(1)
			}
		}
	}()
	wg.Add(1)
	go func() { // the cleaner
		defer wg.Done()
		c := newTestCleaner()
		for {
			select {
			case <-done:
				return
			default:
			}
			l.mu.Lock()
			err := l.rollLocked()
			l.mu.Unlock()
			if err != nil {
				report(err)
				return
			}
			if _, err := c.Clean(context.Background(), l.Log); err != nil {
				report(fmt.Errorf("clean: %w", err))
				return
			}
		}
	}()
	for r := range 3 {
		wg.Add(1)
		go func() { // readers
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			for {
				select {
				case <-done:
					return
				default:
				}
				start, end := l.StartOffset(), l.EndOffset()
				off := start + rng.Int64N(end-start+1)
				info, err := l.Read(nil, off, 1+rng.IntN(3000), end)
				if err != nil && !outOfRange(err) {
					report(fmt.Errorf("Read(%d): %w", off, err))
					return
				}
				if err := check(info.Records); err != nil {
					report(fmt.Errorf("Read(%d): %w", off, err))
					return
				}
				if _, _, _, err := l.OffsetForTimestamp(t0 + off); err != nil {
					report(err)
					return
				}
				if _, _, err := l.MaxTimestamp(); err != nil {
					report(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if l.Offline() != nil || l.CleanerError() != nil {
		t.Fatalf("offline %v, cleaner error %v", l.Offline(), l.CleanerError())
	}
	got, _ := readLog(t, l.Log)
	l2 := l.reopen(true)
	if again, _ := readLog(t, l2.Log); fmt.Sprint(again) != fmt.Sprint(got) {
		t.Fatal("the log reads differently after reopening")
	}
	t.Logf("%d truncations", truncations.Load())
}

// TestTruncateStopsCleaning: a truncation stops a cleaning in progress
// (here waiting in its I/O throttle) instead of waiting for it, the
// cleaning returns without an error and without marking the log
// uncleanable, and the next cleaning cleans the truncated log.
func TestTruncateStopsCleaning(t *testing.T) {
	l := openTest(t, compactConfig())
	all := updates(t, l, 20, 20, 10, plain())
	l.roll()
	sleeping := make(chan struct{}, 1)
	c := NewCleaner(CleanerConfig{IOMaxBytesPerSecond: 1, Logger: testLogger(),
		Sleep: func(ctx context.Context, d time.Duration) error {
			select {
			case sleeping <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return ctx.Err()
		}})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Clean(context.Background(), l.Log)
		errc <- err
	}()
	<-sleeping
	x := all[len(all)/2].off
	if err := l.TruncateTo(x); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil || l.CleanerError() != nil {
		t.Fatalf("the stopped cleaning returned %v, cleaner error %v", err, l.CleanerError())
	}
	if m, _ := filepath.Glob(filepath.Join(l.dir, "*"+cleanedSuffix)); len(m) != 0 {
		t.Fatalf("left %v", m)
	}
	got, _ := readLog(t, l.Log)
	if fmt.Sprint(got) != fmt.Sprint(all[:x]) {
		t.Fatalf("after truncating to %d: %v", x, got)
	}
	l.roll()
	l.clean(newTestCleaner())
	got, _ = readLog(t, l.Log)
	sameRecords(t, "cleaned after the truncation", got, latestByKey(all[:x]))

	// A cleaning that starts while a truncation waits gives way at once.
	updates(t, l, 20, 5, 10, plain())
	l.roll()
	l.truncating.Add(1)
	res, err := newTestCleaner().Clean(context.Background(), l.Log)
	l.truncating.Add(-1)
	if err != nil || res.Cleaned {
		t.Fatalf("cleaning during a truncation: %+v %v", res, err)
	}
	if res := l.clean(newTestCleaner()); !res.Cleaned {
		t.Fatal("nothing cleaned after the truncation")
	}
}

// TestTruncateWaitsForReaders: the file of a segment being cut is cut only
// once the reads holding it are done (here a reference taken as Read
// does); until then such a read still sees the whole file, while new reads
// already see the truncated log.
func TestTruncateWaitsForReaders(t *testing.T) {
	l := openTest(t, smallConfig())
	for i := range 6 {
		l.mustAppend(simple(t, 2, t0+int64(i)))
	}
	seg := l.active()
	size := seg.size.Load()
	if !seg.acquire() {
		t.Fatal("acquire")
	}
	done := make(chan error, 1)
	go func() { done <- l.TruncateTo(4) }()
	for l.EndOffset() != 4 || l.active() == seg {
		runtime.Gosched() // until the truncation is published
	}
	if r, err := l.Read(nil, 0, 1<<20, l.EndOffset()); err != nil || len(batches(t, r.Records)) != 2 {
		t.Fatalf("a new read: %v", err)
	}
	if _, err := l.Read(nil, 6, 1<<20, 100); !errors.Is(err, kerr.OffsetOutOfRange) {
		t.Fatalf("a read beyond the new end: %v", err)
	}
	buf := make([]byte, size)
	if _, err := readFullAt(seg.f, buf, 0); err != nil {
		t.Fatalf("the old reader's segment was cut under it: %v", err)
	}
	if fi, _ := os.Stat(seg.path(logSuffix)); fi.Size() != size {
		t.Fatalf("the file was cut to %d while read", fi.Size())
	}
	select {
	case err := <-done:
		t.Fatalf("TruncateTo returned (%v) while a read held the segment", err)
	default:
	}
	seg.release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(seg.path(logSuffix)); fi.Size() != l.active().size.Load() || fi.Size() >= size {
		t.Fatalf("the file has %d bytes after the truncation, want %d", fi.Size(), l.active().size.Load())
	}
}

// TestTruncateCutsAtDamage: a batch damaged on disk before the truncation
// offset (its length field no longer fits) is cut away with the tail, as
// recovery would cut it, rather than failing the truncation.
func TestTruncateCutsAtDamage(t *testing.T) {
	cfg := smallConfig()
	cfg.IndexIntervalBytes = 1 << 20 // no index entries: read from the start
	l := openTest(t, cfg)
	var pos []int64
	for i := range 6 {
		pos = append(pos, l.active().size.Load())
		l.mustAppend(simple(t, 2, t0+int64(i)))
	}
	if _, err := l.active().f.WriteAt([]byte{0x7f, 0, 0, 0}, pos[3]+offLength); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateTo(10); err != nil {
		t.Fatal(err)
	}
	if l.EndOffset() != 6 || l.Offline() != nil {
		t.Fatalf("end %d (want 6, before the damaged batch), offline %v", l.EndOffset(), l.Offline())
	}
	if l2 := l.reopen(true); l2.EndOffset() != 6 || len(readAll(t, l2.Log)) != 3 {
		t.Fatalf("reopened: end %d", l2.EndOffset())
	}
}

package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// fetchFrom reads what a follower's fetch at offset gets from the leader:
// whole batches up to the leader's end offset, at most maxBytes but at
// least one batch.
func fetchFrom(t testing.TB, leader *Log, offset int64, maxBytes int) []byte {
	t.Helper()
	info, err := leader.Read(nil, offset, maxBytes, leader.EndOffset())
	if err != nil {
		t.Fatalf("leader Read(%d): %v", offset, err)
	}
	return info.Records
}

// replicate fetches from the leader at the follower's end offset and
// appends what it gets, until the follower has everything.
func replicate(t testing.TB, leader, follower *Log, maxBytes int) {
	t.Helper()
	for follower.EndOffset() < leader.EndOffset() {
		recs := fetchFrom(t, leader, follower.EndOffset(), maxBytes)
		if len(recs) == 0 {
			t.Fatalf("the leader returned nothing at %d (end %d)", follower.EndOffset(), leader.EndOffset())
		}
		info, err := follower.AppendAsFollower(recs)
		if err != nil {
			t.Fatalf("AppendAsFollower at %d: %v", follower.EndOffset(), err)
		}
		if follower.EndOffset() != info.LastOffset+1 {
			t.Fatalf("end offset %d after appending up to %d", follower.EndOffset(), info.LastOffset)
		}
	}
}

// storedBatches reads every batch of the log from its start, one Read per
// batch (so segment boundaries do not matter), as raw bytes, checking that
// each is a valid stored batch and that offsets increase (gaps allowed).
func storedBatches(t testing.TB, l *Log) [][]byte {
	t.Helper()
	var out [][]byte
	prev := int64(-1)
	for off := l.StartOffset(); off < l.EndOffset(); {
		info, err := l.Read(nil, off, 1, l.EndOffset())
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if len(info.Records) == 0 {
			break // a compacted log's tail may be a gap
		}
		h, err := ValidateStoredBatch(info.Records)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if h.Size() != len(info.Records) {
			t.Fatalf("Read(%d, maxBytes 1) returned more than one batch", off)
		}
		if h.BaseOffset <= prev || h.LastOffset() < off {
			t.Fatalf("Read(%d) returned the batch [%d, %d] after offset %d", off, h.BaseOffset, h.LastOffset(), prev)
		}
		prev = h.LastOffset()
		out = append(out, info.Records)
		off = h.LastOffset() + 1
	}
	return out
}

// sameLog checks that two logs hold the same batches byte for byte, the
// same offsets, leader epochs and producer state.
func sameLog(t testing.TB, what string, got, want *Log) {
	t.Helper()
	if got.StartOffset() != want.StartOffset() || got.EndOffset() != want.EndOffset() {
		t.Fatalf("%s: offsets [%d, %d), want [%d, %d)", what, got.StartOffset(), got.EndOffset(), want.StartOffset(), want.EndOffset())
	}
	gb, wb := storedBatches(t, got), storedBatches(t, want)
	if len(gb) != len(wb) {
		t.Fatalf("%s: %d batches, want %d", what, len(gb), len(wb))
	}
	for i := range gb {
		if !bytes.Equal(gb[i], wb[i]) {
			t.Fatalf("%s: batch %d differs:\n got %+v\nwant %+v", what, i, parseHeader(gb[i]), parseHeader(wb[i]))
		}
	}
	if g, w := fmt.Sprint(got.epochs.load()), fmt.Sprint(want.epochs.load()); g != w {
		t.Fatalf("%s: leader epochs %s, want %s", what, g, w)
	}
	if g, w := fmt.Sprint(got.Producers()), fmt.Sprint(want.Producers()); g != w {
		t.Fatalf("%s: producers\n got %s\nwant %s", what, g, w)
	}
}

// leaderWorkload appends to a leader at leader epochs 0, 1 and 3: plain
// batches, three idempotent producers (one bumping its epoch), gzip
// batches, with timestamps that go back and forth. It returns each
// producer's last batch as appended (for retries).
func leaderWorkload(t testing.TB, l *testLog, batches int) map[int64][]byte {
	t.Helper()
	last := map[int64][]byte{}
	seqs := map[int64]int32{}
	pepoch := map[int64]int16{}
	for i := range batches {
		epoch := int32(0)
		switch {
		case i >= batches*2/3:
			epoch = 3
		case i >= batches/3:
			epoch = 1
		}
		ts := t0 + int64(i*7%23)*1000
		var b []byte
		switch i % 4 {
		case 0:
			b = buildBatch(t, plain(), values(fmt.Sprint("b", i), 1+i%3, ts))
		case 3:
			s := plain()
			s.codec = CompressionGzip
			b = buildBatch(t, s, values(fmt.Sprint("z", i), 3, ts))
		default:
			pid := int64(1 + i%3)
			if i == batches/2 && pid == 2 {
				pepoch[pid]++ // a new producer epoch starts at sequence 0
				seqs[pid] = 0
			}
			b = buildBatch(t, idem(pid, pepoch[pid], seqs[pid]), values(fmt.Sprint("p", i), 2, ts))
			seqs[pid] += 2
			last[pid] = b // Append writes its offsets into it
		}
		if _, err := l.Append(b, epoch); err != nil {
			t.Fatalf("leader append %d: %v", i, err)
		}
	}
	return last
}

func TestAppendAsFollowerMirrorsLeader(t *testing.T) {
	cfg := smallConfig()
	cfg.IndexIntervalBytes = 100
	leader := openTest(t, cfg)
	last := leaderWorkload(t, leader, 90)
	if len(leader.segments()) < 3 {
		t.Fatalf("want several leader segments, have %d", len(leader.segments()))
	}
	for _, maxBytes := range []int{1, 300, 5000, 1 << 20} {
		t.Run(fmt.Sprint("maxBytes=", maxBytes), func(t *testing.T) {
			f := openTest(t, cfg)
			replicate(t, leader.Log, f.Log, maxBytes)
			sameLog(t, "follower", f.Log, leader.Log)
			for ep := int32(-1); ep <= 5; ep++ {
				ge, go_ := f.EndOffsetForEpoch(ep)
				we, wo := leader.EndOffsetForEpoch(ep)
				if ge != we || go_ != wo {
					t.Fatalf("EndOffsetForEpoch(%d) = (%d, %d), the leader says (%d, %d)", ep, ge, go_, we, wo)
				}
			}
			if ep, ok := f.LatestEpoch(); !ok || ep != 3 {
				t.Fatalf("LatestEpoch = %d %v", ep, ok)
			}
			// Reads, timestamp lookups and the max timestamp agree.
			for ts := t0 - 1000; ts <= t0+24000; ts += 500 {
				go1, gt1, gf1, err1 := f.OffsetForTimestamp(ts)
				wo1, wt1, wf1, err2 := leader.OffsetForTimestamp(ts)
				if err1 != nil || err2 != nil || go1 != wo1 || gt1 != wt1 || gf1 != wf1 {
					t.Fatalf("OffsetForTimestamp(%d): follower (%d %d %v %v), leader (%d %d %v %v)", ts, go1, gt1, gf1, err1, wo1, wt1, wf1, err2)
				}
			}
			gts, goff, _ := f.MaxTimestamp()
			wts, woff, _ := leader.MaxTimestamp()
			if gts != wts || goff != woff {
				t.Fatalf("MaxTimestamp: follower (%d, %d), leader (%d, %d)", gts, goff, wts, woff)
			}
			// The same after a restart and after a crash.
			sameLog(t, "follower reopened", f.reopen(true).Log, leader.Log)
		})
	}

	// The follower becomes the leader at epoch 4: producers' retries are
	// duplicates with their original offsets, gaps and fenced epochs are
	// rejected, the next sequences go.
	f := openTest(t, cfg)
	replicate(t, leader.Log, f.Log, 2000)
	f = f.crashCopy()
	if err := f.AssignLeaderEpoch(4); err != nil {
		t.Fatal(err)
	}
	end := f.EndOffset()
	for pid, b := range last {
		info, err := f.Append(append([]byte(nil), b...), 4)
		want := parseHeader(b) // the leader wrote its offsets into b
		if err != nil || !info.Duplicate || info.BaseOffset != want.BaseOffset || info.LastOffset != want.LastOffset() {
			t.Fatalf("retry of producer %d's last batch on the new leader: %+v %v, want a duplicate at %d", pid, info, err, want.BaseOffset)
		}
	}
	if f.EndOffset() != end {
		t.Fatal("a retry was written")
	}
	for _, p := range f.Producers() {
		_, err := f.Append(pbatch(t, p.ProducerID, p.Epoch, p.LastSequence+2, 1), 4)
		wantKerr(t, err, kerr.OutOfOrderSequenceNumber)
		if p.Epoch > 0 {
			_, err = f.Append(pbatch(t, p.ProducerID, p.Epoch-1, 0, 1), 4)
			wantKerr(t, err, kerr.InvalidProducerEpoch)
		}
		if _, err := f.Append(pbatch(t, p.ProducerID, p.Epoch, p.LastSequence+1, 1), 4); err != nil {
			t.Fatalf("producer %d's next sequence: %v", p.ProducerID, err)
		}
	}
	if ep, off := f.EndOffsetForEpoch(3); ep != 3 || off != end {
		t.Fatalf("epoch 3 ends at (%d, %d), want (3, %d)", ep, off, end)
	}
}

// TestAppendAsFollowerCompacted replicates a compacted, cleaned leader:
// batches with fewer records than offsets, empty batches kept for
// idempotent producers, offset gaps between batches and a tombstone's
// delete horizon all arrive as the leader has them, and the follower's log
// (whose active segment then has gaps) recovers whole.
func TestAppendAsFollowerCompacted(t *testing.T) {
	cfg := compactConfig()
	leader := openTest(t, cfg)
	p7 := kvBatch(t, idem(7, 0, 0), t0, put("a", "7-0"), put("b", "7-0"))
	leader.mustAppend(p7)
	updates(t, leader, 8, 6, 5, plain())
	leader.mustAppend(kvBatch(t, plain(), t0, put("a", "x"), put("b", "x"))) // producer 7's batch is emptied
	leader.mustAppend(kvBatch(t, plain(), t0, del("key-003")))
	updates(t, leader, 8, 3, 4, idem(9, 0, 0))
	leader.roll()
	leader.clean(newTestCleaner())
	_, hs := readLog(t, leader.Log)
	gaps, empty := 0, 0
	for i, h := range hs {
		if h.NumRecords == 0 {
			empty++
		}
		if i > 0 && h.BaseOffset > hs[i-1].LastOffset()+1 || h.LastOffsetDelta > h.NumRecords-1 {
			gaps++
		}
	}
	if gaps == 0 || empty == 0 {
		t.Fatalf("the cleaned leader has %d gaps and %d empty batches; the test needs both", gaps, empty)
	}

	for _, maxBytes := range []int{1, 700, 1 << 20} {
		fcfg := cfg
		fcfg.SegmentBytes = 1 << 20 // everything in the active segment
		f := openTest(t, fcfg)
		replicate(t, leader.Log, f.Log, maxBytes)
		sameLog(t, "compacted follower", f.Log, leader.Log)
		want, _ := readLog(t, leader.Log)
		// Reads at offsets the cleaner removed return the next batch.
		for o := f.StartOffset(); o < f.EndOffset(); o++ {
			g, _ := f.Read(nil, o, 1, f.EndOffset())
			w, _ := leader.Read(nil, o, 1, leader.EndOffset())
			if !bytes.Equal(g.Records, w.Records) {
				t.Fatalf("Read(%d) differs", o)
			}
		}
		for _, f2 := range []*testLog{f.crashCopy(), f.reopen(true)} {
			got, _ := readLog(t, f2.Log)
			if fmt.Sprint(got) != fmt.Sprint(want) || f2.EndOffset() != leader.EndOffset() {
				t.Fatalf("the follower recovered %v (end %d), want %v (end %d)", got, f2.EndOffset(), want, leader.EndOffset())
			}
			sameLog(t, "compacted follower recovered", f2.Log, leader.Log)
		}
	}
}

func TestAppendAsFollowerRejects(t *testing.T) {
	leader := openTest(t, smallConfig())
	for i := range 6 {
		leader.mustAppend(buildBatch(t, idem(5, 0, int32(3*i)), values("r", 3, t0)))
	}
	all := fetchFrom(t, leader.Log, 0, 1<<20) // six batches, offsets 0..17
	hs := batches(t, all)
	at := func(i int) []byte { // batch i
		p := 0
		for j := range i {
			p += hs[j].Size()
		}
		return append([]byte(nil), all[p:p+hs[i].Size()]...)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

	f := openTest(t, smallConfig())
	if _, err := f.AppendAsFollower(cat(at(0), at(1))); err != nil {
		t.Fatal(err)
	}
	size := f.Size()
	flipped := at(3)
	flipped[len(flipped)-2] ^= 1
	sameOffsets := at(3)
	putBase(sameOffsets, 6) // overlaps batch 2 (6..8)
	cases := []struct {
		name    string
		records []byte
		want    *kerr.Error
	}{
		{"empty", nil, kerr.CorruptMessage},
		{"behind the end", cat(at(1), at(2)), kerr.OffsetOutOfRange},
		{"overlapping the end", cat(at(0)[:0], func() []byte { b := at(2); putBase(b, 5); return b }()), kerr.OffsetOutOfRange},
		{"corrupt second batch", cat(at(2), flipped), kerr.CorruptMessage},
		{"truncated second batch", cat(at(2), at(3)[:40]), kerr.CorruptMessage},
		{"garbage after the batches", cat(at(2), []byte("garbage")), kerr.CorruptMessage},
		{"offsets going backwards", cat(at(2), at(1)), kerr.CorruptMessage},
		{"overlapping batches", cat(at(2), sameOffsets), kerr.CorruptMessage},
	}
	for _, tc := range cases {
		_, err := f.AppendAsFollower(tc.records)
		wantKerr(t, err, tc.want)
		if f.EndOffset() != 6 || f.Size() != size {
			t.Fatalf("%s: the rejected append changed the log: end %d, size %d (was 6, %d)", tc.name, f.EndOffset(), f.Size(), size)
		}
	}
	// The producer state was not touched: the next batches still mirror.
	if _, err := f.AppendAsFollower(cat(at(2), at(3))); err != nil {
		t.Fatal(err)
	}
	if p := f.Producers(); len(p) != 1 || p[0].LastSequence != 11 {
		t.Fatalf("producers %+v", p)
	}
	// Batches whose offsets would not fit a segment's relative offsets.
	huge := at(5)
	binary.BigEndian.PutUint32(huge[offLastDelta:], math.MaxInt32)
	putBase(resign(huge), 30)
	_, err := f.AppendAsFollower(cat(at(4), huge))
	wantKerr(t, err, kerr.RecordListTooLarge)
	if f.EndOffset() != 12 || f.Size() <= size {
		t.Fatalf("end %d", f.EndOffset())
	}
}

// TestAppendAsFollowerBatchKinds: control and transactional batches, a
// batch whose leader stamped LogAppendTime, and offset gaps are taken as
// they are; a gap larger than a segment can index starts a new segment.
func TestAppendAsFollowerBatchKinds(t *testing.T) {
	f := openTest(t, smallConfig())
	txn := idem(3, 1, 0)
	txn.transactional = true
	ctl := idem(3, 1, -1)
	ctl.control = true
	ctl.transactional = true
	lat := plain()
	lat.logAppendTime = true
	marker := buildBatch(t, ctl, []rec{{key: []byte{0, 0, 0, 1}, value: []byte{0, 0, 0, 0, 0, 5}, ts: t0 + 9}})
	in := [][]byte{
		buildBatch(t, txn, values("t", 2, t0)),
		marker,
		buildBatch(t, lat, values("l", 2, t0)),
		buildBatch(t, plain(), values("g", 1, t0)),
	}
	for i, off := range []int64{0, 2, 3, 100} { // a gap from 5 to 100
		putBase(in[i], off)
		binary.BigEndian.PutUint32(in[i][offLeaderEpoch:], 2)
	}
	info, err := f.AppendAsFollower(bytes.Join(in, nil))
	if err != nil {
		t.Fatal(err)
	}
	if info.BaseOffset != 0 || info.LastOffset != 100 || info.Records != 6 || f.EndOffset() != 101 {
		t.Fatalf("%+v, end %d", info, f.EndOffset())
	}
	if p := f.Producers(); len(p) != 1 || p[0].LastSequence != 1 || p[0].Epoch != 1 || p[0].LastTimestamp != t0+9 {
		t.Fatalf("producer state after a transaction marker: %+v", p)
	}
	if ep, off := f.EndOffsetForEpoch(2); ep != 2 || off != 101 {
		t.Fatalf("EndOffsetForEpoch(2) = (%d, %d)", ep, off)
	}
	// Reads in the gap return the batch after it.
	for _, o := range []int64{5, 50, 99, 100} {
		r, err := f.Read(nil, o, 1, f.EndOffset())
		if err != nil || parseHeader(r.Records).BaseOffset != 100 {
			t.Fatalf("Read(%d): %v", o, err)
		}
	}
	got := storedBatches(t, f.Log)
	for i := range in {
		if !bytes.Equal(got[i], in[i]) {
			t.Fatalf("batch %d was changed", i)
		}
	}

	// A gap of more than 2^31 offsets: first from an empty log, then after data.
	far := int64(5_000_000_000)
	b := buildBatch(t, plain(), values("f", 2, t0))
	putBase(b, far)
	e := openTest(t, smallConfig())
	if _, err := e.AppendAsFollower(append([]byte(nil), b...)); err != nil {
		t.Fatal(err)
	}
	putBase(b, 2*far)
	if _, err := f.AppendAsFollower(b); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		l := []*testLog{e, f}[i%2]
		if i >= 2 {
			l = l.reopen(true)
		}
		end := l.EndOffset()
		r, err := l.Read(nil, l.StartOffset(), 1<<20, end)
		if err != nil || len(r.Records) == 0 {
			t.Fatalf("read from the start: %v", err)
		}
		r, err = l.Read(nil, end-1, 1<<20, end)
		if h := parseHeader(r.Records); err != nil || h.BaseOffset > end-1 || h.LastOffset() != end-1 {
			t.Fatalf("read of the last batch at %d: %v", end-1, err)
		}
		epoch, _ := l.LatestEpoch()
		if _, err := l.Append(simple(t, 1, t0), epoch); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAssignLeaderEpoch(t *testing.T) {
	l := openTest(t, smallConfig())
	if ep, off := l.EndOffsetForEpoch(0); ep != -1 || off != -1 {
		t.Fatalf("empty log: (%d, %d)", ep, off)
	}
	if _, ok := l.LatestEpoch(); ok {
		t.Fatal("an empty log has a latest epoch")
	}
	if err := l.AssignLeaderEpoch(0); err != nil {
		t.Fatal(err)
	}
	if ep, off := l.EndOffsetForEpoch(0); ep != 0 || off != 0 {
		t.Fatalf("after assigning epoch 0 to an empty log: (%d, %d)", ep, off)
	}
	for range 3 {
		if _, err := l.Append(simple(t, 2, t0), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.AssignLeaderEpoch(2); err != nil {
		t.Fatal(err)
	}
	want := map[int32][2]int64{-1: {-1, -1}, 0: {0, 6}, 1: {0, 6}, 2: {2, 6}, 3: {-1, -1}}
	check := func(l *testLog) {
		t.Helper()
		for ep, w := range want {
			if e, off := l.EndOffsetForEpoch(ep); int64(e) != w[0] || off != w[1] {
				t.Fatalf("EndOffsetForEpoch(%d) = (%d, %d), want (%d, %d)", ep, e, off, w[0], w[1])
			}
		}
		if ep, ok := l.LatestEpoch(); !ok || ep != 2 {
			t.Fatalf("LatestEpoch = %d %v", ep, ok)
		}
	}
	check(l)
	// A leader's append checked at the superseded epoch is refused and
	// writes nothing: old-epoch batches after the new epoch's start would
	// contradict the cache.
	if _, err := l.Append(simple(t, 1, t0), 1); !errors.Is(err, kerr.NotLeaderForPartition) {
		t.Fatalf("append at epoch 1 after epoch 2 was assigned: %v; want NOT_LEADER_OR_FOLLOWER", err)
	}
	if end := l.EndOffset(); end != 6 {
		t.Fatalf("log end %d after a refused append; want 6", end)
	}
	check(l)
	if b, _ := os.ReadFile(filepath.Join(l.dir, leaderEpochFile)); string(b) != "0\n2\n0 0\n2 6\n" {
		t.Fatalf("leader epoch checkpoint %q", b) // written before AssignLeaderEpoch returned
	}
	// Reopened before a batch of the epoch is written, the log forgets it
	// (Open drops epochs that start at the end, as Kafka's loading does):
	// a leader assigns its epoch whenever it takes the partition.
	c := l.crashCopy()
	if ep, _ := c.LatestEpoch(); ep != 0 {
		t.Fatalf("reopened log kept the unused epoch: latest %d", ep)
	}
	if err := c.AssignLeaderEpoch(2); err != nil {
		t.Fatal(err)
	}
	check(c)
	if err := l.AssignLeaderEpoch(2); err != nil {
		t.Fatalf("assigning the current epoch again: %v", err)
	}
	wantKerr(t, l.AssignLeaderEpoch(1), kerr.FencedLeaderEpoch)
	if err := l.AssignLeaderEpoch(-1); err == nil {
		t.Fatal("assigned epoch -1")
	}
	// Appending at the assigned epoch changes nothing in the cache.
	if _, err := l.Append(simple(t, 1, t0), 2); err != nil {
		t.Fatal(err)
	}
	want[2], want[1], want[0] = [2]int64{2, 7}, [2]int64{0, 6}, [2]int64{0, 6}
	check(l.reopen(true))

	// Assigned but never written: a truncation to the end forgets it, as
	// Kafka does when a leader lost leadership before its first append.
	l2 := openTest(t, smallConfig())
	l2.Append(simple(t, 2, t0), 1)
	l2.AssignLeaderEpoch(5)
	if err := l2.TruncateTo(l2.EndOffset()); err != nil {
		t.Fatal(err)
	}
	if ep, _ := l2.LatestEpoch(); ep != 1 {
		t.Fatalf("latest epoch %d after truncating to the end, want 1", ep)
	}
	if ep, _ := l2.reopen(true).LatestEpoch(); ep != 1 {
		t.Fatalf("latest epoch %d after reopening, want 1", ep)
	}
}

func TestHighWatermark(t *testing.T) {
	l := openTest(t, smallConfig())
	for range 5 {
		l.mustAppend(simple(t, 2, t0))
	}
	if hw := l.HighWatermark(); hw != 0 {
		t.Fatalf("initial high watermark %d", hw)
	}
	l.Close()
	if _, err := os.Stat(filepath.Join(l.dir, highWatermarkFile)); !os.IsNotExist(err) {
		t.Fatalf("a log whose high watermark was never set wrote the checkpoint: %v", err)
	}
	l = l.reopen(false)
	steps := []struct {
		set     int64
		advance bool
		want    int64
	}{
		{4, true, 4},
		{3, false, 4}, // never backwards
		{4, false, 4},
		{100, true, 10}, // clamped to the end offset
		{11, false, 10},
		{-5, false, 10},
	}
	for _, s := range steps {
		if got := l.SetHighWatermark(s.set); got != s.advance || l.HighWatermark() != s.want {
			t.Fatalf("SetHighWatermark(%d) = %v, high watermark %d; want %v, %d", s.set, got, l.HighWatermark(), s.advance, s.want)
		}
	}
	// Lazily persisted: a crash before Flush, Maintain or Close recovers an
	// older value (here none: the log start), never a newer one.
	if c := l.crashCopy(); c.HighWatermark() != 0 {
		t.Fatalf("recovered %d before any checkpoint", c.HighWatermark())
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if c := l.crashCopy(); c.HighWatermark() != 10 {
		t.Fatalf("recovered %d after Flush", c.HighWatermark())
	}
	l.mustAppend(simple(t, 2, t0))
	l.SetHighWatermark(12)
	if _, err := l.Maintain(); err != nil {
		t.Fatal(err)
	}
	if c := l.crashCopy(); c.HighWatermark() != 12 {
		t.Fatalf("recovered %d after Maintain", c.HighWatermark())
	}
	// Lowered by truncation (an unclean election), and checkpointed then.
	if err := l.TruncateTo(7); err != nil { // inside the batch 6..7: the end becomes 6
		t.Fatal(err)
	}
	if l.EndOffset() != 6 || l.HighWatermark() != 6 {
		t.Fatalf("after TruncateTo(7): end %d, high watermark %d", l.EndOffset(), l.HighWatermark())
	}
	if c := l.crashCopy(); c.HighWatermark() != 6 {
		t.Fatalf("recovered %d after a truncation", c.HighWatermark())
	}
	if l.SetHighWatermark(5) || l.SetHighWatermark(100) || l.HighWatermark() != 6 {
		t.Fatalf("after truncation the high watermark is %d", l.HighWatermark())
	}
	// Retention or DeleteRecords moving the start past it raise it.
	l.mustAppend(simple(t, 2, t0))
	if _, err := l.DeleteRecordsBefore(7); err != nil {
		t.Fatal(err)
	}
	if l.HighWatermark() != 7 {
		t.Fatalf("high watermark %d below the start offset 7", l.HighWatermark())
	}
	l2 := l.reopen(true)
	if l2.HighWatermark() != 7 {
		t.Fatalf("reopened with high watermark %d", l2.HighWatermark())
	}
	// Restarting the log moves it (back) to the new start.
	if err := l2.TruncateFullyAndStartAt(3); err != nil {
		t.Fatal(err)
	}
	if l2.HighWatermark() != 3 || l2.StartOffset() != 3 || l2.EndOffset() != 3 {
		t.Fatalf("after TruncateFullyAndStartAt(3): [%d, %d) hw %d", l2.StartOffset(), l2.EndOffset(), l2.HighWatermark())
	}
	l3 := l2.reopen(true)
	if l3.HighWatermark() != 3 {
		t.Fatalf("reopened with high watermark %d", l3.HighWatermark())
	}

	// A checkpoint beyond the recovered end is clamped; an unreadable one
	// gives the log start.
	l3.Close()
	os.WriteFile(filepath.Join(l3.dir, highWatermarkFile), encodeHighWatermark(99), 0o644)
	if l4 := l3.reopen(false); l4.HighWatermark() != 3 {
		t.Fatalf("checkpoint 99 beyond the end 3 recovered as %d", l4.HighWatermark())
	}
	for _, bad := range []string{"", "1\n5\n", "0\n-4\n", "0\nx\n"} {
		l3.Close()
		os.WriteFile(filepath.Join(l3.dir, highWatermarkFile), []byte(bad), 0o644)
		if l5 := l3.reopen(false); l5.HighWatermark() != 3 {
			t.Fatalf("checkpoint %q recovered as %d", bad, l5.HighWatermark())
		}
	}
}

package log

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// pbatch makes an idempotent batch of n records.
func pbatch(t testing.TB, pid int64, epoch int16, seq int32, n int) []byte {
	return buildBatch(t, idem(pid, epoch, seq), values("p", n, t0))
}

type produceStep struct {
	pid      int64
	epoch    int16
	seq      int32
	n        int
	wantBase int64 // for success and duplicates
	wantDup  bool
	wantErr  *kerr.Error
}

func runSteps(t *testing.T, l *testLog, steps []produceStep) {
	t.Helper()
	for i, s := range steps {
		endBefore := l.EndOffset()
		info, err := l.Append(pbatch(t, s.pid, s.epoch, s.seq, s.n), 0)
		if s.wantErr != nil {
			wantKerr(t, err, s.wantErr)
			if l.EndOffset() != endBefore {
				t.Fatalf("step %d: a rejected batch was written", i)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d (%+v): %v", i, s, err)
		}
		if info.Duplicate != s.wantDup || info.BaseOffset != s.wantBase || info.LastOffset != s.wantBase+int64(s.n)-1 {
			t.Fatalf("step %d (%+v): %+v", i, s, info)
		}
		if s.wantDup && l.EndOffset() != endBefore {
			t.Fatalf("step %d: a duplicate was written", i)
		}
	}
}

func TestIdempotentProducer(t *testing.T) {
	cases := []struct {
		name  string
		steps []produceStep
	}{
		{"in order", []produceStep{
			{pid: 1, epoch: 0, seq: 0, n: 3, wantBase: 0},
			{pid: 1, epoch: 0, seq: 3, n: 2, wantBase: 3},
			{pid: 2, epoch: 0, seq: 0, n: 1, wantBase: 5},
			{pid: 1, epoch: 0, seq: 5, n: 1, wantBase: 6},
		}},
		{"retry of the last batch", []produceStep{
			{pid: 1, epoch: 0, seq: 0, n: 3, wantBase: 0},
			{pid: 1, epoch: 0, seq: 0, n: 3, wantBase: 0, wantDup: true},
			{pid: 1, epoch: 0, seq: 3, n: 1, wantBase: 3},
		}},
		{"retry of each of the last five batches", []produceStep{
			{pid: 1, epoch: 0, seq: 0, n: 1, wantBase: 0},
			{pid: 1, epoch: 0, seq: 1, n: 1, wantBase: 1},
			{pid: 1, epoch: 0, seq: 2, n: 1, wantBase: 2},
			{pid: 1, epoch: 0, seq: 3, n: 1, wantBase: 3},
			{pid: 1, epoch: 0, seq: 4, n: 1, wantBase: 4},
			{pid: 1, epoch: 0, seq: 5, n: 1, wantBase: 5},
			{pid: 1, epoch: 0, seq: 1, n: 1, wantBase: 1, wantDup: true},
			{pid: 1, epoch: 0, seq: 3, n: 1, wantBase: 3, wantDup: true},
			{pid: 1, epoch: 0, seq: 5, n: 1, wantBase: 5, wantDup: true},
			{pid: 1, epoch: 0, seq: 0, n: 1, wantErr: kerr.OutOfOrderSequenceNumber}, // sixth from last: forgotten
		}},
		{"same first sequence, different length is not a duplicate", []produceStep{
			{pid: 1, epoch: 0, seq: 0, n: 3, wantBase: 0},
			{pid: 1, epoch: 0, seq: 0, n: 2, wantErr: kerr.OutOfOrderSequenceNumber},
		}},
		{"gap", []produceStep{
			{pid: 1, epoch: 0, seq: 0, n: 3, wantBase: 0},
			{pid: 1, epoch: 0, seq: 4, n: 1, wantErr: kerr.OutOfOrderSequenceNumber},
			{pid: 1, epoch: 0, seq: 3, n: 1, wantBase: 3},
		}},
		{"going back", []produceStep{
			{pid: 1, epoch: 0, seq: 0, n: 3, wantBase: 0},
			{pid: 1, epoch: 0, seq: 3, n: 3, wantBase: 3},
			{pid: 1, epoch: 0, seq: 2, n: 2, wantErr: kerr.OutOfOrderSequenceNumber},
		}},
		{"fencing", []produceStep{
			{pid: 1, epoch: 5, seq: 0, n: 1, wantBase: 0},
			{pid: 1, epoch: 4, seq: 1, n: 1, wantErr: kerr.InvalidProducerEpoch},
			{pid: 1, epoch: 4, seq: 0, n: 1, wantErr: kerr.InvalidProducerEpoch},
			{pid: 1, epoch: 6, seq: 3, n: 1, wantErr: kerr.OutOfOrderSequenceNumber}, // new epoch must start at 0
			{pid: 1, epoch: 6, seq: 0, n: 2, wantBase: 1},
			{pid: 1, epoch: 5, seq: 1, n: 1, wantErr: kerr.InvalidProducerEpoch},
			{pid: 1, epoch: 6, seq: 0, n: 2, wantBase: 1, wantDup: true},
			{pid: 1, epoch: 6, seq: 2, n: 1, wantBase: 3},
		}},
		{"a new epoch forgets the old batches", []produceStep{
			{pid: 1, epoch: 0, seq: 0, n: 1, wantBase: 0},
			{pid: 1, epoch: 1, seq: 0, n: 1, wantBase: 1},
			{pid: 1, epoch: 0, seq: 0, n: 1, wantErr: kerr.InvalidProducerEpoch},
		}},
		{"unknown producer may start anywhere", []produceStep{
			{pid: 9, epoch: 3, seq: 42, n: 2, wantBase: 0},
			{pid: 9, epoch: 3, seq: 44, n: 1, wantBase: 2},
			{pid: 9, epoch: 3, seq: 46, n: 1, wantErr: kerr.OutOfOrderSequenceNumber},
		}},
		{"sequence wraps", []produceStep{
			{pid: 1, epoch: 0, seq: math.MaxInt32 - 1, n: 2, wantBase: 0},
			{pid: 1, epoch: 0, seq: 0, n: 3, wantBase: 2},
			{pid: 1, epoch: 0, seq: 0, n: 3, wantBase: 2, wantDup: true},
			{pid: 1, epoch: 0, seq: 3, n: 1, wantBase: 5},
		}},
		{"a batch crossing the wrap", []produceStep{
			{pid: 1, epoch: 0, seq: math.MaxInt32 - 1, n: 4, wantBase: 0}, // last sequence 1
			{pid: 1, epoch: 0, seq: math.MaxInt32 - 1, n: 4, wantBase: 0, wantDup: true},
			{pid: 1, epoch: 0, seq: 2, n: 1, wantBase: 4},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := openTest(t, smallConfig())
			runSteps(t, l, tc.steps)
		})
	}
}

func TestIdempotentManyBatchesInOneAppend(t *testing.T) {
	l := openTest(t, smallConfig())
	two := append(pbatch(t, 1, 0, 0, 2), pbatch(t, 1, 0, 2, 3)...)
	info := l.mustAppend(two)
	if info.BaseOffset != 0 || info.LastOffset != 4 {
		t.Fatalf("%+v", info)
	}
	// The same batch twice in one request: the second is out of order.
	same := append(pbatch(t, 1, 0, 5, 1), pbatch(t, 1, 0, 5, 1)...)
	_, err := l.Append(same, 0)
	wantKerr(t, err, kerr.OutOfOrderSequenceNumber)
	// A retry of the whole two-batch request is a duplicate.
	if info, err := l.Append(append(pbatch(t, 1, 0, 0, 2), pbatch(t, 1, 0, 2, 3)...), 0); err != nil || !info.Duplicate {
		t.Fatalf("%+v %v", info, err)
	}
	// A failing batch in a request leaves the state of the others alone.
	bad := append(pbatch(t, 2, 0, 0, 1), pbatch(t, 3, 0, 0, 1)...)
	bad = append(bad, pbatch(t, 1, 0, 99, 1)...)
	_, err = l.Append(bad, 0)
	wantKerr(t, err, kerr.OutOfOrderSequenceNumber)
	for _, p := range l.Producers() {
		if p.ProducerID != 1 {
			t.Fatalf("producer %d recorded by a rejected append", p.ProducerID)
		}
	}
	// Transactional batches are accepted as idempotent ones.
	s := idem(4, 0, 0)
	s.transactional = true
	if _, err := l.Append(buildBatch(t, s, values("t", 2, t0)), 0); err != nil {
		t.Fatal(err)
	}
}

func TestIdempotentDuplicateReportsAppendTime(t *testing.T) {
	cfg := smallConfig()
	cfg.LogAppendTime = true
	l := openTest(t, cfg)
	first := l.mustAppend(pbatch(t, 1, 0, 0, 2))
	l.clock.Advance(time.Minute)
	dup := l.mustAppend(pbatch(t, 1, 0, 0, 2))
	if !dup.Duplicate || dup.LogAppendTime != first.LogAppendTime || dup.Records != 2 || dup.Bytes != 0 {
		t.Fatalf("duplicate %+v, first %+v", dup, first)
	}
}

func TestProducersInfo(t *testing.T) {
	l := openTest(t, smallConfig())
	l.mustAppend(pbatch(t, 7, 2, 0, 5))
	l.mustAppend(pbatch(t, 3, 0, 10, 1))
	got := l.Producers()
	want := []ProducerInfo{
		{ProducerID: 3, Epoch: 0, LastSequence: 10, LastTimestamp: t0, CoordinatorEpoch: -1, TxnStartOffset: -1},
		{ProducerID: 7, Epoch: 2, LastSequence: 4, LastTimestamp: t0 + 4, CoordinatorEpoch: -1, TxnStartOffset: -1},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Producers() = %+v, want %+v", got, want)
	}
}

// producerWorkload appends batches from three producers across several
// segments and returns the last batch of each for retries.
func producerWorkload(t *testing.T, l *testLog) map[int64][]byte {
	t.Helper()
	last := map[int64][]byte{}
	seqs := map[int64]int32{}
	for i := range 150 {
		pid := int64(1 + i%3)
		b := buildBatch(t, idem(pid, 1, seqs[pid]), values("w", 4, t0+int64(i)))
		seqs[pid] += 4
		l.mustAppend(b)
		last[pid] = append([]byte(nil), b...)
	}
	if len(l.segments()) < 3 {
		t.Fatalf("%d segments; want rolls (and snapshots)", len(l.segments()))
	}
	return last
}

func checkRetries(t *testing.T, l *testLog, last map[int64][]byte, wantProducers []ProducerInfo) {
	t.Helper()
	got := l.Producers()
	if len(got) != len(wantProducers) {
		t.Fatalf("producers %+v, want %+v", got, wantProducers)
	}
	for i := range got {
		if got[i] != wantProducers[i] {
			t.Fatalf("producer %+v, want %+v", got[i], wantProducers[i])
		}
	}
	end := l.EndOffset()
	for pid, b := range last {
		info, err := l.Append(append([]byte(nil), b...), 0)
		if err != nil || !info.Duplicate {
			t.Fatalf("retry of producer %d's last batch: %+v %v", pid, info, err)
		}
	}
	if l.EndOffset() != end {
		t.Fatal("retries were written")
	}
	// And the next sequence is accepted, a gap is not.
	l.mustAppend(pbatch(t, 1, 1, 200, 1))
	_, err := l.Append(pbatch(t, 2, 1, 99, 1), 0)
	wantKerr(t, err, kerr.OutOfOrderSequenceNumber)
}

func TestProducerStateSurvivesRestart(t *testing.T) {
	cases := []struct {
		name   string
		reopen func(t *testing.T, l *testLog) *testLog
	}{
		{"close and open", func(t *testing.T, l *testLog) *testLog { return l.reopen(true) }},
		{"crash", func(t *testing.T, l *testLog) *testLog { return l.crashCopy() }},
		{"crash without snapshots", func(t *testing.T, l *testLog) *testLog {
			c := l.crashCopy()
			c.Close()
			removeGlob(t, filepath.Join(c.dir, "*"+snapshotSuffix))
			return c.reopen(false)
		}},
		{"corrupt newest snapshot", func(t *testing.T, l *testLog) *testLog {
			l.Close()
			snaps := globT(t, filepath.Join(l.dir, "*"+snapshotSuffix))
			newest := snaps[len(snaps)-1]
			b, _ := os.ReadFile(newest)
			b[len(b)-1] ^= 1
			os.WriteFile(newest, b, 0o644)
			return l.reopen(false)
		}},
		{"snapshot beyond the end", func(t *testing.T, l *testLog) *testLog {
			l.Close()
			bogus := snapshotPath(l.dir, 1000)
			os.WriteFile(bogus, encodeSnapshot(producerStates{}), 0o644)
			r := l.reopen(false)
			if _, err := os.Stat(bogus); !os.IsNotExist(err) {
				t.Fatal("snapshot beyond the log end kept")
			}
			return r
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := openTest(t, smallConfig())
			last := producerWorkload(t, l)
			want := l.Producers()
			checkRetries(t, tc.reopen(t, l), last, want)
		})
	}
}

func globT(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("no files match %s", pattern)
	}
	return m
}

func removeGlob(t *testing.T, pattern string) {
	for _, f := range globT(t, pattern) {
		os.Remove(f)
	}
}

func TestSnapshotsArePruned(t *testing.T) {
	l := openTest(t, smallConfig())
	producerWorkload(t, l)
	if n := len(globT(t, filepath.Join(l.dir, "*"+snapshotSuffix))); n > maxSnapshotsToKeep {
		t.Fatalf("%d snapshots kept", n)
	}
}

func TestProducerExpiry(t *testing.T) {
	cfg := smallConfig()
	cfg.ProducerExpiration = 0 // the default, 7 days
	cfg.RetentionMs = -1
	l := openTest(t, cfg)
	l.clock.Set(time.UnixMilli(t0))
	l.mustAppend(pbatch(t, 1, 0, 0, 1)) // timestamp t0
	l.clock.Advance(DefaultProducerExpiration - time.Millisecond)
	l.mustAppend(buildBatch(t, idem(2, 0, 0), values("x", 1, l.clock.Millis())))
	if _, err := l.Maintain(); err != nil {
		t.Fatal(err)
	}
	if n := len(l.Producers()); n != 2 {
		t.Fatalf("%d producers before expiry", n)
	}
	l.clock.Advance(time.Millisecond)
	if _, err := l.Maintain(); err != nil {
		t.Fatal(err)
	}
	ps := l.Producers()
	if len(ps) != 1 || ps[0].ProducerID != 2 {
		t.Fatalf("after expiry: %+v", ps)
	}
	// The expired producer is unknown again: any sequence goes.
	if _, err := l.Append(pbatch(t, 1, 0, 77, 1), 0); err != nil {
		t.Fatal(err)
	}
	// Expired producers do not come back from the log on reopen.
	l.Close()
	l.clock.Advance(DefaultProducerExpiration)
	l2 := l.reopen(false)
	if ps := l2.Producers(); len(ps) != 0 {
		t.Fatalf("producers after reopen: %+v", ps)
	}
}

func TestSnapshotEncoding(t *testing.T) {
	ps := producerStates{}
	for id := int64(0); id < 20; id++ {
		e := newProducerEntry(id)
		for i := range int(id % 8) {
			e.epoch = int16(id)
			e.addBatch(batchMeta{firstSeq: int32(i), lastSeq: int32(i), firstOff: id*100 + int64(i), lastOff: id*100 + int64(i), ts: int64(i)})
		}
		ps[id] = &e
	}
	b := encodeSnapshot(ps)
	got, err := decodeSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ps) {
		t.Fatalf("%d entries", len(got))
	}
	for id, e := range ps {
		if *got[id] != *e {
			t.Fatalf("entry %d: %+v, want %+v", id, *got[id], *e)
		}
	}
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 0x10
		if _, err := decodeSnapshot(c); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
	for n := range len(b) {
		if _, err := decodeSnapshot(b[:n]); err == nil {
			t.Fatalf("truncation to %d bytes went unnoticed", n)
		}
	}
}

package log

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEndOffsetForEpoch(t *testing.T) {
	var c epochCache
	if ep, off := c.endOffsetFor(0, 100); ep != -1 || off != -1 {
		t.Fatalf("empty cache: %d %d", ep, off)
	}
	for _, e := range []epochEntry{{2, 10}, {4, 30}, {7, 55}} {
		if !c.assign(e.epoch, e.start) {
			t.Fatalf("assign %+v", e)
		}
	}
	const leo = 80
	cases := []struct {
		epoch   int32
		wantEp  int32
		wantOff int64
	}{
		{-1, -1, -1}, // undefined epoch
		{0, 0, 10},   // below the earliest: Kafka answers (requested, earliest start)
		{1, 1, 10},
		{2, 2, 30},
		{3, 2, 30}, // unknown epoch between: the largest below, ended where the next began
		{4, 4, 55},
		{5, 4, 55},
		{6, 4, 55},
		{7, 7, leo}, // the latest epoch ends at the log end
		{8, -1, -1}, // newer than the latest: undefined, as in Kafka (a leader assigns its epoch when elected)
		{1 << 30, -1, -1},
	}
	for _, tc := range cases {
		if ep, off := c.endOffsetFor(tc.epoch, leo); ep != tc.wantEp || off != tc.wantOff {
			t.Errorf("endOffsetFor(%d) = (%d, %d), want (%d, %d)", tc.epoch, ep, off, tc.wantEp, tc.wantOff)
		}
	}
}

func TestEpochCacheEdits(t *testing.T) {
	var c epochCache
	c.assign(1, 0)
	c.assign(3, 10)
	if c.assign(3, 20) || c.assign(2, 30) || c.assign(-1, 40) {
		t.Fatal("assign accepted an epoch that is not newer")
	}
	c.assign(5, 20)
	c.assign(6, 30)
	if !c.truncateFromEnd(20) || len(c.load()) != 2 {
		t.Fatalf("truncateFromEnd: %+v", c.load())
	}
	if c.truncateFromEnd(20) {
		t.Fatal("second truncateFromEnd changed something")
	}
	if !c.truncateFromStart(15) {
		t.Fatal("truncateFromStart")
	}
	if es := c.load(); len(es) != 1 || es[0] != (epochEntry{3, 15}) {
		t.Fatalf("after truncateFromStart: %+v", es)
	}
	if c.truncateFromStart(15) || c.truncateFromStart(3) {
		t.Fatal("no-op truncateFromStart changed something")
	}
	got, err := decodeEpochs(encodeEpochs([]epochEntry{{1, 0}, {3, 10}, {9, 99}}))
	if err != nil || len(got) != 3 || got[2] != (epochEntry{9, 99}) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{"", "1\n0\n", "0\n2\n1 0\n", "0\n1\nx y\n", "0\n2\n3 0\n2 5\n", "0\n1\n-1 0\n"} {
		if _, err := decodeEpochs([]byte(bad)); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
}

func TestLeaderEpochsPersisted(t *testing.T) {
	l := openTest(t, smallConfig())
	appendEpoch := func(ep int32, n int) {
		for range n {
			if _, err := l.Append(sizedBatch(t, 2, 800, t0), ep); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendEpoch(-1, 2) // no epoch: nothing recorded
	if ep, off := l.EndOffsetForEpoch(0); ep != -1 || off != -1 {
		t.Fatalf("no epochs yet: %d %d", ep, off)
	}
	appendEpoch(0, 3)  // offsets 4..9
	appendEpoch(2, 5)  // 10..19
	appendEpoch(5, 10) // 20..39
	want := map[int32][2]int64{0: {0, 10}, 1: {0, 10}, 2: {2, 20}, 4: {2, 20}, 5: {5, 40}}
	check := func(l *testLog, end int64) {
		t.Helper()
		for ep, w := range want {
			if w[1] > end {
				w[1] = end
			}
			if got, off := l.EndOffsetForEpoch(ep); int64(got) != w[0] || off != w[1] {
				t.Errorf("EndOffsetForEpoch(%d) = (%d, %d), want (%d, %d)", ep, got, off, w[0], w[1])
			}
		}
	}
	check(l, 40)
	check(l.crashCopy(), 40)
	l2 := l.reopen(true)
	check(l2, 40)

	// A checkpoint that is missing is rebuilt from the batch headers.
	l2.Close()
	os.Remove(filepath.Join(l2.dir, leaderEpochFile))
	l3 := l2.reopen(false)
	check(l3, 40)
	if _, err := os.Stat(filepath.Join(l3.dir, leaderEpochFile)); err != nil {
		t.Fatal("rebuilt checkpoint not written")
	}

	// Truncation of the log's tail truncates the cache: cut the epoch 5
	// batches off the last segment.
	l3.Close()
	segs := segmentLogs(t, l3.dir)
	for _, p := range segs {
		base, _ := parseOffsetName(filepath.Base(p)[:20])
		if base >= 20 {
			os.Remove(p)
		}
	}
	l4 := l3.reopen(false)
	if l4.EndOffset() != 20 {
		t.Fatalf("end %d", l4.EndOffset())
	}
	if ep, off := l4.EndOffsetForEpoch(2); ep != 2 || off != 20 {
		t.Fatalf("after truncation: %d %d", ep, off)
	}
	if ep, off := l4.EndOffsetForEpoch(5); ep != -1 || off != -1 {
		t.Fatalf("an epoch truncated away: %d %d, want undefined", ep, off)
	}
	// The start offset folds earlier epochs.
	if _, err := l4.DeleteRecordsBefore(12); err != nil {
		t.Fatal(err)
	}
	if es := l4.epochs.load(); len(es) != 1 || es[0] != (epochEntry{2, 12}) {
		t.Fatalf("after DeleteRecordsBefore: %+v", es)
	}
	if ep, off := l4.EndOffsetForEpoch(0); ep != 0 || off != 12 {
		t.Fatalf("below the earliest: %d %d", ep, off)
	}
}

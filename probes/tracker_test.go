package probes

import (
	"slices"
	"testing"
	"time"
)

// The tracker is driven by a script of steps on a fake clock: t0 plus the
// step's time.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type step struct {
	at     time.Duration
	op     string // send, ack, fail, consume, sweep
	seq    uint64
	offset int64
	// Expectations: of consume, the delivery and reordering; of sweep, the
	// brokers of the lost records; of send, ok.
	want      delivery
	reordered bool
	lost      []int32
	refused   bool
}

func runSteps(t *testing.T, tr *seqTracker, steps []step) {
	t.Helper()
	for i, s := range steps {
		now := t0.Add(s.at)
		switch s.op {
		case "send":
			seq, ok := tr.send(now, 7)
			if ok == s.refused || ok && seq != s.seq {
				t.Fatalf("step %d: send = %d, %v; want %d, refused %v", i, seq, ok, s.seq, s.refused)
			}
		case "ack":
			tr.ack(s.seq, now)
		case "fail":
			tr.fail(s.seq)
		case "consume":
			res := tr.consume(s.seq, s.offset, t0, now)
			if res.kind != s.want || res.reordered != s.reordered {
				t.Fatalf("step %d: consume seq %d at %d = %+v; want kind %v, reordered %v", i, s.seq, s.offset, res, s.want, s.reordered)
			}
		case "sweep":
			if got := tr.sweep(now); !slices.Equal(got, s.lost) {
				t.Fatalf("step %d: sweep lost %v, want %v", i, got, s.lost)
			}
		}
	}
}

func TestSeqTracker(t *testing.T) {
	const deadline = 20 * time.Second
	ms := time.Millisecond
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order, nothing wrong", []step{
			{op: "send", seq: 1}, {at: 2 * ms, op: "ack", seq: 1},
			{at: 1000 * ms, op: "send", seq: 2}, {at: 1002 * ms, op: "ack", seq: 2},
			{at: 1003 * ms, op: "consume", seq: 1, offset: 0}, {at: 1004 * ms, op: "consume", seq: 2, offset: 1},
			{at: time.Hour, op: "sweep"},
		}},
		{"consumed before its acknowledgement is not lost", []step{
			{op: "send", seq: 1}, {at: 3 * ms, op: "consume", seq: 1, offset: 5}, {at: 4 * ms, op: "ack", seq: 1},
			{at: time.Hour, op: "sweep"},
		}},
		{"acknowledged and never consumed: lost after the deadline, not before", []step{
			{op: "send", seq: 1}, {at: 10 * ms, op: "ack", seq: 1},
			{at: deadline + 10*ms, op: "sweep"},
			{at: deadline + 11*ms, op: "sweep", lost: []int32{7}},
			{at: deadline + 12*ms, op: "sweep"}, // counted once
		}},
		{"a failed produce is not lost; if it shows up it is fresh", []step{
			{op: "send", seq: 1}, {at: 10 * ms, op: "fail", seq: 1},
			{at: time.Hour, op: "sweep"},
			{at: time.Hour, op: "consume", seq: 1, offset: 0},
		}},
		{"read again at its offset: the consumer's doing, not a duplicate", []step{
			{op: "send", seq: 1}, {at: ms, op: "ack", seq: 1},
			{at: 2 * ms, op: "consume", seq: 1, offset: 3},
			{at: 3 * ms, op: "consume", seq: 1, offset: 3, want: deliveredAgain},
		}},
		{"at a second offset: duplicate", []step{
			{op: "send", seq: 1}, {at: ms, op: "ack", seq: 1},
			{at: 2 * ms, op: "consume", seq: 1, offset: 3},
			{at: 3 * ms, op: "consume", seq: 1, offset: 4, want: deliveredDuplicate},
		}},
		{"acknowledged, then overtaken by a later record: reordered", []step{
			{op: "send", seq: 1}, {at: ms, op: "ack", seq: 1},
			{at: 2 * ms, op: "send", seq: 2}, {at: 3 * ms, op: "ack", seq: 2},
			{at: 4 * ms, op: "consume", seq: 2, offset: 0},
			{at: 5 * ms, op: "consume", seq: 1, offset: 1, reordered: true},
		}},
		{"in flight together: either order is fine", []step{
			{op: "send", seq: 1}, {at: ms, op: "send", seq: 2},
			{at: 2 * ms, op: "ack", seq: 2}, {at: 3 * ms, op: "ack", seq: 1},
			{at: 4 * ms, op: "consume", seq: 2, offset: 0},
			{at: 5 * ms, op: "consume", seq: 1, offset: 1},
		}},
		{"a failed record that shows up late is not reordered", []step{
			{op: "send", seq: 1}, {at: ms, op: "fail", seq: 1},
			{at: 2 * ms, op: "send", seq: 2}, {at: 3 * ms, op: "ack", seq: 2},
			{at: 4 * ms, op: "consume", seq: 2, offset: 0},
			{at: 5 * ms, op: "consume", seq: 1, offset: 1},
		}},
		{"a gap is loss, not reordering, unless the record turns up", []step{
			{op: "send", seq: 1}, {at: ms, op: "ack", seq: 1},
			{at: 2 * ms, op: "send", seq: 2}, {at: 3 * ms, op: "ack", seq: 2},
			{at: 4 * ms, op: "send", seq: 3}, {at: 5 * ms, op: "ack", seq: 3},
			{at: 6 * ms, op: "consume", seq: 1, offset: 0},
			{at: 7 * ms, op: "consume", seq: 3, offset: 2},
			{at: deadline + 4*ms, op: "sweep", lost: []int32{7}},
		}},
		{"the record in the gap turns up: reordered", []step{
			{op: "send", seq: 1}, {at: ms, op: "ack", seq: 1},
			{at: 2 * ms, op: "send", seq: 2}, {at: 3 * ms, op: "ack", seq: 2},
			{at: 4 * ms, op: "send", seq: 3}, {at: 5 * ms, op: "ack", seq: 3},
			{at: 6 * ms, op: "consume", seq: 1, offset: 0},
			{at: 7 * ms, op: "consume", seq: 3, offset: 2},
			{at: 8 * ms, op: "consume", seq: 2, offset: 3, reordered: true},
			{at: deadline + 4*ms, op: "sweep"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, newSeqTracker(deadline, 100), tt.steps)
		})
	}
}

func TestSeqTrackerBounds(t *testing.T) {
	tr := newSeqTracker(time.Second, 2)
	runSteps(t, tr, []step{
		{op: "send", seq: 1}, {op: "send", seq: 2}, {op: "send", refused: true},
		{op: "ack", seq: 1}, {op: "consume", seq: 1, offset: 0}, {op: "send", seq: 3},
	})
	if got := tr.committable(); got != 1 {
		t.Errorf("committable = %d, want 1", got)
	}

	// Beyond the duplicate window: cannot tell.
	tr = newSeqTracker(time.Second, ringSize+10)
	for seq := uint64(1); seq <= ringSize+1; seq++ {
		tr.send(t0, 1)
		tr.ack(seq, t0)
		if res := tr.consume(seq, int64(seq), t0, t0); res.kind != deliveredFresh {
			t.Fatalf("seq %d: %+v", seq, res)
		}
	}
	if res := tr.consume(1, 99999, t0, t0); res.kind != deliveredTooOld {
		t.Fatalf("seq 1 beyond the window: %+v", res)
	}
	if res := tr.consume(2, 99999, t0, t0); res.kind != deliveredDuplicate {
		t.Fatalf("seq 2 within the window, second offset: %+v", res)
	}
}

// TestSeqTrackerE2E checks which clock end-to-end latency comes from.
func TestSeqTrackerE2E(t *testing.T) {
	tr := newSeqTracker(time.Second, 10)
	tr.send(t0, 1)
	tr.ack(1, t0.Add(time.Millisecond))
	if res := tr.consume(1, 0, t0.Add(-time.Hour), t0.Add(5*time.Millisecond)); res.e2e != 5*time.Millisecond {
		t.Errorf("tracked record: e2e %v, want the tracker's 5ms", res.e2e)
	}
	if res := tr.consume(9, 1, t0, t0.Add(7*time.Millisecond)); res.e2e != 7*time.Millisecond {
		t.Errorf("untracked record: e2e %v, want the payload's 7ms", res.e2e)
	}
}

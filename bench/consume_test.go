package bench

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func stamped(run uint64, producer uint32, seq uint64, sent int64, offset int64) *kgo.Record {
	v := make([]byte, 40)
	putStamp(v, stamp{run: run, producer: producer, seq: seq, sentNano: sent})
	return &kgo.Record{Value: v, Offset: offset}
}

func TestConsumerE2EBookkeeping(t *testing.T) {
	c := &consumer{
		e2e: true, run: 7, measureNano: 1000,
		next: make([]atomic.Int64, 2), expect: []int64{10, 0}, hist: newHistogram(),
	}
	now := time.Unix(0, 5000)
	c.partition(0, []*kgo.Record{
		stamped(7, 0, 0, 500, 10),  // warmup: checked, not measured
		stamped(7, 0, 1, 1500, 11), // measured, latency 3500ns
		stamped(7, 1, 0, 2000, 13), // offset 12 skipped: a gap
		stamped(7, 0, 1, 1500, 14), // duplicate
		stamped(8, 0, 2, 1500, 15), // another run: foreign
		{Value: []byte("not a stamp"), Offset: 16},
	}, now)

	if c.gaps != 1 || c.dups != 1 || c.foreign != 2 {
		t.Errorf("gaps %d dups %d foreign %d, want 1 1 2", c.gaps, c.dups, c.foreign)
	}
	if c.records != 3 || c.bytes != 3*40 || c.hist.Count() != 3 || c.hist.Max() != 3500 || c.hist.Min() != 3000 {
		t.Errorf("measured records %d bytes %d latency n=%d min %d max %d", c.records, c.bytes, c.hist.Count(), c.hist.Min(), c.hist.Max())
	}
	if got := c.next[0].Load(); got != 17 {
		t.Errorf("next offset %d, want 17", got)
	}
	if !c.seen[0].has(0) || !c.seen[0].has(1) || !c.seen[1].has(0) || c.seen[0].has(2) {
		t.Errorf("seen sets wrong: %v", c.seen)
	}
	if c.progRecords.Load() != 6 || c.progBytes.Load() != 5*40+int64(len("not a stamp")) {
		t.Errorf("progress %d records %d bytes", c.progRecords.Load(), c.progBytes.Load())
	}
}

func TestConsumerRecordBudget(t *testing.T) {
	budget := new(atomic.Int64)
	budget.Store(5)
	c := &consumer{budget: budget, measureStart: time.Unix(100, 0), next: make([]atomic.Int64, 1), expect: []int64{0}}
	batch := func(from int64) []*kgo.Record {
		var rs []*kgo.Record
		for i := range int64(3) {
			rs = append(rs, &kgo.Record{Value: make([]byte, 10), Offset: from + i})
		}
		return rs
	}
	c.partition(0, batch(0), time.Unix(99, 0)) // warmup: not counted, budget untouched
	if c.records != 0 || budget.Load() != 5 {
		t.Fatalf("warmup batch counted: records %d budget %d", c.records, budget.Load())
	}
	c.partition(0, batch(3), time.Unix(101, 0))
	c.partition(0, batch(6), time.Unix(102, 0)) // only 2 of these fit
	if c.records != 5 || c.bytes != 50 || budget.Load() > 0 {
		t.Fatalf("records %d bytes %d budget %d; want 5, 50, <= 0", c.records, c.bytes, budget.Load())
	}
	if !c.lastRecord.Equal(time.Unix(102, 0)) || c.next[0].Load() != 9 {
		t.Fatalf("last record %v next %d", c.lastRecord, c.next[0].Load())
	}
}

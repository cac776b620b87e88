package broker

import (
	"bytes"
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	vlog "github.com/vigilhq/vigil/broker/log"
	"github.com/vigilhq/vigil/controller"
)

// healOnCleanup clears every broker's faults before the cluster stops, so
// a failed test does not leave a controlled shutdown waiting on a
// blackholed peer.
func healOnCleanup(c *testCluster) {
	c.t.Cleanup(func() {
		for _, b := range c.brokers {
			if b != nil {
				b.SetFaults(Faults{})
			}
		}
	})
}

// hwConsumer is a read_uncommitted franz-go consumer of a one-partition
// topic that checks every record it gets against the leader's high
// watermark.
type hwConsumer struct {
	t    *testing.T
	cl   *kgo.Client
	hw   func() int64 // the leader's high watermark now
	seen int
}

// poll polls until ctx ends or the consumer has n records, and fails if a
// record is at or above the high watermark (read after the poll returns:
// the leader's high watermark never goes back, so a record above it now
// was above it when it was served).
func (hc *hwConsumer) poll(ctx context.Context, n int) {
	hc.t.Helper()
	for hc.seen < n && ctx.Err() == nil {
		fs := hc.cl.PollFetches(ctx)
		hw := hc.hw()
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= hw {
				hc.t.Fatalf("a read_uncommitted consumer got offset %d (%q) above the high watermark %d", r.Offset, r.Value, hw)
			}
			if r.Offset != int64(hc.seen) {
				hc.t.Fatalf("consumer got offset %d, want %d", r.Offset, hc.seen)
			}
			hc.seen++
		})
	}
}

// TestClusterConsumersNeverSeeAboveHighWatermark stalls a follower's
// replication (a blackhole) and produces with acks=1: the leader's log
// runs ahead, its high watermark stays where the stalled in-sync follower
// is, and a consumer (franz-go, read_uncommitted) gets nothing above it —
// until the follower catches up (the fault heals) or, the second time,
// until the ISR shrinks without it.
func TestClusterConsumersNeverSeeAboveHighWatermark(t *testing.T) {
	// A long replica.lag.time.max.ms: the stalled follower stays in the
	// ISR until the test removes it.
	c := startCluster(t, 3, staging, func(cfg *Config) { cfg.ReplicaLagTimeMax = time.Minute })
	healOnCleanup(c)
	ctx := testCtx(t)
	adm := kadm.NewClient(c.client())
	if _, err := adm.CreateTopic(ctx, 1, 3, nil, "hw"); err != nil {
		t.Fatal(err)
	}
	if n := len(produceAcked(t, c.client(kgo.RequiredAcks(kgo.AllISRAcks())), "hw", 0, 10)); n != 10 {
		t.Fatalf("%d of 10 acks=all records acknowledged", n)
	}
	c.waitReplicasEqual("hw")
	st := c.partitionState("hw", 0)
	leader := st.Leader
	var stalled, other int32 = -1, -1
	for _, r := range st.Replicas {
		switch {
		case r == leader:
		case stalled < 0:
			stalled = r
		default:
			other = r
		}
	}
	ll := c.brokers[leader].meta.lookup("hw").partition(0).log
	otherLog := c.brokers[other].meta.lookup("hw").partition(0).log
	if ll.HighWatermark() != 10 {
		t.Fatalf("high watermark %d after 10 acks=all records", ll.HighWatermark())
	}
	hc := &hwConsumer{t: t, hw: ll.HighWatermark,
		cl: c.client(kgo.ConsumeTopics("hw"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.FetchMaxWait(200*time.Millisecond))}
	hc.poll(ctx, 10)
	acks1 := c.client(kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	stall := func() {
		t.Helper()
		if err := c.brokers[stalled].SetFaults(Faults{Network: []NetworkFault{{Peer: "replication", Direction: "both", Mode: "blackhole"}}}); err != nil {
			t.Fatal(err)
		}
	}
	// produceAhead produces n acks=1 records and checks they stay
	// invisible: the other follower has them, the leader's high
	// watermark does not move, a raw fetch at the high watermark returns
	// nothing and the consumer gets nothing new in a while of polling.
	produceAhead := func(from, n int) {
		t.Helper()
		hw := ll.HighWatermark()
		for i := from; i < from+n; i++ {
			if err := acks1.ProduceSync(ctx, &kgo.Record{Topic: "hw", Value: []byte("ahead-" + strconv.Itoa(i))}).FirstErr(); err != nil {
				t.Fatalf("acks=1: %v", err)
			}
		}
		waitFor(t, "the unstalled follower to copy the acks=1 records", time.Minute, func() bool {
			return otherLog.EndOffset() == ll.EndOffset()
		})
		if got := ll.HighWatermark(); got != hw || ll.EndOffset() != hw+int64(n) {
			t.Fatalf("leader high watermark %d, log end %d; want %d and %d with a stalled follower in the ISR", got, ll.EndOffset(), hw, hw+int64(n))
		}
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID, req.ReplicaState.ID = -1, -1
		req.MaxBytes, req.MinBytes = 1<<20, 1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = "hw", [16]byte(c.brokers[leader].meta.lookup("hw").id)
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = hw, 1<<20, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		kresp, err := c.client(kgo.SeedBrokers(c.brokers[leader].Addr())).Broker(int(leader)).Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		fp := kresp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
		if fp.ErrorCode != 0 || len(fp.RecordBatches) != 0 || fp.HighWatermark != hw {
			t.Fatalf("a consumer fetch at the high watermark %d: error %d, %d record bytes, high watermark %d", hw, fp.ErrorCode, len(fp.RecordBatches), fp.HighWatermark)
		}
		before := hc.seen
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		hc.poll(wctx, before+n)
		cancel()
		if hc.seen != before {
			t.Fatalf("the consumer got %d records above the high watermark", hc.seen-before)
		}
		if st := c.partitionState("hw", 0); !slices.Contains(st.ISR, stalled) {
			t.Fatalf("the stalled follower left the ISR %v meanwhile; the check above proves nothing", st.ISR)
		}
	}

	// The ISR catches up: the fault heals, the follower fetches, the
	// high watermark reaches the log end and the consumer gets the rest.
	stall()
	produceAhead(10, 20)
	c.brokers[stalled].SetFaults(Faults{})
	hc.poll(ctx, 30)
	if hc.seen != 30 {
		t.Fatalf("consumer has %d of 30 records after the follower caught up", hc.seen)
	}

	// The ISR shrinks: the controller removes the stalled follower and
	// the leader's high watermark moves on without it.
	stall()
	produceAhead(30, 20)
	cc, err := controller.NewClient(controller.ClientConfig{Addrs: []string{c.ctrl.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := cc.RemoveFromISR(ctx, "hw", 0, stalled); err != nil {
		t.Fatal(err)
	}
	hc.poll(ctx, 50)
	if hc.seen != 50 {
		t.Fatalf("consumer has %d of 50 records after the ISR shrank", hc.seen)
	}
	c.brokers[stalled].SetFaults(Faults{})
}

// rawLog returns every batch of l, from its start to its end, as stored.
func rawLog(t *testing.T, l *vlog.Log) []byte {
	t.Helper()
	var out []byte
	for off, end := l.StartOffset(), l.EndOffset(); off < end; {
		info, err := l.Read(nil, off, 1<<20, end)
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Records) == 0 {
			t.Fatalf("read at %d of [%d, %d) returned nothing", off, l.StartOffset(), end)
		}
		for b := info.Records; len(b) > 0; {
			h, err := vlog.ParseBatchHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			off = h.LastOffset() + 1
			b = b[h.Size():]
		}
		out = append(out, info.Records...)
	}
	return out
}

// logValues returns the record values of l by offset.
func logValues(t *testing.T, l *vlog.Log) []string {
	t.Helper()
	var out []string
	if err := readLog(l, func(r *vlog.Record) {
		out = append(out, strconv.FormatInt(r.Offset, 10)+"="+string(r.Value))
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestClusterDivergentTailTruncated makes a leader append acks=1 records
// its followers never get (its replication blackholed), moves leadership
// away (the quorum fences it), produces on the new leader, and heals: the
// old leader's divergent tail is truncated (the Fetch protocol's diverging
// epoch) and its log becomes byte for byte the new leader's.
func TestClusterDivergentTailTruncated(t *testing.T) {
	// A long replica.lag.time.max.ms: the followers stay in the ISR
	// while they cannot fetch, so fencing the leader elects one of them.
	c := startCluster(t, 3, staging, func(cfg *Config) { cfg.ReplicaLagTimeMax = time.Minute })
	healOnCleanup(c)
	ctx := testCtx(t)
	all := c.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if _, err := kadm.NewClient(all).CreateTopic(ctx, 1, 3, nil, "div"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := all.ProduceSync(ctx, &kgo.Record{Topic: "div", Value: []byte("common-" + strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c.waitReplicasEqual("div")
	st := c.partitionState("div", 0)
	old := st.Leader
	ob := c.brokers[old]
	ol := ob.meta.lookup("div").partition(0).log

	// The leader's followers can no longer fetch from it; acks=1 writes
	// land on it alone.
	if err := ob.SetFaults(Faults{Network: []NetworkFault{{Peer: "replication", Direction: "both", Mode: "blackhole"}}}); err != nil {
		t.Fatal(err)
	}
	acks1 := c.client(kgo.SeedBrokers(ob.Addr()), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	for i := 0; i < 5; i++ {
		if err := acks1.ProduceSync(ctx, &kgo.Record{Topic: "div", Value: []byte("divergent-" + strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatalf("acks=1 on the old leader: %v", err)
		}
	}
	if ol.EndOffset() != 15 || ol.HighWatermark() != 10 {
		t.Fatalf("old leader: log end %d, high watermark %d; want 15 and 10", ol.EndOffset(), ol.HighWatermark())
	}

	// Fence it: one of the in-sync followers leads from offset 10.
	cc, err := controller.NewClient(controller.ClientConfig{Addrs: []string{c.ctrl.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := cc.Fence(ctx, old); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new leader of div-0", time.Minute, func() bool {
		st := c.partitionState("div", 0)
		return st.Leader >= 0 && st.Leader != old
	})
	newLeader := c.partitionState("div", 0).Leader
	// Produce only once the old leader knows it no longer leads: a
	// write it took meanwhile would be one more divergent record.
	waitFor(t, "the old leader to learn of the new leader", time.Minute, func() bool {
		return ob.meta.lookup("div").partition(0).leaderID() == newLeader
	})
	for i := 0; i < 7; i++ {
		if err := all.ProduceSync(ctx, &kgo.Record{Topic: "div", Value: []byte("new-" + strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatalf("acks=all on the new leader: %v", err)
		}
	}
	nl := c.brokers[newLeader].meta.lookup("div").partition(0).log
	if nl.EndOffset() != 17 {
		t.Fatalf("new leader's log end %d, want 17", nl.EndOffset())
	}
	if ol.EndOffset() != 15 {
		t.Fatalf("old leader's log end %d before healing, want 15 (its divergent tail)", ol.EndOffset())
	}

	// Heal: the old leader follows, truncates its divergent tail and
	// copies the new leader's records.
	ob.SetFaults(Faults{})
	if _, err := cc.Unfence(ctx, old); err != nil {
		t.Fatal(err)
	}
	c.waitReplicasEqual("div")
	waitFor(t, "the old leader back in the ISR", time.Minute, func() bool {
		return slices.Contains(c.partitionState("div", 0).ISR, old)
	})
	want := rawLog(t, nl)
	for _, r := range c.partitionState("div", 0).Replicas {
		rl := c.brokers[r].meta.lookup("div").partition(0).log
		if got := rawLog(t, rl); !bytes.Equal(got, want) {
			t.Fatalf("broker %d's log (%d bytes: %v) differs from the leader's (%d bytes: %v)",
				r, len(got), logValues(t, rl), len(want), logValues(t, nl))
		}
	}
	values := logValues(t, nl)
	if len(values) != 17 {
		t.Fatalf("the log holds %d records, want 17: %v", len(values), values)
	}
	for i, v := range values {
		want := strconv.Itoa(i) + "=common-" + strconv.Itoa(i)
		if i >= 10 {
			want = strconv.Itoa(i) + "=new-" + strconv.Itoa(i-10)
		}
		if v != want {
			t.Fatalf("offset %d holds %q, want %q (divergent records must be gone)", i, v, want)
		}
	}
}

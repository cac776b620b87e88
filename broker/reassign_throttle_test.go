package broker

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// produceSized produces n records of about size bytes each (values
// "<i>:xxx...") with the client's acks and returns the values acknowledged.
func produceSized(t *testing.T, cl *kgo.Client, topic string, from, n, size int) map[string]bool {
	t.Helper()
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	ctx := testCtx(t)
	for i := from; i < from+n; i++ {
		v := strconv.Itoa(i) + ":"
		v += strings.Repeat("x", max(0, size-len(v)))
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(v)}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err == nil {
				mu.Lock()
				acked[v] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return acked
}

// createAssigned creates topic with one partition on the given replicas.
func createAssigned(t *testing.T, ctx context.Context, cl *kgo.Client, topic string, replicas []int32, configs map[string]string) {
	t.Helper()
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = topic, -1, -1
	ct.ReplicaAssignment = []kmsg.CreateTopicsRequestTopicReplicaAssignment{{Partition: 0, Replicas: replicas}}
	for k, v := range configs {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, kmsgStr(v)
		ct.Configs = append(ct.Configs, c)
	}
	create.Topics = append(create.Topics, ct)
	cr, err := create.RequestWith(ctx, cl)
	if err != nil || cr.Topics[0].ErrorCode != 0 {
		t.Fatalf("creating %s on %v: %v %v", topic, replicas, err, cr)
	}
}

// TestClusterReassignmentThrottle moves a partition from brokers {0,1} to
// {1,2} with the leader's reassignment throttle set low. While it is
// throttled, the bytes the leader sends to the adding replica (broker 2)
// stay within the throttle's budget for the time elapsed, acks=all writes
// go on (the in-sync follower, broker 1, is never throttled and keeps up)
// and the reassignment cannot complete; once the throttle is lifted it
// completes, every byte the new replica copied was accounted to the
// throttle, and every acknowledged record is readable.
func TestClusterReassignmentThrottle(t *testing.T) {
	const (
		rate     = 8 << 10 // bytes per second while throttled
		batchMax = 16 << 10
	)
	c := startCluster(t, 3, func(cfg *Config) { cfg.ReplicaReassignmentThrottleBytesPerSecond = rate })
	cl := c.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(batchMax))
	ctx := testCtx(t)
	createAssigned(t, ctx, cl, "thr", []int32{0, 1}, map[string]string{"min.insync.replicas": "2"})
	acked := produceSized(t, cl, "thr", 0, 400, 1000)
	if len(acked) != 400 {
		t.Fatalf("only %d of 400 records acknowledged", len(acked))
	}
	c.waitReplicasEqual("thr")
	st := c.partitionState("thr", 0)
	if st.Leader != 0 {
		t.Fatalf("leader of thr-0 is %d, want the preferred replica 0", st.Leader)
	}
	lb := c.brokers[0]
	leaderLog := lb.meta.lookup("thr").partition(0).log
	sizeAtStart := leaderLog.Size()
	throttled := func() float64 { return metricValue(t, lb, "vigil_replica_throttled_bytes_total", nil) }

	start := time.Now()
	adm := kadm.NewClient(cl)
	req := kadm.AlterPartitionAssignmentsReq{}
	req.Assign("thr", 0, []int32{1, 2})
	res, err := adm.AlterPartitionAssignments(ctx, req)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the leader to send throttled bytes to broker 2", time.Minute, func() bool { return throttled() > 0 })

	// acks=all goes on while broker 2 copies slowly: the ISR is {0,1}
	// and broker 1 keeps up.
	more := produceSized(t, cl, "thr", 400, 50, 1000)
	if len(more) != 50 {
		t.Fatalf("only %d of 50 acks=all records acknowledged during a throttled reassignment", len(more))
	}
	for v := range more {
		acked[v] = true
	}
	follower1 := c.brokers[1].meta.lookup("thr").partition(0).log
	waitFor(t, "in-sync broker 1 to keep up with the leader", time.Minute, func() bool {
		return follower1.EndOffset() == leaderLog.EndOffset()
	})

	// The throttle's budget, measured over a window at least as long as
	// the one the leader saw: rate × time + the bucket's burst + one batch
	// sent whole past a grant (batches are at most batchMax plus framing).
	sent := throttled()
	elapsed := time.Since(start)
	budget := rate*elapsed.Seconds() + rate*replicaThrottleBurst.Seconds() + batchMax + 1024
	if sent > budget {
		t.Fatalf("the leader sent %.0f throttled bytes in %v, more than the budget of %.0f at %d bytes/s", sent, elapsed, budget, rate)
	}
	st = c.partitionState("thr", 0)
	if !st.Reassigning() || slices.Contains(st.ISR, 2) {
		// 400 KiB at 8 KiB/s takes about 50 s: this means broker 2
		// was not throttled.
		t.Fatalf("the reassignment finished under a throttle of %d bytes/s after %.0f throttled bytes (log %d bytes): %+v", rate, sent, sizeAtStart, st)
	}
	waitFor(t, "a fetch of broker 2 held back by the throttle", time.Minute, func() bool {
		return metricValue(t, lb, "vigil_replica_throttled_reads_total", nil) > 0
	})
	t.Logf("throttled: %.0f bytes in %v (budget %.0f), log %d bytes", sent, elapsed, budget, sizeAtStart)

	// Lift the throttle: the reassignment completes. Nothing is produced
	// any more, so the log's size now is its final size.
	sizeAtEnd := leaderLog.Size()
	lb.SetReplicaReassignmentThrottle(0)
	waitFor(t, "the reassignment to complete", time.Minute, func() bool {
		st := c.partitionState("thr", 0)
		return !st.Reassigning() && slices.Equal(sorted(st.Replicas), []int32{1, 2}) && len(st.ISR) == 2
	})
	// Broker 2 copied the whole log before it joined the ISR, all of it
	// through the throttle's accounting; broker 1's replication was never
	// counted (it would double the total).
	total := throttled()
	if total < float64(sizeAtStart) || total > float64(sizeAtEnd) {
		t.Fatalf("throttled bytes %.0f, want between the log's size at the start (%d) and at the end (%d)", total, sizeAtStart, sizeAtEnd)
	}
	c.waitReplicasEqual("thr")
	readAll(t, c, "thr", acked)
}

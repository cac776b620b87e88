package broker

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/vigilhq/vigil/controller"
)

// testCluster is a controller quorum of one and n brokers in the test
// process, on loopback ports.
type testCluster struct {
	t       *testing.T
	ctrl    *controller.Server
	dirs    []string
	brokers []*Broker // nil while stopped
	done    []chan error
	mutate  func(*Config)
}

func startCluster(t *testing.T, n int, mutate ...func(*Config)) *testCluster {
	t.Helper()
	ctrl, err := controller.NewServer(controller.ServerConfig{
		ID: "1", DataDir: filepath.Join(t.TempDir(), "controller"),
		Listen: "127.0.0.1:0", RaftListen: "127.0.0.1:0",
		SessionTimeout:       2 * time.Second,
		ValidateTopicConfig:  ValidateTopicConfig,
		RaftHeartbeatTimeout: 200 * time.Millisecond, RaftElectionTimeout: 200 * time.Millisecond,
		LeaderRebalanceInterval: -1,
	}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, ctrl: ctrl}
	c.mutate = func(cfg *Config) {
		cfg.Controllers = []string{ctrl.Addr()}
		cfg.BrokerHeartbeatInterval = 200 * time.Millisecond
		cfg.ReplicaLagTimeMax = 2 * time.Second
		cfg.OffsetsTopicPartitions = 3
		cfg.GroupInitialRebalanceDelay = 100 * time.Millisecond
		cfg.GroupMinSessionTimeout = 500 * time.Millisecond
		cfg.ShutdownTimeout = 10 * time.Second
		for _, m := range mutate {
			m(cfg)
		}
	}
	for i := 0; i < n; i++ {
		c.dirs = append(c.dirs, t.TempDir())
		c.brokers = append(c.brokers, nil)
		c.done = append(c.done, nil)
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); c.start(i) }(i)
	}
	wg.Wait()
	t.Cleanup(func() {
		for i := range c.brokers {
			c.stop(i)
		}
		ctrl.Close()
	})
	return c
}

// start starts broker i (node id i) on its data dir.
func (c *testCluster) start(i int) *Broker {
	cfg := DefaultConfig()
	cfg.NodeID = int32(i)
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = c.dirs[i]
	c.mutate(&cfg)
	b, err := New(cfg, testLogger().With("node", i))
	if err != nil {
		c.t.Errorf("starting broker %d: %v", i, err)
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve() }()
	select {
	case <-b.Joined():
	case err := <-done:
		c.t.Errorf("broker %d stopped while joining: %v", i, err)
		return nil
	}
	c.brokers[i], c.done[i] = b, done
	return b
}

// stop stops broker i cleanly (controlled shutdown).
func (c *testCluster) stop(i int) {
	b := c.brokers[i]
	if b == nil {
		return
	}
	c.brokers[i] = nil
	b.Close()
	if err := <-c.done[i]; err != nil {
		c.t.Errorf("broker %d: %v", i, err)
	}
}

// seeds returns the addresses of the running brokers.
func (c *testCluster) seeds() []string {
	var out []string
	for _, b := range c.brokers {
		if b != nil {
			out = append(out, b.Addr())
		}
	}
	return out
}

func (c *testCluster) client(opts ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.seeds()...), kgo.MetadataMinAge(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// partitionState returns the controller's state of topic's partition.
func (c *testCluster) partitionState(topic string, p int) *controller.Partition {
	img, _ := c.ctrl.Image()
	t := img.Topics[topic]
	if t == nil || p >= len(t.Partitions) {
		return nil
	}
	return t.Partitions[p]
}

// waitImages waits until every running broker's image has the controller's
// current state of every partition of topic: clients that ask any broker
// then find the topic wherever metadata sends them.
func (c *testCluster) waitImages(topic string) {
	c.t.Helper()
	waitFor(c.t, "every broker's image of "+topic+" current", time.Minute, func() bool {
		img, _ := c.ctrl.Image()
		t := img.Topics[topic]
		if t == nil {
			return false
		}
		for _, b := range c.brokers {
			if b == nil {
				continue
			}
			bt := b.meta.lookup(topic)
			for i, ps := range t.Partitions {
				if bt == nil || bt.partition(int32(i)) == nil {
					return false
				}
				st := bt.partition(int32(i)).state.Load()
				if st == nil || st.LeaderEpoch != ps.LeaderEpoch || st.PartitionEpoch != ps.PartitionEpoch {
					return false
				}
			}
		}
		return true
	})
}

// waitReplicasEqual waits until every replica of every partition of topic
// has the same log end offset and high watermark as its leader.
func (c *testCluster) waitReplicasEqual(topic string) {
	c.t.Helper()
	defer func() {
		if c.t.Failed() {
			c.t.Log(c.describe(topic))
		}
	}()
	waitFor(c.t, "replicas of "+topic+" in sync", time.Minute, func() bool {
		img, _ := c.ctrl.Image()
		t := img.Topics[topic]
		if t == nil {
			return false
		}
		for i, ps := range t.Partitions {
			var end, hw int64 = -1, -1
			for _, r := range ps.Replicas {
				b := c.brokers[r]
				if b == nil {
					continue
				}
				bt := b.meta.lookup(topic)
				if bt == nil || bt.partition(int32(i)) == nil || bt.partition(int32(i)).log == nil {
					return false
				}
				l := bt.partition(int32(i)).log
				if end == -1 {
					end, hw = l.EndOffset(), l.HighWatermark()
				} else if l.EndOffset() != end || l.HighWatermark() != hw {
					return false
				}
			}
			if hw != end {
				return false
			}
		}
		return true
	})
}

// describe lists every replica's log end and high watermark.
func (c *testCluster) describe(topic string) string {
	img, _ := c.ctrl.Image()
	t := img.Topics[topic]
	if t == nil {
		return "no topic " + topic
	}
	out := ""
	for i, ps := range t.Partitions {
		out += fmt.Sprintf("\n%s-%d leader %d epoch %d isr %v:", topic, i, ps.Leader, ps.LeaderEpoch, ps.ISR)
		for _, r := range ps.Replicas {
			b := c.brokers[r]
			if b == nil {
				out += fmt.Sprintf(" [%d down]", r)
				continue
			}
			p := b.meta.lookup(topic).partition(int32(i))
			if p == nil || p.log == nil {
				out += fmt.Sprintf(" [%d no log]", r)
				continue
			}
			le, _ := p.log.LatestEpoch()
			out += fmt.Sprintf(" [%d end %d hw %d epoch %d]", r, p.log.EndOffset(), p.log.HighWatermark(), le)
		}
	}
	return out
}

// produceAcked produces n records (values from..from+n-1) with acks=all and
// an idempotent producer, tolerating leader changes, and returns the values
// acknowledged.
func produceAcked(t *testing.T, cl *kgo.Client, topic string, from, n int) map[string]bool {
	t.Helper()
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	ctx := testCtx(t)
	for i := from; i < from+n; i++ {
		wg.Add(1)
		v := strconv.Itoa(i)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i % 13)), Value: []byte(v)}, func(_ *kgo.Record, err error) {
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

// readAll consumes topic from the start until it has read every value in
// want, and checks no value is read twice within a partition.
func readAll(t *testing.T, c *testCluster, topic string, want map[string]bool) {
	t.Helper()
	cl := c.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := testCtx(t)
	seen := map[string]bool{}
	for missing := len(want); missing > 0; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d acknowledged records before the deadline", len(want)-missing, len(want))
		}
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			if seen[v] {
				t.Fatalf("record %s read twice (offset %d of partition %d)", v, r.Offset, r.Partition)
			}
			seen[v] = true
			if want[v] {
				missing--
			}
		})
	}
}

func TestClusterReplicatesAndSurvivesLeaderLoss(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.client(kgo.RequiredAcks(kgo.AllISRAcks()))
	adm := kadm.NewClient(cl)
	ctx := testCtx(t)
	if _, err := adm.CreateTopic(ctx, 6, 3, map[string]*string{"min.insync.replicas": kmsgStr("2")}, "rep"); err != nil {
		t.Fatal(err)
	}
	acked := produceAcked(t, cl, "rep", 0, 3000)
	if len(acked) != 3000 {
		t.Fatalf("only %d of 3000 records acknowledged with every broker up", len(acked))
	}
	c.waitReplicasEqual("rep")

	// Stop the leader of partition 0: a follower takes over; everything
	// acknowledged stays readable and writes go on.
	leader := c.partitionState("rep", 0).Leader
	c.stop(int(leader))
	waitFor(t, "a new leader of rep-0", time.Minute, func() bool {
		st := c.partitionState("rep", 0)
		return st.Leader >= 0 && st.Leader != leader
	})
	more := produceAcked(t, cl, "rep", 3000, 1000)
	if len(more) != 1000 {
		t.Fatalf("only %d of 1000 records acknowledged with one broker down", len(more))
	}
	for v := range more {
		acked[v] = true
	}
	readAll(t, c, "rep", acked)

	// The broker comes back, catches up and rejoins the ISRs.
	c.start(int(leader))
	c.waitReplicasEqual("rep")
	waitFor(t, "the restarted broker back in every ISR", time.Minute, func() bool {
		for p := 0; p < 6; p++ {
			if len(c.partitionState("rep", p).ISR) != 3 {
				return false
			}
		}
		return true
	})
}

func TestClusterMinInsyncReplicas(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(2), kgo.RecordDeliveryTimeout(5*time.Second))
	adm := kadm.NewClient(cl)
	ctx := testCtx(t)
	if _, err := adm.CreateTopic(ctx, 1, 3, map[string]*string{"min.insync.replicas": kmsgStr("2")}, "minisr"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "minisr", Value: []byte("ok")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Two followers down: the ISR shrinks to the leader, below
	// min.insync.replicas, and acks=all writes are refused.
	leader := c.partitionState("minisr", 0).Leader
	for i := range c.brokers {
		if int32(i) != leader {
			c.stop(i)
		}
	}
	waitFor(t, "the ISR to shrink to the leader", time.Minute, func() bool {
		return len(c.partitionState("minisr", 0).ISR) == 1
	})
	lb := c.brokers[leader]
	waitFor(t, "the leader's replication metrics", time.Minute, func() bool {
		return metricValue(t, lb, "vigil_partition_under_min_isr_partitions", nil) == 1 &&
			metricValue(t, lb, "vigil_partition_under_replicated_partitions", nil) == 1
	})
	err := cl.ProduceSync(ctx, &kgo.Record{Topic: "minisr", Value: []byte("refused")}).FirstErr()
	if !errors.Is(err, kerr.NotEnoughReplicas) && !errors.Is(err, kerr.NotEnoughReplicasAfterAppend) {
		t.Fatalf("acks=all with one in-sync replica of min.insync.replicas=2: %v", err)
	}
	// acks=1 still works.
	cl1 := c.client(kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	if err := cl1.ProduceSync(ctx, &kgo.Record{Topic: "minisr", Value: []byte("acks1")}).FirstErr(); err != nil {
		t.Fatalf("acks=1: %v", err)
	}
}

func TestClusterConsumerGroupFollowsCoordinator(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.client()
	adm := kadm.NewClient(cl)
	ctx := testCtx(t)
	if _, err := adm.CreateTopic(ctx, 3, 3, nil, "gtopic"); err != nil {
		t.Fatal(err)
	}
	acked := produceAcked(t, c.client(kgo.RequiredAcks(kgo.AllISRAcks())), "gtopic", 0, 300)
	_ = acked
	commit := func(at int64) {
		t.Helper()
		if err := adm.CommitAllOffsets(ctx, "g1", kadm.OffsetsFromRecords(kgo.Record{Topic: "gtopic", Partition: 0, Offset: at - 1})); err != nil {
			t.Fatal(err)
		}
	}
	commit(100)
	// Stop the coordinator's broker: the offsets partition moves, and the
	// committed offset is still there.
	co := adm.FindGroupCoordinators(ctx, "g1")
	if co["g1"].Err != nil {
		t.Fatal(co["g1"].Err)
	}
	coordinator := co["g1"].NodeID
	c.stop(int(coordinator))
	var at int64
	waitFor(t, "the committed offset from the new coordinator", time.Minute, func() bool {
		adm2 := kadm.NewClient(c.client())
		offs, err := adm2.FetchOffsets(ctx, "g1")
		if err != nil {
			return false
		}
		o, ok := offs.Lookup("gtopic", 0)
		at = o.At
		return ok && o.Err == nil
	})
	if at != 100 {
		t.Fatalf("committed offset after the coordinator moved: %d, want 100", at)
	}
}

func kmsgStr(s string) *string { return &s }

// TestClusterReassignAndElect moves a partition to other brokers with
// AlterPartitionReassignments (the data follows, the old replica's
// directory goes) and brings leadership back to the preferred replica
// with ElectLeaders.
func TestClusterReassignAndElect(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.client(kgo.RequiredAcks(kgo.AllISRAcks()))
	adm := kadm.NewClient(cl)
	ctx := testCtx(t)
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = "mv", -1, -1
	ct.ReplicaAssignment = []kmsg.CreateTopicsRequestTopicReplicaAssignment{{Partition: 0, Replicas: []int32{0, 1}}}
	create.Topics = append(create.Topics, ct)
	cr, err := create.RequestWith(ctx, cl)
	if err != nil || cr.Topics[0].ErrorCode != 0 {
		t.Fatalf("creating mv on brokers 0 and 1: %v %v", err, cr)
	}
	acked := produceAcked(t, cl, "mv", 0, 500)

	var res kadm.AlterPartitionAssignmentsResponses
	req := kadm.AlterPartitionAssignmentsReq{}
	req.Assign("mv", 0, []int32{1, 2})
	res, err = adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reassignment to complete", time.Minute, func() bool {
		st := c.partitionState("mv", 0)
		return !st.Reassigning() && slices.Equal(sorted(st.Replicas), []int32{1, 2}) && len(st.ISR) == 2
	})
	waitFor(t, "broker 0 to drop its replica", time.Minute, func() bool {
		p := c.brokers[0].meta.lookup("mv").partition(0)
		return p != nil && p.log == nil
	})
	c.waitReplicasEqual("mv")
	readAll(t, c, "mv", acked)
	list, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{"mv": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Fatalf("reassignments left: %v", list)
	}

	// Leadership away from the preferred replica and back.
	pref := c.partitionState("mv", 0).Replicas[0]
	c.stop(int(pref))
	waitFor(t, "a leader other than the preferred one", time.Minute, func() bool {
		l := c.partitionState("mv", 0).Leader
		return l >= 0 && l != pref
	})
	c.start(int(pref))
	waitFor(t, "the preferred replica back in the ISR", time.Minute, func() bool {
		return slices.Contains(c.partitionState("mv", 0).ISR, pref)
	})
	el, err := adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, kadm.TopicsSet{"mv": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range el {
		for _, r := range ps {
			if r.Err != nil && !errors.Is(r.Err, kerr.ElectionNotNeeded) {
				t.Fatalf("electing the preferred leader: %v", r.Err)
			}
		}
	}
	if l := c.partitionState("mv", 0).Leader; l != pref {
		t.Fatalf("leader after a preferred election: %d, want %d", l, pref)
	}
}

// startStallableCluster starts two staging brokers (faults can be
// injected) whose followers stay in the ISR for minutes without fetching,
// with topic (RF 2) laid out on both.
func startStallableCluster(t *testing.T, topic string, partitions int32) *testCluster {
	t.Helper()
	c := startCluster(t, 2, staging, func(cfg *Config) { cfg.ReplicaLagTimeMax = 5 * time.Minute })
	if _, err := kadm.NewClient(c.client()).CreateTopic(testCtx(t), partitions, 2, nil, topic); err != nil {
		t.Fatal(err)
	}
	c.waitReplicasEqual(topic)
	return c
}

// TestPipelinedAcksAll: acks=all produce requests pipelined on one
// connection are appended while the first waits for its followers (the
// connection is not blocked by the wait), and answered in order once the
// followers have them.
func TestPipelinedAcksAll(t *testing.T) {
	c := startStallableCluster(t, "pipe", 1)
	st := c.partitionState("pipe", 0)
	leader := c.brokers[st.Leader]
	follower := c.brokers[1-st.Leader]
	p := leader.meta.lookup("pipe").partitions[0]

	// The follower stops fetching: acks=all appends wait.
	if err := follower.SetFaults(Faults{Network: []NetworkFault{{Peer: "replication", Direction: "both", Mode: "blackhole"}}}); err != nil {
		t.Fatal(err)
	}
	raw := dialRaw(t, leader)
	type answer struct {
		corr int32
		body []byte
		err  error
	}
	answers := make(chan answer, 3)
	go func() {
		for i := 0; i < 3; i++ {
			corr, body, err := raw.recv(true)
			answers <- answer{corr, body, err}
			if err != nil {
				return
			}
		}
	}()
	for i := int32(0); i < 3; i++ {
		raw.send(produceReq("pipe", 0, makeBatch(-1, -1, -1, 2, []byte("v"))), 10+i)
	}
	waitFor(t, "all three pipelined batches appended", 30*time.Second, func() bool { return p.log.EndOffset() == 6 })
	select {
	case a := <-answers:
		t.Fatalf("answer %d (err %v) before the follower had the records", a.corr, a.err)
	default:
	}
	if hw := p.log.HighWatermark(); hw >= 6 {
		t.Fatalf("high watermark %d with the follower cut off", hw)
	}

	follower.SetFaults(Faults{})
	for i := int32(0); i < 3; i++ {
		var a answer
		select {
		case a = <-answers:
		case <-time.After(time.Minute):
			t.Fatalf("answer %d never came", i)
		}
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.corr != 10+i {
			t.Fatalf("answer %d has correlation id %d: out of order", i, a.corr)
		}
		resp := kmsg.NewPtrProduceResponse()
		resp.SetVersion(9)
		if err := resp.ReadFrom(a.body); err != nil {
			t.Fatal(err)
		}
		rp := resp.Topics[0].Partitions[0]
		if rp.ErrorCode != 0 || rp.BaseOffset != int64(2*i) {
			t.Fatalf("answer %d: error %d, base offset %d; want 0, %d", i, rp.ErrorCode, rp.BaseOffset, 2*i)
		}
	}
}

// TestAcksAllTimesOut: an acks=all produce whose records the follower does
// not fetch is answered with REQUEST_TIMED_OUT for every partition once
// the request's timeout passes (the partitions share one timer), and the
// connection goes on serving.
func TestAcksAllTimesOut(t *testing.T) {
	c := startStallableCluster(t, "slow", 4)
	var led []int32 // partitions led by broker 0
	for i := 0; i < 4; i++ {
		if c.partitionState("slow", i).Leader == 0 {
			led = append(led, int32(i))
		}
	}
	if len(led) < 2 {
		t.Fatalf("broker 0 leads partitions %v; want two (leaders are balanced)", led)
	}
	if err := c.brokers[1].SetFaults(Faults{Network: []NetworkFault{{Peer: "replication", Direction: "both", Mode: "blackhole"}}}); err != nil {
		t.Fatal(err)
	}
	req := produceReq("slow", led[0], makeBatch(-1, -1, -1, 1, []byte("a")))
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = led[1], makeBatch(-1, -1, -1, 1, []byte("b"))
	req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
	req.TimeoutMillis = 300
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	resp.SetVersion(req.Version)
	raw := dialRaw(t, c.brokers[0])
	raw.roundTrip(req, resp)
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != kerr.RequestTimedOut.Code {
			t.Errorf("partition %d: error %v, want REQUEST_TIMED_OUT", p.Partition, kerr.ErrorForCode(p.ErrorCode))
		}
	}
	// The connection still serves: an acks=1 produce is answered.
	req = produceReq("slow", led[0], makeBatch(-1, -1, -1, 1, []byte("c")))
	req.Acks = 1
	resp = req.ResponseKind().(*kmsg.ProduceResponse)
	resp.SetVersion(req.Version)
	raw.roundTrip(req, resp)
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("acks=1 produce after the timeout: %v", kerr.ErrorForCode(code))
	}
}

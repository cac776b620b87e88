package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterKeepsAcknowledgedWritesAcrossKills is the cluster's
// durability test with real, separate processes: 3 controllers and 3
// brokers. An idempotent franz-go producer writes sequence-numbered
// records with acks=all to a topic with replication factor 3 and
// min.insync.replicas=2 while the test, round after round, kill -9s the
// leader of a partition (and restarts it on the same data directory and
// port once the controllers have moved its leaderships, then waits until
// it is back in every ISR) and kill -9s the active controller (and
// restarts it once another controller leads). The producer must make
// progress after each kill. Then every partition is read back from the
// start: every acknowledged record must be there exactly once, and each
// partition's records must be in the order they were produced.
func TestClusterKeepsAcknowledgedWritesAcrossKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills six processes for about a minute")
	}
	const (
		topic      = "durable"
		partitions = 3
		rounds     = 5
	)
	c := startProcCluster(t, procClusterConfig{
		controllers: 3, brokers: 3, sessionTimeout: 2 * time.Second,
		brokerFlags: []string{"--broker-heartbeat-interval", "200ms", "--replica-lag-time-max", "3s",
			"--offsets-topic-num-partitions", "3", "--offsets-topic-replication-factor", "3"},
	})
	c.createTopic(topic, partitions, 3, map[string]string{"min.insync.replicas": "2"})
	c.waitFullISR(topic, time.Minute)

	prod := startSeqProducer(t, c, topic, partitions)
	brokerKills, controllerKills := 0, 0
	prod.progress(500, "the start")
	for round := 0; round < rounds; round++ {
		// kill -9 the leader of a partition; the controllers fence it
		// when its session expires and elect a leader from the ISR.
		part := round % partitions
		var victim int
		pollUntil(t, fmt.Sprintf("a leader of %s-%d", topic, part), time.Minute, func() bool {
			st := c.partitionState(topic, part)
			if st == nil || st.Leader < 0 {
				return false
			}
			victim = int(st.Leader)
			return true
		})
		c.killBroker(victim, syscall.SIGKILL)
		brokerKills++
		t.Logf("round %d: kill -9 broker %d, leader of %s-%d (%d records acknowledged so far)", round, victim, topic, part, prod.ackedNow())
		pollUntil(t, fmt.Sprintf("a new leader of %s-%d", topic, part), time.Minute, func() bool {
			st := c.partitionState(topic, part)
			return st != nil && st.Leader >= 0 && st.Leader != int32(victim)
		})
		prod.progress(300, fmt.Sprintf("kill -9 of broker %d", victim))
		// It restarts on the same data dir and port and catches up.
		c.startBroker(victim)
		c.waitFullISR(topic, time.Minute)
		prod.progress(300, fmt.Sprintf("the restart of broker %d", victim))

		// kill -9 the active controller; another one takes over.
		ctrl := c.waitQuorumLeader(-1)
		c.killController(ctrl, syscall.SIGKILL)
		controllerKills++
		t.Logf("round %d: kill -9 controller %d, the active one (%d records acknowledged so far)", round, ctrl+1, prod.ackedNow())
		c.waitQuorumLeader(ctrl)
		prod.progress(300, fmt.Sprintf("kill -9 of controller %d", ctrl+1))
		c.startController(ctrl)
	}
	total := prod.finish()
	read := verifySeq(t, c, topic, partitions, prod)
	t.Logf("%d broker kills (kill -9 of a partition leader), %d controller kills (kill -9 of the active controller); %d records acknowledged and checked, %d read back (%d unacknowledged but written), every acknowledged record exactly once and in order",
		brokerKills, controllerKills, total, read, read-total)
}

// seqProducer is an idempotent acks=all producer writing records
// "<partition>:<sequence>" to every partition of a topic in turn, as fast
// as it can with at most 512 records in flight, and recording which were
// acknowledged. franz-go's defaults retry without limit, so a record fails
// only if something is badly wrong; the client's log goes into the failure
// report.
type seqProducer struct {
	t        *testing.T
	cl       *kgo.Client
	stop     chan struct{}
	stopped  chan struct{}
	dataLoss atomic.Int32
	log      lockedBuffer

	mu       sync.Mutex
	acked    []map[int]bool
	nAcked   int
	sent     int
	failed   int
	firstErr error
}

func startSeqProducer(t *testing.T, c *procCluster, topic string, partitions int) *seqProducer {
	t.Helper()
	sp := &seqProducer{t: t, stop: make(chan struct{}), stopped: make(chan struct{})}
	for range partitions {
		sp.acked = append(sp.acked, map[int]bool{})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokerAddr...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(2*time.Millisecond), kgo.MetadataMinAge(200*time.Millisecond),
		kgo.ProducerOnDataLossDetected(func(string, int32) { sp.dataLoss.Add(1) }),
		kgo.WithLogger(kgo.BasicLogger(&sp.log, kgo.LogLevelInfo, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sp.cl = cl
	t.Cleanup(cl.Close)
	t.Cleanup(func() {
		if t.Failed() {
			lines := strings.Split(sp.log.String(), "\n")
			if len(lines) > 300 {
				lines = lines[len(lines)-300:]
			}
			t.Logf("==== producer log (end) ====\n%s", strings.Join(lines, "\n"))
		}
	})
	go sp.run(partitions)
	return sp
}

func (sp *seqProducer) run(partitions int) {
	defer close(sp.stopped)
	inflight := make(chan struct{}, 512)
	next := make([]int, partitions)
	for i := 0; ; i++ {
		select {
		case <-sp.stop:
			return
		case inflight <- struct{}{}:
		}
		p := i % partitions
		seq := next[p]
		next[p]++
		sp.mu.Lock()
		sp.sent++
		sp.mu.Unlock()
		r := &kgo.Record{Partition: int32(p), Value: []byte(strconv.Itoa(p) + ":" + strconv.Itoa(seq))}
		sp.cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
			<-inflight
			sp.mu.Lock()
			defer sp.mu.Unlock()
			if err != nil {
				sp.failed++
				if sp.firstErr == nil {
					sp.firstErr = err
				}
				return
			}
			sp.acked[p][seq] = true
			sp.nAcked++
		})
	}
}

func (sp *seqProducer) ackedNow() int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.nAcked
}

// progress waits until n more records are acknowledged, failing the test
// after a minute.
func (sp *seqProducer) progress(n int, after string) {
	sp.t.Helper()
	from := sp.ackedNow()
	deadline := time.Now().Add(time.Minute)
	for sp.ackedNow() < from+n {
		if time.Now().After(deadline) {
			sp.t.Fatalf("after %s: only %d records acknowledged in a minute", after, sp.ackedNow()-from)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finish stops producing, waits for every buffered record to be delivered
// and returns the number acknowledged. It fails the test if a record
// failed or the client detected data loss.
func (sp *seqProducer) finish() int {
	t := sp.t
	t.Helper()
	close(sp.stop)
	<-sp.stopped
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	err := sp.cl.Flush(ctx)
	cancel()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if err != nil {
		t.Fatalf("the producer could not deliver what it buffered within a minute: %v (%d of %d acknowledged)", err, sp.nAcked, sp.sent)
	}
	if n := sp.dataLoss.Load(); n > 0 {
		t.Errorf("the producer detected data loss %d times (OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID)", n)
	}
	if sp.failed > 0 {
		t.Errorf("%d records failed to produce (first: %v); with unlimited retries none should", sp.failed, sp.firstErr)
	}
	return sp.nAcked
}

// verifySeq reads every partition of topic from the start to its end
// offset and checks that every record sp acknowledged is there exactly
// once and that each partition's sequence numbers increase. It returns
// the number of records read.
func verifySeq(t *testing.T, c *procCluster, topic string, partitions int, sp *seqProducer) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(c.brokerAddr...))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	ends, err := kadm.NewClient(admCl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	offsets := map[int32]kgo.Offset{}
	end := make([]int64, partitions)
	last := make([]int64, partitions)
	prev := make([]int, partitions)
	seen := make([]map[int]bool, partitions)
	for p := range partitions {
		o, ok := ends.Lookup(topic, int32(p))
		if !ok || o.Err != nil {
			t.Fatalf("end offset of %s-%d: %v", topic, p, o.Err)
		}
		end[p], last[p], prev[p], seen[p] = o.Offset, -1, -1, map[int]bool{}
		offsets[int32(p)] = kgo.NewOffset().AtStart()
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.brokerAddr...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	read := 0
	done := func() bool {
		for p := range partitions {
			if last[p]+1 < end[p] {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("timed out reading back: at offsets %v of %v", last, end)
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetching partition %d: %v", p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			read++
			ps, ss, ok := strings.Cut(string(r.Value), ":")
			seq, err := strconv.Atoi(ss)
			if !ok || err != nil || ps != strconv.Itoa(int(r.Partition)) {
				t.Fatalf("partition %d offset %d: unexpected record %q", r.Partition, r.Offset, r.Value)
			}
			if seen[r.Partition][seq] {
				t.Fatalf("record %q read twice (again at offset %d)", r.Value, r.Offset)
			}
			if seq <= prev[r.Partition] {
				t.Fatalf("partition %d offset %d: record %d after %d: out of order", r.Partition, r.Offset, seq, prev[r.Partition])
			}
			seen[r.Partition][seq], prev[r.Partition], last[r.Partition] = true, seq, r.Offset
		})
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	lost := 0
	for p := range sp.acked {
		for seq := range sp.acked[p] {
			if !seen[p][seq] {
				if lost < 10 {
					t.Errorf("acknowledged record %d:%d is missing", p, seq)
				}
				lost++
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged records lost", lost, sp.nAcked)
	}
	return read
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestClusterChaos is the durability test's rougher, randomized variant,
// run only when VIGIL_CHAOS is set to a duration (VIGIL_CHAOS=2m): for that
// long it kill -9s or SIGTERMs a random broker or controller, restarts
// what is down after a random pause, and never waits for the ISRs to be
// whole again, so partitions may well drop below min.insync.replicas for a
// while (writes then wait). At most one broker and one controller are down
// at a time. Then everything is restarted and every acknowledged record
// must read back exactly once and in order. VIGIL_CHAOS_SEED repeats a run.
func TestClusterChaos(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("VIGIL_CHAOS"))
	if err != nil || d <= 0 {
		t.Skip("set VIGIL_CHAOS to a duration (e.g. 2m) to run")
	}
	seed, _ := strconv.ParseInt(os.Getenv("VIGIL_CHAOS_SEED"), 10, 64)
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("VIGIL_CHAOS_SEED=%d", seed)
	rng := rand.New(rand.NewSource(seed))
	const (
		topic      = "chaos"
		partitions = 6
	)
	c := startProcCluster(t, procClusterConfig{
		controllers: 3, brokers: 3, sessionTimeout: 2 * time.Second,
		brokerFlags: []string{"--broker-heartbeat-interval", "200ms", "--replica-lag-time-max", "3s",
			"--offsets-topic-num-partitions", "3", "--offsets-topic-replication-factor", "3"},
	})
	c.createTopic(topic, partitions, 3, map[string]string{"min.insync.replicas": "2"})
	c.waitFullISR(topic, time.Minute)
	prod := startSeqProducer(t, c, topic, partitions)
	prod.progress(500, "the start")
	pause := func() { time.Sleep(time.Duration(rng.Int63n(int64(2 * time.Second)))) }
	down := func(ps []*vigilProc) int {
		for i, p := range ps {
			if p == nil {
				return i
			}
		}
		return -1
	}
	actions := map[string]int{}
	for end := time.Now().Add(d); time.Now().Before(end); pause() {
		switch a := rng.Intn(6); {
		case a == 0 && down(c.brokers) < 0:
			i := rng.Intn(len(c.brokers))
			c.killBroker(i, syscall.SIGKILL)
			actions["kill -9 broker"]++
			t.Logf("kill -9 broker %d (%d acknowledged)", i, prod.ackedNow())
		case a == 1 && down(c.brokers) < 0:
			i := rng.Intn(len(c.brokers))
			c.killBroker(i, syscall.SIGTERM)
			actions["SIGTERM broker"]++
			t.Logf("SIGTERM broker %d (%d acknowledged)", i, prod.ackedNow())
		case a == 2 && down(c.ctrls) < 0:
			i := rng.Intn(len(c.ctrls))
			if rng.Intn(2) == 0 {
				if l := c.activeController(); l >= 0 {
					i = l
				}
			}
			c.killController(i, syscall.SIGKILL)
			actions["kill -9 controller"]++
			t.Logf("kill -9 controller %d (%d acknowledged)", i+1, prod.ackedNow())
		case a >= 3 && down(c.brokers) >= 0:
			i := down(c.brokers)
			c.spawnBroker(i)
			t.Logf("restart broker %d", i)
		case a >= 3 && down(c.ctrls) >= 0:
			i := down(c.ctrls)
			c.startController(i)
			t.Logf("restart controller %d", i+1)
		}
		// A broker restarted earlier has joined by now or is still
		// waiting for its old session to expire; either is fine.
		for i, p := range c.brokers {
			if p != nil && p.kafka == "" {
				select {
				case p.kafka = <-p.stderr.kafka:
				case err := <-p.done:
					t.Fatalf("broker %d exited: %v", i, err)
				default:
				}
			}
		}
	}
	for i, p := range c.ctrls {
		if p == nil {
			c.startController(i)
		}
	}
	for i, p := range c.brokers {
		switch {
		case p == nil:
			c.startBroker(i)
		case p.kafka == "":
			c.awaitBroker(i)
		}
	}
	c.waitFullISR(topic, 2*time.Minute)
	prod.progress(300, "the end of the chaos")
	total := prod.finish()
	read := verifySeq(t, c, topic, partitions, prod)
	t.Logf("actions %v; %d records acknowledged and checked, %d read back, every acknowledged record exactly once and in order", actions, total, read)
}

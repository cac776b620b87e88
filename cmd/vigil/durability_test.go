package main

import (
	"bytes"
	"context"
	"fmt"
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
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	admCl, err := kgo.NewClient(kgo.SeedBrokers(c.brokerAddr...))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	minISR := "2"
	if _, err := kadm.NewClient(admCl).CreateTopic(ctx, partitions, 3, map[string]*string{"min.insync.replicas": &minISR}, topic); err != nil {
		t.Fatal(err)
	}
	c.waitFullISR(topic, time.Minute)

	// The producer: franz-go's defaults retry without limit, so a record
	// fails only if something is badly wrong; its log goes into the
	// failure report.
	var clientLog lockedBuffer
	var dataLoss atomic.Int32
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.brokerAddr...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(2*time.Millisecond), kgo.MetadataMinAge(200*time.Millisecond),
		kgo.ProducerOnDataLossDetected(func(string, int32) { dataLoss.Add(1) }),
		kgo.WithLogger(kgo.BasicLogger(&clientLog, kgo.LogLevelInfo, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("==== producer log ====\n%s", clientLog.String())
		}
	})

	var (
		mu       sync.Mutex
		acked    [partitions]map[int]bool
		nAcked   int
		failed   int
		firstErr error
	)
	for p := range acked {
		acked[p] = map[int]bool{}
	}
	ackedNow := func() int { mu.Lock(); defer mu.Unlock(); return nAcked }
	stop := make(chan struct{})
	produced := make(chan struct{})
	sent := 0
	go func() {
		defer close(produced)
		inflight := make(chan struct{}, 512)
		var next [partitions]int
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case inflight <- struct{}{}:
			}
			p := i % partitions
			seq := next[p]
			next[p]++
			sent++
			r := &kgo.Record{Partition: int32(p), Value: []byte(strconv.Itoa(p) + ":" + strconv.Itoa(seq))}
			prod.Produce(ctx, r, func(_ *kgo.Record, err error) {
				<-inflight
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				acked[p][seq] = true
				nAcked++
			})
		}
	}()

	// progress waits until n more records are acknowledged.
	progress := func(n int, after string) {
		t.Helper()
		from := ackedNow()
		deadline := time.Now().Add(time.Minute)
		for ackedNow() < from+n {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: only %d records acknowledged in a minute", after, ackedNow()-from)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	brokerKills, controllerKills := 0, 0
	progress(500, "the start")
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
		t.Logf("round %d: kill -9 broker %d, leader of %s-%d (%d records acknowledged so far)", round, victim, topic, part, ackedNow())
		pollUntil(t, fmt.Sprintf("a new leader of %s-%d", topic, part), time.Minute, func() bool {
			st := c.partitionState(topic, part)
			return st != nil && st.Leader >= 0 && st.Leader != int32(victim)
		})
		progress(300, fmt.Sprintf("kill -9 of broker %d", victim))
		// It restarts on the same data dir and port and catches up.
		c.startBroker(victim)
		c.waitFullISR(topic, time.Minute)
		progress(300, fmt.Sprintf("the restart of broker %d", victim))

		// kill -9 the active controller; another one takes over.
		ctrl := c.waitQuorumLeader(-1)
		c.killController(ctrl, syscall.SIGKILL)
		controllerKills++
		t.Logf("round %d: kill -9 controller %d, the active one (%d records acknowledged so far)", round, ctrl+1, ackedNow())
		c.waitQuorumLeader(ctrl)
		progress(300, fmt.Sprintf("kill -9 of controller %d", ctrl+1))
		c.startController(ctrl)
	}
	close(stop)
	<-produced
	fctx, fcancel := context.WithTimeout(ctx, time.Minute)
	err = prod.Flush(fctx)
	fcancel()
	if err != nil {
		t.Fatalf("the producer could not deliver what it buffered within a minute: %v (%d of %d acknowledged)", err, ackedNow(), sent)
	}
	mu.Lock()
	total, nFailed, ferr := nAcked, failed, firstErr
	mu.Unlock()
	if n := dataLoss.Load(); n > 0 {
		t.Errorf("the producer detected data loss %d times (OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID)", n)
	}
	if nFailed > 0 {
		t.Errorf("%d records failed to produce (first: %v); with unlimited retries none should", nFailed, ferr)
	}

	// Read everything back.
	ends, err := kadm.NewClient(admCl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	offsets := map[int32]kgo.Offset{}
	end := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		o, ok := ends.Lookup(topic, p)
		if !ok || o.Err != nil {
			t.Fatalf("end offset of %s-%d: %v", topic, p, o.Err)
		}
		end[p] = o.Offset
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.brokerAddr...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var (
		last = map[int32]int64{0: -1, 1: -1, 2: -1}
		prev = map[int32]int{0: -1, 1: -1, 2: -1}
		read int
		seen [partitions]map[int]bool
	)
	for p := range seen {
		seen[p] = map[int]bool{}
	}
	done := func() bool {
		for p := int32(0); p < partitions; p++ {
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
	lost := 0
	for p := range acked {
		for seq := range acked[p] {
			if !seen[p][seq] {
				if lost < 10 {
					t.Errorf("acknowledged record %d:%d is missing", p, seq)
				}
				lost++
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged records lost", lost, total)
	}
	t.Logf("%d broker kills (kill -9 of a partition leader), %d controller kills (kill -9 of the active controller); %d records acknowledged and checked, %d read back (%d unacknowledged but written), every acknowledged record exactly once and in order",
		brokerKills, controllerKills, total, read, read-total)
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

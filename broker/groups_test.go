package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// groupBroker is a broker with a small offsets topic and short group
// timeouts, so group tests run in seconds.
func groupBroker(t testing.TB, dir string) *Broker {
	return groupBrokerLogger(t, dir, testLogger())
}

func groupBrokerLogger(t testing.TB, dir string, logger *slog.Logger) *Broker {
	return startBrokerLogger(t, dir, logger, func(c *Config) {
		c.OffsetsTopicPartitions = 4
		c.GroupMinSessionTimeout = 500 * time.Millisecond
		c.GroupInitialRebalanceDelay = 200 * time.Millisecond
		c.GroupConsumerSessionTimeout = 3 * time.Second
		c.GroupConsumerHeartbeat = 200 * time.Millisecond
	})
}

// freezableDialer gives a client connections that can all be frozen at
// once: reads block and writes vanish, as when a process is stopped or
// its network is cut, without the connection closing.
type freezableDialer struct {
	frozen atomic.Bool
	dead   atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

// kill ends a frozen client for good, as a process killed: its
// connections close and new ones cannot be made.
func (d *freezableDialer) kill() {
	d.dead.Store(true)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
}

func (d *freezableDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	if d.dead.Load() {
		return nil, errors.New("client is dead")
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	return &freezableConn{Conn: c, d: d}, nil
}

type freezableConn struct {
	net.Conn
	d *freezableDialer
}

func (c *freezableConn) Write(p []byte) (int, error) {
	if c.d.frozen.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *freezableConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	for c.d.frozen.Load() && err == nil {
		n, err = c.Conn.Read(p) // drop what arrives while frozen
	}
	return n, err
}

// groupMember is one consumer of a group in a test: it records what it
// processed and commits after every poll.
type groupMember struct {
	name   string
	cl     *kgo.Client
	dialer *freezableDialer
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	assigned map[int32]bool
	// rebalances counts OnPartitionsAssigned calls.
	rebalances atomic.Int32
}

// groupLedger collects every record value processed by any member.
type groupLedger struct {
	mu   sync.Mutex
	seen map[string]int
	errs []error
}

func (l *groupLedger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

func startMember(t *testing.T, b *Broker, name, groupID, topic string, ledger *groupLedger, opts ...kgo.Opt) *groupMember {
	t.Helper()
	m := &groupMember{name: name, dialer: &freezableDialer{}, done: make(chan struct{}), assigned: map[int32]bool{}}
	base := []kgo.Opt{
		kgo.SeedBrokers(b.Addr()),
		kgo.Dialer(m.dialer.dial),
		kgo.ConsumerGroup(groupID),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(2 * time.Second),
		kgo.HeartbeatInterval(200 * time.Millisecond),
		kgo.RequestTimeoutOverhead(2 * time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.rebalances.Add(1)
			m.mu.Lock()
			for _, p := range a[topic] {
				m.assigned[p] = true
			}
			m.mu.Unlock()
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, r map[string][]int32) {
			m.mu.Lock()
			for _, p := range r[topic] {
				delete(m.assigned, p)
			}
			m.mu.Unlock()
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) {
			m.mu.Lock()
			for _, p := range l[topic] {
				delete(m.assigned, p)
			}
			m.mu.Unlock()
		}),
	}
	if os.Getenv("VIGIL_TEST_KGO_LOG") != "" {
		base = append(base, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelDebug, func() string { return name + " " })))
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			// A bounded poll: with BlockRebalanceOnPoll, a rebalance
			// waits for AllowRebalance, which an idle poll would delay.
			pctx, pcancel := context.WithTimeout(ctx, 250*time.Millisecond)
			fs := cl.PollRecords(pctx, 200)
			pcancel()
			if ctx.Err() != nil {
				cl.AllowRebalance()
				return
			}
			ledger.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) { ledger.seen[string(r.Value)]++ })
			ledger.mu.Unlock()
			if !m.dialer.frozen.Load() {
				// A commit in flight when the member is frozen fails
				// later; that is the fault we injected, not a bug.
				if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil && !isRebalanceErr(err) && !m.dialer.frozen.Load() {
					ledger.mu.Lock()
					ledger.errs = append(ledger.errs, fmt.Errorf("%s commit: %w", name, err))
					ledger.mu.Unlock()
				}
			}
			cl.AllowRebalance()
		}
	}()
	t.Cleanup(func() { m.stop() })
	return m
}

func isRebalanceErr(err error) bool {
	for _, e := range []error{kerr.RebalanceInProgress, kerr.IllegalGeneration, kerr.UnknownMemberID, kerr.StaleMemberEpoch} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// stop ends the member: it leaves the group (a frozen member cannot, and
// is killed instead).
func (m *groupMember) stop() {
	if m.dialer.frozen.Load() {
		m.dialer.kill()
	}
	m.cancel()
	<-m.done
	m.cl.Close()
}

func (m *groupMember) partitions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.assigned)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func produceValues(t *testing.T, b *Broker, topic string, from, to int) {
	t.Helper()
	// Uncompressed: kafka-python reads these too, and Debian's has no
	// snappy.
	cl := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()))
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i % 97)), Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(testCtx(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestConsumerGroupsWithEveryBalancer runs three franz-go consumers in a
// group with each client-side balancer and with the KIP-848 server-side
// assignors: the partitions are split evenly, one member leaves and one is
// frozen (its session expires) and the last takes over, every record is
// processed, and consumers restarted later read only what was produced
// after the last commit.
func TestConsumerGroupsWithEveryBalancer(t *testing.T) {
	b := groupBroker(t, "")
	adm := newAdmin(t, b)
	cases := []struct {
		name string
		opts []kgo.Opt
	}{
		{"range", []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())}},
		{"roundrobin", []kgo.Opt{kgo.Balancers(kgo.RoundRobinBalancer())}},
		{"sticky", []kgo.Opt{kgo.Balancers(kgo.StickyBalancer())}},
		{"cooperative-sticky", []kgo.Opt{kgo.Balancers(kgo.CooperativeStickyBalancer())}},
		{"kip848-uniform", []kgo.Opt{kgo.Balancers(kgo.StickyBalancer()), kgo.ServerSideBalancer()}},
		{"kip848-range", []kgo.Opt{kgo.Balancers(kgo.RangeBalancer()), kgo.ServerSideBalancer()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topic, groupID := "grp-"+tc.name, "group-"+tc.name
			createTopic(t, adm, topic, 6, nil)
			const first = 3000
			produceValues(t, b, topic, 0, first)
			ledger := &groupLedger{seen: map[string]int{}}
			ms := []*groupMember{
				startMember(t, b, "m0", groupID, topic, ledger, tc.opts...),
				startMember(t, b, "m1", groupID, topic, ledger, tc.opts...),
				startMember(t, b, "m2", groupID, topic, ledger, tc.opts...),
			}
			waitFor(t, "an even split 2/2/2", time.Minute, func() bool {
				return ms[0].partitions() == 2 && ms[1].partitions() == 2 && ms[2].partitions() == 2
			})
			if strings := describeMembers(t, adm, groupID); strings != 3 {
				t.Fatalf("group has %d members", strings)
			}

			// m0 leaves cleanly; m1 is frozen and must be expired.
			ms[0].stop()
			ms[1].dialer.frozen.Store(true)
			waitFor(t, "m2 to own every partition", time.Minute, func() bool { return ms[2].partitions() == 6 })
			waitFor(t, "every record processed", time.Minute, func() bool { return ledger.count() == first })
			// Let the last poll's commit land, then stop everyone.
			waitFor(t, "committed offsets at the end", time.Minute, func() bool { return committedTotal(t, adm, groupID, topic) == first })
			ms[2].stop()
			ms[1].stop()
			if len(ledger.errs) > 0 {
				t.Fatalf("commit errors: %v", ledger.errs)
			}

			// Restarted consumers read only what came after the commits.
			const second = 500
			produceValues(t, b, topic, first, first+second)
			ledger2 := &groupLedger{seen: map[string]int{}}
			r0 := startMember(t, b, "r0", groupID, topic, ledger2, tc.opts...)
			r1 := startMember(t, b, "r1", groupID, topic, ledger2, tc.opts...)
			waitFor(t, "the new records", time.Minute, func() bool { return ledger2.count() == second })
			r0.stop()
			r1.stop()
			ledger2.mu.Lock()
			defer ledger2.mu.Unlock()
			for v := range ledger2.seen {
				if n, _ := strconv.Atoi(v); n < first {
					t.Fatalf("record %s was committed before the restart and read again", v)
				}
			}
		})
	}
}

func describeMembers(t *testing.T, adm *kadm.Client, groupID string) int {
	t.Helper()
	ctx := testCtx(t)
	if d, err := adm.DescribeConsumerGroups(ctx, groupID); err == nil && d[groupID].Err == nil && len(d[groupID].Members) > 0 {
		return len(d[groupID].Members)
	}
	d, err := adm.DescribeGroups(ctx, groupID)
	if err != nil {
		t.Fatal(err)
	}
	return len(d[groupID].Members)
}

// committedTotal sums the committed offsets of the group on topic.
func committedTotal(t *testing.T, adm *kadm.Client, groupID, topic string) int64 {
	t.Helper()
	offs, err := adm.FetchOffsets(testCtx(t), groupID)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			total += o.At
		}
	})
	return total
}

// TestStaticMemberRestartWithoutRebalance restarts a static member
// (group.instance.id) within its session timeout: it gets its partitions
// back and the other member sees no rebalance.
func TestStaticMemberRestartWithoutRebalance(t *testing.T) {
	// The group's events (rebalances and why) explain a failure.
	var logs logBuffer
	b := groupBrokerLogger(t, "", logs.logger())
	defer func() {
		if t.Failed() {
			for _, l := range logs.lines("group:") {
				t.Log(l)
			}
		}
	}()
	adm := newAdmin(t, b)
	createTopic(t, adm, "static", 6, nil)
	ledger := &groupLedger{seen: map[string]int{}}
	static := func(inst string) []kgo.Opt {
		return []kgo.Opt{kgo.InstanceID(inst), kgo.SessionTimeout(20 * time.Second), kgo.Balancers(kgo.RangeBalancer())}
	}
	a := startMember(t, b, "a", "static-group", "static", ledger, static("instance-a")...)
	other := startMember(t, b, "b", "static-group", "static", ledger, static("instance-b")...)
	waitFor(t, "a stable 3/3 split", time.Minute, func() bool {
		if a.partitions() != 3 || other.partitions() != 3 {
			return false
		}
		d, err := adm.DescribeGroups(testCtx(t), "static-group")
		return err == nil && d["static-group"].State == "Stable"
	})
	before := other.rebalances.Load()

	a.stop() // a static member does not leave the group on close
	d, err := adm.DescribeGroups(testCtx(t), "static-group")
	if err != nil || d["static-group"].State != "Stable" || len(d["static-group"].Members) != 2 {
		t.Fatalf("after the static member stopped: %+v %v", d["static-group"], err)
	}
	a2 := startMember(t, b, "a2", "static-group", "static", ledger, static("instance-a")...)
	waitFor(t, "the restarted member to get its partitions back", time.Minute, func() bool { return a2.partitions() == 3 })
	if got := other.rebalances.Load(); got != before {
		t.Fatalf("the other member went through %d rebalances during the static restart", got-before)
	}
	if other.partitions() != 3 {
		t.Fatalf("the other member has %d partitions", other.partitions())
	}
}

// TestGroupsSurviveBrokerRestart commits offsets in a stable group, restarts
// the broker on the same data, and finds the group and every offset again.
func TestGroupsSurviveBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	b := groupBroker(t, dir)
	adm := newAdmin(t, b)
	createTopic(t, adm, "durable", 3, nil)
	produceValues(t, b, "durable", 0, 300)
	ledger := &groupLedger{seen: map[string]int{}}
	m := startMember(t, b, "m", "durable-group", "durable", ledger)
	waitFor(t, "all records processed", time.Minute, func() bool { return ledger.count() == 300 })
	waitFor(t, "all records committed", time.Minute, func() bool { return committedTotal(t, adm, "durable-group", "durable") == 300 })
	// A standalone commit too (a group with no members).
	if err := adm.CommitAllOffsets(testCtx(t), "standalone", kadm.OffsetsFromRecords(kgo.Record{Topic: "durable", Partition: 1, Offset: 41})); err != nil {
		t.Fatal(err)
	}
	m.stop()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := groupBroker(t, dir)
	adm2 := newAdmin(t, b2)
	waitFor(t, "offsets after the restart", time.Minute, func() bool {
		return committedTotal(t, adm2, "durable-group", "durable") == 300
	})
	offs, err := adm2.FetchOffsets(testCtx(t), "standalone")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("durable", 1); !ok || o.At != 42 {
		t.Fatalf("standalone offset after restart: %+v", o)
	}
	groups, err := adm2.ListGroups(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := groups["durable-group"]; !ok {
		t.Fatalf("group missing after restart: %v", groups.Groups())
	}
	// A consumer in the group resumes after the committed offsets.
	produceValues(t, b2, "durable", 300, 350)
	ledger2 := &groupLedger{seen: map[string]int{}}
	m2 := startMember(t, b2, "m2", "durable-group", "durable", ledger2)
	waitFor(t, "the new records", time.Minute, func() bool { return ledger2.count() == 50 })
	m2.stop()
	for v := range ledger2.seen {
		if n, _ := strconv.Atoi(v); n < 300 {
			t.Fatalf("record %s read again after the restart", v)
		}
	}
}

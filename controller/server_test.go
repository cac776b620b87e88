package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/internal/catalogue"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeClock is a settable clock for servers.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testNode is one controller of a test quorum.
type testNode struct {
	id       string
	dir      string
	raftAddr string
	apiAddr  string
	srv      *Server
}

type testQuorum struct {
	t     *testing.T
	nodes []*testNode
	peers map[string]string
	tweak func(*ServerConfig)
}

// listenOn listens on addr, retrying while a just-closed listener frees it.
func listenOn(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	waitFor(t, 10*time.Second, "listening on "+addr, func() bool {
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	return ln
}

func newQuorum(t *testing.T, n int, tweak func(*ServerConfig)) *testQuorum {
	t.Helper()
	q := &testQuorum{t: t, peers: map[string]string{}, tweak: tweak}
	var raftLns, apiLns []net.Listener
	for i := 1; i <= n; i++ {
		rl := listenOn(t, "127.0.0.1:0")
		al := listenOn(t, "127.0.0.1:0")
		raftLns, apiLns = append(raftLns, rl), append(apiLns, al)
		id := strconv.Itoa(i)
		q.peers[id] = rl.Addr().String()
		q.nodes = append(q.nodes, &testNode{id: id, dir: t.TempDir(), raftAddr: rl.Addr().String(), apiAddr: al.Addr().String()})
	}
	for i, nd := range q.nodes {
		q.start(nd, raftLns[i], apiLns[i])
	}
	t.Cleanup(func() {
		for _, nd := range q.nodes {
			if nd.srv != nil {
				nd.srv.Close()
			}
		}
	})
	return q
}

func (q *testQuorum) start(nd *testNode, rl, al net.Listener) {
	q.t.Helper()
	if rl == nil {
		rl = listenOn(q.t, nd.raftAddr)
		al = listenOn(q.t, nd.apiAddr)
	}
	cfg := ServerConfig{
		ID: nd.id, DataDir: nd.dir, Listener: al, RaftListener: rl, Peers: q.peers,
		RaftHeartbeatTimeout: 300 * time.Millisecond, RaftElectionTimeout: 300 * time.Millisecond,
		TickInterval: 50 * time.Millisecond, SessionTimeout: time.Minute, ApplyTimeout: 5 * time.Second,
	}
	if len(q.peers) == 1 {
		cfg.Peers = nil
	}
	if q.tweak != nil {
		q.tweak(&cfg)
	}
	srv, err := NewServer(cfg, nil)
	if err != nil {
		q.t.Fatal(err)
	}
	nd.srv = srv
}

func (q *testQuorum) stop(nd *testNode) {
	q.t.Helper()
	if err := nd.srv.Close(); err != nil {
		q.t.Logf("closing controller %s: %v", nd.id, err)
	}
	nd.srv = nil
}

// leader waits for exactly one active controller among the running ones.
func (q *testQuorum) leader() *testNode {
	q.t.Helper()
	var l *testNode
	waitFor(q.t, 30*time.Second, "an active controller", func() bool {
		l = nil
		for _, nd := range q.nodes {
			if nd.srv != nil && nd.srv.IsActive() {
				if l != nil {
					return false
				}
				l = nd
			}
		}
		return l != nil
	})
	return l
}

func (q *testQuorum) client(nodes ...*testNode) *Client {
	q.t.Helper()
	if len(nodes) == 0 {
		nodes = q.nodes
	}
	var addrs []string
	for _, nd := range nodes {
		addrs = append(addrs, nd.apiAddr)
	}
	c, err := NewClient(ClientConfig{Addrs: addrs, RetryTimeout: 30 * time.Second, WatchWait: 2 * time.Second})
	if err != nil {
		q.t.Fatal(err)
	}
	return c
}

// addBroker registers broker id through c and heartbeats it unfenced.
func addBrokerVia(t *testing.T, ctx context.Context, c *Client, id int32, cell string) int64 {
	t.Helper()
	epoch, err := c.Register(ctx, BrokerRegistration{ID: id, IncarnationID: fmt.Sprintf("inc-%d-%d", id, time.Now().UnixNano()), Cell: cell, Endpoint: fmt.Sprintf("127.0.0.1:%d", 9090+id)})
	if err != nil {
		t.Fatalf("register %d: %v", id, err)
	}
	hb, err := c.Heartbeat(ctx, id, epoch, false)
	if err != nil || hb.Fenced {
		t.Fatalf("heartbeat %d: %+v %v", id, hb, err)
	}
	return epoch
}

func createTopic(t *testing.T, ctx context.Context, c *Client, name string, parts int32, rf int16) {
	t.Helper()
	res, err := c.CreateTopics(ctx, CreateTopicsRequest{Topics: []CreateTopic{{Name: name, Partitions: parts, ReplicationFactor: rf}}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Error != nil {
		t.Fatalf("create %s: %v", name, res[0].Error)
	}
}

func TestQuorumFailover(t *testing.T) {
	ctx := context.Background()
	q := newQuorum(t, 3, nil)
	l := q.leader()
	// A client that knows only a follower still reaches the leader.
	var follower *testNode
	for _, nd := range q.nodes {
		if nd != l {
			follower = nd
			break
		}
	}
	fc := q.client(follower)
	// The follower learns the leader's address from the log; until then the
	// client tries its other addresses (here none), so wait for it.
	waitFor(t, 10*time.Second, "follower to know the leader's address", func() bool {
		img, _ := follower.srv.Image()
		return img.Controllers[l.id] == l.apiAddr
	})
	for i := int32(1); i <= 3; i++ {
		addBrokerVia(t, ctx, fc, i, "")
	}
	createTopic(t, ctx, fc, "before", 3, 3)
	// A watcher's offset stays meaningful across failover: it is a log index.
	watched, err := fc.WatchMetadata(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}

	// Kill the leader; the other two elect a new one and keep everything.
	q.stop(l)
	nl := q.leader()
	if nl == l {
		t.Fatal("stopped controller still active")
	}
	c := q.client()
	md, err := c.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tp := md.Image.Topics["before"]; tp == nil || len(tp.Partitions) != 3 || len(md.Image.Brokers) != 3 {
		t.Fatalf("after failover: %+v", md.Image)
	}
	createTopic(t, ctx, c, "after", 1, 2)
	waitFor(t, 10*time.Second, "the watcher to see the topic created after failover", func() bool {
		d, err := c.WatchMetadata(ctx, watched.Offset)
		if err != nil {
			t.Fatal(err)
		}
		if d.Image != nil {
			t.Fatalf("watcher at %d got a whole image after failover", watched.Offset)
		}
		for i := range d.Changes {
			watched.Image.ApplyChange(&d.Changes[i])
		}
		watched.Offset = d.Offset
		return watched.Image.Topics["after"] != nil
	})
	cd, err := c.DescribeCluster(ctx)
	if err != nil || cd.ControllerID != nl.id || len(cd.Brokers) != 3 {
		t.Fatalf("describe cluster: %+v %v", cd, err)
	}
	qd, err := c.DescribeQuorum(ctx)
	if err != nil || len(qd.Voters) != 3 || qd.LeaderID != nl.id {
		t.Fatalf("quorum: %+v %v", qd, err)
	}

	// Restart the old leader from its data dir: it catches up.
	q.start(l, nil, nil)
	waitFor(t, 20*time.Second, "restarted controller to catch up", func() bool {
		img, _ := l.srv.Image()
		return img.Topics["after"] != nil && img.Topics["before"] != nil
	})
	img, _ := l.srv.Image()
	limg, _ := q.leader().srv.Image()
	if len(img.Brokers) != len(limg.Brokers) || img.ClusterID != limg.ClusterID || img.ClusterID == "" {
		t.Fatalf("restarted image differs: %+v vs %+v", img, limg)
	}
}

func TestSingleNodeRestartKeepsEverything(t *testing.T) {
	ctx := context.Background()
	q := newQuorum(t, 1, func(c *ServerConfig) { c.SnapshotThreshold = 4 })
	nd := q.leader()
	c := q.client()
	addBrokerVia(t, ctx, c, 1, "a")
	addBrokerVia(t, ctx, c, 2, "a")
	createTopic(t, ctx, c, "t1", 2, 2)
	// Snapshot in the middle so restart replays a snapshot plus log.
	if err := nd.srv.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	createTopic(t, ctx, c, "t2", 1, 1)
	if _, err := c.Demote(ctx, 2); err != nil {
		t.Fatal(err)
	}
	b1, _ := c.DescribeBroker(ctx, 1)
	blk1, err := c.AllocateProducerIDs(ctx, 1, b1.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := nd.srv.Image()
	q.stop(nd)
	q.start(nd, nil, nil)
	q.leader()
	after, _ := nd.srv.Image()
	// Producer ids are never handed out twice, across restarts too.
	blk2, err := c.AllocateProducerIDs(ctx, 1, b1.Epoch)
	if err != nil || blk2.FirstID < blk1.FirstID+blk1.Count {
		t.Fatalf("producer ids after restart: %+v after %+v (%v)", blk2, blk1, err)
	}
	for _, name := range []string{"t1", "t2"} {
		if after.Topics[name] == nil || after.Topics[name].ID != before.Topics[name].ID {
			t.Fatalf("topic %s lost across restart", name)
		}
	}
	if !after.Brokers[2].Demoted || after.ClusterID != before.ClusterID {
		t.Fatalf("after restart: %+v", after)
	}
	// And it takes writes again.
	createTopic(t, ctx, c, "t3", 1, 1)
}

func TestWatchMetadata(t *testing.T) {
	ctx := context.Background()
	q := newQuorum(t, 1, func(c *ServerConfig) { c.HistorySize = 3 })
	nd := q.leader()
	c := q.client()
	addBrokerVia(t, ctx, c, 1, "a")

	// -1: the whole image.
	d, err := c.WatchMetadata(ctx, -1)
	if err != nil || d.Image == nil || d.Image.Brokers[1] == nil {
		t.Fatalf("initial watch: %+v %v", d, err)
	}
	img, off := d.Image, d.Offset

	// Nothing new: an empty answer after the wait, same offset.
	d, err = c.WatchMetadata(ctx, off)
	if err != nil || d.Image != nil || len(d.Changes) != 0 || d.Offset != off {
		t.Fatalf("idle watch: %+v %v", d, err)
	}

	// A change while waiting: the long poll returns it.
	got := make(chan *Delta, 1)
	go func() {
		d, err := c.WatchMetadata(ctx, off)
		if err != nil {
			t.Error(err)
		}
		got <- d
	}()
	createTopic(t, ctx, c, "w", 2, 1)
	d = <-got
	if d.Image != nil || len(d.Changes) == 0 {
		t.Fatalf("watch after create: %+v", d)
	}
	for i := range d.Changes {
		img.ApplyChange(&d.Changes[i])
	}
	off = d.Offset
	srvImg, _ := nd.srv.Image()
	if img.Topics["w"] == nil || len(img.Topics["w"].Partitions) != 2 || img.Topics["w"].ID != srvImg.Topics["w"].ID {
		t.Fatalf("image from deltas: %+v", img.Topics)
	}

	// Too far behind (history of 3): the whole image again.
	for i := 0; i < 5; i++ {
		if _, err := c.Demote(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Undemote(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	d, err = c.WatchMetadata(ctx, off)
	if err != nil || d.Image == nil {
		t.Fatalf("watch from far behind: %+v %v", d, err)
	}
}

func TestServerFencesSilentBroker(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	q := newQuorum(t, 1, func(c *ServerConfig) { c.Now = clock.Now; c.SessionTimeout = 9 * time.Second })
	q.leader()
	c := q.client()
	epoch := addBrokerVia(t, ctx, c, 1, "a")
	addBrokerVia(t, ctx, c, 2, "a")
	createTopic(t, ctx, c, "t", 1, 2)
	md, _ := c.Metadata(ctx)
	leader := md.Image.Topics["t"].Partitions[0].Leader

	clock.Add(5 * time.Second)
	for _, id := range []int32{1, 2} {
		if id != leader {
			b, _ := c.DescribeBroker(ctx, id)
			if _, err := c.Heartbeat(ctx, id, b.Epoch, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	clock.Add(5 * time.Second) // the leader's broker missed a whole session
	waitFor(t, 10*time.Second, "silent broker fenced", func() bool {
		b, err := c.DescribeBroker(ctx, leader)
		return err == nil && b.State == BrokerFenced
	})
	md, _ = c.Metadata(ctx)
	if p := md.Image.Topics["t"].Partitions[0]; p.Leader == leader || p.Leader == NoLeader {
		t.Fatalf("leadership did not move: %+v", p)
	}
	// Its next heartbeat unfences it.
	b, _ := c.DescribeBroker(ctx, leader)
	hb, err := c.Heartbeat(ctx, leader, b.Epoch, false)
	if err != nil || hb.Fenced {
		t.Fatalf("heartbeat after fencing: %+v %v", hb, err)
	}
	// A stale epoch must re-register.
	_, err = c.Heartbeat(ctx, 1, epoch-1, false)
	if !errors.Is(err, ErrStaleBrokerEpoch) {
		t.Fatalf("stale heartbeat: %v", err)
	}
	// Controlled shutdown through heartbeats.
	b, _ = c.DescribeBroker(ctx, 2)
	hb, err = c.Heartbeat(ctx, 2, b.Epoch, true)
	if err != nil || !hb.InControlledShutdown || !hb.ShutdownReady {
		t.Fatalf("controlled shutdown: %+v %v", hb, err)
	}
}

func TestAdminTokenAndErrors(t *testing.T) {
	ctx := context.Background()
	q := newQuorum(t, 1, func(c *ServerConfig) { c.AdminToken = "s3cret" })
	q.leader()
	bad, _ := NewClient(ClientConfig{Addrs: []string{q.nodes[0].apiAddr}, Token: "wrong"})
	if _, err := bad.DescribeCluster(ctx); !errors.Is(err, ErrClusterAuthorizationFailed) {
		t.Fatalf("wrong token: %v", err)
	}
	c, _ := NewClient(ClientConfig{Addrs: []string{q.nodes[0].apiAddr}, Token: "s3cret"})
	if _, err := c.DescribeCluster(ctx); err != nil {
		t.Fatal(err)
	}
	addBrokerVia(t, ctx, c, 1, "a")
	res, err := c.CreateTopics(ctx, CreateTopicsRequest{Topics: []CreateTopic{{Name: "big", Partitions: 1, ReplicationFactor: 3}}})
	if err != nil || res[0].Error == nil || res[0].Error.Code != CodeInvalidReplicationFactor {
		t.Fatalf("rf 3 on 1 broker: %+v %v", res, err)
	}
	res, err = c.CreateTopics(ctx, CreateTopicsRequest{ValidateOnly: true, Topics: []CreateTopic{{Name: "v", Partitions: 1, ReplicationFactor: 1}}})
	if err != nil || res[0].Error != nil {
		t.Fatalf("validate only: %+v %v", res, err)
	}
	if md, _ := c.Metadata(ctx); md.Image.Topics["v"] != nil {
		t.Fatal("validate-only created the topic")
	}
	if _, err := c.DescribeBroker(ctx, 42); !errors.Is(err, ErrBrokerNotRegistered) {
		t.Fatalf("unknown broker: %v", err)
	}
}

func TestServerRebalancesLeaders(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	q := newQuorum(t, 1, func(c *ServerConfig) {
		c.Now = clock.Now
		c.LeaderRebalanceInterval = time.Minute
		c.SessionTimeout = time.Hour
	})
	q.leader()
	c := q.client()
	addBrokerVia(t, ctx, c, 1, "a")
	addBrokerVia(t, ctx, c, 2, "a")
	createTopic(t, ctx, c, "t", 4, 2)
	if _, err := c.Demote(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if b, _ := c.DescribeBroker(ctx, 1); b.Leaders != 0 {
		t.Fatalf("demoted broker leads %d partitions", b.Leaders)
	}
	if _, err := c.Undemote(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Add(2 * time.Minute)
	waitFor(t, 10*time.Second, "leaders back on preferred replicas", func() bool {
		b, err := c.DescribeBroker(ctx, 1)
		return err == nil && b.Leaders == 2
	})
}

// TestControllerMetrics scrapes /metrics of the active controller: broker
// states, heartbeat ages and elections are there, and every family is
// declared in the catalogue.
func TestControllerMetrics(t *testing.T) {
	ctx := context.Background()
	q := newQuorum(t, 1, nil)
	nd := q.leader()
	c := q.client()
	addBrokerVia(t, ctx, c, 1, "a")
	resp, err := http.Get("http://" + nd.srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`vigil_controller_active{controller="1"} 1`,
		`vigil_controller_brokers{cell="a",controller="1",state=`,
		`vigil_controller_broker_heartbeat_age_seconds{broker="1",controller="1"}`,
		`vigil_controller_leader_elections_total{controller="1"}`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, text)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name = strings.Fields(name)[0]; catalogue.Lookup(name) == nil {
				t.Errorf("%s is exposed but not declared", name)
			}
		}
	}
}

// TestWatchNeverAnswersWithAnOlderImage: a broker whose image came from a
// controller that had applied more (the active one) and whose next watch
// reaches a controller that is behind it (a follower catching up, or a
// leader that just lost its leadership) must not get that controller's
// older image: the broker would apply it and forget topics and changes it
// already had, until the lagging controller caught up. The controller
// answers NOT_CONTROLLER (naming the active one), and the client goes on
// to a controller that is current.
func TestWatchNeverAnswersWithAnOlderImage(t *testing.T) {
	ctx := context.Background()
	q := newQuorum(t, 3, nil)
	l := q.leader()
	var f *testNode
	for _, nd := range q.nodes {
		if nd != l {
			f = nd
			break
		}
	}
	c := q.client(l)
	addBrokerVia(t, ctx, c, 1, "a")
	waitFor(t, 10*time.Second, "the follower to know the leader's address", func() bool {
		img, _ := f.srv.Image()
		return img.Controllers[l.id] == l.apiAddr
	})
	_, idx := f.srv.Image()
	ahead := int64(idx) + 1000 // as if the caller had seen a controller far ahead

	// Asked directly, the follower refuses and names the leader.
	resp, err := http.Get(fmt.Sprintf("http://%s/v1/metadata/watch?after=%d&wait=200ms", f.apiAddr, ahead))
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Offset *int64 `json:"offset"`
		Error  *Error `json:"error"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if body.Error == nil || body.Error.Code != CodeNotController || body.Error.LeaderAddr != l.apiAddr {
		t.Fatalf("watch after %d from a follower at %d: status %d, %+v; want NOT_CONTROLLER naming %s, never an older image", ahead, idx, resp.StatusCode, body, l.apiAddr)
	}
	fc, err := NewClient(ClientConfig{Addrs: []string{f.apiAddr}, WatchWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()

	// A client that asks the follower first for a real offset ends up
	// with current changes: create a topic through the leader, then
	// watch from the leader's offset through the follower only once it
	// has caught up.
	createTopic(t, ctx, c, "fresh", 1, 1)
	_, lidx := l.srv.Image()
	waitFor(t, 10*time.Second, "the follower to catch up", func() bool { _, i := f.srv.Image(); return i >= lidx })
	d, err := fc.WatchMetadata(ctx, int64(lidx))
	if err != nil || d.Offset < int64(lidx) {
		t.Fatalf("watch after %d from a caught-up follower: %+v %v", lidx, d, err)
	}
}

package broker

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigilhq/vigil/controller"
)

// watchGate is a reverse proxy in front of the controller that can hold
// back the answers to one broker's metadata watch (and only those: its
// heartbeats go through), so that broker's image lags the others'.
type watchGate struct {
	target atomic.Value // controller API address
	mu     sync.Mutex
	open   chan struct{} // closed while answers flow
	srv    *http.Server
	addr   string
}

func newWatchGate(t *testing.T) *watchGate {
	g := &watchGate{open: make(chan struct{})}
	close(g.open)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: g.target.Load().(string)})
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) },
		ModifyResponse: func(resp *http.Response) error {
			if strings.HasPrefix(resp.Request.URL.Path, "/v1/metadata/watch") {
				g.mu.Lock()
				ch := g.open
				g.mu.Unlock()
				<-ch
			}
			return nil
		},
	}
	g.srv = &http.Server{Handler: rp}
	go g.srv.Serve(ln)
	t.Cleanup(func() { g.release(); g.srv.Close() })
	return g
}

func (g *watchGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
}

func (g *watchGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

// TestFollowerRetriesSoonWhenTheLeaderLagsInMetadata: a follower that
// learns of a partition (or of a new leader epoch) before its leader does
// gets UNKNOWN_TOPIC_ID (or UNKNOWN_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER)
// from the leader. It must retry after a short backoff: nothing in its own
// metadata will change to wake it, and while it does not fetch, acks=all
// writes wait and the leader drops it from the ISR after
// replica.lag.time.max.ms. (It used to pause for 5s, longer than the ISR
// lag allowed here, so the ISR shrank to the leader alone and a kill -9 of
// the leader then left the partition without one.)
func TestFollowerRetriesSoonWhenTheLeaderLagsInMetadata(t *testing.T) {
	gate := newWatchGate(t)
	c := startCluster(t, 2, func(cfg *Config) {
		cfg.ReplicaLagTimeMax = 2 * time.Second
		if cfg.NodeID == 1 {
			gate.target.Store(cfg.Controllers[0])
			cfg.Controllers = []string{gate.addr}
		}
	})
	cc, err := controller.NewClient(controller.ClientConfig{Addrs: []string{c.ctrl.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := testCtx(t)

	// Broker 1 leads the new topic but learns of it late.
	gate.hold()
	res, err := cc.CreateTopics(ctx, controller.CreateTopicsRequest{Topics: []controller.CreateTopic{{Name: "lag", Assignments: [][]int32{{1, 0}}}}})
	if err != nil || res[0].Error != nil {
		t.Fatalf("creating topic: %v %v", err, res)
	}
	created := c.partitionState("lag", 0)
	// Broker 0 follows it at once and is refused by broker 1.
	var paused time.Duration
	waitFor(t, "broker 0's fetch of lag-0 refused by broker 1", time.Minute, func() bool {
		fs := c.brokers[0].fetchers
		fs.mu.Lock()
		defer fs.mu.Unlock()
		f := fs.byLeader[1]
		if f == nil {
			return false
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for p, ps := range f.parts {
			if p.topic == "lag" && !ps.retryAfter.IsZero() {
				paused = time.Until(ps.retryAfter)
				return true
			}
		}
		return false
	})
	if paused > time.Second {
		t.Errorf("the follower pauses %v before fetching again from a leader that does not know the partition yet; want a short backoff", paused.Round(time.Millisecond))
	}
	gate.release()

	// Broker 1 leads; acks=all writes are replicated to broker 0 without
	// the ISR shrinking.
	cl := c.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic("lag"))
	for i := 0; i < 20; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond) // 3s of writes: past replica.lag.time.max.ms
	}
	st := c.partitionState("lag", 0)
	if st.Leader != 1 || !slices.Equal(sorted(st.ISR), []int32{0, 1}) || st.PartitionEpoch != created.PartitionEpoch {
		t.Fatalf("lag-0: leader %d, ISR %v, partition epoch %d (at creation %d) after 3s of writes with both brokers up; want leader 1 and the ISR [0 1] unchanged",
			st.Leader, st.ISR, st.PartitionEpoch, created.PartitionEpoch)
	}
}

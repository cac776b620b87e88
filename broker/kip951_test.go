package broker

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/vigilhq/vigil/controller"
)

// TestProduceWaitingForReplicasNamesTheNewLeader: an acks=all produce
// that waits for the in-sync replicas when the leadership moves away is
// answered NOT_LEADER_OR_FOLLOWER naming the new leader and its endpoint
// (KIP-951), as a produce that arrives after the move is, so the client
// goes there at once instead of backing off and refreshing its metadata.
// The leadership moves by demotion, and by a controlled shutdown of the
// leader, which must not stop before its own image names the new leader
// (the test holds that image back).
func TestProduceWaitingForReplicasNamesTheNewLeader(t *testing.T) {
	for _, how := range []string{"demote", "controlled shutdown"} {
		t.Run(how, func(t *testing.T) {
			gate := newWatchGate(t) // for broker 0
			c := startCluster(t, 2, func(cfg *Config) {
				cfg.ReplicaLagTimeMax = time.Minute
				if cfg.NodeID == 0 {
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
			res, err := cc.CreateTopics(ctx, controller.CreateTopicsRequest{Topics: []controller.CreateTopic{{Name: "moving", Assignments: [][]int32{{0, 1}}}}})
			if err != nil || res[0].Error != nil {
				t.Fatalf("creating topic: %v %v", err, res)
			}
			waitFor(t, "broker 0 leading moving-0 with broker 1 in the ISR", time.Minute, func() bool {
				st := c.partitionState("moving", 0)
				p := c.brokers[0].meta.lookup("moving").partition(0)
				return st.Leader == 0 && len(st.ISR) == 2 && p != nil && p.isLeader()
			})
			// Broker 1 stops fetching but stays in the ISR (for a
			// minute): acks=all produces to broker 0 wait.
			c.brokers[1].fetchers.close()
			leader := c.brokers[0]
			conn := dialRaw(t, leader)
			req := produceReq("moving", 0, makeBatch(-1, -1, -1, 1, []byte("v")))
			req.SetVersion(12)
			req.TimeoutMillis = 30000
			resp := req.ResponseKind().(*kmsg.ProduceResponse)
			resp.SetVersion(12)
			done := make(chan struct{})
			go func() { defer close(done); conn.roundTrip(req, resp) }()
			waitFor(t, "the record appended on broker 0", time.Minute, func() bool {
				select {
				case <-done:
					t.Fatalf("answered before the leadership moved: %+v", resp)
				default:
				}
				return leader.meta.lookup("moving").partition(0).log.EndOffset() == 1
			})

			switch how {
			case "demote":
				if _, err := cc.Demote(ctx, 0); err != nil {
					t.Fatal(err)
				}
			case "controlled shutdown":
				// Broker 0's image lags: it learns of the move
				// only when the gate opens, after the quorum has
				// moved its leadership.
				gate.hold()
				stopped := make(chan struct{})
				go func() { defer close(stopped); c.stop(0) }()
				defer func() { <-stopped }()
				waitFor(t, "broker 1 leading moving-0", time.Minute, func() bool { return c.partitionState("moving", 0).Leader == 1 })
				select {
				case <-done:
				case <-time.After(time.Second):
				}
				gate.release()
			}
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatal("the produce waiting for replicas was not answered after the leadership moved")
			}
			st := c.partitionState("moving", 0)
			sp := resp.Topics[0].Partitions[0]
			if sp.ErrorCode != kerr.NotLeaderForPartition.Code || sp.CurrentLeader.LeaderID != 1 || sp.CurrentLeader.LeaderEpoch != st.LeaderEpoch {
				t.Fatalf("answer: %v, current leader %d at epoch %d; want NOT_LEADER_OR_FOLLOWER naming broker 1 at epoch %d",
					kerr.ErrorForCode(sp.ErrorCode), sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch, st.LeaderEpoch)
			}
			if len(resp.Brokers) != 1 || resp.Brokers[0].NodeID != 1 || hostPortOf(resp.Brokers[0].Host, resp.Brokers[0].Port) != c.brokers[1].Addr() {
				t.Fatalf("answer lists brokers %+v; want broker 1 at %s", resp.Brokers, c.brokers[1].Addr())
			}
		})
	}
}

func hostPortOf(host string, port int32) string {
	return host + ":" + itoa(port)
}

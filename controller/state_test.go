package controller

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// threeBrokers returns a harness with brokers 1, 2, 3 in cell a, racks r1-r3,
// and topic "t" with one partition on replicas [1 2 3].
func threeBrokers(t *testing.T, configs map[string]string) *harness {
	h := newHarness(t)
	for i := int32(1); i <= 3; i++ {
		h.addBroker(i, "a", "r"+string(rune('0'+i)))
	}
	h.createAssigned("t", [][]int32{{1, 2, 3}}, configs)
	wantPart(t, h.part("t", 0), 1, []int32{1, 2, 3})
	return h
}

func TestCleanElectionOnFence(t *testing.T) {
	h := threeBrokers(t, nil)
	p0 := h.part("t", 0).Clone()
	h.mustApply(&Command{FenceBroker: &FenceBrokerCmd{ID: 1, Admin: true}})
	p := h.part("t", 0)
	wantPart(t, p, 2, []int32{2, 3})
	if p.LeaderEpoch != p0.LeaderEpoch+1 || p.PartitionEpoch != p0.PartitionEpoch+1 {
		t.Fatalf("epochs %d/%d after one leader change, were %d/%d", p.LeaderEpoch, p.PartitionEpoch, p0.LeaderEpoch, p0.PartitionEpoch)
	}
	// Fencing a follower shrinks the ISR but keeps the leader epoch.
	h.mustApply(&Command{FenceBroker: &FenceBrokerCmd{ID: 3, Admin: true}})
	p = h.part("t", 0)
	wantPart(t, p, 2, []int32{2})
	if p.LeaderEpoch != p0.LeaderEpoch+1 || p.PartitionEpoch != p0.PartitionEpoch+2 {
		t.Fatalf("ISR shrink: epochs %d/%d", p.LeaderEpoch, p.PartitionEpoch)
	}
	// The last ISR member stays in the ISR; the partition goes offline.
	h.mustApply(&Command{FenceBroker: &FenceBrokerCmd{ID: 2, Admin: true}})
	wantPart(t, h.part("t", 0), NoLeader, []int32{2})
	// 3 comes back: not in the ISR and unclean is off, so still offline.
	h.mustApply(&Command{UnfenceBroker: &UnfenceBrokerCmd{ID: 3, ClearAdmin: true, Epoch: h.img().Brokers[3].Epoch}})
	wantPart(t, h.part("t", 0), NoLeader, []int32{2})
	// 2 comes back: it leads again.
	h.mustApply(&Command{UnfenceBroker: &UnfenceBrokerCmd{ID: 2, ClearAdmin: true, Epoch: h.img().Brokers[2].Epoch}})
	wantPart(t, h.part("t", 0), 2, []int32{2})
	h.checkReplica()
}

func TestUncleanElection(t *testing.T) {
	for _, unclean := range []bool{false, true} {
		cfg := map[string]string{"unclean.leader.election.enable": "false"}
		if unclean {
			cfg["unclean.leader.election.enable"] = "true"
		}
		h := threeBrokers(t, cfg)
		if r := h.alterISR("t", 0, 1); r.Err != nil {
			t.Fatal(r.Err)
		}
		h.mustApply(&Command{FenceBroker: &FenceBrokerCmd{ID: 1, Admin: true}})
		if unclean {
			wantPart(t, h.part("t", 0), 2, []int32{2})
		} else {
			wantPart(t, h.part("t", 0), NoLeader, []int32{1})
			// Enabling unclean election on the topic elects at once.
			cmd, err := PlanAlterConfigs(h.img(), AlterConfigsRequest{Topic: "t", Set: map[string]string{"unclean.leader.election.enable": "true"}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			h.mustApply(cmd)
			wantPart(t, h.part("t", 0), 2, []int32{2})
		}
		h.checkReplica()
	}
}

func TestAdminUncleanElection(t *testing.T) {
	h := threeBrokers(t, nil)
	h.alterISR("t", 0, 1)
	h.mustApply(&Command{FenceBroker: &FenceBrokerCmd{ID: 1, Admin: true}})
	wantPart(t, h.part("t", 0), NoLeader, []int32{1})
	// Preferred election cannot help; unclean can.
	res := h.mustApply(&Command{ElectLeaders: &ElectLeadersCmd{ElectLeadersRequest{Type: ElectPreferred, Partitions: []TopicPartition{{"t", 0}}}}})
	if r := res.Value.([]ElectionResult); r[0].Error == nil || r[0].Error.Code != CodePreferredLeaderNotAvailable {
		t.Fatalf("preferred election of a dead preferred replica: %+v", r)
	}
	res = h.mustApply(&Command{ElectLeaders: &ElectLeadersCmd{ElectLeadersRequest{Type: ElectUnclean}}})
	if r := res.Value.([]ElectionResult); len(r) != 1 || r[0].Error != nil || r[0].Leader != 2 {
		t.Fatalf("unclean election: %+v", r)
	}
	wantPart(t, h.part("t", 0), 2, []int32{2})
	// A partition with a leader needs no unclean election.
	res = h.mustApply(&Command{ElectLeaders: &ElectLeadersCmd{ElectLeadersRequest{Type: ElectUnclean, Partitions: []TopicPartition{{"t", 0}}}}})
	if r := res.Value.([]ElectionResult); r[0].Error == nil || r[0].Error.Code != CodeElectionNotNeeded {
		t.Fatalf("%+v", r)
	}
	h.checkReplica()
}

func TestDemotion(t *testing.T) {
	h := threeBrokers(t, nil)
	h.mustApply(&Command{DemoteBroker: &DemoteBrokerCmd{ID: 1, Demoted: true}})
	wantPart(t, h.part("t", 0), 2, []int32{1, 2, 3}) // 1 stays in the ISR as a follower
	// Another ISR member fails: the next non-demoted one leads.
	h.mustApply(&Command{FenceBroker: &FenceBrokerCmd{ID: 2, Admin: true}})
	wantPart(t, h.part("t", 0), 3, []int32{1, 3})
	// No other eligible ISR member: the demoted broker leads.
	h.mustApply(&Command{FenceBroker: &FenceBrokerCmd{ID: 3, Admin: true}})
	wantPart(t, h.part("t", 0), 1, []int32{1})
	// 3 comes back and the leader adds it to the ISR: leadership leaves 1.
	h.mustApply(&Command{UnfenceBroker: &UnfenceBrokerCmd{ID: 3, ClearAdmin: true, Epoch: h.img().Brokers[3].Epoch}})
	wantPart(t, h.part("t", 0), 1, []int32{1})
	if r := h.alterISR("t", 0, 1, 3); r.Err != nil {
		t.Fatal(r.Err)
	}
	wantPart(t, h.part("t", 0), 3, []int32{1, 3})
	// Preferred election refuses a demoted preferred replica.
	res := h.mustApply(&Command{ElectLeaders: &ElectLeadersCmd{ElectLeadersRequest{Type: ElectPreferred, Partitions: []TopicPartition{{"t", 0}}}}})
	if r := res.Value.([]ElectionResult); r[0].Error == nil || r[0].Error.Code != CodePreferredLeaderNotAvailable {
		t.Fatalf("%+v", r)
	}
	// Undemoted, the preferred election moves leadership back.
	h.mustApply(&Command{DemoteBroker: &DemoteBrokerCmd{ID: 1, Demoted: false}})
	res = h.mustApply(&Command{ElectLeaders: &ElectLeadersCmd{ElectLeadersRequest{Type: ElectPreferred}}})
	if r := res.Value.([]ElectionResult); len(r) != 1 || r[0].Error != nil || r[0].Leader != 1 {
		t.Fatalf("%+v", r)
	}
	h.checkReplica()
}

func TestAlterPartitionValidation(t *testing.T) {
	h := threeBrokers(t, nil)
	p := h.part("t", 0)
	req := func(mod func(r *AlterPartitionRequest)) Result {
		r := AlterPartitionRequest{BrokerID: 1, BrokerEpoch: h.img().Brokers[1].Epoch, Topic: "t", Partition: 0,
			LeaderEpoch: h.part("t", 0).LeaderEpoch, PartitionEpoch: h.part("t", 0).PartitionEpoch, NewISR: []int32{1, 2}}
		mod(&r)
		return h.apply(&Command{AlterPartition: &AlterPartitionCmd{r}})
	}
	h.wantErr(req(func(r *AlterPartitionRequest) { r.LeaderEpoch-- }), CodeFencedLeaderEpoch)
	h.wantErr(req(func(r *AlterPartitionRequest) { r.PartitionEpoch-- }), CodeInvalidUpdateVersion)
	h.wantErr(req(func(r *AlterPartitionRequest) { r.BrokerEpoch-- }), CodeStaleBrokerEpoch)
	h.wantErr(req(func(r *AlterPartitionRequest) { r.BrokerID = 2; r.BrokerEpoch = h.img().Brokers[2].Epoch }), CodeNotLeaderOrFollower)
	h.wantErr(req(func(r *AlterPartitionRequest) { r.NewISR = nil }), CodeInvalidRequest)
	h.wantErr(req(func(r *AlterPartitionRequest) { r.NewISR = []int32{2, 3} }), CodeInvalidRequest)
	h.wantErr(req(func(r *AlterPartitionRequest) { r.NewISR = []int32{1, 1} }), CodeInvalidRequest)
	h.wantErr(req(func(r *AlterPartitionRequest) { r.NewISR = []int32{1, 7} }), CodeInvalidRequest)
	h.wantErr(req(func(r *AlterPartitionRequest) { r.Topic = "nope" }), CodeUnknownTopicOrPartition)
	h.wantErr(req(func(r *AlterPartitionRequest) { r.Topic = ""; r.TopicID = TopicID{9} }), CodeUnknownTopicID)
	if !eq(h.part("t", 0).ISR, p.ISR) || h.part("t", 0).PartitionEpoch != p.PartitionEpoch {
		t.Fatal("refused requests changed the partition")
	}
	// A valid shrink bumps the partition epoch only.
	res := req(func(r *AlterPartitionRequest) { r.Topic = ""; r.TopicID = h.img().Topics["t"].ID })
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	np := res.Value.(*Partition)
	if !eq(np.ISR, []int32{1, 2}) || np.PartitionEpoch != p.PartitionEpoch+1 || np.LeaderEpoch != p.LeaderEpoch {
		t.Fatalf("after shrink: %+v (was %+v)", np, p)
	}
	// The old partition epoch is now stale.
	h.wantErr(req(func(r *AlterPartitionRequest) { r.PartitionEpoch = p.PartitionEpoch; r.NewISR = []int32{1} }), CodeInvalidUpdateVersion)
	// A fenced broker cannot be added back to the ISR.
	h.mustApply(&Command{FenceBroker: &FenceBrokerCmd{ID: 3, Admin: true}})
	h.wantErr(req(func(r *AlterPartitionRequest) { r.NewISR = []int32{1, 2, 3} }), CodeIneligibleReplica)
	// Unfenced, it can.
	h.mustApply(&Command{UnfenceBroker: &UnfenceBrokerCmd{ID: 3, ClearAdmin: true, Epoch: h.img().Brokers[3].Epoch}})
	if r := req(func(r *AlterPartitionRequest) { r.NewISR = []int32{1, 2, 3} }); r.Err != nil {
		t.Fatal(r.Err)
	}
	h.checkReplica()
}

func TestSessionFencingAndUnfencing(t *testing.T) {
	h := threeBrokers(t, nil)
	for i := 0; i < 4; i++ { // 2 and 3 heartbeat, 1 is silent
		h.advance(2 * time.Second)
		h.heartbeat(2, false)
		h.heartbeat(3, false)
	}
	if b := h.img().Brokers[1]; b.State != BrokerRegistered {
		t.Fatalf("fenced after 8s < 9s session: %s", b.State)
	}
	h.advance(time.Second)
	if b := h.img().Brokers[1]; b.State != BrokerFenced || b.AdminFenced {
		t.Fatalf("broker 1 after its session expired: %+v", b)
	}
	wantPart(t, h.part("t", 0), 2, []int32{2, 3})
	// A heartbeat with the current epoch unfences it; the leader re-adds it.
	if r := h.heartbeat(1, false); r.Fenced {
		t.Fatalf("heartbeat did not unfence: %+v", r)
	}
	if r := h.alterISR("t", 0, 2, 3, 1); r.Err != nil {
		t.Fatal(r.Err)
	}
	// A stale epoch is refused: the broker must register again.
	if _, err := h.live.Heartbeat(h.img(), HeartbeatRequest{ID: 1, Epoch: h.img().Brokers[1].Epoch + 100}, h.now); err == nil || err.Code != CodeStaleBrokerEpoch {
		t.Fatalf("stale heartbeat: %v", err)
	}
	// Failover: a new active controller starts every timer afresh.
	h.live = NewLiveness(9 * time.Second)
	h.live.Reset(h.img(), h.now.Add(time.Hour))
	h.advance(time.Hour + 8*time.Second)
	for _, b := range h.img().Brokers {
		if b.State != BrokerRegistered {
			t.Fatalf("broker %d fenced before a whole session on the new controller", b.ID)
		}
	}
	h.advance(time.Second)
	for _, b := range h.img().Brokers {
		if b.State != BrokerFenced {
			t.Fatalf("broker %d not fenced after a silent session", b.ID)
		}
	}
	// Fenced in id order: the last one fenced stays as the lone ISR member.
	wantPart(t, h.part("t", 0), NoLeader, []int32{3})
	h.checkReplica()
}

func TestAdminFenceIsSticky(t *testing.T) {
	h := threeBrokers(t, nil)
	h.mustApply(&Command{FenceBroker: &FenceBrokerCmd{ID: 1, Admin: true}})
	if r := h.heartbeat(1, false); !r.Fenced || !r.AdminFenced {
		t.Fatalf("heartbeat unfenced an operator's fence: %+v", r)
	}
	// Re-registering keeps the operator's fence (and demotion).
	h.mustApply(&Command{DemoteBroker: &DemoteBrokerCmd{ID: 1, Demoted: true}})
	h.mustApply(&Command{RegisterBroker: &RegisterBrokerCmd{BrokerRegistration{ID: 1, IncarnationID: "new", Endpoint: "x:1"}}})
	if r := h.heartbeat(1, false); !r.Fenced || !r.Demoted {
		t.Fatalf("after restart: %+v", r)
	}
	h.mustApply(&Command{UnfenceBroker: &UnfenceBrokerCmd{ID: 1, ClearAdmin: true}})
	if r := h.heartbeat(1, false); r.Fenced {
		t.Fatalf("after an operator's unfence: %+v", r)
	}
	h.checkReplica()
}

func TestControlledShutdown(t *testing.T) {
	h := newHarness(t)
	for i := int32(1); i <= 3; i++ {
		h.addBroker(i, "a", "")
	}
	h.createAssigned("t", [][]int32{{1, 2, 3}, {2, 1, 3}, {1}}, nil)
	r := h.heartbeat(1, true)
	if !r.InControlledShutdown || !r.ShutdownReady {
		t.Fatalf("controlled shutdown: %+v", r)
	}
	wantPart(t, h.part("t", 0), 2, []int32{2, 3})
	wantPart(t, h.part("t", 1), 2, []int32{2, 3})
	wantPart(t, h.part("t", 2), NoLeader, []int32{1}) // its only replica
	if h.img().LeaderCount()[1] != 0 {
		t.Fatal("still leads")
	}
	// The session then expires; it rejoins with a new registration.
	h.advance(10 * time.Second)
	if b := h.img().Brokers[1]; b.State != BrokerFenced {
		t.Fatalf("after shutdown and silence: %s", b.State)
	}
	h.live.Touch(2, h.now)
	h.live.Touch(3, h.now)
	h.addBroker(1, "a", "")
	wantPart(t, h.part("t", 2), 1, []int32{1})
	h.checkReplica()
}

func TestRegistration(t *testing.T) {
	h := threeBrokers(t, nil)
	// Another process claiming id 1 while it heartbeats is refused.
	reg := BrokerRegistration{ID: 1, IncarnationID: "other", Endpoint: "x:1"}
	if err := h.live.CheckRegistration(h.img(), reg, h.now); err == nil || err.Code != CodeDuplicateBrokerRegistration {
		t.Fatalf("duplicate registration: %v", err)
	}
	// After its session expired, the restarted broker may register; its old
	// leaderships are void and it starts fenced with a new epoch.
	h.advance(9 * time.Second)
	h.live.Touch(2, h.now)
	h.live.Touch(3, h.now)
	if err := h.live.CheckRegistration(h.img(), reg, h.now); err != nil {
		t.Fatal(err)
	}
	old := h.img().Brokers[1].Epoch
	res := h.mustApply(&Command{RegisterBroker: &RegisterBrokerCmd{reg}})
	if ep := res.Value.(int64); ep <= old || ep != h.img().Brokers[1].Epoch {
		t.Fatalf("epoch %d after %d", ep, old)
	}
	if h.part("t", 0).Leader == 1 {
		t.Fatal("re-registered broker still leads")
	}
	h.wantErr(h.apply(&Command{RegisterBroker: &RegisterBrokerCmd{BrokerRegistration{ID: 5, IncarnationID: "x"}}}), CodeInvalidRequest)
	h.checkReplica()
}

func TestRemoveFromISR(t *testing.T) {
	h := threeBrokers(t, nil)
	res := h.mustApply(&Command{RemoveFromISR: &RemoveFromISRCmd{Topic: "t", Partition: 0, Broker: 3}})
	wantPart(t, res.Value.(*Partition), 1, []int32{1, 2})
	// Removing the leader moves leadership.
	h.mustApply(&Command{RemoveFromISR: &RemoveFromISRCmd{Topic: "t", Partition: 0, Broker: 1}})
	wantPart(t, h.part("t", 0), 2, []int32{2})
	h.wantErr(h.apply(&Command{RemoveFromISR: &RemoveFromISRCmd{Topic: "t", Partition: 0, Broker: 2}}), CodeInvalidRequest)
	h.wantErr(h.apply(&Command{RemoveFromISR: &RemoveFromISRCmd{Topic: "t", Partition: 5, Broker: 2}}), CodeUnknownTopicOrPartition)
	h.checkReplica()
}

func TestReassignment(t *testing.T) {
	h := newHarness(t)
	for i := int32(1); i <= 4; i++ {
		h.addBroker(i, "a", "")
	}
	h.createAssigned("t", [][]int32{{1, 2, 3}}, nil)
	res := h.mustApply(&Command{Reassign: &ReassignCmd{[]Reassignment{{Topic: "t", Partition: 0, Replicas: []int32{4, 2, 3}}}}})
	if r := res.Value.([]ReassignmentResult); r[0].Error != nil {
		t.Fatal(r[0].Error)
	}
	p := h.part("t", 0)
	if !eq(p.Replicas, []int32{4, 2, 3, 1}) || !eq(p.AddingReplicas, []int32{4}) || !eq(p.RemovingReplicas, []int32{1}) || p.Leader != 1 {
		t.Fatalf("reassigning: %+v", p)
	}
	if l := ListReassignments(h.img()); len(l) != 1 || l[0].Topic != "t" {
		t.Fatalf("list: %+v", l)
	}
	// Not complete until 4 is in the ISR; then 1 goes and leadership moves.
	if r := h.alterISR("t", 0, 1, 2, 3, 4); r.Err != nil {
		t.Fatal(r.Err)
	}
	p = h.part("t", 0)
	if !eq(p.Replicas, []int32{4, 2, 3}) || p.Reassigning() || !eq(p.ISR, []int32{2, 3, 4}) || p.Leader != 4 {
		t.Fatalf("completed: %+v", p)
	}
	// Cancel returns to the original replicas.
	h.mustApply(&Command{Reassign: &ReassignCmd{[]Reassignment{{Topic: "t", Partition: 0, Replicas: []int32{4, 2, 1}}}}})
	h.mustApply(&Command{Reassign: &ReassignCmd{[]Reassignment{{Topic: "t", Partition: 0, Replicas: nil}}}})
	p = h.part("t", 0)
	if !eq(p.Replicas, []int32{4, 2, 3}) || p.Reassigning() {
		t.Fatalf("cancelled: %+v", p)
	}
	res = h.mustApply(&Command{Reassign: &ReassignCmd{[]Reassignment{{Topic: "t", Partition: 0, Replicas: nil}, {Topic: "t", Partition: 0, Replicas: []int32{1, 1}}, {Topic: "t", Partition: 0, Replicas: []int32{1, 9}}}}})
	r := res.Value.([]ReassignmentResult)
	for i, code := range []string{CodeNoReassignmentInProgress, CodeInvalidReplicaAssignment, CodeInvalidReplicaAssignment} {
		if r[i].Error == nil || r[i].Error.Code != code {
			t.Fatalf("result %d: %+v, want %s", i, r[i], code)
		}
	}
	// A pure shrink to in-sync replicas completes at once.
	h.mustApply(&Command{Reassign: &ReassignCmd{[]Reassignment{{Topic: "t", Partition: 0, Replicas: []int32{2, 3}}}}})
	p = h.part("t", 0)
	if !eq(p.Replicas, []int32{2, 3}) || p.Reassigning() || p.Leader != 2 {
		t.Fatalf("shrink: %+v", p)
	}
	h.checkReplica()
}

func TestDecommission(t *testing.T) {
	h := newHarness(t)
	for i := int32(1); i <= 4; i++ {
		h.addBroker(i, "a", "r"+string(rune('0'+i)))
	}
	h.addBroker(5, "b", "")
	h.createAssigned("t", [][]int32{{1, 2, 3}, {2, 3, 1}, {2, 3, 4}}, nil)
	cmd, err := PlanDecommission(h.img(), 1, NoBroker)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range cmd.Decommission.Reassignments {
		for _, id := range r.Replicas {
			if id == 1 || id == 5 {
				t.Fatalf("decommission plan moves to broker %d: %+v", id, r)
			}
		}
	}
	h.mustApply(cmd)
	if b := h.img().Brokers[1]; !b.Decommissioning || b.State != BrokerRegistered {
		t.Fatalf("%+v", b)
	}
	for _, i := range []int32{0, 1} {
		p := h.part("t", i)
		if !eq(p.AddingReplicas, []int32{4}) {
			t.Fatalf("partition %d: %+v", i, p)
		}
		h.alterISR("t", i, append(append([]int32{}, p.ISR...), 4)...)
	}
	if b := h.img().Brokers[1]; b.State != BrokerDecommissioned || h.img().ReplicaCount()[1] != 0 || h.img().LeaderCount()[1] != 0 {
		t.Fatalf("after moves: %+v", b)
	}
	// It holds nothing now, so it can be unregistered.
	h.mustApply(&Command{UnregisterBroker: &UnregisterBrokerCmd{ID: 1}})
	h.wantErr(h.apply(&Command{UnregisterBroker: &UnregisterBrokerCmd{ID: 2}}), CodeInvalidRequest)
	// Nowhere to go: every other broker of the cell holds the partition.
	h2 := threeBrokers(t, nil)
	if _, err := PlanDecommission(h2.img(), 1, NoBroker); err == nil || err.Code != CodeInvalidReplicationFactor {
		t.Fatalf("decommission without spare broker: %v", err)
	}
	h.checkReplica()
}

// A replacement: every replica of the old broker goes to the new one, and
// while the moves run nothing can put a replica back on the old broker.
func TestDecommissionTo(t *testing.T) {
	h := newHarness(t)
	for i := int32(1); i <= 4; i++ {
		h.addBroker(i, "a", "r"+string(rune('0'+i)))
	}
	h.addBroker(5, "b", "")
	h.addBroker(6, "a", "r6")
	// Partition 2 already holds broker 4: placement chooses for it.
	h.createAssigned("t", [][]int32{{1, 2, 3}, {2, 3, 1}, {1, 3, 4}}, nil)
	for _, tc := range []struct {
		to   int32
		code string
	}{{9, CodeBrokerNotRegistered}, {1, CodeInvalidRequest}, {5, CodeInvalidReplicaAssignment}} {
		if _, err := PlanDecommission(h.img(), 1, tc.to); err == nil || err.Code != tc.code {
			t.Fatalf("decommission 1 to %d: %v, want %s", tc.to, err, tc.code)
		}
	}
	cmd, err := PlanDecommission(h.img(), 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32][]int32{0: {4, 2, 3}, 1: {2, 3, 4}, 2: {6, 3, 4}}
	for _, r := range cmd.Decommission.Reassignments {
		if !eq(r.Replicas, want[r.Partition]) {
			t.Fatalf("partition %d to %v, want %v", r.Partition, r.Replicas, want[r.Partition])
		}
	}
	h.mustApply(cmd)
	// Moving a replica back to the decommissioning broker is refused.
	res := h.mustApply(&Command{Reassign: &ReassignCmd{[]Reassignment{{Topic: "t", Partition: 0, Replicas: []int32{1, 4, 2}}}}})
	if r := res.Value.([]ReassignmentResult); r[0].Error == nil || r[0].Error.Code != CodeInvalidReplicaAssignment {
		t.Fatalf("reassignment onto a decommissioning broker: %+v", r)
	}
	if _, err := PlanDecommission(h.img(), 2, 1); err == nil || err.Code != CodeInvalidReplicaAssignment {
		t.Fatalf("decommission to a decommissioning broker: %v", err)
	}
	for i, p := range h.img().Topics["t"].Partitions {
		h.alterISR("t", int32(i), append(append([]int32{}, p.ISR...), p.AddingReplicas...)...)
	}
	if b := h.img().Brokers[1]; b.State != BrokerDecommissioned {
		t.Fatalf("after moves: %+v", b)
	}
	h.checkReplica()
}

func TestTopicsAndConfigs(t *testing.T) {
	h := threeBrokers(t, nil)
	for _, tc := range []struct {
		ct   CreateTopic
		code string
	}{
		{CreateTopic{Name: "t", Partitions: 1, ReplicationFactor: 1}, CodeTopicAlreadyExists},
		{CreateTopic{Name: "a.b", Partitions: 1, ReplicationFactor: 1}, ""},
		{CreateTopic{Name: "a_b", Partitions: 1, ReplicationFactor: 1}, CodeTopicAlreadyExists},
		{CreateTopic{Name: "bad name", Partitions: 1, ReplicationFactor: 1}, CodeInvalidTopicException},
		{CreateTopic{Name: "..", Partitions: 1, ReplicationFactor: 1}, CodeInvalidTopicException},
		{CreateTopic{Name: "z", Partitions: 0, ReplicationFactor: 1}, CodeInvalidPartitions},
		{CreateTopic{Name: "z", Partitions: 1, ReplicationFactor: 0}, CodeInvalidReplicationFactor},
		{CreateTopic{Name: "z", Partitions: 1, ReplicationFactor: 4}, CodeInvalidReplicationFactor},
		{CreateTopic{Name: "z", Assignments: [][]int32{{1, 9}}}, CodeInvalidReplicaAssignment},
		{CreateTopic{Name: "z", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"unclean.leader.election.enable": "yes"}}, CodeInvalidConfig},
	} {
		cmd, err := PlanCreateTopic(h.img(), tc.ct, h.topicID(), nil)
		if err == nil {
			err = h.apply(cmd).Err
		}
		if (err == nil) != (tc.code == "") || (err != nil && err.Code != tc.code) {
			t.Fatalf("%+v: got %v, want %q", tc.ct, err, tc.code)
		}
	}
	// The plugged validator sees every config.
	_, err := PlanCreateTopic(h.img(), CreateTopic{Name: "z", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "x"}}, h.topicID(),
		func(k, v string) (string, error) { return "", io.ErrUnexpectedEOF })
	if err == nil || err.Code != CodeInvalidConfig {
		t.Fatalf("validator: %v", err)
	}
	// Partitions: grow only, in the topic's cell with its replication factor.
	if _, err := PlanCreatePartitions(h.img(), CreatePartitions{Topic: "t", Count: 1}); err == nil || err.Code != CodeInvalidPartitions {
		t.Fatalf("shrink: %v", err)
	}
	cmd, err := PlanCreatePartitions(h.img(), CreatePartitions{Topic: "t", Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	h.mustApply(cmd)
	if tp := h.img().Topics["t"]; len(tp.Partitions) != 3 || len(tp.Partitions[2].Replicas) != 3 {
		t.Fatalf("%+v", tp.Partitions)
	}
	// Configs: incremental set and delete.
	cmd, _ = PlanAlterConfigs(h.img(), AlterConfigsRequest{Topic: "t", Set: map[string]string{"a": "1", "b": "2"}}, nil)
	h.mustApply(cmd)
	cmd, _ = PlanAlterConfigs(h.img(), AlterConfigsRequest{Topic: "t", Delete: []string{"a"}, Set: map[string]string{"c": "3"}}, nil)
	h.mustApply(cmd)
	if c := h.img().Topics["t"].Configs; len(c) != 2 || c["b"] != "2" || c["c"] != "3" {
		t.Fatalf("configs %v", c)
	}
	// Delete.
	id := h.img().Topics["t"].ID
	h.mustApply(&Command{DeleteTopic: &DeleteTopicCmd{Name: "t", ID: id}})
	h.wantErr(h.apply(&Command{DeleteTopic: &DeleteTopicCmd{Name: "t", ID: id}}), CodeUnknownTopicOrPartition)
	h.checkReplica()
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	h := threeBrokers(t, map[string]string{"x": "y"})
	h.mustApply(&Command{InitCluster: &InitClusterCmd{ClusterID: "c1"}})
	h.mustApply(&Command{SetControllerAddr: &SetControllerAddrCmd{ID: "1", Addr: "h:1"}})
	h.mustApply(&Command{DemoteBroker: &DemoteBrokerCmd{ID: 2, Demoted: true}})
	h.createTopic("u", 4, 2, nil)
	h.mustApply(&Command{Reassign: &ReassignCmd{[]Reassignment{{Topic: "t", Partition: 0, Replicas: []int32{3, 2}}}}})

	f := newFSM(0)
	f.st = NewStateFrom(h.img().Clone(), h.idx)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM(0)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	img, idx := g.image()
	a, _ := json.Marshal(h.img())
	b, _ := json.Marshal(img)
	if idx != h.idx || string(a) != string(b) {
		t.Fatalf("restored index %d (want %d), image\n%s\nwant\n%s", idx, h.idx, b, a)
	}
	// A watcher behind the snapshot gets the whole image.
	d, _, ok := g.delta(1)
	if !ok || d.Image == nil || d.Offset != int64(h.idx) {
		t.Fatalf("delta after restore: %+v", d)
	}
	h.checkReplica()
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

func TestDeterminism(t *testing.T) {
	// The same commands applied twice give byte-identical images and changes.
	run := func() (string, string) {
		h := newHarness(t)
		for i := int32(1); i <= 6; i++ {
			h.addBroker(i, []string{"a", "b"}[i%2], "r"+string(rune('0'+i%3)))
		}
		h.createTopic("x", 6, 3, nil)
		h.createTopic("y", 3, 2, nil)
		h.mustApply(&Command{FenceBroker: &FenceBrokerCmd{ID: 2, Admin: true}})
		h.mustApply(&Command{DemoteBroker: &DemoteBrokerCmd{ID: 4, Demoted: true}})
		var changes []*Change
		res := h.mustApply(&Command{ElectLeaders: &ElectLeadersCmd{ElectLeadersRequest{Type: ElectPreferred}}})
		changes = append(changes, res.Change)
		a, _ := json.Marshal(h.img())
		c, _ := json.Marshal(changes)
		h.checkReplica()
		return string(a), string(c)
	}
	a1, c1 := run()
	a2, c2 := run()
	if a1 != a2 || c1 != c2 {
		t.Fatal("same commands, different results")
	}
}

func TestAllocateProducerIDs(t *testing.T) {
	h := threeBrokers(t, nil)
	var last int64 = -1
	for i := 0; i < 3; i++ {
		id := int32(i%3 + 1)
		res := h.mustApply(&Command{AllocateProducerIDs: &AllocateProducerIDsCmd{BrokerID: id, BrokerEpoch: h.img().Brokers[id].Epoch}})
		blk := res.Value.(ProducerIDBlock)
		if blk.FirstID <= last || blk.Count != ProducerIDBlockSize {
			t.Fatalf("block %+v after %d", blk, last)
		}
		last = blk.FirstID + blk.Count - 1
	}
	h.wantErr(h.apply(&Command{AllocateProducerIDs: &AllocateProducerIDsCmd{BrokerID: 1, BrokerEpoch: 12345}}), CodeStaleBrokerEpoch)
	h.checkReplica()
}

func TestUndemoteTakesOverFromDemotedLeader(t *testing.T) {
	h := threeBrokers(t, nil)
	h.mustApply(&Command{DemoteBroker: &DemoteBrokerCmd{ID: 1, Demoted: true}})
	h.mustApply(&Command{DemoteBroker: &DemoteBrokerCmd{ID: 2, Demoted: true}})
	wantPart(t, h.part("t", 0), 3, []int32{1, 2, 3})
	h.mustApply(&Command{FenceBroker: &FenceBrokerCmd{ID: 3, Admin: true}})
	wantPart(t, h.part("t", 0), 1, []int32{1, 2}) // both demoted: the first in replica order
	h.mustApply(&Command{DemoteBroker: &DemoteBrokerCmd{ID: 2, Demoted: false}})
	wantPart(t, h.part("t", 0), 2, []int32{1, 2})
	h.checkReplica()
}

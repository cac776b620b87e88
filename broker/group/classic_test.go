package group

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// stableGroup brings two dynamic members into a stable generation and
// returns their ids (leader first) and the generation.
func stableGroup(t *testing.T, h *harness, group string) (leader, follower string, gen int32) {
	t.Helper()
	a := h.joinNew("ja", group)
	// The first member alone completes the join phase at once (no
	// initial delay in testConfig): generation 1 with a.
	ra := h.joinResp("ja")
	wantCode(t, "join a", ra.ErrorCode, 0)
	if ra.LeaderID != a || len(ra.Members) != 1 {
		t.Fatalf("join a: leader %q members %d", ra.LeaderID, len(ra.Members))
	}
	h.sync("sa", group, a, ra.Generation, map[string]string{a: "all"})
	wantCode(t, "sync a", h.syncResp("sa").ErrorCode, 0)

	b := h.joinNew("jb", group)
	h.noReply("jb") // held until a rejoins
	wantCode(t, "heartbeat a during rebalance", h.heartbeat(group, a, ra.Generation, nil), kerr.RebalanceInProgress.Code)
	h.join("ja2", group, a, nil)
	ra2, rb := h.joinResp("ja2"), h.joinResp("jb")
	if ra2.Generation != ra.Generation+1 || rb.Generation != ra2.Generation {
		t.Fatalf("generations %d %d after %d", ra2.Generation, rb.Generation, ra.Generation)
	}
	if ra2.LeaderID != a || len(ra2.Members) != 2 || len(rb.Members) != 0 {
		t.Fatalf("leader %q, leader sees %d members, follower sees %d", ra2.LeaderID, len(ra2.Members), len(rb.Members))
	}
	if string(ra2.Members[1].ProtocolMetadata) != "md-range" {
		t.Fatalf("member metadata %q", ra2.Members[1].ProtocolMetadata)
	}
	gen = ra2.Generation
	h.sync("sb", group, b, gen, nil)
	h.noReply("sb") // waits for the leader
	h.sync("sa2", group, a, gen, map[string]string{a: "p0", b: "p1"})
	if got := string(h.syncResp("sa2").MemberAssignment); got != "p0" {
		t.Fatalf("leader assignment %q", got)
	}
	if got := string(h.syncResp("sb").MemberAssignment); got != "p1" {
		t.Fatalf("follower assignment %q", got)
	}
	return a, b, gen
}

func TestJoinSyncHeartbeat(t *testing.T) {
	h := newHarness(t, testConfig())
	a, b, gen := stableGroup(t, h, "g")
	wantCode(t, "heartbeat a", h.heartbeat("g", a, gen, nil), 0)
	wantCode(t, "heartbeat b", h.heartbeat("g", b, gen, nil), 0)
	wantCode(t, "heartbeat old generation", h.heartbeat("g", a, gen-1, nil), kerr.IllegalGeneration.Code)
	wantCode(t, "heartbeat unknown member", h.heartbeat("g", "nobody", gen, nil), kerr.UnknownMemberID.Code)
	wantCode(t, "heartbeat unknown group", h.heartbeat("nogroup", a, gen, nil), kerr.UnknownMemberID.Code)

	dg := h.c.DescribeGroup("g", 5)
	if dg.State != "Stable" || dg.Protocol != "range" || len(dg.Members) != 2 || string(dg.Members[1].MemberAssignment) != "p1" {
		t.Fatalf("describe: %+v", dg)
	}
	// A stable follower rejoining with the same metadata gets the current
	// generation without a rebalance.
	h.join("jb", "g", b, nil)
	if r := h.joinResp("jb"); r.ErrorCode != 0 || r.Generation != gen {
		t.Fatalf("follower rejoin: %+v", r)
	}
	wantCode(t, "heartbeat a after follower rejoin", h.heartbeat("g", a, gen, nil), 0)
}

func TestJoinValidation(t *testing.T) {
	h := newHarness(t, testConfig())
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version = 5
	r.Group = "g"
	r.ProtocolType = "consumer"
	r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range"}}
	r.SessionTimeoutMillis = 1000 // below group.min.session.timeout.ms
	h.run(h.c.JoinGroup(h.now, 1, Client{}, r))
	wantCode(t, "short session", h.joinResp(1).ErrorCode, kerr.InvalidSessionTimeout.Code)

	r.SessionTimeoutMillis = 10_000
	r.Group = ""
	h.run(h.c.JoinGroup(h.now, 2, Client{}, r))
	wantCode(t, "empty group", h.joinResp(2).ErrorCode, kerr.InvalidGroupID.Code)

	r.Group = "g"
	r.Protocols = nil
	h.run(h.c.JoinGroup(h.now, 3, Client{}, r))
	wantCode(t, "no protocols", h.joinResp(3).ErrorCode, kerr.InconsistentGroupProtocol.Code)

	r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range"}}
	r.MemberID = "ghost"
	h.run(h.c.JoinGroup(h.now, 4, Client{}, r))
	wantCode(t, "unknown member of unknown group", h.joinResp(4).ErrorCode, kerr.UnknownMemberID.Code)

	// A member with no protocol in common with the group is refused.
	stableGroup(t, h, "g2")
	h.join(5, "g2", "", nil, "roundrobin")
	wantCode(t, "inconsistent protocol", h.joinResp(5).ErrorCode, kerr.InconsistentGroupProtocol.Code)

	// v3 and older have no MEMBER_ID_REQUIRED round trip.
	r.MemberID = ""
	r.Version = 3
	r.Group = "old"
	h.run(h.c.JoinGroup(h.now, 6, Client{ID: "c"}, r))
	if resp := h.joinResp(6); resp.ErrorCode != 0 || resp.MemberID == "" || resp.LeaderID != resp.MemberID {
		t.Fatalf("v3 join: %+v", resp)
	}
}

func TestLeaveAndSessionTimeout(t *testing.T) {
	h := newHarness(t, testConfig())
	a, b, gen := stableGroup(t, h, "g")

	// b leaves: a rebalance starts; a rejoins alone.
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version = 5
	lr.Group = "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: b}, {MemberID: "nobody"}}
	h.run(h.c.LeaveGroup(h.now, "leave", lr))
	resp := h.reply("leave").(*kmsg.LeaveGroupResponse)
	wantCode(t, "leave b", resp.Members[0].ErrorCode, 0)
	wantCode(t, "leave unknown", resp.Members[1].ErrorCode, kerr.UnknownMemberID.Code)
	wantCode(t, "a after b left", h.heartbeat("g", a, gen, nil), kerr.RebalanceInProgress.Code)
	h.join("ja", "g", a, nil)
	ra := h.joinResp("ja")
	if ra.Generation != gen+1 || len(ra.Members) != 1 {
		t.Fatalf("rejoin after leave: %+v", ra)
	}
	h.sync("sa", "g", a, ra.Generation, map[string]string{a: "all"})
	wantCode(t, "sync", h.syncResp("sa").ErrorCode, 0)

	// a stops heartbeating: after its session timeout it is removed and
	// the group becomes empty.
	h.advance(9 * time.Second)
	wantCode(t, "heartbeat within session", h.heartbeat("g", a, ra.Generation, nil), 0)
	h.advance(9 * time.Second)
	if dg := h.c.DescribeGroup("g", 5); dg.State != "Stable" {
		t.Fatalf("state before expiry: %s", dg.State)
	}
	h.advance(2 * time.Second)
	if dg := h.c.DescribeGroup("g", 5); dg.State != "Empty" || len(dg.Members) != 0 {
		t.Fatalf("state after expiry: %s with %d members", dg.State, len(dg.Members))
	}
	wantCode(t, "expired member", h.heartbeat("g", a, ra.Generation, nil), kerr.UnknownMemberID.Code)
}

func TestRebalanceTimeoutDropsMembersThatDoNotRejoin(t *testing.T) {
	h := newHarness(t, testConfig())
	a, b, gen := stableGroup(t, h, "g")
	// a rejoins (asking for a rebalance); b keeps heartbeating but never
	// rejoins: after the rebalance timeout b is dropped.
	h.join("ja", "g", a, nil, "range", "roundrobin")
	h.noReply("ja")
	for i := 0; i < 3; i++ {
		h.advance(9 * time.Second)
		wantCode(t, "b heartbeat", h.heartbeat("g", b, gen, nil), kerr.RebalanceInProgress.Code)
	}
	h.advance(4 * time.Second) // 31s > 30s rebalance timeout
	ra := h.joinResp("ja")
	if ra.ErrorCode != 0 || len(ra.Members) != 1 || ra.Generation != gen+1 {
		t.Fatalf("join after rebalance timeout: %+v", ra)
	}
	wantCode(t, "dropped member", h.heartbeat("g", b, gen, nil), kerr.UnknownMemberID.Code)
}

func TestStaticMemberRestartsWithoutRebalance(t *testing.T) {
	h := newHarness(t, testConfig())
	inst := kmsg.StringPtr("instance-1")
	h.join("j1", "g", "", inst)
	r1 := h.joinResp("j1")
	wantCode(t, "static join", r1.ErrorCode, 0) // no MEMBER_ID_REQUIRED for static members
	h.sync("s1", "g", r1.MemberID, r1.Generation, map[string]string{r1.MemberID: "mine"})
	wantCode(t, "sync", h.syncResp("s1").ErrorCode, 0)
	b := h.joinNew("jb", "g")
	h.join("j1b", "g", r1.MemberID, inst)
	r1b, rb := h.joinResp("j1b"), h.joinResp("jb")
	gen := r1b.Generation
	h.sync("sb", "g", b, gen, nil)
	h.sync("s1b", "g", r1.MemberID, gen, map[string]string{r1.MemberID: "mine", b: "yours"})
	wantCode(t, "sync leader", h.syncResp("s1b").ErrorCode, 0)
	wantCode(t, "sync follower", h.syncResp("sb").ErrorCode, 0)
	_ = rb

	// The static member restarts: it joins with no member id and the same
	// instance id, and gets the current generation with no rebalance.
	h.advance(5 * time.Second)
	h.join("j2", "g", "", inst)
	r2 := h.joinResp("j2")
	wantCode(t, "static rejoin", r2.ErrorCode, 0)
	if r2.Generation != gen || r2.MemberID == r1.MemberID {
		t.Fatalf("static rejoin: generation %d (want %d), member %q", r2.Generation, gen, r2.MemberID)
	}
	// It was the leader: v9 says skip assignment.
	if !r2.SkipAssignment || r2.LeaderID != r2.MemberID {
		t.Fatalf("static leader rejoin: skip %v leader %q", r2.SkipAssignment, r2.LeaderID)
	}
	h.sync("s2", "g", r2.MemberID, gen, nil)
	if got := string(h.syncResp("s2").MemberAssignment); got != "mine" {
		t.Fatalf("assignment after static rejoin %q", got)
	}
	wantCode(t, "other member unaffected", h.heartbeat("g", b, gen, nil), 0)
	// The old incarnation is fenced.
	wantCode(t, "old instance", h.heartbeat("g", r1.MemberID, gen, inst), kerr.FencedInstanceID.Code)
	if dg := h.c.DescribeGroup("g", 5); dg.State != "Stable" || *dg.Members[0].InstanceID != "instance-1" {
		t.Fatalf("describe after static rejoin: %+v", dg)
	}
}

func TestInitialRebalanceDelayGathersMembers(t *testing.T) {
	cfg := DefaultConfig() // 3s initial delay
	h := newHarness(t, cfg)
	a := h.joinNew("ja", "g")
	h.advance(2 * time.Second)
	b := h.joinNew("jb", "g") // extends the delay
	h.advance(2 * time.Second)
	h.noReply("ja")
	h.advance(2 * time.Second)
	ra, rb := h.joinResp("ja"), h.joinResp("jb")
	if ra.Generation != 1 || rb.Generation != 1 || len(ra.Members)+len(rb.Members) != 2 {
		t.Fatalf("delayed join: gen %d/%d, members %d/%d", ra.Generation, rb.Generation, len(ra.Members), len(rb.Members))
	}
	if ra.LeaderID != a || rb.MemberID != b {
		t.Fatalf("leader %q member %q", ra.LeaderID, rb.MemberID)
	}
}

func TestGroupMaxSize(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSize = 1
	h := newHarness(t, cfg)
	h.joinNew("ja", "g")
	h.joinResp("ja")
	h.join("jb", "g", "", nil)
	wantCode(t, "second member", h.joinResp("jb").ErrorCode, kerr.GroupMaxSizeReached.Code)
}

func TestSyncErrors(t *testing.T) {
	h := newHarness(t, testConfig())
	a, _, gen := stableGroup(t, h, "g")
	h.sync(1, "g", a, gen+1, nil)
	wantCode(t, "wrong generation", h.syncResp(1).ErrorCode, kerr.IllegalGeneration.Code)
	h.sync(2, "g", "nobody", gen, nil)
	wantCode(t, "unknown member", h.syncResp(2).ErrorCode, kerr.UnknownMemberID.Code)
	r := kmsg.NewPtrSyncGroupRequest()
	r.Version = 5
	r.Group, r.MemberID, r.Generation = "g", a, gen
	r.Protocol = kmsg.StringPtr("roundrobin")
	h.run(h.c.SyncGroup(h.now, 3, r))
	wantCode(t, "wrong protocol", h.syncResp(3).ErrorCode, kerr.InconsistentGroupProtocol.Code)
}

func TestSyncWriteFailureRebalances(t *testing.T) {
	h := newHarness(t, testConfig())
	a := h.joinNew("ja", "g")
	ra := h.joinResp("ja")
	h.failCode = kerr.NotEnoughReplicas.Code
	h.sync("sa", "g", a, ra.Generation, map[string]string{a: "x"})
	wantCode(t, "sync with failed write", h.syncResp("sa").ErrorCode, kerr.CoordinatorNotAvailable.Code)
	h.failCode = 0
	wantCode(t, "heartbeat", h.heartbeat("g", a, ra.Generation, nil), kerr.RebalanceInProgress.Code)
}

func TestDescribeListDelete(t *testing.T) {
	h := newHarness(t, testConfig())
	stableGroup(t, h, "busy")
	wantCode(t, "standalone commit", h.commit("solo", "", -1, "t", 0, 5), 0)

	all := h.c.ListGroups(nil, nil)
	if len(all) != 2 || all[0].Group != "busy" || all[0].GroupState != "Stable" || all[1].Group != "solo" || all[1].GroupState != "Empty" || all[1].GroupType != "classic" {
		t.Fatalf("list: %+v", all)
	}
	if got := h.c.ListGroups([]string{"stable"}, nil); len(got) != 1 || got[0].Group != "busy" {
		t.Fatalf("list stable: %+v", got)
	}
	if got := h.c.ListGroups(nil, []string{"consumer"}); len(got) != 0 {
		t.Fatalf("list consumer-type: %+v", got)
	}
	if dg := h.c.DescribeGroup("missing", 5); dg.State != "Dead" || dg.ErrorCode != 0 {
		t.Fatalf("describe missing v5: %+v", dg)
	}
	if dg := h.c.DescribeGroup("missing", 6); dg.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("describe missing v6: %+v", dg)
	}

	del := func(id string) *kmsg.DeleteGroupsResponseGroup {
		h.run(h.c.DeleteGroup(h.now, "del-"+id, id, 2))
		return &h.reply("del-" + id).(*kmsg.DeleteGroupsResponse).Groups[0]
	}
	wantCode(t, "delete busy", del("busy").ErrorCode, kerr.NonEmptyGroup.Code)
	wantCode(t, "delete missing", del("missing").ErrorCode, kerr.GroupIDNotFound.Code)
	wantCode(t, "delete solo", del("solo").ErrorCode, 0)
	if h.committed("solo", "t", 0) != -1 {
		t.Fatal("offsets survived group deletion")
	}
	h.restart(testConfig())
	if h.committed("solo", "t", 0) != -1 {
		t.Fatal("offsets came back after a restart")
	}
}

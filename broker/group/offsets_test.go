package group

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestCommitValidation(t *testing.T) {
	h := newHarness(t, testConfig())
	a, b, gen := stableGroup(t, h, "g")
	wantCode(t, "member commit", h.commit("g", a, gen, "t", 0, 10), 0)
	if got := h.committed("g", "t", 0); got != 10 {
		t.Fatalf("committed %d", got)
	}
	wantCode(t, "old generation", h.commit("g", a, gen-1, "t", 0, 11), kerr.IllegalGeneration.Code)
	wantCode(t, "unknown member", h.commit("g", "nobody", gen, "t", 0, 11), kerr.UnknownMemberID.Code)
	wantCode(t, "no generation on a live group", h.commit("g", "", -1, "t", 0, 11), kerr.UnknownMemberID.Code)
	wantCode(t, "unknown group with a generation", h.commit("nogroup", a, 3, "t", 0, 1), kerr.IllegalGeneration.Code)

	// During a rebalance, members of the current generation get
	// REBALANCE_IN_PROGRESS.
	h.join("ja", "g", a, nil, "range", "roundrobin")
	wantCode(t, "commit during rebalance", h.commit("g", b, gen, "t", 1, 5), kerr.RebalanceInProgress.Code)
	if got := h.committed("g", "t", 0); got != 10 {
		t.Fatalf("committed after refused commits: %d", got)
	}

	// Unknown partitions and oversized metadata are refused per partition.
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version = 8
	r.Group = "solo"
	p0 := kmsg.NewOffsetCommitRequestTopicPartition()
	p0.Partition, p0.Offset = 0, 1
	p1 := p0
	p1.Partition = 1
	p1.Metadata = kmsg.StringPtr(strings.Repeat("x", 5000))
	p2 := p0
	p2.Partition = 9
	r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{p0, p1, p2}}}
	h.run(h.c.OffsetCommit(h.now, "mixed", r, func(_ string, p int32) bool { return p < 2 }))
	ps := h.reply("mixed").(*kmsg.OffsetCommitResponse).Topics[0].Partitions
	wantCode(t, "p0", ps[0].ErrorCode, 0)
	wantCode(t, "p1 metadata", ps[1].ErrorCode, kerr.OffsetMetadataTooLarge.Code)
	wantCode(t, "p9 unknown", ps[2].ErrorCode, kerr.UnknownTopicOrPartition.Code)
}

func TestCommitWaitsForTheWrite(t *testing.T) {
	h := newHarness(t, testConfig())
	h.hold = true
	h.run(h.c.OffsetCommit(h.now, "c", commitReq("g", "t", 0, 42), all))
	h.noReply("c")
	if got := h.committed("g", "t", 0); got != -1 {
		t.Fatalf("offset visible before it was persisted: %d", got)
	}
	h.release()
	wantCode(t, "commit", h.reply("c").(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode, 0)
	if got := h.committed("g", "t", 0); got != 42 {
		t.Fatalf("committed %d", got)
	}

	// A failed write fails the commit and leaves the old offset.
	h.failCode = kerr.KafkaStorageError.Code
	h.run(h.c.OffsetCommit(h.now, "c2", commitReq("g", "t", 0, 43), all))
	wantCode(t, "failed write", h.reply("c2").(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode, kerr.NotCoordinator.Code)
	if got := h.committed("g", "t", 0); got != 42 {
		t.Fatalf("committed after a failed write: %d", got)
	}
}

func all(string, int32) bool { return true }

func commitReq(group, topic string, part int32, off int64) *kmsg.OffsetCommitRequest {
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version = 8
	r.Group = group
	p := kmsg.NewOffsetCommitRequestTopicPartition()
	p.Partition, p.Offset = part, off
	r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{p}}}
	return r
}

func TestRestartRestoresGroupsAndOffsets(t *testing.T) {
	h := newHarness(t, testConfig())
	a, b, gen := stableGroup(t, h, "g")
	wantCode(t, "commit", h.commit("g", a, gen, "t", 0, 100), 0)
	wantCode(t, "commit", h.commit("g", b, gen, "t", 1, 200), 0)
	wantCode(t, "commit", h.commit("g", b, gen, "t", 1, 201), 0)
	wantCode(t, "standalone", h.commit("solo", "", -1, "u", 3, 7), 0)

	h.restart(testConfig())
	if h.committed("g", "t", 0) != 100 || h.committed("g", "t", 1) != 201 || h.committed("solo", "u", 3) != 7 {
		t.Fatal("offsets not restored")
	}
	// Members keep their generation and assignment: heartbeats and
	// syncs work without a rebalance.
	wantCode(t, "heartbeat after restart", h.heartbeat("g", a, gen, nil), 0)
	h.sync("s", "g", b, gen, nil)
	if got := string(h.syncResp("s").MemberAssignment); got != "p1" {
		t.Fatalf("assignment after restart %q", got)
	}
	if dg := h.c.DescribeGroup("g", 5); dg.State != "Stable" || len(dg.Members) != 2 || dg.Members[0].MemberID != a {
		t.Fatalf("describe after restart: %+v", dg)
	}
	// Members that do not come back expire as usual.
	h.advance(11 * time.Second)
	if dg := h.c.DescribeGroup("g", 5); dg.State != "Empty" {
		t.Fatalf("state after members expired: %s", dg.State)
	}
}

func TestOffsetExpiry(t *testing.T) {
	cfg := testConfig()
	cfg.OffsetsRetention = time.Hour
	cfg.OffsetsRetentionCheckInterval = time.Minute
	h := newHarness(t, cfg)
	a, b, gen := stableGroup(t, h, "g")
	wantCode(t, "commit", h.commit("g", a, gen, "t", 0, 5), 0)
	wantCode(t, "standalone", h.commit("solo", "", -1, "t", 0, 9), 0)

	// Members keep their offsets alive however old they are.
	for i := 0; i < 70*12; i++ {
		h.advance(5 * time.Second)
		h.heartbeat("g", a, gen, nil)
		h.heartbeat("g", b, gen, nil)
	}
	if h.committed("g", "t", 0) != 5 {
		t.Fatal("offsets of a group with members expired")
	}
	if h.committed("solo", "t", 0) != -1 {
		t.Fatal("standalone offsets older than the retention did not expire")
	}
	// Once the group is empty, the clock starts.
	for _, m := range []string{a, b} {
		lr := kmsg.NewPtrLeaveGroupRequest()
		lr.Version = 2
		lr.Group, lr.MemberID = "g", m
		h.run(h.c.LeaveGroup(h.now, "l"+m, lr))
	}
	h.advance(59 * time.Minute)
	if h.committed("g", "t", 0) != 5 {
		t.Fatal("offsets expired before the retention after the group emptied")
	}
	h.advance(2 * time.Minute)
	if h.committed("g", "t", 0) != -1 {
		t.Fatal("offsets of an empty group did not expire")
	}
	if got := h.c.ListGroups(nil, nil); len(got) != 0 {
		t.Fatalf("groups left after expiry: %+v", got)
	}
	h.restart(cfg)
	if h.committed("g", "t", 0) != -1 || len(h.c.ListGroups(nil, nil)) != 0 {
		t.Fatal("expired offsets or groups came back after a restart")
	}
}

func TestOffsetDelete(t *testing.T) {
	h := newHarness(t, testConfig())
	// A "consumer" group subscribed to topic t (by its member metadata).
	md := kmsg.NewConsumerMemberMetadata()
	md.Topics = []string{"t"}
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version = 3
	r.Group = "g"
	r.SessionTimeoutMillis = 10000
	r.ProtocolType = "consumer"
	r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: md.AppendTo(nil)}}
	h.run(h.c.JoinGroup(h.now, "j", Client{ID: "c"}, r))
	jr := h.joinResp("j")
	h.sync("s", "g", jr.MemberID, jr.Generation, map[string]string{jr.MemberID: ""})
	h.syncResp("s")
	wantCode(t, "commit t", h.commit("g", jr.MemberID, jr.Generation, "t", 0, 1), 0)
	wantCode(t, "commit u", h.commit("g", jr.MemberID, jr.Generation, "u", 0, 1), 0)

	dr := kmsg.NewPtrOffsetDeleteRequest()
	dr.Group = "g"
	dr.Topics = []kmsg.OffsetDeleteRequestTopic{
		{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
		{Topic: "u", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
	}
	h.run(h.c.OffsetDelete(h.now, "d", dr))
	resp := h.reply("d").(*kmsg.OffsetDeleteResponse)
	wantCode(t, "top level", resp.ErrorCode, 0)
	wantCode(t, "subscribed topic", resp.Topics[0].Partitions[0].ErrorCode, kerr.GroupSubscribedToTopic.Code)
	wantCode(t, "unsubscribed topic", resp.Topics[1].Partitions[0].ErrorCode, 0)
	if h.committed("g", "t", 0) != 1 || h.committed("g", "u", 0) != -1 {
		t.Fatal("wrong offsets deleted")
	}
	dr.Group = "missing"
	h.run(h.c.OffsetDelete(h.now, "d2", dr))
	wantCode(t, "missing group", h.reply("d2").(*kmsg.OffsetDeleteResponse).ErrorCode, kerr.GroupIDNotFound.Code)
}

func TestFetchAllOffsets(t *testing.T) {
	h := newHarness(t, testConfig())
	h.commit("g", "", -1, "b", 1, 11)
	h.commit("g", "a", -1, "a", 0, 10)
	rg := h.c.OffsetFetch("g", nil, nil, -1)
	if len(rg.Topics) != 2 || rg.Topics[0].Topic != "a" || rg.Topics[1].Partitions[0].Offset != 11 {
		t.Fatalf("fetch all: %+v", rg)
	}
	if rg := h.c.OffsetFetch("nobody", nil, nil, -1); rg.ErrorCode != 0 || len(rg.Topics) != 0 {
		t.Fatalf("fetch all of unknown group: %+v", rg)
	}
}

func TestPartitionForMatchesKafka(t *testing.T) {
	// Java: Math.abs("test".hashCode()) % 50 == 48; "" hashes to 0.
	for _, tc := range []struct {
		group string
		want  int32
	}{{"test", 48}, {"", 0}, {"my-group", javaMod("my-group", 50)}} {
		if got := PartitionFor(tc.group, 50); got != tc.want {
			t.Errorf("PartitionFor(%q) = %d, want %d", tc.group, got, tc.want)
		}
	}
}

// javaMod computes abs(hashCode) % n with 64-bit arithmetic, independently
// of PartitionFor's int32 overflow handling.
func javaMod(s string, n int64) int32 {
	var h int64
	for _, r := range s {
		h = (31*h + int64(r)) % (1 << 32)
	}
	h32 := int32(uint32(h))
	return int32(int64(h32&0x7fffffff) % n)
}

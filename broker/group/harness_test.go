package group

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// harness drives a Coordinator with a fake clock, persisting its writes to
// an in-memory log (or failing them with failCode) and collecting replies
// by token.
type harness struct {
	t        *testing.T
	c        *Coordinator
	now      time.Time
	log      []Record
	replies  map[any]kmsg.Response
	failCode int16
	// hold, when set, keeps Appends unreported (in held) instead of
	// persisting them at once.
	hold bool
	held []*Append
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, now: time.Unix(1_700_000_000, 0), replies: map[any]kmsg.Response{}}
	h.c = New(cfg, 0)
	h.run(h.c.Start(h.now))
	return h
}

// testConfig is Kafka's defaults with no initial rebalance delay.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.InitialRebalanceDelay = 0
	return cfg
}

func (h *harness) run(out Output) {
	for {
		for _, r := range out.Replies {
			if _, dup := h.replies[r.To]; dup {
				h.t.Fatalf("two replies to %v", r.To)
			}
			h.replies[r.To] = r.Resp
		}
		if out.Append == nil {
			return
		}
		if h.hold {
			h.held = append(h.held, out.Append)
			return
		}
		if h.failCode == 0 {
			h.log = append(h.log, out.Append.Records...)
		}
		out = h.c.Persisted(h.now, out.Append.ID, h.failCode)
	}
}

// release persists the held appends in order.
func (h *harness) release() {
	held := h.held
	h.held, h.hold = nil, false
	for _, a := range held {
		h.log = append(h.log, a.Records...)
		h.run(h.c.Persisted(h.now, a.ID, 0))
	}
}

func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.run(h.c.Tick(h.now))
}

// reply returns (and forgets) the reply to token, failing if there is none.
func (h *harness) reply(token any) kmsg.Response {
	h.t.Helper()
	r, ok := h.replies[token]
	if !ok {
		h.t.Fatalf("no reply to %v", token)
	}
	delete(h.replies, token)
	return r
}

func (h *harness) noReply(token any) {
	h.t.Helper()
	if r, ok := h.replies[token]; ok {
		h.t.Fatalf("unexpected reply to %v: %+v", token, r)
	}
}

// join sends a JoinGroup and returns the token.
func (h *harness) join(token any, group, memberID string, instance *string, protocols ...string) {
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version = 9
	r.Group = group
	r.SessionTimeoutMillis = 10_000
	r.RebalanceTimeoutMillis = 30_000
	r.MemberID = memberID
	r.InstanceID = instance
	r.ProtocolType = "consumer"
	if len(protocols) == 0 {
		protocols = []string{"range"}
	}
	for _, p := range protocols {
		r.Protocols = append(r.Protocols, kmsg.JoinGroupRequestProtocol{Name: p, Metadata: []byte("md-" + p)})
	}
	h.run(h.c.JoinGroup(h.now, token, Client{ID: "cli", Host: "/127.0.0.1"}, r))
}

func (h *harness) joinResp(token any) *kmsg.JoinGroupResponse {
	h.t.Helper()
	return h.reply(token).(*kmsg.JoinGroupResponse)
}

// joinNew joins a dynamic member (two round trips with MEMBER_ID_REQUIRED)
// and returns its member id; the join itself is held under token.
func (h *harness) joinNew(token any, group string) string {
	h.t.Helper()
	first := struct{ t any }{token}
	h.join(first, group, "", nil)
	r := h.joinResp(first)
	if r.ErrorCode != kerr.MemberIDRequired.Code {
		h.t.Fatalf("first join: error %d, want MEMBER_ID_REQUIRED", r.ErrorCode)
	}
	h.join(token, group, r.MemberID, nil)
	return r.MemberID
}

func (h *harness) sync(token any, group, memberID string, gen int32, assign map[string]string) {
	r := kmsg.NewPtrSyncGroupRequest()
	r.Version = 5
	r.Group, r.MemberID, r.Generation = group, memberID, gen
	for id, a := range assign {
		r.GroupAssignment = append(r.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: []byte(a)})
	}
	h.run(h.c.SyncGroup(h.now, token, r))
}

func (h *harness) syncResp(token any) *kmsg.SyncGroupResponse {
	h.t.Helper()
	return h.reply(token).(*kmsg.SyncGroupResponse)
}

func (h *harness) heartbeat(group, memberID string, gen int32, instance *string) int16 {
	h.t.Helper()
	r := kmsg.NewPtrHeartbeatRequest()
	r.Version = 4
	r.Group, r.MemberID, r.Generation, r.InstanceID = group, memberID, gen, instance
	token := struct{ hb string }{memberID}
	h.run(h.c.Heartbeat(h.now, token, r))
	return h.reply(token).(*kmsg.HeartbeatResponse).ErrorCode
}

func (h *harness) commit(group, memberID string, gen int32, topic string, part int32, off int64) int16 {
	h.t.Helper()
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version = 8
	r.Group, r.MemberID, r.Generation = group, memberID, gen
	p := kmsg.NewOffsetCommitRequestTopicPartition()
	p.Partition, p.Offset, p.Metadata = part, off, kmsg.StringPtr("md")
	r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{p}}}
	token := struct{ commit int64 }{off}
	h.run(h.c.OffsetCommit(h.now, token, r, func(string, int32) bool { return true }))
	return h.reply(token).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
}

func (h *harness) committed(group, topic string, part int32) int64 {
	h.t.Helper()
	rg := h.c.OffsetFetch(group, []kmsg.OffsetFetchRequestGroupTopic{{Topic: topic, Partitions: []int32{part}}}, nil, -1)
	if rg.ErrorCode != 0 {
		h.t.Fatalf("offset fetch: error %d", rg.ErrorCode)
	}
	return rg.Topics[0].Partitions[0].Offset
}

// restart replays the log into a new coordinator, as a broker restart does.
func (h *harness) restart(cfg Config) {
	h.t.Helper()
	c := New(cfg, 0)
	for _, r := range h.log {
		if err := c.Replay(r.Key, r.Value); err != nil {
			h.t.Fatalf("replay: %v", err)
		}
	}
	h.c = c
	h.run(c.Start(h.now))
}

func errName(code int16) string {
	if code == 0 {
		return "NONE"
	}
	return kerr.ErrorForCode(code).Error()
}

func wantCode(t *testing.T, what string, got, want int16) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %s, want %s", what, errName(got), errName(want))
	}
}

package group

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fakeTopics is topic metadata for KIP-848 tests: topic name → partitions,
// ids derived from the name.
type fakeTopics map[string]int32

func topicID(name string) [16]byte {
	var id [16]byte
	copy(id[:], name)
	id[15] = 1
	return id
}

func (f fakeTopics) ByName(name string) ([16]byte, int32, bool) {
	n, ok := f[name]
	return topicID(name), n, ok
}

func (f fakeTopics) ByID(id [16]byte) (string, bool) {
	for name := range f {
		if topicID(name) == id {
			return name, true
		}
	}
	return "", false
}

func (f fakeTopics) Names() []string { return sortedKeys(f) }

// cmember848 is a simulated KIP-848 client: it remembers its epoch and
// what it owns, and acknowledges revocations on its next heartbeat, as
// franz-go and the Java client do.
type cmember848 struct {
	id       string
	epoch    int32
	owned    map[string][]int32
	topics   []string
	assignor string
}

func (h *harness) hb848(m *cmember848, topics fakeTopics) *kmsg.ConsumerGroupHeartbeatResponse {
	h.t.Helper()
	r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	r.Version = 1
	r.Group = "g"
	r.MemberID = m.id
	r.MemberEpoch = m.epoch
	r.RebalanceTimeoutMillis = 60_000
	r.SubscribedTopicNames = m.topics
	if m.assignor != "" {
		r.ServerAssignor = &m.assignor
	}
	r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	for _, t := range sortedKeys(m.owned) {
		if len(m.owned[t]) > 0 {
			r.Topics = append(r.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: topicID(t), Partitions: m.owned[t]})
		}
	}
	token := struct{ hb848 string }{m.id}
	h.run(h.c.ConsumerGroupHeartbeat(h.now, token, Client{ID: "c", Host: "/h"}, r, topics))
	resp := h.reply(token).(*kmsg.ConsumerGroupHeartbeatResponse)
	if resp.ErrorCode != 0 {
		return resp
	}
	m.epoch = resp.MemberEpoch
	if resp.Assignment != nil {
		m.owned = map[string][]int32{}
		for _, t := range resp.Assignment.Topics {
			name, _ := topics.ByID(t.TopicID)
			m.owned[name] = t.Partitions
		}
	}
	return resp
}

// settle heartbeats every member until no assignment changes.
func (h *harness) settle(ms []*cmember848, topics fakeTopics) {
	h.t.Helper()
	for round := 0; round < 20; round++ {
		changed := false
		for _, m := range ms {
			before := fmt.Sprint(m.epoch, m.owned)
			if resp := h.hb848(m, topics); resp.ErrorCode != 0 {
				h.t.Fatalf("heartbeat of %s: %s", m.id, errName(resp.ErrorCode))
			}
			if fmt.Sprint(m.epoch, m.owned) != before {
				changed = true
			}
		}
		if !changed {
			return
		}
	}
	h.t.Fatal("assignment did not settle in 20 rounds")
}

// checkExclusive fails if a partition is owned twice or, when complete, if
// a partition of topics is owned by no one.
func checkExclusive(t *testing.T, ms []*cmember848, topics fakeTopics, complete bool) {
	t.Helper()
	owner := map[string]string{}
	for _, m := range ms {
		for tp, ps := range m.owned {
			for _, p := range ps {
				k := fmt.Sprintf("%s-%d", tp, p)
				if o, dup := owner[k]; dup {
					t.Fatalf("%s owned by %s and %s", k, o, m.id)
				}
				owner[k] = m.id
			}
		}
	}
	if complete {
		for tp, n := range topics {
			for p := int32(0); p < n; p++ {
				if _, ok := owner[fmt.Sprintf("%s-%d", tp, p)]; !ok {
					t.Fatalf("%s-%d owned by no one", tp, p)
				}
			}
		}
	}
}

func count(m *cmember848) int {
	n := 0
	for _, ps := range m.owned {
		n += len(ps)
	}
	return n
}

func TestConsumerProtocolJoinRebalanceLeave(t *testing.T) {
	h := newHarness(t, testConfig())
	topics := fakeTopics{"t": 6}
	a := &cmember848{id: "A", topics: []string{"t"}, owned: map[string][]int32{}}
	resp := h.hb848(a, topics)
	wantCode(t, "join", resp.ErrorCode, 0)
	if a.epoch != 1 || count(a) != 6 || resp.HeartbeatIntervalMillis != 5000 {
		t.Fatalf("first member: epoch %d owns %v interval %d", a.epoch, a.owned, resp.HeartbeatIntervalMillis)
	}

	// B joins: A must revoke half before B gets them; never both own one.
	b := &cmember848{id: "B", topics: []string{"t"}, owned: map[string][]int32{}}
	h.hb848(b, topics)
	checkExclusive(t, []*cmember848{a, b}, topics, false)
	if count(b) != 0 {
		t.Fatalf("B got %v before A revoked", b.owned)
	}
	if d := h.c.ConsumerGroupDescribe("g", topics); d.State != "Reconciling" {
		t.Fatalf("state while reconciling: %s", d.State)
	}
	ms := []*cmember848{a, b}
	h.settle(ms, topics)
	checkExclusive(t, ms, topics, true)
	if count(a) != 3 || count(b) != 3 || a.epoch != b.epoch {
		t.Fatalf("after settling: A %v (epoch %d), B %v (epoch %d)", a.owned, a.epoch, b.owned, b.epoch)
	}
	d := h.c.ConsumerGroupDescribe("g", topics)
	if d.State != "Stable" || d.AssignorName != "uniform" || len(d.Members) != 2 || d.Epoch != a.epoch {
		t.Fatalf("describe: %+v", d)
	}
	if lg := h.c.ListGroups(nil, []string{"consumer"}); len(lg) != 1 || lg[0].GroupState != "Stable" || lg[0].GroupType != "consumer" {
		t.Fatalf("list: %+v", lg)
	}

	// Commits: the member epoch is the generation.
	wantCode(t, "commit", h.commit("g", "A", a.epoch, "t", 0, 5), 0)
	wantCode(t, "commit with the previous epoch", h.commit("g", "A", a.epoch-1, "t", 0, 6), 0)
	wantCode(t, "stale commit", h.commit("g", "A", a.epoch-2, "t", 0, 6), kerr.IllegalGeneration.Code)

	// B leaves; A gets everything back.
	r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	r.Version = 1
	r.Group, r.MemberID, r.MemberEpoch = "g", "B", -1
	h.run(h.c.ConsumerGroupHeartbeat(h.now, "leave", Client{}, r, topics))
	if lr := h.reply("leave").(*kmsg.ConsumerGroupHeartbeatResponse); lr.ErrorCode != 0 || lr.MemberEpoch != -1 {
		t.Fatalf("leave: %+v", lr)
	}
	h.settle([]*cmember848{a}, topics)
	if count(a) != 6 {
		t.Fatalf("after B left A owns %v", a.owned)
	}

	// A stops heartbeating: its session expires and the group empties.
	h.advance(46 * time.Second)
	if d := h.c.ConsumerGroupDescribe("g", topics); d.State != "Empty" {
		t.Fatalf("state after session expiry: %s", d.State)
	}
	if resp := h.hb848(a, topics); resp.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("expired member heartbeat: %s", errName(resp.ErrorCode))
	}
}

func TestConsumerProtocolFencing(t *testing.T) {
	h := newHarness(t, testConfig())
	topics := fakeTopics{"t": 2}
	a := &cmember848{id: "A", topics: []string{"t"}, owned: map[string][]int32{}}
	h.hb848(a, topics)
	stale := &cmember848{id: "A", epoch: a.epoch + 5, topics: []string{"t"}}
	if resp := h.hb848(stale, topics); resp.ErrorCode != kerr.FencedMemberEpoch.Code {
		t.Fatalf("future epoch: %s", errName(resp.ErrorCode))
	}
	r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	r.Version = 1
	r.Group, r.MemberID = "g", "X"
	r.RebalanceTimeoutMillis = 1000
	r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	h.run(h.c.ConsumerGroupHeartbeat(h.now, "nosub", Client{}, r, topics))
	if resp := h.reply("nosub").(*kmsg.ConsumerGroupHeartbeatResponse); resp.ErrorCode != kerr.InvalidRequest.Code || resp.ErrorMessage == nil {
		t.Fatalf("join without subscription: %+v", resp)
	}
	r.SubscribedTopicNames = []string{"t"}
	r.ServerAssignor = kmsg.StringPtr("cooperative-magic")
	h.run(h.c.ConsumerGroupHeartbeat(h.now, "badassignor", Client{}, r, topics))
	wantCode(t, "unknown assignor", h.reply("badassignor").(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode, kerr.UnsupportedAssignor.Code)

	// A classic group with members cannot be joined with the new
	// protocol, nor the reverse.
	stableGroup(t, h, "classic")
	r.Group, r.ServerAssignor = "classic", nil
	h.run(h.c.ConsumerGroupHeartbeat(h.now, "mixed", Client{}, r, topics))
	wantCode(t, "848 join of a classic group", h.reply("mixed").(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode, kerr.GroupIDNotFound.Code)
	h.join("cj", "g", "", nil)
	wantCode(t, "classic join of an 848 group", h.joinResp("cj").ErrorCode, kerr.InconsistentGroupProtocol.Code)
}

func TestConsumerProtocolRangeAndNewPartitions(t *testing.T) {
	h := newHarness(t, testConfig())
	topics := fakeTopics{"a": 4, "b": 4}
	ms := []*cmember848{
		{id: "m1", topics: []string{"a", "b"}, assignor: "range", owned: map[string][]int32{}},
		{id: "m2", topics: []string{"a", "b"}, assignor: "range", owned: map[string][]int32{}},
	}
	h.settle(ms, topics)
	checkExclusive(t, ms, topics, true)
	if fmt.Sprint(ms[0].owned) != "map[a:[0 1] b:[0 1]]" || fmt.Sprint(ms[1].owned) != "map[a:[2 3] b:[2 3]]" {
		t.Fatalf("range: %v %v", ms[0].owned, ms[1].owned)
	}
	// Partitions added to a subscribed topic are assigned.
	topics["a"] = 6
	h.settle(ms, topics)
	checkExclusive(t, ms, topics, true)
	if count(ms[0])+count(ms[1]) != 10 {
		t.Fatalf("after adding partitions: %v %v", ms[0].owned, ms[1].owned)
	}
}

func TestConsumerProtocolSurvivesRestart(t *testing.T) {
	h := newHarness(t, testConfig())
	topics := fakeTopics{"t": 4}
	ms := []*cmember848{
		{id: "A", topics: []string{"t"}, owned: map[string][]int32{}},
		{id: "B", topics: []string{"t"}, owned: map[string][]int32{}},
	}
	h.settle(ms, topics)
	before := fmt.Sprint(ms[0].owned, ms[1].owned, ms[0].epoch)
	h.restart(testConfig())
	h.settle(ms, topics)
	if after := fmt.Sprint(ms[0].owned, ms[1].owned, ms[0].epoch); after != before {
		t.Fatalf("assignment changed across a restart: %s → %s", before, after)
	}
}

func TestConsumerProtocolRevocationTimeout(t *testing.T) {
	cfg := testConfig()
	h := newHarness(t, cfg)
	topics := fakeTopics{"t": 4}
	a := &cmember848{id: "A", topics: []string{"t"}, owned: map[string][]int32{}}
	h.hb848(a, topics)
	b := &cmember848{id: "B", topics: []string{"t"}, owned: map[string][]int32{}}
	h.hb848(b, topics)
	// A is told to revoke but never acknowledges (it keeps reporting all
	// four partitions); after its rebalance timeout it is removed.
	keep := a.owned
	h.hb848(a, topics)
	a.owned = keep
	for i := 0; i < 13; i++ {
		h.advance(5 * time.Second)
		h.hb848(a, topics)
		a.owned = keep
		h.hb848(b, topics)
	}
	if resp := h.hb848(a, topics); resp.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("member that never revoked: %s", errName(resp.ErrorCode))
	}
	h.settle([]*cmember848{b}, topics)
	if count(b) != 4 {
		t.Fatalf("B owns %v after A was removed", b.owned)
	}
}

func TestUniformAssignorBalancedAndSticky(t *testing.T) {
	in := assignInput{
		members:    []string{"a", "b", "c"},
		subscribed: map[string]map[string]bool{"a": {"x": true, "y": true}, "b": {"x": true, "y": true}, "c": {"x": true, "y": true}},
		partitions: map[string]int32{"x": 7, "y": 3},
	}
	first := assignUniform(in)
	loads := loadsOf(first)
	if loads[0] != 3 || loads[2] != 4 {
		t.Fatalf("unbalanced: %v (%v)", loads, first)
	}
	// A fourth member: only the partitions it takes move.
	in.members = append(in.members, "d")
	in.subscribed["d"] = map[string]bool{"x": true, "y": true}
	in.previous = first
	second := assignUniform(in)
	moved := 0
	for _, m := range []string{"a", "b", "c"} {
		for t, ps := range first[m] {
			for _, p := range ps {
				if !containsPart(second[m][t], p) {
					moved++
				}
			}
		}
	}
	if l := loadsOf(second); fmt.Sprint(l) != "[2 2 3 3]" {
		t.Fatalf("after adding d: loads %v", l)
	}
	if moved > 3 {
		t.Fatalf("%d partitions moved to balance one new member (at most 3 needed)", moved)
	}

	// Different subscriptions: only eligible members get a topic.
	in = assignInput{
		members:    []string{"a", "b"},
		subscribed: map[string]map[string]bool{"a": {"x": true}, "b": {"x": true, "y": true}},
		partitions: map[string]int32{"x": 2, "y": 2},
	}
	out := assignUniform(in)
	if len(out["a"]["y"]) != 0 || len(out["a"]["x"]) != 2 || len(out["b"]["y"]) != 2 {
		t.Fatalf("heterogeneous: %v", out)
	}
}

func loadsOf(a assignment) []int {
	var ls []int
	for _, ts := range a {
		n := 0
		for _, ps := range ts {
			n += len(ps)
		}
		ls = append(ls, n)
	}
	sort.Ints(ls)
	return ls
}

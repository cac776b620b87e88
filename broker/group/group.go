package group

import (
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// state is a classic group's state, named as Kafka names them in
// DescribeGroups and ListGroups.
type state int8

const (
	stateEmpty state = iota
	statePreparingRebalance
	stateCompletingRebalance
	stateStable
	stateDead
)

var stateNames = [...]string{"Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"}

func (s state) String() string { return stateNames[s] }

// Group types, as ListGroups v5 reports them.
const (
	typeClassic  = "classic"
	typeConsumer = "consumer"
)

// group is one consumer group: a classic group (members, generation,
// assignment) or a KIP-848 consumer group (consumer != nil), and its
// committed offsets.
type group struct {
	id string

	// Classic protocol state.
	state        state
	stateSince   time.Time // when the state last changed (currentStateTimestamp)
	protocolType string    // "" for a group used only to commit offsets
	protocol     string    // selected protocol of the generation, "" if none
	generation   int32
	leader       string
	members      map[string]*member
	static       map[string]string // group.instance.id → member id
	pending      map[string]uint64 // member ids told MEMBER_ID_REQUIRED → timer id
	joinSeq      uint64            // orders members by first join

	// The join phase: joinTimer is the live timer ending it; during the
	// initial rebalance delay of an empty group, initialDelay is set and
	// newMemberAdded records joins that extend it by up to
	// delayRemaining.
	joinTimer      uint64
	initialDelay   bool
	newMemberAdded bool
	delayRemaining time.Duration

	// KIP-848 consumer group state, nil for classic groups.
	consumer *consumerGroup

	offsets map[string]map[int32]*offset
	// inflight counts offset writes not yet reported, so expiry does not
	// drop a group that is about to have offsets.
	inflight int
}

// member is a classic group member.
type member struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []kmsg.JoinGroupRequestProtocol
	assignment       []byte
	seq              uint64 // join order

	// A held JoinGroup or SyncGroup: its reply token and version.
	joining     bool
	joinTo      ReplyTo
	joinVersion int16
	syncing     bool
	syncTo      ReplyTo
	syncVersion int16

	isNew  bool // joined during the current join phase
	joined time.Time
	timer  uint64 // live session timer
}

func (g *group) kind() string {
	if g.consumer != nil {
		return typeConsumer
	}
	return typeClassic
}

func (c *Coordinator) newClassicGroup(id string, now time.Time) *group {
	g := &group{
		id:         id,
		state:      stateEmpty,
		stateSince: now,
		members:    map[string]*member{},
		static:     map[string]string{},
		pending:    map[string]uint64{},
		offsets:    map[string]map[int32]*offset{},
	}
	c.groups[id] = g
	return g
}

func (g *group) transition(s state, now time.Time) {
	g.state = s
	g.stateSince = now
}

// sortedMembers returns the members in join order.
func (g *group) sortedMembers() []*member {
	ms := make([]*member, 0, len(g.members))
	for _, m := range g.members {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].seq < ms[j].seq })
	return ms
}

// metadataFor returns the member's metadata for protocol name.
func (m *member) metadataFor(name string) []byte {
	for _, p := range m.protocols {
		if p.Name == name {
			return p.Metadata
		}
	}
	return nil
}

// sameProtocols reports whether ps equals the member's protocols, in order.
func (m *member) sameProtocols(ps []kmsg.JoinGroupRequestProtocol) bool {
	if len(ps) != len(m.protocols) {
		return false
	}
	for i := range ps {
		if ps[i].Name != m.protocols[i].Name || string(ps[i].Metadata) != string(m.protocols[i].Metadata) {
			return false
		}
	}
	return true
}

// supportsProtocols reports whether a member joining with protocolType and
// protocols can be part of the group: an empty group takes anything; else
// the type must match and at least one of the protocols must be supported
// by every other member.
func (g *group) supportsProtocols(self string, protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	others := 0
	for id := range g.members {
		if id != self {
			others++
		}
	}
	if others == 0 {
		return true
	}
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protocols {
		n := 0
		for id, m := range g.members {
			if id != self && hasProtocol(m, p.Name) {
				n++
			}
		}
		if n == others {
			return true
		}
	}
	return false
}

func hasProtocol(m *member, name string) bool {
	for _, p := range m.protocols {
		if p.Name == name {
			return true
		}
	}
	return false
}

// selectProtocol picks the generation's protocol as Kafka does: among the
// protocols every member supports, each member votes for the first one in
// its own preference order; the most votes win (ties: the candidate listed
// first by the earliest member).
func (g *group) selectProtocol() string {
	ms := g.sortedMembers()
	if len(ms) == 0 {
		return ""
	}
	var candidates []string
	for _, p := range ms[0].protocols {
		all := true
		for _, m := range ms[1:] {
			if !hasProtocol(m, p.Name) {
				all = false
				break
			}
		}
		if all {
			candidates = append(candidates, p.Name)
		}
	}
	if len(candidates) == 0 {
		return ""
	}
	votes := map[string]int{}
	for _, m := range ms {
		for _, p := range m.protocols {
			if contains(candidates, p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best := candidates[0]
	for _, cand := range candidates {
		if votes[cand] > votes[best] {
			best = cand
		}
	}
	return best
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// maxRebalanceTimeout is the longest rebalance timeout of the members: how
// long a join phase may wait for everyone to rejoin.
func (g *group) maxRebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

// allJoined reports whether every member has rejoined and no member told
// MEMBER_ID_REQUIRED is still expected.
func (g *group) allJoined() bool {
	if len(g.pending) > 0 {
		return false
	}
	for _, m := range g.members {
		if !m.joining {
			return false
		}
	}
	return true
}

// hasOffsets reports whether the group has committed offsets (or offset
// writes in flight).
func (g *group) hasOffsets() bool { return len(g.offsets) > 0 || g.inflight > 0 }

// isEmpty reports whether the group has no members of either protocol.
func (g *group) isEmpty() bool {
	if g.consumer != nil {
		return len(g.consumer.members) == 0
	}
	return len(g.members) == 0 && len(g.pending) == 0
}

// abandon answers every held request of the group with NOT_COORDINATOR.
func (g *group) abandon(c *Coordinator) {
	for _, m := range g.members {
		if m.joining {
			c.reply(m.joinTo, joinError(m.joinVersion, m.id, kerr.NotCoordinator.Code))
			m.joining = false
		}
		if m.syncing {
			c.reply(m.syncTo, syncError(m.syncVersion, kerr.NotCoordinator.Code))
			m.syncing = false
		}
	}
}

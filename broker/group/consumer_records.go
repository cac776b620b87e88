package group

import (
	"encoding/binary"
	"encoding/json"
	"regexp"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
)

// KIP-848 groups are stored in one record per group under a key version of
// Vigil's own, keyConsumerGroup, followed by the group id (a Kafka string).
// Kafka's own KIP-848 records (key versions 3 to 7) are not used: their
// schemas are not part of the client protocol. The value is JSON, version
// 1: the group and assignment epochs, the target assignment and every
// member with its subscription, epochs and current assignment, so a
// restarted coordinator resumes reconciliation where it stopped. Kafka
// would skip this key version as unknown.
const keyConsumerGroup = 100

type consumerGroupValue struct {
	Version         int                           `json:"version"`
	Epoch           int32                         `json:"epoch"`
	AssignmentEpoch int32                         `json:"assignment_epoch"`
	MetadataSig     []byte                        `json:"metadata_sig,omitempty"`
	Target          map[string]map[string][]int32 `json:"target,omitempty"`
	Members         []consumerMemberValue         `json:"members,omitempty"`
	StateSince      int64                         `json:"state_since_ms"`
}

type consumerMemberValue struct {
	ID               string             `json:"id"`
	InstanceID       *string            `json:"instance_id,omitempty"`
	RackID           *string            `json:"rack_id,omitempty"`
	ClientID         string             `json:"client_id"`
	ClientHost       string             `json:"client_host"`
	Epoch            int32              `json:"epoch"`
	PrevEpoch        int32              `json:"prev_epoch"`
	RebalanceTimeout int64              `json:"rebalance_timeout_ms"`
	Topics           []string           `json:"topics,omitempty"`
	Regex            string             `json:"regex,omitempty"`
	Assignor         string             `json:"assignor,omitempty"`
	State            string             `json:"state"`
	Assigned         map[string][]int32 `json:"assigned,omitempty"`
	Revoking         map[string][]int32 `json:"revoking,omitempty"`
	Left             bool               `json:"left,omitempty"`
}

func consumerGroupKey(group string) []byte {
	b := binary.BigEndian.AppendUint16(nil, keyConsumerGroup)
	return kbin.AppendString(b, group)
}

func consumerGroupTombstone(group string) Record { return Record{Key: consumerGroupKey(group)} }

func consumerGroupRecord(g *group, now time.Time) Record {
	cg := g.consumer
	v := consumerGroupValue{
		Version:         1,
		Epoch:           cg.epoch,
		AssignmentEpoch: cg.assignmentEpoch,
		MetadataSig:     []byte(cg.metadataSig),
		Target:          cg.target,
		StateSince:      cg.stateSince.UnixMilli(),
	}
	for _, m := range cg.sortedMembers() {
		v.Members = append(v.Members, consumerMemberValue{
			ID: m.id, InstanceID: m.instanceID, RackID: m.rackID,
			ClientID: m.clientID, ClientHost: m.clientHost,
			Epoch: m.epoch, PrevEpoch: m.prevEpoch,
			RebalanceTimeout: m.rebalanceTimeout.Milliseconds(),
			Topics:           m.topics, Regex: m.regex, Assignor: m.assignor,
			State: m.state, Assigned: m.assigned, Revoking: m.revoking, Left: m.left,
		})
	}
	val, err := json.Marshal(v)
	if err != nil {
		// Only maps, strings and numbers: cannot fail.
		panic(err)
	}
	return Record{Key: consumerGroupKey(g.id), Value: val}
}

// replayConsumer applies a record with a key version of Vigil's own; it
// reports whether it knew the version.
func (c *Coordinator) replayConsumer(ver int16, key, value []byte) bool {
	if ver != keyConsumerGroup {
		return false
	}
	r := kbin.Reader{Src: key[2:]}
	id := r.String()
	if r.Complete() != nil {
		c.skipped++
		return true
	}
	g := c.groups[id]
	if value == nil {
		if g != nil && g.consumer != nil {
			if g.hasOffsets() {
				g.consumer = nil
				g.protocolType = ""
			} else {
				delete(c.groups, id)
			}
		}
		return true
	}
	var v consumerGroupValue
	if err := json.Unmarshal(value, &v); err != nil || v.Version != 1 {
		c.skipped++
		return true
	}
	since := time.UnixMilli(v.StateSince)
	if g == nil {
		g = c.newClassicGroup(id, since)
	}
	g.members, g.static, g.pending = map[string]*member{}, map[string]string{}, map[string]uint64{}
	g.protocolType, g.protocol, g.leader = "consumer", "", ""
	g.state, g.stateSince = stateEmpty, since
	cg := newConsumerGroup(since)
	cg.epoch, cg.assignmentEpoch = v.Epoch, v.AssignmentEpoch
	cg.metadataSig = string(v.MetadataSig)
	if v.Target != nil {
		cg.target = v.Target
	}
	for _, mv := range v.Members {
		m := &cmember{
			id: mv.ID, instanceID: mv.InstanceID, rackID: mv.RackID,
			clientID: mv.ClientID, clientHost: mv.ClientHost,
			epoch: mv.Epoch, prevEpoch: mv.PrevEpoch,
			rebalanceTimeout: time.Duration(mv.RebalanceTimeout) * time.Millisecond,
			topics:           mv.Topics, regex: mv.Regex, assignor: mv.Assignor,
			state: mv.State, assigned: mv.Assigned, revoking: mv.Revoking, left: mv.Left,
		}
		if m.assigned == nil {
			m.assigned = map[string][]int32{}
		}
		if m.revoking == nil {
			m.revoking = map[string][]int32{}
		}
		if m.regex != "" {
			m.re, _ = regexp.Compile("^(?:" + m.regex + ")$")
		}
		cg.members[m.id] = m
		if m.instanceID != nil {
			cg.static[*m.instanceID] = m.id
		}
	}
	g.consumer = cg
	return true
}

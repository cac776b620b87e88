package group

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record keys and values of __consumer_offsets, in Kafka's schemas:
//
//	key version 0, 1: offset commit   {group, topic, partition} → OffsetCommitValue
//	key version 2:    group metadata  {group}                   → GroupMetadataValue
//
// Offsets are written with value version 3 (with the leader epoch), or 1
// when the commit carried an explicit retention (expire timestamp); group
// metadata with value version 3 (static members). KIP-848 groups use key
// versions of Vigil's own (see consumer_records.go).
const (
	keyOffsetCommit  = 1
	keyGroupMetadata = 2
)

func offsetKey(group, topic string, partition int32) []byte {
	k := kmsg.OffsetCommitKey{Version: keyOffsetCommit, Group: group, Topic: topic, Partition: partition}
	return k.AppendTo(nil)
}

func offsetRecord(group, topic string, partition int32, o *offset) Record {
	v := kmsg.NewOffsetCommitValue()
	v.Version = 3
	v.Offset = o.offset
	v.LeaderEpoch = o.leaderEpoch
	v.Metadata = o.metadata
	v.CommitTimestamp = o.committed.UnixMilli()
	if !o.expires.IsZero() {
		v.Version = 1
		v.ExpireTimestamp = o.expires.UnixMilli()
	}
	return Record{Key: offsetKey(group, topic, partition), Value: v.AppendTo(nil)}
}

func offsetTombstone(group, topic string, partition int32) Record {
	return Record{Key: offsetKey(group, topic, partition)}
}

func groupKey(group string) []byte {
	k := kmsg.GroupMetadataKey{Version: keyGroupMetadata, Group: group}
	return k.AppendTo(nil)
}

func groupTombstone(group string) Record { return Record{Key: groupKey(group)} }

// tombstones deletes every metadata record the group may have: classic
// group metadata, and its KIP-848 record if it is (or was) a consumer
// group.
func (g *group) tombstones() []Record {
	recs := []Record{groupTombstone(g.id)}
	if g.consumer != nil || g.protocolType == "consumer" {
		recs = append(recs, consumerGroupTombstone(g.id))
	}
	return recs
}

// metadataRecord is the classic group's metadata as Kafka stores it: the
// generation, protocol, leader and every member with its subscription
// (metadata of the selected protocol) and assignment.
func (g *group) metadataRecord(now time.Time) Record {
	v := kmsg.NewGroupMetadataValue()
	v.Version = 3
	v.ProtocolType = g.protocolType
	v.Generation = g.generation
	if g.protocol != "" {
		v.Protocol = kmsg.StringPtr(g.protocol)
	}
	if g.leader != "" {
		v.Leader = kmsg.StringPtr(g.leader)
	}
	v.CurrentStateTimestamp = now.UnixMilli()
	for _, m := range g.sortedMembers() {
		vm := kmsg.NewGroupMetadataValueMember()
		vm.MemberID = m.id
		vm.InstanceID = m.instanceID
		vm.ClientID = m.clientID
		vm.ClientHost = m.clientHost
		vm.RebalanceTimeoutMillis = int32(m.rebalanceTimeout / time.Millisecond)
		vm.SessionTimeoutMillis = int32(m.sessionTimeout / time.Millisecond)
		vm.Subscription = m.metadataFor(g.protocol)
		if vm.Subscription == nil {
			vm.Subscription = []byte{}
		}
		vm.Assignment = m.assignment
		if vm.Assignment == nil {
			vm.Assignment = []byte{}
		}
		v.Members = append(v.Members, vm)
	}
	return Record{Key: groupKey(g.id), Value: v.AppendTo(nil)}
}

// Replay applies one record read back from the coordinator's partition, in
// log order, before Start. Records of unknown key versions are skipped (a
// newer Kafka may have written them); a malformed record is an error the
// caller should log (and skip).
func (c *Coordinator) Replay(key, value []byte) error {
	if len(key) < 2 {
		return fmt.Errorf("record key of %d bytes is too short", len(key))
	}
	switch ver := int16(binary.BigEndian.Uint16(key)); ver {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(key); err != nil {
			return fmt.Errorf("offset commit key: %w", err)
		}
		g := c.groups[k.Group]
		if value == nil {
			if g != nil {
				g.deleteOffset(k.Topic, k.Partition)
				c.dropIfUnused(g)
			}
			return nil
		}
		var v kmsg.OffsetCommitValue
		if err := v.ReadFrom(value); err != nil {
			return fmt.Errorf("offset commit value of group %q: %w", k.Group, err)
		}
		if g == nil {
			g = c.newClassicGroup(k.Group, time.UnixMilli(v.CommitTimestamp))
		}
		o := &offset{offset: v.Offset, leaderEpoch: -1, metadata: v.Metadata, committed: time.UnixMilli(v.CommitTimestamp)}
		if v.Version >= 3 {
			o.leaderEpoch = v.LeaderEpoch
		}
		if v.Version == 1 && v.ExpireTimestamp >= 0 {
			o.expires = time.UnixMilli(v.ExpireTimestamp)
		}
		g.setOffset(k.Topic, k.Partition, o)
	case keyGroupMetadata:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(key); err != nil {
			return fmt.Errorf("group metadata key: %w", err)
		}
		if value == nil {
			delete(c.groups, k.Group)
			return nil
		}
		var v kmsg.GroupMetadataValue
		if err := v.ReadFrom(value); err != nil {
			return fmt.Errorf("group metadata value of group %q: %w", k.Group, err)
		}
		c.replayGroup(k.Group, &v)
	default:
		if c.replayConsumer(ver, key, value) {
			return nil
		}
		c.skipped++
	}
	return nil
}

// replayGroup restores a classic group from its latest metadata record,
// keeping offsets already replayed.
func (c *Coordinator) replayGroup(id string, v *kmsg.GroupMetadataValue) {
	since := time.UnixMilli(v.CurrentStateTimestamp)
	g := c.groups[id]
	if g == nil || g.consumer != nil {
		offsets := map[string]map[int32]*offset{}
		if g != nil {
			offsets = g.offsets
		}
		g = c.newClassicGroup(id, since)
		g.offsets = offsets
	}
	g.members, g.static, g.pending = map[string]*member{}, map[string]string{}, map[string]uint64{}
	g.protocolType = v.ProtocolType
	g.generation = v.Generation
	g.protocol, g.leader = "", ""
	if v.Protocol != nil {
		g.protocol = *v.Protocol
	}
	if v.Leader != nil {
		g.leader = *v.Leader
	}
	for _, vm := range v.Members {
		g.joinSeq++
		m := &member{
			id:               vm.MemberID,
			instanceID:       vm.InstanceID,
			clientID:         vm.ClientID,
			clientHost:       vm.ClientHost,
			sessionTimeout:   time.Duration(vm.SessionTimeoutMillis) * time.Millisecond,
			rebalanceTimeout: time.Duration(vm.RebalanceTimeoutMillis) * time.Millisecond,
			protocolType:     v.ProtocolType,
			protocols:        []kmsg.JoinGroupRequestProtocol{{Name: g.protocol, Metadata: vm.Subscription}},
			assignment:       vm.Assignment,
			seq:              g.joinSeq,
		}
		if m.rebalanceTimeout <= 0 {
			m.rebalanceTimeout = m.sessionTimeout
		}
		g.members[m.id] = m
		if m.instanceID != nil {
			g.static[*m.instanceID] = m.id
		}
	}
	if len(g.members) == 0 {
		g.transition(stateEmpty, since)
	} else {
		// A group stored with members had completed its generation.
		g.transition(stateStable, since)
	}
}

// Skipped reports how many replayed records had key versions this
// coordinator does not know.
func (c *Coordinator) Skipped() int { return c.skipped }

package group

import (
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// offset is a committed offset.
type offset struct {
	offset      int64
	leaderEpoch int32
	metadata    string
	committed   time.Time
	expires     time.Time // zero: expiry follows the group (KIP-211)
}

// PartitionExists tells the coordinator whether a topic partition exists,
// so commits to unknown partitions get UNKNOWN_TOPIC_OR_PARTITION.
type PartitionExists func(topic string, partition int32) bool

// OffsetCommit handles an OffsetCommit request. The reply comes once the
// offsets are persisted (or the write failed).
func (c *Coordinator) OffsetCommit(now time.Time, to ReplyTo, r *kmsg.OffsetCommitRequest, exists PartitionExists) Output {
	c.offsetCommit(now, to, r, exists)
	return c.finish()
}

func (c *Coordinator) offsetCommit(now time.Time, to ReplyTo, r *kmsg.OffsetCommitRequest, exists PartitionExists) {
	resp := kmsg.NewPtrOffsetCommitResponse()
	resp.SetVersion(r.Version)
	for _, rt := range r.Topics {
		st := kmsg.NewOffsetCommitResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	setAll := func(code int16) {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				resp.Topics[i].Partitions[j].ErrorCode = code
			}
		}
	}
	if code := c.validateCommit(now, r); code != 0 {
		setAll(code)
		c.reply(to, resp)
		return
	}
	g := c.groups[r.Group]
	if g == nil {
		// A standalone commit (generation -1, no member): the group
		// exists only to hold offsets.
		g = c.newClassicGroup(r.Group, now)
	}
	type commit struct {
		topic string
		part  int32
		off   offset
		code  *int16
	}
	var (
		commits []commit
		recs    []Record
	)
	for i, rt := range r.Topics {
		for j, rp := range rt.Partitions {
			code := &resp.Topics[i].Partitions[j].ErrorCode
			md := ""
			if rp.Metadata != nil {
				md = *rp.Metadata
			}
			switch {
			case len(md) > c.cfg.OffsetMetadataMaxBytes:
				*code = kerr.OffsetMetadataTooLarge.Code
				continue
			case !exists(rt.Topic, rp.Partition):
				*code = kerr.UnknownTopicOrPartition.Code
				continue
			}
			o := offset{offset: rp.Offset, leaderEpoch: rp.LeaderEpoch, metadata: md, committed: now}
			if r.Version >= 2 && r.Version <= 4 && r.RetentionTimeMillis >= 0 {
				// An explicit per-commit retention (removed by KIP-211
				// in v5) is honoured as an absolute expiry.
				o.expires = now.Add(time.Duration(r.RetentionTimeMillis) * time.Millisecond)
			}
			if r.Version == 1 && rp.Timestamp >= 0 {
				o.committed = time.UnixMilli(rp.Timestamp)
			}
			commits = append(commits, commit{topic: rt.Topic, part: rp.Partition, off: o, code: code})
			recs = append(recs, offsetRecord(g.id, rt.Topic, rp.Partition, &o))
		}
	}
	if len(commits) == 0 {
		c.reply(to, resp)
		c.dropIfUnused(g)
		return
	}
	g.inflight++
	c.write(recs, func(code int16) {
		g.inflight--
		if code != 0 {
			for _, cm := range commits {
				*cm.code = persistErrorCode(code)
			}
			c.reply(to, resp)
			c.dropIfUnused(g)
			return
		}
		if c.groups[g.id] == g {
			for _, cm := range commits {
				o := cm.off
				g.setOffset(cm.topic, cm.part, &o)
			}
		}
		c.reply(to, resp)
	})
}

// validateCommit checks who may commit: anyone for an empty group with
// generation -1 (standalone consumers, admin tools); otherwise a member of
// the current generation (or, for KIP-848 groups, member epoch).
func (c *Coordinator) validateCommit(now time.Time, r *kmsg.OffsetCommitRequest) int16 {
	if r.Group == "" {
		return kerr.InvalidGroupID.Code
	}
	g := c.groups[r.Group]
	if g == nil {
		if r.Generation < 0 {
			return 0
		}
		if r.Version >= 9 {
			return kerr.GroupIDNotFound.Code
		}
		return kerr.IllegalGeneration.Code
	}
	if g.consumer != nil {
		return g.consumer.validateCommit(r.MemberID, r.Generation, r.Version)
	}
	switch {
	case g.state == stateDead:
		return kerr.CoordinatorNotAvailable.Code
	case r.Generation < 0 && g.state == stateEmpty:
		return 0
	case r.Generation >= 0 || r.MemberID != "" || r.InstanceID != nil:
		m, code := g.validateMember(r.MemberID, r.InstanceID)
		if code != 0 {
			return code
		}
		if r.Generation != g.generation {
			return kerr.IllegalGeneration.Code
		}
		if g.state == statePreparingRebalance {
			// The member has the latest generation from its join
			// response but the group is rebalancing again.
			return kerr.RebalanceInProgress.Code
		}
		c.touch(now, g, m)
		return 0
	default:
		return kerr.UnknownMemberID.Code
	}
}

func (g *group) setOffset(topic string, part int32, o *offset) {
	ps := g.offsets[topic]
	if ps == nil {
		ps = map[int32]*offset{}
		g.offsets[topic] = ps
	}
	ps[part] = o
}

func (g *group) deleteOffset(topic string, part int32) {
	if ps := g.offsets[topic]; ps != nil {
		delete(ps, part)
		if len(ps) == 0 {
			delete(g.offsets, topic)
		}
	}
}

// dropIfUnused forgets a group that has nothing left: no members, no
// offsets, nothing in flight. It leaves no record behind: a group that
// never had members never had metadata written.
func (c *Coordinator) dropIfUnused(g *group) {
	if c.groups[g.id] == g && g.isEmpty() && !g.hasOffsets() && g.protocolType == "" && g.generation == 0 && g.consumer == nil {
		delete(c.groups, g.id)
	}
}

// OffsetFetch returns the committed offsets of a group: of the given topics
// and partitions, or of everything when topics is nil. Unknown partitions
// answer offset -1. For KIP-848 groups a member id and epoch, when given,
// must be current (OffsetFetch v9).
func (c *Coordinator) OffsetFetch(groupID string, topics []kmsg.OffsetFetchRequestGroupTopic, memberID *string, memberEpoch int32) kmsg.OffsetFetchResponseGroup {
	rg := kmsg.NewOffsetFetchResponseGroup()
	rg.Group = groupID
	if groupID == "" {
		rg.ErrorCode = kerr.InvalidGroupID.Code
		return rg
	}
	g := c.groups[groupID]
	if g != nil && g.consumer != nil && memberID != nil {
		if code := g.consumer.validateFetch(*memberID, memberEpoch); code != 0 {
			rg.ErrorCode = code
			return rg
		}
	}
	part := func(p int32, o *offset) kmsg.OffsetFetchResponseGroupTopicPartition {
		rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
		rp.Partition = p
		rp.Offset = -1
		rp.Metadata = kmsg.StringPtr("")
		if o != nil {
			rp.Offset, rp.LeaderEpoch, rp.Metadata = o.offset, o.leaderEpoch, kmsg.StringPtr(o.metadata)
		}
		return rp
	}
	if topics == nil {
		if g == nil {
			return rg
		}
		names := make([]string, 0, len(g.offsets))
		for t := range g.offsets {
			names = append(names, t)
		}
		sort.Strings(names)
		for _, t := range names {
			rt := kmsg.NewOffsetFetchResponseGroupTopic()
			rt.Topic = t
			ps := make([]int32, 0, len(g.offsets[t]))
			for p := range g.offsets[t] {
				ps = append(ps, p)
			}
			sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
			for _, p := range ps {
				rt.Partitions = append(rt.Partitions, part(p, g.offsets[t][p]))
			}
			rg.Topics = append(rg.Topics, rt)
		}
		return rg
	}
	for _, t := range topics {
		rt := kmsg.NewOffsetFetchResponseGroupTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		for _, p := range t.Partitions {
			var o *offset
			if g != nil {
				o = g.offsets[t.Topic][p]
			}
			rt.Partitions = append(rt.Partitions, part(p, o))
		}
		rg.Topics = append(rg.Topics, rt)
	}
	return rg
}

// OffsetDelete handles an OffsetDelete request: offsets of topics the group
// is not subscribed to may be deleted (all of them once the group is
// empty).
func (c *Coordinator) OffsetDelete(now time.Time, to ReplyTo, r *kmsg.OffsetDeleteRequest) Output {
	resp := kmsg.NewPtrOffsetDeleteResponse()
	resp.SetVersion(r.Version)
	g := c.groups[r.Group]
	var subscribed map[string]bool
	switch {
	case r.Group == "":
		resp.ErrorCode = kerr.InvalidGroupID.Code
	case g == nil || g.state == stateDead:
		resp.ErrorCode = kerr.GroupIDNotFound.Code
	case g.consumer != nil:
		subscribed = g.consumer.subscribedTopics()
	case g.protocolType == "consumer":
		subscribed = g.subscribedTopics()
	case g.state != stateEmpty:
		resp.ErrorCode = kerr.NonEmptyGroup.Code
	}
	if resp.ErrorCode != 0 {
		c.reply(to, resp)
		return c.finish()
	}
	var recs []Record
	type del struct {
		topic string
		part  int32
	}
	var dels []del
	for _, rt := range r.Topics {
		st := kmsg.NewOffsetDeleteResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetDeleteResponseTopicPartition()
			sp.Partition = rp.Partition
			switch {
			case subscribed != nil && subscribed[rt.Topic]:
				sp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			case g.offsets[rt.Topic][rp.Partition] != nil:
				dels = append(dels, del{rt.Topic, rp.Partition})
				recs = append(recs, offsetTombstone(g.id, rt.Topic, rp.Partition))
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	if len(recs) == 0 {
		c.reply(to, resp)
		return c.finish()
	}
	// Forget them now, so a commit racing the write is not lost by a
	// later undo; a failed write reports the error.
	for _, d := range dels {
		g.deleteOffset(d.topic, d.part)
	}
	c.write(recs, func(code int16) {
		if code != 0 {
			resp.ErrorCode = persistErrorCode(code)
			resp.Topics = nil
		}
		c.reply(to, resp)
	})
	return c.finish()
}

// subscribedTopics returns the topics a classic "consumer" group's members
// subscribe to, from their protocol metadata; nil if a member's metadata
// cannot be read (then nothing may be deleted while members exist).
func (g *group) subscribedTopics() map[string]bool {
	if len(g.members) == 0 {
		return nil
	}
	out := map[string]bool{}
	for _, m := range g.members {
		var md kmsg.ConsumerMemberMetadata
		if err := md.ReadFrom(m.metadataFor(g.protocol)); err != nil {
			all := map[string]bool{}
			for t := range g.offsets {
				all[t] = true
			}
			return all
		}
		for _, t := range md.Topics {
			out[t] = true
		}
	}
	return out
}

// expireOffsets drops committed offsets past offsets.retention.minutes and
// then groups left with nothing, writing tombstones for both (KIP-211):
//   - a group without members: offsets expire retention after the group
//     became empty (or after the commit, for standalone commits);
//   - a "consumer" group with members: offsets of topics it no longer
//     subscribes to expire retention after their commit (KIP-496);
//   - an offset committed with an explicit retention (v2-v4) expires then.
func (c *Coordinator) expireOffsets(now time.Time) {
	var recs []Record
	ids := make([]string, 0, len(c.groups))
	for id := range c.groups {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		g := c.groups[id]
		if g.inflight > 0 {
			continue
		}
		var subscribed map[string]bool
		empty := g.isEmpty()
		if !empty {
			switch {
			case g.consumer != nil:
				subscribed = g.consumer.subscribedTopics()
			case g.protocolType == "consumer" && g.state == stateStable:
				subscribed = g.subscribedTopics()
			}
		}
		for t, ps := range g.offsets {
			for p, o := range ps {
				var expired bool
				switch {
				case !o.expires.IsZero():
					expired = !now.Before(o.expires)
				case empty:
					base := o.committed
					if g.protocolType != "" || g.consumer != nil {
						base = maxTime(g.stateSince, o.committed)
					}
					expired = !now.Before(base.Add(c.cfg.OffsetsRetention))
				case subscribed != nil && !subscribed[t]:
					expired = !now.Before(o.committed.Add(c.cfg.OffsetsRetention))
				}
				if expired {
					recs = append(recs, offsetTombstone(g.id, t, p))
					g.deleteOffset(t, p)
				}
			}
		}
		if empty && !g.hasOffsets() {
			if g.protocolType != "" || g.generation > 0 || g.consumer != nil {
				recs = append(recs, g.tombstones()...)
			}
			g.transition(stateDead, now)
			delete(c.groups, g.id)
		}
	}
	if len(recs) > 0 {
		c.write(recs, nil)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

package group

import (
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeGroup describes a classic group for DescribeGroups. A group that
// does not exist (or is a KIP-848 group) is reported as Dead; from v6 with
// GROUP_ID_NOT_FOUND and a message, as Kafka does.
func (c *Coordinator) DescribeGroup(id string, version int16) kmsg.DescribeGroupsResponseGroup {
	dg := kmsg.NewDescribeGroupsResponseGroup()
	dg.Group = id
	dg.AuthorizedOperations = -2147483648 // not requested / not computed
	if id == "" {
		dg.ErrorCode = kerr.InvalidGroupID.Code
		return dg
	}
	g := c.groups[id]
	if g == nil || g.consumer != nil || g.state == stateDead {
		dg.State = stateDead.String()
		if version >= 6 {
			dg.ErrorCode = kerr.GroupIDNotFound.Code
			msg := "group " + id + " does not exist"
			if g != nil && g.consumer != nil {
				msg = "group " + id + " is a consumer (KIP-848) group; use ConsumerGroupDescribe"
			}
			dg.ErrorMessage = &msg
		}
		return dg
	}
	dg.State = g.state.String()
	dg.ProtocolType = g.protocolType
	stable := g.state == stateStable
	if stable {
		dg.Protocol = g.protocol
	}
	for _, m := range g.sortedMembers() {
		dm := kmsg.NewDescribeGroupsResponseGroupMember()
		dm.MemberID = m.id
		dm.InstanceID = m.instanceID
		dm.ClientID = m.clientID
		dm.ClientHost = m.clientHost
		dm.ProtocolMetadata, dm.MemberAssignment = []byte{}, []byte{}
		if stable {
			dm.ProtocolMetadata = m.metadataFor(g.protocol)
			dm.MemberAssignment = m.assignment
		}
		dg.Members = append(dg.Members, dm)
	}
	return dg
}

// ListGroups lists the groups, filtered by state and type when the filters
// are not empty (ListGroups v4 and v5; matching ignores case, as Kafka's).
func (c *Coordinator) ListGroups(states, types []string) []kmsg.ListGroupsResponseGroup {
	match := func(filter []string, v string) bool {
		if len(filter) == 0 {
			return true
		}
		for _, f := range filter {
			if strings.EqualFold(f, v) {
				return true
			}
		}
		return false
	}
	var out []kmsg.ListGroupsResponseGroup
	for _, g := range c.groups {
		if g.state == stateDead {
			continue
		}
		st, pt := g.state.String(), g.protocolType
		if g.consumer != nil {
			st, pt = g.consumer.stateName(), "consumer"
		}
		if !match(states, st) || !match(types, g.kind()) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = g.id, pt, st, g.kind()
		out = append(out, lg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out
}

// DeleteGroup deletes an empty group and its offsets (DeleteGroups). The
// reply, a DeleteGroupsResponse with this one group, comes once the
// tombstones are written.
func (c *Coordinator) DeleteGroup(now time.Time, to ReplyTo, id string, version int16) Output {
	resp := kmsg.NewPtrDeleteGroupsResponse()
	resp.SetVersion(version)
	rg := kmsg.NewDeleteGroupsResponseGroup()
	rg.Group = id
	g := c.groups[id]
	fail := func(code int16, msg string) Output {
		rg.ErrorCode = code
		if msg != "" {
			rg.ErrorMessage = &msg
		}
		resp.Groups = append(resp.Groups, rg)
		c.reply(to, resp)
		return c.finish()
	}
	switch {
	case id == "":
		return fail(kerr.InvalidGroupID.Code, "")
	case g == nil || g.state == stateDead:
		return fail(kerr.GroupIDNotFound.Code, "group "+id+" does not exist")
	case !g.isEmpty():
		return fail(kerr.NonEmptyGroup.Code, "group "+id+" has members; stop them (or wait for their sessions to expire) first")
	}
	var recs []Record
	for t, ps := range g.offsets {
		for p := range ps {
			recs = append(recs, offsetTombstone(id, t, p))
		}
	}
	recs = append(recs, g.tombstones()...)
	g.transition(stateDead, now)
	delete(c.groups, id)
	c.write(recs, func(code int16) {
		rg.ErrorCode = persistErrorCode(code)
		resp.Groups = append(resp.Groups, rg)
		c.reply(to, resp)
	})
	return c.finish()
}

// EachOffset calls fn with every committed offset, for lag metrics.
func (c *Coordinator) EachOffset(fn func(group, topic string, partition int32, offset int64)) {
	for id, g := range c.groups {
		for t, ps := range g.offsets {
			for p, o := range ps {
				fn(id, t, p, o.offset)
			}
		}
	}
}

// EachGroup calls fn with the type and state of every group, for metrics.
func (c *Coordinator) EachGroup(fn func(groupType, state string)) {
	for _, g := range c.groups {
		if g.state == stateDead {
			continue
		}
		if g.consumer != nil {
			fn(typeConsumer, g.consumer.stateName())
		} else {
			fn(typeClassic, g.state.String())
		}
	}
}

package broker

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/vigilhq/vigil/broker/group"
)

// Coordinator key types of FindCoordinator.
const (
	coordinatorGroup       = 0
	coordinatorTransaction = 1
)

// handleFindCoordinator answers with the leader of the group's
// __consumer_offsets partition (creating the topic on first use).
// Transactions are not implemented yet.
func (b *Broker) handleFindCoordinator(r *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.FindCoordinatorResponse)
	keys := r.CoordinatorKeys
	if r.Version < 4 {
		keys = []string{r.CoordinatorKey}
	}
	for _, key := range keys {
		co := kmsg.NewFindCoordinatorResponseCoordinator()
		co.Key = key
		co.NodeID, co.Port = -1, -1
		switch r.CoordinatorType {
		case coordinatorGroup:
			ctx, cancel := b.adminContext()
			p, err := b.groups.coordinatorOf(ctx, key)
			cancel()
			if err != nil {
				co.ErrorCode = kerr.CoordinatorNotAvailable.Code
				co.ErrorMessage = strp(err.Error())
				break
			}
			leader := b.meta.broker(p.leaderID())
			host, port, ok := "", int32(0), false
			if leader != nil && leader.Alive() {
				host, port, ok = splitEndpoint(leader.Endpoint)
			}
			if !ok {
				co.ErrorCode = kerr.CoordinatorNotAvailable.Code
				co.ErrorMessage = strp("the group's offsets partition " + p.String() + " has no leader right now; retry")
				break
			}
			co.NodeID, co.Host, co.Port = leader.ID, host, port
		case coordinatorTransaction:
			co.ErrorCode = kerr.CoordinatorNotAvailable.Code
			co.ErrorMessage = strp("transactions are not supported by this broker yet")
		default:
			co.ErrorCode = kerr.InvalidRequest.Code
			co.ErrorMessage = strp("unknown coordinator type; this broker coordinates consumer groups (type 0)")
		}
		resp.Coordinators = append(resp.Coordinators, co)
	}
	if r.Version < 4 {
		co := resp.Coordinators[0]
		resp.Coordinators = nil
		resp.ErrorCode, resp.ErrorMessage = co.ErrorCode, co.ErrorMessage
		resp.NodeID, resp.Host, resp.Port = co.NodeID, co.Host, co.Port
	}
	return resp
}

// groupCall runs op on the shard of groupID and waits for its reply (a
// JoinGroup or SyncGroup may wait for the rest of the group). errResp
// builds the response for a coordinator error.
func (b *Broker) groupCall(c *conn, groupID string, errResp func(code int16) kmsg.Response,
	op func(core *group.Coordinator, now time.Time, to group.ReplyTo) group.Output) kmsg.Response {
	s, err := b.groups.shardFor(groupID)
	if err != nil {
		return errResp(coordinatorError(err))
	}
	ch := make(chan kmsg.Response, 1)
	if err := s.do(func(core *group.Coordinator, now time.Time) group.Output { return op(core, now, ch) }); err != nil {
		return errResp(kerr.NotCoordinator.Code)
	}
	return c.wait(ch, func() kmsg.Response { return errResp(kerr.NotCoordinator.Code) })
}

func (b *Broker) handleJoinGroup(c *conn, req *request, r *kmsg.JoinGroupRequest) kmsg.Response {
	errResp := func(code int16) kmsg.Response {
		resp := r.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode, resp.Generation, resp.MemberID = code, -1, r.MemberID
		return resp
	}
	cl := c.groupClient(req.clientID)
	return b.groupCall(c, r.Group, errResp, func(core *group.Coordinator, now time.Time, to group.ReplyTo) group.Output {
		return core.JoinGroup(now, to, cl, r)
	})
}

func (b *Broker) handleSyncGroup(c *conn, r *kmsg.SyncGroupRequest) kmsg.Response {
	errResp := func(code int16) kmsg.Response {
		resp := r.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = code
		return resp
	}
	return b.groupCall(c, r.Group, errResp, func(core *group.Coordinator, now time.Time, to group.ReplyTo) group.Output {
		return core.SyncGroup(now, to, r)
	})
}

func (b *Broker) handleHeartbeat(c *conn, r *kmsg.HeartbeatRequest) kmsg.Response {
	errResp := func(code int16) kmsg.Response {
		resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = code
		return resp
	}
	return b.groupCall(c, r.Group, errResp, func(core *group.Coordinator, now time.Time, to group.ReplyTo) group.Output {
		return core.Heartbeat(now, to, r)
	})
}

func (b *Broker) handleLeaveGroup(c *conn, r *kmsg.LeaveGroupRequest) kmsg.Response {
	errResp := func(code int16) kmsg.Response {
		resp := r.ResponseKind().(*kmsg.LeaveGroupResponse)
		resp.ErrorCode = code
		return resp
	}
	return b.groupCall(c, r.Group, errResp, func(core *group.Coordinator, now time.Time, to group.ReplyTo) group.Output {
		return core.LeaveGroup(now, to, r)
	})
}

func (b *Broker) handleOffsetCommit(c *conn, r *kmsg.OffsetCommitRequest) kmsg.Response {
	errResp := func(code int16) kmsg.Response {
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	}
	exists := func(name string, p int32) bool {
		t := b.meta.lookup(name)
		return t != nil && !t.internal() && t.partition(p) != nil
	}
	return b.groupCall(c, r.Group, errResp, func(core *group.Coordinator, now time.Time, to group.ReplyTo) group.Output {
		return core.OffsetCommit(now, to, r, exists)
	})
}

func (b *Broker) handleOffsetDelete(c *conn, r *kmsg.OffsetDeleteRequest) kmsg.Response {
	errResp := func(code int16) kmsg.Response {
		resp := r.ResponseKind().(*kmsg.OffsetDeleteResponse)
		resp.ErrorCode = code
		return resp
	}
	return b.groupCall(c, r.Group, errResp, func(core *group.Coordinator, now time.Time, to group.ReplyTo) group.Output {
		return core.OffsetDelete(now, to, r)
	})
}

// handleOffsetFetch answers one group (v0-v7) or several (v8+).
func (b *Broker) handleOffsetFetch(r *kmsg.OffsetFetchRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	if r.Version >= 8 {
		for _, rg := range r.Groups {
			var topics []kmsg.OffsetFetchRequestGroupTopic
			if rg.Topics != nil {
				topics = rg.Topics
			}
			resp.Groups = append(resp.Groups, b.fetchGroupOffsets(rg.Group, topics, rg.MemberID, rg.MemberEpoch))
		}
		return resp
	}
	var topics []kmsg.OffsetFetchRequestGroupTopic
	if r.Topics != nil || r.Version < 2 {
		topics = []kmsg.OffsetFetchRequestGroupTopic{}
		for _, t := range r.Topics {
			topics = append(topics, kmsg.OffsetFetchRequestGroupTopic{Topic: t.Topic, Partitions: t.Partitions})
		}
	}
	g := b.fetchGroupOffsets(r.Group, topics, nil, -1)
	for _, gt := range g.Topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = gt.Topic
		for _, gp := range gt.Partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = gp.Partition, gp.Offset, gp.LeaderEpoch, gp.Metadata, gp.ErrorCode
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	resp.ErrorCode = g.ErrorCode
	if r.Version < 2 && g.ErrorCode != 0 {
		// No top-level error before v2: every partition carries it.
		for _, t := range r.Topics {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.ErrorCode = p, -1, g.ErrorCode
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
	}
	return resp
}

func (b *Broker) fetchGroupOffsets(id string, topics []kmsg.OffsetFetchRequestGroupTopic, memberID *string, memberEpoch int32) kmsg.OffsetFetchResponseGroup {
	s, err := b.groups.shardFor(id)
	if err != nil {
		rg := kmsg.NewOffsetFetchResponseGroup()
		rg.Group, rg.ErrorCode = id, coordinatorError(err)
		return rg
	}
	var out kmsg.OffsetFetchResponseGroup
	if err := s.do(func(core *group.Coordinator, _ time.Time) group.Output {
		out = core.OffsetFetch(id, topics, memberID, memberEpoch)
		return group.Output{}
	}); err != nil {
		out = kmsg.NewOffsetFetchResponseGroup()
		out.Group, out.ErrorCode = id, kerr.NotCoordinator.Code
	}
	return out
}

func (b *Broker) handleDescribeGroups(r *kmsg.DescribeGroupsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, id := range r.Groups {
		var dg kmsg.DescribeGroupsResponseGroup
		s, err := b.groups.shardFor(id)
		if err == nil {
			err = s.do(func(core *group.Coordinator, _ time.Time) group.Output {
				dg = core.DescribeGroup(id, r.Version)
				return group.Output{}
			})
		}
		if err != nil {
			dg = kmsg.NewDescribeGroupsResponseGroup()
			dg.Group, dg.ErrorCode = id, coordinatorError(err)
		}
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

// handleListGroups lists the groups of every shard; while any shard is
// loading the answer is COORDINATOR_LOAD_IN_PROGRESS, as Kafka's.
func (b *Broker) handleListGroups(r *kmsg.ListGroupsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListGroupsResponse)
	b.groups.mu.Lock()
	shards := b.groups.shards
	b.groups.mu.Unlock()
	for _, s := range shards {
		select {
		case <-s.loaded:
		default:
			resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
			resp.Groups = nil
			return resp
		}
		_ = s.do(func(core *group.Coordinator, _ time.Time) group.Output {
			resp.Groups = append(resp.Groups, core.ListGroups(r.StatesFilter, r.TypesFilter)...)
			return group.Output{}
		})
	}
	return resp
}

func (b *Broker) handleDeleteGroups(c *conn, r *kmsg.DeleteGroupsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, id := range r.Groups {
		errResp := func(code int16) kmsg.Response {
			one := kmsg.NewPtrDeleteGroupsResponse()
			g := kmsg.NewDeleteGroupsResponseGroup()
			g.Group, g.ErrorCode = id, code
			one.Groups = []kmsg.DeleteGroupsResponseGroup{g}
			return one
		}
		one := b.groupCall(c, id, errResp, func(core *group.Coordinator, now time.Time, to group.ReplyTo) group.Output {
			return core.DeleteGroup(now, to, id, r.Version)
		}).(*kmsg.DeleteGroupsResponse)
		resp.Groups = append(resp.Groups, one.Groups...)
	}
	return resp
}

func (b *Broker) handleConsumerGroupHeartbeat(c *conn, req *request, r *kmsg.ConsumerGroupHeartbeatRequest) kmsg.Response {
	errResp := func(code int16) kmsg.Response {
		resp := r.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
		resp.ErrorCode = code
		return resp
	}
	cl := c.groupClient(req.clientID)
	topics := topicsView{b.meta}
	return b.groupCall(c, r.Group, errResp, func(core *group.Coordinator, now time.Time, to group.ReplyTo) group.Output {
		return core.ConsumerGroupHeartbeat(now, to, cl, r, topics)
	})
}

func (b *Broker) handleConsumerGroupDescribe(r *kmsg.ConsumerGroupDescribeRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	topics := topicsView{b.meta}
	for _, id := range r.Groups {
		var dg kmsg.ConsumerGroupDescribeResponseGroup
		s, err := b.groups.shardFor(id)
		if err == nil {
			err = s.do(func(core *group.Coordinator, _ time.Time) group.Output {
				dg = core.ConsumerGroupDescribe(id, topics)
				return group.Output{}
			})
		}
		if err != nil {
			dg = kmsg.NewConsumerGroupDescribeResponseGroup()
			dg.Group, dg.ErrorCode = id, coordinatorError(err)
		}
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

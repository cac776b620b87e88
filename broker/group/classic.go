package group

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup),
// as Kafka's group coordinator runs it. The broker only runs the protocol:
// the group leader (a client) computes the assignment, so eager and
// cooperative-incremental rebalancing both work unchanged — cooperative
// clients simply rejoin a second time after revoking.

func joinError(version int16, memberID string, code int16) *kmsg.JoinGroupResponse {
	r := kmsg.NewPtrJoinGroupResponse()
	r.SetVersion(version)
	r.ErrorCode = code
	r.Generation = -1
	r.MemberID = memberID
	return r
}

func syncError(version int16, code int16) *kmsg.SyncGroupResponse {
	r := kmsg.NewPtrSyncGroupResponse()
	r.SetVersion(version)
	r.ErrorCode = code
	return r
}

func heartbeatResponse(version int16, code int16) *kmsg.HeartbeatResponse {
	r := kmsg.NewPtrHeartbeatResponse()
	r.SetVersion(version)
	r.ErrorCode = code
	return r
}

// JoinGroup handles a JoinGroup request from cl. The reply may be held until
// the group's join phase completes.
func (c *Coordinator) JoinGroup(now time.Time, to ReplyTo, cl Client, r *kmsg.JoinGroupRequest) Output {
	c.joinGroup(now, to, cl, r)
	return c.finish()
}

func (c *Coordinator) joinGroup(now time.Time, to ReplyTo, cl Client, r *kmsg.JoinGroupRequest) {
	fail := func(code int16) { c.reply(to, joinError(r.Version, r.MemberID, code)) }
	session := time.Duration(r.SessionTimeoutMillis) * time.Millisecond
	rebalance := time.Duration(r.RebalanceTimeoutMillis) * time.Millisecond
	if r.Version == 0 || r.RebalanceTimeoutMillis <= 0 {
		rebalance = session // v0 has no rebalance timeout
	}
	switch {
	case r.Group == "":
		fail(kerr.InvalidGroupID.Code)
		return
	case session < c.cfg.MinSessionTimeout || session > c.cfg.MaxSessionTimeout:
		fail(kerr.InvalidSessionTimeout.Code)
		return
	case r.ProtocolType == "" || len(r.Protocols) == 0:
		fail(kerr.InconsistentGroupProtocol.Code)
		return
	case r.InstanceID != nil && *r.InstanceID == "":
		fail(kerr.InvalidRequest.Code)
		return
	}
	g := c.groups[r.Group]
	if g == nil {
		if r.MemberID != "" {
			fail(kerr.UnknownMemberID.Code)
			return
		}
		g = c.newClassicGroup(r.Group, now)
	}
	if g.consumer != nil {
		if len(g.consumer.members) > 0 {
			// A KIP-848 group with members: they use
			// ConsumerGroupHeartbeat.
			fail(kerr.InconsistentGroupProtocol.Code)
			return
		}
		// An empty consumer group becomes a classic group again; its
		// offsets stay.
		c.write([]Record{consumerGroupTombstone(g.id)}, nil)
		g.consumer = nil
		g.protocolType = ""
		g.transition(stateEmpty, now)
	}
	if g.state == stateDead {
		fail(kerr.CoordinatorNotAvailable.Code)
		return
	}
	if !g.supportsProtocols(r.MemberID, r.ProtocolType, r.Protocols) {
		fail(kerr.InconsistentGroupProtocol.Code)
		return
	}
	j := joinArgs{to: to, cl: cl, req: r, session: session, rebalance: rebalance}
	if r.MemberID == "" {
		c.joinUnknownMember(now, g, j)
	} else {
		c.joinKnownMember(now, g, j)
	}
}

// joinArgs is a JoinGroup request being handled.
type joinArgs struct {
	to        ReplyTo
	cl        Client
	req       *kmsg.JoinGroupRequest
	session   time.Duration
	rebalance time.Duration
}

func (c *Coordinator) full(g *group) bool {
	return c.cfg.MaxSize > 0 && len(g.members)+len(g.pending) >= c.cfg.MaxSize
}

func (c *Coordinator) newMemberID(clientID string) string {
	return clientID + "-" + c.newUUID()
}

// joinUnknownMember handles a join without a member id: a new member, or a
// static member restarting (its instance id is known).
func (c *Coordinator) joinUnknownMember(now time.Time, g *group, j joinArgs) {
	r := j.req
	if r.InstanceID != nil {
		if old, ok := g.static[*r.InstanceID]; ok {
			c.rejoinStaticMember(now, g, g.members[old], j)
			return
		}
	}
	if c.full(g) {
		c.reply(j.to, joinError(r.Version, "", kerr.GroupMaxSizeReached.Code))
		return
	}
	prefix := j.cl.ID
	if r.InstanceID != nil {
		prefix = *r.InstanceID // Kafka names static members after their instance
	}
	id := c.newMemberID(prefix)
	if r.InstanceID == nil && r.Version >= 4 {
		// KIP-394: the client must come back with the id, so a join
		// whose response was lost does not leave a ghost member.
		g.pending[id] = c.schedule(now.Add(j.session), timerPending, g.id, id)
		c.reply(j.to, joinError(r.Version, id, kerr.MemberIDRequired.Code))
		return
	}
	c.addMember(now, g, id, j)
}

// joinKnownMember handles a join with a member id.
func (c *Coordinator) joinKnownMember(now time.Time, g *group, j joinArgs) {
	r := j.req
	if r.InstanceID != nil {
		if cur, ok := g.static[*r.InstanceID]; ok && cur != r.MemberID {
			c.reply(j.to, joinError(r.Version, r.MemberID, kerr.FencedInstanceID.Code))
			return
		}
	}
	if _, ok := g.pending[r.MemberID]; ok {
		delete(g.pending, r.MemberID)
		c.addMember(now, g, r.MemberID, j)
		return
	}
	m := g.members[r.MemberID]
	if m == nil {
		c.reply(j.to, joinError(r.Version, r.MemberID, kerr.UnknownMemberID.Code))
		return
	}
	if !sameInstance(m.instanceID, r.InstanceID) {
		c.reply(j.to, joinError(r.Version, r.MemberID, kerr.FencedInstanceID.Code))
		return
	}
	switch g.state {
	case statePreparingRebalance:
		c.updateMember(now, g, m, j)
	case stateCompletingRebalance:
		if m.sameProtocols(r.Protocols) {
			// A retry of a join already answered: answer the same way.
			c.touch(now, g, m)
			c.reply(j.to, c.joinResponse(g, m, r.Version))
			return
		}
		c.updateMember(now, g, m, j)
	case stateStable:
		if m.id == g.leader || !m.sameProtocols(r.Protocols) {
			// The leader rejoining asks for a new assignment (a
			// cooperative second rebalance, or new metadata).
			c.updateMember(now, g, m, j)
			return
		}
		c.touch(now, g, m)
		c.reply(j.to, c.joinResponse(g, m, r.Version))
	default:
		c.reply(j.to, joinError(r.Version, r.MemberID, kerr.UnknownMemberID.Code))
	}
}

func sameInstance(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// addMember adds a member that is joining now and starts (or continues) a
// rebalance.
func (c *Coordinator) addMember(now time.Time, g *group, id string, j joinArgs) {
	r := j.req
	if len(g.members) == 0 {
		g.protocolType = r.ProtocolType
	}
	g.joinSeq++
	m := &member{
		id:               id,
		clientID:         j.cl.ID,
		clientHost:       j.cl.Host,
		sessionTimeout:   j.session,
		rebalanceTimeout: j.rebalance,
		protocolType:     r.ProtocolType,
		protocols:        cloneProtocols(r.Protocols),
		seq:              g.joinSeq,
		isNew:            true,
		joined:           now,
	}
	if r.InstanceID != nil {
		inst := *r.InstanceID
		m.instanceID = &inst
		g.static[inst] = id
	}
	g.members[id] = m
	if g.leader == "" {
		g.leader = id
	}
	m.joining, m.joinTo, m.joinVersion = true, j.to, r.Version
	c.scheduleSession(now, g, m)
	if g.initialDelay {
		g.newMemberAdded = true
	}
	if g.state == statePreparingRebalance {
		c.tryCompleteJoin(now, g)
	} else {
		c.prepareRebalance(now, g, "member "+id+" joined")
	}
}

// updateMember records a known member's rejoin and starts (or continues) a
// rebalance.
func (c *Coordinator) updateMember(now time.Time, g *group, m *member, j joinArgs) {
	r := j.req
	m.protocols = cloneProtocols(r.Protocols)
	m.sessionTimeout, m.rebalanceTimeout = j.session, j.rebalance
	m.clientID, m.clientHost = j.cl.ID, j.cl.Host
	if m.joining {
		// A retried join replaces the one held; the old one's client
		// has stopped waiting for it.
		c.reply(m.joinTo, joinError(m.joinVersion, m.id, kerr.RebalanceInProgress.Code))
	}
	m.joining, m.joinTo, m.joinVersion = true, j.to, r.Version
	c.touch(now, g, m)
	if g.state == statePreparingRebalance {
		c.tryCompleteJoin(now, g)
	} else {
		c.prepareRebalance(now, g, "member "+m.id+" rejoined (new metadata, or the leader asked)")
	}
}

// rejoinStaticMember handles a static member restarting: it gets a new
// member id that replaces the old one (fencing the old instance), and, when
// the group is stable and its protocols are unchanged, the current
// generation without a rebalance (KIP-345).
func (c *Coordinator) rejoinStaticMember(now time.Time, g *group, m *member, j joinArgs) {
	r := j.req
	oldID := m.id
	oldLeader := g.leader
	newID := c.newMemberID(*r.InstanceID)
	// The old instance's held requests are answered with FENCED_INSTANCE_ID.
	if m.joining {
		c.reply(m.joinTo, joinError(m.joinVersion, oldID, kerr.FencedInstanceID.Code))
		m.joining = false
	}
	if m.syncing {
		c.reply(m.syncTo, syncError(m.syncVersion, kerr.FencedInstanceID.Code))
		m.syncing = false
	}
	delete(g.members, oldID)
	m.id = newID
	g.members[newID] = m
	g.static[*r.InstanceID] = newID
	if g.leader == oldID {
		g.leader = newID
	}
	oldProtocols, oldSession, oldRebalance := m.protocols, m.sessionTimeout, m.rebalanceTimeout
	m.protocols = cloneProtocols(r.Protocols)
	m.sessionTimeout, m.rebalanceTimeout = j.session, j.rebalance
	m.clientID, m.clientHost = j.cl.ID, j.cl.Host
	c.touch(now, g, m)

	switch g.state {
	case stateStable:
		if g.selectProtocol() != g.protocol || !m.sameProtocolsAs(oldProtocols, g.protocol) {
			m.joining, m.joinTo, m.joinVersion = true, j.to, r.Version
			c.prepareRebalance(now, g, "static member "+*r.InstanceID+" rejoined with new metadata")
			return
		}
		// Persist the replacement, then answer with the current
		// generation. The old leader id is returned to a leader so that
		// clients older than JoinGroup v9 do not assign (a stable group
		// would not propagate it); v9 says so with SkipAssignment.
		gen := g.generation
		c.write([]Record{g.metadataRecord(now)}, func(code int16) {
			if code != 0 {
				// Undo: the old instance keeps its id.
				if cur := g.members[newID]; cur == m && c.groups[g.id] == g {
					delete(g.members, newID)
					m.id = oldID
					g.members[oldID] = m
					g.static[*r.InstanceID] = oldID
					if g.leader == newID {
						g.leader = oldID
					}
					m.protocols, m.sessionTimeout, m.rebalanceTimeout = oldProtocols, oldSession, oldRebalance
				}
				c.reply(j.to, joinError(r.Version, "", persistErrorCode(code)))
				return
			}
			resp := kmsg.NewPtrJoinGroupResponse()
			resp.SetVersion(r.Version)
			resp.Generation = gen
			resp.ProtocolType = kmsg.StringPtr(g.protocolType)
			resp.Protocol = kmsg.StringPtr(g.protocol)
			resp.MemberID = newID
			resp.LeaderID = oldLeader
			if r.Version >= 9 && g.leader == newID {
				resp.LeaderID = newID
				resp.SkipAssignment = true
				resp.Members = c.joinMembers(g)
			}
			c.reply(j.to, resp)
		})
	case stateCompletingRebalance:
		// The leader may be assigning with the old id: rebalance again.
		m.joining, m.joinTo, m.joinVersion = true, j.to, r.Version
		c.prepareRebalance(now, g, "static member "+*r.InstanceID+" rejoined during a rebalance")
	case statePreparingRebalance:
		m.joining, m.joinTo, m.joinVersion = true, j.to, r.Version
		c.tryCompleteJoin(now, g)
	default:
		// Empty groups have no members; unreachable.
		c.reply(j.to, joinError(r.Version, "", kerr.UnknownMemberID.Code))
	}
}

// sameProtocolsAs reports whether the member's metadata for protocol is
// unchanged from old.
func (m *member) sameProtocolsAs(old []kmsg.JoinGroupRequestProtocol, protocol string) bool {
	o := &member{protocols: old}
	return hasProtocol(m, protocol) && string(m.metadataFor(protocol)) == string(o.metadataFor(protocol))
}

// prepareRebalance starts a join phase: every member must rejoin within
// the longest rebalance timeout. The first rebalance of an empty group
// waits group.initial.rebalance.delay.ms (extended while members keep
// arriving) so that members starting together land in one generation.
func (c *Coordinator) prepareRebalance(now time.Time, g *group, reason string) {
	c.event(g, "preparing to rebalance", reason)
	if g.state == stateCompletingRebalance {
		c.resetAssignments(g, kerr.RebalanceInProgress.Code)
	}
	timeout := g.maxRebalanceTimeout()
	if g.state == stateEmpty && c.cfg.InitialRebalanceDelay > 0 {
		delay := min(c.cfg.InitialRebalanceDelay, timeout)
		g.initialDelay = true
		g.newMemberAdded = false
		g.delayRemaining = max(timeout-delay, 0)
		g.joinTimer = c.schedule(now.Add(delay), timerJoin, g.id, "")
		g.transition(statePreparingRebalance, now)
		return
	}
	g.initialDelay = false
	g.joinTimer = c.schedule(now.Add(timeout), timerJoin, g.id, "")
	g.transition(statePreparingRebalance, now)
	c.tryCompleteJoin(now, g)
}

// resetAssignments fails held SyncGroups with code and forgets the
// generation's assignment (a new rebalance is starting).
func (c *Coordinator) resetAssignments(g *group, code int16) {
	for _, m := range g.members {
		m.assignment = nil
		if m.syncing {
			c.reply(m.syncTo, syncError(m.syncVersion, code))
			m.syncing = false
		}
	}
}

// tryCompleteJoin ends the join phase early once everyone has rejoined
// (never during the initial delay).
func (c *Coordinator) tryCompleteJoin(now time.Time, g *group) {
	if g.state != statePreparingRebalance || g.initialDelay || !g.allJoined() {
		return
	}
	c.completeJoin(now, g)
}

// joinTimerFired ends a join phase, or extends the initial delay (from the
// deadline that passed, so a late Tick does not stretch it) when members
// joined during it.
func (c *Coordinator) joinTimerFired(now, deadline time.Time, g *group) {
	if g.state != statePreparingRebalance {
		return
	}
	if g.initialDelay && g.newMemberAdded && g.delayRemaining > 0 {
		delay := min(c.cfg.InitialRebalanceDelay, g.delayRemaining)
		g.delayRemaining -= delay
		g.newMemberAdded = false
		g.joinTimer = c.schedule(deadline.Add(delay), timerJoin, g.id, "")
		return
	}
	g.initialDelay = false
	c.completeJoin(now, g)
}

// completeJoin ends the join phase: dynamic members that did not rejoin are
// removed, the next generation starts, and every waiting member gets its
// JoinGroup response (the leader with everyone's metadata).
func (c *Coordinator) completeJoin(now time.Time, g *group) {
	if g.joinTimer != 0 {
		g.joinTimer = 0 // cancels the timer
	}
	g.initialDelay = false
	for _, m := range g.sortedMembers() {
		if !m.joining && m.instanceID == nil {
			c.removeMemberOnly(g, m)
		}
	}
	g.generation++
	if len(g.members) == 0 {
		g.protocol = ""
		g.leader = ""
		g.transition(stateEmpty, now)
		c.event(g, "group is empty", "")
		c.write([]Record{g.metadataRecord(now)}, nil)
		return
	}
	g.protocol = g.selectProtocol()
	if l := g.members[g.leader]; l == nil || !l.joining {
		// The leader must be a member that rejoined.
		for _, m := range g.sortedMembers() {
			if m.joining {
				g.leader = m.id
				break
			}
		}
	}
	g.transition(stateCompletingRebalance, now)
	c.event(g, "generation started; waiting for the leader's assignment", "leader "+g.leader+", protocol "+g.protocol)
	for _, m := range g.sortedMembers() {
		if !m.joining {
			continue
		}
		c.reply(m.joinTo, c.joinResponse(g, m, m.joinVersion))
		m.joining, m.joinTo = false, nil
		m.isNew = false
		c.touch(now, g, m)
	}
}

// joinResponse is a successful JoinGroup response for m in the current
// generation; the leader gets every member's metadata.
func (c *Coordinator) joinResponse(g *group, m *member, version int16) *kmsg.JoinGroupResponse {
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.SetVersion(version)
	resp.Generation = g.generation
	resp.ProtocolType = kmsg.StringPtr(g.protocolType)
	resp.Protocol = kmsg.StringPtr(g.protocol)
	resp.LeaderID = g.leader
	resp.MemberID = m.id
	if m.id == g.leader {
		resp.Members = c.joinMembers(g)
	}
	return resp
}

func (c *Coordinator) joinMembers(g *group) []kmsg.JoinGroupResponseMember {
	var out []kmsg.JoinGroupResponseMember
	for _, o := range g.sortedMembers() {
		jm := kmsg.NewJoinGroupResponseMember()
		jm.MemberID = o.id
		jm.InstanceID = o.instanceID
		jm.ProtocolMetadata = o.metadataFor(g.protocol)
		out = append(out, jm)
	}
	return out
}

// SyncGroup handles a SyncGroup request. Followers wait for the leader's
// assignment; the leader's assignment is persisted before anyone gets it.
func (c *Coordinator) SyncGroup(now time.Time, to ReplyTo, r *kmsg.SyncGroupRequest) Output {
	c.syncGroup(now, to, r)
	return c.finish()
}

func (c *Coordinator) syncGroup(now time.Time, to ReplyTo, r *kmsg.SyncGroupRequest) {
	fail := func(code int16) { c.reply(to, syncError(r.Version, code)) }
	if r.Group == "" {
		fail(kerr.InvalidGroupID.Code)
		return
	}
	g := c.groups[r.Group]
	if g == nil || g.consumer != nil {
		fail(kerr.UnknownMemberID.Code)
		return
	}
	if g.state == stateDead {
		fail(kerr.CoordinatorNotAvailable.Code)
		return
	}
	m, code := g.validateMember(r.MemberID, r.InstanceID)
	if code != 0 {
		fail(code)
		return
	}
	if r.Generation != g.generation {
		fail(kerr.IllegalGeneration.Code)
		return
	}
	if r.ProtocolType != nil && *r.ProtocolType != g.protocolType || r.Protocol != nil && *r.Protocol != g.protocol {
		fail(kerr.InconsistentGroupProtocol.Code)
		return
	}
	switch g.state {
	case stateEmpty:
		fail(kerr.UnknownMemberID.Code)
	case statePreparingRebalance:
		fail(kerr.RebalanceInProgress.Code)
	case stateStable:
		c.touch(now, g, m)
		c.reply(to, c.syncResponse(g, m, r.Version))
	case stateCompletingRebalance:
		if m.syncing {
			c.reply(m.syncTo, syncError(m.syncVersion, kerr.RebalanceInProgress.Code))
		}
		m.syncing, m.syncTo, m.syncVersion = true, to, r.Version
		c.touch(now, g, m)
		if m.id != g.leader {
			return
		}
		assignment := map[string][]byte{}
		for _, a := range r.GroupAssignment {
			if g.members[a.MemberID] != nil {
				assignment[a.MemberID] = append([]byte{}, a.MemberAssignment...)
			}
		}
		gen := g.generation
		for id, mm := range g.members {
			mm.assignment = assignment[id]
		}
		c.write([]Record{g.metadataRecord(now)}, func(code int16) {
			if c.groups[g.id] != g || g.state != stateCompletingRebalance || g.generation != gen {
				return // a new rebalance started meanwhile
			}
			if code != 0 {
				c.resetAssignments(g, persistErrorCode(code))
				c.prepareRebalance(now, g, "storing the assignment failed: "+kerr.ErrorForCode(code).Error())
				return
			}
			for _, mm := range g.sortedMembers() {
				if mm.syncing {
					c.reply(mm.syncTo, c.syncResponse(g, mm, mm.syncVersion))
					mm.syncing, mm.syncTo = false, nil
				}
			}
			g.transition(stateStable, now)
			c.event(g, "stable", "")
		})
	}
}

func (c *Coordinator) syncResponse(g *group, m *member, version int16) *kmsg.SyncGroupResponse {
	resp := kmsg.NewPtrSyncGroupResponse()
	resp.SetVersion(version)
	resp.ProtocolType = kmsg.StringPtr(g.protocolType)
	resp.Protocol = kmsg.StringPtr(g.protocol)
	resp.MemberAssignment = m.assignment
	if resp.MemberAssignment == nil {
		resp.MemberAssignment = []byte{}
	}
	return resp
}

// validateMember finds a classic member by id, checking its static
// instance id: a different member holding the instance id means this one
// was replaced (FENCED_INSTANCE_ID).
func (g *group) validateMember(memberID string, instanceID *string) (*member, int16) {
	if instanceID != nil {
		if cur, ok := g.static[*instanceID]; ok && cur != memberID {
			return nil, kerr.FencedInstanceID.Code
		}
	}
	m := g.members[memberID]
	if m == nil {
		return nil, kerr.UnknownMemberID.Code
	}
	if instanceID != nil && !sameInstance(m.instanceID, instanceID) {
		return nil, kerr.FencedInstanceID.Code
	}
	return m, 0
}

// Heartbeat handles a Heartbeat request: it keeps the member's session
// alive and tells it whether a rebalance is under way.
func (c *Coordinator) Heartbeat(now time.Time, to ReplyTo, r *kmsg.HeartbeatRequest) Output {
	c.reply(to, heartbeatResponse(r.Version, c.heartbeat(now, r)))
	return c.finish()
}

func (c *Coordinator) heartbeat(now time.Time, r *kmsg.HeartbeatRequest) int16 {
	if r.Group == "" {
		return kerr.InvalidGroupID.Code
	}
	g := c.groups[r.Group]
	if g == nil || g.consumer != nil {
		return kerr.UnknownMemberID.Code
	}
	switch g.state {
	case stateDead:
		return kerr.CoordinatorNotAvailable.Code
	case stateEmpty:
		return kerr.UnknownMemberID.Code
	}
	m, code := g.validateMember(r.MemberID, r.InstanceID)
	if code != 0 {
		return code
	}
	if r.Generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	c.touch(now, g, m)
	if g.state == statePreparingRebalance {
		return kerr.RebalanceInProgress.Code
	}
	return 0
}

// LeaveGroup handles a LeaveGroup request (one member before v3, a batch
// with per-member errors from v3).
func (c *Coordinator) LeaveGroup(now time.Time, to ReplyTo, r *kmsg.LeaveGroupRequest) Output {
	resp := kmsg.NewPtrLeaveGroupResponse()
	resp.SetVersion(r.Version)
	leaving := r.Members
	if r.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: r.MemberID}}
	}
	g := c.groups[r.Group]
	switch {
	case r.Group == "":
		resp.ErrorCode = kerr.InvalidGroupID.Code
	case g != nil && g.state == stateDead:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
	default:
		for _, lm := range leaving {
			rm := kmsg.NewLeaveGroupResponseMember()
			rm.MemberID, rm.InstanceID = lm.MemberID, lm.InstanceID
			rm.ErrorCode = c.leave(now, g, lm)
			resp.Members = append(resp.Members, rm)
		}
		if r.Version < 3 {
			resp.ErrorCode = resp.Members[0].ErrorCode
			resp.Members = nil
		}
	}
	c.reply(to, resp)
	return c.finish()
}

func (c *Coordinator) leave(now time.Time, g *group, lm kmsg.LeaveGroupRequestMember) int16 {
	if g == nil || g.consumer != nil {
		return kerr.UnknownMemberID.Code
	}
	id := lm.MemberID
	if lm.InstanceID != nil {
		cur, ok := g.static[*lm.InstanceID]
		switch {
		case !ok:
			return kerr.UnknownMemberID.Code
		case id != "" && cur != id:
			return kerr.FencedInstanceID.Code
		}
		id = cur
	}
	if _, ok := g.pending[id]; ok {
		delete(g.pending, id)
		c.tryCompleteJoin(now, g)
		return 0
	}
	m := g.members[id]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	c.removeMember(now, g, m, "member "+m.id+" left")
	return 0
}

// sessionExpired handles a member's session timer: members waiting in a
// join phase or for their assignment are kept (the rebalance timeout deals
// with them), except a new member that never completed a join within
// NewMemberJoinTimeout; anyone else is removed.
func (c *Coordinator) sessionExpired(now time.Time, g *group, m *member) {
	keep := false
	switch {
	case m.joining:
		keep = !m.isNew || now.Before(m.joined.Add(c.cfg.NewMemberJoinTimeout))
	case m.syncing:
		keep = true
	}
	if keep {
		c.scheduleSession(now, g, m)
		return
	}
	c.removeMember(now, g, m, "member "+m.id+" session timed out")
}

// removeMember removes m and rebalances the rest.
func (c *Coordinator) removeMember(now time.Time, g *group, m *member, reason string) {
	c.removeMemberOnly(g, m)
	switch g.state {
	case stateStable, stateCompletingRebalance:
		c.prepareRebalance(now, g, reason)
	case statePreparingRebalance:
		c.tryCompleteJoin(now, g)
	}
}

// removeMemberOnly drops m from the group, answering its held requests
// with UNKNOWN_MEMBER_ID, and moves leadership if it led.
func (c *Coordinator) removeMemberOnly(g *group, m *member) {
	if m.joining {
		c.reply(m.joinTo, joinError(m.joinVersion, m.id, kerr.UnknownMemberID.Code))
	}
	if m.syncing {
		c.reply(m.syncTo, syncError(m.syncVersion, kerr.UnknownMemberID.Code))
	}
	delete(g.members, m.id)
	if m.instanceID != nil && g.static[*m.instanceID] == m.id {
		delete(g.static, *m.instanceID)
	}
	m.timer = 0
	if g.leader == m.id {
		g.leader = ""
		if ms := g.sortedMembers(); len(ms) > 0 {
			g.leader = ms[0].id
		}
	}
}

// touch records a sign of life from m: its session restarts.
func (c *Coordinator) touch(now time.Time, g *group, m *member) {
	c.scheduleSession(now, g, m)
}

// scheduleSession (re)starts m's session timer. A new member waiting in a
// join phase gets NewMemberJoinTimeout instead (checked on expiry).
func (c *Coordinator) scheduleSession(now time.Time, g *group, m *member) {
	d := m.sessionTimeout
	if m.joining && m.isNew {
		d = min(d, c.cfg.NewMemberJoinTimeout)
	}
	m.timer = c.schedule(now.Add(d), timerSession, g.id, m.id)
}

// afterLoad gives the members of a group read back from the log a fresh
// session: they had no chance to heartbeat while the coordinator moved.
func (g *group) afterLoad(c *Coordinator, now time.Time) {
	if g.consumer != nil {
		g.consumer.afterLoad(c, g, now)
		return
	}
	for _, m := range g.sortedMembers() {
		c.scheduleSession(now, g, m)
	}
}

// cloneProtocols copies a request's protocols: the request's bytes belong
// to the caller's buffer, which is reused once the call returns.
func cloneProtocols(ps []kmsg.JoinGroupRequestProtocol) []kmsg.JoinGroupRequestProtocol {
	out := make([]kmsg.JoinGroupRequestProtocol, len(ps))
	for i, p := range ps {
		out[i] = kmsg.JoinGroupRequestProtocol{Name: p.Name, Metadata: append([]byte{}, p.Metadata...)}
	}
	return out
}

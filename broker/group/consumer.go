package group

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The consumer group protocol of KIP-848: members send
// ConsumerGroupHeartbeat; the coordinator computes the target assignment
// with a server-side assignor whenever the group epoch moves (a member
// joins, leaves or changes its subscription, or a subscribed topic changes)
// and reconciles each member towards its target one heartbeat at a time: a
// member first revokes the partitions it must give up (keeping its epoch),
// and only then moves to the new epoch and receives the partitions that no
// other member still owns.

// Topics is the coordinator's view of topic metadata for KIP-848 groups,
// which address topics by id.
type Topics interface {
	// ByName returns a topic's id and partition count.
	ByName(name string) (id [16]byte, partitions int32, ok bool)
	// ByID returns a topic's name.
	ByID(id [16]byte) (name string, ok bool)
	// Names lists every topic a regex subscription may match.
	Names() []string
}

// Member reconciliation states (Kafka's MemberState).
const (
	memberStable     = "STABLE"
	memberUnrevoked  = "UNREVOKED_PARTITIONS"
	memberUnreleased = "UNRELEASED_PARTITIONS"
)

type consumerGroup struct {
	epoch           int32
	assignmentEpoch int32
	members         map[string]*cmember
	static          map[string]string // instance id → member id
	target          assignment
	// metadataSig describes the subscribed topics (name, id, partition
	// count) the target was computed from; a change bumps the epoch.
	metadataSig string
	stateSince  time.Time
}

type cmember struct {
	id               string
	instanceID       *string
	rackID           *string
	clientID         string
	clientHost       string
	epoch            int32
	prevEpoch        int32
	rebalanceTimeout time.Duration
	topics           []string // subscribed topic names, sorted
	regex            string   // subscribed topic regex, "" if none
	re               *regexp.Regexp
	assignor         string // requested server assignor, "" for the default
	state            string
	assigned         map[string][]int32 // what the member may own now
	revoking         map[string][]int32 // what it must give up first
	left             bool               // a static member that left with epoch -2
	sessionTimer     uint64
	revokeTimer      uint64
}

func (cg *consumerGroup) member(id string) *cmember {
	if cg == nil {
		return nil
	}
	return cg.members[id]
}

func newConsumerGroup(now time.Time) *consumerGroup {
	return &consumerGroup{members: map[string]*cmember{}, static: map[string]string{}, target: assignment{}, stateSince: now}
}

func (cg *consumerGroup) sortedMembers() []*cmember {
	ms := make([]*cmember, 0, len(cg.members))
	for _, m := range cg.members {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].id < ms[j].id })
	return ms
}

// stateName is the group state KIP-848 reports.
func (cg *consumerGroup) stateName() string {
	switch {
	case len(cg.members) == 0:
		return "Empty"
	case cg.assignmentEpoch < cg.epoch:
		return "Assigning"
	}
	for _, m := range cg.members {
		if m.epoch != cg.assignmentEpoch || m.state != memberStable {
			return "Reconciling"
		}
	}
	return "Stable"
}

// assignorName is the assignor the group uses: the one most members ask
// for (ties by name), uniform by default.
func (cg *consumerGroup) assignorName() string {
	votes := map[string]int{}
	for _, m := range cg.members {
		if m.assignor != "" {
			votes[m.assignor]++
		}
	}
	best := AssignorUniform
	for _, name := range sortedKeys(votes) {
		if votes[name] > votes[best] {
			best = name
		}
	}
	return best
}

// subscribedTopics returns every topic some member subscribes to by name
// (regex subscriptions included as last resolved).
func (cg *consumerGroup) subscribedTopics() map[string]bool {
	out := map[string]bool{}
	for _, m := range cg.members {
		for _, t := range m.topics {
			out[t] = true
		}
		for t := range m.assigned {
			out[t] = true
		}
	}
	return out
}

func cgError(version int16, code int16, msg string) *kmsg.ConsumerGroupHeartbeatResponse {
	r := kmsg.NewPtrConsumerGroupHeartbeatResponse()
	r.SetVersion(version)
	r.ErrorCode = code
	if msg != "" {
		r.ErrorMessage = &msg
	}
	return r
}

// ConsumerGroupHeartbeat handles a KIP-848 heartbeat: join (epoch 0),
// leave (epoch -1, or -2 for a static member that will come back), or a
// regular heartbeat that may carry a changed subscription and the
// partitions the member owns.
func (c *Coordinator) ConsumerGroupHeartbeat(now time.Time, to ReplyTo, cl Client, r *kmsg.ConsumerGroupHeartbeatRequest, topics Topics) Output {
	c.consumerHeartbeat(now, to, cl, r, topics)
	return c.finish()
}

func (c *Coordinator) consumerHeartbeat(now time.Time, to ReplyTo, cl Client, r *kmsg.ConsumerGroupHeartbeatRequest, topics Topics) {
	fail := func(code int16, msg string) { c.reply(to, cgError(r.Version, code, msg)) }
	if msg := validateConsumerHeartbeat(r); msg != "" {
		fail(kerr.InvalidRequest.Code, msg)
		return
	}
	var re *regexp.Regexp
	if r.SubscribedTopicRegex != nil && *r.SubscribedTopicRegex != "" {
		var err error
		if re, err = regexp.Compile("^(?:" + *r.SubscribedTopicRegex + ")$"); err != nil {
			fail(kerr.InvalidRegularExpression.Code, "SubscribedTopicRegex does not compile: "+err.Error())
			return
		}
	}
	if r.ServerAssignor != nil && !knownAssignor(*r.ServerAssignor) {
		fail(kerr.UnsupportedAssignor.Code, "unknown server assignor "+*r.ServerAssignor+"; this broker has uniform and range")
		return
	}
	g := c.groups[r.Group]
	if g == nil {
		if r.MemberEpoch != 0 {
			fail(kerr.UnknownMemberID.Code, "group "+r.Group+" has no member "+r.MemberID)
			return
		}
		g = c.newClassicGroup(r.Group, now)
	}
	if g.consumer == nil {
		if !g.isEmpty() {
			fail(kerr.GroupIDNotFound.Code, "group "+r.Group+" is a classic group with members; it can use this protocol once empty")
			return
		}
		// An empty classic group (perhaps only offsets) becomes a
		// consumer group; its offsets stay.
		g.consumer = newConsumerGroup(now)
		g.protocolType, g.protocol, g.leader = "consumer", "", ""
	}
	cg := g.consumer

	if r.MemberEpoch < 0 {
		c.consumerLeave(now, to, g, r)
		return
	}

	var m *cmember
	// dirty: the group must be persisted; bump: the group epoch moves
	// (once per heartbeat, however many things changed).
	dirty, bump := false, false
	if r.MemberEpoch == 0 {
		memberID := r.MemberID
		if memberID == "" {
			memberID = c.newUUID() // v0: the coordinator names the member
		}
		if r.InstanceID != nil {
			if old, ok := cg.static[*r.InstanceID]; ok && old != memberID {
				om := cg.members[old]
				if om != nil && !om.left {
					fail(kerr.UnreleasedInstanceID.Code, "instance id "+*r.InstanceID+" is in use by member "+old)
					return
				}
				// The static member is back: the new member id
				// takes over its epoch and assignment.
				if om != nil {
					delete(cg.members, old)
					om.id, om.left = memberID, false
					om.sessionTimer, om.revokeTimer = 0, 0
					cg.members[memberID] = om
					m = om
				}
				cg.static[*r.InstanceID] = memberID
				dirty = true
			}
		}
		if m == nil {
			m = cg.members[memberID]
		}
		if m == nil {
			if c.cfg.ConsumerMaxSize > 0 && len(cg.members) >= c.cfg.ConsumerMaxSize {
				fail(kerr.GroupMaxSizeReached.Code, "group "+r.Group+" has the maximum number of members")
				return
			}
			m = &cmember{id: memberID, state: memberStable, assigned: map[string][]int32{}, revoking: map[string][]int32{}}
			cg.members[memberID] = m
			if r.InstanceID != nil {
				inst := *r.InstanceID
				m.instanceID = &inst
				cg.static[inst] = memberID
			}
			bump = true
		} else if m.epoch != 0 && !dirty {
			// The same member joining again (its earlier join's
			// response was lost, or it restarted): it owns nothing.
			m.epoch, m.prevEpoch = 0, 0
			m.assigned, m.revoking, m.state = map[string][]int32{}, map[string][]int32{}, memberStable
			dirty = true
		}
	} else {
		m = cg.members[r.MemberID]
		if m == nil || m.left {
			fail(kerr.UnknownMemberID.Code, "member "+r.MemberID+" is not in group "+r.Group)
			return
		}
		if code := m.checkEpoch(r.MemberEpoch, r.Topics, topics); code != 0 {
			fail(code, "member epoch "+itoa32(r.MemberEpoch)+" is not current ("+itoa32(m.epoch)+"); rejoin")
			return
		}
	}

	// Member settings; nil means unchanged.
	m.clientID, m.clientHost = cl.ID, cl.Host
	if r.RackID != nil {
		m.rackID = r.RackID
	}
	if r.RebalanceTimeoutMillis > 0 {
		m.rebalanceTimeout = time.Duration(r.RebalanceTimeoutMillis) * time.Millisecond
	}
	if m.rebalanceTimeout <= 0 {
		m.rebalanceTimeout = c.cfg.ConsumerRebalanceTimeout
	}
	if r.ServerAssignor != nil && *r.ServerAssignor != m.assignor {
		m.assignor = *r.ServerAssignor
		dirty = true
	}
	if r.SubscribedTopicNames != nil {
		names := append([]string(nil), r.SubscribedTopicNames...)
		sort.Strings(names)
		names = dedupe(names)
		if strings.Join(names, "\x00") != strings.Join(m.topics, "\x00") || m.regex != "" && r.SubscribedTopicRegex == nil {
			m.topics = names
			m.regex, m.re = "", nil
			bump = true
		}
	}
	if r.SubscribedTopicRegex != nil && *r.SubscribedTopicRegex != m.regex {
		m.regex, m.re = *r.SubscribedTopicRegex, re
		if m.regex != "" {
			m.topics = nil
		}
		bump = true
	}

	// Resolve regex subscriptions and watch the subscribed topics'
	// metadata: a new topic or partition moves the group epoch.
	if c.refreshConsumerMetadata(cg, topics) {
		bump = true
	}
	if bump {
		cg.epoch++
		dirty = true
	}
	if cg.assignmentEpoch < cg.epoch {
		c.computeTarget(g, topics)
		dirty = true
	}

	before := m.assignedSig()
	if m.reconcile(cg, r.Topics, topics) {
		dirty = true
	}
	if m.state == memberUnrevoked {
		if m.revokeTimer == 0 {
			m.revokeTimer = c.schedule(now.Add(m.rebalanceTimeout), timerConsumerRevoke, g.id, m.id)
		}
	} else {
		m.revokeTimer = 0
	}
	m.sessionTimer = c.schedule(now.Add(c.cfg.ConsumerSessionTimeout), timerConsumerSession, g.id, m.id)

	resp := kmsg.NewPtrConsumerGroupHeartbeatResponse()
	resp.SetVersion(r.Version)
	resp.MemberID = kmsg.StringPtr(m.id)
	resp.MemberEpoch = m.epoch
	resp.HeartbeatIntervalMillis = int32(c.cfg.ConsumerHeartbeatInterval / time.Millisecond)
	sendAssignment := r.MemberEpoch == 0 || m.assignedSig() != before
	if r.Topics != nil && !sendAssignment {
		sendAssignment = ownedSig(r.Topics, topics) != m.assignedSig()
	}
	if sendAssignment {
		resp.Assignment = m.responseAssignment(topics)
	}
	if !dirty {
		c.reply(to, resp)
		return
	}
	c.write([]Record{consumerGroupRecord(g, now)}, func(code int16) {
		if code != 0 {
			c.reply(to, cgError(r.Version, persistErrorCode(code), "could not store the group's state"))
			return
		}
		c.reply(to, resp)
	})
}

// validateConsumerHeartbeat checks the request's shape, returning what is
// wrong.
func validateConsumerHeartbeat(r *kmsg.ConsumerGroupHeartbeatRequest) string {
	switch {
	case r.Group == "":
		return "GroupId can't be empty"
	case r.InstanceID != nil && *r.InstanceID == "":
		return "InstanceId can't be empty"
	case r.RackID != nil && *r.RackID == "":
		return "RackId can't be empty"
	case r.MemberEpoch < -2:
		return "MemberEpoch must be -2, -1, 0 or a member epoch"
	case r.MemberEpoch != 0 && r.MemberID == "":
		return "MemberId can't be empty"
	case r.Version >= 1 && r.MemberID == "":
		return "MemberId can't be empty (clients generate it from version 1)"
	case r.MemberEpoch == -2 && r.InstanceID == nil:
		return "MemberEpoch -2 is for static members (InstanceId set)"
	}
	if r.MemberEpoch == 0 {
		switch {
		case r.RebalanceTimeoutMillis == -1 || r.RebalanceTimeoutMillis == 0:
			return "RebalanceTimeoutMs must be provided when joining"
		case r.SubscribedTopicNames == nil && (r.SubscribedTopicRegex == nil || *r.SubscribedTopicRegex == ""):
			return "SubscribedTopicNames or SubscribedTopicRegex must be set when joining"
		case r.Topics == nil || len(r.Topics) > 0:
			return "Topics must be an empty list when joining"
		}
	}
	return ""
}

// consumerLeave handles epoch -1 (leave) and -2 (a static member leaving
// for a moment: its assignment is kept for its session timeout).
func (c *Coordinator) consumerLeave(now time.Time, to ReplyTo, g *group, r *kmsg.ConsumerGroupHeartbeatRequest) {
	cg := g.consumer
	id := r.MemberID
	if r.InstanceID != nil {
		if cur, ok := cg.static[*r.InstanceID]; ok {
			if id != "" && cur != id {
				c.reply(to, cgError(r.Version, kerr.FencedInstanceID.Code, "instance id "+*r.InstanceID+" belongs to member "+cur))
				return
			}
			id = cur
		}
	}
	m := cg.members[id]
	if m == nil {
		c.reply(to, cgError(r.Version, kerr.UnknownMemberID.Code, "member "+id+" is not in group "+g.id))
		return
	}
	resp := kmsg.NewPtrConsumerGroupHeartbeatResponse()
	resp.SetVersion(r.Version)
	resp.MemberID = kmsg.StringPtr(id)
	resp.MemberEpoch = r.MemberEpoch
	if r.MemberEpoch == -2 {
		m.left = true
		m.revokeTimer = 0
		m.sessionTimer = c.schedule(now.Add(c.cfg.ConsumerSessionTimeout), timerConsumerSession, g.id, m.id)
	} else {
		c.removeConsumerMember(now, g, m)
	}
	c.write([]Record{consumerGroupRecord(g, now)}, func(code int16) {
		if code != 0 {
			c.reply(to, cgError(r.Version, persistErrorCode(code), "could not store the group's state"))
			return
		}
		c.reply(to, resp)
	})
}

// removeConsumerMember drops a member; the others are reassigned its
// partitions at their next heartbeats.
func (c *Coordinator) removeConsumerMember(now time.Time, g *group, m *cmember) {
	cg := g.consumer
	delete(cg.members, m.id)
	if m.instanceID != nil && cg.static[*m.instanceID] == m.id {
		delete(cg.static, *m.instanceID)
	}
	m.sessionTimer, m.revokeTimer = 0, 0
	cg.epoch++
	delete(cg.target, m.id)
	if len(cg.members) == 0 {
		cg.stateSince = now
		g.stateSince = now
	}
}

func (c *Coordinator) consumerSessionExpired(now time.Time, g *group, id string) {
	c.expireConsumerMember(now, g, id, "session timed out")
}

func (c *Coordinator) expireConsumerMember(now time.Time, g *group, id, why string) {
	if m := g.consumer.member(id); m != nil {
		c.removeConsumerMember(now, g, m)
		c.event(g, "member "+id+" removed", why)
		c.write([]Record{consumerGroupRecord(g, now)}, nil)
	}
}

// consumerRevokeExpired removes a member that did not revoke partitions
// within its rebalance timeout: its partitions go to the others.
func (c *Coordinator) consumerRevokeExpired(now time.Time, g *group, id string) {
	c.expireConsumerMember(now, g, id, "did not revoke its partitions within its rebalance timeout")
}

// refreshConsumerMetadata resolves regex subscriptions and recomputes the
// signature of the subscribed topics' metadata. It reports whether either
// changed (then the group epoch must move).
func (c *Coordinator) refreshConsumerMetadata(cg *consumerGroup, topics Topics) bool {
	changed := false
	var names []string
	hasRegex := false
	for _, m := range cg.members {
		if m.re != nil {
			hasRegex = true
		}
	}
	if hasRegex {
		names = topics.Names()
		sort.Strings(names)
	}
	for _, m := range cg.sortedMembers() {
		if m.re == nil {
			if m.regex != "" {
				// Restored from the log: compile again.
				m.re, _ = regexp.Compile("^(?:" + m.regex + ")$")
			}
			if m.re == nil {
				continue
			}
			if names == nil {
				names = topics.Names()
				sort.Strings(names)
			}
		}
		var matched []string
		for _, n := range names {
			if m.re.MatchString(n) {
				matched = append(matched, n)
			}
		}
		if strings.Join(matched, "\x00") != strings.Join(m.topics, "\x00") {
			m.topics = matched
			changed = true
		}
	}
	var sig strings.Builder
	for _, t := range sortedKeys(cg.subscribedNames()) {
		id, n, ok := topics.ByName(t)
		if !ok {
			continue
		}
		sig.WriteString(t)
		sig.WriteByte(':')
		sig.WriteString(string(id[:]))
		sig.WriteByte(':')
		sig.WriteString(itoa32(n))
		sig.WriteByte(';')
	}
	if s := sig.String(); s != cg.metadataSig {
		cg.metadataSig = s
		changed = true
	}
	return changed
}

// subscribedNames is the union of the members' subscribed topic names.
func (cg *consumerGroup) subscribedNames() map[string]bool {
	out := map[string]bool{}
	for _, m := range cg.members {
		if m.left {
			continue
		}
		for _, t := range m.topics {
			out[t] = true
		}
	}
	return out
}

// computeTarget runs the group's assignor for the current epoch.
func (c *Coordinator) computeTarget(g *group, topics Topics) {
	cg := g.consumer
	in := assignInput{subscribed: map[string]map[string]bool{}, partitions: map[string]int32{}, previous: cg.target}
	for _, m := range cg.sortedMembers() {
		in.members = append(in.members, m.id)
		subs := map[string]bool{}
		for _, t := range m.topics {
			if _, n, ok := topics.ByName(t); ok && n > 0 {
				subs[t] = true
				in.partitions[t] = n
			}
		}
		in.subscribed[m.id] = subs
	}
	cg.target = runAssignor(cg.assignorName(), in)
	cg.assignmentEpoch = cg.epoch
	c.event(g, "computed a target assignment", "assignor "+cg.assignorName())
}

// checkEpoch validates a heartbeat's member epoch: the current one, or the
// previous one when the member only owns partitions it was assigned (its
// last response was lost).
func (m *cmember) checkEpoch(epoch int32, owned []kmsg.ConsumerGroupHeartbeatRequestTopic, topics Topics) int16 {
	switch {
	case epoch == m.epoch:
		return 0
	case epoch > m.epoch:
		return kerr.FencedMemberEpoch.Code
	case epoch != m.prevEpoch:
		return kerr.FencedMemberEpoch.Code
	}
	if owned == nil {
		return 0
	}
	for _, t := range owned {
		name, ok := topics.ByID(t.TopicID)
		if !ok {
			continue
		}
		for _, p := range t.Partitions {
			if !containsPart(m.assigned[name], p) && !containsPart(m.revoking[name], p) {
				return kerr.FencedMemberEpoch.Code
			}
		}
	}
	return 0
}

// reconcile moves m one step towards its target: revoke what it must give
// up (keeping its epoch) once, and once that is acknowledged (the owned
// partitions it reports no longer include them) take the new epoch and
// every target partition no other member still owns. It reports whether
// the member changed.
func (m *cmember) reconcile(cg *consumerGroup, owned []kmsg.ConsumerGroupHeartbeatRequestTopic, topics Topics) bool {
	changed := false
	if m.state == memberUnrevoked && owned != nil {
		ownedNow := map[string][]int32{}
		for _, t := range owned {
			if name, ok := topics.ByID(t.TopicID); ok {
				ownedNow[name] = t.Partitions
			}
		}
		stillOwned := false
		for t, ps := range m.revoking {
			for _, p := range ps {
				if containsPart(ownedNow[t], p) {
					stillOwned = true
				}
			}
		}
		if !stillOwned {
			m.revoking = map[string][]int32{}
			m.state = memberStable
			changed = true
		}
	}
	if m.state == memberUnrevoked {
		return changed
	}
	target := cg.target[m.id]
	// Partitions to give up first.
	revoke := map[string][]int32{}
	keep := map[string][]int32{}
	for t, ps := range m.assigned {
		for _, p := range ps {
			if containsPart(target[t], p) {
				keep[t] = append(keep[t], p)
			} else {
				revoke[t] = append(revoke[t], p)
			}
		}
	}
	if len(revoke) > 0 {
		m.assigned, m.revoking = keep, revoke
		m.state = memberUnrevoked
		return true
	}
	// Take the new epoch and every free target partition.
	owners := cg.ownersExcept(m.id)
	next := map[string][]int32{}
	unreleased := false
	for t, ps := range target {
		for _, p := range ps {
			if containsPart(m.assigned[t], p) || !owners[tpKey(t, p)] {
				next[t] = append(next[t], p)
			} else {
				unreleased = true
			}
		}
	}
	for t := range next {
		sort.Slice(next[t], func(i, j int) bool { return next[t][i] < next[t][j] })
	}
	state := memberStable
	if unreleased {
		state = memberUnreleased
	}
	if m.epoch != cg.assignmentEpoch || state != m.state || sigOf(next) != sigOf(m.assigned) {
		if m.epoch != cg.assignmentEpoch {
			m.prevEpoch, m.epoch = m.epoch, cg.assignmentEpoch
		}
		m.assigned, m.state = next, state
		changed = true
	}
	return changed
}

func tpKey(t string, p int32) string { return t + "\x00" + itoa32(p) }

// ownersExcept returns the partitions owned (assigned or being revoked) by
// members other than id.
func (cg *consumerGroup) ownersExcept(id string) map[string]bool {
	out := map[string]bool{}
	for _, m := range cg.members {
		if m.id == id {
			continue
		}
		for t, ps := range m.assigned {
			for _, p := range ps {
				out[tpKey(t, p)] = true
			}
		}
		for t, ps := range m.revoking {
			for _, p := range ps {
				out[tpKey(t, p)] = true
			}
		}
	}
	return out
}

func (m *cmember) assignedSig() string { return sigOf(m.assigned) }

func sigOf(a map[string][]int32) string {
	var b strings.Builder
	for _, t := range sortedKeys(a) {
		ps := append([]int32(nil), a[t]...)
		if len(ps) == 0 {
			continue
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		b.WriteString(t)
		for _, p := range ps {
			b.WriteByte(',')
			b.WriteString(itoa32(p))
		}
		b.WriteByte(';')
	}
	return b.String()
}

func ownedSig(owned []kmsg.ConsumerGroupHeartbeatRequestTopic, topics Topics) string {
	a := map[string][]int32{}
	for _, t := range owned {
		if name, ok := topics.ByID(t.TopicID); ok {
			a[name] = append(a[name], t.Partitions...)
		}
	}
	return sigOf(a)
}

// responseAssignment is m's assignment by topic id.
func (m *cmember) responseAssignment(topics Topics) *kmsg.ConsumerGroupHeartbeatResponseAssignment {
	a := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
	a.Topics = []kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic{}
	for _, t := range sortedKeys(m.assigned) {
		id, _, ok := topics.ByName(t)
		if !ok || len(m.assigned[t]) == 0 {
			continue
		}
		at := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
		at.TopicID = id
		at.Partitions = append([]int32(nil), m.assigned[t]...)
		a.Topics = append(a.Topics, at)
	}
	return &a
}

// validateCommit checks an OffsetCommit against a KIP-848 group: the
// generation field carries the member epoch.
func (cg *consumerGroup) validateCommit(memberID string, epoch int32, version int16) int16 {
	if epoch < 0 && memberID == "" && len(cg.members) == 0 {
		return 0 // an admin commit to an empty group
	}
	m := cg.members[memberID]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	// The previous epoch is accepted too: a member commits the partitions
	// it is revoking before it acknowledges the revocation, and a commit
	// may cross the heartbeat response that moved it to the next epoch.
	if epoch != m.epoch && epoch != m.prevEpoch {
		if version >= 9 {
			return kerr.StaleMemberEpoch.Code
		}
		return kerr.IllegalGeneration.Code
	}
	return 0
}

// validateFetch checks an OffsetFetch v9 member id and epoch.
func (cg *consumerGroup) validateFetch(memberID string, epoch int32) int16 {
	m := cg.members[memberID]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	if epoch >= 0 && epoch != m.epoch {
		return kerr.StaleMemberEpoch.Code
	}
	return 0
}

// afterLoad restarts the sessions of members read back from the log.
func (cg *consumerGroup) afterLoad(c *Coordinator, g *group, now time.Time) {
	for _, m := range cg.sortedMembers() {
		m.sessionTimer = c.schedule(now.Add(c.cfg.ConsumerSessionTimeout), timerConsumerSession, g.id, m.id)
		if m.state == memberUnrevoked {
			m.revokeTimer = c.schedule(now.Add(m.rebalanceTimeout), timerConsumerRevoke, g.id, m.id)
		}
	}
}

// ConsumerGroupDescribe describes a KIP-848 group.
func (c *Coordinator) ConsumerGroupDescribe(id string, topics Topics) kmsg.ConsumerGroupDescribeResponseGroup {
	dg := kmsg.NewConsumerGroupDescribeResponseGroup()
	dg.Group = id
	g := c.groups[id]
	switch {
	case id == "":
		dg.ErrorCode = kerr.InvalidGroupID.Code
		return dg
	case g == nil || g.state == stateDead:
		dg.ErrorCode = kerr.GroupIDNotFound.Code
		dg.ErrorMessage = kmsg.StringPtr("group " + id + " does not exist")
		return dg
	case g.consumer == nil:
		dg.ErrorCode = kerr.GroupIDNotFound.Code
		dg.ErrorMessage = kmsg.StringPtr("group " + id + " is not a consumer group; use DescribeGroups")
		return dg
	}
	cg := g.consumer
	dg.State = cg.stateName()
	dg.Epoch = cg.epoch
	dg.AssignmentEpoch = cg.assignmentEpoch
	dg.AssignorName = cg.assignorName()
	toAssignment := func(a map[string][]int32) kmsg.Assignment {
		out := kmsg.NewAssignment()
		for _, t := range sortedKeys(a) {
			tid, _, ok := topics.ByName(t)
			if !ok || len(a[t]) == 0 {
				continue
			}
			tp := kmsg.NewAssignmentTopicPartition()
			tp.TopicID, tp.Topic, tp.Partitions = tid, t, append([]int32(nil), a[t]...)
			out.TopicPartitions = append(out.TopicPartitions, tp)
		}
		return out
	}
	for _, m := range cg.sortedMembers() {
		dm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
		dm.MemberID = m.id
		dm.InstanceID = m.instanceID
		dm.RackID = m.rackID
		dm.MemberEpoch = m.epoch
		dm.ClientID = m.clientID
		dm.ClientHost = m.clientHost
		dm.SubscribedTopics = append([]string{}, m.topics...)
		if m.regex != "" {
			dm.SubscribedTopicRegex = kmsg.StringPtr(m.regex)
		}
		dm.Assignment = toAssignment(m.assigned)
		dm.TargetAssignment = toAssignment(cg.target[m.id])
		dm.MemberType = 1
		dg.Members = append(dg.Members, dm)
	}
	return dg
}

func containsPart(ps []int32, p int32) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

func dedupe(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

func itoa32(n int32) string { return strconv.Itoa(int(n)) }

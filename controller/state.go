package controller

import (
	"slices"
	"sort"
)

// State is the deterministic metadata state machine: an Image and the index
// of the last command applied to it. Apply is a pure function of the state
// and the command: no clock, no randomness, no I/O. Every controller
// applies the same log and so holds the same image.
type State struct {
	img   *Image
	index uint64
	ch    *changeBuilder // changes of the command being applied
}

// NewState returns an empty state.
func NewState() *State { return &State{img: NewImage()} }

// NewStateFrom returns a state holding img (not copied) at index.
func NewStateFrom(img *Image, index uint64) *State {
	if img.Brokers == nil {
		img.Brokers = map[int32]*Broker{}
	}
	if img.Topics == nil {
		img.Topics = map[string]*Topic{}
	}
	if img.Controllers == nil {
		img.Controllers = map[string]string{}
	}
	return &State{img: img, index: index}
}

// Image returns the live image. Callers must not modify it and must not
// read it concurrently with Apply.
func (s *State) Image() *Image { return s.img }

// Index returns the index of the last applied command.
func (s *State) Index() uint64 { return s.index }

// Apply applies cmd at log index. A refused command leaves the image
// unchanged and returns the refusal in Result.Err.
func (s *State) Apply(index uint64, cmd *Command) Result {
	if index > s.index {
		s.index = index
	}
	s.ch = newChangeBuilder()
	defer func() { s.ch = nil }()
	v, err := s.apply(index, cmd)
	if err != nil {
		// Commands validate fully before changing anything.
		return Result{Err: err}
	}
	s.checkDecommissions()
	return Result{Value: v, Change: s.ch.build(s.img, index)}
}

func (s *State) apply(index uint64, c *Command) (any, *Error) {
	switch {
	case c.InitCluster != nil:
		return nil, s.initCluster(c.InitCluster)
	case c.SetControllerAddr != nil:
		if s.img.Controllers[c.SetControllerAddr.ID] != c.SetControllerAddr.Addr {
			s.img.Controllers[c.SetControllerAddr.ID] = c.SetControllerAddr.Addr
			s.ch.controllers = true
		}
		return nil, nil
	case c.RegisterBroker != nil:
		return s.registerBroker(index, c.RegisterBroker)
	case c.UnregisterBroker != nil:
		return nil, s.unregisterBroker(c.UnregisterBroker.ID)
	case c.FenceBroker != nil:
		return nil, s.fenceBroker(c.FenceBroker)
	case c.UnfenceBroker != nil:
		return nil, s.unfenceBroker(c.UnfenceBroker)
	case c.DemoteBroker != nil:
		return nil, s.demoteBroker(c.DemoteBroker)
	case c.ControlledShutdown != nil:
		return nil, s.controlledShutdown(c.ControlledShutdown)
	case c.Decommission != nil:
		return nil, s.decommission(c.Decommission)
	case c.CreateTopic != nil:
		return nil, s.createTopic(c.CreateTopic)
	case c.DeleteTopic != nil:
		return nil, s.deleteTopic(c.DeleteTopic)
	case c.CreatePartitions != nil:
		return nil, s.createPartitions(c.CreatePartitions)
	case c.AlterConfigs != nil:
		return nil, s.alterConfigs(c.AlterConfigs)
	case c.AlterPartition != nil:
		return s.alterPartition(&c.AlterPartition.AlterPartitionRequest)
	case c.ElectLeaders != nil:
		return s.electLeaders(&c.ElectLeaders.ElectLeadersRequest), nil
	case c.Reassign != nil:
		return s.reassign(c.Reassign.Reassignments), nil
	case c.RemoveFromISR != nil:
		return s.removeFromISR(c.RemoveFromISR)
	case c.AllocateProducerIDs != nil:
		return s.allocateProducerIDs(c.AllocateProducerIDs)
	}
	return nil, errorf(CodeInvalidRequest, "empty or unknown command; is this controller older than the one that wrote the log? upgrade it")
}

func (s *State) initCluster(c *InitClusterCmd) *Error {
	if s.img.ClusterID != "" {
		if s.img.ClusterID == c.ClusterID {
			return nil
		}
		return errorf(CodeInvalidRequest, "cluster id is already %s", s.img.ClusterID)
	}
	if c.ClusterID == "" {
		return errorf(CodeInvalidRequest, "empty cluster id")
	}
	s.img.ClusterID = c.ClusterID
	s.ch.clusterID = true
	return nil
}

// ---- brokers ----

func (s *State) broker(id int32) (*Broker, *Error) {
	b := s.img.Brokers[id]
	if b == nil {
		return nil, errorf(CodeBrokerNotRegistered, "broker %d is not registered; check the id (vigil admin brokers lists them)", id)
	}
	return b, nil
}

func (s *State) registerBroker(index uint64, c *RegisterBrokerCmd) (any, *Error) {
	r := c.BrokerRegistration
	if r.ID < 0 {
		return nil, errorf(CodeInvalidRequest, "broker id %d is negative", r.ID)
	}
	if r.Endpoint == "" {
		return nil, errorf(CodeInvalidRequest, "broker %d registered without an endpoint; set its advertised Kafka listener", r.ID)
	}
	cell := r.Cell
	if cell == "" {
		cell = DefaultCell
	}
	nb := &Broker{
		ID: r.ID, IncarnationID: r.IncarnationID, Epoch: int64(index),
		Cell: cell, Rack: r.Rack, Endpoint: r.Endpoint, State: BrokerFenced,
	}
	if old := s.img.Brokers[r.ID]; old != nil {
		// Operator decisions outlive restarts; a decommissioned broker that
		// registers again rejoins as a new, empty broker.
		nb.Demoted, nb.AdminFenced = old.Demoted, old.AdminFenced
		nb.Decommissioning = old.Decommissioning && old.State != BrokerDecommissioned
	}
	s.img.Brokers[r.ID] = nb
	s.ch.broker(r.ID)
	// The previous incarnation's leaderships and ISR memberships are void:
	// the restarted process lost its in-memory replication state.
	s.brokerLeft(r.ID)
	return nb.Epoch, nil
}

func (s *State) allocateProducerIDs(c *AllocateProducerIDsCmd) (any, *Error) {
	b, err := s.broker(c.BrokerID)
	if err != nil {
		return nil, err
	}
	if b.Epoch != c.BrokerEpoch {
		return nil, errorf(CodeStaleBrokerEpoch, "broker %d has epoch %d, the request %d; register again", c.BrokerID, b.Epoch, c.BrokerEpoch)
	}
	blk := ProducerIDBlock{FirstID: s.img.NextProducerID, Count: ProducerIDBlockSize}
	s.img.NextProducerID += ProducerIDBlockSize
	s.ch.producerIDs = true
	return blk, nil
}

func (s *State) unregisterBroker(id int32) *Error {
	if _, err := s.broker(id); err != nil {
		return err
	}
	if n := s.img.ReplicaCount()[id]; n > 0 {
		return errorf(CodeInvalidRequest, "broker %d still holds %d replicas; decommission it (vigil admin decommission %d) to move them first", id, n, id)
	}
	delete(s.img.Brokers, id)
	s.ch.removedBroker(id)
	return nil
}

func (s *State) fenceBroker(c *FenceBrokerCmd) *Error {
	b, err := s.broker(c.ID)
	if err != nil {
		return err
	}
	if c.Epoch != 0 && c.Epoch != b.Epoch {
		return errorf(CodeStaleBrokerEpoch, "broker %d re-registered (epoch %d, not %d); not fenced", c.ID, b.Epoch, c.Epoch)
	}
	if c.Admin && !b.AdminFenced {
		b.AdminFenced = true
		s.ch.broker(c.ID)
	}
	if b.State == BrokerRegistered || b.State == BrokerControlledShutdown {
		b.State = BrokerFenced
		s.ch.broker(c.ID)
	}
	s.brokerLeft(c.ID)
	return nil
}

func (s *State) unfenceBroker(c *UnfenceBrokerCmd) *Error {
	b, err := s.broker(c.ID)
	if err != nil {
		return err
	}
	if c.Epoch != 0 && c.Epoch != b.Epoch {
		return errorf(CodeStaleBrokerEpoch, "broker %d has epoch %d, not %d; it must register again", c.ID, b.Epoch, c.Epoch)
	}
	if c.ClearAdmin && b.AdminFenced {
		b.AdminFenced = false
		s.ch.broker(c.ID)
	}
	if c.Epoch == 0 || b.AdminFenced || b.State != BrokerFenced {
		return nil
	}
	b.State = BrokerRegistered
	s.ch.broker(c.ID)
	s.brokerArrived(c.ID)
	return nil
}

func (s *State) demoteBroker(c *DemoteBrokerCmd) *Error {
	b, err := s.broker(c.ID)
	if err != nil {
		return err
	}
	if b.Demoted == c.Demoted {
		return nil
	}
	b.Demoted = c.Demoted
	s.ch.broker(c.ID)
	if c.Demoted {
		// Move every leadership to a non-demoted in-sync replica where one
		// is alive; the broker keeps leading where none is.
		s.eachPartition(func(t *Topic, i int32, p *Partition) {
			if p.Leader != c.ID {
				return
			}
			if l, _ := s.pickLeader(t, p, false); l != c.ID && l != NoLeader {
				s.update(t, i, func(np *Partition) { np.Leader = l })
			}
		})
	} else {
		// Leaderless partitions may now have a leader.
		s.brokerArrived(c.ID)
	}
	return nil
}

func (s *State) controlledShutdown(c *ControlledShutdownCmd) *Error {
	b, err := s.broker(c.ID)
	if err != nil {
		return err
	}
	if c.Epoch != b.Epoch {
		return errorf(CodeStaleBrokerEpoch, "broker %d has epoch %d, not %d; it must register again", c.ID, b.Epoch, c.Epoch)
	}
	if b.State != BrokerRegistered {
		return nil // fenced or already shutting down: it leads nothing
	}
	b.State = BrokerControlledShutdown
	s.ch.broker(c.ID)
	s.brokerLeft(c.ID)
	return nil
}

func (s *State) decommission(c *DecommissionCmd) *Error {
	b, err := s.broker(c.ID)
	if err != nil {
		return err
	}
	if b.State == BrokerDecommissioned {
		return nil
	}
	// Validate every reassignment before changing anything.
	type planned struct {
		t  *Topic
		i  int32
		np *Partition
	}
	var plan []planned
	for _, r := range c.Reassignments {
		t, p, err := s.partition(r.Topic, r.Partition)
		if err != nil {
			return err
		}
		np, err := s.reassigned(t, p, r.Replicas)
		if err != nil {
			return errorf(err.Code, "decommissioning broker %d: %s-%d: %s", c.ID, r.Topic, r.Partition, err.Message)
		}
		if slices.Contains(np.Target(), c.ID) {
			return errorf(CodeInvalidReplicaAssignment, "decommissioning broker %d: the new replicas of %s-%d still include it", c.ID, r.Topic, r.Partition)
		}
		plan = append(plan, planned{t, r.Partition, np})
	}
	if !b.Decommissioning {
		b.Decommissioning = true
		s.ch.broker(c.ID)
	}
	for _, pl := range plan {
		s.put(pl.t, pl.i, pl.np)
	}
	return nil
}

// checkDecommissions marks decommissioning brokers that hold no replica
// any more as decommissioned.
func (s *State) checkDecommissions() {
	var counts map[int32]int
	for _, b := range s.img.SortedBrokers() {
		if !b.Decommissioning {
			continue
		}
		if counts == nil {
			counts = s.img.ReplicaCount()
		}
		if counts[b.ID] == 0 {
			b.Decommissioning = false
			b.State = BrokerDecommissioned
			s.ch.broker(b.ID)
		}
	}
}

// brokerLeft reacts to broker id no longer being alive (fenced, shutting
// down, re-registered): every partition it leads gets a new leader (or
// none), and it leaves every ISR that stays non-empty without it.
func (s *State) brokerLeft(id int32) {
	s.eachPartition(func(t *Topic, i int32, p *Partition) {
		inISR := slices.Contains(p.ISR, id)
		if !inISR && p.Leader != id {
			return
		}
		s.update(t, i, func(np *Partition) {
			if inISR && len(np.ISR) > 1 {
				np.ISR = without(np.ISR, id)
			}
			if np.Leader == id {
				s.elect(t, np)
			}
		})
	})
}

// brokerArrived reacts to broker id becoming alive or eligible again:
// leaderless partitions it is a replica of try to elect a leader, and
// partitions led by a demoted broker move to it if it is in sync.
func (s *State) brokerArrived(id int32) {
	s.eachPartition(func(t *Topic, i int32, p *Partition) {
		switch {
		case !slices.Contains(p.Replicas, id):
		case p.Leader == NoLeader:
			s.update(t, i, func(np *Partition) { s.elect(t, np) })
		case slices.Contains(p.ISR, id):
			s.update(t, i, func(np *Partition) { s.moveOffDemoted(t, np) })
		}
	})
}

// ---- leader election ----

// eligible reports whether broker id may lead or join an ISR.
func (s *State) eligible(id int32) bool { return s.img.Brokers[id].Alive() }

// pickLeader chooses a leader for p: the first replica (in preference
// order) that is in the ISR, alive and not demoted; else the first alive
// demoted ISR member; else, when unclean is allowed, the first alive
// replica outside the ISR (unclean reports that case). NoLeader if none.
func (s *State) pickLeader(t *Topic, p *Partition, unclean bool) (leader int32, wasUnclean bool) {
	demoted := NoLeader
	for _, r := range p.Replicas {
		if !slices.Contains(p.ISR, r) || !s.eligible(r) {
			continue
		}
		if !s.img.Brokers[r].Demoted {
			return r, false
		}
		if demoted == NoLeader {
			demoted = r
		}
	}
	if demoted != NoLeader || !unclean {
		return demoted, false
	}
	for _, pass := range []bool{false, true} { // non-demoted first
		for _, r := range p.Replicas {
			if s.eligible(r) && s.img.Brokers[r].Demoted == pass {
				return r, true
			}
		}
	}
	return NoLeader, false
}

// uncleanAllowed reports the topic's unclean.leader.election.enable.
func uncleanAllowed(t *Topic) bool { return t.Configs["unclean.leader.election.enable"] == "true" }

// elect sets np's leader by pickLeader, with unclean election if the topic
// allows it (the ISR then becomes just the new leader).
func (s *State) elect(t *Topic, np *Partition) {
	l, unclean := s.pickLeader(t, np, uncleanAllowed(t))
	np.Leader = l
	if unclean {
		np.ISR = []int32{l}
	}
}

func (s *State) electLeaders(req *ElectLeadersRequest) []ElectionResult {
	var out []ElectionResult
	one := func(t *Topic, i int32, p *Partition, explicit bool) {
		res := ElectionResult{Topic: t.Name, Partition: i, Leader: p.Leader}
		switch req.Type {
		case ElectUnclean:
			if p.Leader != NoLeader {
				if !explicit {
					return
				}
				res.Error = errorf(CodeElectionNotNeeded, "partition has leader %d; unclean election is only for leaderless partitions", p.Leader)
				break
			}
			l, unclean := s.pickLeader(t, p, true)
			if l == NoLeader {
				res.Error = errorf(CodeEligibleLeadersNotAvailable, "no replica of %v is alive; bring one of them back", p.Replicas)
				break
			}
			s.update(t, i, func(np *Partition) {
				np.Leader = l
				if unclean {
					np.ISR = []int32{l}
				}
			})
			res.Leader = l
		default:
			pref := p.Replicas[0]
			if p.Leader == pref {
				if !explicit {
					return
				}
				res.Error = errorf(CodeElectionNotNeeded, "preferred replica %d already leads", pref)
				break
			}
			b := s.img.Brokers[pref]
			switch {
			case !b.Alive():
				res.Error = errorf(CodePreferredLeaderNotAvailable, "preferred replica %d is not alive", pref)
			case !slices.Contains(p.ISR, pref):
				res.Error = errorf(CodePreferredLeaderNotAvailable, "preferred replica %d is not in the ISR %v; wait for it to catch up", pref, p.ISR)
			case b.Demoted:
				res.Error = errorf(CodePreferredLeaderNotAvailable, "preferred replica %d is demoted; undemote it first", pref)
			}
			if res.Error != nil {
				break
			}
			s.update(t, i, func(np *Partition) { np.Leader = pref })
			res.Leader = pref
		}
		out = append(out, res)
	}
	if len(req.Partitions) == 0 {
		s.eachPartition(func(t *Topic, i int32, p *Partition) { one(t, i, p, false) })
		return out
	}
	for _, tp := range req.Partitions {
		t, p, err := s.partition(tp.Topic, tp.Partition)
		if err != nil {
			out = append(out, ElectionResult{Topic: tp.Topic, Partition: tp.Partition, Leader: NoLeader, Error: err})
			continue
		}
		one(t, tp.Partition, p, true)
	}
	return out
}

// ---- topics ----

func (s *State) partition(topic string, i int32) (*Topic, *Partition, *Error) {
	t := s.img.Topics[topic]
	if t == nil {
		return nil, nil, errorf(CodeUnknownTopicOrPartition, "topic %q does not exist", topic)
	}
	if i < 0 || int(i) >= len(t.Partitions) {
		return nil, nil, errorf(CodeUnknownTopicOrPartition, "topic %q has %d partitions; there is no partition %d", topic, len(t.Partitions), i)
	}
	return t, t.Partitions[i], nil
}

// checkAssignment validates one partition's replica list: known brokers
// that are not decommissioned, no duplicates, all in one cell.
func (s *State) checkAssignment(replicas []int32) *Error {
	if len(replicas) == 0 {
		return errorf(CodeInvalidReplicaAssignment, "empty replica list")
	}
	cell := ""
	for i, r := range replicas {
		b := s.img.Brokers[r]
		switch {
		case b == nil:
			return errorf(CodeInvalidReplicaAssignment, "broker %d is not registered", r)
		case b.State == BrokerDecommissioned || b.Decommissioning:
			return errorf(CodeInvalidReplicaAssignment, "broker %d is decommissioned", r)
		case slices.Contains(replicas[:i], r):
			return errorf(CodeInvalidReplicaAssignment, "broker %d appears twice in %v", r, replicas)
		case cell != "" && b.Cell != cell:
			return errorf(CodeInvalidReplicaAssignment, "replicas %v span cells %s and %s; all replicas of a partition must be in one cell", replicas, cell, b.Cell)
		}
		cell = b.Cell
	}
	return nil
}

// newPartition builds a new partition on replicas: the ISR is the alive
// replicas, the leader the first eligible one.
func (s *State) newPartition(t *Topic, replicas []int32) (*Partition, *Error) {
	if err := s.checkAssignment(replicas); err != nil {
		return nil, err
	}
	p := &Partition{Replicas: slices.Clone(replicas), Leader: NoLeader}
	for _, r := range replicas {
		if s.eligible(r) {
			p.ISR = append(p.ISR, r)
		}
	}
	if len(p.ISR) == 0 {
		return nil, errorf(CodeInvalidReplicaAssignment, "none of the replicas %v is alive (registered and unfenced)", replicas)
	}
	p.Leader, _ = s.pickLeader(t, p, false)
	return p, nil
}

func (s *State) createTopic(c *CreateTopicCmd) *Error {
	if err := ValidateTopicName(c.Name); err != nil {
		return err
	}
	if err := checkNameFree(s.img, c.Name); err != nil {
		return err
	}
	if s.img.TopicByID(c.ID) != nil || c.ID == (TopicID{}) {
		return errorf(CodeInvalidRequest, "topic id %s is zero or taken; propose again with a fresh id", c.ID)
	}
	if len(c.Assignments) == 0 {
		return errorf(CodeInvalidPartitions, "a topic needs at least one partition")
	}
	t := &Topic{Name: c.Name, ID: c.ID}
	if len(c.Configs) > 0 {
		t.Configs = make(map[string]string, len(c.Configs))
		for k, v := range c.Configs {
			t.Configs[k] = v
		}
	}
	for _, a := range c.Assignments {
		p, err := s.newPartition(t, a)
		if err != nil {
			return err
		}
		t.Partitions = append(t.Partitions, p)
	}
	s.img.Topics[c.Name] = t
	s.ch.topic(c.Name)
	for i := range t.Partitions {
		s.ch.partition(c.Name, int32(i))
	}
	return nil
}

func (s *State) deleteTopic(c *DeleteTopicCmd) *Error {
	t := s.img.Topics[c.Name]
	if t == nil || (c.ID != (TopicID{}) && t.ID != c.ID) {
		return errorf(CodeUnknownTopicOrPartition, "topic %q does not exist", c.Name)
	}
	delete(s.img.Topics, c.Name)
	s.ch.deletedTopic(c.Name, t.ID)
	return nil
}

func (s *State) createPartitions(c *CreatePartitionsCmd) *Error {
	t := s.img.Topics[c.Topic]
	if t == nil || (c.ID != (TopicID{}) && t.ID != c.ID) {
		return errorf(CodeUnknownTopicOrPartition, "topic %q does not exist", c.Topic)
	}
	if len(c.Assignments) == 0 {
		return errorf(CodeInvalidPartitions, "no partitions to add")
	}
	var add []*Partition
	for _, a := range c.Assignments {
		p, err := s.newPartition(t, a)
		if err != nil {
			return err
		}
		add = append(add, p)
	}
	for _, p := range add {
		t.Partitions = append(t.Partitions, p)
		s.ch.partition(c.Topic, int32(len(t.Partitions)-1))
	}
	s.ch.topic(c.Topic)
	return nil
}

func (s *State) alterConfigs(c *AlterConfigsCmd) *Error {
	t := s.img.Topics[c.Topic]
	if t == nil {
		return errorf(CodeUnknownTopicOrPartition, "topic %q does not exist", c.Topic)
	}
	t.Configs = nil
	if len(c.Configs) > 0 {
		t.Configs = make(map[string]string, len(c.Configs))
		for k, v := range c.Configs {
			t.Configs[k] = v
		}
	}
	s.ch.topic(c.Topic)
	if uncleanAllowed(t) {
		for i, p := range t.Partitions {
			if p.Leader == NoLeader {
				s.update(t, int32(i), func(np *Partition) { s.elect(t, np) })
			}
		}
	}
	return nil
}

// ---- partitions ----

func (s *State) alterPartition(r *AlterPartitionRequest) (any, *Error) {
	b := s.img.Brokers[r.BrokerID]
	if b == nil {
		return nil, errorf(CodeBrokerNotRegistered, "broker %d is not registered; register it again", r.BrokerID)
	}
	if b.Epoch != r.BrokerEpoch {
		return nil, errorf(CodeStaleBrokerEpoch, "broker %d has epoch %d, the request %d; the broker must register again", r.BrokerID, b.Epoch, r.BrokerEpoch)
	}
	var t *Topic
	if r.TopicID != (TopicID{}) {
		if t = s.img.TopicByID(r.TopicID); t == nil {
			return nil, errorf(CodeUnknownTopicID, "no topic has id %s; it was deleted", r.TopicID)
		}
	} else if t = s.img.Topics[r.Topic]; t == nil {
		return nil, errorf(CodeUnknownTopicOrPartition, "topic %q does not exist", r.Topic)
	}
	if r.Partition < 0 || int(r.Partition) >= len(t.Partitions) {
		return nil, errorf(CodeUnknownTopicOrPartition, "topic %q has no partition %d", t.Name, r.Partition)
	}
	p := t.Partitions[r.Partition]
	switch {
	case r.LeaderEpoch < p.LeaderEpoch:
		return nil, errorf(CodeFencedLeaderEpoch, "%s-%d is at leader epoch %d, the request at %d; the broker is no longer leader, refresh metadata", t.Name, r.Partition, p.LeaderEpoch, r.LeaderEpoch)
	case r.LeaderEpoch > p.LeaderEpoch:
		return nil, errorf(CodeNotController, "%s-%d: request leader epoch %d is ahead of this controller's %d; retry", t.Name, r.Partition, r.LeaderEpoch, p.LeaderEpoch)
	case p.Leader != r.BrokerID:
		return nil, errorf(CodeNotLeaderOrFollower, "broker %d does not lead %s-%d (leader is %d)", r.BrokerID, t.Name, r.Partition, p.Leader)
	case r.PartitionEpoch != p.PartitionEpoch:
		return nil, errorf(CodeInvalidUpdateVersion, "%s-%d is at partition epoch %d, the request at %d; refresh metadata and retry", t.Name, r.Partition, p.PartitionEpoch, r.PartitionEpoch)
	case len(r.NewISR) == 0:
		return nil, errorf(CodeInvalidRequest, "the ISR of %s-%d may not be empty", t.Name, r.Partition)
	case !slices.Contains(r.NewISR, r.BrokerID):
		return nil, errorf(CodeInvalidRequest, "the new ISR %v of %s-%d must contain the leader %d", r.NewISR, t.Name, r.Partition, r.BrokerID)
	}
	for i, id := range r.NewISR {
		switch {
		case slices.Contains(r.NewISR[:i], id):
			return nil, errorf(CodeInvalidRequest, "broker %d appears twice in ISR %v", id, r.NewISR)
		case !slices.Contains(p.Replicas, id):
			return nil, errorf(CodeInvalidRequest, "broker %d is not a replica of %s-%d (replicas %v)", id, t.Name, r.Partition, p.Replicas)
		case !slices.Contains(p.ISR, id) && !s.eligible(id):
			return nil, errorf(CodeIneligibleReplica, "broker %d is fenced, shutting down or decommissioned and cannot join the ISR of %s-%d", id, t.Name, r.Partition)
		}
	}
	if !sameSet(r.NewISR, p.ISR) {
		s.update(t, r.Partition, func(np *Partition) {
			np.ISR = slices.Clone(r.NewISR)
			s.completeReassignment(t, np)
			s.moveOffDemoted(t, np)
		})
	}
	return t.Partitions[r.Partition].Clone(), nil
}

// moveOffDemoted moves leadership from a demoted leader to a non-demoted
// in-sync replica that just became available.
func (s *State) moveOffDemoted(t *Topic, np *Partition) {
	if np.Leader == NoLeader || !s.img.Brokers[np.Leader].Demoted {
		return
	}
	if l, _ := s.pickLeader(t, np, false); l != NoLeader && !s.img.Brokers[l].Demoted {
		np.Leader = l
	}
}

func (s *State) removeFromISR(c *RemoveFromISRCmd) (any, *Error) {
	t, p, err := s.partition(c.Topic, c.Partition)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(p.ISR, c.Broker) {
		return p.Clone(), nil
	}
	if len(p.ISR) == 1 {
		return nil, errorf(CodeInvalidRequest, "broker %d is the only in-sync replica of %s-%d; the ISR may not be empty", c.Broker, c.Topic, c.Partition)
	}
	np := p.Clone()
	np.ISR = without(np.ISR, c.Broker)
	if np.Leader == c.Broker {
		if l, _ := s.pickLeader(t, np, false); l == NoLeader {
			return nil, errorf(CodeEligibleLeadersNotAvailable, "broker %d leads %s-%d and no other in-sync replica is alive to take over", c.Broker, c.Topic, c.Partition)
		}
		s.elect(t, np)
	}
	s.put(t, c.Partition, np)
	return t.Partitions[c.Partition].Clone(), nil
}

// ---- reassignment ----

func (s *State) reassign(rs []Reassignment) []ReassignmentResult {
	out := make([]ReassignmentResult, 0, len(rs))
	for _, r := range rs {
		res := ReassignmentResult{Topic: r.Topic, Partition: r.Partition}
		t, p, err := s.partition(r.Topic, r.Partition)
		if err == nil {
			var np *Partition
			if np, err = s.reassigned(t, p, r.Replicas); err == nil {
				s.put(t, r.Partition, np)
			}
		}
		res.Error = err
		out = append(out, res)
	}
	return out
}

// reassigned returns p with a reassignment to target started (or, with nil
// target, cancelled), completed at once if target is already in sync.
func (s *State) reassigned(t *Topic, p *Partition, target []int32) (*Partition, *Error) {
	orig := make([]int32, 0, len(p.Replicas))
	for _, r := range p.Replicas {
		if !slices.Contains(p.AddingReplicas, r) {
			orig = append(orig, r)
		}
	}
	if target == nil {
		if !p.Reassigning() {
			return nil, errorf(CodeNoReassignmentInProgress, "no reassignment of %s is in progress", t.Name)
		}
		target = orig
	} else if err := s.checkAssignment(target); err != nil {
		return nil, err
	}
	np := p.Clone()
	np.AddingReplicas, np.RemovingReplicas = nil, nil
	for _, r := range target {
		if !slices.Contains(orig, r) {
			np.AddingReplicas = append(np.AddingReplicas, r)
		}
	}
	for _, r := range orig {
		if !slices.Contains(target, r) {
			np.RemovingReplicas = append(np.RemovingReplicas, r)
		}
	}
	np.Replicas = append(slices.Clone(target), np.RemovingReplicas...)
	var isr []int32
	for _, r := range np.ISR {
		if slices.Contains(np.Replicas, r) {
			isr = append(isr, r)
		}
	}
	if len(isr) == 0 {
		return nil, errorf(CodeInvalidReplicaAssignment, "no in-sync replica would remain; keep at least one of %v", p.ISR)
	}
	np.ISR = isr
	if !slices.Contains(np.ISR, np.Leader) {
		s.elect(t, np)
	}
	s.completeReassignment(t, np)
	return np, nil
}

// completeReassignment finishes np's reassignment once every target
// replica is in the ISR: the removed replicas go, and the leader moves if
// it was one of them.
func (s *State) completeReassignment(t *Topic, np *Partition) {
	if !np.Reassigning() {
		return
	}
	target := np.Target()
	for _, r := range target {
		if !slices.Contains(np.ISR, r) {
			return
		}
	}
	np.Replicas = target
	np.AddingReplicas, np.RemovingReplicas = nil, nil
	var isr []int32
	for _, r := range np.ISR {
		if slices.Contains(target, r) {
			isr = append(isr, r)
		}
	}
	np.ISR = isr
	if !slices.Contains(target, np.Leader) {
		s.elect(t, np)
	}
}

// ---- helpers ----

// eachPartition calls fn for every partition in topic-name order.
func (s *State) eachPartition(fn func(t *Topic, i int32, p *Partition)) {
	for _, t := range s.img.SortedTopics() {
		for i, p := range t.Partitions {
			fn(t, int32(i), p)
		}
	}
}

// update changes partition i of t through fn on a copy, then stores it with
// put (which maintains the epochs).
func (s *State) update(t *Topic, i int32, fn func(np *Partition)) {
	np := t.Partitions[i].Clone()
	fn(np)
	s.put(t, i, np)
}

// put stores np as partition i of t. A new leader bumps the leader epoch;
// any change bumps the partition epoch.
func (s *State) put(t *Topic, i int32, np *Partition) {
	old := t.Partitions[i]
	np.LeaderEpoch, np.PartitionEpoch = old.LeaderEpoch, old.PartitionEpoch
	if partitionEqual(old, np) {
		return
	}
	if np.Leader != old.Leader {
		np.LeaderEpoch++
	}
	np.PartitionEpoch++
	t.Partitions[i] = np
	s.ch.partition(t.Name, i)
}

func partitionEqual(a, b *Partition) bool {
	return a.Leader == b.Leader && slices.Equal(a.Replicas, b.Replicas) && slices.Equal(a.ISR, b.ISR) &&
		slices.Equal(a.AddingReplicas, b.AddingReplicas) && slices.Equal(a.RemovingReplicas, b.RemovingReplicas)
}

func without(s []int32, v int32) []int32 {
	out := make([]int32, 0, len(s))
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

func sameSet(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// changeBuilder collects what one command touched.
type changeBuilder struct {
	clusterID, controllers, producerIDs bool
	brokers                             map[int32]bool
	removedBrokers                      map[int32]bool
	topics                              map[string]bool
	deleted                             []DeletedTopic
	partitions                          map[string]map[int32]bool
}

func newChangeBuilder() *changeBuilder {
	return &changeBuilder{brokers: map[int32]bool{}, removedBrokers: map[int32]bool{}, topics: map[string]bool{}, partitions: map[string]map[int32]bool{}}
}

func (c *changeBuilder) broker(id int32) { c.brokers[id] = true; delete(c.removedBrokers, id) }
func (c *changeBuilder) removedBroker(id int32) {
	c.removedBrokers[id] = true
	delete(c.brokers, id)
}
func (c *changeBuilder) topic(name string) { c.topics[name] = true }
func (c *changeBuilder) deletedTopic(name string, id TopicID) {
	c.deleted = append(c.deleted, DeletedTopic{Name: name, ID: id})
	delete(c.topics, name)
	delete(c.partitions, name)
}
func (c *changeBuilder) partition(topic string, i int32) {
	m := c.partitions[topic]
	if m == nil {
		m = map[int32]bool{}
		c.partitions[topic] = m
	}
	m[i] = true
}

// build returns the Change (with copies of the new states), or nil if
// nothing changed. Everything is sorted, so the Change is deterministic.
func (c *changeBuilder) build(img *Image, index uint64) *Change {
	ch := &Change{Index: index}
	empty := true
	if c.clusterID {
		ch.ClusterID, empty = img.ClusterID, false
	}
	if c.producerIDs {
		ch.NextProducerID, empty = img.NextProducerID, false
	}
	if c.controllers {
		ch.Controllers = make(map[string]string, len(img.Controllers))
		for k, v := range img.Controllers {
			ch.Controllers[k] = v
		}
		empty = false
	}
	for _, id := range sortedKeys(c.brokers) {
		ch.Brokers, empty = append(ch.Brokers, *img.Brokers[id]), false
	}
	for _, id := range sortedKeys(c.removedBrokers) {
		ch.RemovedBrokers, empty = append(ch.RemovedBrokers, id), false
	}
	if len(c.deleted) > 0 {
		ch.DeletedTopics, empty = c.deleted, false
	}
	for _, name := range sortedKeys(c.topics) {
		t := img.Topics[name]
		tc := TopicChange{Name: name, ID: t.ID, PartitionCount: len(t.Partitions)}
		if len(t.Configs) > 0 {
			tc.Configs = make(map[string]string, len(t.Configs))
			for k, v := range t.Configs {
				tc.Configs[k] = v
			}
		}
		ch.Topics, empty = append(ch.Topics, tc), false
	}
	for _, name := range sortedKeys(c.partitions) {
		t := img.Topics[name]
		if t == nil {
			continue
		}
		for _, i := range sortedKeys(c.partitions[name]) {
			ch.Partitions = append(ch.Partitions, PartitionChange{Topic: name, TopicID: t.ID, Partition: i, State: *t.Partitions[i].Clone()})
			empty = false
		}
	}
	if empty {
		return nil
	}
	return ch
}

func sortedKeys[K int32 | string, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

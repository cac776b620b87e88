package controller

// State transitions of brokers: registration, fencing, demotion,
// controlled shutdown, decommissioning, and their effect on partitions.

import "slices"

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

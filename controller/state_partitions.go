package controller

// ISR changes: AlterPartition (KIP-497) and an operator's ISR removal.

import "slices"

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

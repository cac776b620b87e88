package controller

// Topic creation, deletion, partitions and configs.

import "slices"

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

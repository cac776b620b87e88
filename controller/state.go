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

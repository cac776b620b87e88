package controller

import (
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
)

// NoLeader is the leader of a partition that has none (offline).
const NoLeader int32 = -1

// DefaultCell is the cell of a broker that names none.
const DefaultCell = "a"

// BrokerState is where a broker is in its lifecycle.
type BrokerState string

// Broker states. A broker registers fenced and is unfenced by its first
// heartbeat; it is fenced again when its session expires or an operator
// fences it.
const (
	// BrokerRegistered: alive and unfenced; it may lead and be in ISRs.
	BrokerRegistered BrokerState = "registered"
	// BrokerFenced: not heartbeating (or fenced by an operator); it leads
	// nothing and is kept out of ISRs where that leaves them non-empty.
	BrokerFenced BrokerState = "fenced"
	// BrokerControlledShutdown: the broker asked to stop; its leaderships
	// have been moved away and it is out of the ISRs it need not be in.
	BrokerControlledShutdown BrokerState = "controlled_shutdown"
	// BrokerDecommissioned: its replicas were moved away; it takes no part
	// in placement until it registers again.
	BrokerDecommissioned BrokerState = "decommissioned"
)

// Broker is one broker's registration as the quorum knows it.
type Broker struct {
	// ID is the broker id (node.id).
	ID int32 `json:"id"`
	// IncarnationID is a random id the broker process picks at start; a new
	// one means the broker restarted.
	IncarnationID string `json:"incarnation_id"`
	// Epoch is the broker epoch: the log index of its latest registration.
	// Heartbeats and AlterPartition requests must carry it.
	Epoch int64 `json:"epoch"`
	// Cell is the broker's cell (blast-radius unit); all replicas of a
	// partition live in one cell.
	Cell string `json:"cell"`
	// Rack is the broker's rack (or zone); replicas spread over racks.
	Rack string `json:"rack,omitempty"`
	// Endpoint is the host:port of the broker's Kafka listener.
	Endpoint string `json:"endpoint"`
	// State is the lifecycle state.
	State BrokerState `json:"state"`
	// Demoted keeps the broker from leading while any other in-sync replica can.
	Demoted bool `json:"demoted,omitempty"`
	// AdminFenced is set when an operator fenced the broker: heartbeats do
	// not unfence it until an operator unfences it.
	AdminFenced bool `json:"admin_fenced,omitempty"`
	// Decommissioning is set while the broker's replicas are being moved
	// away; it becomes BrokerDecommissioned when none are left.
	Decommissioning bool `json:"decommissioning,omitempty"`
}

// Alive reports whether the broker may lead and join ISRs: registered, not
// fenced, not shutting down, not decommissioned.
func (b *Broker) Alive() bool { return b != nil && b.State == BrokerRegistered }

// TopicID is a topic's 16-byte id (a UUID). Its text form is Kafka's:
// unpadded URL-safe base64.
type TopicID [16]byte

// String returns the id as Kafka prints it.
func (id TopicID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// MarshalText encodes the id as unpadded URL-safe base64.
func (id TopicID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes the base64 form.
func (id *TopicID) UnmarshalText(b []byte) error {
	n, err := base64.RawURLEncoding.DecodeString(string(b))
	if err != nil || len(n) != 16 {
		return fmt.Errorf("invalid topic id %q: want 22 characters of unpadded URL-safe base64", b)
	}
	copy(id[:], n)
	return nil
}

// Topic is a topic: its id, config overrides and partitions.
type Topic struct {
	Name string  `json:"name"`
	ID   TopicID `json:"id"`
	// Configs are the topic's config overrides (name → value).
	Configs map[string]string `json:"configs,omitempty"`
	// Partitions, indexed by partition number.
	Partitions []*Partition `json:"partitions"`
}

// Partition is the replication state of one partition.
type Partition struct {
	// Replicas is the replica set in preference order: Replicas[0] is the
	// preferred leader. During a reassignment it is the union of the target
	// and the replicas being removed.
	Replicas []int32 `json:"replicas"`
	// ISR is the in-sync replica set; never empty.
	ISR []int32 `json:"isr"`
	// Leader is the leading broker, or NoLeader.
	Leader int32 `json:"leader"`
	// LeaderEpoch increases on every leader change.
	LeaderEpoch int32 `json:"leader_epoch"`
	// PartitionEpoch increases on every change of the partition.
	PartitionEpoch int32 `json:"partition_epoch"`
	// AddingReplicas and RemovingReplicas describe a reassignment in
	// progress: the target is Replicas minus RemovingReplicas.
	AddingReplicas   []int32 `json:"adding_replicas,omitempty"`
	RemovingReplicas []int32 `json:"removing_replicas,omitempty"`
}

// Reassigning reports whether a reassignment is in progress.
func (p *Partition) Reassigning() bool {
	return len(p.AddingReplicas) > 0 || len(p.RemovingReplicas) > 0
}

// Target returns the replicas the partition will have when its reassignment
// completes (Replicas when there is none).
func (p *Partition) Target() []int32 {
	out := make([]int32, 0, len(p.Replicas))
	for _, r := range p.Replicas {
		if !slices.Contains(p.RemovingReplicas, r) {
			out = append(out, r)
		}
	}
	return out
}

// Image is the whole cluster metadata: what the quorum replicates and what
// brokers keep a copy of. Its methods never mutate it except ApplyChange.
type Image struct {
	// ClusterID is the cluster's id, chosen by the first active controller.
	ClusterID string `json:"cluster_id"`
	// Controllers maps a controller id to its HTTP API address; each
	// controller records its own when it becomes the leader.
	Controllers map[string]string `json:"controllers,omitempty"`
	// Brokers by id.
	Brokers map[int32]*Broker `json:"brokers"`
	// Topics by name.
	Topics map[string]*Topic `json:"topics"`
	// NextProducerID is the first producer id not yet handed to a broker.
	NextProducerID int64 `json:"next_producer_id,omitempty"`
}

// NewImage returns an empty image.
func NewImage() *Image {
	return &Image{Brokers: map[int32]*Broker{}, Topics: map[string]*Topic{}, Controllers: map[string]string{}}
}

// Clone returns a deep copy.
func (img *Image) Clone() *Image {
	out := &Image{
		ClusterID:      img.ClusterID,
		NextProducerID: img.NextProducerID,
		Controllers:    make(map[string]string, len(img.Controllers)),
		Brokers:        make(map[int32]*Broker, len(img.Brokers)),
		Topics:         make(map[string]*Topic, len(img.Topics)),
	}
	for k, v := range img.Controllers {
		out.Controllers[k] = v
	}
	for id, b := range img.Brokers {
		c := *b
		out.Brokers[id] = &c
	}
	for name, t := range img.Topics {
		out.Topics[name] = t.Clone()
	}
	return out
}

// Clone returns a deep copy of t.
func (t *Topic) Clone() *Topic {
	c := &Topic{Name: t.Name, ID: t.ID, Partitions: make([]*Partition, len(t.Partitions))}
	if t.Configs != nil {
		c.Configs = make(map[string]string, len(t.Configs))
		for k, v := range t.Configs {
			c.Configs[k] = v
		}
	}
	for i, p := range t.Partitions {
		c.Partitions[i] = p.Clone()
	}
	return c
}

// Clone returns a deep copy of p.
func (p *Partition) Clone() *Partition {
	c := *p
	c.Replicas = slices.Clone(p.Replicas)
	c.ISR = slices.Clone(p.ISR)
	c.AddingReplicas = slices.Clone(p.AddingReplicas)
	c.RemovingReplicas = slices.Clone(p.RemovingReplicas)
	return &c
}

// TopicByID returns the topic with the given id, or nil.
func (img *Image) TopicByID(id TopicID) *Topic {
	for _, t := range img.Topics {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// SortedBrokers returns the brokers in id order.
func (img *Image) SortedBrokers() []*Broker {
	out := make([]*Broker, 0, len(img.Brokers))
	for _, b := range img.Brokers {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// SortedTopics returns the topics in name order.
func (img *Image) SortedTopics() []*Topic {
	out := make([]*Topic, 0, len(img.Topics))
	for _, t := range img.Topics {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LeaderCount returns how many partitions each broker leads.
func (img *Image) LeaderCount() map[int32]int {
	out := map[int32]int{}
	for _, t := range img.Topics {
		for _, p := range t.Partitions {
			if p.Leader != NoLeader {
				out[p.Leader]++
			}
		}
	}
	return out
}

// ReplicaCount returns how many replicas each broker holds.
func (img *Image) ReplicaCount() map[int32]int {
	out := map[int32]int{}
	for _, t := range img.Topics {
		for _, p := range t.Partitions {
			for _, r := range p.Replicas {
				out[r]++
			}
		}
	}
	return out
}

// Change is what one applied command changed: the new state of every
// broker, topic and partition it touched. Applying the changes after an
// image's index, in order, to that image yields the controller's image.
type Change struct {
	// Index is the log index of the command.
	Index uint64 `json:"index"`
	// ClusterID is set when the command set the cluster id.
	ClusterID string `json:"cluster_id,omitempty"`
	// Controllers is set (the whole map) when a controller address changed.
	Controllers map[string]string `json:"controllers,omitempty"`
	// Brokers holds the new state of each changed broker.
	Brokers []Broker `json:"brokers,omitempty"`
	// RemovedBrokers lists unregistered broker ids.
	RemovedBrokers []int32 `json:"removed_brokers,omitempty"`
	// Topics holds the new topic-level state (name, id, configs) of each
	// created or changed topic, with PartitionCount partitions.
	Topics []TopicChange `json:"topics,omitempty"`
	// DeletedTopics lists deleted topics.
	DeletedTopics []DeletedTopic `json:"deleted_topics,omitempty"`
	// Partitions holds the new state of each changed partition.
	Partitions []PartitionChange `json:"partitions,omitempty"`
	// NextProducerID is set when producer ids were allocated.
	NextProducerID int64 `json:"next_producer_id,omitempty"`
}

// TopicChange is the topic-level state of a created or changed topic.
type TopicChange struct {
	Name           string            `json:"name"`
	ID             TopicID           `json:"id"`
	Configs        map[string]string `json:"configs,omitempty"`
	PartitionCount int               `json:"partition_count"`
}

// DeletedTopic names a deleted topic.
type DeletedTopic struct {
	Name string  `json:"name"`
	ID   TopicID `json:"id"`
}

// PartitionChange is the new state of one partition.
type PartitionChange struct {
	Topic     string    `json:"topic"`
	TopicID   TopicID   `json:"topic_id"`
	Partition int32     `json:"partition"`
	State     Partition `json:"state"`
}

// ApplyChange applies one change to img. Brokers use it to keep their copy
// of the image current from WatchMetadata deltas.
func (img *Image) ApplyChange(c *Change) {
	if c.ClusterID != "" {
		img.ClusterID = c.ClusterID
	}
	if c.NextProducerID != 0 {
		img.NextProducerID = c.NextProducerID
	}
	if c.Controllers != nil {
		img.Controllers = make(map[string]string, len(c.Controllers))
		for k, v := range c.Controllers {
			img.Controllers[k] = v
		}
	}
	for _, b := range c.Brokers {
		b := b
		img.Brokers[b.ID] = &b
	}
	for _, id := range c.RemovedBrokers {
		delete(img.Brokers, id)
	}
	for _, d := range c.DeletedTopics {
		if t := img.Topics[d.Name]; t != nil && t.ID == d.ID {
			delete(img.Topics, d.Name)
		}
	}
	for _, tc := range c.Topics {
		t := img.Topics[tc.Name]
		if t == nil || t.ID != tc.ID {
			t = &Topic{Name: tc.Name, ID: tc.ID}
			img.Topics[tc.Name] = t
		}
		t.Configs = nil
		if len(tc.Configs) > 0 {
			t.Configs = make(map[string]string, len(tc.Configs))
			for k, v := range tc.Configs {
				t.Configs[k] = v
			}
		}
		for len(t.Partitions) < tc.PartitionCount {
			t.Partitions = append(t.Partitions, &Partition{Leader: NoLeader})
		}
		t.Partitions = t.Partitions[:tc.PartitionCount]
	}
	for _, pc := range c.Partitions {
		t := img.Topics[pc.Topic]
		if t == nil || t.ID != pc.TopicID || int(pc.Partition) >= len(t.Partitions) {
			continue
		}
		t.Partitions[pc.Partition] = pc.State.Clone()
	}
}

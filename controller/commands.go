package controller

// Command is one entry of the metadata log. Exactly one field is set. The
// active controller builds commands (computing everything that needs a
// clock, randomness or a choice, such as topic ids and replica placement)
// and proposes them; every controller applies them in log order with
// State.Apply, which is deterministic.
type Command struct {
	InitCluster         *InitClusterCmd         `json:"init_cluster,omitempty"`
	SetControllerAddr   *SetControllerAddrCmd   `json:"set_controller_addr,omitempty"`
	RegisterBroker      *RegisterBrokerCmd      `json:"register_broker,omitempty"`
	UnregisterBroker    *UnregisterBrokerCmd    `json:"unregister_broker,omitempty"`
	FenceBroker         *FenceBrokerCmd         `json:"fence_broker,omitempty"`
	UnfenceBroker       *UnfenceBrokerCmd       `json:"unfence_broker,omitempty"`
	DemoteBroker        *DemoteBrokerCmd        `json:"demote_broker,omitempty"`
	ControlledShutdown  *ControlledShutdownCmd  `json:"controlled_shutdown,omitempty"`
	Decommission        *DecommissionCmd        `json:"decommission,omitempty"`
	CreateTopic         *CreateTopicCmd         `json:"create_topic,omitempty"`
	DeleteTopic         *DeleteTopicCmd         `json:"delete_topic,omitempty"`
	CreatePartitions    *CreatePartitionsCmd    `json:"create_partitions,omitempty"`
	AlterConfigs        *AlterConfigsCmd        `json:"alter_configs,omitempty"`
	AlterPartition      *AlterPartitionCmd      `json:"alter_partition,omitempty"`
	ElectLeaders        *ElectLeadersCmd        `json:"elect_leaders,omitempty"`
	Reassign            *ReassignCmd            `json:"reassign,omitempty"`
	RemoveFromISR       *RemoveFromISRCmd       `json:"remove_from_isr,omitempty"`
	AllocateProducerIDs *AllocateProducerIDsCmd `json:"allocate_producer_ids,omitempty"`
}

// AllocateProducerIDs hands a broker the next block of producer ids
// (Kafka's AllocateProducerIds), so ids are unique across the cluster.
type AllocateProducerIDsCmd struct {
	BrokerID    int32 `json:"broker_id"`
	BrokerEpoch int64 `json:"broker_epoch"`
}

// InitClusterCmd sets the cluster id; the first active controller proposes
// it once.
type InitClusterCmd struct {
	ClusterID string `json:"cluster_id"`
}

// SetControllerAddrCmd records a controller's HTTP API address, so
// followers can point clients at the leader.
type SetControllerAddrCmd struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// RegisterBrokerCmd registers (or re-registers) a broker. The new broker
// epoch is the command's log index. The broker starts fenced.
type RegisterBrokerCmd struct {
	BrokerRegistration
}

// UnregisterBrokerCmd removes a broker that holds no replicas.
type UnregisterBrokerCmd struct {
	ID int32 `json:"id"`
}

// FenceBrokerCmd fences a broker. With Epoch set (session expiry) it
// applies only to that registration; Admin marks an operator's fence, which
// heartbeats do not undo.
type FenceBrokerCmd struct {
	ID    int32 `json:"id"`
	Epoch int64 `json:"epoch,omitempty"`
	Admin bool  `json:"admin,omitempty"`
}

// UnfenceBrokerCmd clears an operator's fence (ClearAdmin) and/or unfences
// registration Epoch (the active controller sets Epoch only when the broker
// heartbeats). A broker still fenced by an operator stays fenced.
type UnfenceBrokerCmd struct {
	ID         int32 `json:"id"`
	Epoch      int64 `json:"epoch,omitempty"`
	ClearAdmin bool  `json:"clear_admin,omitempty"`
}

// DemoteBrokerCmd sets or clears a broker's demoted flag. Demoting moves
// every leadership the broker holds to another eligible in-sync replica.
type DemoteBrokerCmd struct {
	ID      int32 `json:"id"`
	Demoted bool  `json:"demoted"`
}

// ControlledShutdownCmd moves a stopping broker's leaderships away and
// takes it out of the ISRs that stay non-empty without it.
type ControlledShutdownCmd struct {
	ID    int32 `json:"id"`
	Epoch int64 `json:"epoch"`
}

// DecommissionCmd starts moving a broker's replicas away (Reassignments,
// computed by the active controller). The broker becomes decommissioned
// once it holds no replica.
type DecommissionCmd struct {
	ID            int32          `json:"id"`
	Reassignments []Reassignment `json:"reassignments,omitempty"`
}

// CreateTopicCmd creates a topic with its id and replica assignment
// (Assignments[i] are partition i's replicas, preferred leader first).
type CreateTopicCmd struct {
	Name        string            `json:"name"`
	ID          TopicID           `json:"id"`
	Configs     map[string]string `json:"configs,omitempty"`
	Assignments [][]int32         `json:"assignments"`
}

// DeleteTopicCmd deletes a topic.
type DeleteTopicCmd struct {
	Name string  `json:"name"`
	ID   TopicID `json:"id"`
}

// CreatePartitionsCmd appends partitions to a topic.
type CreatePartitionsCmd struct {
	Topic       string    `json:"topic"`
	ID          TopicID   `json:"id"`
	Assignments [][]int32 `json:"assignments"`
}

// AlterConfigsCmd replaces a topic's config overrides.
type AlterConfigsCmd struct {
	Topic   string            `json:"topic"`
	Configs map[string]string `json:"configs"`
}

// AlterPartitionCmd is a leader's ISR change (KIP-497 AlterPartition).
type AlterPartitionCmd struct {
	AlterPartitionRequest
}

// ElectLeadersCmd runs preferred or unclean elections.
type ElectLeadersCmd struct {
	ElectLeadersRequest
}

// ReassignCmd starts, changes or cancels reassignments.
type ReassignCmd struct {
	Reassignments []Reassignment `json:"reassignments"`
}

// RemoveFromISRCmd takes a replica out of a partition's ISR (an operator's
// or the mitigator's shrink of a slow follower).
type RemoveFromISRCmd struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Broker    int32  `json:"broker"`
}

// Result is what applying a command returned.
type Result struct {
	// Value is the command's answer: the broker epoch for a registration,
	// the partition for AlterPartition and RemoveFromISR, per-partition
	// results for ElectLeaders and Reassign, nil otherwise.
	Value any
	// Err is set when the command was refused; the image is unchanged.
	Err *Error
	// Change is what changed (nil when nothing did).
	Change *Change
}

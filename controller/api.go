package controller

import "time"

// This file holds the request and response types of the controller API,
// shared by the HTTP server and the Client. Their JSON form is the HTTP
// API's (see docs/controller.md).

// BrokerRegistration is what a broker sends when it starts.
type BrokerRegistration struct {
	// ID is the broker id.
	ID int32 `json:"id"`
	// IncarnationID is random per process start (any unique string).
	IncarnationID string `json:"incarnation_id"`
	// Cell is the broker's cell; empty means DefaultCell.
	Cell string `json:"cell,omitempty"`
	// Rack is the broker's rack or zone; may be empty.
	Rack string `json:"rack,omitempty"`
	// Endpoint is the host:port of its Kafka listener.
	Endpoint string `json:"endpoint"`
}

// RegisterResult answers a registration.
type RegisterResult struct {
	// Epoch is the new broker epoch.
	Epoch int64 `json:"epoch"`
}

// HeartbeatRequest is a broker's periodic heartbeat.
type HeartbeatRequest struct {
	ID           int32 `json:"id"`
	Epoch        int64 `json:"epoch"`
	WantShutdown bool  `json:"want_shutdown,omitempty"`
}

// HeartbeatResult answers a heartbeat.
type HeartbeatResult struct {
	// Fenced: the broker may not lead or join ISRs. A broker is fenced
	// right after registering until its heartbeat unfences it, after its
	// session expired, and while an operator fences it (AdminFenced).
	Fenced bool `json:"fenced"`
	// AdminFenced: an operator fenced the broker; heartbeats do not unfence it.
	AdminFenced bool `json:"admin_fenced,omitempty"`
	// Demoted: the broker is kept from leading while others can.
	Demoted bool `json:"demoted,omitempty"`
	// InControlledShutdown: the broker asked to shut down.
	InControlledShutdown bool `json:"in_controlled_shutdown,omitempty"`
	// ShutdownReady: the broker leads no partition any more and may stop.
	ShutdownReady bool `json:"shutdown_ready,omitempty"`
	// MetadataOffset is the controller's applied index: a broker whose
	// image is at least this far is caught up.
	MetadataOffset int64 `json:"metadata_offset"`
}

// AlterPartitionRequest is a partition leader's ISR change, validated as in
// Kafka's AlterPartition (KIP-497): the epochs must be current, the ISR
// must contain the leader, and replicas added must be alive.
type AlterPartitionRequest struct {
	// BrokerID and BrokerEpoch identify the requesting leader.
	BrokerID    int32 `json:"broker_id"`
	BrokerEpoch int64 `json:"broker_epoch"`
	// Topic or TopicID names the topic (TopicID wins when set).
	Topic   string  `json:"topic,omitempty"`
	TopicID TopicID `json:"topic_id,omitempty"`
	// Partition is the partition number.
	Partition int32 `json:"partition"`
	// LeaderEpoch and PartitionEpoch are those the leader last saw.
	LeaderEpoch    int32 `json:"leader_epoch"`
	PartitionEpoch int32 `json:"partition_epoch"`
	// NewISR is the whole proposed ISR.
	NewISR []int32 `json:"new_isr"`
}

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
}

// ElectionType is preferred or unclean.
type ElectionType string

// Election types.
const (
	// ElectPreferred moves leadership to the preferred replica (the first
	// one) where it is alive, in sync and not demoted.
	ElectPreferred ElectionType = "preferred"
	// ElectUnclean gives a leaderless partition a leader, from outside the
	// ISR if no in-sync replica is alive (data may be lost).
	ElectUnclean ElectionType = "unclean"
)

// ElectLeadersRequest asks for elections. No partitions means every
// partition that needs one.
type ElectLeadersRequest struct {
	Type       ElectionType     `json:"type"`
	Partitions []TopicPartition `json:"partitions,omitempty"`
}

// ElectionResult is one partition's election outcome.
type ElectionResult struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Leader is the leader after the election.
	Leader int32 `json:"leader"`
	// Error is set if no election took place (ELECTION_NOT_NEEDED,
	// PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE, ...).
	Error *Error `json:"error,omitempty"`
}

// Reassignment sets a partition's target replicas; nil Replicas cancels an
// in-progress reassignment.
type Reassignment struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Replicas  []int32 `json:"replicas"`
}

// ReassignmentResult is one partition's outcome.
type ReassignmentResult struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Error     *Error `json:"error,omitempty"`
}

// ReassignmentStatus describes an in-progress reassignment.
type ReassignmentStatus struct {
	Topic            string  `json:"topic"`
	Partition        int32   `json:"partition"`
	Replicas         []int32 `json:"replicas"`
	AddingReplicas   []int32 `json:"adding_replicas"`
	RemovingReplicas []int32 `json:"removing_replicas"`
	ISR              []int32 `json:"isr"`
	Leader           int32   `json:"leader"`
}

// CreateTopicsRequest creates topics.
type CreateTopicsRequest struct {
	Topics []CreateTopic `json:"topics"`
	// ValidateOnly checks everything (including placement) without creating.
	ValidateOnly bool `json:"validate_only,omitempty"`
}

// CreateTopic describes one topic to create. Either Partitions and
// ReplicationFactor (placement chosen by the controller) or Assignments.
type CreateTopic struct {
	Name              string `json:"name"`
	Partitions        int32  `json:"partitions,omitempty"`
	ReplicationFactor int16  `json:"replication_factor,omitempty"`
	// Assignments are explicit replica lists per partition.
	Assignments [][]int32 `json:"assignments,omitempty"`
	// Cell pins the topic to a cell; empty picks the least-loaded cell.
	Cell    string            `json:"cell,omitempty"`
	Configs map[string]string `json:"configs,omitempty"`
}

// TopicResult is one topic's outcome.
type TopicResult struct {
	Name  string  `json:"name"`
	ID    TopicID `json:"id,omitempty"`
	Error *Error  `json:"error,omitempty"`
}

// DeleteTopicsRequest deletes topics by name.
type DeleteTopicsRequest struct {
	Names        []string `json:"names"`
	ValidateOnly bool     `json:"validate_only,omitempty"`
}

// CreatePartitionsRequest grows topics.
type CreatePartitionsRequest struct {
	Topics       []CreatePartitions `json:"topics"`
	ValidateOnly bool               `json:"validate_only,omitempty"`
}

// CreatePartitions grows one topic to Count partitions, with optional
// explicit assignments for the new ones.
type CreatePartitions struct {
	Topic       string    `json:"topic"`
	Count       int32     `json:"count"`
	Assignments [][]int32 `json:"assignments,omitempty"`
}

// AlterConfigsRequest changes one topic's config overrides: Set adds or
// replaces, Delete removes (back to the default). With Replace the
// overrides become exactly Set.
type AlterConfigsRequest struct {
	Topic        string            `json:"topic"`
	Set          map[string]string `json:"set,omitempty"`
	Delete       []string          `json:"delete,omitempty"`
	Replace      bool              `json:"replace,omitempty"`
	ValidateOnly bool              `json:"validate_only,omitempty"`
}

// ConfigsResult is a topic's config overrides.
type ConfigsResult struct {
	Topic   string            `json:"topic"`
	Configs map[string]string `json:"configs"`
}

// BrokerDescription is a broker as `vigil admin brokers` shows it.
type BrokerDescription struct {
	Broker
	// Leaders and Replicas count the partitions it leads and holds.
	Leaders  int `json:"leaders"`
	Replicas int `json:"replicas"`
	// LastHeartbeatAge is the time since the active controller last heard
	// from the broker (since the controller became active if not yet);
	// -1 when unknown.
	LastHeartbeatAge time.Duration `json:"last_heartbeat_age_ns"`
}

// ClusterDescription describes the cluster.
type ClusterDescription struct {
	ClusterID string `json:"cluster_id"`
	// ControllerID is the active controller's id.
	ControllerID string              `json:"controller_id"`
	Brokers      []BrokerDescription `json:"brokers"`
	// MetadataOffset is the applied index of the image described.
	MetadataOffset int64 `json:"metadata_offset"`
}

// QuorumDescription describes the controller quorum.
type QuorumDescription struct {
	// LeaderID and LeaderAddr name the active controller (API address if known).
	LeaderID   string `json:"leader_id"`
	LeaderAddr string `json:"leader_addr,omitempty"`
	// Voters are the quorum members.
	Voters []QuorumVoter `json:"voters"`
	// AppliedIndex is the answering controller's applied index, CommitIndex
	// and LastIndex raft's on that controller.
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LastIndex    uint64 `json:"last_index"`
	Term         uint64 `json:"term"`
	// Self is the answering controller.
	Self string `json:"self"`
}

// QuorumVoter is one voter.
type QuorumVoter struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr,omitempty"`
}

// Delta answers WatchMetadata: either Changes after the caller's offset, or
// (when the caller asked with -1 or is too far behind) the whole Image.
type Delta struct {
	// Offset is the applied index this delta brings the caller to: pass it
	// as afterOffset to the next WatchMetadata.
	Offset int64 `json:"offset"`
	// Image, when set, replaces the caller's image.
	Image *Image `json:"image,omitempty"`
	// Changes, in log order, to apply with Image.ApplyChange.
	Changes []Change `json:"changes,omitempty"`
}

// ProducerIDBlock is a range of producer ids reserved for one broker:
// FirstID to FirstID+Count-1.
type ProducerIDBlock struct {
	FirstID int64 `json:"first_id"`
	Count   int64 `json:"count"`
}

// ProducerIDBlockSize is how many producer ids one allocation reserves.
const ProducerIDBlockSize = 1000

// errorBody is the JSON body of an error answer.
type errorBody struct {
	Error *Error `json:"error"`
}

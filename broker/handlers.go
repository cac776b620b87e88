package broker

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// dispatch routes a decoded request to its handler. release, if not nil, is
// called once the response has been encoded (it returns pooled buffers the
// response refers to). A non-nil error closes the connection.
func (c *conn) dispatch(req *request, kreq kmsg.Request) (resp kmsg.Response, release func(), err error) {
	b := c.b
	switch r := kreq.(type) {
	case *kmsg.ProduceRequest:
		return b.handleProduce(c, r)
	case *kmsg.FetchRequest:
		return b.handleFetch(c, r)
	case *kmsg.ApiVersionsRequest:
		return c.handleApiVersions(r), nil, nil
	case *kmsg.MetadataRequest:
		return b.handleMetadata(r), nil, nil
	case *kmsg.ListOffsetsRequest:
		return b.handleListOffsets(r), nil, nil
	case *kmsg.CreateTopicsRequest:
		return b.handleCreateTopics(r), nil, nil
	case *kmsg.DeleteTopicsRequest:
		return b.handleDeleteTopics(r), nil, nil
	case *kmsg.CreatePartitionsRequest:
		return b.handleCreatePartitions(r), nil, nil
	case *kmsg.DeleteRecordsRequest:
		return b.handleDeleteRecords(r), nil, nil
	case *kmsg.InitProducerIDRequest:
		return b.handleInitProducerID(r), nil, nil
	case *kmsg.OffsetForLeaderEpochRequest:
		return b.handleOffsetForLeaderEpoch(r), nil, nil
	case *kmsg.DescribeConfigsRequest:
		return b.handleDescribeConfigs(r), nil, nil
	case *kmsg.AlterConfigsRequest:
		return b.handleAlterConfigs(r), nil, nil
	case *kmsg.IncrementalAlterConfigsRequest:
		return b.handleIncrementalAlterConfigs(r), nil, nil
	case *kmsg.DescribeClusterRequest:
		return b.handleDescribeCluster(r), nil, nil
	case *kmsg.DescribeLogDirsRequest:
		return b.handleDescribeLogDirs(r), nil, nil
	case *kmsg.DescribeProducersRequest:
		return b.handleDescribeProducers(r), nil, nil
	case *kmsg.FindCoordinatorRequest:
		return b.handleFindCoordinator(r), nil, nil
	case *kmsg.JoinGroupRequest:
		return b.handleJoinGroup(c, req, r), nil, nil
	case *kmsg.SyncGroupRequest:
		return b.handleSyncGroup(c, r), nil, nil
	case *kmsg.HeartbeatRequest:
		return b.handleHeartbeat(c, r), nil, nil
	case *kmsg.LeaveGroupRequest:
		return b.handleLeaveGroup(c, r), nil, nil
	case *kmsg.OffsetCommitRequest:
		return b.handleOffsetCommit(c, r), nil, nil
	case *kmsg.OffsetFetchRequest:
		return b.handleOffsetFetch(r), nil, nil
	case *kmsg.OffsetDeleteRequest:
		return b.handleOffsetDelete(c, r), nil, nil
	case *kmsg.DescribeGroupsRequest:
		return b.handleDescribeGroups(r), nil, nil
	case *kmsg.ListGroupsRequest:
		return b.handleListGroups(r), nil, nil
	case *kmsg.DeleteGroupsRequest:
		return b.handleDeleteGroups(c, r), nil, nil
	case *kmsg.ConsumerGroupHeartbeatRequest:
		return b.handleConsumerGroupHeartbeat(c, req, r), nil, nil
	case *kmsg.ConsumerGroupDescribeRequest:
		return b.handleConsumerGroupDescribe(r), nil, nil
	case *kmsg.ElectLeadersRequest:
		return b.handleElectLeaders(r), nil, nil
	case *kmsg.AlterPartitionAssignmentsRequest:
		return b.handleAlterPartitionReassignments(r), nil, nil
	case *kmsg.ListPartitionReassignmentsRequest:
		return b.handleListPartitionReassignments(r), nil, nil
	case *kmsg.GetTelemetrySubscriptionsRequest:
		return b.handleGetTelemetrySubscriptions(c, req, r), nil, nil
	case *kmsg.PushTelemetryRequest:
		return b.handlePushTelemetry(c, req, r), nil, nil
	}
	// apiVersions and this switch must list the same APIs.
	return nil, nil, fmt.Errorf("no handler for %s", kmsg.NameForKey(req.key))
}

func (c *conn) handleApiVersions(r *kmsg.ApiVersionsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ApiVersionsResponse)
	if r.Version >= 3 {
		c.clientSoftware, c.clientSoftwareVersion = r.ClientSoftwareName, r.ClientSoftwareVersion
		if !validSoftwareField(r.ClientSoftwareName) || !validSoftwareField(r.ClientSoftwareVersion) {
			// KIP-511: names and versions must match [a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?
			resp.ErrorCode = kerr.InvalidRequest.Code
		}
	}
	resp.ApiKeys = apiVersionKeys
	return resp
}

func validSoftwareField(s string) bool {
	if s == "" {
		return false
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validateTopicName applies Kafka's topic name rules.
func validateTopicName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("topic name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("topic name cannot be %q", name)
	case len(name) > 249:
		return fmt.Errorf("topic name is %d characters long; the limit is 249", len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q contains %q; only ASCII letters, digits, '.', '_' and '-' are allowed", name, c)
		}
	}
	return nil
}

// checkLeaderEpoch validates a request's current leader epoch against the
// partition's (-1 means the client does not check).
func checkLeaderEpoch(p *partition, current int32) int16 {
	switch epoch := p.leaderEpoch(); {
	case current < 0 || current == epoch:
		return 0
	case current < epoch:
		return kerr.FencedLeaderEpoch.Code
	default:
		return kerr.UnknownLeaderEpoch.Code
	}
}

// leaderError returns the error for a request that must go to p's leader:
// 0 when this broker leads p at the client's epoch (or the client does
// not say) and its log is online.
func leaderError(p *partition, currentEpoch int32) int16 {
	if code := checkLeaderEpoch(p, currentEpoch); code != 0 {
		return code
	}
	if !p.isLeader() {
		return kerr.NotLeaderForPartition.Code
	}
	if p.log.Offline() != nil {
		return kerr.KafkaStorageError.Code
	}
	return 0
}

// partitionOf returns partition index of t, or nil.
func (t *topic) partition(index int32) *partition {
	if t == nil || index < 0 || int(index) >= len(t.partitions) {
		return nil
	}
	return t.partitions[index]
}

func strp(s string) *string { return &s }

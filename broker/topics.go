package broker

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxPartitions bounds the partitions of one topic on a single broker: each
// partition is a directory with open files.
const maxPartitions = 10000

// handleCreateTopics validates every topic (name, partitions, replication,
// assignment, configs) and creates it unless validate_only.
func (b *Broker) handleCreateTopics(r *kmsg.CreateTopicsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := map[string]int{}
	for _, rt := range r.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range r.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		fail := func(e *kerr.Error, format string, args ...any) {
			st.ErrorCode = e.Code
			st.ErrorMessage = strp(fmt.Sprintf(format, args...))
		}
		if seen[rt.Topic] > 1 {
			fail(kerr.InvalidRequest, "topic %q appears more than once in the request", rt.Topic)
			resp.Topics = append(resp.Topics, st)
			continue
		}
		partitions, configs, err := b.checkNewTopic(&rt)
		if err != nil {
			var ke *kerr.Error
			errors.As(err, &ke)
			fail(ke, "%v", unwrapMessage(err))
			resp.Topics = append(resp.Topics, st)
			continue
		}
		if r.ValidateOnly {
			if err := b.meta.checkNewName(rt.Topic); err != nil {
				fail(nameError(err), "%v", err)
			}
		} else {
			t, err := b.meta.createTopic(rt.Topic, partitions, configs)
			if err != nil {
				fail(nameError(err), "%v", err)
			} else {
				st.TopicID = t.id
			}
		}
		if st.ErrorCode == 0 {
			st.NumPartitions = partitions
			st.ReplicationFactor = 1
			for _, cv := range resolveTopicConfigs(configs, b.cfg.TopicDefaults) {
				c := kmsg.NewCreateTopicsResponseTopicConfig()
				c.Name, c.Value, c.Source = cv.def.name, strp(cv.value), int8(cv.source)
				st.Configs = append(st.Configs, c)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// nameError maps a metaStore creation error to its Kafka error.
func nameError(err error) *kerr.Error {
	switch {
	case errors.Is(err, errTopicExists):
		return kerr.TopicAlreadyExists
	case errors.Is(err, errTopicCollides):
		return kerr.InvalidTopicException
	default:
		return kerr.KafkaStorageError
	}
}

// kafkaError pairs a Kafka error with a message for the client.
type kafkaError struct {
	code *kerr.Error
	msg  string
}

func (e *kafkaError) Error() string { return e.msg }
func (e *kafkaError) Unwrap() error { return e.code }

func errorf(code *kerr.Error, format string, args ...any) error {
	return &kafkaError{code: code, msg: fmt.Sprintf(format, args...)}
}

func unwrapMessage(err error) string {
	var ke *kafkaError
	if errors.As(err, &ke) {
		return ke.msg
	}
	return err.Error()
}

// checkNewTopic validates a CreateTopics entry and returns the partition
// count and config overrides to create it with.
func (b *Broker) checkNewTopic(rt *kmsg.CreateTopicsRequestTopic) (int32, map[string]string, error) {
	if err := validateTopicName(rt.Topic); err != nil {
		return 0, nil, errorf(kerr.InvalidTopicException, "%v", err)
	}
	if isInternalTopic(rt.Topic) {
		return 0, nil, errorf(kerr.InvalidRequest, "%s is an internal topic; the broker creates it when it is first needed", rt.Topic)
	}
	partitions := rt.NumPartitions
	if len(rt.ReplicaAssignment) > 0 {
		if rt.NumPartitions != -1 || rt.ReplicationFactor != -1 {
			return 0, nil, errorf(kerr.InvalidRequest, "with a replica assignment, num_partitions and replication_factor must be -1")
		}
		partitions = int32(len(rt.ReplicaAssignment))
		seen := make(map[int32]bool)
		for _, a := range rt.ReplicaAssignment {
			if a.Partition < 0 || a.Partition >= partitions || seen[a.Partition] {
				return 0, nil, errorf(kerr.InvalidReplicaAssignment, "replica assignment partitions must be 0..%d, each once", partitions-1)
			}
			seen[a.Partition] = true
			if err := b.checkReplicas(a.Replicas); err != nil {
				return 0, nil, err
			}
		}
	} else {
		if partitions == -1 {
			partitions = b.cfg.NumPartitions
		}
		if partitions <= 0 {
			return 0, nil, errorf(kerr.InvalidPartitions, "num_partitions must be at least 1 (or -1 for the broker default), got %d", rt.NumPartitions)
		}
		switch rf := rt.ReplicationFactor; {
		case rf == -1 || rf == 1:
		case rf <= 0:
			return 0, nil, errorf(kerr.InvalidReplicationFactor, "replication_factor must be at least 1 (or -1 for the default), got %d", rf)
		default:
			return 0, nil, errorf(kerr.InvalidReplicationFactor, "replication_factor %d is larger than the 1 available broker", rf)
		}
	}
	if partitions > maxPartitions {
		return 0, nil, errorf(kerr.InvalidPartitions, "%d partitions is more than the %d a topic may have", partitions, maxPartitions)
	}
	configs := make(map[string]string, len(rt.Configs))
	for _, c := range rt.Configs {
		if c.Value == nil {
			continue // null means the default
		}
		v, err := parseTopicConfig(c.Name, *c.Value)
		if err != nil {
			return 0, nil, errorf(kerr.InvalidConfig, "%v", err)
		}
		configs[c.Name] = v
	}
	if err := checkTopicConfigs(configs, b.cfg.TopicDefaults); err != nil {
		return 0, nil, errorf(kerr.InvalidConfig, "%v", err)
	}
	return partitions, configs, nil
}

// checkReplicas validates an explicit replica list: on a single broker it
// must be exactly this broker.
func (b *Broker) checkReplicas(replicas []int32) error {
	if len(replicas) != 1 || replicas[0] != b.cfg.NodeID {
		return errorf(kerr.InvalidReplicaAssignment, "replicas %v: the only broker is %d", replicas, b.cfg.NodeID)
	}
	return nil
}

// checkNewName is checkNewNameLocked for validate-only requests.
func (m *metaStore) checkNewName(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.checkNewNameLocked(name)
}

// handleDeleteTopics deletes topics by name (all versions) or id (v6+).
func (b *Broker) handleDeleteTopics(r *kmsg.DeleteTopicsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DeleteTopicsResponse)
	reqs := r.Topics
	if r.Version < 6 {
		reqs = make([]kmsg.DeleteTopicsRequestTopic, 0, len(r.TopicNames))
		for _, n := range r.TopicNames {
			reqs = append(reqs, kmsg.DeleteTopicsRequestTopic{Topic: strp(n)})
		}
	}
	for _, rt := range reqs {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var t *topic
		switch {
		case rt.Topic != nil && rt.TopicID != ([16]byte{}):
			st.ErrorCode = kerr.InvalidRequest.Code
			st.ErrorMessage = strp("name a topic by name or by id, not both")
		case rt.Topic != nil:
			if t = b.meta.lookup(*rt.Topic); t == nil {
				st.ErrorCode = kerr.UnknownTopicOrPartition.Code
			}
		default:
			if t = b.meta.lookupID(rt.TopicID); t == nil {
				st.ErrorCode = kerr.UnknownTopicID.Code
			} else {
				st.Topic = strp(t.name)
			}
		}
		if t != nil && t.internal() {
			st.TopicID = t.id
			st.ErrorCode = kerr.InvalidRequest.Code
			st.ErrorMessage = strp(t.name + " is an internal topic and cannot be deleted")
		} else if t != nil {
			st.TopicID = t.id
			if err := b.meta.deleteTopic(t); err != nil {
				st.ErrorCode = kerr.KafkaStorageError.Code
				st.ErrorMessage = strp(err.Error())
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// handleCreatePartitions grows topics.
func (b *Broker) handleCreatePartitions(r *kmsg.CreatePartitionsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.CreatePartitionsResponse)
	seen := map[string]int{}
	for _, rt := range r.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range r.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		err := b.createPartitions(&rt, seen[rt.Topic] > 1, r.ValidateOnly)
		if err != nil {
			var ke *kerr.Error
			errors.As(err, &ke)
			st.ErrorCode = ke.Code
			st.ErrorMessage = strp(unwrapMessage(err))
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) createPartitions(rt *kmsg.CreatePartitionsRequestTopic, duplicate, validateOnly bool) error {
	if duplicate {
		return errorf(kerr.InvalidRequest, "topic %q appears more than once in the request", rt.Topic)
	}
	t := b.meta.lookup(rt.Topic)
	if t == nil {
		return errorf(kerr.UnknownTopicOrPartition, "topic %q does not exist", rt.Topic)
	}
	cur := int32(len(t.partitions))
	switch {
	case rt.Count == cur:
		return errorf(kerr.InvalidPartitions, "topic %q already has %d partitions", rt.Topic, cur)
	case rt.Count < cur:
		return errorf(kerr.InvalidPartitions, "topic %q has %d partitions; partitions can be added, never removed", rt.Topic, cur)
	case rt.Count > maxPartitions:
		return errorf(kerr.InvalidPartitions, "%d partitions is more than the %d a topic may have", rt.Count, maxPartitions)
	}
	if rt.Assignment != nil {
		if len(rt.Assignment) != int(rt.Count-cur) {
			return errorf(kerr.InvalidReplicaAssignment, "%d assignments given for %d new partitions", len(rt.Assignment), rt.Count-cur)
		}
		for _, a := range rt.Assignment {
			if err := b.checkReplicas(a.Replicas); err != nil {
				return err
			}
		}
	}
	if validateOnly {
		return nil
	}
	if err := b.meta.addPartitions(t, rt.Count); err != nil {
		return errorf(kerr.KafkaStorageError, "%v", err)
	}
	return nil
}

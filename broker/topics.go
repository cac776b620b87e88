package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/vigilhq/vigil/controller"
)

// Topic administration goes to the controller quorum, which owns the
// metadata; like Kafka's brokers, this one forwards CreateTopics,
// DeleteTopics, CreatePartitions and config changes and answers once its
// own copy of the image shows the result, so the client's next Metadata
// request to this broker sees it.

// maxPartitions bounds the partitions of one topic (each is a directory
// with open files on every replica).
const maxPartitions = 10000

// adminTimeout bounds one forwarded administrative operation.
const adminTimeout = 30 * time.Second

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
	var ce *controller.Error
	if errors.As(err, &ce) {
		return ce.Message
	}
	return err.Error()
}

// kerrByName maps Kafka error names (the controller's error codes) to
// Kafka errors.
var kerrByName = func() map[string]*kerr.Error {
	m := map[string]*kerr.Error{}
	for code := int16(-1); code < 200; code++ {
		var ke *kerr.Error
		if errors.As(kerr.ErrorForCode(code), &ke) {
			m[ke.Message] = ke
		}
	}
	return m
}()

// errorCodeOf returns the Kafka error of err and a message for the client:
// a kafkaError's, a controller error's (by name), else the fallback.
func errorCodeOf(err error, fallback *kerr.Error) (*kerr.Error, string) {
	var ke *kafkaError
	if errors.As(err, &ke) {
		return ke.code, ke.msg
	}
	var ce *controller.Error
	if errors.As(err, &ce) {
		if k := kerrByName[ce.Code]; k != nil {
			return k, ce.Message
		}
		return fallback, ce.Code + ": " + ce.Message
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return kerr.RequestTimedOut, "the controller quorum did not answer in time: " + err.Error()
	}
	return fallback, err.Error()
}

// adminContext bounds a forwarded operation by adminTimeout and the
// broker's life.
func (b *Broker) adminContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, adminTimeout)
}

// handleCreateTopics validates every topic and has the quorum create it
// (placement, replication and assignments are the quorum's to check).
func (b *Broker) handleCreateTopics(r *kmsg.CreateTopicsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := map[string]int{}
	for _, rt := range r.Topics {
		seen[rt.Topic]++
	}
	type pending struct {
		out *kmsg.CreateTopicsResponseTopic
		ct  controller.CreateTopic
	}
	var todo []pending
	// Sized up front: the pending entries point into it.
	resp.Topics = make([]kmsg.CreateTopicsResponseTopic, 0, len(r.Topics))
	for _, rt := range r.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		resp.Topics = append(resp.Topics, st)
		out := &resp.Topics[len(resp.Topics)-1]
		if seen[rt.Topic] > 1 {
			out.ErrorCode = kerr.InvalidRequest.Code
			out.ErrorMessage = strp(fmt.Sprintf("topic %q appears more than once in the request", rt.Topic))
			continue
		}
		ct, err := b.checkNewTopic(&rt)
		if err != nil {
			code, msg := errorCodeOf(err, kerr.InvalidRequest)
			out.ErrorCode, out.ErrorMessage = code.Code, strp(msg)
			continue
		}
		todo = append(todo, pending{out, ct})
	}
	if len(todo) == 0 {
		return resp
	}
	req := controller.CreateTopicsRequest{ValidateOnly: r.ValidateOnly}
	for _, p := range todo {
		req.Topics = append(req.Topics, p.ct)
	}
	ctx, cancel := b.adminContext()
	defer cancel()
	results, err := b.link.cl.CreateTopics(ctx, req)
	if err != nil {
		code, msg := errorCodeOf(err, kerr.RequestTimedOut)
		for _, p := range todo {
			p.out.ErrorCode, p.out.ErrorMessage = code.Code, strp(msg)
		}
		return resp
	}
	byName := map[string]controller.TopicResult{}
	for _, res := range results {
		byName[res.Name] = res
	}
	var created [][16]byte
	for _, p := range todo {
		res, ok := byName[p.ct.Name]
		switch {
		case !ok:
			p.out.ErrorCode, p.out.ErrorMessage = kerr.UnknownServerError.Code, strp("the controller quorum did not answer for this topic")
			continue
		case res.Error != nil:
			code, msg := errorCodeOf(res.Error, kerr.UnknownServerError)
			p.out.ErrorCode, p.out.ErrorMessage = code.Code, strp(msg)
			continue
		}
		p.out.TopicID = [16]byte(res.ID)
		if !r.ValidateOnly {
			created = append(created, p.out.TopicID)
		}
	}
	// Answer once this broker's image has the topics.
	_ = b.meta.waitFor(ctx, func(set *topicSet) bool {
		for _, id := range created {
			if set.byID[id] == nil {
				return false
			}
		}
		return true
	})
	for _, p := range todo {
		if p.out.ErrorCode != 0 {
			continue
		}
		p.out.NumPartitions = p.ct.Partitions
		p.out.ReplicationFactor = int16(p.ct.ReplicationFactor)
		if t := b.meta.lookupID(p.out.TopicID); t != nil {
			p.out.NumPartitions = int32(len(t.partitions))
			if len(t.partitions) > 0 {
				if st := t.partitions[0].state.Load(); st != nil {
					p.out.ReplicationFactor = int16(len(st.Replicas))
				}
			}
		}
		for _, cv := range resolveTopicConfigs(p.ct.Configs, b.cfg.TopicDefaults) {
			c := kmsg.NewCreateTopicsResponseTopicConfig()
			c.Name, c.Value, c.Source = cv.def.name, strp(cv.value), int8(cv.source)
			p.out.Configs = append(p.out.Configs, c)
		}
	}
	return resp
}

// checkNewTopic validates a CreateTopics entry and returns what to ask the
// quorum for.
func (b *Broker) checkNewTopic(rt *kmsg.CreateTopicsRequestTopic) (controller.CreateTopic, error) {
	ct := controller.CreateTopic{Name: rt.Topic}
	if err := validateTopicName(rt.Topic); err != nil {
		return ct, errorf(kerr.InvalidTopicException, "%v", err)
	}
	if isInternalTopic(rt.Topic) {
		return ct, errorf(kerr.InvalidRequest, "%s is an internal topic; the broker creates it when it is first needed", rt.Topic)
	}
	if len(rt.ReplicaAssignment) > 0 {
		if rt.NumPartitions != -1 || rt.ReplicationFactor != -1 {
			return ct, errorf(kerr.InvalidRequest, "with a replica assignment, num_partitions and replication_factor must be -1")
		}
		ct.Assignments = make([][]int32, len(rt.ReplicaAssignment))
		for _, a := range rt.ReplicaAssignment {
			if a.Partition < 0 || int(a.Partition) >= len(rt.ReplicaAssignment) || ct.Assignments[a.Partition] != nil {
				return ct, errorf(kerr.InvalidReplicaAssignment, "replica assignment partitions must be 0..%d, each once", len(rt.ReplicaAssignment)-1)
			}
			ct.Assignments[a.Partition] = append([]int32{}, a.Replicas...)
		}
		ct.Partitions = int32(len(ct.Assignments))
	} else {
		ct.Partitions = rt.NumPartitions
		if ct.Partitions == -1 {
			ct.Partitions = b.cfg.NumPartitions
		}
		if ct.Partitions <= 0 {
			return ct, errorf(kerr.InvalidPartitions, "num_partitions must be at least 1 (or -1 for the broker default), got %d", rt.NumPartitions)
		}
		ct.ReplicationFactor = rt.ReplicationFactor
		if ct.ReplicationFactor == -1 {
			ct.ReplicationFactor = b.cfg.DefaultReplicationFactor
		}
		if ct.ReplicationFactor <= 0 {
			return ct, errorf(kerr.InvalidReplicationFactor, "replication_factor must be at least 1 (or -1 for the default), got %d", rt.ReplicationFactor)
		}
	}
	if ct.Partitions > maxPartitions {
		return ct, errorf(kerr.InvalidPartitions, "%d partitions is more than the %d a topic may have", ct.Partitions, maxPartitions)
	}
	configs := make(map[string]string, len(rt.Configs))
	for _, c := range rt.Configs {
		if c.Value == nil {
			continue // null means the default
		}
		v, err := parseTopicConfig(c.Name, *c.Value)
		if err != nil {
			return ct, errorf(kerr.InvalidConfig, "%v", err)
		}
		configs[c.Name] = v
	}
	if err := checkTopicConfigs(configs, b.cfg.TopicDefaults); err != nil {
		return ct, errorf(kerr.InvalidConfig, "%v", err)
	}
	if err := b.checkNameCollision(rt.Topic); err != nil {
		return ct, err
	}
	ct.Configs = configs
	return ct, nil
}

// checkNameCollision refuses a name that differs from an existing topic's
// only by '.' versus '_' (their metric names would collide), as Kafka does.
func (b *Broker) checkNameCollision(name string) error {
	norm := strings.ReplaceAll(name, ".", "_")
	for _, t := range b.meta.sortedTopics() {
		if t.name != name && strings.ReplaceAll(t.name, ".", "_") == norm {
			return errorf(kerr.InvalidTopicException, "topic %q collides with existing topic %q ('.' and '_' are equivalent in metric names)", name, t.name)
		}
	}
	return nil
}

// createTopic has the quorum create one topic and waits until this
// broker's image has it (auto-creation, __consumer_offsets).
func (b *Broker) createTopic(ctx context.Context, ct controller.CreateTopic) (*topic, error) {
	results, err := b.link.cl.CreateTopics(ctx, controller.CreateTopicsRequest{Topics: []controller.CreateTopic{ct}})
	if err == nil && len(results) == 1 && results[0].Error != nil {
		err = results[0].Error
	}
	if err != nil && !errors.Is(err, controller.ErrTopicAlreadyExists) {
		return nil, err
	}
	var t *topic
	werr := b.meta.waitFor(ctx, func(set *topicSet) bool {
		t = set.byName[ct.Name]
		return t != nil
	})
	if werr != nil {
		return nil, fmt.Errorf("topic %s was created but has not reached this broker yet: %w", ct.Name, werr)
	}
	return t, nil
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
	ctx, cancel := b.adminContext()
	defer cancel()
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
		switch {
		case t != nil && t.internal():
			st.TopicID = t.id
			st.ErrorCode = kerr.InvalidRequest.Code
			st.ErrorMessage = strp(t.name + " is an internal topic and cannot be deleted")
		case t != nil:
			st.TopicID = t.id
			if err := b.deleteTopic(ctx, t); err != nil {
				code, msg := errorCodeOf(err, kerr.UnknownServerError)
				st.ErrorCode, st.ErrorMessage = code.Code, strp(msg)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) deleteTopic(ctx context.Context, t *topic) error {
	results, err := b.link.cl.DeleteTopics(ctx, controller.DeleteTopicsRequest{Names: []string{t.name}})
	if err == nil && len(results) == 1 && results[0].Error != nil {
		err = results[0].Error
	}
	if err != nil && !errors.Is(err, controller.ErrUnknownTopicOrPartition) {
		return err
	}
	return b.meta.waitFor(ctx, func(set *topicSet) bool { return set.byID[t.id] == nil })
}

// handleCreatePartitions grows topics.
func (b *Broker) handleCreatePartitions(r *kmsg.CreatePartitionsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.CreatePartitionsResponse)
	seen := map[string]int{}
	for _, rt := range r.Topics {
		seen[rt.Topic]++
	}
	ctx, cancel := b.adminContext()
	defer cancel()
	for _, rt := range r.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		if err := b.createPartitions(ctx, &rt, seen[rt.Topic] > 1, r.ValidateOnly); err != nil {
			code, msg := errorCodeOf(err, kerr.UnknownServerError)
			st.ErrorCode, st.ErrorMessage = code.Code, strp(msg)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) createPartitions(ctx context.Context, rt *kmsg.CreatePartitionsRequestTopic, duplicate, validateOnly bool) error {
	if duplicate {
		return errorf(kerr.InvalidRequest, "topic %q appears more than once in the request", rt.Topic)
	}
	t := b.meta.lookup(rt.Topic)
	if t == nil {
		return errorf(kerr.UnknownTopicOrPartition, "topic %q does not exist", rt.Topic)
	}
	if t.internal() {
		return errorf(kerr.InvalidRequest, "%s is an internal topic; its partition count is fixed", t.name)
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
	req := controller.CreatePartitions{Topic: rt.Topic, Count: rt.Count}
	if rt.Assignment != nil {
		if len(rt.Assignment) != int(rt.Count-cur) {
			return errorf(kerr.InvalidReplicaAssignment, "%d assignments given for %d new partitions", len(rt.Assignment), rt.Count-cur)
		}
		for _, a := range rt.Assignment {
			req.Assignments = append(req.Assignments, append([]int32{}, a.Replicas...))
		}
	}
	results, err := b.link.cl.CreatePartitions(ctx, controller.CreatePartitionsRequest{Topics: []controller.CreatePartitions{req}, ValidateOnly: validateOnly})
	if err == nil && len(results) == 1 && results[0].Error != nil {
		err = results[0].Error
	}
	if err != nil || validateOnly {
		return err
	}
	return b.meta.waitFor(ctx, func(set *topicSet) bool {
		t := set.byID[t.id]
		return t != nil && len(t.partitions) >= int(rt.Count)
	})
}

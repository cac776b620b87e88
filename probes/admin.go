package probes

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The admin requests that keep a probe topic's layout, and the errors of
// their responses.

// applyLayout performs a layout plan, one request per kind of change,
// each with its own deadline, and returns their errors.
func (p *Prober) applyLayout(ctx context.Context, c *cell, plan layoutPlan, have int) error {
	p.log.Info("probe: re-asserting the probe topic's layout", "topic", c.topic,
		"create", plan.Create, "add", plan.Add, "reassign", plan.Reassign, "min_insync", plan.MinInsync, "elect", plan.Elect)
	timeout := int32(p.cfg.Timeout.Milliseconds())
	var reqs []kmsg.Request
	if len(plan.Create) > 0 {
		reqs = append(reqs, createTopicRequest(c.topic, plan.Create, p.cfg.Timeout))
	}
	if len(plan.Add) > 0 {
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.TimeoutMillis = timeout
		rt := kmsg.NewCreatePartitionsRequestTopic()
		rt.Topic, rt.Count = c.topic, int32(have+len(plan.Add))
		for _, rs := range plan.Add {
			a := kmsg.NewCreatePartitionsRequestTopicAssignment()
			a.Replicas = rs
			rt.Assignment = append(rt.Assignment, a)
		}
		req.Topics = append(req.Topics, rt)
		reqs = append(reqs, req)
	}
	if len(plan.Reassign) > 0 {
		req := kmsg.NewPtrAlterPartitionAssignmentsRequest()
		req.TimeoutMillis = timeout
		rt := kmsg.NewAlterPartitionAssignmentsRequestTopic()
		rt.Topic = c.topic
		for _, part := range slices.Sorted(maps.Keys(plan.Reassign)) {
			rp := kmsg.NewAlterPartitionAssignmentsRequestTopicPartition()
			rp.Partition, rp.Replicas = part, plan.Reassign[part]
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		reqs = append(reqs, req)
	}
	if plan.MinInsync > 0 {
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		res := kmsg.NewIncrementalAlterConfigsRequestResource()
		res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, c.topic
		cfg := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		cfg.Name, cfg.Op, cfg.Value = "min.insync.replicas", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr(strconv.Itoa(plan.MinInsync))
		res.Configs = append(res.Configs, cfg)
		req.Resources = append(req.Resources, res)
		reqs = append(reqs, req)
	}
	if len(plan.Elect) > 0 {
		req := kmsg.NewPtrElectLeadersRequest()
		req.ElectionType = 0 // preferred
		req.TimeoutMillis = timeout
		rt := kmsg.NewElectLeadersRequestTopic()
		rt.Topic, rt.Partitions = c.topic, plan.Elect
		req.Topics = append(req.Topics, rt)
		reqs = append(reqs, req)
	}
	var errs []error
	for _, req := range reqs {
		rctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		resp, err := p.admin.Request(rctx, req)
		cancel()
		if err == nil {
			err = adminError(resp)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", kmsg.NameForKey(req.Key()), err))
		}
	}
	return errors.Join(errs...)
}

// adminError returns the errors an admin response reports, leaving out
// those that mean the change is already made (another probe made it, or
// the leader is already the preferred one) or cannot be made yet and will
// be tried again (a preferred leader still catching up).
func adminError(resp kmsg.Response) error {
	var errs []error
	add := func(code int16, msg *string) {
		switch err := kerr.ErrorForCode(code); {
		case err == nil, errors.Is(err, kerr.TopicAlreadyExists), errors.Is(err, kerr.ElectionNotNeeded),
			errors.Is(err, kerr.PreferredLeaderNotAvailable):
		default:
			errs = append(errs, withMessage(err, msg))
		}
	}
	switch r := resp.(type) {
	case *kmsg.CreateTopicsResponse:
		for _, t := range r.Topics {
			add(t.ErrorCode, t.ErrorMessage)
		}
	case *kmsg.CreatePartitionsResponse:
		for _, t := range r.Topics {
			add(t.ErrorCode, t.ErrorMessage)
		}
	case *kmsg.AlterPartitionAssignmentsResponse:
		add(r.ErrorCode, r.ErrorMessage)
		for _, t := range r.Topics {
			for _, pr := range t.Partitions {
				add(pr.ErrorCode, pr.ErrorMessage)
			}
		}
	case *kmsg.IncrementalAlterConfigsResponse:
		for _, rr := range r.Resources {
			add(rr.ErrorCode, rr.ErrorMessage)
		}
	case *kmsg.ElectLeadersResponse:
		add(r.ErrorCode, nil)
		for _, t := range r.Topics {
			for _, pr := range t.Partitions {
				add(pr.ErrorCode, pr.ErrorMessage)
			}
		}
	case *kmsg.ListPartitionReassignmentsResponse:
		add(r.ErrorCode, r.ErrorMessage)
	case *kmsg.OffsetCommitResponse:
		for _, t := range r.Topics {
			for _, pr := range t.Partitions {
				add(pr.ErrorCode, nil)
			}
		}
	}
	return errors.Join(errs...)
}

// createTopicRequest creates a probe topic with the given replica lists.
func createTopicRequest(topic string, assignments [][]int32, timeout time.Duration) *kmsg.CreateTopicsRequest {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = int32(timeout.Milliseconds())
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
	for i, rs := range assignments {
		a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		a.Partition, a.Replicas = int32(i), rs
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
	}
	for _, kv := range [][2]string{
		{"min.insync.replicas", strconv.Itoa(minInsync(len(assignments[0])))},
		// Probe records are useless after a few minutes: keep an hour,
		// in segments small enough for retention to delete.
		{"retention.ms", "3600000"},
		{"segment.ms", "600000"},
	} {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = kv[0], kmsg.StringPtr(kv[1])
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	return req
}

func withMessage(err error, msg *string) error {
	if err == nil || msg == nil || *msg == "" {
		return err
	}
	return fmt.Errorf("%w: %s", err, *msg)
}

// reassigning returns the partitions of topic (of n) with a reassignment
// in progress. A cluster that cannot say (an old broker, an error) has
// none: the layout is then re-asserted as before.
func (p *Prober) reassigning(ctx context.Context, topic string, n int) map[int32]bool {
	req := kmsg.NewPtrListPartitionReassignmentsRequest()
	req.TimeoutMillis = int32(p.cfg.Timeout.Milliseconds())
	rt := kmsg.NewListPartitionReassignmentsRequestTopic()
	rt.Topic = topic
	for i := range n {
		rt.Partitions = append(rt.Partitions, int32(i))
	}
	req.Topics = append(req.Topics, rt)
	rctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	resp, err := p.admin.Request(rctx, req)
	if err == nil {
		err = adminError(resp)
	}
	if err != nil {
		p.log.Debug("probe: listing the probe topic's reassignments", "topic", topic, "err", err)
		return nil
	}
	out := map[int32]bool{}
	for _, t := range resp.(*kmsg.ListPartitionReassignmentsResponse).Topics {
		if t.Topic != topic {
			continue
		}
		for _, part := range t.Partitions {
			out[part.Partition] = true
		}
	}
	return out
}

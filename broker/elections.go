package broker

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/vigilhq/vigil/controller"
)

// The Kafka admin APIs for leaders and replica placement, forwarded to the
// controller quorum: ElectLeaders (preferred or unclean elections),
// AlterPartitionReassignments and ListPartitionReassignments.

// handleElectLeaders runs preferred (type 0) or unclean (type 1)
// elections; no topics means every partition that needs one.
func (b *Broker) handleElectLeaders(r *kmsg.ElectLeadersRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ElectLeadersResponse)
	req := controller.ElectLeadersRequest{Type: controller.ElectPreferred}
	switch r.ElectionType {
	case 0:
	case 1:
		req.Type = controller.ElectUnclean
	default:
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			req.Partitions = append(req.Partitions, controller.TopicPartition{Topic: t.Topic, Partition: p})
		}
	}
	ctx, cancel := b.adminContext()
	defer cancel()
	results, err := b.link.cl.ElectLeaders(ctx, req)
	if err != nil {
		code, msg := errorCodeOf(err, kerr.UnknownServerError)
		if r.Version >= 1 {
			resp.ErrorCode = code.Code
			return resp
		}
		// v0 has no top-level error: every partition carries it.
		for _, t := range r.Topics {
			rt := kmsg.NewElectLeadersResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewElectLeadersResponseTopicPartition()
				rp.Partition, rp.ErrorCode, rp.ErrorMessage = p, code.Code, strp(msg)
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	byTopic := map[string]int{}
	for _, res := range results {
		i, ok := byTopic[res.Topic]
		if !ok {
			rt := kmsg.NewElectLeadersResponseTopic()
			rt.Topic = res.Topic
			resp.Topics = append(resp.Topics, rt)
			i = len(resp.Topics) - 1
			byTopic[res.Topic] = i
		}
		rp := kmsg.NewElectLeadersResponseTopicPartition()
		rp.Partition = res.Partition
		if res.Error != nil {
			code, msg := errorCodeOf(res.Error, kerr.UnknownServerError)
			rp.ErrorCode, rp.ErrorMessage = code.Code, strp(msg)
		}
		resp.Topics[i].Partitions = append(resp.Topics[i].Partitions, rp)
	}
	return resp
}

// handleAlterPartitionReassignments sets (or, with null replicas,
// cancels) partitions' target replicas. The quorum adds the new replicas,
// waits until they are in the ISR, then moves leadership and removes the
// old ones.
func (b *Broker) handleAlterPartitionReassignments(r *kmsg.AlterPartitionAssignmentsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.AlterPartitionAssignmentsResponse)
	var req []controller.Reassignment
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			req = append(req, controller.Reassignment{Topic: t.Topic, Partition: p.Partition, Replicas: slices.Clone(p.Replicas)})
		}
	}
	ctx, cancel := b.adminContext()
	defer cancel()
	results, err := b.link.cl.Reassign(ctx, req)
	if err != nil {
		code, msg := errorCodeOf(err, kerr.UnknownServerError)
		resp.ErrorCode, resp.ErrorMessage = code.Code, strp(msg)
		return resp
	}
	byTopic := map[string]int{}
	for _, res := range results {
		i, ok := byTopic[res.Topic]
		if !ok {
			rt := kmsg.NewAlterPartitionAssignmentsResponseTopic()
			rt.Topic = res.Topic
			resp.Topics = append(resp.Topics, rt)
			i = len(resp.Topics) - 1
			byTopic[res.Topic] = i
		}
		rp := kmsg.NewAlterPartitionAssignmentsResponseTopicPartition()
		rp.Partition = res.Partition
		if res.Error != nil {
			code, msg := errorCodeOf(res.Error, kerr.UnknownServerError)
			rp.ErrorCode, rp.ErrorMessage = code.Code, strp(msg)
		}
		resp.Topics[i].Partitions = append(resp.Topics[i].Partitions, rp)
	}
	return resp
}

// handleListPartitionReassignments lists reassignments in progress (of the
// given partitions, or all).
func (b *Broker) handleListPartitionReassignments(r *kmsg.ListPartitionReassignmentsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListPartitionReassignmentsResponse)
	ctx, cancel := b.adminContext()
	defer cancel()
	list, err := b.link.cl.ListReassignments(ctx)
	if err != nil {
		code, msg := errorCodeOf(err, kerr.UnknownServerError)
		resp.ErrorCode, resp.ErrorMessage = code.Code, strp(msg)
		return resp
	}
	want := func(topic string, p int32) bool {
		if r.Topics == nil {
			return true
		}
		for _, t := range r.Topics {
			if t.Topic == topic && slices.Contains(t.Partitions, p) {
				return true
			}
		}
		return false
	}
	byTopic := map[string]int{}
	for _, st := range list {
		if !want(st.Topic, st.Partition) {
			continue
		}
		i, ok := byTopic[st.Topic]
		if !ok {
			rt := kmsg.NewListPartitionReassignmentsResponseTopic()
			rt.Topic = st.Topic
			resp.Topics = append(resp.Topics, rt)
			i = len(resp.Topics) - 1
			byTopic[st.Topic] = i
		}
		rp := kmsg.NewListPartitionReassignmentsResponseTopicPartition()
		rp.Partition = st.Partition
		rp.Replicas, rp.AddingReplicas, rp.RemovingReplicas = slices.Clone(st.Replicas), slices.Clone(st.AddingReplicas), slices.Clone(st.RemovingReplicas)
		resp.Topics[i].Partitions = append(resp.Topics[i].Partitions, rp)
	}
	return resp
}

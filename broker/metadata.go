package broker

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleMetadata answers from the broker's topic snapshot. Unknown topics
// are created when the request allows it (v4+) and auto-create-topics is on.
func (b *Broker) handleMetadata(r *kmsg.MetadataRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.MetadataResponse)
	rb := kmsg.NewMetadataResponseBroker()
	rb.NodeID, rb.Host, rb.Port = b.cfg.NodeID, b.advertiseHost, b.advertisePort
	if b.cfg.Rack != "" {
		rb.Rack = strp(b.cfg.Rack)
	}
	resp.Brokers = []kmsg.MetadataResponseBroker{rb}
	resp.ClusterID = strp(b.meta.clusterID)
	resp.ControllerID = b.cfg.NodeID

	if r.Topics == nil || (r.Version == 0 && len(r.Topics) == 0) {
		for _, t := range b.meta.sortedTopics() {
			resp.Topics = append(resp.Topics, b.metadataTopic(t))
		}
		return resp
	}
	autoCreate := b.cfg.AutoCreateTopics && (r.Version < 4 || r.AllowAutoTopicCreation)
	for _, rt := range r.Topics {
		if rt.Topic == nil || *rt.Topic == "" && rt.TopicID != ([16]byte{}) {
			t := b.meta.lookupID(rt.TopicID)
			if t == nil {
				st := kmsg.NewMetadataResponseTopic()
				st.TopicID = rt.TopicID
				st.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, st)
				continue
			}
			resp.Topics = append(resp.Topics, b.metadataTopic(t))
			continue
		}
		name := *rt.Topic
		t := b.meta.lookup(name)
		if t == nil {
			st := kmsg.NewMetadataResponseTopic()
			st.Topic = strp(name)
			if err := validateTopicName(name); err != nil {
				st.ErrorCode = kerr.InvalidTopicException.Code
				resp.Topics = append(resp.Topics, st)
				continue
			}
			if !autoCreate || isInternalTopic(name) {
				st.ErrorCode = kerr.UnknownTopicOrPartition.Code
				resp.Topics = append(resp.Topics, st)
				continue
			}
			var err error
			t, err = b.meta.createTopic(name, b.cfg.NumPartitions, nil)
			if errors.Is(err, errTopicExists) {
				t = b.meta.lookup(name) // created concurrently
			} else if err != nil {
				b.logger.Warn("auto-creating topic failed", "topic", name, "err", err)
				st.ErrorCode = kerr.InvalidTopicException.Code
				if !errors.Is(err, errTopicCollides) {
					st.ErrorCode = kerr.KafkaStorageError.Code
				}
				resp.Topics = append(resp.Topics, st)
				continue
			}
			if t == nil {
				st.ErrorCode = kerr.LeaderNotAvailable.Code
				resp.Topics = append(resp.Topics, st)
				continue
			}
		}
		resp.Topics = append(resp.Topics, b.metadataTopic(t))
	}
	return resp
}

func (b *Broker) metadataTopic(t *topic) kmsg.MetadataResponseTopic {
	st := kmsg.NewMetadataResponseTopic()
	st.Topic = strp(t.name)
	st.TopicID = t.id
	st.IsInternal = t.internal()
	self := []int32{b.cfg.NodeID}
	st.Partitions = make([]kmsg.MetadataResponseTopicPartition, 0, len(t.partitions))
	for _, p := range t.partitions {
		sp := kmsg.NewMetadataResponseTopicPartition()
		sp.Partition = p.index
		sp.Replicas = self
		if p.log.Offline() != nil {
			// The only replica is offline: no leader until it is repaired.
			sp.ErrorCode = kerr.LeaderNotAvailable.Code
			sp.Leader = -1
			sp.LeaderEpoch = p.epoch
			sp.ISR = []int32{}
			sp.OfflineReplicas = self
		} else {
			sp.Leader = b.cfg.NodeID
			sp.LeaderEpoch = p.epoch
			sp.ISR = self
		}
		st.Partitions = append(st.Partitions, sp)
	}
	return st
}

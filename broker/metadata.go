package broker

import (
	"net"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/vigilhq/vigil/controller"
)

// handleMetadata answers from the broker's copy of the metadata image.
// Unknown topics are created (through the quorum) when the request allows
// it (v4+) and auto-create-topics is on.
func (b *Broker) handleMetadata(r *kmsg.MetadataRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.MetadataResponse)
	set := b.meta.topics.Load()
	resp.Brokers = b.metadataBrokers(set)
	resp.ClusterID = strp(b.meta.clusterIDNow())
	// Clients send controller requests (CreateTopics, ...) to the
	// "controller"; every broker forwards them to the quorum, so this one
	// will do, as KRaft brokers answer.
	resp.ControllerID = b.cfg.NodeID

	if r.Topics == nil || (r.Version == 0 && len(r.Topics) == 0) {
		for _, t := range b.meta.sortedTopics() {
			resp.Topics = append(resp.Topics, b.metadataTopic(t, set))
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
			resp.Topics = append(resp.Topics, b.metadataTopic(t, set))
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
			if err := b.checkNameCollision(name); err != nil {
				st.ErrorCode = kerr.InvalidTopicException.Code
				resp.Topics = append(resp.Topics, st)
				continue
			}
			ctx, cancel := b.adminContext()
			var err error
			t, err = b.createTopic(ctx, controller.CreateTopic{Name: name, Partitions: b.cfg.NumPartitions, ReplicationFactor: b.cfg.DefaultReplicationFactor})
			cancel()
			if err != nil {
				code, msg := errorCodeOf(err, kerr.LeaderNotAvailable)
				b.logger.Warn("auto-creating topic failed", "topic", name, "err", msg)
				st.ErrorCode = code.Code
				resp.Topics = append(resp.Topics, st)
				continue
			}
		}
		resp.Topics = append(resp.Topics, b.metadataTopic(t, set))
	}
	return resp
}

// metadataBrokers lists the brokers clients may use: those alive in the
// image, as KRaft brokers list the unfenced ones.
func (b *Broker) metadataBrokers(set *topicSet) []kmsg.MetadataResponseBroker {
	var out []kmsg.MetadataResponseBroker
	ids := make([]int32, 0, len(set.brokers))
	for id := range set.brokers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		br := set.brokers[id]
		if !br.Alive() && id != b.cfg.NodeID {
			continue
		}
		host, port, ok := splitEndpoint(br.Endpoint)
		if !ok {
			continue
		}
		rb := kmsg.NewMetadataResponseBroker()
		rb.NodeID, rb.Host, rb.Port = id, host, port
		if br.Rack != "" {
			rb.Rack = strp(br.Rack)
		}
		out = append(out, rb)
	}
	if len(out) == 0 {
		// Before the first image: this broker alone.
		rb := kmsg.NewMetadataResponseBroker()
		rb.NodeID, rb.Host, rb.Port = b.cfg.NodeID, b.advertiseHost, b.advertisePort
		if b.cfg.Rack != "" {
			rb.Rack = strp(b.cfg.Rack)
		}
		out = append(out, rb)
	}
	return out
}

// splitEndpoint splits a host:port endpoint.
func splitEndpoint(ep string) (string, int32, bool) {
	host, portStr, err := net.SplitHostPort(ep)
	if err != nil {
		return "", 0, false
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, false
	}
	return host, int32(port), true
}

func (b *Broker) metadataTopic(t *topic, set *topicSet) kmsg.MetadataResponseTopic {
	st := kmsg.NewMetadataResponseTopic()
	st.Topic = strp(t.name)
	st.TopicID = t.id
	st.IsInternal = t.internal()
	st.Partitions = make([]kmsg.MetadataResponseTopicPartition, 0, len(t.partitions))
	for _, p := range t.partitions {
		sp := kmsg.NewMetadataResponseTopicPartition()
		sp.Partition = p.index
		ps := p.state.Load()
		if ps == nil {
			sp.ErrorCode, sp.Leader = kerr.LeaderNotAvailable.Code, -1
			st.Partitions = append(st.Partitions, sp)
			continue
		}
		sp.Leader, sp.LeaderEpoch = ps.Leader, ps.LeaderEpoch
		sp.Replicas = slices.Clone(ps.Replicas)
		sp.ISR = slices.Clone(ps.ISR)
		sp.OfflineReplicas = []int32{}
		for _, r := range ps.Replicas {
			if br := set.brokers[r]; br == nil || !br.Alive() {
				sp.OfflineReplicas = append(sp.OfflineReplicas, r)
			}
		}
		if ps.Leader == b.cfg.NodeID && p.log != nil && p.log.Offline() != nil {
			// This broker's replica hit a disk error: it cannot lead
			// until it is repaired.
			sp.Leader = -1
			sp.OfflineReplicas = appendUnique(sp.OfflineReplicas, b.cfg.NodeID)
		}
		if sp.Leader < 0 {
			sp.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		st.Partitions = append(st.Partitions, sp)
	}
	return st
}

func appendUnique(xs []int32, x int32) []int32 {
	if slices.Contains(xs, x) {
		return xs
	}
	return append(xs, x)
}

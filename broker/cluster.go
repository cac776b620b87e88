package broker

import (
	"context"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleInitProducerID hands an idempotent producer a new producer id at
// epoch 0. Transactional ids need the transaction coordinator, which does
// not exist yet; such requests are refused.
func (b *Broker) handleInitProducerID(r *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if r.TransactionalID != nil {
		resp.ErrorCode = kerr.InvalidRequest.Code
		b.logger.Info("refused InitProducerId with a transactional id: transactions are not supported yet",
			"transactional_id", *r.TransactionalID)
		return resp
	}
	ctx, cancel := b.adminContext()
	defer cancel()
	id, err := b.pids.allocate(ctx, b)
	if err != nil {
		b.logger.Error("allocating a producer id failed", "err", err)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp
}

// pidAllocator hands out producer ids from blocks the controller quorum
// reserves for this broker, so ids are unique across the cluster and
// restarts (Kafka's AllocateProducerIds).
type pidAllocator struct {
	mu          sync.Mutex
	nextID, end int64
}

func (a *pidAllocator) allocate(ctx context.Context, b *Broker) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nextID >= a.end {
		blk, err := b.link.cl.AllocateProducerIDs(ctx, b.cfg.NodeID, b.link.brokerEpoch())
		if err != nil {
			return 0, err
		}
		a.nextID, a.end = blk.FirstID, blk.FirstID+blk.Count
	}
	id := a.nextID
	a.nextID++
	return id, nil
}

// handleDescribeCluster describes the brokers of the cluster (those alive
// in the image).
func (b *Broker) handleDescribeCluster(r *kmsg.DescribeClusterRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.EndpointType = r.EndpointType
	if r.Version >= 1 && r.EndpointType != 1 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		resp.ErrorMessage = strp("only broker endpoints (type 1) can be described")
		return resp
	}
	resp.ClusterID = b.meta.clusterIDNow()
	resp.ControllerID = b.cfg.NodeID
	for _, mb := range b.metadataBrokers(b.meta.topics.Load()) {
		rb := kmsg.NewDescribeClusterResponseBroker()
		rb.NodeID, rb.Host, rb.Port, rb.Rack = mb.NodeID, mb.Host, mb.Port, mb.Rack
		resp.Brokers = append(resp.Brokers, rb)
	}
	return resp
}

// handleDescribeLogDirs reports the data directory and the size of every
// (requested) partition in it.
func (b *Broker) handleDescribeLogDirs(r *kmsg.DescribeLogDirsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	dir := kmsg.NewDescribeLogDirsResponseDir()
	dir.Dir, _ = filepath.Abs(b.cfg.DataDir)
	var fs syscall.Statfs_t
	if err := syscall.Statfs(b.cfg.DataDir, &fs); err == nil {
		dir.TotalBytes = int64(fs.Blocks) * fs.Bsize
		dir.UsableBytes = int64(fs.Bavail) * fs.Bsize
	} else {
		dir.TotalBytes, dir.UsableBytes = -1, -1
	}
	add := func(t *topic, parts []*partition) {
		dt := kmsg.NewDescribeLogDirsResponseDirTopic()
		dt.Topic = t.name
		for _, p := range parts {
			if p.log == nil {
				continue // not hosted here
			}
			dp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
			dp.Partition = p.index
			dp.Size = p.log.Size()
			dt.Partitions = append(dt.Partitions, dp)
		}
		if len(dt.Partitions) > 0 {
			dir.Topics = append(dir.Topics, dt)
		}
	}
	if r.Topics == nil {
		for _, t := range b.meta.sortedTopics() {
			add(t, t.partitions)
		}
	} else {
		for _, rt := range r.Topics {
			t := b.meta.lookup(rt.Topic)
			if t == nil {
				continue // Kafka omits partitions it does not host
			}
			var parts []*partition
			for _, i := range rt.Partitions {
				if p := t.partition(i); p != nil {
					parts = append(parts, p)
				}
			}
			add(t, parts)
		}
	}
	resp.Dirs = []kmsg.DescribeLogDirsResponseDir{dir}
	return resp
}

// handleDescribeProducers reports each partition's idempotent producers.
func (b *Broker) handleDescribeProducers(r *kmsg.DescribeProducersRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewDescribeProducersResponseTopic()
		st.Topic = rt.Topic
		t := b.meta.lookup(rt.Topic)
		for _, i := range rt.Partitions {
			sp := kmsg.NewDescribeProducersResponseTopicPartition()
			sp.Partition = i
			switch p := t.partition(i); {
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				if sp.ErrorCode = leaderError(p, -1); sp.ErrorCode != 0 {
					break
				}
				for _, pi := range p.log.Producers() {
					ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
					ap.ProducerID = pi.ProducerID
					ap.ProducerEpoch = int32(pi.Epoch)
					ap.LastSequence = pi.LastSequence
					ap.LastTimestamp = pi.LastTimestamp
					ap.CoordinatorEpoch = pi.CoordinatorEpoch
					ap.CurrentTxnStartOffset = pi.TxnStartOffset
					sp.ActiveProducers = append(sp.ActiveProducers, ap)
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

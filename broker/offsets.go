package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Special timestamps of ListOffsets.
const (
	listLatest        = -1
	listEarliest      = -2
	listMaxTimestamp  = -3 // v7+ (KIP-734)
	listEarliestLocal = -4 // v8+ (KIP-1005)
	listLatestTiered  = -5 // v9+ (KIP-1005)
)

// handleListOffsets answers earliest, latest, max-timestamp and by-timestamp
// lookups. Without transactions the last stable offset equals the high
// watermark, so both isolation levels see the same latest offset.
func (b *Broker) handleListOffsets(r *kmsg.ListOffsetsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		t := b.meta.lookup(rt.Topic)
		seen := map[int32]int{}
		for _, rp := range rt.Partitions {
			seen[rp.Partition]++
		}
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset = -1, -1
			switch p := t.partition(rp.Partition); {
			case seen[rp.Partition] > 1:
				sp.ErrorCode = kerr.InvalidRequest.Code
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				sp.ErrorCode = leaderError(p, rp.CurrentLeaderEpoch)
				if sp.ErrorCode == 0 {
					b.listOffset(r.Version, p, rp, &sp)
				}
			}
			if r.Version == 0 && sp.ErrorCode == 0 && sp.Offset >= 0 {
				if rp.MaxNumOffsets > 0 {
					sp.OldStyleOffsets = []int64{sp.Offset}
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) listOffset(version int16, p *partition, rp kmsg.ListOffsetsRequestTopicPartition, sp *kmsg.ListOffsetsResponseTopicPartition) {
	sp.LeaderEpoch = p.leaderEpoch()
	switch ts := rp.Timestamp; {
	case ts == listLatest:
		// Consumers see up to the high watermark.
		sp.Offset = p.log.HighWatermark()
	case ts == listEarliest || ts == listEarliestLocal && version >= 8:
		sp.Offset = p.log.StartOffset()
	case ts == listLatestTiered && version >= 9:
		// Nothing is tiered yet: there is no latest tiered offset.
		sp.Offset = -1
	case ts == listMaxTimestamp && version >= 7:
		mts, off, err := p.log.MaxTimestamp()
		if err != nil {
			sp.ErrorCode, _ = p.errorCode(err)
			return
		}
		sp.Timestamp, sp.Offset = mts, off
	case ts < 0:
		sp.ErrorCode = kerr.InvalidRequest.Code
	default:
		off, found, ok, err := p.log.OffsetForTimestamp(ts)
		if err != nil {
			sp.ErrorCode, _ = p.errorCode(err)
			return
		}
		if ok {
			sp.Offset, sp.Timestamp = off, found
		}
	}
}

// handleOffsetForLeaderEpoch answers the end offset of a leader epoch, used
// by clients to detect log truncation after a leader change (KIP-320).
func (b *Broker) handleOffsetForLeaderEpoch(r *kmsg.OffsetForLeaderEpochRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		t := b.meta.lookup(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LeaderEpoch, sp.EndOffset = -1, -1
			switch p := t.partition(rp.Partition); {
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				if sp.ErrorCode = leaderError(p, rp.CurrentLeaderEpoch); sp.ErrorCode == 0 {
					sp.LeaderEpoch, sp.EndOffset = p.log.EndOffsetForEpoch(rp.LeaderEpoch)
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// handleDeleteRecords moves log start offsets. Offset -1 means the high
// watermark (delete everything).
func (b *Broker) handleDeleteRecords(r *kmsg.DeleteRecordsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		t := b.meta.lookup(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LowWatermark = -1
			switch p := t.partition(rp.Partition); {
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case t.internal():
				sp.ErrorCode = kerr.PolicyViolation.Code
			default:
				if sp.ErrorCode = leaderError(p, -1); sp.ErrorCode != 0 {
					break
				}
				off := rp.Offset
				if off == -1 {
					off = p.log.HighWatermark()
				}
				if off < 0 || off > p.log.HighWatermark() {
					sp.ErrorCode = kerr.OffsetOutOfRange.Code
					break
				}
				low, err := p.log.DeleteRecordsBefore(off)
				if err != nil {
					sp.ErrorCode, _ = p.errorCode(err)
					break
				}
				sp.LowWatermark = low
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

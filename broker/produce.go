package broker

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	vlog "github.com/vigilhq/vigil/broker/log"
)

// handleProduce appends each partition's record batches to its log. The
// batches are validated and stored whole (see broker/log); records are not
// decoded here (the log engine decodes them only on compacted topics, to
// reject records without a key with INVALID_RECORD).
//
// acks=0 gets no response; if any partition failed the connection is closed
// so the client refreshes its metadata, as Kafka does. acks=1 answers once
// the log has the batch (and has fsynced it if the topic's flush policy says
// so). acks=-1 (all) additionally requires min.insync.replicas in-sync
// replicas; on a single broker that is one, so a topic asking for more gets
// NOT_ENOUGH_REPLICAS.
func (b *Broker) handleProduce(c *conn, r *kmsg.ProduceRequest) (kmsg.Response, func(), error) {
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	failed := false
	validAcks := r.Acks == 0 || r.Acks == 1 || r.Acks == -1
	for i := range r.Topics {
		rt := &r.Topics[i]
		var t *topic
		if r.Version >= 13 {
			t = b.meta.lookupID(rt.TopicID)
		} else {
			t = b.meta.lookup(rt.Topic)
		}
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, 0, len(rt.Partitions))
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset = -1
			sp.LogAppendTime = -1
			sp.LogStartOffset = -1
			code, msg := b.producePartition(r, t, rp, &sp, validAcks)
			if code != 0 {
				failed = true
				sp.ErrorCode = code
				if msg != "" {
					sp.ErrorMessage = strp(msg)
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	if r.Acks == 0 {
		if failed {
			return nil, nil, errCloseConn
		}
		return nil, nil, nil
	}
	return resp, nil, nil
}

func (b *Broker) producePartition(r *kmsg.ProduceRequest, t *topic, rp *kmsg.ProduceRequestTopicPartition, sp *kmsg.ProduceResponseTopicPartition, validAcks bool) (int16, string) {
	if t == nil {
		if r.Version >= 13 {
			return kerr.UnknownTopicID.Code, "unknown topic id"
		}
		return kerr.UnknownTopicOrPartition.Code, ""
	}
	p := t.partition(rp.Partition)
	if p == nil {
		return kerr.UnknownTopicOrPartition.Code, ""
	}
	if !validAcks {
		return kerr.InvalidRequiredAcks.Code, "acks must be 0, 1 or -1 (all)"
	}
	if r.TransactionID != nil {
		return kerr.InvalidRequest.Code, "transactional produce is not supported by this broker yet"
	}
	if t.internal() {
		return kerr.InvalidTopicException.Code, "producing to internal topics is not allowed"
	}
	if r.Acks == -1 {
		if need := minInsyncReplicas(t.configs, b.cfg.TopicDefaults); need > 1 {
			return kerr.NotEnoughReplicas.Code, "min.insync.replicas is larger than the one in-sync replica of a single-broker cluster"
		}
	}
	if len(rp.Records) == 0 {
		return kerr.InvalidRecord.Code, "no record batch: a produce request needs one for each partition" // as Kafka
	}
	info, err := p.log.Append(rp.Records, p.epoch)
	if err != nil {
		// Records rejected one by one (keyless records on a compacted
		// topic): Kafka lists them in the response (v8+).
		var ire *vlog.InvalidRecordsError
		if errors.As(err, &ire) {
			for _, re := range ire.Records {
				er := kmsg.NewProduceResponseTopicPartitionErrorRecord()
				er.RelativeOffset, er.ErrorMessage = re.Index, strp(re.Message)
				sp.ErrorRecords = append(sp.ErrorRecords, er)
			}
		}
		return p.errorCode(err) // the log itself logs going offline, once
	}
	sp.BaseOffset = info.BaseOffset
	sp.LogAppendTime = info.LogAppendTime
	sp.LogStartOffset = info.LogStartOffset
	if !info.Duplicate {
		p.notify()
	}
	return 0, ""
}

package broker

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	vlog "github.com/vigilhq/vigil/broker/log"
)

// handleProduce appends each partition's record batches to its log. The
// batches are validated and stored whole (see broker/log); records are not
// decoded here (the log engine decodes them only on compacted topics, to
// reject records without a key with INVALID_RECORD).
//
// Only the partition's leader takes writes; a produce to another broker
// gets NOT_LEADER_OR_FOLLOWER with the current leader and its endpoint
// (KIP-951, v10+), so the client need not refresh all its metadata.
//
// acks=0 gets no response; if any partition failed the connection is closed
// so the client refreshes its metadata, as Kafka does. acks=1 answers once
// the leader's log has the batch (and has fsynced it if the topic's flush
// policy says so). acks=-1 (all) needs at least min.insync.replicas
// in-sync replicas before the append (NOT_ENOUGH_REPLICAS otherwise) and
// answers once every in-sync replica has the batch (the high watermark
// passed it), or with REQUEST_TIMED_OUT after the request's timeout; if
// the ISR shrank below min.insync.replicas meanwhile, the answer is
// NOT_ENOUGH_REPLICAS_AFTER_APPEND. An idempotent producer's retry of a
// batch that was appended is recognised and answered with its offsets.
func (b *Broker) handleProduce(c *conn, r *kmsg.ProduceRequest) (kmsg.Response, func(), error) {
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	failed := false
	validAcks := r.Acks == 0 || r.Acks == 1 || r.Acks == -1
	var waits []replicationWait
	leaders := map[int32]bool{}
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
			span, appendStart := b.traceProduce(c, t, rt, rp)
			code, msg, wait := b.producePartition(r, t, rp, &sp, validAcks)
			if span != nil {
				b.tracing.child(span, "append", appendStart, time.Now())
				span.SetAttributes(attribute.Int64("messaging.kafka.offset", sp.BaseOffset))
				setError(span, code)
			}
			if wait != nil {
				wait.topic, wait.index, wait.span = len(resp.Topics), len(st.Partitions), span
				waits = append(waits, *wait)
			}
			if code == kerr.NotLeaderForPartition.Code && t != nil {
				b.nameLeader(t.partition(rp.Partition), &sp, leaders)
			}
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
	deadline := time.Now().Add(time.Duration(max(r.TimeoutMillis, 0)) * time.Millisecond)
	for _, w := range waits {
		if w.p.log.HighWatermark() < w.target {
			// Answered once the in-sync replicas have the records, by
			// the connection's answerer while the connection reads on
			// (see conn).
			c.x.await = func() {
				b.awaitReplicated(c, resp, waits, leaders, deadline)
				resp.Brokers = b.produceEndpoints(leaders)
			}
			return resp, nil, nil
		}
	}
	if len(waits) > 0 {
		// Replicated already (no other in-sync replica): the checks only.
		b.awaitReplicated(c, resp, waits, leaders, deadline)
	}
	resp.Brokers = b.produceEndpoints(leaders)
	return resp, nil, nil
}

// awaitReplicated waits until the in-sync replicas have every acks=all
// append of a produce request, or its timeout passes, and sets the error
// of each partition that failed.
func (b *Broker) awaitReplicated(c *conn, resp *kmsg.ProduceResponse, waits []replicationWait, leaders map[int32]bool, deadline time.Time) {
	expired, stop := closeAfter(time.Until(deadline)) // one timer for all the partitions
	defer stop()
	for _, w := range waits {
		start := time.Now()
		code := w.p.waitReplicated(c.ctx.Done(), expired, w.target, w.minISR)
		if w.span != nil {
			b.tracing.child(w.span, "replicate", start, time.Now(), attribute.Int("vigil.min_insync_replicas", w.minISR))
			setError(w.span, code)
		}
		if code == 0 {
			continue
		}
		if c.ctx.Err() != nil {
			code = kerr.NotLeaderForPartition.Code // shutting down: try the new leader
		}
		sp := &resp.Topics[w.topic].Partitions[w.index]
		sp.ErrorCode = code
		if code == kerr.NotLeaderForPartition.Code {
			// The leadership moved while the append waited for the
			// in-sync replicas.
			b.nameLeader(w.p, sp, leaders)
		}
	}
}

// traceProduce starts the span of one partition of a produce request (nil
// when tracing is off or the request not sampled), with its receive stage
// done, and returns when its append starts. The span ends when the
// response is written.
func (b *Broker) traceProduce(c *conn, t *topic, rt *kmsg.ProduceRequestTopic, rp *kmsg.ProduceRequestTopicPartition) (trace.Span, time.Time) {
	if b.tracing == nil {
		return nil, time.Time{}
	}
	name := rt.Topic
	if t != nil {
		name = t.name
	}
	span := b.tracing.start("produce", name, trace.SpanKindServer, c.x.timing.arrived, rp.Records)
	if span == nil {
		return nil, time.Time{}
	}
	span.SetAttributes(messaging("send", name, rp.Partition, c.x.req.clientID)...)
	b.tracing.child(span, "receive", c.x.timing.arrived, c.x.timing.read)
	c.x.spans = append(c.x.spans, span)
	return span, time.Now()
}

// nameLeader fills a NOT_LEADER_OR_FOLLOWER answer for p with its current
// leader and epoch (KIP-951), and adds the leader to those whose endpoints
// the response lists, so the client moves there without refreshing its
// metadata. A partition with no leader, or still led here as far as this
// broker knows (it is shutting down and has not seen the move yet), names
// none: the client refreshes its metadata.
func (b *Broker) nameLeader(p *partition, sp *kmsg.ProduceResponseTopicPartition, leaders map[int32]bool) {
	if p == nil {
		return
	}
	st := p.state.Load()
	if st == nil || st.Leader < 0 || st.Leader == b.cfg.NodeID {
		return
	}
	sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = st.Leader, st.LeaderEpoch
	leaders[st.Leader] = true
}

// replicationWait is an acks=all append waiting for the in-sync replicas.
type replicationWait struct {
	p            *partition
	target       int64 // the high watermark that covers the append
	minISR       int
	topic, index int        // where its answer is in the response
	span         trace.Span // the partition's produce span, if traced
}

// produceEndpoints returns the endpoints of the given leaders (KIP-951).
func (b *Broker) produceEndpoints(ids map[int32]bool) []kmsg.ProduceResponseBroker {
	var out []kmsg.ProduceResponseBroker
	for id := range ids {
		br := b.meta.broker(id)
		if br == nil {
			continue
		}
		host, port, ok := splitEndpoint(br.Endpoint)
		if !ok {
			continue
		}
		e := kmsg.NewProduceResponseBroker()
		e.NodeID, e.Host, e.Port = id, host, port
		if br.Rack != "" {
			e.Rack = strp(br.Rack)
		}
		out = append(out, e)
	}
	return out
}

// producePartition appends one partition's batches. For acks=all it
// returns the wait for the in-sync replicas (nil otherwise, or on error).
func (b *Broker) producePartition(r *kmsg.ProduceRequest, t *topic, rp *kmsg.ProduceRequestTopicPartition, sp *kmsg.ProduceResponseTopicPartition, validAcks bool) (int16, string, *replicationWait) {
	if t == nil {
		if r.Version >= 13 {
			return kerr.UnknownTopicID.Code, "unknown topic id", nil
		}
		return kerr.UnknownTopicOrPartition.Code, "", nil
	}
	p := t.partition(rp.Partition)
	if p == nil {
		return kerr.UnknownTopicOrPartition.Code, "", nil
	}
	if !validAcks {
		return kerr.InvalidRequiredAcks.Code, "acks must be 0, 1 or -1 (all)", nil
	}
	if r.TransactionID != nil {
		return kerr.InvalidRequest.Code, "transactional produce is not supported by this broker yet", nil
	}
	if t.internal() {
		return kerr.InvalidTopicException.Code, "producing to internal topics is not allowed", nil
	}
	if code := leaderError(p, -1); code != 0 {
		if code == kerr.NotLeaderForPartition.Code {
			return code, "this broker does not lead the partition; its leader is broker " + itoa(p.leaderID()), nil
		}
		return code, "", nil
	}
	minISR := minInsyncReplicas(t.configs, b.cfg.TopicDefaults)
	if r.Acks == -1 {
		if st := p.state.Load(); len(st.ISR) < minISR {
			return kerr.NotEnoughReplicas.Code, fmt.Sprintf("the partition has %d in-sync replicas %v; min.insync.replicas is %d", len(st.ISR), st.ISR, minISR), nil
		}
	}
	if len(rp.Records) == 0 {
		return kerr.InvalidRecord.Code, "no record batch: a produce request needs one for each partition", nil // as Kafka
	}
	start := time.Now()
	info, err := p.appendAsLeader(rp.Records)
	b.storage.append.Observe(time.Since(start).Seconds())
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
		code, msg := p.errorCode(err) // the log itself logs going offline, once
		return code, msg, nil
	}
	sp.BaseOffset = info.BaseOffset
	sp.LogAppendTime = info.LogAppendTime
	sp.LogStartOffset = info.LogStartOffset
	if !info.Duplicate {
		p.maybeAdvanceHW() // wakes every fetch if it moved
		p.notifyAppended()
		if m := b.reqMetrics; m != nil {
			m.produced(p, len(rp.Records), info.LastOffset-info.BaseOffset+1)
		}
	}
	if r.Acks == -1 {
		return 0, "", &replicationWait{p: p, target: info.LastOffset + 1, minISR: minISR}
	}
	return 0, "", nil
}

package broker

import (
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Fetch sessions (KIP-227): this broker does not keep session state. A
// full fetch (epoch 0, or -1 to close the session it names) is served with
// session id 0, which tells the client no session was created, so it keeps
// sending full fetch requests — the same answer Kafka gives when its session
// cache is full, and one every client handles. An incremental fetch (any
// other epoch) names a session the broker does not have and gets
// FETCH_SESSION_ID_NOT_FOUND, as from Kafka, after which clients fall back
// to a full fetch.

// noRecords is the record set of a partition with nothing to return.
var noRecords = []byte{}

// fetchReadMax caps what one fetch reads from one partition (unless its
// first batch is larger, which is returned whole). A client that allows
// more per partition gets the rest in its next fetch, as it would at the
// end of a segment. Reads then fit one pooled buffer size, so they never
// allocate (and zero) a buffer in steady state, and a read's bytes are
// still in the CPU cache when their CRC is checked and when they are
// written to the socket.
const fetchReadMax = 1 << 20

// fetchPart is one partition of a fetch request, resolved.
type fetchPart struct {
	rp      *kmsg.FetchRequestTopicPartition
	p       *partition
	errCode int16 // set when the partition could not be resolved
	out     *kmsg.FetchResponseTopicPartition
	buf     *[]byte
	// diverged is set for a follower whose log went another way: the
	// answer carries the diverging epoch and no records.
	diverged bool
	// throttled is set for a replica a reassignment is adding (see
	// throttle.go): its reads take grants from the reassignment throttle.
	// granted is the grant behind buf; starved is set when the last read
	// got no grant.
	throttled bool
	granted   int
	starved   bool
}

// handleFetch reads whole batches from each requested partition, waiting up
// to MaxWaitMillis (woken by appends and high watermark moves, never
// polling) until MinBytes are available. The response never exceeds
// MaxBytes except that the first partition with data always returns at
// least one whole batch (KIP-74).
//
// Only leaders serve fetches. A consumer reads up to the high watermark; a
// follower (the request names a replica id) reads up to the log end, and
// its fetch offset tells the leader how far its log is, which advances the
// high watermark and the ISR (replication.go). A follower whose last
// fetched epoch ends earlier in the leader's log than it thinks gets the
// diverging epoch (KIP-320) and truncates. A fetch sent to a broker that
// does not lead a partition gets NOT_LEADER_OR_FOLLOWER with the current
// leader (KIP-951).
func (b *Broker) handleFetch(c *conn, r *kmsg.FetchRequest) (kmsg.Response, func(), error) {
	resp := r.ResponseKind().(*kmsg.FetchResponse)
	if r.Version >= 7 && r.SessionEpoch != 0 && r.SessionEpoch != -1 {
		// Incremental: it names a session this broker never created.
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return resp, nil, nil
	}
	replica := r.ReplicaID
	if r.Version >= 15 {
		replica = r.ReplicaState.ID
	}
	now := time.Now()
	leaders := map[int32]bool{}

	var parts []fetchPart
	resp.Topics = make([]kmsg.FetchResponseTopic, len(r.Topics))
	for i := range r.Topics {
		rt := &r.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var t *topic
		if r.Version >= 13 {
			t = b.meta.lookupID(rt.TopicID)
		} else {
			t = b.meta.lookup(rt.Topic)
		}
		st.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			*sp = kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			fp := fetchPart{rp: rp, out: sp}
			switch p := t.partition(rp.Partition); {
			case t == nil && r.Version >= 13:
				fp.errCode = kerr.UnknownTopicID.Code
			case p == nil:
				fp.errCode = kerr.UnknownTopicOrPartition.Code
			default:
				fp.p = p
				fp.errCode = leaderError(p, rp.CurrentLeaderEpoch)
				if fp.errCode == kerr.NotLeaderForPartition.Code || fp.errCode == kerr.FencedLeaderEpoch.Code {
					sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = p.leaderID(), p.leaderEpoch()
					leaders[p.leaderID()] = true
				}
				if fp.errCode == 0 && replica >= 0 {
					fp.errCode, fp.diverged = b.followerFetch(p, replica, rp, sp, now)
					fp.throttled = fp.errCode == 0 && !fp.diverged && p.reassignmentThrottled(replica)
				}
			}
			parts = append(parts, fp)
		}
	}
	resp.Brokers = b.fetchEndpoints(leaders)
	release := func() {
		for i := range parts {
			// A grant not settled (a fetch that failed before its
			// answer) goes back.
			if parts[i].granted > 0 {
				b.reassignThrottle.settle(parts[i].granted, 0)
				parts[i].granted = 0
			}
			putBuf(parts[i].buf)
			parts[i].buf = nil
		}
	}

	maxBytes := int(r.MaxBytes)
	if r.Version < 3 || maxBytes <= 0 {
		maxBytes = int(^uint(0) >> 1)
	}
	wait := time.Duration(r.MaxWaitMillis) * time.Millisecond
	var (
		wake     chan struct{}
		timer    *time.Timer
		deadline = time.Now().Add(wait)
	)
	defer func() {
		if wake != nil {
			for i := range parts {
				if parts[i].p != nil {
					parts[i].p.removeWaiter(wake)
				}
			}
		}
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		total, errored, starved := b.readFetch(parts, maxBytes, replica >= 0)
		if total >= int(r.MinBytes) || errored || wait <= 0 || c.ctx.Err() != nil {
			break
		}
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		if starved {
			// Read again once the reassignment throttle can grant.
			left = min(left, max(b.reassignThrottle.delay(), time.Millisecond))
		}
		if wake == nil {
			// Register, then read once more: an append between the read
			// above and the registration is not missed.
			wake = make(chan struct{}, 1)
			for i := range parts {
				if parts[i].p != nil {
					parts[i].p.addWaiter(wake, replica >= 0)
				}
			}
			continue
		}
		if timer == nil {
			timer = time.NewTimer(left)
		} else {
			timer.Reset(left)
		}
		waitStart := time.Now()
		select {
		case <-wake:
		case <-timer.C:
		case <-c.ctx.Done():
		}
		c.x.timing.remote += time.Since(waitStart)
	}
	for i := range parts {
		fp := &parts[i]
		if !fp.throttled {
			continue
		}
		sent := len(fp.out.RecordBatches)
		b.reassignThrottle.settle(fp.granted, sent)
		fp.granted = 0
		b.throttledBytes.Add(float64(sent))
		if fp.starved {
			b.throttledReads.Inc()
		}
	}
	if m := b.reqMetrics; m != nil && replica < 0 {
		for i := range parts {
			if parts[i].buf != nil {
				m.fetched(parts[i].p, *parts[i].buf)
			}
		}
	}
	if b.tracing != nil {
		b.traceFetch(c, parts, replica)
	}
	return resp, release, nil
}

// traceFetch starts a span for each partition of a fetch that returns
// records, joined to their traces; they end when the response is written.
// A follower's fetch is the replication of the records, a consumer's
// their delivery.
func (b *Broker) traceFetch(c *conn, parts []fetchPart, replica int32) {
	name, op := "fetch", "receive"
	if replica >= 0 {
		name, op = "replicate", "replicate"
	}
	for i := range parts {
		fp := &parts[i]
		if fp.buf == nil || len(*fp.buf) == 0 {
			continue
		}
		span := b.tracing.start(name, fp.p.topic, trace.SpanKindServer, c.x.timing.arrived, *fp.buf)
		if span == nil {
			continue
		}
		span.SetAttributes(messaging(op, fp.p.topic, fp.p.index, c.x.req.clientID)...)
		if replica >= 0 {
			span.SetAttributes(attribute.Int("vigil.follower", int(replica)))
		}
		span.SetAttributes(attribute.Int64("messaging.kafka.offset", fp.rp.FetchOffset))
		c.x.spans = append(c.x.spans, span)
	}
}

// followerFetch records a follower's fetch and checks its log against the
// leader's: when the follower's last fetched epoch ends before its fetch
// offset here (or is unknown here), it gets the diverging epoch and
// truncates (KIP-320).
func (b *Broker) followerFetch(p *partition, replica int32, rp *kmsg.FetchRequestTopicPartition, sp *kmsg.FetchResponseTopicPartition, now time.Time) (int16, bool) {
	if rp.LastFetchedEpoch >= 0 {
		epoch, end := p.log.EndOffsetForEpoch(rp.LastFetchedEpoch)
		if end < rp.FetchOffset || epoch < rp.LastFetchedEpoch {
			sp.DivergingEpoch.Epoch, sp.DivergingEpoch.EndOffset = epoch, end
			if epoch < 0 || end < 0 {
				// Nothing in common is known: start from scratch.
				sp.DivergingEpoch.Epoch, sp.DivergingEpoch.EndOffset = 0, p.log.StartOffset()
			}
			return 0, true
		}
	}
	if !p.updateFollower(replica, rp.FetchOffset, now) {
		return kerr.NotLeaderForPartition.Code, false
	}
	return 0, false
}

// fetchEndpoints returns the endpoints of the given leaders (KIP-951).
func (b *Broker) fetchEndpoints(ids map[int32]bool) []kmsg.FetchResponseBroker {
	var out []kmsg.FetchResponseBroker
	for _, e := range b.produceEndpoints(ids) {
		fb := kmsg.NewFetchResponseBroker()
		fb.NodeID, fb.Host, fb.Port, fb.Rack = e.NodeID, e.Host, e.Port, e.Rack
		out = append(out, fb)
	}
	return out
}

// readFetch reads every partition once (replacing earlier reads) and
// returns the bytes read, whether any partition has an error and whether
// the reassignment throttle held any partition back. A follower reads up
// to the log end, a consumer up to the high watermark.
func (b *Broker) readFetch(parts []fetchPart, maxBytes int, follower bool) (total int, errored, starved bool) {
	minOne := true
	for i := range parts {
		fp := &parts[i]
		putBuf(fp.buf)
		fp.buf = nil
		if fp.granted > 0 {
			// The earlier read is replaced: its grant goes back.
			b.reassignThrottle.settle(fp.granted, 0)
			fp.granted = 0
		}
		fp.starved = false
		sp := fp.out
		// Never null: librdkafka rejects a null record set.
		sp.RecordBatches = noRecords
		sp.ErrorCode = fp.errCode
		if fp.errCode != 0 {
			errored = true
			continue
		}
		p := fp.p
		if p.deleted.Load() {
			sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			errored = true
			continue
		}
		if err := p.log.Offline(); err != nil {
			sp.ErrorCode = kerr.KafkaStorageError.Code
			errored = true
			continue
		}
		hw := p.log.HighWatermark()
		sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = hw, hw, p.log.StartOffset()
		if fp.diverged {
			errored = true // answer at once
			continue
		}
		upTo := hw
		if follower {
			upTo = p.log.EndOffset()
		}
		limit := int(fp.rp.PartitionMaxBytes)
		if rem := maxBytes - total; rem < limit {
			limit = rem
		}
		if limit <= 0 && !minOne {
			continue
		}
		if fp.rp.FetchOffset == upTo {
			continue
		}
		// Read at most fetchReadMax bytes (more only for a larger first
		// batch): the pooled buffer then always fits.
		readMax := min(max(limit, 1), fetchReadMax)
		if fp.throttled {
			// At most the throttle's grant; a larger first batch is
			// still read whole (and becomes the throttle's debt).
			if fp.granted = b.reassignThrottle.take(readMax); fp.granted == 0 {
				fp.starved, starved = true, true
				continue
			}
			readMax = fp.granted
		}
		// Only the first partition with data may return a batch larger
		// than its limit: elsewhere such a batch is not even read.
		maxFirst := math.MaxInt
		if !minOne {
			maxFirst = limit
		}
		fp.buf = getBuf(readMax)
		info, err := p.log.ReadBounded(*fp.buf, fp.rp.FetchOffset, readMax, maxFirst, upTo)
		if err != nil {
			sp.ErrorCode, _ = p.errorCode(err)
			errored = true
			continue
		}
		*fp.buf = info.Records
		if len(info.Records) == 0 {
			continue
		}
		if !minOne && len(info.Records) > limit {
			// Only the first partition with data may exceed the limits.
			*fp.buf = info.Records[:0]
			continue
		}
		minOne = false
		sp.RecordBatches = info.Records
		sp.LogStartOffset = info.LogStartOffset
		total += len(info.Records)
	}
	return total, errored, starved
}

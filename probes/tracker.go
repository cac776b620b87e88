package probes

import (
	"sync"
	"time"
)

// seqTracker follows the probe records of one partition, by sequence
// number, from send through acknowledgement to consumption, and finds what
// the cluster did wrong with them:
//
//   - lost: acknowledged, but not consumed within the loss deadline of its
//     acknowledgement;
//   - duplicated: consumed at two different offsets (a consumer reading one
//     offset again, after a reset, is not a duplicate);
//   - reordered: consumed after a record that was sent only once it had
//     been acknowledged — the broker acknowledged it, then stored a later
//     record before it. Records in flight together may land in either
//     order without that counting.
//
// It is a pure state machine: the caller passes the time, so tests drive
// it with a fake clock. Memory is bounded: at most maxPending records
// between send and consumption, and a fixed window of the last ringSize
// sequence numbers consumed (duplicates older than that go unseen).
type seqTracker struct {
	mu         sync.Mutex
	deadline   time.Duration
	maxPending int
	next       uint64 // the last sequence number handed out
	pending    map[uint64]*sentRecord
	ring       [ringSize]consumedSeq
	hiSeq      uint64 // the highest sequence number consumed
	maxFloor   uint64 // the highest floor of the records consumed
	nextOffset int64  // the offset after the last record consumed, or -1
}

// ringSize is how many recent sequence numbers a tracker remembers the
// offsets of, for duplicate detection.
const ringSize = 1024

// sentRecord is a record sent and not yet both acknowledged and consumed.
type sentRecord struct {
	sentAt, ackedAt time.Time
	broker          int32
	// floor: every sequence number up to floor was acknowledged or had
	// failed when this record was sent.
	floor    uint64
	acked    bool
	consumed bool // consumed before its acknowledgement arrived
}

type consumedSeq struct {
	seq    uint64
	offset int64
}

func newSeqTracker(deadline time.Duration, maxPending int) *seqTracker {
	return &seqTracker{deadline: deadline, maxPending: maxPending, pending: map[uint64]*sentRecord{}, nextOffset: -1}
}

// send hands out the next sequence number for a record produced through
// broker at now; ok is false when maxPending records are already
// outstanding.
func (t *seqTracker) send(now time.Time, broker int32) (seq uint64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) >= t.maxPending {
		return 0, false
	}
	t.next++
	floor := t.next - 1
	for s, r := range t.pending {
		if !r.acked && s <= floor {
			floor = s - 1
		}
	}
	t.pending[t.next] = &sentRecord{sentAt: now, broker: broker, floor: floor}
	return t.next, true
}

// ack records the acknowledgement of seq at now.
func (t *seqTracker) ack(seq uint64, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.pending[seq]
	switch {
	case r == nil:
	case r.consumed:
		delete(t.pending, seq)
	default:
		r.acked, r.ackedAt = true, now
	}
}

// fail records that producing seq failed: it is not expected any more (if
// it shows up anyway, it is consumed like any other record).
func (t *seqTracker) fail(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pending, seq)
}

// delivery classifies a consumed record.
type delivery int

const (
	deliveredFresh     delivery = iota // first time this sequence number is read
	deliveredDuplicate                 // read before, at another offset
	deliveredAgain                     // read before at this offset: the consumer re-read it
	deliveredTooOld                    // older than the window: cannot tell
)

// consumeResult is what a consumed record tells.
type consumeResult struct {
	kind      delivery
	reordered bool
	// e2e is the time from send to now (fresh records only), from the
	// tracker's own clock when it still knows the record, else from the
	// payload's send time.
	e2e time.Duration
}

// consume records that seq was read at offset at now; sentAt is the send
// time in its payload.
func (t *seqTracker) consume(seq uint64, offset int64, sentAt, now time.Time) consumeResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nextOffset = max(t.nextOffset, offset+1)
	slot := &t.ring[seq%ringSize]
	switch {
	case slot.seq == seq && slot.offset == offset:
		return consumeResult{kind: deliveredAgain}
	case slot.seq == seq:
		return consumeResult{kind: deliveredDuplicate}
	case slot.seq > seq:
		return consumeResult{kind: deliveredTooOld}
	}
	*slot = consumedSeq{seq: seq, offset: offset}
	res := consumeResult{kind: deliveredFresh, e2e: now.Sub(sentAt)}
	if r := t.pending[seq]; r != nil {
		res.e2e = now.Sub(r.sentAt)
		// A record acknowledged before a record already consumed was
		// even sent has been stored after it.
		res.reordered = r.acked && seq <= t.maxFloor
		t.maxFloor = max(t.maxFloor, r.floor)
		if r.acked {
			delete(t.pending, seq)
		} else {
			r.consumed = true
		}
	}
	t.hiSeq = max(t.hiSeq, seq)
	return res
}

// sweep removes the records acknowledged more than the deadline before
// now and not consumed, and returns the brokers they were produced
// through, one entry per lost record.
func (t *seqTracker) sweep(now time.Time) (lost []int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s, r := range t.pending {
		switch {
		case r.acked && now.Sub(r.ackedAt) > t.deadline:
			lost = append(lost, r.broker)
			delete(t.pending, s)
		case !r.acked && r.consumed && now.Sub(r.sentAt) > t.deadline:
			// Consumed, and its produce never answered: nothing to
			// wait for.
			delete(t.pending, s)
		}
	}
	return lost
}

// committable returns the offset after the last record consumed, or -1.
func (t *seqTracker) committable() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nextOffset
}

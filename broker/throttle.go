package broker

import (
	"math"
	"slices"
	"sync"
	"time"
)

// The reassignment throttle, after Kafka's leader.replication.throttled.rate
// with its throttled-replica lists: a leader limits the bytes it sends to
// the replicas a partition reassignment is adding, so moving a partition
// (or a whole broker, in a decommission) does not saturate the disks and
// network its producers, consumers and in-sync followers need.
//
// Which replicas are throttled needs no list: the leader's partition state
// from the controller names the replicas being added (AddingReplicas). A
// replica is throttled while it is being added and is not in the ISR — nor
// being added to it by an AlterPartition in flight, which already counts
// it for the high watermark. So the throttle never slows a replica that
// acks=all writes or the high watermark wait for: once an adding replica
// has caught up and joined the ISR it replicates at full speed, and the
// in-sync followers of a partition being reassigned are never throttled.
//
// The limit is one token bucket per broker, shared by every throttled
// replica of every partition it leads (Kafka's rate is per broker too).
// A fetch from a throttled replica takes a grant from the bucket before it
// reads, reads at most that much, and gives back what it did not use. A
// batch larger than the grant is still sent whole (a follower must get
// whole batches and would otherwise never make progress past it): the
// bucket goes into debt and the next grants wait until it is paid off. So
// over any window of T seconds the bytes sent to throttled replicas stay
// within rate×T + burst + one batch. A fetch whose throttled partitions get
// no grant waits (at most its max wait) until the bucket refills rather
// than answering at once, so a throttled follower does not spin; its other
// partitions are read and answered as usual.

// replicaThrottleBurst is how many seconds of the rate may accrue while no
// throttled replica fetches.
const replicaThrottleBurst = time.Second

// replicaThrottleMinGrant is the smallest grant worth a read (smaller when
// the burst is smaller): below it a throttled fetch waits for the bucket.
const replicaThrottleMinGrant = 16 << 10

// replicaThrottle is the token bucket. The zero rate is unlimited.
type replicaThrottle struct {
	now func() time.Time

	mu     sync.Mutex
	rate   float64 // bytes per second; 0: unlimited
	tokens float64 // may be negative: a debt
	last   time.Time
}

func newReplicaThrottle(rate float64, now func() time.Time) *replicaThrottle {
	if now == nil {
		now = time.Now
	}
	t := &replicaThrottle{now: now}
	t.setRate(rate)
	return t
}

// setRate changes the rate (0: unlimited); the bucket starts full.
func (t *replicaThrottle) setRate(rate float64) {
	if !(rate > 0) || math.IsInf(rate, 1) {
		rate = 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rate = rate
	t.last = t.now()
	t.tokens = t.burstLocked()
}

// limit returns the rate (0: unlimited).
func (t *replicaThrottle) limit() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rate
}

func (t *replicaThrottle) burstLocked() float64 {
	return t.rate * replicaThrottleBurst.Seconds()
}

func (t *replicaThrottle) minGrantLocked() float64 {
	return max(1, min(replicaThrottleMinGrant, t.burstLocked()))
}

// refillLocked adds the tokens earned since the last refill.
func (t *replicaThrottle) refillLocked() {
	now := t.now()
	if el := now.Sub(t.last); el > 0 {
		t.tokens = min(t.burstLocked(), t.tokens+el.Seconds()*t.rate)
	}
	t.last = now
}

// take grants up to want bytes (want when unlimited), or 0 when the bucket
// holds less than the smallest grant.
func (t *replicaThrottle) take(want int) int {
	if want <= 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rate == 0 {
		return want
	}
	t.refillLocked()
	if t.tokens < t.minGrantLocked() {
		return 0
	}
	g := min(want, int(t.tokens))
	t.tokens -= float64(g)
	return g
}

// settle replaces a grant by the bytes actually sent under it: the unused
// part goes back, a whole batch larger than the grant is a debt.
func (t *replicaThrottle) settle(granted, used int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rate == 0 {
		return
	}
	t.tokens += float64(granted - used)
}

// delay returns how long until take can grant again (0 when it can now).
func (t *replicaThrottle) delay() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rate == 0 {
		return 0
	}
	t.refillLocked()
	short := t.minGrantLocked() - t.tokens
	if short <= 0 {
		return 0
	}
	return time.Duration(short / t.rate * float64(time.Second))
}

// reassignmentThrottled reports whether replica id of p is throttled: a
// replica a reassignment is adding that is not in the ISR, nor in an ISR
// expansion in flight.
func (p *partition) reassignmentThrottled(id int32) bool {
	st := p.state.Load()
	if st == nil || len(st.AddingReplicas) == 0 || !slices.Contains(st.AddingReplicas, id) || slices.Contains(st.ISR, id) {
		return false
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	return !(p.alterInFlight && slices.Contains(p.proposed, id))
}

// SetReplicaReassignmentThrottle changes the reassignment throttle of this
// broker (bytes per second its leaders send to the replicas reassignments
// are adding; 0: unlimited) until it restarts, when
// --replica-reassignment-throttle-bytes-per-second applies again.
func (b *Broker) SetReplicaReassignmentThrottle(bytesPerSecond float64) {
	b.reassignThrottle.setRate(bytesPerSecond)
}

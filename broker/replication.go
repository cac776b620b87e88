package broker

import (
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Leader-side replication, as Kafka's Partition does it: the leader learns
// each follower's log end offset from the offsets it fetches at, advances
// the high watermark to the smallest end offset of the in-sync replicas,
// and proposes ISR changes to the controller (AlterPartition): a follower
// that has not caught up with the leader's log end for
// replica.lag.time.max.ms leaves the ISR, one that has reached the high
// watermark (and the start of the current leader epoch) joins it.

// follower is what the leader knows of one follower replica.
type follower struct {
	leo                int64 // its log end offset as of its last fetch; -1 unknown
	lastFetch          time.Time
	lastFetchLeaderLEO int64 // the leader's log end offset at that fetch
	lastCaughtUp       time.Time
}

// becomeLeader starts leading p at its current leader epoch: the epoch is
// recorded in the log's epoch cache, every follower starts as caught up
// now with an unknown end offset, and the high watermark may only advance
// once the in-sync followers have fetched.
func (p *partition) becomeLeader(now time.Time) error {
	st := p.state.Load()
	p.rmu.Lock()
	p.leading = st.LeaderEpoch
	p.epochStart = p.log.EndOffset()
	p.followers = map[int32]*follower{}
	p.syncFollowersLocked(now)
	p.alterInFlight, p.proposed = false, nil
	p.replicatedAt = now
	p.rmu.Unlock()
	err := p.log.AssignLeaderEpoch(st.LeaderEpoch)
	p.maybeAdvanceHW()
	p.stateChanged()
	return err
}

// resign stops leading p.
func (p *partition) resign() {
	p.rmu.Lock()
	p.leading = -1
	p.followers = nil
	p.alterInFlight, p.proposed = false, nil
	p.rmu.Unlock()
	p.stateChanged()
}

// syncFollowersLocked makes the follower set match the replicas (a
// reassignment adds or removes some). Callers hold rmu.
func (p *partition) syncFollowersLocked(now time.Time) {
	st := p.state.Load()
	for _, r := range st.Replicas {
		if r != p.self && p.followers[r] == nil {
			p.followers[r] = &follower{leo: -1, lastFetchLeaderLEO: -1, lastCaughtUp: now}
		}
	}
	for r := range p.followers {
		if !slices.Contains(st.Replicas, r) {
			delete(p.followers, r)
		}
	}
}

// stateChanged wakes produce requests waiting for acks=all (they re-check
// leadership and the high watermark) and, while leading, takes in a new
// replica set and ISR from the controller.
func (p *partition) stateChanged() {
	p.rmu.Lock()
	if p.leading >= 0 && p.followers != nil {
		p.syncFollowersLocked(time.Now())
		if st := p.state.Load(); st != nil && p.alterInFlight && slices.Equal(sorted(st.ISR), sorted(p.proposed)) {
			p.alterInFlight, p.proposed = false, nil
		}
	}
	close(p.hwCh)
	p.hwCh = make(chan struct{})
	p.rmu.Unlock()
	p.maybeAdvanceHW()
}

func sorted(xs []int32) []int32 {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

// updateFollower records a fetch by replica id at fetchOffset (its log end
// offset). It reports false if id is not a follower of p as led here.
func (p *partition) updateFollower(id int32, fetchOffset int64, now time.Time) bool {
	p.rmu.Lock()
	f := p.followers[id]
	if p.leading < 0 || f == nil {
		p.rmu.Unlock()
		return false
	}
	leaderLEO := p.log.EndOffset()
	switch {
	case fetchOffset >= leaderLEO:
		if now.After(f.lastCaughtUp) {
			f.lastCaughtUp = now
		}
	case f.lastFetchLeaderLEO >= 0 && fetchOffset >= f.lastFetchLeaderLEO:
		if f.lastFetch.After(f.lastCaughtUp) {
			f.lastCaughtUp = f.lastFetch
		}
	}
	f.lastFetchLeaderLEO, f.lastFetch, f.leo = leaderLEO, now, fetchOffset
	p.rmu.Unlock()
	p.maybeAdvanceHW()
	return true
}

// maybeAdvanceHW moves the high watermark to the smallest log end offset
// of the in-sync replicas (including one being added by an AlterPartition
// in flight, as Kafka's "maximal ISR"), and wakes fetches and acks=all
// produce requests when it advances.
func (p *partition) maybeAdvanceHW() {
	st := p.state.Load()
	p.rmu.Lock()
	if p.leading < 0 || st == nil || p.log == nil {
		p.rmu.Unlock()
		return
	}
	hw := p.log.EndOffset()
	isr := st.ISR
	if p.alterInFlight {
		isr = append(slices.Clone(isr), p.proposed...)
	}
	for _, r := range isr {
		if r == p.self {
			continue
		}
		f := p.followers[r]
		if f == nil || f.leo < 0 {
			hw = min(hw, p.log.HighWatermark())
			continue
		}
		hw = min(hw, f.leo)
	}
	advanced := p.log.SetHighWatermark(hw)
	if p.log.HighWatermark() >= p.log.EndOffset() {
		p.replicatedAt = time.Now()
	}
	if advanced {
		close(p.hwCh)
		p.hwCh = make(chan struct{})
	}
	p.rmu.Unlock()
	if advanced {
		p.notify()
	}
}

// followerLag is how far one follower is behind the leader.
type followerLag struct {
	records int64         // the leader's log end minus the follower's
	behind  time.Duration // since the follower was last caught up
}

// replicationLag returns, for a partition led here, how long records have
// waited above the high watermark (0 when everything is replicated) and
// each follower's lag.
func (p *partition) replicationLag(now time.Time) (time.Duration, map[int32]followerLag) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if p.leading < 0 {
		return 0, nil
	}
	var age time.Duration
	end := p.log.EndOffset()
	if p.log.HighWatermark() < end && !p.replicatedAt.IsZero() {
		age = now.Sub(p.replicatedAt)
	}
	out := make(map[int32]followerLag, len(p.followers))
	for id, f := range p.followers {
		l := followerLag{behind: max(now.Sub(f.lastCaughtUp), 0)}
		if f.leo >= 0 {
			l.records = max(end-f.leo, 0)
		}
		out[id] = l
	}
	return age, out
}

// proposeISR returns the ISR p should have now, and true if it differs from
// the current one and no change is in flight (then the change is marked in
// flight): in-sync followers that have not caught up within lagMax leave,
// out-of-sync ones that reached the high watermark and the start of this
// leadership join, if alive reports their broker may join.
func (p *partition) proposeISR(now time.Time, lagMax time.Duration, alive func(int32) bool) ([]int32, bool) {
	st := p.state.Load()
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if st == nil || p.leading != st.LeaderEpoch || p.alterInFlight || p.followers == nil {
		return nil, false
	}
	hw := p.log.HighWatermark()
	next := make([]int32, 0, len(st.Replicas))
	for _, r := range st.ISR {
		if f := p.followers[r]; r != p.self && f != nil && now.Sub(f.lastCaughtUp) > lagMax {
			continue
		}
		next = append(next, r)
	}
	for _, r := range st.Replicas {
		f := p.followers[r]
		if f == nil || slices.Contains(st.ISR, r) {
			continue
		}
		if f.leo >= hw && f.leo >= p.epochStart && now.Sub(f.lastCaughtUp) <= lagMax && alive(r) {
			next = append(next, r)
		}
	}
	if !slices.Contains(next, p.self) {
		next = append(next, p.self)
	}
	if slices.Equal(sorted(next), sorted(st.ISR)) {
		return nil, false
	}
	p.alterInFlight, p.proposed = true, next
	return next, true
}

// alterDone ends an AlterPartition: the proposal is no longer in flight.
func (p *partition) alterDone() {
	p.rmu.Lock()
	p.alterInFlight, p.proposed = false, nil
	p.rmu.Unlock()
	p.stateChanged()
}

// waitReplicated waits until the high watermark reaches target (every
// in-sync replica has the records below it) and returns 0, or the error
// for the client: NOT_LEADER_OR_FOLLOWER if leadership moved,
// REQUEST_TIMED_OUT when done or expired is closed first, and
// NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below minISR
// meanwhile. (A timer, not a context with a deadline: every acks=all
// produce waits here, and a derived context cost it an allocation and a
// registration with its parent, 2-3% of a broker's CPU at 5,000 records/s.)
func (p *partition) waitReplicated(done, expired <-chan struct{}, target int64, minISR int) int16 {
	for {
		p.rmu.Lock()
		ch, leading := p.hwCh, p.leading
		p.rmu.Unlock()
		if !p.isLeader() || leading < 0 {
			return kerr.NotLeaderForPartition.Code
		}
		if p.log.HighWatermark() >= target {
			if st := p.state.Load(); st != nil && len(st.ISR) < minISR {
				return kerr.NotEnoughReplicasAfterAppend.Code
			}
			return 0
		}
		select {
		case <-ch:
		case <-done:
			return kerr.RequestTimedOut.Code
		case <-expired:
			return kerr.RequestTimedOut.Code
		}
	}
}

// closeAfter returns a channel that is closed once d has passed, and stays
// closed, so that every wait sharing it sees the expiry, and a func that
// stops it.
func closeAfter(d time.Duration) (expired <-chan struct{}, stop func() bool) {
	ch := make(chan struct{})
	t := time.AfterFunc(d, func() { close(ch) })
	return ch, t.Stop
}

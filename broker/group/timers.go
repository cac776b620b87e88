package group

import (
	"container/heap"
	"time"
)

// timerKind says what a timer is for.
type timerKind uint8

const (
	// timerSession: a classic member's session (or join) deadline.
	timerSession timerKind = iota
	// timerPending: a classic member told MEMBER_ID_REQUIRED must rejoin
	// within its session timeout.
	timerPending
	// timerJoin: the end of a classic group's join phase (rebalance
	// timeout or initial rebalance delay).
	timerJoin
	// timerConsumerSession: a KIP-848 member's session deadline.
	timerConsumerSession
	// timerConsumerRevoke: a KIP-848 member's deadline to revoke
	// partitions (its rebalance timeout).
	timerConsumerRevoke
)

// timer is one scheduled deadline. The entity it belongs to remembers the
// id of its live timer; a fired timer whose id no longer matches was
// cancelled or replaced and is ignored.
type timer struct {
	at     time.Time
	kind   timerKind
	group  string
	member string
	id     uint64
}

// timerHeap is a min-heap of timers by deadline, then id (so firing order
// is deterministic).
type timerHeap []timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].id < h[j].id
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// popDue removes and returns the earliest timer if it is due at now.
func (h *timerHeap) popDue(now time.Time) (timer, bool) {
	if len(*h) == 0 || (*h)[0].at.After(now) {
		return timer{}, false
	}
	return heap.Pop(h).(timer), true
}

// peek returns the earliest deadline.
func (h *timerHeap) peek() (time.Time, bool) {
	if len(*h) == 0 {
		return time.Time{}, false
	}
	return (*h)[0].at, true
}

// schedule adds a timer and returns its id.
func (c *Coordinator) schedule(at time.Time, kind timerKind, group, member string) uint64 {
	c.seq++
	heap.Push(&c.timers, timer{at: at, kind: kind, group: group, member: member, id: c.seq})
	c.compactTimers()
	return c.seq
}

// compactTimers drops cancelled timers once the heap has doubled since the
// last compaction, so frequent rescheduling (every heartbeat) costs O(1)
// amortized and does not grow the heap without bound.
func (c *Coordinator) compactTimers() {
	if len(c.timers) < max(c.compactAt, 1024) {
		return
	}
	live := make(timerHeap, 0, len(c.timers)/2)
	for _, t := range c.timers {
		if c.timerLive(t) {
			live = append(live, t)
		}
	}
	heap.Init(&live)
	c.timers = live
	c.compactAt = 2 * len(live)
}

// timerLive reports whether t is still the live timer of its entity.
func (c *Coordinator) timerLive(t timer) bool {
	g := c.groups[t.group]
	if g == nil {
		return false
	}
	switch t.kind {
	case timerSession:
		m := g.members[t.member]
		return m != nil && m.timer == t.id
	case timerPending:
		return g.pending[t.member] == t.id
	case timerJoin:
		return g.joinTimer == t.id
	case timerConsumerSession:
		m := g.consumer.member(t.member)
		return m != nil && m.sessionTimer == t.id
	case timerConsumerRevoke:
		m := g.consumer.member(t.member)
		return m != nil && m.revokeTimer == t.id
	}
	return false
}

// fire runs a due timer if it is still live.
func (c *Coordinator) fire(now time.Time, t timer) {
	if !c.timerLive(t) {
		return
	}
	g := c.groups[t.group]
	switch t.kind {
	case timerSession:
		c.sessionExpired(now, g, g.members[t.member])
	case timerPending:
		delete(g.pending, t.member)
		c.tryCompleteJoin(now, g)
	case timerJoin:
		g.joinTimer = 0
		c.joinTimerFired(now, t.at, g)
	case timerConsumerSession:
		c.consumerSessionExpired(now, g, t.member)
	case timerConsumerRevoke:
		c.consumerRevokeExpired(now, g, t.member)
	}
}

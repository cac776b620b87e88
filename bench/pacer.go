package bench

import "time"

// pacer is a token bucket that hands out send slots at a fixed rate on an
// absolute schedule: slot k is due at origin + k/rate, so sleeping late
// never makes the rate drift. A caller that falls further behind than the
// bucket's capacity loses the excess slots (the origin moves forward) rather
// than bursting to catch up; the achieved rate then shows in the results.
//
// It takes the current time as an argument, so it is deterministic to test.
type pacer struct {
	interval float64 // nanoseconds per slot
	burst    int64   // bucket capacity, >= 1
	origin   time.Time
	taken    int64 // slots handed out since origin
}

// maxBurstDelay is how far behind schedule a producer may be and still
// catch up: it bounds the bucket's capacity.
const maxBurstDelay = 10 * time.Millisecond

// newPacer paces rate slots per second starting at start. rate must be > 0.
func newPacer(rate float64, start time.Time) *pacer {
	interval := float64(time.Second) / rate
	burst := max(int64(float64(maxBurstDelay)/interval), 1)
	return &pacer{interval: interval, burst: burst, origin: start}
}

// take returns how many slots (at most limit) may be used now and marks
// them used. If none are available, wait is how long until the next one.
func (p *pacer) take(now time.Time, limit int64) (n int64, wait time.Duration) {
	elapsed := float64(now.Sub(p.origin))
	if elapsed < 0 {
		return 0, time.Duration(-elapsed)
	}
	// Slot k is due at origin + k*interval; slots 0..due-1 are due.
	due := int64(elapsed/p.interval) + 1
	avail := due - p.taken
	if avail > p.burst {
		// Too far behind: drop the excess by moving the origin so
		// that exactly burst slots are due now.
		p.origin = p.origin.Add(time.Duration(float64(avail-p.burst) * p.interval))
		avail = p.burst
	}
	if avail <= 0 {
		next := p.origin.Add(time.Duration(float64(p.taken) * p.interval))
		return 0, max(next.Sub(now), 1)
	}
	n = min(avail, limit)
	p.taken += n
	return n, 0
}

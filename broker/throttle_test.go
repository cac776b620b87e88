package broker

import (
	"math/rand"
	"testing"
	"time"
)

// TestReplicaThrottleBudget drives the reassignment throttle with a fake
// clock the way a throttled follower's fetches do (grants, reads of whole
// batches that may exceed the grant, unused grants given back) and checks
// that in every window the bytes sent stay within rate×window + burst + one
// batch, and that the throttle still lets the rate through.
func TestReplicaThrottleBudget(t *testing.T) {
	const (
		rate     = 100 << 10 // bytes per second
		maxBatch = 64 << 10
	)
	now := time.Unix(1_700_000_000, 0)
	th := newReplicaThrottle(rate, func() time.Time { return now })
	rng := rand.New(rand.NewSource(1))
	type sample struct {
		at   time.Time
		sent int // cumulative, after this step
	}
	start := now
	var samples []sample
	sent := 0
	for i := 0; i < 20000; i++ {
		now = now.Add(time.Duration(rng.Intn(20)) * time.Millisecond)
		samples = append(samples, sample{now, sent})
		g := th.take(1 << 20)
		if g == 0 {
			if d := th.delay(); d <= 0 {
				t.Fatalf("step %d: no grant, yet the throttle says one is possible now", i)
			}
			continue
		}
		// The log returns whole batches up to the grant, or one batch
		// larger than it; sometimes nothing is left to read.
		used := 0
		switch rng.Intn(4) {
		case 0:
		case 1:
			used = g + rng.Intn(maxBatch) // a first batch larger than the grant
		default:
			used = rng.Intn(g + 1)
		}
		th.settle(g, used)
		sent += used
		samples = append(samples, sample{now, sent})
	}
	burst := int(rate * replicaThrottleBurst.Seconds())
	// Windows starting at each sample, ending at each later one (sampled
	// with a stride to keep the check quick).
	for i := 0; i < len(samples); i += 7 {
		for j := i + 1; j < len(samples); j += 3 {
			win := samples[j].at.Sub(samples[i].at).Seconds()
			moved := samples[j].sent - samples[i].sent
			if budget := int(rate*win) + burst + maxBatch; moved > budget {
				t.Fatalf("%d bytes sent in %.3fs, more than the budget %d (rate %d/s, burst %d, one batch %d)",
					moved, win, budget, rate, burst, maxBatch)
			}
		}
	}
	el := now.Sub(start).Seconds()
	if low := int(rate*el) - burst - 2*maxBatch; sent < low/2 {
		t.Fatalf("only %d bytes sent in %.1fs at %d bytes/s: the throttle starves its replicas", sent, el, rate)
	}
	t.Logf("%d bytes in %.1fs of fake time (rate %d/s)", sent, el, rate)

	// Unlimited: every request is granted whole and nothing is owed.
	th.setRate(0)
	if g := th.take(5 << 20); g != 5<<20 {
		t.Fatalf("unlimited throttle granted %d of %d bytes", g, 5<<20)
	}
	if d := th.delay(); d != 0 {
		t.Fatalf("unlimited throttle asks to wait %v", d)
	}
}

// TestReplicaThrottleDebt: a batch larger than the grant is sent whole, and
// the next grant waits until the debt is paid at the rate.
func TestReplicaThrottleDebt(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	th := newReplicaThrottle(32<<10, func() time.Time { return now })
	g := th.take(1 << 20)
	if g != 32<<10 {
		t.Fatalf("first grant %d, want the burst %d", g, 32<<10)
	}
	th.settle(g, 160<<10) // one 160 KiB batch: 128 KiB of debt
	if g := th.take(1 << 20); g != 0 {
		t.Fatalf("granted %d bytes while in debt", g)
	}
	// 128 KiB of debt and a 16 KiB minimum grant at 32 KiB/s: 4.5s.
	if d := th.delay(); d != 4500*time.Millisecond {
		t.Fatalf("delay %v, want 4.5s", d)
	}
	now = now.Add(4 * time.Second)
	if g := th.take(1 << 20); g != 0 {
		t.Fatalf("granted %d bytes before the debt was paid", g)
	}
	now = now.Add(600 * time.Millisecond)
	if g := th.take(1 << 20); g < 16<<10 || g > 20<<10 {
		t.Fatalf("grant after the debt: %d, want about 16-20 KiB", g)
	}
}

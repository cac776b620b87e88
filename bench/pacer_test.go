package bench

import (
	"testing"
	"time"
)

func TestPacerSchedule(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newPacer(1000, t0) // one slot per millisecond; burst 10

	// Slot 0 is due at t0.
	if n, _ := p.take(t0, 100); n != 1 {
		t.Fatalf("at t0: %d slots, want 1", n)
	}
	// Nothing more until t0+1ms.
	n, wait := p.take(t0.Add(300*time.Microsecond), 100)
	if n != 0 || wait != 700*time.Microsecond {
		t.Fatalf("at t0+0.3ms: %d slots, wait %v; want 0, 700µs", n, wait)
	}
	// Waking late does not lose slots within the burst: at t0+5.5ms
	// slots 1..5 are due.
	if n, _ := p.take(t0.Add(5500*time.Microsecond), 100); n != 5 {
		t.Fatalf("at t0+5.5ms: %d slots, want 5", n)
	}
	// The limit caps a take; the rest stays available.
	if n, _ := p.take(t0.Add(8*time.Millisecond), 2); n != 2 {
		t.Fatalf("limited take: %d, want 2", n)
	}
	if n, _ := p.take(t0.Add(8*time.Millisecond), 100); n != 1 {
		t.Fatalf("after limited take: %d, want 1", n)
	}
	// Over the long run the count follows the absolute schedule: by
	// t0+1s exactly 1001 slots (0..1000) are due.
	var total int64 = 1 + 5 + 2 + 1
	for now := t0.Add(8 * time.Millisecond); !now.After(t0.Add(time.Second)); now = now.Add(3 * time.Millisecond) {
		n, _ := p.take(now, 1<<30)
		total += n
	}
	if n, _ := p.take(t0.Add(time.Second), 1<<30); n >= 0 {
		total += n
	}
	if total != 1001 {
		t.Fatalf("slots by t0+1s: %d, want 1001", total)
	}
}

func TestPacerDropsBacklogBeyondBurst(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newPacer(1000, t0) // burst = 10ms worth = 10
	if p.burst != 10 {
		t.Fatalf("burst %d, want 10", p.burst)
	}
	// Stalled for a second: only a burst is available, not 1001 slots.
	if n, _ := p.take(t0.Add(time.Second), 1<<30); n != 10 {
		t.Fatalf("after a 1s stall: %d slots, want the burst of 10", n)
	}
	// Then the schedule continues from there at the same rate.
	if n, _ := p.take(t0.Add(time.Second), 1<<30); n != 0 {
		t.Fatalf("immediately after: %d slots, want 0", n)
	}
	if n, _ := p.take(t0.Add(time.Second+2*time.Millisecond), 1<<30); n != 2 {
		t.Fatalf("2ms later: %d slots, want 2", n)
	}
}

func TestPacerHighRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newPacer(1e6, t0) // 1µs per slot, burst 10000
	var total int64
	for i := 1; i <= 100; i++ { // wake every 1ms for 100ms
		n, _ := p.take(t0.Add(time.Duration(i)*time.Millisecond), 1<<30)
		total += n
	}
	if total != 100001 {
		t.Fatalf("slots in 100ms at 1M/s: %d, want 100001", total)
	}
}

func TestPacerBeforeStart(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newPacer(10, t0)
	if n, wait := p.take(t0.Add(-time.Second), 1); n != 0 || wait != time.Second {
		t.Fatalf("before start: %d slots, wait %v; want 0, 1s", n, wait)
	}
}

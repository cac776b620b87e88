package slo

import (
	"context"
	"testing"
)

// TestBenchFleetSmall runs the fleet benchmark's code on a small fleet:
// every SLO gets its groups, the slow broker makes its cell burn.
func TestBenchFleetSmall(t *testing.T) {
	r, err := BenchFleet(context.Background(), BenchConfig{Clusters: 4, Minutes: 6, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.ActiveSeries != 4*12*84 || r.SLOs != 20 || len(r.Cycles) != 5 {
		t.Fatalf("%+v", r)
	}
	// Per SLO: cells (16), brokers (48) or clusters (4).
	if r.Groups < 20*4 {
		t.Errorf("%d groups", r.Groups)
	}
	// Broker 0 of cluster c0000 is slow (1 in 97): its storage is
	// degraded relative to its cell.
	if r.SignalsByName["storage_degraded"] != 1 {
		t.Errorf("signals: %+v", r.SignalsByName)
	}
}

// BenchmarkFleetCycle: go test -bench FleetCycle -benchtime 1x ./slo
// (1,000 clusters × 12 brokers; see docs/benchmarks.md and vigil bench slo).
func BenchmarkFleetCycle(b *testing.B) {
	for b.Loop() {
		r, err := BenchFleet(context.Background(), BenchConfig{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.MedianCycle.Seconds(), "s/cycle")
		b.ReportMetric(r.IngestSamplesPerSecond, "samples/s")
		b.ReportMetric(float64(r.PeakRSS)/(1<<30), "GiB-peak-RSS")
	}
}

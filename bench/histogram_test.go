package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBucketBoundsRoundTrip(t *testing.T) {
	// Every bucket's bounds map back to the bucket, and buckets tile the
	// value range without gaps.
	prevEnd := int64(0)
	for i := range histBuckets - histHalf { // the last power of two overflows int64
		lo, w := bucketBounds(i)
		if lo != prevEnd {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevEnd)
		}
		if got := bucketOf(lo); got != i {
			t.Fatalf("bucketOf(lo=%d) = %d, want %d", lo, got, i)
		}
		if got := bucketOf(lo + w - 1); got != i {
			t.Fatalf("bucketOf(hi=%d) = %d, want %d", lo+w-1, got, i)
		}
		prevEnd = lo + w
	}
	if got := bucketOf(math.MaxInt64); got >= histBuckets {
		t.Fatalf("bucketOf(MaxInt64) = %d, out of range %d", got, histBuckets)
	}
}

func TestBucketPrecision(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		v := int64(r.Uint64N(1 << uint(r.IntN(62)+1)))
		lo, w := bucketBounds(bucketOf(v))
		if v < lo || v >= lo+w {
			t.Fatalf("value %d outside its bucket [%d, %d)", v, lo, lo+w)
		}
		mid := lo + w/2
		if v >= histExact {
			if rel := math.Abs(float64(mid-v)) / float64(v); rel > 1.0/256 {
				t.Fatalf("value %d reported as %d: relative error %.5f > 1/256", v, mid, rel)
			}
		} else if w != 1 {
			t.Fatalf("small value %d in a bucket of width %d", v, w)
		}
	}
}

func TestHistogramEmpty(t *testing.T) {
	h := newHistogram()
	for _, q := range []float64{0, 0.5, 0.99, 1} {
		if got := h.Quantile(q); got != 0 {
			t.Errorf("empty Quantile(%v) = %d, want 0", q, got)
		}
	}
	if h.Count() != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Errorf("empty histogram: count %d min %d max %d mean %v", h.Count(), h.Min(), h.Max(), h.Mean())
	}
}

func TestHistogramExactSmallValues(t *testing.T) {
	h := newHistogram()
	for v := int64(1); v <= 100; v++ {
		h.Record(v)
	}
	tests := []struct {
		q    float64
		want int64
	}{
		{0, 1}, {0.01, 1}, {0.5, 50}, {0.9, 90}, {0.99, 99}, {0.999, 100}, {1, 100},
	}
	for _, tc := range tests {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %d, want %d", tc.q, got, tc.want)
		}
	}
	if h.Mean() != 50.5 {
		t.Errorf("Mean = %v, want 50.5", h.Mean())
	}
	if h.Min() != 1 || h.Max() != 100 || h.Count() != 100 {
		t.Errorf("min %d max %d count %d", h.Min(), h.Max(), h.Count())
	}
}

func TestHistogramNegativeIsZero(t *testing.T) {
	h := newHistogram()
	h.Record(-5)
	if h.Min() != 0 || h.Max() != 0 || h.Quantile(0.5) != 0 {
		t.Errorf("negative value: min %d max %d p50 %d, want all 0", h.Min(), h.Max(), h.Quantile(0.5))
	}
}

// exactQuantile is the nearest-rank quantile of sorted values: the
// ceil(q*n)-th smallest.
func exactQuantile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func TestHistogramQuantilesMatchExact(t *testing.T) {
	// Latency-like data: log-normal around 2ms with a long tail, in ns.
	r := rand.New(rand.NewPCG(42, 7))
	vals := make([]int64, 200000)
	h := newHistogram()
	for i := range vals {
		v := int64(math.Exp(r.NormFloat64()*1.2 + math.Log(2e6)))
		vals[i] = v
		h.Record(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999} {
		want := exactQuantile(vals, q)
		got := h.Quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.01 {
			t.Errorf("Quantile(%v) = %d, exact %d: relative error %.4f > 1%%", q, got, want, rel)
		}
	}
	if h.Max() != vals[len(vals)-1] || h.Min() != vals[0] {
		t.Errorf("min/max %d/%d, want exact %d/%d", h.Min(), h.Max(), vals[0], vals[len(vals)-1])
	}
	if h.Quantile(1) != vals[len(vals)-1] {
		t.Errorf("Quantile(1) = %d, want the exact max %d", h.Quantile(1), vals[len(vals)-1])
	}
}

func TestHistogramMerge(t *testing.T) {
	a, b, all := newHistogram(), newHistogram(), newHistogram()
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 10000 {
		v := int64(r.Uint64N(1e9))
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	a.Merge(b)
	a.Merge(nil)
	a.Merge(newHistogram())
	if a.Count() != all.Count() || a.Min() != all.Min() || a.Max() != all.Max() {
		t.Fatalf("merged count/min/max %d/%d/%d, want %d/%d/%d", a.Count(), a.Min(), a.Max(), all.Count(), all.Min(), all.Max())
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("merged Quantile(%v) = %d, want %d", q, a.Quantile(q), all.Quantile(q))
		}
	}
	if math.Abs(a.Mean()-all.Mean()) > 1e-6*all.Mean() {
		t.Errorf("merged mean %v, want %v", a.Mean(), all.Mean())
	}
}

func TestLatencyJSONRoundTrip(t *testing.T) {
	h := newHistogram()
	for v := int64(1); v <= 1000; v++ {
		h.Record(v * 1000) // 1µs .. 1ms
	}
	l := latencyOf(h)
	b, err := l.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Latency
	if err := back.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	if back.Count != 1000 || back.Max != l.Max || back.P50 != l.P50 {
		t.Errorf("round trip: got %+v from %s, want %+v", back, b, *l)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := newHistogram()
	for i := range b.N {
		h.Record(int64(i) * 7919)
	}
}

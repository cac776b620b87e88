package bench

import (
	"math"
	"math/bits"
)

// histogram is an HDR-style log-linear histogram of non-negative int64
// values (nanoseconds, here).
//
// Values below 2^histPrecisionBits are counted exactly. Above that, each
// power-of-two range [2^k, 2^(k+1)) is split into 2^(histPrecisionBits-1)
// equal buckets, so a bucket is at most 1/128 of the values it holds wide and
// a reported value (the bucket's midpoint) is within 0.4% of the true one.
// The whole int64 range fits in 7424 counters (58 KiB); recording is a few
// shifts and an increment, with no allocation.
//
// A histogram is not safe for concurrent use: give each goroutine its own
// and merge them at the end.
type histogram struct {
	counts   []uint64
	n        uint64
	min, max int64
	sum      float64
}

const (
	histPrecisionBits = 8
	histExact         = 1 << histPrecisionBits       // values below this have their own bucket
	histHalf          = 1 << (histPrecisionBits - 1) // buckets per power of two above histExact
	histBuckets       = histExact + (64-histPrecisionBits)*histHalf
)

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, histBuckets), min: math.MaxInt64}
}

// bucketOf returns the index of the bucket that holds v (v >= 0).
func bucketOf(v int64) int {
	u := uint64(v)
	if u < histExact {
		return int(u)
	}
	shift := bits.Len64(u) - histPrecisionBits // >= 1
	mant := u >> shift                         // in [histHalf, histExact)
	return histExact + (shift-1)*histHalf + int(mant-histHalf)
}

// bucketBounds returns the lowest value in bucket i and the bucket's width.
func bucketBounds(i int) (lo int64, width int64) {
	if i < histExact {
		return int64(i), 1
	}
	j := i - histExact
	shift := j/histHalf + 1
	mant := uint64(j%histHalf + histHalf)
	return int64(mant << shift), int64(1) << shift
}

// Record counts one value; negative values are counted as 0.
func (h *histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds every value counted in o to h.
func (h *histogram) Merge(o *histogram) {
	if o == nil || o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count is the number of values recorded.
func (h *histogram) Count() uint64 { return h.n }

// Min is the smallest value recorded, exactly (0 if none).
func (h *histogram) Min() int64 {
	if h.n == 0 {
		return 0
	}
	return h.min
}

// Max is the largest value recorded, exactly (0 if none).
func (h *histogram) Max() int64 { return h.max }

// Mean is the exact arithmetic mean (0 if none).
func (h *histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value at quantile q in [0, 1]: the midpoint of the
// bucket holding the ceil(q*n)-th smallest value, clamped to the exact min
// and max. Quantile(1) is the exact maximum and Quantile(0) the exact
// minimum. It returns 0 for an empty histogram.
func (h *histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			lo, w := bucketBounds(i)
			return min(max(lo+w/2, h.min), h.max)
		}
	}
	return h.max // unreachable: cum reaches n
}

package broker

import (
	"math/bits"
	"sync"
)

// Buffers for request bodies, responses and fetched records are recycled in
// power-of-two size classes from 4 KiB to 256 MiB, so the produce and fetch
// hot paths do not allocate per request in steady state.
const (
	minClassShift = 12
	maxClassShift = 28
)

var bufPools [maxClassShift - minClassShift + 1]sync.Pool

func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// getBuf returns a zero-length buffer with capacity of at least n.
func getBuf(n int) *[]byte {
	c := classOf(n)
	if c >= len(bufPools) {
		b := make([]byte, 0, n)
		return &b
	}
	if v := bufPools[c].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, 1<<(c+minClassShift))
	return &b
}

// putBuf returns a buffer from getBuf (or grown from one) to its pool.
func putBuf(b *[]byte) {
	if b == nil {
		return
	}
	c := cap(*b)
	if c < 1<<minClassShift || c > 1<<maxClassShift {
		return
	}
	// A buffer belongs to the largest class it fully covers.
	class := bits.Len(uint(c)) - 1 - minClassShift
	bufPools[class].Put(b)
}

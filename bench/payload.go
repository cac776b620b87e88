package bench

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

// The e2e stamp, written at the start of every e2e record value:
//
//	[0:4)   magic "VBN1"
//	[4:12)  run id (random per run; records of other runs are "foreign")
//	[12:16) producer index
//	[16:24) sequence number within that producer, from 0
//	[24:32) send time, Unix nanoseconds (wall clock of the producing host)
//
// All integers are big-endian. The rest of the value is template payload.
const stampLen = 32

var stampMagic = [4]byte{'V', 'B', 'N', '1'}

type stamp struct {
	run      uint64
	producer uint32
	seq      uint64
	sentNano int64
}

func putStamp(b []byte, s stamp) {
	copy(b[0:4], stampMagic[:])
	binary.BigEndian.PutUint64(b[4:12], s.run)
	binary.BigEndian.PutUint32(b[12:16], s.producer)
	binary.BigEndian.PutUint64(b[16:24], s.seq)
	binary.BigEndian.PutUint64(b[24:32], uint64(s.sentNano))
}

// readStamp decodes a stamp; ok is false if b does not start with one.
func readStamp(b []byte) (s stamp, ok bool) {
	if len(b) < stampLen || [4]byte(b[0:4]) != stampMagic {
		return s, false
	}
	return stamp{
		run:      binary.BigEndian.Uint64(b[4:12]),
		producer: binary.BigEndian.Uint32(b[12:16]),
		seq:      binary.BigEndian.Uint64(b[16:24]),
		sentNano: int64(binary.BigEndian.Uint64(b[24:32])),
	}, true
}

// numTemplates is how many distinct pre-built values producers rotate
// through in produce mode, so compressors do not see one value repeated.
const numTemplates = 64

// makeTemplates builds n values of size bytes of random uppercase letters
// (like Kafka's kafka-producer-perf-test payloads: compressible, but not
// trivially). The generator is seeded, so runs are comparable.
func makeTemplates(n, size int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 0x76696769))
	out := make([][]byte, n)
	for i := range out {
		b := make([]byte, size)
		for j := range b {
			b[j] = 'A' + byte(r.IntN(26))
		}
		out[i] = b
	}
	return out
}

// bitset is a growable set of uint64 sequence numbers.
type bitset []uint64

// set adds i and reports whether it was already present.
func (b *bitset) set(i uint64) (dup bool) {
	w := i / 64
	if w >= uint64(len(*b)) {
		grow := max(w+1, uint64(2*len(*b)))
		nb := make(bitset, grow)
		copy(nb, *b)
		*b = nb
	}
	mask := uint64(1) << (i % 64)
	dup = (*b)[w]&mask != 0
	(*b)[w] |= mask
	return dup
}

func (b bitset) has(i uint64) bool {
	w := i / 64
	return w < uint64(len(b)) && b[w]&(1<<(i%64)) != 0
}

// count returns how many of [0, n) are in b.
func (b bitset) count(n uint64) uint64 {
	var c uint64
	full := n / 64
	for i := uint64(0); i < full && i < uint64(len(b)); i++ {
		c += uint64(bits.OnesCount64(b[i]))
	}
	if rem := n % 64; rem != 0 && full < uint64(len(b)) {
		c += uint64(bits.OnesCount64(b[full] & (1<<rem - 1)))
	}
	return c
}

// union ORs o into b and returns how many members they had in common.
func (b *bitset) union(o bitset) (common uint64) {
	if len(o) > len(*b) {
		nb := make(bitset, len(o))
		copy(nb, *b)
		*b = nb
	}
	for i, w := range o {
		common += uint64(bits.OnesCount64((*b)[i] & w))
		(*b)[i] |= w
	}
	return common
}

// deliveryCheck computes loss and duplication from what producers sent and
// what consumers saw. It is pure so it can be tested on its own.
//
// sent[p] is how many sequence numbers producer p issued (0..sent[p]-1);
// failed[p] are the ones whose produce failed (they may or may not have been
// written, so they are neither expected nor counted when seen). seen holds,
// per consumer, per producer, the sequence numbers read; dupsWithin is the
// duplicates each consumer already noticed on its own.
func deliveryCheck(sent []uint64, failed [][]uint64, seen [][]bitset, dupsWithin int64) (expected, received, missing, duplicates int64) {
	duplicates = dupsWithin
	for p, n := range sent {
		var all bitset
		for _, c := range seen {
			if p < len(c) {
				duplicates += int64(all.union(c[p]))
			}
		}
		got := all.count(n)
		exp := n
		for _, f := range failed[p] {
			if f < n {
				exp--
				if all.has(f) {
					got--
				}
			}
		}
		expected += int64(exp)
		received += int64(got)
	}
	return expected, received, expected - received, duplicates
}

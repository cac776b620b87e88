package log

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync/atomic"
)

// Index file entry sizes, as in Kafka's OffsetIndex and TimeIndex.
const (
	offsetEntrySize = 8  // relative offset uint32, position uint32
	timeEntrySize   = 12 // timestamp int64, relative offset uint32
)

// offsetEntry maps the last offset of a batch (relative to the segment's
// base offset) to the batch's position in the segment file, like Kafka's
// OffsetIndex: the batch holding any offset >= base+rel starts at or after
// pos.
type offsetEntry struct {
	rel uint32
	pos uint32
}

// timeEntry records that the largest timestamp in the segment up to and
// including the batch whose last offset is base+rel is ts, like Kafka's
// TimeIndex. Entries have strictly increasing timestamps.
type timeEntry struct {
	ts  int64
	rel uint32
}

// appendOnly is a slice with one writer and lock-free readers. The writer
// appends under the log's lock; readers see a prefix. Readers load the
// length before the array and the writer publishes a grown array before the
// new length, so a reader's prefix always lies within the array it loads,
// and every element in it was written before the length that covers it was
// published.
type appendOnly[T any] struct {
	n   atomic.Int64
	arr atomic.Pointer[[]T] // full capacity of the current backing array
	buf []T                 // the writer's view, len(buf) == n
}

// load returns the published entries. The result must not be modified.
func (a *appendOnly[T]) load() []T {
	n := a.n.Load()
	p := a.arr.Load()
	if p == nil {
		return nil
	}
	return (*p)[:n]
}

// add appends v. Only the writer may call it.
func (a *appendOnly[T]) add(v T) {
	if len(a.buf) == cap(a.buf) {
		nb := make([]T, len(a.buf), max(64, 2*cap(a.buf)))
		copy(nb, a.buf)
		full := nb[:cap(nb)]
		a.arr.Store(&full)
		a.buf = nb
	}
	a.buf = append(a.buf, v)
	a.n.Store(int64(len(a.buf)))
}

// reset replaces the contents. Only the writer may call it, and only while
// no reader can see the index (while opening a log).
func (a *appendOnly[T]) reset(vs []T) {
	nb := make([]T, len(vs))
	copy(nb, vs)
	a.buf = nb
	full := nb[:cap(nb)]
	a.arr.Store(&full)
	a.n.Store(int64(len(nb)))
}

// count is the writer's view of the number of entries.
func (a *appendOnly[T]) count() int { return len(a.buf) }

// lookupOffset returns the position to start scanning from for target: the
// position of the last entry whose offset is <= target, or 0.
func lookupOffset(entries []offsetEntry, base, target int64) int64 {
	if target < base {
		return 0
	}
	rel := target - base
	// First entry with rel > target, then step back.
	i := sort.Search(len(entries), func(i int) bool { return int64(entries[i].rel) > rel })
	if i == 0 {
		return 0
	}
	return int64(entries[i-1].pos)
}

// lookupTime returns the last time index entry with a timestamp <= ts as
// (timestamp, absolute offset), or (-1, base) when there is none, like
// Kafka's TimeIndex.lookup.
func lookupTime(entries []timeEntry, base, ts int64) (int64, int64) {
	i := sort.Search(len(entries), func(i int) bool { return entries[i].ts > ts })
	if i == 0 {
		return -1, base
	}
	e := entries[i-1]
	return e.ts, base + int64(e.rel)
}

func encodeOffsetIndex(entries []offsetEntry) []byte {
	b := make([]byte, len(entries)*offsetEntrySize)
	for i, e := range entries {
		binary.BigEndian.PutUint32(b[i*offsetEntrySize:], e.rel)
		binary.BigEndian.PutUint32(b[i*offsetEntrySize+4:], e.pos)
	}
	return b
}

func encodeTimeIndex(entries []timeEntry) []byte {
	b := make([]byte, len(entries)*timeEntrySize)
	for i, e := range entries {
		binary.BigEndian.PutUint64(b[i*timeEntrySize:], uint64(e.ts))
		binary.BigEndian.PutUint32(b[i*timeEntrySize+8:], e.rel)
	}
	return b
}

// decodeOffsetIndex parses an offset index file and checks what can be
// checked without the segment: whole entries, strictly increasing offsets
// and positions, positions inside the segment file, offsets below end (the
// next segment's base offset; -1 when unknown).
func decodeOffsetIndex(b []byte, base, logSize, end int64) ([]offsetEntry, error) {
	if len(b)%offsetEntrySize != 0 {
		return nil, fmt.Errorf("offset index size %d is not a multiple of %d", len(b), offsetEntrySize)
	}
	entries := make([]offsetEntry, len(b)/offsetEntrySize)
	for i := range entries {
		e := offsetEntry{
			rel: binary.BigEndian.Uint32(b[i*offsetEntrySize:]),
			pos: binary.BigEndian.Uint32(b[i*offsetEntrySize+4:]),
		}
		if i > 0 && (e.rel <= entries[i-1].rel || e.pos <= entries[i-1].pos) {
			return nil, fmt.Errorf("offset index entry %d (offset %d, position %d) does not follow entry %d (offset %d, position %d)",
				i, base+int64(e.rel), e.pos, i-1, base+int64(entries[i-1].rel), entries[i-1].pos)
		}
		if int64(e.pos) >= logSize {
			return nil, fmt.Errorf("offset index entry %d points at position %d beyond the %d-byte segment", i, e.pos, logSize)
		}
		if end >= 0 && base+int64(e.rel) >= end {
			return nil, fmt.Errorf("offset index entry %d has offset %d at or beyond the segment's end offset %d", i, base+int64(e.rel), end)
		}
		entries[i] = e
	}
	return entries, nil
}

// decodeTimeIndex parses a time index file and checks it: whole entries,
// strictly increasing timestamps, non-decreasing offsets below end.
func decodeTimeIndex(b []byte, base, end int64) ([]timeEntry, error) {
	if len(b)%timeEntrySize != 0 {
		return nil, fmt.Errorf("time index size %d is not a multiple of %d", len(b), timeEntrySize)
	}
	entries := make([]timeEntry, len(b)/timeEntrySize)
	for i := range entries {
		e := timeEntry{
			ts:  int64(binary.BigEndian.Uint64(b[i*timeEntrySize:])),
			rel: binary.BigEndian.Uint32(b[i*timeEntrySize+8:]),
		}
		if i > 0 && (e.ts <= entries[i-1].ts || e.rel < entries[i-1].rel) {
			return nil, fmt.Errorf("time index entry %d (timestamp %d, offset %d) does not follow entry %d (timestamp %d, offset %d)",
				i, e.ts, base+int64(e.rel), i-1, entries[i-1].ts, base+int64(entries[i-1].rel))
		}
		if end >= 0 && base+int64(e.rel) >= end {
			return nil, fmt.Errorf("time index entry %d has offset %d at or beyond the segment's end offset %d", i, base+int64(e.rel), end)
		}
		entries[i] = e
	}
	return entries, nil
}

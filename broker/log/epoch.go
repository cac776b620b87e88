package log

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// epochEntry says that leader epoch epoch wrote its first batch at start.
type epochEntry struct {
	epoch int32
	start int64
}

// epochCache is the leader epoch cache, as Kafka's LeaderEpochFileCache:
// entries with strictly increasing epochs and start offsets. It is copy on
// write: the writer replaces the slice under Log.mu, readers load it.
type epochCache struct {
	entries atomic.Pointer[[]epochEntry]
}

func (c *epochCache) load() []epochEntry {
	if p := c.entries.Load(); p != nil {
		return *p
	}
	return nil
}

func (c *epochCache) store(es []epochEntry) { c.entries.Store(&es) }

// assign records that epoch starts at start if epoch is newer than the
// latest known epoch. It reports whether the cache changed.
func (c *epochCache) assign(epoch int32, start int64) bool {
	es := c.load()
	if epoch < 0 || start < 0 {
		return false
	}
	if n := len(es); n > 0 {
		last := es[n-1]
		if epoch <= last.epoch {
			return false
		}
		if start < last.start {
			// Kafka removes the conflicting entries; a leader's appends
			// never get here, but keep the invariant.
			i := len(es)
			for i > 0 && es[i-1].start >= start {
				i--
			}
			es = es[:i]
		}
	}
	c.store(append(slices.Clip(es), epochEntry{epoch, start}))
	return true
}

// truncateFromEnd removes the entries that start at or after end, the log
// end offset after a truncation (Kafka's truncateFromEnd).
func (c *epochCache) truncateFromEnd(end int64) bool {
	es := c.load()
	i := len(es)
	for i > 0 && es[i-1].start >= end {
		i--
	}
	if i == len(es) {
		return false
	}
	c.store(slices.Clone(es[:i]))
	return true
}

// truncateFromStart drops the entries wholly before the log start offset:
// the last entry starting at or before start is kept, moved to start
// (Kafka's truncateFromStart).
func (c *epochCache) truncateFromStart(start int64) bool {
	es := c.load()
	i := 0
	for i < len(es) && es[i].start <= start {
		i++
	}
	if i == 0 {
		return false
	}
	keep := es[i-1]
	if i == 1 && keep.start == start {
		return false
	}
	out := make([]epochEntry, 0, len(es)-i+1)
	out = append(out, epochEntry{keep.epoch, start})
	out = append(out, es[i:]...)
	c.store(out)
	return true
}

// endOffsetFor answers OffsetForLeaderEpoch for the requested epoch given
// the log end offset, exactly as Kafka's LeaderEpochFileCache.endOffsetFor:
//
//   - requested epoch -1 (UNDEFINED_EPOCH), or no entries: (-1, -1);
//   - requested epoch == the latest epoch: (latest epoch, log end offset);
//   - requested epoch > the latest epoch: (-1, -1), as Kafka, whose leader
//     records its epoch in the cache when elected (Log.AssignLeaderEpoch),
//     so that its current epoch is always the latest;
//   - requested epoch below the earliest entry: (requested epoch, start of
//     the earliest entry): the data before that is gone, and a follower or
//     consumer should truncate to there;
//   - otherwise: (largest epoch <= requested, start of the next higher epoch).
func (c *epochCache) endOffsetFor(epoch int32, end int64) (int32, int64) {
	es := c.load()
	if epoch < 0 || len(es) == 0 {
		return -1, -1
	}
	switch last := es[len(es)-1]; {
	case epoch == last.epoch:
		return last.epoch, end
	case epoch > last.epoch:
		return -1, -1
	}
	// First entry with a higher epoch.
	i, _ := slices.BinarySearchFunc(es, epoch+1, func(e epochEntry, t int32) int {
		switch {
		case e.epoch < t:
			return -1
		case e.epoch > t:
			return 1
		}
		return 0
	})
	if i == 0 {
		return epoch, es[0].start
	}
	return es[i-1].epoch, es[i].start
}

// encodeEpochs writes Kafka's leader-epoch-checkpoint text format: the
// version (0), the entry count, then "epoch startOffset" lines.
func encodeEpochs(es []epochEntry) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, "0\n%d\n", len(es))
	for _, e := range es {
		fmt.Fprintf(&sb, "%d %d\n", e.epoch, e.start)
	}
	return []byte(sb.String())
}

func decodeEpochs(b []byte) ([]epochEntry, error) {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) < 2 || lines[0] != "0" {
		return nil, fmt.Errorf("leader epoch checkpoint: bad version line %q", firstLine(lines))
	}
	n, err := strconv.Atoi(lines[1])
	if err != nil || n < 0 || n != len(lines)-2 {
		return nil, fmt.Errorf("leader epoch checkpoint: entry count %q does not match %d entry lines", lines[1], len(lines)-2)
	}
	es := make([]epochEntry, 0, n)
	for _, line := range lines[2:] {
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("leader epoch checkpoint: bad line %q", line)
		}
		ep, err1 := strconv.ParseInt(f[0], 10, 32)
		off, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || ep < 0 || off < 0 {
			return nil, fmt.Errorf("leader epoch checkpoint: bad line %q", line)
		}
		if k := len(es); k > 0 && (int32(ep) <= es[k-1].epoch || off < es[k-1].start) {
			return nil, fmt.Errorf("leader epoch checkpoint: entry %q does not follow epoch %d at %d", line, es[k-1].epoch, es[k-1].start)
		}
		es = append(es, epochEntry{int32(ep), off})
	}
	return es, nil
}

func firstLine(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[0]
}

// encodeStartOffset writes the log start offset checkpoint: a version line
// (0) and the offset.
func encodeStartOffset(off int64) []byte { return fmt.Appendf(nil, "0\n%d\n", off) }

func decodeStartOffset(b []byte) (int64, error) {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "0" {
		return 0, fmt.Errorf("log start offset checkpoint: unexpected contents %q", b)
	}
	off, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || off < 0 {
		return 0, fmt.Errorf("log start offset checkpoint: bad offset %q", lines[1])
	}
	return off, nil
}

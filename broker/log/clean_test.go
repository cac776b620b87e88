package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// compactConfig is smallConfig for a compacted topic (cleanup.policy=compact:
// no time or size retention).
func compactConfig() Config {
	c := smallConfig()
	c.Compact = true
	c.RetentionMs, c.RetentionBytes = -1, -1
	return c
}

// kv is a record of a keyed test batch; a tombstone has a null value.
type kv struct {
	key, value string
	tombstone  bool
}

func put(key, value string) kv { return kv{key: key, value: value} }
func del(key string) kv        { return kv{key: key, tombstone: true} }

// kvBatch builds a batch of keyed records with timestamps ts, ts+1, ...
func kvBatch(t testing.TB, s batchSpec, ts int64, kvs ...kv) []byte {
	recs := make([]rec, len(kvs))
	for i, r := range kvs {
		recs[i] = rec{key: []byte(r.key), ts: ts + int64(i)}
		if !r.tombstone {
			recs[i].value = []byte(r.value)
		}
	}
	return buildBatch(t, s, recs)
}

// logRecord is a record read back from a log.
type logRecord struct {
	off   int64
	key   string
	value *string // nil for a tombstone
	ts    int64
}

func (r logRecord) String() string {
	v := "<tombstone>"
	if r.value != nil {
		v = *r.value
	}
	return fmt.Sprintf("%d:%s=%s", r.off, r.key, v)
}

// readLog reads the whole log from its start offset the way a consumer
// does, checking that every batch is a valid stored batch, that batch and
// record offsets strictly increase (gaps allowed) and that every record lies
// within its batch's offsets.
func readLog(t testing.TB, l *Log) ([]logRecord, []BatchHeader) {
	t.Helper()
	var (
		recs []logRecord
		hs   []BatchHeader
	)
	off, end := l.StartOffset(), l.EndOffset()
	prev := int64(-1)
	for off < end {
		info, err := l.Read(nil, off, 1<<20, end)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		b := info.Records
		if len(b) == 0 {
			t.Fatalf("Read(%d) returned nothing below the end offset %d", off, end)
		}
		for len(b) > 0 {
			h, err := ValidateStoredBatch(b)
			if err != nil {
				t.Fatalf("invalid batch read at %d: %v", off, err)
			}
			if h.LastOffset() < off {
				t.Fatalf("Read(%d) returned a batch ending at %d", off, h.LastOffset())
			}
			if len(hs) > 0 && h.BaseOffset <= hs[len(hs)-1].LastOffset() {
				t.Fatalf("batch [%d, %d] overlaps the previous one ending at %d", h.BaseOffset, h.LastOffset(), hs[len(hs)-1].LastOffset())
			}
			hs = append(hs, h)
			err = DecodeRecords(b[:h.Size()], func(r *Record) error {
				if r.Offset < h.BaseOffset || r.Offset > h.LastOffset() || r.Offset <= prev {
					return fmt.Errorf("record offset %d in batch [%d, %d] after %d", r.Offset, h.BaseOffset, h.LastOffset(), prev)
				}
				prev = r.Offset
				if r.Offset < off {
					return nil
				}
				lr := logRecord{off: r.Offset, key: string(r.Key), ts: r.Timestamp}
				if r.Value != nil {
					v := string(r.Value)
					lr.value = &v
				}
				recs = append(recs, lr)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			off = h.LastOffset() + 1
			b = b[h.Size():]
		}
	}
	return recs, hs
}

// latestByKey is what compaction must preserve: each key's last record.
func latestByKey(recs []logRecord) map[string]logRecord {
	m := map[string]logRecord{}
	for _, r := range recs {
		m[r.key] = r
	}
	return m
}

func newTestCleaner() *Cleaner { return NewCleaner(CleanerConfig{Logger: testLogger()}) }

func (tl *testLog) clean(c *Cleaner) CleanResult {
	tl.t.Helper()
	res, err := c.Clean(context.Background(), tl.Log)
	if err != nil {
		tl.t.Fatalf("Clean: %v", err)
	}
	return res
}

// roll makes the active segment inactive, so the cleaner may clean it.
func (tl *testLog) roll() {
	tl.t.Helper()
	tl.mu.Lock()
	err := tl.rollLocked()
	tl.mu.Unlock()
	if err != nil {
		tl.t.Fatal(err)
	}
}

// updates appends rounds of updates to nkeys keys, perBatch records a
// batch, and returns every record appended, in offset order.
func updates(t testing.TB, l *testLog, nkeys, rounds, perBatch int, spec batchSpec) []logRecord {
	t.Helper()
	var all []logRecord
	var kvs []kv
	flush := func() {
		if len(kvs) == 0 {
			return
		}
		base, ts := l.EndOffset(), l.clock.Millis()
		l.mustAppend(kvBatch(t, spec, ts, kvs...))
		for i, r := range kvs {
			v := r.value
			all = append(all, logRecord{off: base + int64(i), key: r.key, value: &v, ts: ts + int64(i)})
		}
		if spec.producerID >= 0 {
			spec.seq += int32(len(kvs))
		}
		kvs = kvs[:0]
	}
	for round := range rounds {
		for k := range nkeys {
			kvs = append(kvs, put(fmt.Sprintf("key-%03d", k), fmt.Sprintf("value-%03d-%d", k, round)))
			if len(kvs) == perBatch {
				flush()
			}
		}
	}
	flush()
	return all
}

func sameRecords(t testing.TB, what string, got []logRecord, want map[string]logRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d (one per key): %v", what, len(got), len(want), got)
	}
	for _, r := range got {
		w, ok := want[r.key]
		if !ok || w.off != r.off || (w.value == nil) != (r.value == nil) || w.value != nil && *w.value != *r.value {
			t.Fatalf("%s: record %v, want %v", what, r, w)
		}
	}
}

func TestCleanKeepsLatestValuePerKey(t *testing.T) {
	l := openTest(t, compactConfig())
	all := updates(t, l, 20, 30, 7, plain())
	l.roll()
	want := latestByKey(all)
	start, end := l.StartOffset(), l.EndOffset()

	res := l.clean(newTestCleaner())
	if !res.Cleaned || res.RecordsRemoved != int64(len(all)-len(want)) || res.EndOffset != end {
		t.Fatalf("clean result %+v; want %d records removed up to %d", res, len(all)-len(want), end)
	}
	got, hs := readLog(t, l.Log)
	sameRecords(t, "after cleaning", got, want)
	if l.StartOffset() != start || l.EndOffset() != end {
		t.Fatalf("offsets moved: [%d, %d), was [%d, %d)", l.StartOffset(), l.EndOffset(), start, end)
	}
	// Kafka's batch semantics: batches keep their offsets, so consecutive
	// batches still follow each other without overlapping.
	for _, h := range hs {
		if h.NumRecords == 0 || h.LastOffsetDelta < h.NumRecords-1 {
			t.Fatalf("batch %+v", h)
		}
	}

	// A read at any offset, including those compacted away, returns the
	// first batch holding an offset at or after it.
	for off := start; off < end; off++ {
		info, err := l.Read(nil, off, 1, end)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		h, err := ValidateStoredBatch(info.Records)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(hs, func(b BatchHeader) bool { return b.LastOffset() >= off })
		if h.BaseOffset != hs[i].BaseOffset {
			t.Fatalf("Read(%d) gave the batch at %d, want %d", off, h.BaseOffset, hs[i].BaseOffset)
		}
	}

	// The cleaned log survives a restart and takes appends.
	l2 := l.reopen(true)
	got2, _ := readLog(t, l2.Log)
	sameRecords(t, "after reopening", got2, want)
	if info := l2.mustAppend(kvBatch(t, plain(), t0, put("key-000", "new"))); info.BaseOffset != end {
		t.Fatalf("append after cleaning at %d, want %d", info.BaseOffset, end)
	}
	if res := l2.clean(newTestCleaner()); res.Cleaned {
		t.Fatalf("second cleaning with nothing dirty: %+v", res)
	}

	// The first cleaning rewrote each (full) segment on its own; the next
	// one merges the small cleaned segments into one.
	if n := len(l2.segments()); n < 3 {
		t.Fatalf("only %d segments: the test needs more", n)
	}
	l2.roll()
	l2.clean(newTestCleaner())
	if n := len(l2.segments()); n != 2 {
		t.Fatalf("%d segments after cleaning again, want the merged cleaned segment and the active one", n)
	}
	want["key-000"] = logRecord{off: end, key: "key-000", value: ptr("new")}
	got3, _ := readLog(t, l2.Log)
	sameRecords(t, "after merging", got3, want)
}

func ptr[T any](v T) *T { return &v }

func TestCleanNeverRewritesActiveSegment(t *testing.T) {
	cfg := compactConfig()
	cfg.SegmentBytes = 1 << 20
	l := openTest(t, cfg)
	old := updates(t, l, 5, 10, 5, plain())
	l.roll()
	active := updates(t, l, 5, 10, 5, plain()) // all in the active segment
	activePath := l.active().path(logSuffix)
	before, err := os.ReadFile(activePath)
	if err != nil {
		t.Fatal(err)
	}
	l.clean(newTestCleaner())
	after, err := os.ReadFile(activePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the active segment was rewritten")
	}
	// The offset map stops at the active segment: the inactive segment
	// keeps the latest record of each key as of its own end, and every
	// record of the active segment, superseded or not, is still there.
	got, _ := readLog(t, l.Log)
	want := append(slices.Collect(maps.Values(latestByKey(old))), active...)
	slices.SortFunc(want, func(a, b logRecord) int { return int(a.off - b.off) })
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after cleaning:\n got %v\nwant %v", got, want)
	}
}

// TestCleanEmptiesFirstSegment: when every record of the first segment is
// superseded, the cleaned first segment is empty but kept, so the log start
// offset does not move (a consumer at offset 0 keeps reading from there).
func TestCleanEmptiesFirstSegment(t *testing.T) {
	cfg := compactConfig()
	cfg.SegmentBytes = 1 << 20
	l := openTest(t, cfg)
	updates(t, l, 5, 20, 5, plain())
	l.roll()
	cfg.SegmentBytes = l.Size() + l.Size()/2 // the two segments do not fit one
	l.SetConfig(cfg)
	second := updates(t, l, 5, 20, 5, plain())
	l.roll()
	l.clean(newTestCleaner())
	if l.StartOffset() != 0 || l.segments()[0].base != 0 || l.segments()[0].size.Load() != 0 {
		t.Fatalf("start %d, first segment at %d with %d bytes", l.StartOffset(), l.segments()[0].base, l.segments()[0].size.Load())
	}
	check := func(l *testLog) {
		t.Helper()
		got, _ := readLog(t, l.Log)
		sameRecords(t, "cleaned", got, latestByKey(second))
		info, err := l.Read(nil, 0, 1, l.EndOffset())
		if err != nil {
			t.Fatal(err)
		}
		if h := parseHeader(info.Records); h.LastOffset() < second[0].off {
			t.Fatalf("Read(0) gave a batch ending at %d", h.LastOffset())
		}
	}
	check(l)
	l2 := l.reopen(true)
	if l2.StartOffset() != 0 || len(l2.segments()) != 3 {
		t.Fatalf("after reopening: start %d, %d segments", l2.StartOffset(), len(l2.segments()))
	}
	check(l2)
}

func TestCleanTombstones(t *testing.T) {
	cfg := compactConfig()
	cfg.DeleteRetention = time.Hour
	l := openTest(t, cfg)
	c := newTestCleaner()
	l.mustAppend(kvBatch(t, plain(), l.clock.Millis(), put("a", "1"), put("b", "1"), put("c", "1")))
	l.mustAppend(kvBatch(t, plain(), l.clock.Millis(), del("a"), put("b", "2")))
	l.roll()
	l.mustAppend(kvBatch(t, plain(), l.clock.Millis(), put("d", "1")))
	l.roll()

	keys := func() string {
		recs, _ := readLog(t, l.Log)
		var s []string
		for _, r := range recs {
			s = append(s, r.String())
		}
		return strings.Join(s, " ")
	}
	l.clean(c)
	// The tombstone is the latest record of a: kept, and a's value is gone.
	if got, want := keys(), "2:c=1 3:a=<tombstone> 4:b=2 5:d=1"; got != want {
		t.Fatalf("after the first cleaning: %s, want %s", got, want)
	}
	if !l.segments()[0].hasDeleteHorizon(t) {
		t.Fatal("the tombstone's batch has no delete horizon")
	}

	// Just before delete.retention.ms, a cleaning (of new dirty data)
	// keeps it; CleanFilthiest sees nothing to do without new data.
	l.clock.Advance(time.Hour - time.Millisecond)
	if cl, _, err := c.CleanFilthiest(context.Background(), []*Log{l.Log}); cl != nil || err != nil {
		t.Fatalf("cleaned before the delete horizon: %v", err)
	}
	l.mustAppend(kvBatch(t, plain(), l.clock.Millis(), put("c", "2")))
	l.roll()
	l.clean(c)
	if got, want := keys(), "3:a=<tombstone> 4:b=2 5:d=1 6:c=2"; got != want {
		t.Fatalf("after a cleaning before the horizon: %s, want %s", got, want)
	}

	// At the horizon the background cleaner picks the log by itself and
	// removes the tombstone.
	l.clock.Advance(time.Millisecond)
	if cl, res, err := c.CleanFilthiest(context.Background(), []*Log{l.Log}); cl != l.Log || err != nil || !res.Cleaned {
		t.Fatalf("CleanFilthiest at the delete horizon: %v %+v", err, res)
	}
	if got, want := keys(), "4:b=2 5:d=1 6:c=2"; got != want {
		t.Fatalf("after the delete horizon: %s, want %s", got, want)
	}
	// And then there is nothing left to do.
	if cl, _, _ := c.CleanFilthiest(context.Background(), []*Log{l.Log}); cl != nil {
		t.Fatal("cleaned again without a reason")
	}
	// The horizon is remembered across a restart (cleaner checkpoint).
	l2 := l.reopen(true)
	if cl, _, _ := c.CleanFilthiest(context.Background(), []*Log{l2.Log}); cl != nil {
		t.Fatal("cleaned again after a restart without a reason")
	}
}

// hasDeleteHorizon reports whether any batch of the segment has its delete
// horizon set.
func (s *segment) hasDeleteHorizon(t testing.TB) bool {
	found := false
	if err := s.forEachHeader(s.base, func(h *BatchHeader) { found = found || h.HasDeleteHorizon() }); err != nil {
		t.Fatal(err)
	}
	return found
}

func TestCleanDirtyRatioAndFilthiest(t *testing.T) {
	cfg := compactConfig()
	cfg.MinCleanableDirtyRatio = 0.5
	c := newTestCleaner()
	a := openTest(t, cfg)
	b := openTest(t, cfg)
	updates(t, a, 10, 10, 10, plain())
	a.roll()
	a.clean(c)
	// a: a small dirty part on top of its clean part.
	updates(t, a, 10, 1, 10, plain())
	a.roll()
	if cl, _, _ := c.CleanFilthiest(context.Background(), []*Log{a.Log}); cl != nil {
		t.Fatalf("cleaned a log below min.cleanable.dirty.ratio (%.2f)", a.planCleaning(a.Log.cfg.Load(), a.clock.Millis()).ratio)
	}
	// b: all dirty, so the filthiest.
	updates(t, b, 10, 5, 10, plain())
	b.roll()
	if cl, res, err := c.CleanFilthiest(context.Background(), []*Log{a.Log, b.Log}); cl != b.Log || err != nil || res.DirtyRatio != 1 {
		t.Fatalf("CleanFilthiest picked %v (%v, %+v), want b", cl, err, res)
	}
	// More dirt on a passes the ratio.
	updates(t, a, 10, 12, 10, plain())
	a.roll()
	if cl, res, _ := c.CleanFilthiest(context.Background(), []*Log{a.Log, b.Log}); cl != a.Log || res.DirtyRatio <= 0.5 {
		t.Fatalf("CleanFilthiest picked %v (%+v), want a", cl, res)
	}
	// A ratio of 1 is never exceeded: nothing to clean.
	cfg.MinCleanableDirtyRatio = 1
	a.SetConfig(cfg)
	updates(t, a, 10, 12, 10, plain())
	a.roll()
	if cl, _, _ := c.CleanFilthiest(context.Background(), []*Log{a.Log}); cl != nil {
		t.Fatal("cleaned with min.cleanable.dirty.ratio=1")
	}
}

func TestCleanMinCompactionLag(t *testing.T) {
	cfg := compactConfig()
	cfg.MinCompactionLag = 10 * time.Minute
	cfg.MinCleanableDirtyRatio = 0
	l := openTest(t, cfg)
	c := newTestCleaner()
	old := updates(t, l, 5, 4, 5, plain())
	l.roll()
	l.clock.Advance(20 * time.Minute)
	young := updates(t, l, 5, 4, 5, plain()) // timestamps: now
	l.roll()

	res := l.clean(c)
	// Only the old segment is cleaned; the young one is not even read
	// into the offset map, so old records superseded there stay.
	if res.EndOffset != young[0].off {
		t.Fatalf("cleaned up to %d, want %d (where the young segment starts)", res.EndOffset, young[0].off)
	}
	got, _ := readLog(t, l.Log)
	want := append(slices.Collect(maps.Values(latestByKey(old))), young...)
	slices.SortFunc(want, func(a, b logRecord) int { return int(a.off - b.off) })
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after cleaning within the lag:\n got %v\nwant %v", got, want)
	}
	if cl, _, _ := c.CleanFilthiest(context.Background(), []*Log{l.Log}); cl != nil {
		t.Fatal("cleaned a segment younger than min.compaction.lag.ms")
	}
	l.clock.Advance(10*time.Minute + time.Second)
	if cl, _, _ := c.CleanFilthiest(context.Background(), []*Log{l.Log}); cl == nil {
		t.Fatal("did not clean once the lag passed")
	}
	got, _ = readLog(t, l.Log)
	sameRecords(t, "after the lag", got, latestByKey(append(old, young...)))
}

func TestCleanMaxCompactionLag(t *testing.T) {
	cfg := compactConfig()
	cfg.MinCleanableDirtyRatio = 0.99
	cfg.MaxCompactionLag = time.Hour
	l := openTest(t, cfg)
	c := newTestCleaner()
	updates(t, l, 5, 10, 5, plain())
	l.roll()
	l.clean(c)
	updates(t, l, 5, 1, 5, plain()) // a little dirt, in the active segment
	if _, err := l.Maintain(); err != nil {
		t.Fatal(err)
	}
	if cl, _, _ := c.CleanFilthiest(context.Background(), []*Log{l.Log}); cl != nil {
		t.Fatal("cleaned below the dirty ratio before max.compaction.lag.ms")
	}
	// After the lag the active segment is rolled (even though segment.ms
	// is a week) and the log is cleaned regardless of the ratio.
	l.clock.Advance(time.Hour + time.Second)
	if _, err := l.Maintain(); err != nil {
		t.Fatal(err)
	}
	if l.active().size.Load() != 0 {
		t.Fatal("the active segment was not rolled after max.compaction.lag.ms")
	}
	if cl, _, _ := c.CleanFilthiest(context.Background(), []*Log{l.Log}); cl == nil {
		t.Fatal("not cleaned after max.compaction.lag.ms")
	}
}

func TestAppendRejectsKeylessRecordsWhenCompacted(t *testing.T) {
	for _, cc := range allCodecs {
		t.Run(cc.name, func(t *testing.T) {
			l := openTest(t, compactConfig())
			s := plain()
			s.codec, s.xerial = cc.codec, cc.xerial
			good := kvBatch(t, s, t0, put("k", "v"), kv{key: "", value: "empty keys are keys"})
			l.mustAppend(good)
			recs := []rec{{key: []byte("a"), value: []byte("1")}, {value: []byte("no key")}, {key: []byte("b")}, {value: []byte("no key either")}}
			bad := append(buildBatch(t, s, recs[:1]), buildBatch(t, s, recs[1:])...)
			_, err := l.Append(bad, 0)
			wantKerr(t, err, kerr.InvalidRecord)
			var ire *InvalidRecordsError
			if !errors.As(err, &ire) || len(ire.Records) != 2 || ire.Records[0].Index != 1 || ire.Records[1].Index != 3 {
				t.Fatalf("error %v: want records 1 and 3 rejected", err)
			}
			if !strings.Contains(err.Error(), "no key") {
				t.Fatalf("message %q does not explain", err)
			}
			if l.EndOffset() != 2 {
				t.Fatalf("end offset %d after a rejected append", l.EndOffset())
			}
			// A topic that is not compacted takes them: no decoding there.
			cfg := smallConfig()
			l2 := openTest(t, cfg)
			l2.mustAppend(bad)
		})
	}
}

func TestCleanCompressedBatches(t *testing.T) {
	for _, cc := range allCodecs {
		t.Run(cc.name, func(t *testing.T) {
			cfg := compactConfig()
			cfg.LogAppendTime = cc.codec == CompressionZstd // one codec with LogAppendTime
			l := openTest(t, cfg)
			s := plain()
			s.codec, s.xerial = cc.codec, cc.xerial
			all := updates(t, l, 15, 10, 8, s)
			l.clock.Advance(time.Second)
			l.mustAppend(kvBatch(t, s, l.clock.Millis(), del("key-001"), put("key-002", "last")))
			all = append(all,
				logRecord{off: l.EndOffset() - 2, key: "key-001", ts: l.clock.Millis()},
				logRecord{off: l.EndOffset() - 1, key: "key-002", value: ptr("last"), ts: l.clock.Millis() + 1})
			l.roll()
			l.clean(newTestCleaner())
			got, hs := readLog(t, l.Log)
			sameRecords(t, "after cleaning", got, latestByKey(all))
			for _, h := range hs {
				if h.Compression() != cc.codec {
					t.Fatalf("batch at %d has codec %d, want %d", h.BaseOffset, h.Compression(), cc.codec)
				}
				if h.IsLogAppendTime() != cfg.LogAppendTime {
					t.Fatalf("batch at %d lost its timestamp type", h.BaseOffset)
				}
			}
			seg := l.segments()[0]
			first := readSegmentBytes(t, seg)
			if cc.xerial && !bytes.Contains(first, xerialMagic) {
				t.Fatal("rewritten snappy batches lost the xerial framing")
			}
			// Record timestamps survive, also where the delete horizon
			// replaced the batch's first timestamp.
			want := latestByKey(all)
			for _, r := range got {
				if !cfg.LogAppendTime && r.ts != want[r.key].ts {
					t.Fatalf("record %v has timestamp %d, want %d", r, r.ts, want[r.key].ts)
				}
			}
			l2 := l.reopen(true)
			got2, _ := readLog(t, l2.Log)
			sameRecords(t, "after reopening", got2, latestByKey(all))
		})
	}
}

func readSegmentBytes(t testing.TB, s *segment) []byte {
	t.Helper()
	b := make([]byte, s.size.Load())
	if _, err := readFullAt(s.f, b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCleanKeepsProducerState: the cleaner keeps the last batch of every
// idempotent producer, empty if all its records were superseded, so that
// producer state rebuilt from the log (no snapshot) still detects retries
// and sequence gaps.
func TestCleanKeepsProducerState(t *testing.T) {
	l := openTest(t, compactConfig())
	// Producer 7 writes keys a, b; producer 9 then overwrites them all.
	p7 := kvBatch(t, idem(7, 2, 0), t0, put("a", "7-0"), put("b", "7-0"))
	p7last := kvBatch(t, idem(7, 2, 2), t0, put("a", "7-1"), put("b", "7-1"), put("a", "7-2"))
	l.mustAppend(p7)
	l.mustAppend(append([]byte(nil), p7last...))
	seq := int32(0)
	for i := range 5 {
		l.mustAppend(kvBatch(t, idem(9, 0, seq), t0, put("a", fmt.Sprint("9-", i)), put("b", fmt.Sprint("9-", i))))
		seq += 2
	}
	l.roll()
	want := l.Producers()

	l.clean(newTestCleaner())
	recs, hs := readLog(t, l.Log)
	if got := fmt.Sprint(recs); got != "[13:a=9-4 14:b=9-4]" {
		t.Fatalf("records after cleaning: %s", got)
	}
	// Producer 7's last batch is kept empty, with its offsets and sequences.
	if len(hs) != 2 || hs[0].ProducerID != 7 || hs[0].NumRecords != 0 || hs[0].BaseOffset != 2 || hs[0].LastOffset() != 4 ||
		hs[0].BaseSequence != 2 || hs[0].LastSequence() != 4 || hs[0].ProducerEpoch != 2 {
		t.Fatalf("batches after cleaning: %+v", hs)
	}

	// Without snapshots, producer state comes from the cleaned batches.
	l.Close()
	removeGlob(t, filepath.Join(l.dir, "*"+snapshotSuffix))
	l2 := openAt(t, l.dir, l.cfg, l.clock, nil)
	if got := l2.Producers(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("producers after cleaning and reopening without snapshots:\n got %+v\nwant %+v", got, want)
	}
	// A retry of producer 7's last batch is still a duplicate.
	info, err := l2.Append(p7last, 0)
	if err != nil || !info.Duplicate || info.BaseOffset != 2 || info.LastOffset != 4 {
		t.Fatalf("retry of the last batch: %+v %v", info, err)
	}
	for _, s := range []struct {
		pid     int64
		epoch   int16
		seq     int32
		wantErr *kerr.Error
	}{
		{7, 2, 6, kerr.OutOfOrderSequenceNumber}, // a gap after 4
		{9, 0, 11, kerr.OutOfOrderSequenceNumber},
		{7, 1, 0, kerr.InvalidProducerEpoch},
		{9, 0, 10, nil},
		{7, 2, 5, nil},
	} {
		_, err := l2.Append(kvBatch(t, idem(s.pid, s.epoch, s.seq), t0, put("c", "1")), 0)
		if s.wantErr != nil {
			wantKerr(t, err, s.wantErr)
		} else if err != nil {
			t.Fatalf("producer %d seq %d: %v", s.pid, s.seq, err)
		}
	}
}

// crashFS lets the first n mutating file system operations (creating,
// writing, fsyncing, truncating, renaming, removing) through once armed,
// and fails every later one without effect: the process "crashed" there.
// What reached the operating system stays, as after kill -9.
type crashFS struct {
	FS
	armed   atomic.Bool
	left    atomic.Int64
	crashed atomic.Bool
	mu      sync.Mutex
	ops     []string
}

func (c *crashFS) step(op, name string) error {
	if !c.armed.Load() {
		return nil
	}
	if c.left.Add(-1) < 0 {
		c.crashed.Store(true)
		return errInjected
	}
	c.mu.Lock()
	c.ops = append(c.ops, op+" "+filepath.Base(name))
	c.mu.Unlock()
	return nil
}

func (c *crashFS) arm(n int) { c.left.Store(int64(n)); c.armed.Store(true) }

func (c *crashFS) OpenFile(name string, flag int, perm uint32) (File, error) {
	if flag&(os.O_CREATE|os.O_TRUNC) != 0 {
		if err := c.step("create", name); err != nil {
			return nil, err
		}
	}
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, fs: c, name: name}, nil
}

func (c *crashFS) Rename(a, b string) error {
	if err := c.step("rename", a+" → "+filepath.Base(b)); err != nil {
		return err
	}
	return c.FS.Rename(a, b)
}

func (c *crashFS) Remove(name string) error {
	if err := c.step("remove", name); err != nil {
		return err
	}
	return c.FS.Remove(name)
}

type crashFile struct {
	File
	fs   *crashFS
	name string
}

func (f *crashFile) Write(p []byte) (int, error) {
	if err := f.fs.step("write", f.name); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *crashFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.step("write", f.name); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *crashFile) Sync() error {
	if err := f.fs.step("fsync", f.name); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *crashFile) Truncate(size int64) error {
	if err := f.fs.step("truncate", f.name); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

// TestCleanCrashAtEveryStep crashes a cleaning at every one of its file
// system operations in turn (writing the cleaned segment, its indexes, the
// swap record, each rename of the swap, the checkpoint) and recovers a copy
// of the directory as the crash left it: the log must hold either exactly
// the records before the cleaning or exactly the cleaned ones, never a mix
// or a loss, and no leftover files.
func TestCleanCrashAtEveryStep(t *testing.T) {
	cfg := compactConfig()
	cfg.SegmentBytes = 64 << 10 // the three segments are cleaned as one group
	cfg.DeleteRetention = time.Hour
	for n := 0; ; n++ {
		// fsyncs are counted but skipped: the crash is a process crash,
		// and what reached the operating system survives it.
		fsys := &crashFS{FS: noSyncFS{OSFS()}}
		l := openAt(t, t.TempDir(), cfg, newClock(t0), fsys)
		var all []logRecord
		for range 3 {
			all = append(all, updates(t, l, 6, 4, 5, plain())...)
			l.roll()
		}
		l.mustAppend(kvBatch(t, plain(), t0, del("key-001")))
		all = append(all, logRecord{off: l.EndOffset() - 1, key: "key-001"})
		before, _ := readLog(t, l.Log)
		want := slices.Collect(maps.Values(latestByKey(all)))
		slices.SortFunc(want, func(a, b logRecord) int { return int(a.off - b.off) })
		l.roll()

		fsys.arm(n)
		_, err := newTestCleaner().Clean(context.Background(), l.Log)
		crashed := fsys.crashed.Load()
		if !crashed && err != nil {
			t.Fatalf("clean without a crash: %v", err)
		}
		// (A crash after the swap, in the checkpoint write or removing
		// replaced files, is not an error of the cleaning.)
		// In this process, the log is either offline or consistent.
		if l.Offline() == nil {
			if got, _ := readLog(t, l.Log); fmt.Sprint(got) != fmt.Sprint(before) && fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("crash at op %d: the running log serves %v", n, got)
			}
		}

		l2 := l.crashCopy()
		got, _ := readLog(t, l2.Log)
		if fmt.Sprint(got) != fmt.Sprint(before) && fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("crash at op %d (after %v): recovered\n%v\nwant the records before cleaning\n%v\nor after\n%v", n, fsys.ops, got, before, want)
		}
		ents, _ := os.ReadDir(l2.dir)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), cleanedSuffix) || strings.HasSuffix(e.Name(), swapSuffix) ||
				strings.HasSuffix(e.Name(), deletedSuffix) || strings.HasSuffix(e.Name(), tmpSuffix) {
				t.Fatalf("crash at op %d: recovery left %s", n, e.Name())
			}
		}
		if l2.EndOffset() != l.EndOffset() {
			t.Fatalf("crash at op %d: end offset %d, want %d", n, l2.EndOffset(), l.EndOffset())
		}
		l2.mustAppend(kvBatch(t, plain(), t0, put("x", "y")))
		l3 := l2.reopen(true)
		if got3, _ := readLog(t, l3.Log); len(got3) != len(got)+1 {
			t.Fatalf("crash at op %d: %d records after reopening again, want %d", n, len(got3), len(got)+1)
		}
		if !crashed {
			if n < 20 {
				t.Fatalf("the cleaning took only %d file system operations", n)
			}
			t.Logf("crashed a cleaning at each of its %d file system operations", n)
			return
		}
	}
}

// TestReadWhileCleaning runs an appender, repeated cleanings and readers at
// once (run it with -race). Every read returns valid batches whose records
// are exactly what was appended at their offsets, in increasing offset
// order; a consumer reading the log from the start to its (moving) end while
// it is cleaned sees, for every key, at least its latest value as of when it
// started.
func TestReadWhileCleaning(t *testing.T) {
	const (
		nkeys    = 37
		perBatch = 5
		nBatches = 600
	)
	cfg := compactConfig()
	cfg.SegmentBytes = 2048
	cfg.IndexIntervalBytes = 100
	l := openTest(t, cfg)
	keyOf := func(off int64) string { return fmt.Sprintf("k%02d", off%nkeys) }
	valueOf := func(off int64) string { return fmt.Sprintf("v%d", off) }

	check := func(b []byte, latest map[string]int64) (last int64, err error) {
		for len(b) > 0 {
			h, err := ValidateStoredBatch(b)
			if err != nil {
				return 0, err
			}
			prev := int64(-1)
			err = DecodeRecords(b[:h.Size()], func(r *Record) error {
				if r.Offset <= prev || string(r.Key) != keyOf(r.Offset) || string(r.Value) != valueOf(r.Offset) {
					return fmt.Errorf("record at %d (after %d): %s=%s", r.Offset, prev, r.Key, r.Value)
				}
				prev = r.Offset
				latest[string(r.Key)] = r.Offset
				return nil
			})
			if err != nil {
				return 0, err
			}
			last = h.LastOffset()
			b = b[h.Size():]
		}
		return last, nil
	}

	var wg sync.WaitGroup
	done := make(chan struct{})
	firstCleaning := make(chan struct{})
	errs := make(chan error, 10)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	wg.Add(1)
	go func() { // the appender: record at offset o is keyOf(o)=valueOf(o)
		defer wg.Done()
		defer close(done)
		for i := range nBatches {
			if i == nBatches/2 {
				// Make sure cleanings overlap the second half.
				select {
				case <-firstCleaning:
				case <-time.After(time.Minute):
					report(errors.New("no cleaning within a minute"))
					return
				}
			}
			base := l.EndOffset()
			kvs := make([]kv, perBatch)
			for i := range kvs {
				kvs[i] = put(keyOf(base+int64(i)), valueOf(base+int64(i)))
			}
			if _, err := l.Append(kvBatch(t, plain(), t0, kvs...), 0); err != nil {
				report(err)
				return
			}
		}
	}()
	var cleanings atomic.Int64
	wg.Add(1)
	go func() { // the cleaner
		defer wg.Done()
		c := newTestCleaner()
		for {
			select {
			case <-done:
				return
			default:
			}
			res, err := c.Clean(context.Background(), l.Log)
			if err != nil {
				report(err)
				return
			}
			if res.Cleaned && cleanings.Add(1) == 1 {
				close(firstCleaning)
			}
		}
	}()
	for r := range 2 {
		wg.Add(1)
		go func() { // consumers from the start
			defer wg.Done()
			for pass := 0; ; pass++ {
				select {
				case <-done:
					return
				default:
				}
				end := l.EndOffset()
				latest := map[string]int64{}
				off := l.StartOffset()
				for off < l.EndOffset() {
					info, err := l.Read(nil, off, 300+r*700, l.EndOffset())
					if err != nil {
						report(fmt.Errorf("Read(%d): %w", off, err))
						return
					}
					last, err := check(info.Records, latest)
					if err != nil {
						report(fmt.Errorf("Read(%d): %w", off, err))
						return
					}
					if last < off {
						report(fmt.Errorf("Read(%d) went backwards to %d", off, last))
						return
					}
					off = last + 1
				}
				// Every key written before the pass started is there with
				// a value at least as new as the last one before end.
				for k := int64(0); k < nkeys && k < end; k++ {
					lastBefore := k + (end-1-k)/nkeys*nkeys
					if latest[keyOf(k)] < lastBefore {
						report(fmt.Errorf("pass %d up to %d: key %s last seen at %d, but written at %d", pass, end, keyOf(k), latest[keyOf(k)], lastBefore))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if cleanings.Load() == 0 {
		t.Fatal("no cleaning ran during the test")
	}
	l.roll()
	l.clean(newTestCleaner())
	recs, _ := readLog(t, l.Log)
	if len(recs) != nkeys {
		t.Fatalf("%d records after the final cleaning, want %d", len(recs), nkeys)
	}
	t.Logf("%d cleanings ran while reading", cleanings.Load())
}

// sleepRecorder is a throttle clock: Sleep advances it.
type sleepRecorder struct {
	clock *fakeClock
	slept atomic.Int64
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.slept.Add(int64(d))
	s.clock.Advance(d)
	return ctx.Err()
}

func TestCleanerIOThrottle(t *testing.T) {
	l := openTest(t, compactConfig())
	updates(t, l, 50, 60, 20, plain())
	l.roll()
	rec := &sleepRecorder{clock: newClock(t0)}
	const rate = 100 << 10
	c := NewCleaner(CleanerConfig{IOMaxBytesPerSecond: rate, Now: rec.clock.Now, Sleep: rec.sleep, Logger: testLogger()})
	res := l.clean(c)
	io := res.BytesRead + res.BytesWritten
	want := time.Duration(float64(io) / rate * float64(time.Second))
	got := time.Duration(rec.slept.Load())
	if got > want || got < want-throttleBurst-time.Millisecond {
		t.Fatalf("the cleaning read %d and wrote %d bytes and slept %v; at %d bytes/s want %v (less up to %v of burst)",
			res.BytesRead, res.BytesWritten, got, rate, want, throttleBurst)
	}
	if want < time.Second {
		t.Fatalf("only %v of I/O at the rate: the test needs more data", want)
	}

	// Unthrottled, nothing sleeps.
	l2 := openTest(t, compactConfig())
	updates(t, l2, 50, 60, 20, plain())
	l2.roll()
	rec2 := &sleepRecorder{clock: newClock(t0)}
	l2.clean(NewCleaner(CleanerConfig{Now: rec2.clock.Now, Sleep: rec2.sleep, Logger: testLogger()}))
	if rec2.slept.Load() != 0 {
		t.Fatal("an unthrottled cleaner slept")
	}
}

// TestCleanerErrorStopsOnlyCleaning: a cleaning that fails (here on a
// damaged batch in an inactive segment) marks only that log uncleanable;
// the log keeps taking appends and serving reads, and the cleaner goes on
// with other logs.
func TestCleanerErrorStopsOnlyCleaning(t *testing.T) {
	h := &captureHandler{}
	clock := newClock(t0)
	dir := t.TempDir()
	bad, err := Open(dir, compactConfig(), Options{Now: clock.Now, Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bad.Close() })
	tl := &testLog{Log: bad, t: t, dir: dir, clock: clock, cfg: compactConfig(), fs: OSFS()}
	updates(t, tl, 5, 10, 5, plain())
	tl.roll()
	seg := bad.segments()[0]
	b := readSegmentBytes(t, seg)
	b[len(b)-3] ^= 0xff // inside the last batch: its CRC no longer matches
	if _, err := seg.f.WriteAt(b[len(b)-3:len(b)-2], int64(len(b)-3)); err != nil {
		t.Fatal(err)
	}
	good := openTest(t, compactConfig())
	updates(t, good, 5, 10, 5, plain())
	good.roll()

	c := newTestCleaner()
	cl, _, err := c.CleanFilthiest(context.Background(), []*Log{bad, good.Log})
	if cl != bad || err == nil || bad.CleanerError() == nil {
		t.Fatalf("CleanFilthiest: %v, %v; want the damaged log to fail", cl, err)
	}
	if h.find(slog.LevelError, "log cleaning failed") == nil {
		t.Fatal("the cleaner error was not logged")
	}
	if bad.Offline() != nil {
		t.Fatalf("a cleaner error took the log offline: %v", bad.Offline())
	}
	tl.mustAppend(kvBatch(t, plain(), t0, put("still", "works")))
	if _, err := bad.Read(nil, 0, 100, bad.EndOffset()); err != nil {
		t.Fatal(err)
	}
	// No .cleaned file is left behind.
	if m, _ := filepath.Glob(filepath.Join(dir, "*"+cleanedSuffix)); len(m) != 0 {
		t.Fatalf("left %v", m)
	}
	cl, _, err = c.CleanFilthiest(context.Background(), []*Log{bad, good.Log})
	if cl != good.Log || err != nil {
		t.Fatalf("the cleaner did not go on with the healthy log: %v %v", cl, err)
	}
	if cl, _, _ := c.CleanFilthiest(context.Background(), []*Log{bad}); cl != nil {
		t.Fatal("an uncleanable log was cleaned again")
	}
}

// TestCloseStopsCleaning: Close stops a cleaning in progress (here blocked
// in the I/O throttle) and returns once it has stopped; nothing is left
// behind and the log reopens as it was.
func TestCloseStopsCleaning(t *testing.T) {
	l := openTest(t, compactConfig())
	all := updates(t, l, 20, 20, 10, plain())
	l.roll()
	sleeping := make(chan struct{}, 1)
	c := NewCleaner(CleanerConfig{IOMaxBytesPerSecond: 1, Logger: testLogger(),
		Sleep: func(ctx context.Context, d time.Duration) error {
			select {
			case sleeping <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return ctx.Err()
		}})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Clean(context.Background(), l.Log)
		errc <- err
	}()
	<-sleeping
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Close returns once the cleaning has let go of the log: it left
	// nothing behind. (Clean itself returns a moment later, after it
	// released the log: waiting for its answer without a deadline would
	// race with that.)
	if m, _ := filepath.Glob(filepath.Join(l.dir, "*"+cleanedSuffix)); len(m) != 0 {
		t.Fatalf("left %v", m)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Clean returned %v, want ErrClosed", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the cleaning never stopped after Close")
	}
	l2 := openAt(t, l.dir, l.cfg, l.clock, nil)
	got, _ := readLog(t, l2.Log)
	if len(got) != len(all) {
		t.Fatalf("%d records after reopening, want %d", len(got), len(all))
	}
}

// TestCleanAbortsWhenSegmentsAreDeleted: retention (cleanup.policy
// compact,delete) deleting segments while they are being cleaned makes the
// cleaning give up quietly; the next one cleans what is left.
func TestCleanAbortsWhenSegmentsAreDeleted(t *testing.T) {
	cfg := compactConfig()
	cfg.RetentionMs = time.Hour
	l := openTest(t, cfg)
	updates(t, l, 10, 10, 10, plain())
	l.roll()
	l.clock.Advance(2 * time.Hour)
	latest := updates(t, l, 10, 3, 10, plain())
	l.roll()
	rec := &sleepRecorder{clock: newClock(t0)}
	deleted := 0
	c := NewCleaner(CleanerConfig{IOMaxBytesPerSecond: 10 << 10, Logger: testLogger(), Now: rec.clock.Now,
		Sleep: func(ctx context.Context, d time.Duration) error {
			if deleted == 0 {
				var err error
				if deleted, err = l.Maintain(); err != nil || deleted == 0 {
					t.Errorf("retention: %d %v", deleted, err)
				}
			}
			return rec.sleep(ctx, d)
		}})
	res, err := c.Clean(context.Background(), l.Log)
	if err != nil || res.Cleaned || l.CleanerError() != nil {
		t.Fatalf("clean during retention: %+v %v", res, err)
	}
	if m, _ := filepath.Glob(filepath.Join(l.dir, "*"+cleanedSuffix)); len(m) != 0 {
		t.Fatalf("left %v", m)
	}
	l.clean(newTestCleaner())
	got, _ := readLog(t, l.Log)
	sameRecords(t, "after retention and cleaning", got, latestByKey(latest))
}

// TestCleanWithSmallOffsetMap: when the dirty part has more keys than the
// offset map holds, a cleaning covers what the map reached and the next
// ones continue from there; every intermediate log keeps the latest record
// of every key.
func TestCleanWithSmallOffsetMap(t *testing.T) {
	l := openTest(t, compactConfig())
	all := updates(t, l, 40, 6, 8, plain())
	l.roll()
	want := latestByKey(all)
	c := NewCleaner(CleanerConfig{DedupeBufferBytes: 20 * (mapEntryOverhead + 7), Logger: testLogger()}) // about 20 keys
	var ends []int64
	for range 100 {
		res := l.clean(c)
		if !res.Cleaned {
			break
		}
		ends = append(ends, res.EndOffset)
		got, _ := readLog(t, l.Log)
		if g := latestByKey(got); fmt.Sprint(g) != fmt.Sprint(want) {
			t.Fatalf("after cleaning up to %d the latest records are\n%v\nwant\n%v", res.EndOffset, g, want)
		}
	}
	if len(ends) < 3 || ends[len(ends)-1] != l.EndOffset() {
		t.Fatalf("cleanings ended at %v; want several, the last at %d", ends, l.EndOffset())
	}
	got, _ := readLog(t, l.Log)
	sameRecords(t, "after all cleanings", got, want)
}

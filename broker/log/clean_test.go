package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
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

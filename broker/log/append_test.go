package log

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestAppendReadRoundTripAcrossRolls(t *testing.T) {
	l := openTest(t, smallConfig())
	var want []string
	next := int64(0)
	for i := range 200 {
		n := 1 + i%7
		recs := values(fmt.Sprintf("b%d", i), n, t0+int64(i))
		info := l.mustAppend(buildBatch(t, plain(), recs))
		if info.BaseOffset != next || info.LastOffset != next+int64(n)-1 || info.Records != n || info.Duplicate {
			t.Fatalf("append %d: %+v, want base %d last %d", i, info, next, next+int64(n)-1)
		}
		if info.LogAppendTime != -1 {
			t.Fatalf("LogAppendTime %d for a CreateTime log", info.LogAppendTime)
		}
		next += int64(n)
		for _, r := range recs {
			want = append(want, string(r.value))
		}
	}
	if got := len(segmentLogs(t, l.dir)); got < 5 {
		t.Fatalf("%d segments, want several (segment.bytes %d)", got, l.cfg.SegmentBytes)
	}
	if l.EndOffset() != next {
		t.Fatalf("end offset %d, want %d", l.EndOffset(), next)
	}
	check := func(l *testLog) {
		t.Helper()
		got := readValues(t, l.Log)
		if len(got) != len(want) {
			t.Fatalf("read %d records, want %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("record %d = %q, want %q", i, got[i], want[i])
			}
		}
	}
	check(l)
	var size int64
	for _, p := range segmentLogs(t, l.dir) {
		n, _ := OSFS().Stat(p)
		size += n
	}
	if l.Size() != size {
		t.Fatalf("Size %d, files hold %d", l.Size(), size)
	}
	l2 := l.reopen(true)
	check(l2)
	if l2.EndOffset() != next || l2.StartOffset() != 0 || l2.Size() != size {
		t.Fatalf("after reopen: start %d end %d size %d", l2.StartOffset(), l2.EndOffset(), l2.Size())
	}
	info := l2.mustAppend(simple(t, 2, t0))
	if info.BaseOffset != next {
		t.Fatalf("append after reopen at %d, want %d", info.BaseOffset, next)
	}
}

// resign recomputes a test batch's CRC after a header change.
func resign(b []byte) []byte {
	binary.BigEndian.PutUint32(b[offCRC:], batchCRC(b))
	return b
}

func TestAppendValidation(t *testing.T) {
	good := func() []byte { return simple(t, 3, t0) }
	mod := func(f func(b []byte) []byte) []byte { return f(good()) }
	cfg := smallConfig()
	cfg.MaxMessageBytes = 1000
	cases := []struct {
		name    string
		records []byte
		want    *kerr.Error
	}{
		{"empty", nil, kerr.CorruptMessage},
		{"shorter than a length field", []byte{0, 0, 0}, kerr.CorruptMessage},
		{"truncated batch", good()[:40], kerr.CorruptMessage},
		{"length beyond the records", mod(func(b []byte) []byte { return b[:len(b)-1] }), kerr.CorruptMessage},
		{"length below the header", mod(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offLength:], 10); return b }), kerr.CorruptMessage},
		{"crc mismatch", mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), kerr.CorruptMessage},
		{"crc field wrong", mod(func(b []byte) []byte { b[offCRC] ^= 0x80; return b }), kerr.CorruptMessage},
		{"magic 1", mod(func(b []byte) []byte { b[offMagic] = 1; return b }), kerr.InvalidRecord},
		{"magic 3", mod(func(b []byte) []byte { b[offMagic] = 3; return b }), kerr.CorruptMessage},
		{"unknown codec", mod(func(b []byte) []byte { b[offAttributes+1] |= 5; return resign(b) }), kerr.UnsupportedCompressionType},
		{"zero records", mod(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[offRecordCount:], 0)
			binary.BigEndian.PutUint32(b[offLastDelta:], math.MaxUint32)
			return resign(b)
		}), kerr.InvalidRecord},
		{"count disagrees with lastOffsetDelta", mod(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offRecordCount:], 7); return resign(b) }), kerr.InvalidRecord},
		{"over max.message.bytes", sizedBatch(t, 1, 1000, t0), kerr.MessageTooLarge},
		{"control batch", buildBatch(t, batchSpec{producerID: 1, epoch: 0, seq: 0, control: true}, values("c", 1, t0)), kerr.InvalidRecord},
		{"transactional without producer", buildBatch(t, batchSpec{producerID: -1, epoch: -1, seq: -1, transactional: true}, values("x", 1, t0)), kerr.InvalidRecord},
		{"producer with negative sequence", buildBatch(t, idem(5, 0, -1), values("x", 1, t0)), kerr.InvalidRecord},
		{"producer with negative epoch", buildBatch(t, idem(5, -1, 0), values("x", 1, t0)), kerr.InvalidRecord},
		{"second batch corrupt", append(good(), mod(func(b []byte) []byte { b[70] ^= 1; return b })...), kerr.CorruptMessage},
		{"trailing bytes", append(good(), 1, 2, 3), kerr.CorruptMessage},
		{"more than segment.bytes", bytes.Repeat(sizedBatch(t, 1, 900, t0), 5), kerr.RecordListTooLarge},
	}
	l := openTest(t, cfg)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info, err := l.Append(tc.records, 0)
			wantKerr(t, err, tc.want)
			if info != (AppendInfo{}) {
				t.Fatalf("info %+v on error", info)
			}
			if l.EndOffset() != 0 || l.Size() != 0 {
				t.Fatalf("rejected append changed the log: end %d size %d", l.EndOffset(), l.Size())
			}
		})
	}
	if info := l.mustAppend(good()); info.BaseOffset != 0 {
		t.Fatalf("good batch after bad ones at %d", info.BaseOffset)
	}
	if l.Offline() != nil {
		t.Fatalf("client errors took the log offline: %v", l.Offline())
	}
}

func TestAppendErrorMessagesExplain(t *testing.T) {
	l := openTest(t, smallConfig())
	b := simple(t, 1, t0)
	b[len(b)-1] ^= 1
	_, err := l.Append(b, 0)
	if msg := err.Error(); !bytes.Contains([]byte(msg), []byte("CRC-32C mismatch")) || !bytes.Contains([]byte(msg), []byte("CORRUPT_MESSAGE")) {
		t.Fatalf("message %q does not say what is wrong", msg)
	}
}

func TestAppendManyBatchesOneWrite(t *testing.T) {
	fsys := newFaultFS()
	l := openAt(t, t.TempDir(), smallConfig(), newClock(t0), fsys)
	records := append(append(simple(t, 2, t0), simple(t, 3, t0)...), simple(t, 1, t0)...)
	before := fsys.writes.Load()
	info, err := l.Append(records, -1) // no leader epoch: no epoch checkpoint write
	if err != nil {
		t.Fatal(err)
	}
	if w := fsys.writes.Load() - before; w != 1 {
		t.Fatalf("%d writes for one append, want 1", w)
	}
	if info.BaseOffset != 0 || info.LastOffset != 5 || info.Records != 6 || info.Bytes != len(records) {
		t.Fatalf("info %+v", info)
	}
	hs := readAll(t, l.Log)
	if len(hs) != 3 || hs[0].BaseOffset != 0 || hs[1].BaseOffset != 2 || hs[2].BaseOffset != 5 {
		t.Fatalf("batches %+v", hs)
	}
}

func TestAppendAssignsOffsetsAndLeaderEpoch(t *testing.T) {
	l := openTest(t, smallConfig())
	b := simple(t, 4, t0)
	binary.BigEndian.PutUint64(b, 12345) // whatever the client sent
	l.mustAppend(simple(t, 3, t0))
	if _, err := l.Append(b, 7); err != nil {
		t.Fatal(err)
	}
	info, err := l.Read(nil, 3, 1<<20, l.EndOffset())
	if err != nil {
		t.Fatal(err)
	}
	h := batches(t, info.Records)[0]
	if h.BaseOffset != 3 || h.PartitionLeaderEpoch != 7 || h.LastOffset() != 6 {
		t.Fatalf("stored header %+v", h)
	}
}

func TestLogAppendTime(t *testing.T) {
	cfg := smallConfig()
	cfg.LogAppendTime = true
	l := openTest(t, cfg)
	l.clock.Set(time.UnixMilli(t0 + 5000))
	for _, codec := range []int{CompressionNone, CompressionZstd} {
		s := plain()
		s.codec = codec
		b := buildBatch(t, s, values("x", 3, 1000)) // producer clock far in the past
		info := l.mustAppend(b)
		if info.LogAppendTime != t0+5000 {
			t.Fatalf("LogAppendTime %d, want %d", info.LogAppendTime, t0+5000)
		}
		got, err := l.Read(nil, info.BaseOffset, 1<<20, l.EndOffset())
		if err != nil {
			t.Fatal(err)
		}
		h := batches(t, got.Records)[0] // validates the CRC
		if !h.IsLogAppendTime() || h.MaxTimestamp != t0+5000 || h.FirstTimestamp != t0+5000 || h.Compression() != codec {
			t.Fatalf("stored header %+v", h)
		}
		err = DecodeRecords(got.Records, func(r *Record) error {
			if r.Timestamp != t0+5000 {
				return fmt.Errorf("record %d timestamp %d", r.Offset, r.Timestamp)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The log append time also drives the segment statistics.
	if ts, off, err := l.MaxTimestamp(); err != nil || ts != t0+5000 || off != 0 {
		t.Fatalf("MaxTimestamp %d %d %v", ts, off, err)
	}
}

func TestWait(t *testing.T) {
	l := openTest(t, smallConfig())
	ch := l.Wait()
	if ch2 := l.Wait(); ch2 != ch {
		t.Fatal("two waits before an append got different channels")
	}
	select {
	case <-ch:
		t.Fatal("closed before any append")
	default:
	}
	l.mustAppend(simple(t, 1, t0))
	select {
	case <-ch:
	default:
		t.Fatal("not closed by the append")
	}
	ch = l.Wait()
	select {
	case <-ch:
		t.Fatal("new channel already closed")
	default:
	}
	// A rejected append does not wake waiters.
	_, _ = l.Append([]byte{1}, 0)
	select {
	case <-ch:
		t.Fatal("closed by a failed append")
	default:
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("not closed by Close")
	}
	select {
	case <-l.Wait():
	default:
		t.Fatal("Wait after Close is not closed")
	}
}

func TestAppendAllocations(t *testing.T) {
	for _, lat := range []bool{false, true} {
		t.Run(fmt.Sprintf("LogAppendTime=%v", lat), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.LogAppendTime = lat
			l := openTest(t, cfg)
			b := sizedBatch(t, 100, 100, t0)
			for range 200 { // warm up the index arrays
				l.mustAppend(b)
			}
			allocs := testing.AllocsPerRun(500, func() {
				if _, err := l.Append(b, 0); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per append, want 0", allocs)
			}
		})
	}
}

func TestReadAllocations(t *testing.T) {
	l := openTest(t, DefaultConfig())
	b := sizedBatch(t, 100, 100, t0)
	for range 100 {
		l.mustAppend(b)
	}
	dst := make([]byte, 0, 1<<20)
	allocs := testing.AllocsPerRun(500, func() {
		if _, err := l.Read(dst, 5000, 64<<10, l.EndOffset()); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per read, want 0", allocs)
	}
}

func TestFlushPolicy(t *testing.T) {
	type step struct {
		records   int
		advanceMs int64
		maintain  bool
		wantSync  bool
	}
	cases := []struct {
		name  string
		msgs  int64
		ms    time.Duration
		steps []step
	}{
		{"every append", 1, time.Duration(math.MaxInt64), []step{{records: 1, wantSync: true}, {records: 5, wantSync: true}}},
		{"zero means every append", 0, -1, []step{{records: 1, wantSync: true}}},
		{"every 5 records", 5, -1, []step{{records: 2}, {records: 2}, {records: 1, wantSync: true}, {records: 4}, {records: 6, wantSync: true}}},
		{"flush.ms on append", math.MaxInt64, time.Second, []step{{records: 1}, {records: 1, advanceMs: 999}, {records: 1, advanceMs: 1, wantSync: true}, {records: 1}}},
		{"flush.ms on maintain", math.MaxInt64, time.Second, []step{{records: 1}, {maintain: true, advanceMs: 500}, {maintain: true, advanceMs: 600, wantSync: true}, {maintain: true, advanceMs: 5000}}},
		{"never", math.MaxInt64, -1, []step{{records: 100}, {maintain: true, advanceMs: 1e8}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.FlushMessages, cfg.FlushMs = tc.msgs, tc.ms
			cfg.RetentionMs = -1
			fsys := newFaultFS()
			l := openAt(t, t.TempDir(), cfg, newClock(t0), fsys)
			for i, s := range tc.steps {
				l.clock.AdvanceMs(s.advanceMs)
				before := fsys.syncs.Load()
				if s.records > 0 {
					// Leader epoch -1: no epoch checkpoint (and its fsync).
					if _, err := l.Append(simple(t, s.records, t0), -1); err != nil {
						t.Fatal(err)
					}
				}
				if s.maintain {
					if _, err := l.Maintain(); err != nil {
						t.Fatal(err)
					}
				}
				if got := fsys.syncs.Load() > before; got != s.wantSync {
					t.Fatalf("step %d: synced %v, want %v", i, got, s.wantSync)
				}
			}
		})
	}
}

// TestDiscard: Discard closes like Close but without a single fsync (the
// files are about to be deleted), and later calls get ErrClosed.
func TestDiscard(t *testing.T) {
	fsys := newFaultFS()
	l := openAt(t, t.TempDir(), DefaultConfig(), newClock(t0), fsys)
	l.mustAppend(simple(t, 3, t0))
	before := fsys.syncs.Load()
	if err := l.Discard(); err != nil {
		t.Fatal(err)
	}
	if n := fsys.syncs.Load() - before; n != 0 {
		t.Fatalf("Discard made %d fsyncs, want none", n)
	}
	if _, err := l.Append(simple(t, 1, t0), 0); err != ErrClosed {
		t.Fatalf("Append after Discard: %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close after Discard: %v", err)
	}
}

func TestFlushAndClose(t *testing.T) {
	fsys := newFaultFS()
	l := openAt(t, t.TempDir(), DefaultConfig(), newClock(t0), fsys)
	if err := l.Flush(); err != nil { // nothing to flush
		t.Fatal(err)
	}
	l.mustAppend(simple(t, 1, t0))
	before := fsys.syncs.Load()
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if fsys.syncs.Load() == before {
		t.Fatal("Flush did not fsync")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"Append": func() error { _, err := l.Append(simple(t, 1, t0), 0); return err }(),
		"Read":   func() error { _, err := l.Read(nil, 0, 1, 1); return err }(),
		"Flush":  l.Flush(),
		"Maintain": func() error {
			_, err := l.Maintain()
			return err
		}(),
		"DeleteRecordsBefore": func() error { _, err := l.DeleteRecordsBefore(0); return err }(),
	} {
		if err != ErrClosed {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	wantKerr(t, ErrClosed, kerr.NotLeaderForPartition)
	// Close wrote the producer snapshot and the indexes.
	ents, _ := OSFS().ReadDir(l.dir)
	want := map[string]bool{offsetName(0) + indexSuffix: false, offsetName(0) + timeIndexSuffix: false, offsetName(1) + snapshotSuffix: false}
	for _, e := range ents {
		if _, ok := want[e]; ok {
			want[e] = true
		}
	}
	for f, ok := range want {
		if !ok {
			t.Errorf("Close did not write %s (dir has %v)", f, ents)
		}
	}
}

func TestDelete(t *testing.T) {
	l := openTest(t, smallConfig())
	l.mustAppend(simple(t, 1, t0))
	if err := l.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := OSFS().Stat(l.dir); !isNotExist(err) {
		t.Fatalf("directory still there: %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	got := Config{SegmentBytes: 1 << 40, IndexIntervalBytes: -1, MaxMessageBytes: -1}.normalized()
	want := DefaultConfig()
	want.SegmentBytes = math.MaxInt32 // clamped: positions are 32-bit
	want.RetentionBytes, want.RetentionMs, want.FlushMessages, want.FlushMs = 0, 0, 0, 0
	want.DeleteRetention, want.MinCleanableDirtyRatio = 0, 0 // valid settings, taken literally
	if got != want {
		t.Fatalf("normalized zero config\n got %+v\nwant %+v", got, want)
	}
	if n := DefaultConfig().normalized(); n != DefaultConfig() {
		t.Fatalf("defaults changed by normalizing: %+v", n)
	}
	// A zero Config works (and keeps nothing past the active segment) but,
	// as max.message.bytes=0 in Kafka, accepts no batch.
	l := openTest(t, Config{})
	_, err := l.Append(simple(t, 2, t0), 0)
	wantKerr(t, err, kerr.MessageTooLarge)
	l.SetConfig(Config{MaxMessageBytes: -1})
	l.mustAppend(simple(t, 2, t0))
	readAll(t, l.Log)
}

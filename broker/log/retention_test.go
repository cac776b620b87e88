package log

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// timedSegments appends n batches of one ~1.5 KiB record each (two per
// 4 KiB segment), batch i with timestamp t0 + i hours.
func timedSegments(t *testing.T, l *testLog, n int) {
	t.Helper()
	for i := range n {
		l.mustAppend(sizedBatch(t, 1, 1500, t0+int64(i)*int64(time.Hour/time.Millisecond)))
	}
}

func TestRetentionByTime(t *testing.T) {
	cfg := smallConfig()
	cfg.RetentionMs = 10 * time.Hour
	l := openTest(t, cfg)
	timedSegments(t, l, 10) // segments [0,1] [2,3] ... [8,9]
	if len(l.segments()) != 5 {
		t.Fatalf("%d segments", len(l.segments()))
	}
	hour := int64(time.Hour / time.Millisecond)
	// Now: t0 + 12h. Segments whose newest timestamp is more than 10h old:
	// [0,1] (newest t0+1h).
	l.clock.Set(time.UnixMilli(t0 + 12*hour))
	n, err := l.Maintain()
	if err != nil || n != 1 {
		t.Fatalf("Maintain: %d %v", n, err)
	}
	if l.StartOffset() != 2 {
		t.Fatalf("start offset %d", l.StartOffset())
	}
	_, err = l.Read(nil, 1, 100, l.EndOffset())
	wantKerr(t, err, kerr.OffsetOutOfRange)
	if _, err := os.Stat(filepath.Join(l.dir, offsetName(0)+logSuffix)); !os.IsNotExist(err) {
		t.Fatal("deleted segment file still there")
	}
	if _, err := os.Stat(filepath.Join(l.dir, offsetName(0)+logSuffix+deletedSuffix)); !os.IsNotExist(err) {
		t.Fatal("deleted segment left a .deleted file with no reader")
	}
	// Retention stops at the first segment that is not expired.
	l.clock.Set(time.UnixMilli(t0 + 14*hour))
	if n, _ := l.Maintain(); n != 1 {
		t.Fatalf("deleted %d", n)
	}
	// Everything expired, including the active segment: the log is rolled
	// so that an empty active segment remains at the end offset.
	l.clock.Set(time.UnixMilli(t0 + 100*hour))
	if n, _ := l.Maintain(); n != 3 {
		t.Fatalf("deleted %d, want the 3 remaining", n)
	}
	segs := l.segments()
	if len(segs) != 1 || segs[0].base != 10 || segs[0].size.Load() != 0 || l.StartOffset() != 10 || l.EndOffset() != 10 {
		t.Fatalf("after deleting all: %d segments, start %d end %d", len(segs), l.StartOffset(), l.EndOffset())
	}
	// An empty active segment is never deleted.
	if n, _ := l.Maintain(); n != 0 {
		t.Fatalf("deleted %d from an empty log", n)
	}
	if info := l.mustAppend(simple(t, 1, l.clock.Millis())); info.BaseOffset != 10 {
		t.Fatal(info.BaseOffset)
	}
	l2 := l.reopen(true)
	if l2.StartOffset() != 10 || l2.EndOffset() != 11 {
		t.Fatalf("after reopen: start %d end %d", l2.StartOffset(), l2.EndOffset())
	}
}

func TestRetentionByTimeWithoutTimestamps(t *testing.T) {
	cfg := smallConfig()
	cfg.RetentionMs = time.Hour
	l := openTest(t, cfg)
	for range 4 {
		l.mustAppend(buildBatch(t, plain(), []rec{{value: make([]byte, 1500), ts: -1}}))
	}
	l.clock.Advance(30 * time.Minute)
	if n, _ := l.Maintain(); n != 0 {
		t.Fatalf("deleted %d", n)
	}
	// Without timestamps the last append time counts.
	l.clock.Advance(31 * time.Minute)
	if n, _ := l.Maintain(); n != 2 {
		t.Fatalf("deleted %d, want 2", n)
	}
}

func TestRetentionBySize(t *testing.T) {
	cfg := smallConfig()
	cfg.RetentionMs = -1
	l := openTest(t, cfg)
	timedSegments(t, l, 10)
	segSize := l.segments()[0].size.Load()
	cfg.RetentionBytes = 3*segSize + 10 // deletes while size - segment size stays >= the limit
	l.SetConfig(cfg)
	n, err := l.Maintain()
	if err != nil || n != 1 {
		t.Fatalf("Maintain: %d %v, want 1 (Kafka never goes below retention.bytes)", n, err)
	}
	cfg.RetentionBytes = 3 * segSize
	l.SetConfig(cfg)
	if n, err := l.Maintain(); err != nil || n != 1 {
		t.Fatalf("Maintain: %d %v", n, err)
	}
	if l.Size() != 3*segSize || l.StartOffset() != 4 {
		t.Fatalf("size %d start %d", l.Size(), l.StartOffset())
	}
	// retention.bytes 0 deletes everything, rolling the active segment.
	cfg.RetentionBytes = 0
	l.SetConfig(cfg)
	if n, _ := l.Maintain(); n != 3 {
		t.Fatalf("deleted %d", n)
	}
	if l.Size() != 0 || l.StartOffset() != 10 || l.EndOffset() != 10 {
		t.Fatalf("size %d start %d end %d", l.Size(), l.StartOffset(), l.EndOffset())
	}
}

func TestSegmentMs(t *testing.T) {
	cfg := smallConfig()
	cfg.SegmentMs = time.Hour
	cfg.RetentionMs = -1
	l := openTest(t, cfg)
	l.mustAppend(simple(t, 1, t0))
	l.clock.Advance(time.Hour)
	l.mustAppend(simple(t, 1, t0)) // exactly segment.ms: no roll yet
	if len(l.segments()) != 1 {
		t.Fatal("rolled at segment.ms, want after")
	}
	l.clock.Advance(time.Millisecond)
	l.mustAppend(simple(t, 1, t0))
	if segs := l.segments(); len(segs) != 2 || segs[1].base != 2 {
		t.Fatalf("append after segment.ms did not roll: %d segments", len(segs))
	}
	// Maintain rolls an old active segment without an append.
	l.clock.Advance(2 * time.Hour)
	if _, err := l.Maintain(); err != nil {
		t.Fatal(err)
	}
	if segs := l.segments(); len(segs) != 3 || segs[2].base != 3 || segs[2].size.Load() != 0 {
		t.Fatalf("Maintain did not roll: %d segments", len(segs))
	}
	// An empty active segment is not rolled.
	l.clock.Advance(2 * time.Hour)
	l.Maintain()
	if len(l.segments()) != 3 {
		t.Fatal("rolled an empty segment")
	}
	// segment.ms counts from the first append, also after a reopen.
	l.mustAppend(simple(t, 1, l.clock.Millis()))
	l2 := l.reopen(true)
	l2.clock.Advance(30 * time.Minute)
	l2.Maintain()
	if len(l2.segments()) != 3 {
		t.Fatal("rolled too early after a reopen")
	}
	l2.clock.Advance(31 * time.Minute)
	l2.Maintain()
	if len(l2.segments()) != 4 {
		t.Fatal("not rolled after a reopen")
	}
}

func TestDeleteRecordsBefore(t *testing.T) {
	cfg := smallConfig()
	cfg.RetentionMs = -1
	l := openTest(t, cfg)
	timedSegments(t, l, 10) // segments at 0, 2, 4, 6, 8
	cases := []struct {
		offset    int64
		wantStart int64
		wantSegs  int
		wantErr   *kerr.Error
	}{
		{offset: 1, wantStart: 1, wantSegs: 5}, // inside the first segment: nothing deleted
		{offset: 0, wantStart: 1, wantSegs: 5}, // below the start: no change
		{offset: 2, wantStart: 2, wantSegs: 4}, // the first segment goes
		{offset: 7, wantStart: 7, wantSegs: 2}, // up to the segment at 6
		{offset: 11, wantStart: 7, wantSegs: 2, wantErr: kerr.OffsetOutOfRange},
		{offset: -1, wantStart: 7, wantSegs: 2, wantErr: kerr.OffsetOutOfRange},
		{offset: 10, wantStart: 10, wantSegs: 1}, // everything: one empty segment at the end
		{offset: 10, wantStart: 10, wantSegs: 1},
	}
	for i, tc := range cases {
		got, err := l.DeleteRecordsBefore(tc.offset)
		if tc.wantErr != nil {
			wantKerr(t, err, tc.wantErr)
		} else if err != nil || got != tc.wantStart {
			t.Fatalf("case %d: DeleteRecordsBefore(%d) = %d, %v", i, tc.offset, got, err)
		}
		if l.StartOffset() != tc.wantStart || len(l.segments()) != tc.wantSegs {
			t.Fatalf("case %d: start %d, %d segments; want %d, %d", i, l.StartOffset(), len(l.segments()), tc.wantStart, tc.wantSegs)
		}
		if tc.wantStart < l.EndOffset() {
			_, err := l.Read(nil, tc.wantStart-1, 1, l.EndOffset())
			wantKerr(t, err, kerr.OffsetOutOfRange)
			info, err := l.Read(nil, tc.wantStart, 1, l.EndOffset())
			if err != nil || info.LogStartOffset != tc.wantStart {
				t.Fatalf("read at the new start: %+v %v", info, err)
			}
		}
	}
	if segs := l.segments(); segs[0].base != 10 || segs[0].size.Load() != 0 {
		t.Fatalf("remaining segment %d of %d bytes", segs[0].base, segs[0].size.Load())
	}
	l.mustAppend(simple(t, 1, t0))
	l2 := l.reopen(true)
	if l2.StartOffset() != 10 || l2.EndOffset() != 11 || len(segmentLogs(t, l2.dir)) != 1 {
		t.Fatalf("after reopen: start %d end %d", l2.StartOffset(), l2.EndOffset())
	}
}

// TestDeleteRecordsCrashBeforeSegmentsGo: the start offset is checkpointed
// first; segments left behind by a crash are deleted on Open.
func TestDeleteRecordsCrashBeforeSegmentsGo(t *testing.T) {
	cfg := smallConfig()
	l := openTest(t, cfg)
	timedSegments(t, l, 10)
	l.Close()
	os.WriteFile(filepath.Join(l.dir, startOffsetFile), encodeStartOffset(5), 0o644)
	l2 := l.reopen(false)
	if l2.StartOffset() != 5 || l2.segments()[0].base != 4 || len(segmentLogs(t, l.dir)) != 3 {
		t.Fatalf("start %d first segment %d, %d files", l2.StartOffset(), l2.segments()[0].base, len(segmentLogs(t, l.dir)))
	}
}

// TestDeletedSegmentOutlivesReaders: a segment deleted while a reader holds
// it stays readable until the reader is done, then its files go.
func TestDeletedSegmentOutlivesReaders(t *testing.T) {
	l := openTest(t, smallConfig())
	timedSegments(t, l, 6)
	first := l.segments()[0]
	if !first.acquire() {
		t.Fatal("acquire")
	}
	if _, err := l.DeleteRecordsBefore(4); err != nil {
		t.Fatal(err)
	}
	deleted := filepath.Join(l.dir, offsetName(0)+logSuffix+deletedSuffix)
	if _, err := os.Stat(deleted); err != nil {
		t.Fatalf("the deleted segment's file is gone while it is read: %v", err)
	}
	buf := make([]byte, 100)
	if _, err := readFullAt(first.f, buf, 0); err != nil {
		t.Fatalf("reading a deleted segment: %v", err)
	}
	first.release()
	if _, err := os.Stat(deleted); !os.IsNotExist(err) {
		t.Fatal("the deleted segment's file is still there after the last reader")
	}
}

// TestHighWatermarkCheckpointDoesNotBlockAppends: Maintain's checkpoint of
// the high watermark (two fsyncs) runs without the append lock, so an
// append goes through while the checkpoint's fsync hangs, and the
// checkpoint is written once it returns.
func TestHighWatermarkCheckpointDoesNotBlockAppends(t *testing.T) {
	fsys := newFaultFS()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fsys.holdSync = func(name string) {
		if strings.HasSuffix(name, highWatermarkFile+tmpSuffix) {
			once.Do(func() { close(entered) })
			<-release
		}
	}
	l := openAt(t, t.TempDir(), smallConfig(), newClock(t0), fsys)
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the log's Close, which a failure would leave waiting
	l.mustAppend(sizedBatch(t, 1, 100, t0))
	l.SetHighWatermark(l.EndOffset())
	maintained := make(chan error, 1)
	go func() { _, err := l.Maintain(); maintained <- err }()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("Maintain never wrote the high watermark checkpoint")
	}
	appended := make(chan error, 1)
	go func() { _, err := l.Append(sizedBatch(t, 1, 100, t0), 0); appended <- err }()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("an append waited for the high watermark checkpoint's fsync")
	}
	unblock()
	if err := <-maintained; err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(l.dir, highWatermarkFile))
	if err != nil {
		t.Fatal(err)
	}
	if hw, err := decodeHighWatermark(b); err != nil || hw != 1 {
		t.Fatalf("checkpoint holds %d (%v), want 1", hw, err)
	}
}

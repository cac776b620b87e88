package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy/xerial"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testLogger discards logs unless VIGIL_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("VIGIL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// captureHandler keeps log records so tests can check what was logged.
type captureHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *captureHandler) WithGroup(string) slog.Handler            { return h }

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}

// find returns the attributes of the first record at level whose message
// contains msg, or nil.
func (h *captureHandler) find(level slog.Level, msg string) map[string]slog.Value {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.recs {
		if r.Level == level && strings.Contains(r.Message, msg) {
			m := map[string]slog.Value{}
			r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
			return m
		}
	}
	return nil
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct{ ms atomic.Int64 }

func newClock(ms int64) *fakeClock {
	c := &fakeClock{}
	c.ms.Store(ms)
	return c
}

func (c *fakeClock) Now() time.Time           { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) Advance(d time.Duration)  { c.ms.Add(d.Milliseconds()) }
func (c *fakeClock) Millis() int64            { return c.ms.Load() }
func (c *fakeClock) Set(t time.Time)          { c.ms.Store(t.UnixMilli()) }
func (c *fakeClock) AdvanceMs(ms int64) int64 { return c.ms.Add(ms) }

// t0 is the fake clock's default start: 2024-01-01.
const t0 = int64(1704067200000)

type testLog struct {
	*Log
	t     testing.TB
	dir   string
	clock *fakeClock
	cfg   Config
	fs    FS
}

// smallConfig is a config with small segments and indexes so tests roll
// often; everything durable-by-policy is off unless a test turns it on.
func smallConfig() Config {
	c := DefaultConfig()
	c.SegmentBytes = 4096
	c.IndexIntervalBytes = 256
	return c
}

func openTest(t testing.TB, cfg Config) *testLog {
	t.Helper()
	return openAt(t, t.TempDir(), cfg, newClock(t0), nil)
}

// openFast is openTest without fsync.
func openFast(t testing.TB, cfg Config) *testLog {
	t.Helper()
	return openAt(t, t.TempDir(), cfg, newClock(t0), noSyncFS{OSFS()})
}

func openAt(t testing.TB, dir string, cfg Config, clock *fakeClock, fsys FS) *testLog {
	t.Helper()
	if fsys == nil {
		fsys = OSFS()
	}
	l, err := Open(dir, cfg, Options{FS: fsys, Now: clock.Now, Logger: testLogger()})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	tl := &testLog{Log: l, t: t, dir: dir, clock: clock, cfg: cfg, fs: fsys}
	t.Cleanup(func() { _ = l.Close() })
	return tl
}

// reopen closes (if close) and opens the log again on the same directory.
func (tl *testLog) reopen(close bool) *testLog {
	tl.t.Helper()
	if close {
		if err := tl.Close(); err != nil {
			tl.t.Fatalf("Close: %v", err)
		}
	}
	return openAt(tl.t, tl.dir, tl.cfg, tl.clock, tl.fs)
}

// crashCopy copies the directory of an open log, as a crash (kill -9, no
// Close) would leave it in the page cache, and opens the copy.
func (tl *testLog) crashCopy() *testLog {
	tl.t.Helper()
	dst := tl.t.TempDir()
	copyDir(tl.t, tl.dir, dst)
	return openAt(tl.t, dst, tl.cfg, tl.clock, nil)
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// append appends and fails the test on error.
func (tl *testLog) mustAppend(records []byte) AppendInfo {
	tl.t.Helper()
	info, err := tl.Append(records, 0)
	if err != nil {
		tl.t.Fatalf("Append: %v", err)
	}
	return info
}

// rec is a record to put in a test batch.
type rec struct {
	key, value []byte
	ts         int64
	headers    []kmsg.Header
}

// batchSpec describes a test batch.
type batchSpec struct {
	producerID    int64
	epoch         int16
	seq           int32
	codec         int
	xerial        bool // snappy with the Java client's xerial framing
	logAppendTime bool
	transactional bool
	control       bool
	maxTs         *int64 // overrides the computed max timestamp
}

func plain() batchSpec { return batchSpec{producerID: -1, epoch: -1, seq: -1} }

func idem(pid int64, epoch int16, seq int32) batchSpec {
	return batchSpec{producerID: pid, epoch: epoch, seq: seq}
}

// buildBatch encodes a v2 batch with a correct length and CRC, compressing
// the records with the spec's codec.
func buildBatch(t testing.TB, s batchSpec, recs []rec) []byte {
	t.Helper()
	firstTs, maxTs := recs[0].ts, recs[0].ts
	var raw []byte
	for i, r := range recs {
		maxTs = max(maxTs, r.ts)
		kr := kmsg.Record{TimestampDelta64: r.ts - firstTs, OffsetDelta: int32(i), Key: r.key, Value: r.value, Headers: r.headers}
		body := kr.AppendTo(nil)[1:] // drop the zero length varint
		raw = binary.AppendVarint(raw, int64(len(body)))
		raw = append(raw, body...)
	}
	if s.maxTs != nil {
		maxTs = *s.maxTs
	}
	attrs := int16(s.codec)
	if s.logAppendTime {
		attrs |= AttrLogAppendTime
	}
	if s.transactional {
		attrs |= AttrTransactional
	}
	if s.control {
		attrs |= AttrControl
	}
	rb := kmsg.RecordBatch{
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      int32(len(recs) - 1),
		FirstTimestamp:       firstTs,
		MaxTimestamp:         maxTs,
		ProducerID:           s.producerID,
		ProducerEpoch:        s.epoch,
		FirstSequence:        s.seq,
		NumRecords:           int32(len(recs)),
		PartitionLeaderEpoch: -1,
		Records:              compress(t, s.codec, s.xerial, raw),
	}
	out := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(out[offLength:], uint32(len(out)-batchLengthOverhead))
	binary.BigEndian.PutUint32(out[offCRC:], batchCRC(out))
	return out
}

func compress(t testing.TB, codec int, framed bool, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch codec {
	case CompressionNone:
		return raw
	case CompressionGzip:
		w := gzip.NewWriter(&buf)
		w.Write(raw)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case CompressionSnappy:
		if framed {
			return xerial.Encode(nil, raw)
		}
		return s2.EncodeSnappy(nil, raw)
	case CompressionLZ4:
		w := lz4.NewWriter(&buf)
		w.Write(raw)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case CompressionZstd:
		enc, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		return enc.EncodeAll(raw, nil)
	default:
		t.Fatalf("codec %d", codec)
	}
	return buf.Bytes()
}

// values makes n records with values "<prefix>-<i>" and timestamps ts,
// ts+1, ...
func values(prefix string, n int, ts int64) []rec {
	out := make([]rec, n)
	for i := range out {
		out[i] = rec{value: []byte(prefix + "-" + itoa(i)), ts: ts + int64(i)}
	}
	return out
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	if i == 0 {
		return "0"
	}
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}

// simple makes an uncompressed non-idempotent batch of n records.
func simple(t testing.TB, n int, ts int64) []byte {
	return buildBatch(t, plain(), values("v", n, ts))
}

// sizedBatch makes a batch of n records whose values are size bytes.
func sizedBatch(t testing.TB, n, size int, ts int64) []byte {
	recs := make([]rec, n)
	for i := range recs {
		recs[i] = rec{value: bytes.Repeat([]byte{byte('a' + i%26)}, size), ts: ts}
	}
	return buildBatch(t, plain(), recs)
}

// batches splits records into batch headers, checking that each batch is
// whole and valid.
func batches(t testing.TB, records []byte) []BatchHeader {
	t.Helper()
	var out []BatchHeader
	for len(records) > 0 {
		h, err := ValidateBatch(records)
		if err != nil {
			t.Fatalf("invalid batch in read data: %v", err)
		}
		out = append(out, h)
		records = records[h.Size():]
	}
	return out
}

// readAll reads the whole log from its start offset, batch by batch, and
// checks that every batch is valid and offsets are contiguous.
func readAll(t testing.TB, l *Log) []BatchHeader {
	t.Helper()
	var out []BatchHeader
	off := l.StartOffset()
	for off < l.EndOffset() {
		info, err := l.Read(nil, off, 1<<20, l.EndOffset())
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		hs := batches(t, info.Records)
		if len(hs) == 0 {
			t.Fatalf("Read(%d) returned nothing below the end offset %d", off, l.EndOffset())
		}
		for _, h := range hs {
			if len(out) > 0 && h.BaseOffset != out[len(out)-1].LastOffset()+1 {
				t.Fatalf("batch at %d does not follow batch ending at %d", h.BaseOffset, out[len(out)-1].LastOffset())
			}
			out = append(out, h)
		}
		off = hs[len(hs)-1].LastOffset() + 1
	}
	return out
}

// readValues decodes every record of the log.
func readValues(t testing.TB, l *Log) []string {
	t.Helper()
	var out []string
	off := l.StartOffset()
	for off < l.EndOffset() {
		info, err := l.Read(nil, off, 1<<20, l.EndOffset())
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		recs := info.Records
		for len(recs) > 0 {
			h := parseHeader(recs)
			err := DecodeRecords(recs[:h.Size()], func(r *Record) error {
				if r.Offset >= off {
					out = append(out, string(r.Value))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			recs = recs[h.Size():]
			off = h.LastOffset() + 1
		}
	}
	return out
}

func wantKerr(t testing.TB, err error, want *kerr.Error) {
	t.Helper()
	var ke *kerr.Error
	if !errors.As(err, &ke) || ke != want {
		t.Fatalf("error %v, want one wrapping %v", err, want.Message)
	}
}

// faultFS wraps the OS file system and fails operations on request.
type faultFS struct {
	FS
	failWrite    atomic.Bool
	failSync     atomic.Bool
	failRename   atomic.Bool
	failTruncate atomic.Bool
	failRead     atomic.Bool
	syncs        atomic.Int64
	writes       atomic.Int64
	readBytes    atomic.Int64 // bytes returned by ReadAt
	readCalls    atomic.Int64 // calls of ReadAt
	// holdSync, if set before the log opens, runs before every Sync with
	// the file's name (a test blocks in it).
	holdSync func(name string)
}

var errInjected = errors.New("injected I/O error")

func newFaultFS() *faultFS { return &faultFS{FS: OSFS()} }

func (f *faultFS) OpenFile(name string, flag int, perm uint32) (File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f, name: name}, nil
}

func (f *faultFS) Rename(a, b string) error {
	if f.failRename.Load() {
		return errInjected
	}
	return f.FS.Rename(a, b)
}

type faultFile struct {
	File
	fs   *faultFS
	name string
}

func (f *faultFile) Write(p []byte) (int, error) {
	if f.fs.failWrite.Load() {
		return 0, errInjected
	}
	f.fs.writes.Add(1)
	return f.File.Write(p)
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.failWrite.Load() {
		// A torn write: half the bytes make it.
		n, _ := f.File.WriteAt(p[:len(p)/2], off)
		return n, errInjected
	}
	f.fs.writes.Add(1)
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Sync() error {
	if f.fs.holdSync != nil {
		f.fs.holdSync(f.name)
	}
	if f.fs.failSync.Load() {
		return errInjected
	}
	f.fs.syncs.Add(1)
	return f.File.Sync()
}

func (f *faultFile) Truncate(size int64) error {
	if f.fs.failTruncate.Load() {
		return errInjected
	}
	return f.File.Truncate(size)
}

func (f *faultFile) ReadAt(p []byte, off int64) (int, error) {
	if f.fs.failRead.Load() {
		return 0, errInjected
	}
	n, err := f.File.ReadAt(p, off)
	f.fs.readBytes.Add(int64(n))
	f.fs.readCalls.Add(1)
	return n, err
}

// noSyncFS is the OS file system without fsync, for fuzzing, where
// durability is not under test and fsync dominates the time per input.
type noSyncFS struct{ FS }

func (f noSyncFS) OpenFile(name string, flag int, perm uint32) (File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return noSyncFile{file}, nil
}

type noSyncFile struct{ File }

func (noSyncFile) Sync() error { return nil }

// segmentLogs lists the .log files of a directory, oldest first.
func segmentLogs(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if filepath.Ext(e.Name()) == logSuffix {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

package broker

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	vlog "github.com/vigilhq/vigil/broker/log"
)

// sickDiskFS fails writes to files whose path contains sick, once armed.
type sickDiskFS struct {
	vlog.FS
	sick  string
	armed atomic.Bool
}

func (f *sickDiskFS) OpenFile(name string, flag int, perm uint32) (vlog.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.Contains(name, f.sick) {
		return file, err
	}
	return &sickFile{File: file, fs: f}, nil
}

type sickFile struct {
	vlog.File
	fs *sickDiskFS
}

func (f *sickFile) Write(p []byte) (int, error) {
	if f.fs.armed.Load() {
		return 0, syscall.EIO
	}
	return f.File.Write(p)
}

func (f *sickFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.armed.Load() {
		return 0, syscall.EIO
	}
	return f.File.WriteAt(p, off)
}

// TestDiskErrorTakesPartitionOffline: a write error takes only the affected
// partition offline with KAFKA_STORAGE_ERROR; the broker stays up, other
// partitions keep working, metadata and /readyz say so.
func TestDiskErrorTakesPartitionOffline(t *testing.T) {
	fsys := &sickDiskFS{FS: vlog.OSFS(), sick: "sick-0"}
	b := startBroker(t, "", func(c *Config) { c.FS = fsys })
	adm := newAdmin(t, b)
	createTopic(t, adm, "sick", 2, nil)
	ctx := testCtx(t)
	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordRetries(2),
		kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }), kgo.MetadataMinAge(10*time.Millisecond))
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "sick", Partition: 0, Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fsys.armed.Store(true)
	err := cl.ProduceSync(ctx, &kgo.Record{Topic: "sick", Partition: 0, Value: []byte("after")}).FirstErr()
	if !errors.Is(err, kerr.KafkaStorageError) && !errors.Is(err, kerr.LeaderNotAvailable) {
		t.Fatalf("produce to the sick partition: %v, want KAFKA_STORAGE_ERROR", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "sick", Partition: 1, Value: []byte("fine")}).FirstErr(); err != nil {
		t.Fatalf("healthy partition: %v", err)
	}
	md, err := adm.Metadata(ctx, "sick")
	if err != nil {
		t.Fatal(err)
	}
	p0 := md.Topics["sick"].Partitions[0]
	if p0.Leader != -1 || len(p0.OfflineReplicas) != 1 {
		t.Fatalf("metadata of the offline partition: leader %d offline %v", p0.Leader, p0.OfflineReplicas)
	}
	rec := httptest.NewRecorder()
	b.HTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "sick-0") {
		t.Fatalf("/readyz: %d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	b.HTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/healthz: %d", rec.Code)
	}
}

// fetchRaw fetches partition of topic from offset (Fetch v11, no waiting)
// and returns the partition's response.
func fetchRaw(t *testing.T, c *rawConn, topic string, partition int32, offset int64) kmsg.FetchResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(11)
	req.MaxBytes = 1 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = partition, offset, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	req.Topics = append(req.Topics, ft)
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(req.Version)
	c.roundTrip(req, resp)
	if resp.ErrorCode != 0 {
		t.Fatalf("fetch: top-level error %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp.Topics[0].Partitions[0]
}

// TestUnreadablePartitionAtStart: a partition whose log cannot be opened at
// start (its segment file is a directory) is offline with
// KAFKA_STORAGE_ERROR; the broker starts, serves its other partitions, says
// so once in its log and in Metadata and /readyz, and a restart after the
// repair brings the partition back with its data.
func TestUnreadablePartitionAtStart(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	adm := newAdmin(t, b)
	createTopic(t, adm, "good", 1, nil)
	createTopic(t, adm, "bad", 2, nil)
	c := dialRaw(t, b)
	for _, tp := range []struct {
		topic string
		p     int32
	}{{"good", 0}, {"bad", 0}, {"bad", 1}} {
		if r := produceRaw(t, c, tp.topic, tp.p, makeBatch(-1, -1, -1, 1, []byte("before"))); r.ErrorCode != 0 {
			t.Fatalf("%s-%d: %v", tp.topic, tp.p, kerr.ErrorForCode(r.ErrorCode))
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, "bad-0", "00000000000000000000.log")
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(seg, 0o755); err != nil { // opening it fails with EISDIR
		t.Fatal(err)
	}

	var logs logBuffer
	b2 := startBrokerLogger(t, dir, logs.logger())
	if n := len(logs.lines("level=ERROR")); n != 1 || len(logs.lines("level=ERROR", "topic=bad", "partition=0")) != 1 {
		t.Fatalf("want one ERROR line naming bad-0 at start, got:\n%s", strings.Join(logs.lines("level=ERROR"), "\n"))
	}
	c2 := dialRaw(t, b2)
	for i := 0; i < 20; i++ {
		if r := produceRaw(t, c2, "bad", 0, makeBatch(-1, -1, -1, 1, []byte("x"))); r.ErrorCode != kerr.KafkaStorageError.Code {
			t.Fatalf("produce to the offline partition: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(r.ErrorCode))
		}
	}
	if n := len(logs.lines("level=ERROR")); n != 1 {
		t.Fatalf("%d ERROR lines after 20 produces to the offline partition, want the one at start:\n%s", n, strings.Join(logs.lines("level=ERROR"), "\n"))
	}
	if r := fetchRaw(t, c2, "bad", 0, 0); r.ErrorCode != kerr.KafkaStorageError.Code {
		t.Fatalf("fetch from the offline partition: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(r.ErrorCode))
	}
	for _, tp := range []struct {
		topic string
		p     int32
	}{{"good", 0}, {"bad", 1}} {
		if r := produceRaw(t, c2, tp.topic, tp.p, makeBatch(-1, -1, -1, 1, []byte("after"))); r.ErrorCode != 0 || r.BaseOffset != 1 {
			t.Fatalf("%s-%d: produce: %v at offset %d", tp.topic, tp.p, kerr.ErrorForCode(r.ErrorCode), r.BaseOffset)
		}
		if r := fetchRaw(t, c2, tp.topic, tp.p, 0); r.ErrorCode != 0 || countBatches(t, r.RecordBatches) != 2 {
			t.Fatalf("%s-%d: fetch: %v, %d bytes", tp.topic, tp.p, kerr.ErrorForCode(r.ErrorCode), len(r.RecordBatches))
		}
	}
	md, err := newAdmin(t, b2).Metadata(testCtx(t), "bad")
	if err != nil {
		t.Fatal(err)
	}
	p0, p1 := md.Topics["bad"].Partitions[0], md.Topics["bad"].Partitions[1]
	if p0.Leader != -1 || !errors.Is(p0.Err, kerr.LeaderNotAvailable) || len(p0.OfflineReplicas) != 1 {
		t.Fatalf("metadata of the offline partition: leader %d, error %v, offline replicas %v", p0.Leader, p0.Err, p0.OfflineReplicas)
	}
	if p1.Leader != 0 || p1.Err != nil {
		t.Fatalf("metadata of the healthy partition: leader %d, error %v", p1.Leader, p1.Err)
	}
	rec := httptest.NewRecorder()
	b2.HTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if body := rec.Body.String(); rec.Code != http.StatusServiceUnavailable || !strings.Contains(body, "bad-0") || strings.Contains(body, "bad-1") {
		t.Fatalf("/readyz: %d %q", rec.Code, body)
	}
	if err := b2.Close(); !errors.Is(err, kerr.KafkaStorageError) {
		t.Fatalf("Close: %v, want the offline partition's KAFKA_STORAGE_ERROR", err)
	}

	// Repaired: the partition is back with its record.
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b3 := startBroker(t, dir)
	c3 := dialRaw(t, b3)
	if r := produceRaw(t, c3, "bad", 0, makeBatch(-1, -1, -1, 1, []byte("repaired"))); r.ErrorCode != 0 || r.BaseOffset != 1 {
		t.Fatalf("produce after the repair: %v at offset %d", kerr.ErrorForCode(r.ErrorCode), r.BaseOffset)
	}
}

// TestOfflinePartitionLoggedOnce: going offline is logged once, not once per
// request that then fails with KAFKA_STORAGE_ERROR.
func TestOfflinePartitionLoggedOnce(t *testing.T) {
	fsys := &sickDiskFS{FS: vlog.OSFS(), sick: "sick-0"}
	var logs logBuffer
	b := startBrokerLogger(t, "", logs.logger(), func(c *Config) { c.FS = fsys })
	createTopic(t, newAdmin(t, b), "sick", 1, nil)
	c := dialRaw(t, b)
	fsys.armed.Store(true)
	for i := 0; i < 20; i++ {
		r := produceRaw(t, c, "sick", 0, makeBatch(-1, -1, -1, 1, []byte("x")))
		if r.ErrorCode != kerr.KafkaStorageError.Code {
			t.Fatalf("produce %d: %v, want KAFKA_STORAGE_ERROR", i, kerr.ErrorForCode(r.ErrorCode))
		}
		checkClientMessage(t, r.ErrorCode, r.ErrorMessage)
		fetchRaw(t, c, "sick", 0, 0)
	}
	errs := logs.lines("level=ERROR")
	if len(errs) != 1 || !strings.Contains(errs[0], "sick-0") {
		t.Fatalf("want one ERROR line naming sick-0 after 20 failed produces, got %d:\n%s", len(errs), strings.Join(errs, "\n"))
	}
}

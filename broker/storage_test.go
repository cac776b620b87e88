package broker

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

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

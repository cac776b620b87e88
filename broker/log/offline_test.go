package log

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestOpenOffline: a log that could not be opened, taken offline instead,
// fails every operation with KAFKA_STORAGE_ERROR (wrapping the cause),
// reports zero offsets, closes with its error, and leaves its directory as
// it was.
func TestOpenOffline(t *testing.T) {
	dir := t.TempDir()
	seg := filepath.Join(dir, offsetName(0)+logSuffix)
	if err := os.Mkdir(seg, 0o755); err != nil { // a segment that cannot be opened
		t.Fatal(err)
	}
	_, cause := Open(dir, smallConfig(), Options{Logger: testLogger()})
	if !errors.Is(cause, kerr.KafkaStorageError) {
		t.Fatalf("Open: %v, want KAFKA_STORAGE_ERROR", cause)
	}
	l := OpenOffline(dir, smallConfig(), Options{Logger: testLogger()}, cause)
	if err := l.Offline(); !errors.Is(err, cause) {
		t.Fatalf("Offline: %v, want the cause %v", err, cause)
	}
	_, err := l.Append(simple(t, 1, t0), 0)
	wantKerr(t, err, kerr.KafkaStorageError)
	_, err = l.Read(nil, 0, 1<<20, 1)
	wantKerr(t, err, kerr.KafkaStorageError)
	_, _, _, err = l.OffsetForTimestamp(t0)
	wantKerr(t, err, kerr.KafkaStorageError)
	_, _, err = l.MaxTimestamp()
	wantKerr(t, err, kerr.KafkaStorageError)
	_, err = l.DeleteRecordsBefore(0)
	wantKerr(t, err, kerr.KafkaStorageError)
	_, err = l.Maintain()
	wantKerr(t, err, kerr.KafkaStorageError)
	wantKerr(t, l.Flush(), kerr.KafkaStorageError)
	if l.StartOffset() != 0 || l.EndOffset() != 0 || l.Size() != 0 || len(l.Producers()) != 0 {
		t.Fatalf("offsets %d-%d, size %d, %d producers", l.StartOffset(), l.EndOffset(), l.Size(), len(l.Producers()))
	}
	if e, o := l.EndOffsetForEpoch(0); e != -1 || o != -1 {
		t.Fatalf("EndOffsetForEpoch: %d %d", e, o)
	}
	wantKerr(t, l.Close(), kerr.KafkaStorageError)
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	names, err := os.ReadDir(dir)
	if err != nil || len(names) != 1 || names[0].Name() != offsetName(0)+logSuffix {
		t.Fatalf("directory changed: %v %v", names, err)
	}

	// A cause that is not a storage error is wrapped in one.
	l2 := OpenOffline(dir, smallConfig(), Options{Logger: testLogger()}, errors.New("no such disk"))
	wantKerr(t, l2.Offline(), kerr.KafkaStorageError)
	_ = l2.Close()
}

package log

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestStorageErrorTakesLogOffline(t *testing.T) {
	cases := []struct {
		name   string
		cfg    func(*Config)
		inject func(f *faultFS)
		op     func(t *testing.T, l *testLog) error
	}{
		{"write fails", nil, func(f *faultFS) { f.failWrite.Store(true) },
			func(t *testing.T, l *testLog) error { _, err := l.Append(simple(t, 1, t0), 0); return err }},
		{"fsync fails on a flush.messages=1 append", func(c *Config) { c.FlushMessages = 1 }, func(f *faultFS) { f.failSync.Store(true) },
			func(t *testing.T, l *testLog) error { _, err := l.Append(simple(t, 1, t0), 0); return err }},
		{"fsync fails on Flush", nil, func(f *faultFS) { f.failSync.Store(true) },
			func(t *testing.T, l *testLog) error { return l.Flush() }},
		{"rename fails on roll", nil, func(f *faultFS) { f.failRename.Store(true) },
			func(t *testing.T, l *testLog) error {
				var err error
				for range 10 {
					if _, err = l.Append(sizedBatch(t, 1, 1500, t0), 0); err != nil {
						break
					}
				}
				return err
			}},
		{"rename fails on retention", func(c *Config) { c.RetentionBytes = 0 }, func(f *faultFS) { f.failRename.Store(true) },
			func(t *testing.T, l *testLog) error { _, err := l.Maintain(); return err }},
		{"checkpoint fails on DeleteRecordsBefore", nil, func(f *faultFS) { f.failWrite.Store(true) },
			func(t *testing.T, l *testLog) error { _, err := l.DeleteRecordsBefore(1); return err }},
		{"read fails", nil, func(f *faultFS) { f.failRead.Store(true) },
			func(t *testing.T, l *testLog) error { _, err := l.Read(nil, 0, 100, l.EndOffset()); return err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			fsys := newFaultFS()
			l := openAt(t, t.TempDir(), cfg, newClock(t0), fsys)
			for range 3 {
				l.mustAppend(sizedBatch(t, 1, 1000, t0))
			}
			tc.inject(fsys)
			err := tc.op(t, l)
			wantKerr(t, err, kerr.KafkaStorageError)
			if !errors.Is(err, errInjected) {
				t.Fatalf("the error %v hides the cause", err)
			}
			off := l.Offline()
			wantKerr(t, off, kerr.KafkaStorageError)
			// Every later call fails the same way, even with the fault gone.
			fsys.failWrite.Store(false)
			fsys.failSync.Store(false)
			fsys.failRename.Store(false)
			fsys.failRead.Store(false)
			_, err = l.Append(simple(t, 1, t0), 0)
			wantKerr(t, err, kerr.KafkaStorageError)
			_, err = l.Read(nil, 0, 100, l.EndOffset())
			wantKerr(t, err, kerr.KafkaStorageError)
			wantKerr(t, l.Flush(), kerr.KafkaStorageError)
			_, err = l.Maintain()
			wantKerr(t, err, kerr.KafkaStorageError)
			_, err = l.DeleteRecordsBefore(0)
			wantKerr(t, err, kerr.KafkaStorageError)
			_, _, _, err = l.OffsetForTimestamp(0)
			wantKerr(t, err, kerr.KafkaStorageError)
			_, _, err = l.MaxTimestamp()
			wantKerr(t, err, kerr.KafkaStorageError)
			wantKerr(t, l.Close(), kerr.KafkaStorageError)

			// Reopening recovers: the data appended before the fault is there
			// and a torn write is cut off.
			l2 := l.reopen(false)
			if l2.EndOffset() < 3 {
				t.Fatalf("end %d after reopen", l2.EndOffset())
			}
			readAll(t, l2.Log)
			l2.mustAppend(simple(t, 1, t0))
		})
	}
}

func TestOpenFailsOnStorageError(t *testing.T) {
	fsys := newFaultFS()
	dir := t.TempDir()
	l := openAt(t, dir, smallConfig(), newClock(t0), fsys)
	l.mustAppend(simple(t, 1, t0))
	l.Close()
	// Appending garbage makes recovery truncate, which fails.
	f, _ := fsys.OpenFile(dir+"/"+offsetName(0)+logSuffix, 1 /* O_WRONLY */, 0)
	if ff, ok := f.(*faultFile); ok {
		size, _ := fsys.Stat(dir + "/" + offsetName(0) + logSuffix)
		ff.WriteAt([]byte("garbage"), size)
		ff.Close()
	}
	fsys.failTruncate.Store(true)
	_, err := Open(dir, smallConfig(), Options{FS: fsys, Logger: testLogger()})
	wantKerr(t, err, kerr.KafkaStorageError)
	fsys.failTruncate.Store(false)
	l2 := openAt(t, dir, smallConfig(), newClock(t0), fsys)
	if l2.EndOffset() != 1 {
		t.Fatal(l2.EndOffset())
	}
}

package broker

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	vlog "github.com/vigilhq/vigil/broker/log"
	"github.com/vigilhq/vigil/internal/catalogue"
)

// Storage health, what storage-degradation detection reads: the latency of
// every write and fsync the partition logs make, segment rolls and
// deletions, I/O errors, and a disk canary — a small timed write and fsync
// to each data directory every few seconds, which measures the disk even
// when no client writes. The logs' file system is wrapped (meteredFS), so
// the log engine needs no knowledge of metrics.

var (
	mStorageWrite = catalogue.Declare("broker", "vigil_storage_write_seconds", catalogue.Histogram,
		"Latency of the write system calls of partition logs (appends and follower appends).")
	mStorageFsync = catalogue.Declare("broker", "vigil_storage_fsync_seconds", catalogue.Histogram,
		"Latency of the fsyncs of partition logs (flush policy, rolls, checkpoints, shutdown).")
	mStorageAppend = catalogue.Declare("broker", "vigil_storage_append_seconds", catalogue.Histogram,
		"Latency of a produce request's append to a partition log as the leader: validation, offsets, write, and fsync when the flush policy asks for one.")
	mStorageRolls = catalogue.Declare("broker", "vigil_storage_segment_rolls_total", catalogue.Counter,
		"Segments created (rolls of partition logs, and cleaned segments).")
	mStorageDeletes = catalogue.Declare("broker", "vigil_storage_segment_deletions_total", catalogue.Counter,
		"Segment files removed (retention, DeleteRecords, cleaning, truncation, deleted partitions).")
	mStorageErrors = catalogue.Declare("broker", "vigil_storage_io_errors_total", catalogue.Counter,
		"Failed file system operations of partition logs, by operation (write, fsync, read, open, other).", "op")
	mCanary = catalogue.Declare("broker", "vigil_storage_canary_seconds", catalogue.Histogram,
		"Latency of the disk canary: a 4 KiB write and fsync to the data directory every --disk-canary-interval.")
	mCanaryErrors = catalogue.Declare("broker", "vigil_storage_canary_errors_total", catalogue.Counter,
		"Disk canary writes that failed.")
)

// storageBuckets span 50 µs to 10 s: a healthy fsync is sub-millisecond to
// a few milliseconds, a degraded disk takes hundreds of milliseconds.
var storageBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// storageMetrics are one broker's storage metrics.
type storageMetrics struct {
	write, fsync, append, canary prometheus.Histogram
	rolls, deletes, canaryErrors prometheus.Counter
	ioErrors                     *prometheus.CounterVec
}

func newStorageMetrics(reg prometheus.Registerer, native bool) *storageMetrics {
	b := catalogue.Buckets{Classic: storageBuckets, Native: native}
	m := &storageMetrics{
		write:        mStorageWrite.Histogram(b),
		fsync:        mStorageFsync.Histogram(b),
		append:       mStorageAppend.Histogram(b),
		canary:       mCanary.Histogram(b),
		rolls:        mStorageRolls.Counter(),
		deletes:      mStorageDeletes.Counter(),
		canaryErrors: mCanaryErrors.Counter(),
		ioErrors:     mStorageErrors.CounterVec(),
	}
	reg.MustRegister(m.write, m.fsync, m.append, m.canary, m.rolls, m.deletes, m.canaryErrors, m.ioErrors)
	return m
}

// meteredFS times a file system's writes and fsyncs and counts its
// segment creations, deletions and errors.
type meteredFS struct {
	vlog.FS
	m      *storageMetrics
	faults *faults // injected below the timing, like a slow disk
}

func (f meteredFS) OpenFile(name string, flag int, perm uint32) (vlog.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		if !os.IsNotExist(err) {
			f.m.ioErrors.WithLabelValues("open").Inc()
		}
		return nil, err
	}
	if flag&os.O_CREATE != 0 && strings.HasSuffix(name, ".log") {
		f.m.rolls.Inc()
	}
	return meteredFile{File: file, m: f.m, faults: f.faults}, nil
}

func (f meteredFS) Remove(name string) error {
	err := f.FS.Remove(name)
	switch {
	case err == nil && strings.HasSuffix(filepath.Base(name), ".log"):
		f.m.deletes.Inc()
	case err != nil && !os.IsNotExist(err):
		f.m.ioErrors.WithLabelValues("other").Inc()
	}
	return err
}

type meteredFile struct {
	vlog.File
	m      *storageMetrics
	faults *faults
}

func (f meteredFile) Write(p []byte) (int, error) {
	t := time.Now()
	n, err := 0, f.faults.storage("write")
	if err == nil {
		n, err = f.File.Write(p)
	}
	f.m.write.Observe(time.Since(t).Seconds())
	if err != nil {
		f.m.ioErrors.WithLabelValues("write").Inc()
	}
	return n, err
}

func (f meteredFile) WriteAt(p []byte, off int64) (int, error) {
	t := time.Now()
	n, err := 0, f.faults.storage("write")
	if err == nil {
		n, err = f.File.WriteAt(p, off)
	}
	f.m.write.Observe(time.Since(t).Seconds())
	if err != nil {
		f.m.ioErrors.WithLabelValues("write").Inc()
	}
	return n, err
}

func (f meteredFile) Sync() error {
	t := time.Now()
	err := f.faults.storage("fsync")
	if err == nil {
		err = f.File.Sync()
	}
	f.m.fsync.Observe(time.Since(t).Seconds())
	if err != nil {
		f.m.ioErrors.WithLabelValues("fsync").Inc()
	}
	return err
}

func (f meteredFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		f.m.ioErrors.WithLabelValues("read").Inc()
	}
	return n, err
}

// canaryLoop writes and fsyncs a small file in the data directory every
// interval, through the logs' file system (so injected disk faults show),
// and records how long it took.
func (b *Broker) canaryLoop() {
	t := time.NewTicker(b.cfg.DiskCanaryInterval)
	defer t.Stop()
	path := filepath.Join(b.cfg.DataDir, ".vigil-disk-canary")
	buf := make([]byte, 4096)
	for {
		select {
		case <-b.ctx.Done():
			_ = os.Remove(path)
			return
		case <-t.C:
		}
		start := time.Now()
		err := b.canaryWrite(path, buf)
		b.storage.canary.Observe(time.Since(start).Seconds())
		if err != nil {
			b.storage.canaryErrors.Inc()
			b.logger.Warn("disk canary write failed", "dir", b.cfg.DataDir, "err", err)
		}
	}
}

func (b *Broker) canaryWrite(path string, buf []byte) error {
	fs := b.cfg.FS
	if fs == nil {
		fs = vlog.OSFS()
	}
	f, err := fs.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	buf[0]++
	if _, err := f.WriteAt(buf, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

package log

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Log is one partition's log. All methods are safe for concurrent use.
//
// One mutex serializes the writers (Append, AppendAsFollower, rolling,
// retention, truncation, flushes, Close). Readers (Read, OffsetForTimestamp, MaxTimestamp, the offset and
// size accessors) take no lock: they load the published segment list, log
// end offset and per-segment sizes and index prefixes atomically and read
// segment files with pread while holding a reference on the segment.
type Log struct {
	dir    string
	fs     FS
	now    func() time.Time
	logger *slog.Logger
	cfg    atomic.Pointer[Config]

	mu sync.Mutex // serializes writers; guards the fields marked "under mu"

	segs    atomic.Pointer[[]*segment] // oldest first; the last is the active segment
	start   atomic.Int64               // log start offset
	end     atomic.Int64               // log end offset: published after the data is written
	closed  atomic.Bool
	offline atomic.Pointer[error]

	producers producerStates    // under mu
	pending   []pendingProducer // under mu: scratch for one Append
	epochs    epochCache        // written under mu, read lock-free

	unflushed      int64 // under mu: records appended since the last fsync
	firstUnflushed int64 // under mu: wall clock (ms) of the oldest unflushed append

	waitMu  sync.Mutex
	waitCh  chan struct{}
	waiting atomic.Bool

	// Log compaction (see clean.go).
	cleanMu       sync.Mutex            // held by the cleaning of this log in progress
	firstDirty    atomic.Int64          // the cleaner checkpoint: offsets below were cleaned; -1 when unknown
	deleteHorizon atomic.Int64          // earliest delete horizon of a tombstone in the clean part; -1 for none
	cleanErr      atomic.Pointer[error] // why the cleaner gave up on this log
	closeCtx      context.Context       // ends when Close begins, stopping a cleaning
	closeCancel   context.CancelFunc

	// Replication (see hw.go and truncate.go).
	hw          atomic.Int64                            // the high watermark as set; HighWatermark raises it to the log start
	hwMu        sync.Mutex                              // orders SetHighWatermark with truncations, which lower end and hw together
	hwUsed      atomic.Bool                             // the high watermark was set, or recovered from its checkpoint
	hwWritten   int64                                   // under ckptMu: the high watermark in the checkpoint file
	ckptMu      sync.Mutex                              // serialises high watermark checkpoint writes (see writeHighWatermark)
	truncating  atomic.Int32                            // truncations waiting for cleaning to pause
	cleanCancel atomic.Pointer[context.CancelCauseFunc] // cancels the cleaning in progress
}

// Open opens (creating if needed) the log in dir and recovers it: see the
// package documentation for what recovery checks and repairs. It fails with
// an error wrapping KAFKA_STORAGE_ERROR when the directory cannot be read or
// repaired.
func Open(dir string, cfg Config, opts Options) (*Log, error) {
	l := newLog(dir, cfg, opts)
	if err := l.recover(); err != nil {
		if segs := l.segs.Load(); segs != nil {
			for _, s := range *segs {
				s.release()
			}
		}
		l.closeCancel()
		return nil, fmt.Errorf("opening partition log %s (%w): %w", dir, kerr.KafkaStorageError, err)
	}
	return l, nil
}

// newLog returns the Log for dir, with no segments and not recovered.
func newLog(dir string, cfg Config, opts Options) *Log {
	l := &Log{
		dir:            dir,
		fs:             opts.FS,
		now:            opts.Now,
		logger:         opts.Logger,
		producers:      make(producerStates),
		firstUnflushed: -1,
	}
	if l.fs == nil {
		l.fs = osFS{}
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	l.closeCtx, l.closeCancel = context.WithCancel(context.Background())
	l.firstDirty.Store(-1)
	l.deleteHorizon.Store(-1)
	l.SetConfig(cfg)
	return l
}

// SetConfig replaces the log's configuration. It applies to the next
// Append or Maintain.
func (l *Log) SetConfig(cfg Config) {
	n := cfg.normalized()
	l.cfg.Store(&n)
}

// StartOffset returns the log start offset.
func (l *Log) StartOffset() int64 { return l.start.Load() }

// EndOffset returns the log end offset (the next offset to be assigned).
// Everything below it can be read.
func (l *Log) EndOffset() int64 { return l.end.Load() }

// Size returns the total bytes of all segments.
func (l *Log) Size() int64 {
	var n int64
	for _, s := range l.segments() {
		n += s.size.Load()
	}
	return n
}

// Producers returns the idempotent producer state, ordered by producer id.
func (l *Log) Producers() []ProducerInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.producers.infos()
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch, exactly as Kafka's
// LeaderEpochFileCache.endOffsetFor: the largest epoch <= epoch known to
// the log and the first offset after the end of that epoch (the start of
// the next higher epoch), or the log end offset for the latest epoch. For
// an epoch below the earliest one it knows it returns (epoch, start of the
// earliest epoch). It returns (-1, -1), UNDEFINED_EPOCH and
// UNDEFINED_EPOCH_OFFSET, when epoch is -1, when the log knows no epoch
// (nothing was appended with a leader epoch >= 0 and none was assigned)
// and when epoch is newer than the latest epoch: a leader must record its
// epoch with AssignLeaderEpoch when elected, before answering for it.
// Followers compare it with their own log to find where they diverge.
func (l *Log) EndOffsetForEpoch(epoch int32) (leaderEpoch int32, endOffset int64) {
	return l.epochs.endOffsetFor(epoch, l.end.Load())
}

// Offline reports the storage error that took the log offline, if any.
func (l *Log) Offline() error {
	if p := l.offline.Load(); p != nil {
		return *p
	}
	return nil
}

// Wait returns a channel that is closed by the next Append or
// AppendAsFollower (or truncation, or Close). To wait for data past offset
// o without missing an append: ch := l.Wait(); if l.EndOffset() > o { read }
// else { <-ch }. Nothing is allocated by Append while no one waits.
func (l *Log) Wait() <-chan struct{} {
	l.waitMu.Lock()
	defer l.waitMu.Unlock()
	if l.closed.Load() {
		return closedChan
	}
	if l.waitCh == nil {
		l.waitCh = make(chan struct{})
		l.waiting.Store(true)
	}
	return l.waitCh
}

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// wake closes the channel of Wait, if anyone asked for it.
func (l *Log) wake() {
	if !l.waiting.Load() {
		return
	}
	l.waitMu.Lock()
	if l.waitCh != nil {
		close(l.waitCh)
		l.waitCh = nil
	}
	l.waiting.Store(false)
	l.waitMu.Unlock()
}

// Flush fsyncs everything appended so far and checkpoints the high
// watermark if it changed.
func (l *Log) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if err := l.flushLocked(); err != nil {
		return err
	}
	return l.writeHighWatermark()
}

// flushLocked fsyncs the active segment; rolled segments were fsynced when
// they were rolled.
func (l *Log) flushLocked() error {
	if l.unflushed == 0 {
		return nil
	}
	if err := l.active().f.Sync(); err != nil {
		return l.fail("fsync of the active segment", err)
	}
	l.unflushed, l.firstUnflushed = 0, -1
	return nil
}

// Close flushes, writes the producer state snapshot, the active segment's
// indexes and the high watermark checkpoint, and closes all files (a file still being read is
// closed when its last read ends). A cleaning of the log in progress is
// stopped, and Close returns after it has (a cleaned segment already
// swapped in stays). It is idempotent; later calls of other methods return
// ErrClosed. Closing an offline log closes its files and returns its
// storage error.
func (l *Log) Close() error { return l.close(true) }

// Discard closes the log like Close but makes nothing durable first: for a
// log whose files are about to be deleted (a replica moved to other
// brokers), where the fsyncs of Close are wasted, and slow on a degraded
// disk.
func (l *Log) Discard() error { return l.close(false) }

func (l *Log) close(flush bool) error {
	first, err := l.closeLocked(flush)
	if first {
		l.closeCancel()
		l.cleanMu.Lock() // wait for a cleaning to notice
		l.cleanMu.Unlock()
	}
	return err
}

func (l *Log) closeLocked(flush bool) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return false, nil
	}
	var err error
	if err = l.Offline(); err == nil && flush {
		err = l.flushAllLocked()
	}
	l.ckptMu.Lock() // a checkpoint written outside mu ends before
	l.closed.Store(true)
	l.ckptMu.Unlock()
	segs := l.segments()
	empty := []*segment{}
	l.segs.Store(&empty)
	for _, s := range segs {
		s.release()
	}
	l.waiting.Store(true) // make wake close the channel even if no one waits
	l.wake()
	return true, err
}

// flushAllLocked makes the whole state durable: the active segment's data
// and indexes, a producer snapshot at the log end offset and the high
// watermark.
func (l *Log) flushAllLocked() error {
	if err := l.active().f.Sync(); err != nil {
		return l.fail("fsync of the active segment", err)
	}
	l.unflushed, l.firstUnflushed = 0, -1
	if err := l.active().writeIndexes(); err != nil {
		return l.fail("writing the active segment's indexes", err)
	}
	if err := l.writeSnapshotLocked(l.end.Load()); err != nil {
		return err
	}
	return l.writeHighWatermark()
}

// Delete closes the log and removes its directory. A failure to flush on
// the way out does not matter, as the data is being deleted; only a failure
// to remove the directory is returned.
func (l *Log) Delete() error {
	_ = l.Close()
	if err := l.fs.RemoveAll(l.dir); err != nil {
		return fmt.Errorf("deleting partition log %s (%w): %w", l.dir, kerr.KafkaStorageError, err)
	}
	return nil
}

// usable returns the error every operation of a closed or offline log
// returns.
func (l *Log) usable() error {
	if l.closed.Load() {
		return ErrClosed
	}
	return l.Offline()
}

// fail takes the log offline after a storage error in op and returns the
// error every later call returns. The first failure is logged.
func (l *Log) fail(op string, err error) error {
	e := fmt.Errorf("partition log %s is offline (%w): %s: %w", l.dir, kerr.KafkaStorageError, op, err)
	if l.offline.CompareAndSwap(nil, &e) {
		l.logger.Error("partition log is offline after a storage error; appends and reads fail until it is reopened",
			"dir", l.dir, "op", op, "err", err)
	}
	return *l.offline.Load()
}

// segments returns the published segment list, oldest first.
func (l *Log) segments() []*segment {
	if p := l.segs.Load(); p != nil {
		return *p
	}
	return nil
}

// active returns the segment appends go to. Only writers (under mu) call
// it, and the log always has one.
func (l *Log) active() *segment {
	segs := l.segments()
	return segs[len(segs)-1]
}

// publishSegments replaces the segment list.
func (l *Log) publishSegments(segs []*segment) {
	l.segs.Store(&segs)
}

// writeSnapshotLocked writes the producer state as of offset off and
// removes older snapshots beyond the newest maxSnapshotsToKeep.
func (l *Log) writeSnapshotLocked(off int64) error {
	if err := writeFileAtomic(l.fs, snapshotPath(l.dir, off), encodeSnapshot(l.producers)); err != nil {
		return l.fail("writing the producer state snapshot", err)
	}
	l.pruneSnapshots(off)
	return nil
}

// pruneSnapshots removes all snapshots but the newest maxSnapshotsToKeep
// at or below upTo and any above it. Failures are only logged: a stale
// snapshot is harmless (a newer one wins, one beyond the log end is removed
// on Open).
func (l *Log) pruneSnapshots(upTo int64) {
	offs, err := l.listSnapshots()
	if err != nil {
		l.logger.Warn("listing producer snapshots", "dir", l.dir, "err", err)
		return
	}
	kept := 0
	for i := len(offs) - 1; i >= 0; i-- {
		if offs[i] <= upTo && kept < maxSnapshotsToKeep {
			kept++
			continue
		}
		if err := l.fs.Remove(snapshotPath(l.dir, offs[i])); err != nil && !isNotExist(err) {
			l.logger.Warn("removing old producer snapshot", "file", snapshotPath(l.dir, offs[i]), "err", err)
		}
	}
}

// listSnapshots returns the offsets of the snapshot files, ascending.
func (l *Log) listSnapshots() ([]int64, error) {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return nil, err
	}
	var offs []int64
	for _, name := range names {
		stem, suffix, ok := splitSuffix(name)
		if !ok || suffix != snapshotSuffix {
			continue
		}
		if off, ok := parseOffsetName(stem); ok {
			offs = append(offs, off)
		}
	}
	slices.Sort(offs)
	return offs, nil
}

// writeStartOffsetLocked persists the log start offset.
func (l *Log) writeStartOffsetLocked(off int64) error {
	if err := writeFileAtomic(l.fs, filepath.Join(l.dir, startOffsetFile), encodeStartOffset(off)); err != nil {
		return l.fail("writing the log start offset checkpoint", err)
	}
	return nil
}

// writeEpochsLocked persists the leader epoch cache.
func (l *Log) writeEpochsLocked() error {
	if err := writeFileAtomic(l.fs, filepath.Join(l.dir, leaderEpochFile), encodeEpochs(l.epochs.load())); err != nil {
		return l.fail("writing the leader epoch checkpoint", err)
	}
	return nil
}

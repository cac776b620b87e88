package log

import (
	"errors"
	"log/slog"
	"time"
)

// API CONTRACT (the broker compiles against these signatures; implementation in progress).

// Config is the per-partition configuration, mirroring Kafka's topic configs.
type Config struct {
	SegmentBytes       int64         // segment.bytes: roll when the active segment would exceed this
	SegmentMs          time.Duration // segment.ms: roll when the active segment's first batch is older than this
	RetentionBytes     int64         // retention.bytes: delete oldest segments while the log is larger; -1 = unlimited
	RetentionMs        time.Duration // retention.ms: delete segments whose newest timestamp is older; <0 = unlimited
	FlushMessages      int64         // flush.messages: fsync after this many records; <=1 = every append
	FlushMs            time.Duration // flush.ms: fsync when the oldest unflushed append is this old
	MaxMessageBytes    int           // max.message.bytes: largest batch accepted
	LogAppendTime      bool          // message.timestamp.type=LogAppendTime
	IndexIntervalBytes int           // index.interval.bytes: bytes between sparse index entries
	SegmentIndexBytes  int           // segment.index.bytes: roll when the offset index would exceed this
}

// Options are the process-level collaborators of a Log.
type Options struct {
	FS     FS               // file system; nil means the operating system's
	Now    func() time.Time // clock; nil means time.Now
	Logger *slog.Logger     // nil means slog.Default()
}

// AppendInfo describes what Append wrote (or, for a duplicate, what it had
// written before).
type AppendInfo struct {
	BaseOffset     int64 // offset of the first record of the first batch
	LastOffset     int64 // offset of the last record of the last batch
	LogAppendTime  int64 // milliseconds since the epoch if LogAppendTime, else -1
	LogStartOffset int64
	Records        int   // records in the appended batches
	Bytes          int   // bytes appended
	Duplicate      bool  // true if the batch was a retry of one already written
}

// ReadInfo is the result of Read.
type ReadInfo struct {
	Records        []byte // whole batches, possibly empty
	LogStartOffset int64
	EndOffset      int64 // the log end offset at the time of the read
}

// ProducerInfo is the state kept for one idempotent producer, as reported by
// DescribeProducers.
type ProducerInfo struct {
	ProducerID       int64
	Epoch            int16
	LastSequence     int32
	LastTimestamp    int64
	CoordinatorEpoch int32
	TxnStartOffset   int64 // -1 when no transaction is open
}

// FS is the file system a Log uses. Drills and tests inject faults through it.
type FS interface {
	OpenFile(name string, flag int, perm uint32) (File, error)
	Remove(name string) error
	RemoveAll(name string) error
	Rename(oldname, newname string) error
	MkdirAll(name string, perm uint32) error
	ReadDir(name string) ([]string, error)
	Stat(name string) (size int64, err error)
}

// File is an open file of an FS.
type File interface {
	ReadAt(p []byte, off int64) (int, error)
	Write(p []byte) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Seek(offset int64, whence int) (int64, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

// Log is one partition's log. All methods are safe for concurrent use.
type Log struct{}

var errUnimplemented = errors.New("log: not yet implemented")

// Open opens (creating if needed) the log in dir and recovers it.
func Open(dir string, cfg Config, opts Options) (*Log, error) { return nil, errUnimplemented }

// Append validates and appends the record batches in records, which it
// may modify in place (base offset, leader epoch, log append time, CRC).
func (l *Log) Append(records []byte, leaderEpoch int32) (AppendInfo, error) {
	return AppendInfo{}, errUnimplemented
}

// Read appends to dst whole batches starting with the batch that contains
// offset, stopping before maxBytes would be exceeded — but always returning at
// least one whole batch when one exists — and never returning a batch whose
// last offset is at or beyond maxOffset (the high watermark).
func (l *Log) Read(dst []byte, offset int64, maxBytes int, maxOffset int64) (ReadInfo, error) {
	return ReadInfo{}, errUnimplemented
}

// Wait returns a channel that is closed by the next Append (or Close).
func (l *Log) Wait() <-chan struct{} { return nil }

// StartOffset returns the log start offset.
func (l *Log) StartOffset() int64 { return 0 }

// EndOffset returns the log end offset (the next offset to be assigned).
func (l *Log) EndOffset() int64 { return 0 }

// Size returns the total bytes of all segments.
func (l *Log) Size() int64 { return 0 }

// OffsetForTimestamp returns the first offset whose record timestamp is >= ts
// and that record's timestamp; found is false when no record qualifies.
func (l *Log) OffsetForTimestamp(ts int64) (offset, timestamp int64, found bool, err error) {
	return 0, 0, false, errUnimplemented
}

// MaxTimestamp returns the largest record timestamp in the log and the
// offset of the record carrying it; offset is -1 for an empty log.
func (l *Log) MaxTimestamp() (timestamp, offset int64, err error) { return 0, 0, errUnimplemented }

// EndOffsetForEpoch answers OffsetForLeaderEpoch: the largest epoch <= epoch
// known to the log and the first offset after the end of that epoch.
func (l *Log) EndOffsetForEpoch(epoch int32) (leaderEpoch int32, endOffset int64) { return -1, -1 }

// DeleteRecordsBefore moves the log start offset up to offset and deletes
// segments wholly below it. It returns the new log start offset.
func (l *Log) DeleteRecordsBefore(offset int64) (int64, error) { return 0, errUnimplemented }

// Maintain applies time-based rolling and retention. It returns the number
// of segments deleted.
func (l *Log) Maintain() (deleted int, err error) { return 0, errUnimplemented }

// Producers returns the idempotent producer state.
func (l *Log) Producers() []ProducerInfo { return nil }

// SetConfig replaces the log's configuration.
func (l *Log) SetConfig(cfg Config) {}

// Flush fsyncs everything appended so far.
func (l *Log) Flush() error { return errUnimplemented }

// Close flushes, writes producer and index state, and closes all files.
func (l *Log) Close() error { return errUnimplemented }

// Delete closes the log and removes its directory.
func (l *Log) Delete() error { return errUnimplemented }

// Offline reports the storage error that took the log offline, if any.
func (l *Log) Offline() error { return nil }

package log

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Config is the per-partition configuration, mirroring Kafka's topic configs.
//
// Fields whose zero value is not a valid Kafka setting take Kafka's default
// (see DefaultConfig): SegmentBytes, SegmentMs and SegmentIndexBytes when
// <= 0, IndexIntervalBytes and MaxMessageBytes when < 0, and
// ProducerExpiration and MaxCompactionLag when <= 0. RetentionBytes,
// RetentionMs, MaxMessageBytes, DeleteRetention and MinCleanableDirtyRatio
// are taken literally (retention 0 means "keep nothing but the active
// segment", max.message.bytes 0 "accept no batch", as in Kafka), so a
// caller building a Config by hand should start from DefaultConfig.
type Config struct {
	SegmentBytes       int64         // segment.bytes: roll when the active segment would exceed this (at most 2 GiB-1)
	SegmentMs          time.Duration // segment.ms: roll when the active segment's first append is older than this
	RetentionBytes     int64         // retention.bytes: delete oldest segments while the log is larger; -1 = unlimited
	RetentionMs        time.Duration // retention.ms: delete segments whose newest timestamp is older; <0 = unlimited
	FlushMessages      int64         // flush.messages: fsync after this many records; <=1 = every append
	FlushMs            time.Duration // flush.ms: fsync when the oldest unflushed append is this old (checked on Append and Maintain); 0 = every append, <0 = never by time
	MaxMessageBytes    int           // max.message.bytes: largest batch accepted; 0 accepts none (as Kafka)
	LogAppendTime      bool          // message.timestamp.type=LogAppendTime
	IndexIntervalBytes int           // index.interval.bytes: bytes between sparse index entries (0: every batch)
	SegmentIndexBytes  int           // segment.index.bytes: roll when the offset index would exceed this

	// ProducerExpiration is how long an idempotent producer's state is kept
	// after its last batch's timestamp (Kafka's producer.id.expiration.ms,
	// measured like Kafka: the current time minus the producer's last batch
	// max timestamp). Zero means DefaultProducerExpiration.
	ProducerExpiration time.Duration

	// Compact is cleanup.policy containing "compact": Append rejects
	// records without a key (INVALID_RECORD) and a Cleaner keeps only the
	// latest record of each key. Time and size retention (the "delete"
	// policy) are RetentionMs and RetentionBytes, independently.
	Compact bool
	// DeleteRetention is delete.retention.ms: how long a tombstone (a
	// record with a null value) is kept after the cleaning that first
	// found it to be the latest record of its key.
	DeleteRetention time.Duration
	// MinCleanableDirtyRatio is min.cleanable.dirty.ratio: the background
	// cleaner cleans a log only when the dirty part (not cleaned yet)
	// makes up more than this share of the cleanable log.
	MinCleanableDirtyRatio float64
	// MinCompactionLag is min.compaction.lag.ms: a record stays
	// uncompacted at least this long (segments whose newest timestamp is
	// younger are not cleaned).
	MinCompactionLag time.Duration
	// MaxCompactionLag is max.compaction.lag.ms: a dirty record becomes
	// eligible for cleaning regardless of the dirty ratio after this long,
	// and the active segment of a compacted log is rolled after it. Zero or
	// less means DefaultMaxCompactionLag (never).
	MaxCompactionLag time.Duration
}

// Kafka's defaults for the settings of Config.
const (
	DefaultSegmentBytes       = 1 << 30
	DefaultSegmentMs          = 7 * 24 * time.Hour
	DefaultRetentionMs        = 7 * 24 * time.Hour
	DefaultMaxMessageBytes    = 1048588
	DefaultIndexIntervalBytes = 4096
	DefaultSegmentIndexBytes  = 10 << 20
	DefaultProducerExpiration = 7 * 24 * time.Hour

	DefaultDeleteRetention        = 24 * time.Hour
	DefaultMinCleanableDirtyRatio = 0.5
	DefaultMaxCompactionLag       = time.Duration(math.MaxInt64)
)

// DefaultConfig returns Kafka's default topic configuration: 1 GiB
// segments rolled weekly, seven days of retention, no size limit, fsync left
// to the operating system (flush.messages and flush.ms unlimited), CreateTime
// timestamps, no compaction (but Kafka's defaults for its settings: one day
// of delete retention, a dirty ratio of 0.5, no compaction lags).
func DefaultConfig() Config {
	return Config{
		SegmentBytes:       DefaultSegmentBytes,
		SegmentMs:          DefaultSegmentMs,
		RetentionBytes:     -1,
		RetentionMs:        DefaultRetentionMs,
		FlushMessages:      math.MaxInt64,
		FlushMs:            time.Duration(math.MaxInt64),
		MaxMessageBytes:    DefaultMaxMessageBytes,
		IndexIntervalBytes: DefaultIndexIntervalBytes,
		SegmentIndexBytes:  DefaultSegmentIndexBytes,
		ProducerExpiration: DefaultProducerExpiration,

		DeleteRetention:        DefaultDeleteRetention,
		MinCleanableDirtyRatio: DefaultMinCleanableDirtyRatio,
		MaxCompactionLag:       DefaultMaxCompactionLag,
	}
}

// normalized returns c with out-of-range values replaced by defaults or
// clamped to what the on-disk format can represent.
func (c Config) normalized() Config {
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	// Index entries hold 32-bit positions, as in Kafka (segment.bytes is an int).
	c.SegmentBytes = min(c.SegmentBytes, math.MaxInt32)
	if c.SegmentMs <= 0 {
		c.SegmentMs = DefaultSegmentMs
	}
	if c.MaxMessageBytes < 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.IndexIntervalBytes < 0 {
		c.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if c.SegmentIndexBytes < offsetEntrySize {
		c.SegmentIndexBytes = DefaultSegmentIndexBytes
	}
	if c.ProducerExpiration <= 0 {
		c.ProducerExpiration = DefaultProducerExpiration
	}
	if c.MaxCompactionLag <= 0 {
		c.MaxCompactionLag = DefaultMaxCompactionLag
	}
	c.DeleteRetention = max(c.DeleteRetention, 0)
	c.MinCompactionLag = max(c.MinCompactionLag, 0)
	if !(c.MinCleanableDirtyRatio >= 0) { // also NaN
		c.MinCleanableDirtyRatio = 0
	}
	return c
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
	Records        int  // records in the appended batches (for a duplicate: in the original batch)
	Bytes          int  // bytes appended (for a duplicate: 0, nothing was written)
	Duplicate      bool // true if the batch was a retry of one already written
}

// ReadInfo is the result of Read.
type ReadInfo struct {
	Records        []byte // dst with whole batches appended, possibly none
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

// CleanerConfig configures a Cleaner. The zero value is a valid
// configuration: unthrottled, with a 128 MiB offset map.
type CleanerConfig struct {
	// IOMaxBytesPerSecond limits the bytes cleanings read and write, all
	// of a Cleaner's cleanings together (Kafka's
	// log.cleaner.io.max.bytes.per.second); <= 0 means unlimited.
	IOMaxBytesPerSecond float64
	// DedupeBufferBytes bounds the memory of the key → offset map built by
	// one cleaning (Kafka's log.cleaner.dedupe.buffer.size divided by
	// log.cleaner.threads). A cleaning whose dirty records have more keys
	// than fit cleans only up to where the map filled, and the next
	// cleaning continues from there. <= 0 means 128 MiB.
	DedupeBufferBytes int64
	// Logger receives one line per cleaning; nil means slog.Default().
	// Errors are logged with the log's own logger.
	Logger *slog.Logger
	// Now and Sleep are the clock of the I/O throttle; nil means real time.
	// Sleep must return early, with ctx's error, when ctx ends.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// CleanResult describes one cleaning.
type CleanResult struct {
	Cleaned          bool  // false if there was nothing to clean
	FirstDirtyOffset int64 // where the dirty part began
	EndOffset        int64 // offsets below this are now clean (the next cleaning's first dirty offset)
	Segments         int   // segments rewritten
	Groups           int   // cleaned segments written (adjacent segments are merged)
	BytesRead        int64 // bytes of segments read, building the offset map and rewriting
	BytesWritten     int64 // bytes of cleaned segments written
	RecordsRead      int64 // records of the rewritten segments
	RecordsRemoved   int64 // superseded records, expired tombstones and records without a key removed
	DirtyRatio       float64
}

// RecordError is one record an Append rejected, as Kafka's Produce
// response reports it (v8+).
type RecordError struct {
	Index   int32 // index of the record among all records of the append
	Message string
}

// InvalidRecordsError is returned by Append when it rejects individual
// records (today: records without a key on a compacted log). It wraps
// INVALID_RECORD.
type InvalidRecordsError struct {
	Records []RecordError // the rejected records, in order
	msg     string
}

func (e *InvalidRecordsError) Error() string { return e.msg + ": " + kerr.InvalidRecord.Message }
func (e *InvalidRecordsError) Unwrap() error { return kerr.InvalidRecord }

// FS is the file system a Log uses. Drills and tests inject faults through it.
//
// Directories are fsynced by opening them with OpenFile(dir, os.O_RDONLY, 0)
// and calling Sync on the result, so an FS must support that.
type FS interface {
	OpenFile(name string, flag int, perm uint32) (File, error)
	Remove(name string) error
	RemoveAll(name string) error
	Rename(oldname, newname string) error
	MkdirAll(name string, perm uint32) error
	ReadDir(name string) ([]string, error)
	Stat(name string) (size int64, err error)
}

// File is an open file of an FS. ReadAt must be safe for concurrent use
// with itself and with WriteAt at other offsets (as os.File is).
type File interface {
	ReadAt(p []byte, off int64) (int, error)
	Write(p []byte) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Seek(offset int64, whence int) (int64, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

// ErrClosed is returned by every method of a closed Log. It wraps
// NOT_LEADER_OR_FOLLOWER, the retriable error a client should see while a
// partition is being closed (broker shutdown, leadership moving away).
var ErrClosed = fmt.Errorf("partition log is closed: %w", kerr.NotLeaderForPartition)

// errorf returns an error whose message is the formatted text followed by
// the Kafka error's name, and that wraps the Kafka error for errors.As.
func errorf(kind *kerr.Error, format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, kind)...)
}

package log

import (
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
// ProducerExpiration when <= 0. RetentionBytes, RetentionMs and
// MaxMessageBytes are taken literally (retention 0 means "keep nothing but
// the active segment", max.message.bytes 0 "accept no batch", as in Kafka),
// so a caller building a Config by hand should start from DefaultConfig.
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
)

// DefaultConfig returns Kafka's default topic configuration: 1 GiB
// segments rolled weekly, seven days of retention, no size limit, fsync left
// to the operating system (flush.messages and flush.ms unlimited), CreateTime
// timestamps.
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

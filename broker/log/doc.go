// Package log is the partition log engine of a Vigil broker: one Log per
// partition, stored as a directory of segment files with sparse offset and
// time indexes, exactly one writer (the partition leader) and many readers.
//
// # On disk
//
// A partition directory holds, for every segment, three files named after the
// segment's base offset (20 digits, zero padded, as Kafka does):
//
//	00000000000000000000.log        record batches (Kafka v2 format) back to back
//	00000000000000000000.index      sparse offset index: (relative offset uint32, file position uint32)
//	00000000000000000000.timeindex  sparse time index: (max timestamp int64, relative offset uint32)
//
// plus small checkpoint files: log-start-offset-checkpoint (the log start
// offset, moved by DeleteRecords and retention), leader-epoch-checkpoint (the
// leader epoch cache, epoch → first offset, in Kafka's text format, answered
// by OffsetForLeaderEpoch) and <offset>.snapshot producer state snapshots
// (idempotent producers' last five batches as of that offset, so that
// deduplication survives a restart; the two newest are kept). Other files in
// the directory are left alone.
//
// The index formats are Kafka's. An offset index entry maps the last offset
// of a batch to the batch's position and is added when more than
// index.interval.bytes were appended since the previous entry; a time index
// entry records the largest timestamp so far and the last offset of the
// batch that carried it, and is only added when that timestamp grows, plus
// once more when the segment is rolled. Both indexes are kept in memory
// (8 and 12 bytes per entry: about 2 MiB per GiB of log with the default
// interval) and written to their files when a segment is rolled and on
// Close; the active segment's indexes are always rebuilt on Open.
//
// # Appending
//
// Append takes the Records field of a Produce request unchanged: one or more
// v2 record batches. Each batch's header is validated (length, magic, CRC-32C
// over the batch, record count against lastOffsetDelta, compression codec,
// size against max.message.bytes, no control batches); records are never
// decoded on this path, and all batches are validated before any is written.
// Offsets are assigned by writing the batch's baseOffset field in place, so the
// batch is stored byte for byte as the client sent it (apart from the
// partition leader epoch, and for message.timestamp.type=LogAppendTime the
// timestamp type bit, first and max timestamps, after which the CRC is
// recomputed). The request's batches go to the active segment with one write;
// the segment is rolled first if they would not fit in segment.bytes, if the
// segment's first append is older than segment.ms, if an index could fill up
// (segment.index.bytes) or if an offset would not fit a 32-bit relative
// offset.
//
// Idempotent producers' sequences are checked under the same lock that
// assigns offsets, as Kafka's ProducerStateManager does: a duplicate of any of
// the last five batches of a producer is answered with its original offsets
// and not written again; an older producer epoch is fenced
// (INVALID_PRODUCER_EPOCH); a new epoch must start at sequence 0 and within an
// epoch sequences must follow each other (OUT_OF_ORDER_SEQUENCE_NUMBER),
// except that a producer the log has no state for may start at any sequence
// (KIP-360: its state may have been removed by retention or expiry).
// Producers idle for Config.ProducerExpiration are forgotten by Maintain.
// Transactions are not implemented yet: transactional batches (which always
// carry a producer id) are accepted as plain idempotent ones, control batches
// are rejected, and there are no transaction markers, aborted transaction
// index or last stable offset.
//
// # Reading
//
// Read, OffsetForTimestamp and MaxTimestamp take no lock. They load the
// published segment list, log end offset, per-segment sizes and index
// prefixes atomically and read segment files with pread while holding a
// reference on the segment, so they run concurrently with appends, rolls and
// deletions: a segment deleted by retention or DeleteRecords is renamed to
// *.deleted at once and its file is closed and removed when its last reader
// is done. Data becomes readable only after it is written (and, when the flush
// policy asks, fsynced): the log end offset is published last.
//
// # Durability
//
// What is durable when, assuming fsync means what it says:
//
//   - When Append returns, the batches are in the operating system's page
//     cache and readable. A process crash (kill -9) loses nothing that
//     Append acknowledged.
//   - With flush.messages <= 1 the active segment is fsynced before Append
//     returns and before the batches become readable, so an acknowledged
//     append also survives power loss. This is what acks=all relies on when
//     every batch must be flushed. The producer state and leader epochs of
//     those batches are recovered from the batches themselves.
//   - Otherwise (Kafka's default, flush.messages and flush.ms unlimited) the
//     active segment is fsynced by the first of: flush.messages records
//     appended since the last fsync (checked on Append), flush.ms since the
//     oldest unflushed append (checked on Append and Maintain), the segment
//     being rolled, Flush, Close. Until then a power loss can lose the tail.
//   - A rolled segment's data and both indexes are fsynced before the new
//     segment is created, and the directory is fsynced after it is, so after
//     a crash only the last segment can have a torn tail. A producer state
//     snapshot is written at every roll and on Close.
//   - Checkpoints, indexes and snapshots are replaced atomically: written to
//     a .tmp file, fsynced, renamed, and the directory fsynced. The leader
//     epoch checkpoint is written by the Append that first uses a new epoch,
//     before it returns. The log start offset is checkpointed before any
//     segment below it is deleted, so a crash in between leaves segments that
//     Open deletes.
//
// # Recovery
//
// Open removes leftover *.tmp and *.deleted files, indexes without a segment
// and empty segments that are not the last, and ignores (with a warning) files
// whose names do not parse. It validates the last segment batch by batch
// (header, CRC-32C and that base offsets continue from the segment's base
// offset), truncates everything after the last valid batch (logging how many
// bytes at which offset) and rebuilds its indexes. For the other segments it
// loads the indexes and checks them against the segment (entries in order and
// within the file, the first batch at the segment's base offset, the batches
// after the last offset index entry chaining to the end of the file, the time
// index reaching the largest timestamp seen); indexes that fail are rebuilt by
// reading the segment, and data that fails validation there is truncated
// (logged as an error). The log start offset is the checkpoint or the first
// segment's base offset, whichever is larger; segments wholly below it are
// deleted, and if it lies beyond the recovered end (data that was never
// fsynced) the log restarts empty at the start offset. The leader epoch cache
// is truncated to the log end and extended from the last segment's batches,
// or rebuilt from all batch headers if its checkpoint is missing or
// unreadable. Producer state comes from the newest valid snapshot at or below
// the log end plus the batch headers after it (the whole log without one).
//
// # Retention
//
// Maintain rolls a segment older than segment.ms, deletes the oldest segments
// whose largest timestamp is older than retention.ms and then those beyond
// retention.bytes (Kafka's rules: in order, never leaving the log smaller
// than retention.bytes, rolling first when the active segment itself is
// expired and not empty), expires idle producers and applies flush.ms.
// DeleteRecordsBefore moves the log start offset and deletes the segments
// wholly below it; up to the log end it leaves one empty segment there.
//
// # Errors
//
// Errors that a client should see wrap a *kerr.Error from
// github.com/twmb/franz-go/pkg/kerr (CORRUPT_MESSAGE, INVALID_RECORD,
// MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, UNSUPPORTED_COMPRESSION_TYPE,
// OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH, OFFSET_OUT_OF_RANGE,
// KAFKA_STORAGE_ERROR, ...), so the broker maps them to wire error codes with
// errors.As, and their messages say what was wrong. After a failed write,
// fsync, truncate, rename or read the log is offline: that call and every
// later one return an error wrapping KAFKA_STORAGE_ERROR (and the cause),
// Offline reports it, and the first failure is logged. Reopening the
// directory recovers it. A closed log returns ErrClosed
// (NOT_LEADER_OR_FOLLOWER).
package log

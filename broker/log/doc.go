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
// plus small checkpoint files: the log start offset (moved by DeleteRecords and
// retention), the leader epoch cache (epoch → first offset, answered by
// OffsetForLeaderEpoch) and producer state snapshots (idempotent producers'
// last sequences, so that deduplication survives a restart).
//
// # Appending
//
// Append takes the Records field of a Produce request unchanged: one or more
// v2 record batches. Each batch's header is validated (length, magic, CRC-32C
// over the batch, record count against lastOffsetDelta, compression codec,
// size against max.message.bytes); records are never decoded on this path.
// Offsets are assigned by writing the batch's baseOffset field in place, so the
// batch is stored byte for byte as the client sent it (apart from the
// partition leader epoch, and for message.timestamp.type=LogAppendTime the
// timestamp type bit and max timestamp, after which the CRC is recomputed).
// Idempotent producers' sequences are checked under the same lock that assigns
// offsets: a duplicate of any of the last five batches of a producer is
// answered with its original offsets and not written again.
//
// # Durability
//
// The flush policy follows Kafka's topic settings flush.messages and
// flush.ms: the log calls fsync after that many appended records or after that
// much time since the last fsync, whichever comes first. Every rolled segment
// is fsynced before the next one receives data, so after a crash only the
// active segment can have a torn tail. Recovery on Open validates the active
// segment batch by batch (header and CRC-32C), truncates everything after the
// last valid batch, and rebuilds indexes that are missing or do not match
// their segment.
//
// # Errors
//
// Errors that a client should see wrap a *kerr.Error from
// github.com/twmb/franz-go/pkg/kerr (CORRUPT_MESSAGE, MESSAGE_TOO_LARGE,
// OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH,
// OFFSET_OUT_OF_RANGE, KAFKA_STORAGE_ERROR, ...), so the broker maps them to
// wire error codes with errors.As. After a failed write or fsync the log is
// offline: every later call returns an error wrapping kerr.KafkaStorageError.
package log

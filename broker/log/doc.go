// Package log is the partition log engine of a Vigil broker: one Log per
// partition, stored as a directory of segment files with sparse offset and
// time indexes, exactly one writer (the partition leader's appends, or on a
// follower the replica fetcher's) and many readers.
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
// deduplication survives a restart; the two newest are kept). A replicated
// log has high-watermark-checkpoint (see Replication), and only while a
// truncation runs truncation-in-progress. A compacted log also has
// cleaner-offset-checkpoint (where the last cleaning ended and
// when a tombstone it kept may go) and, only while a cleaning runs,
// <base>.log.cleaned, <base>.index.cleaned, <base>.timeindex.cleaned (a
// cleaned segment being written) and <base>.swap (the swap record of a
// cleaned segment being swapped in). Other files in the directory are left
// alone.
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
// size against max.message.bytes, no control batches) and all batches are
// validated before any is written. Records are not decoded on this path,
// except on a compacted log: there every record is parsed (streamed through
// its decompressor, nothing kept) to check that it has a key, and records
// without one fail the append with INVALID_RECORD (*InvalidRecordsError
// lists them).
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
// deletions and cleanings: a segment deleted by retention or DeleteRecords,
// or replaced by its cleaned form, is renamed to *.deleted at once and its
// file is closed and removed when its last reader is done, so a reader
// always sees either the old segment or the new one, whole. Data becomes
// readable only after it is written (and, when the flush policy asks,
// fsynced): the log end offset is published last.
//
// In a compacted log offsets have gaps (records were removed) and batches
// may hold fewer records than their offset range, or none (see Compaction).
// A read at an offset that was compacted away returns the first batch that
// holds a later offset.
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
//   - A cleaned segment and its indexes are fsynced, and the directory
//     fsynced, before the swap that puts it in place starts; each swap is
//     recorded (atomically) before it renames anything, and the directory
//     is fsynced before the record is removed. See Compaction.
//   - Checkpoints, indexes and snapshots are replaced atomically: written to
//     a .tmp file, fsynced, renamed, and the directory fsynced. The leader
//     epoch checkpoint is written by the Append (or AppendAsFollower, or
//     AssignLeaderEpoch) that first uses a new epoch, before it returns. The
//     log start offset is checkpointed before any segment below it is
//     deleted, so a crash in between leaves segments that Open deletes.
//   - The high watermark is checkpointed lazily, by Flush, Maintain and
//     Close, and by a truncation that lowers it: after a crash it may be
//     older (lower) than what was set, never higher.
//   - A truncation is recorded (atomically) before it changes anything and
//     the record is removed only once all of it is durable; Open completes
//     a recorded truncation. See Replication.
//
// # Recovery
//
// Open first completes any swap of a cleaned segment and any truncation a
// crash interrupted (see Compaction and Replication), then removes leftover
// *.tmp, *.deleted and *.cleaned files, indexes without a segment and empty segments that are neither the
// first nor the last (an empty first segment is what the cleaner leaves when
// it removed every record there; its base offset is where the log starts),
// and ignores (with a warning) files whose names do not parse. It validates
// the last segment batch by batch (header, CRC-32C, a record count that
// fits the batch's offsets, and base offsets that start at or after the
// segment's base offset and increase), truncates everything after the last
// valid batch (logging how many bytes at which offset) and rebuilds its
// indexes. For the other segments it
// loads the indexes and checks them against the segment (entries in order and
// within the file, the first batch at the segment's base offset, the batches
// after the last offset index entry chaining to the end of the file, the time
// index reaching the largest timestamp seen); indexes that fail are rebuilt by
// reading the segment, and data that fails validation there is truncated
// (logged as an error). In every segment the first batch may start after
// the segment's base offset, offsets may leave gaps and batches may hold
// fewer records than offsets, or none: the cleaner writes such batches, and
// a follower copies them from a compacted leader into its last segment
// (Kafka's recovery accepts them too). The log start offset is the
// checkpoint or the first
// segment's base offset, whichever is larger; segments wholly below it are
// deleted, and if it lies beyond the recovered end (data that was never
// fsynced) the log restarts empty at the start offset. The leader epoch cache
// is truncated to the log end and extended from the last segment's batches,
// or rebuilt from all batch headers if its checkpoint is missing or
// unreadable; as in Kafka, an epoch recorded at the log end with no batch
// yet (AssignLeaderEpoch) is dropped, and a leader assigns it again. The
// high watermark is its checkpoint clamped to [log start, log end], or the
// log start without one. A cleaner checkpoint beyond the log end is
// lowered to it. Producer state comes from the newest valid snapshot at or
// below the log end plus the batch headers after it (the whole log without
// one).
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
// # Compaction
//
// A log with Config.Compact (cleanup.policy containing "compact") is
// cleaned by a Cleaner, as Kafka's LogCleaner does it: the broker runs
// Cleaner.CleanFilthiest in its cleaner threads, and every compacted log
// gets cleaned, internal topics such as __consumer_offsets included. With
// "compact,delete" the cleaner runs and retention (Maintain) still deletes
// old segments.
//
// The log is split at the cleaner checkpoint into a clean part (cleaned
// before) and a dirty part, which ends at the active segment, or earlier at
// the first segment whose newest record is younger than
// min.compaction.lag.ms: neither is ever cleaned. CleanFilthiest picks the
// log whose dirty bytes are the largest share of its cleanable bytes, if
// that share exceeds min.cleanable.dirty.ratio, or if a dirty segment's
// first batch is older than max.compaction.lag.ms (for which the active
// segment of a compacted log is also rolled), or if a tombstone's delete
// horizon has passed. A cleaning then:
//
//  1. builds the offset map: the latest offset of every key in the dirty
//     part, reading it batch by batch (decompressing), until the map holds
//     Cleaner's DedupeBufferBytes of keys; the map ends there (offsets below
//     are covered) and the next cleaning starts from there;
//  2. rewrites every inactive segment from the log start up to where the
//     map ends, clean part included, in groups of adjacent segments that
//     together fit segment.bytes (so small cleaned segments merge), each
//     group into one segment named after the group's first segment. A record
//     is kept if it lies beyond the map, or if it has a key, no later offset
//     in the map, and is not a tombstone past its horizon. Records without a
//     key are removed (a log that was not compacted when they were written
//     has them);
//  3. swaps each cleaned group in as soon as it is written (below), and at
//     the end writes the cleaner checkpoint.
//
// Batches keep Kafka's semantics: a batch with every record kept is copied
// byte for byte; otherwise it is rebuilt with its original base offset and
// lastOffsetDelta (so it still ends where it did, and an idempotent
// producer's last sequence stays base sequence + lastOffsetDelta), its
// producer id, epoch and base sequence, leader epoch, timestamp type,
// transactional bit and codec (recompressed; snappy keeps the Java
// client's xerial framing if it had it), the kept records' bytes unchanged
// (offset deltas still relative to the base offset), a new record count,
// max timestamp (for CreateTime, the largest kept record timestamp) and
// CRC. A batch left without records is dropped, except the last batch of
// each idempotent producer the log has state for, which is kept empty (a
// header, no records, no codec) so that producer state rebuilt from the
// log after a restart still knows the producer's epoch and last sequence.
// Offsets stay monotonic, with gaps, and the log start offset does not move:
// a first segment left with no batches is kept, empty.
//
// Tombstones (records with a null value) follow KIP-534: the first cleaning
// that keeps a tombstone as the latest record of its key sets its batch's
// delete horizon to now + delete.retention.ms (the batch's firstTimestamp
// field holds it, attribute bit 6 says so, and record timestamp deltas are
// rebased on it so record timestamps do not change). A cleaning at or after
// the horizon removes the tombstone. The earliest horizon of the clean part
// is kept with the cleaner checkpoint, so the cleaner comes back for it.
//
// Swapping a cleaned group in never leaves a mix. The cleaned segment is
// written to <base>.log.cleaned with its indexes (<base>.index.cleaned,
// <base>.timeindex.cleaned), all fsynced. Then, holding the writer lock:
// the swap record <base>.swap ("segments [base, end) are replaced") is
// written atomically; the group's files are renamed to *.deleted; the
// cleaned files are renamed into place, the log file first; the directory
// is fsynced, the swap record removed, the directory fsynced again; the new
// segment list is published. A crash before the swap record leaves .cleaned
// files that Open removes: the old segments stand. With the swap record,
// Open completes the swap: while <base>.log.cleaned exists it removes every
// old segment file in [base, end) and renames the cleaned files into place;
// once it does not, the new log file is in place and only index renames can
// be left. TestCleanCrashAtEveryStep crashes a cleaning at each of its file
// system operations and recovers.
//
// Cleaning runs beside appends and reads: it holds the writer lock only to
// read the producer state and for each swap; appends go to the active
// segment, which it never touches; readers hold references to the segments
// they read. One cleaning per log at a time; retention or DeleteRecords
// deleting a segment being cleaned makes the cleaning stop without an
// error; Close stops a cleaning and waits for it, and so do TruncateTo and
// TruncateFullyAndStartAt, which keep new cleanings from starting until
// they are done (the stopped cleaning returns without an error). The I/O
// of all of a
// Cleaner's cleanings is limited to CleanerConfig.IOMaxBytesPerSecond.
//
// A cleaning that fails before its swap (damaged data, a failed write of
// the cleaned segment) removes its .cleaned files, logs an error and marks
// only this log uncleanable (CleanerError): appends and reads go on, and it
// is not cleaned again until reopened, as Kafka marks a partition
// uncleanable. A failure during a swap (a rename or fsync) takes the log
// offline like any storage error; reopening it completes the swap. Control
// batches (there are none until transactions land) are kept whole.
//
// # Replication
//
// A follower replicates its leader with the Kafka Fetch protocol, and the
// log gives it what Kafka's UnifiedLog gives a replica:
//
//   - AppendAsFollower writes the batches a fetch returned, byte for byte:
//     offsets, partition leader epochs, timestamps and producer fields are
//     the leader's. They are validated as stored batches (so a compacted
//     leader's cleaned batches, empty batches and offset gaps, and control
//     and transactional batches, are accepted; keys and max.message.bytes
//     are the leader's business), must increase, and the first must start
//     at or after the log end offset (else OFFSET_OUT_OF_RANGE, nothing
//     written). A new leader epoch in a batch starts at its base offset in
//     the epoch cache; producer state is replayed without validation, so a
//     follower promoted to leader deduplicates retries and rejects sequence
//     gaps exactly like the old leader. Rolls, indexes, the flush policy and
//     wake-ups are those of Append; a roll after a gap starts the new
//     segment at the first batch's base offset.
//   - LatestEpoch is the follower's LastFetchedEpoch; EndOffsetForEpoch
//     answers OffsetForLeaderEpoch (and the leader's diverging-epoch check)
//     exactly as Kafka's LeaderEpochFileCache.endOffsetFor, including
//     (-1, -1) for an undefined epoch, an empty cache and an epoch newer
//     than the latest; so a broker that becomes leader at epoch E calls
//     AssignLeaderEpoch(E) first, which records E at the log end offset.
//   - TruncateTo(offset) removes a divergent tail: whole batches at and
//     after offset (the end becomes the end of the last batch kept, or the
//     base of a segment the cut left empty after a gap; never above
//     offset), deleting later segments and cutting the segment that holds
//     the new end (its file, indexes, statistics), truncating the epoch
//     cache from the end, rebuilding producer state from the newest
//     snapshot at or below the new end (snapshots above it are removed),
//     lowering the cleaner checkpoint and the high watermark. At or below
//     the log start offset it empties the log there.
//     TruncateFullyAndStartAt(offset) empties the log and restarts it at
//     offset (the leader's log start moved past the follower). Both stop a
//     cleaning in progress and hold off new ones until done.
//   - The high watermark (HighWatermark, SetHighWatermark) is kept by the
//     log: it only moves up through SetHighWatermark, clamped to the log
//     end, and down only through truncation; it is raised to the log start
//     offset when retention or DeleteRecordsBefore move the start past it.
//     The broker reads for consumers up to HighWatermark() (Read's
//     maxOffset) and for followers up to EndOffset(). A log without
//     replication never needs it: the broker may keep reading up to
//     EndOffset(), or set the high watermark after every append, as a
//     Kafka leader alone in its ISR does. A follower moves its log start
//     with DeleteRecordsBefore(min(leader's log start, EndOffset())).
//
// Truncation and readers: readers take no lock, so a truncation publishes
// the lower end offset and the new segment list first (new reads see the
// truncated log; a read beyond the end fails with OFFSET_OUT_OF_RANGE),
// deletes later segments the usual way (renamed to *.deleted, removed when
// their last reader is done), and replaces the segment it cuts by a new
// segment object on the same file; the file is cut only when the reads
// holding the old object are done (appends wait for them meanwhile). A
// read that started before the truncation may return the batches it
// removed, always whole and valid.
//
// Truncation and crashes: the truncation record truncation-in-progress
// ("TruncateTo offset" or "restart at offset", written atomically) is the
// first change on disk. Then later segments are renamed away, the segment
// file is cut and fsynced, the epoch, cleaner, start offset and high
// watermark checkpoints are rewritten, producer snapshots beyond the new
// end are removed, the directory is fsynced, and only then the record is
// removed (and the directory fsynced again). Open, finding the record,
// removes the segments above the offset and cuts the one holding it (or
// removes every segment and snapshot and writes the start offset), then
// recovers as usual, which drops epochs, snapshots and a high watermark
// beyond the new end. So after a crash the log is as it was (no record
// yet) or truncated, never a mix. TestTruncateCrashAtEveryStep crashes
// truncations at each of their file system operations.
//
// # Errors
//
// Errors that a client should see wrap a *kerr.Error from
// github.com/twmb/franz-go/pkg/kerr (CORRUPT_MESSAGE, INVALID_RECORD,
// MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, UNSUPPORTED_COMPRESSION_TYPE,
// OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH, OFFSET_OUT_OF_RANGE,
// FENCED_LEADER_EPOCH, KAFKA_STORAGE_ERROR, ...), so the broker maps them to wire error codes with
// errors.As, and their messages say what was wrong. After a failed write,
// fsync, truncate, rename or read the log is offline: that call and every
// later one return an error wrapping KAFKA_STORAGE_ERROR (and the cause),
// Offline reports it, and the first failure is logged. Reopening the
// directory recovers it. A closed log returns ErrClosed
// (NOT_LEADER_OR_FOLLOWER).
package log

package log

import (
	"fmt"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
)

// AppendAsFollower appends record batches a follower fetched from its
// leader (Kafka's UnifiedLog.appendAsFollower). The batches already carry
// their offsets, partition leader epochs, timestamps and producer fields;
// they are written byte for byte and records is not modified.
//
// Every batch is validated before anything is written, as a stored batch
// (ValidateStoredBatch: length, magic 2, CRC-32C, a known codec, a record
// count that fits its offset range), so that what the leader's cleaner
// wrote is accepted: batches with fewer records than offsets, empty
// batches, and offset gaps between batches. Control and transactional
// batches are accepted: the leader wrote them. Keys (compacted logs) and
// max.message.bytes are not checked, as in Kafka, since the leader did
// when it accepted the batches. Base offsets must increase from batch to
// batch (CORRUPT_MESSAGE otherwise), the batches must fit in a segment
// (RECORD_LIST_TOO_LARGE), and the first batch must start at or after the
// log end offset: an earlier one fails with OFFSET_OUT_OF_RANGE and
// nothing is written. Offsets are never reassigned; a first batch beyond
// the end offset leaves a gap, as a compacted leader's log has them, and
// the new end offset is the last batch's last offset + 1.
//
// Two cases are the caller's (the replica fetcher's), as in Kafka: when
// the leader's log start offset moved past this log's end (the leader
// answers the fetch with OFFSET_OUT_OF_RANGE), call TruncateFullyAndStartAt
// with the leader's log start offset; when this log is empty (StartOffset
// == EndOffset) and the first batch starts below its end but ends at or
// after it (DeleteRecords on the leader moved its start into a batch),
// call TruncateFullyAndStartAt with the batch's base offset and append
// again. A divergent tail is removed with TruncateTo before fetching.
//
// What the leader's appends did is mirrored: each batch's partition leader
// epoch, when newer than the latest epoch of the leader epoch cache,
// starts that epoch at the batch's base offset (the checkpoint is written
// before AppendAsFollower returns); idempotent producers' state is updated
// from every batch without validation (no sequence or epoch errors: the
// follower mirrors the leader), so that if this replica becomes the leader
// it detects a producer's retry as a duplicate and rejects a sequence gap
// exactly as the old leader would have. The active segment is rolled like
// Append rolls it (a new segment starts at the first batch's base offset),
// the flush policy applies as for Append, and the batches become readable
// (and Wait channels are woken) when AppendAsFollower returns.
//
// The AppendInfo gives the offsets of the first and last batch, the
// records (count fields) and bytes written; LogAppendTime is -1 (the
// batches keep the timestamps the leader gave them). A storage error
// wraps KAFKA_STORAGE_ERROR and takes the log offline.
func (l *Log) AppendAsFollower(records []byte) (AppendInfo, error) {
	cfg := l.cfg.Load()
	v, err := validateFollowerAppend(records, cfg)
	if err != nil {
		return AppendInfo{}, err
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return AppendInfo{}, err
	}
	if end := l.end.Load(); v.first < end {
		return AppendInfo{}, errorf(kerr.OffsetOutOfRange,
			"partition log %s: the batches to append start at offset %d, below the log end offset %d (truncate the divergent tail, or fetch from %d)",
			l.dir, v.first, end, end)
	}
	nowMs := l.now().UnixMilli()

	l.pending = l.pending[:0]
	for pos := 0; pos < len(records); {
		h := parseHeader(records[pos:])
		if h.ProducerID >= 0 {
			l.pendingFor(h.ProducerID).e.replay(&h, h.BaseOffset)
		}
		pos += h.Size()
	}

	seg := l.active()
	if seg.size.Load() > 0 {
		if shouldRoll(seg, cfg, len(records), v.nbatches, v.last+1-seg.next.Load(), nowMs) {
			if err := l.rollAtLocked(v.first); err != nil {
				l.pending = l.pending[:0]
				return AppendInfo{}, err
			}
			seg = l.active()
		}
	} else if v.last-seg.base > math.MaxInt32 {
		// An empty segment too far below the batches (a compaction gap of
		// more than 2^31 offsets) cannot index them.
		if err := l.replaceEmptyActiveLocked(v.first); err != nil {
			l.pending = l.pending[:0]
			return AppendInfo{}, err
		}
		seg = l.active()
	}

	pos0 := seg.size.Load()
	if err := writeFullAt(seg.f, records, pos0); err != nil {
		l.pending = l.pending[:0]
		return AppendInfo{}, l.fail("write to the active segment", err)
	}
	epochsChanged := false
	for p := 0; p < len(records); {
		h := parseHeader(records[p:])
		seg.track(&h, pos0+int64(p), cfg.IndexIntervalBytes)
		epochsChanged = l.epochs.assign(h.PartitionLeaderEpoch, h.BaseOffset) || epochsChanged
		p += h.Size()
	}
	seg.size.Store(pos0 + int64(len(records)))
	seg.appended(pos0, pos0+int64(len(records)))
	seg.next.Store(v.last + 1)
	if seg.firstAppendMs < 0 {
		seg.firstAppendMs = nowMs
	}
	seg.lastAppendMs = nowMs
	l.commitProducersLocked()
	if epochsChanged {
		if err := l.writeEpochsLocked(); err != nil {
			return AppendInfo{}, err
		}
	}

	l.unflushed += int64(v.nrecords)
	if l.firstUnflushed < 0 {
		l.firstUnflushed = nowMs
	}
	if cfg.FlushMessages <= 1 || l.unflushed >= cfg.FlushMessages ||
		(cfg.FlushMs >= 0 && nowMs-l.firstUnflushed >= cfg.FlushMs.Milliseconds()) {
		if err := l.flushLocked(); err != nil {
			return AppendInfo{}, err
		}
	}
	l.end.Store(v.last + 1)
	l.wake()
	return AppendInfo{
		BaseOffset:     v.first,
		LastOffset:     v.last,
		LogAppendTime:  -1,
		LogStartOffset: l.start.Load(),
		Records:        v.nrecords,
		Bytes:          len(records),
	}, nil
}

// followerAppend summarizes the batches of an AppendAsFollower.
type followerAppend struct {
	first, last int64 // base offset of the first batch, last offset of the last
	nbatches    int
	nrecords    int // the batches' record count fields
}

// validateFollowerAppend checks every batch a follower is about to append.
func validateFollowerAppend(records []byte, cfg *Config) (followerAppend, error) {
	var v followerAppend
	if len(records) == 0 {
		return v, errorf(kerr.CorruptMessage, "no record batches to append")
	}
	if int64(len(records)) > cfg.SegmentBytes {
		return v, errorf(kerr.RecordListTooLarge, "the %d bytes of records are more than segment.bytes (%d)", len(records), cfg.SegmentBytes)
	}
	for pos := 0; pos < len(records); v.nbatches++ {
		h, err := ValidateStoredBatch(records[pos:])
		if err != nil {
			return v, fmt.Errorf("batch %d (at byte %d of %d): %w", v.nbatches, pos, len(records), err)
		}
		if h.BaseOffset < 0 || h.BaseOffset >= math.MaxInt64-int64(h.LastOffsetDelta) {
			return v, errorf(kerr.CorruptMessage, "batch %d has base offset %d and lastOffsetDelta %d", v.nbatches, h.BaseOffset, h.LastOffsetDelta)
		}
		if v.nbatches > 0 && h.BaseOffset <= v.last {
			return v, errorf(kerr.CorruptMessage, "batch %d starts at offset %d, not after the previous batch, which ends at %d", v.nbatches, h.BaseOffset, v.last)
		}
		if v.nbatches == 0 {
			v.first = h.BaseOffset
		}
		v.last = h.LastOffset()
		v.nrecords += int(h.NumRecords)
		pos += h.Size()
	}
	if v.last-v.first > math.MaxInt32 {
		return v, errorf(kerr.RecordListTooLarge, "the batches hold offsets %d to %d, more than a segment can index (%d)", v.first, v.last, math.MaxInt32)
	}
	return v, nil
}

// replaceEmptyActiveLocked starts a new active segment at base in place of
// the empty active one. An empty first segment is kept (it holds the log
// start offset; recovery keeps it too), any other is deleted.
func (l *Log) replaceEmptyActiveLocked(base int64) error {
	segs := l.segments()
	old := segs[len(segs)-1]
	seg, err := createSegment(l.fs, l.dir, base, l.logger)
	if err != nil {
		return l.fail("starting a segment after an offset gap", err)
	}
	// The snapshot's atomic write fsyncs the directory.
	if err := l.writeSnapshotLocked(base); err != nil {
		seg.release()
		return err
	}
	if len(segs) == 1 {
		l.publishSegments([]*segment{old, seg})
		return nil
	}
	if err := old.markDeleted(); err != nil {
		seg.release()
		return l.fail("deleting an empty segment", err)
	}
	l.publishSegments(append(segs[:len(segs)-1:len(segs)-1], seg))
	old.release()
	return nil
}

// LatestEpoch returns the latest leader epoch of the leader epoch cache:
// the epoch of the last batch appended with one, or the epoch last
// recorded by AssignLeaderEpoch if newer. ok is false when the log knows
// no epoch. A follower sends it as the LastFetchedEpoch of its fetches
// (KIP-595 divergence check) and it is what the leader compares with
// EndOffsetForEpoch.
func (l *Log) LatestEpoch() (epoch int32, ok bool) {
	es := l.epochs.load()
	if len(es) == 0 {
		return -1, false
	}
	return es[len(es)-1].epoch, true
}

// AssignLeaderEpoch records that leader epoch epoch starts at the log end
// offset, and writes the leader epoch checkpoint, as a broker must when it
// becomes the partition's leader at epoch (Kafka's
// maybeAssignEpochStartOffset on makeLeader): then EndOffsetForEpoch
// answers for the new epoch (with the log end offset) and for the previous
// one (ending here) before the first batch of the new epoch is written.
// Append records an epoch at the first batch written with it too, so a
// log without replication needs no call.
//
// An epoch equal to the latest one changes nothing. An epoch older than
// the latest one fails with FENCED_LEADER_EPOCH (the caller's leadership
// is stale); a negative epoch is a caller's error. If the log is then
// truncated (TruncateTo, even to its end offset) or reopened before a
// batch of the epoch is written, the epoch is forgotten again, as in Kafka:
// a broker assigns its epoch each time it takes leadership.
func (l *Log) AssignLeaderEpoch(epoch int32) error {
	if epoch < 0 {
		return fmt.Errorf("partition log %s: cannot assign the negative leader epoch %d", l.dir, epoch)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if latest, ok := l.LatestEpoch(); ok && epoch < latest {
		return errorf(kerr.FencedLeaderEpoch, "partition log %s: leader epoch %d is older than the log's latest epoch %d", l.dir, epoch, latest)
	}
	if l.epochs.assign(epoch, l.end.Load()) {
		return l.writeEpochsLocked()
	}
	return nil
}

package log

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Append validates and appends the record batches in records, which it
// may modify in place (base offset, leader epoch, log append time, CRC).
//
// records is the Records field of a Produce request: one or more v2
// batches back to back. Every batch is validated before anything is
// written (see ValidateBatch; also max.message.bytes, no control batches,
// producer fields), so an invalid batch fails the whole append. Records are
// not decoded (except on a compacted log, below). Offsets are assigned by
// writing each batch's baseOffset, and leaderEpoch goes into each batch's
// partitionLeaderEpoch; with LogAppendTime the batches are stamped with the
// current time and their CRC recomputed. The batches are written with one write to the active
// segment, rolling it first if they would not fit.
//
// Batches with a producer id >= 0 are checked against the producer's
// state: a retry of one of the producer's last five batches returns the
// original offsets with Duplicate set and writes nothing; an older epoch
// fails with INVALID_PRODUCER_EPOCH; a sequence gap with
// OUT_OF_ORDER_SEQUENCE_NUMBER. Transactional batches are accepted as
// plain idempotent batches for now (no transaction markers or last stable
// offset yet).
//
// On a compacted log (Config.Compact) the records are decoded (streamed
// through their decompressor) to check that each has a key; records
// without one fail the append with an *InvalidRecordsError, which wraps
// INVALID_RECORD and lists them.
//
// Errors a client caused wrap CORRUPT_MESSAGE, INVALID_RECORD,
// MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, UNSUPPORTED_COMPRESSION_TYPE,
// INVALID_PRODUCER_EPOCH or OUT_OF_ORDER_SEQUENCE_NUMBER and leave the log
// unchanged; a storage error wraps KAFKA_STORAGE_ERROR and takes the log
// offline. When Append returns, the records are readable; they are durable
// when the flush policy says so (see the package documentation).
func (l *Log) Append(records []byte, leaderEpoch int32) (AppendInfo, error) {
	cfg := l.cfg.Load()
	nbatches, nrecords, err := validateAppend(records, cfg)
	if err != nil {
		return AppendInfo{}, err
	}
	appendTime := int64(-1)
	if cfg.LogAppendTime {
		appendTime = l.now().UnixMilli()
		for pos := 0; pos < len(records); {
			size := batchSizeAt(records, pos)
			setLogAppendTime(records[pos:pos+size], appendTime)
			pos += size
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return AppendInfo{}, err
	}
	if latest, ok := l.LatestEpoch(); ok && leaderEpoch < latest {
		// The caller checked its leadership at an epoch that has since
		// been superseded here (it was elected again meanwhile): batches
		// of the old epoch after the new one's start would contradict the
		// epoch cache that followers truncate by.
		return AppendInfo{}, errorf(kerr.NotLeaderForPartition, "partition log %s: leader epoch %d is older than the log's latest epoch %d; the leadership changed, retry", l.dir, leaderEpoch, latest)
	}
	nowMs := appendTime
	if nowMs < 0 {
		nowMs = l.now().UnixMilli()
	}
	base := l.end.Load()

	dup, isDup, err := l.checkProducersLocked(records, base)
	if err != nil {
		return AppendInfo{}, err
	}
	if isDup {
		info := AppendInfo{
			BaseOffset:     dup.firstOff,
			LastOffset:     dup.lastOff,
			LogAppendTime:  -1,
			LogStartOffset: l.start.Load(),
			Records:        int(dup.lastOff - dup.firstOff + 1),
			Duplicate:      true,
		}
		if cfg.LogAppendTime {
			info.LogAppendTime = dup.ts
		}
		return info, nil
	}

	seg := l.active()
	if shouldRoll(seg, cfg, len(records), nbatches, int64(nrecords), nowMs) {
		if err := l.rollLocked(); err != nil {
			return AppendInfo{}, err
		}
		seg = l.active()
	}

	next := base
	for pos := 0; pos < len(records); {
		b := records[pos:]
		binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(next))
		binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(leaderEpoch))
		next += int64(int32(binary.BigEndian.Uint32(b[offLastDelta:]))) + 1
		pos += batchSizeAt(records, pos)
	}

	pos0 := seg.size.Load()
	if err := writeFullAt(seg.f, records, pos0); err != nil {
		return AppendInfo{}, l.fail("write to the active segment", err)
	}
	for p := 0; p < len(records); {
		h := parseHeader(records[p:])
		seg.track(&h, pos0+int64(p), cfg.IndexIntervalBytes)
		p += h.Size()
	}
	seg.size.Store(pos0 + int64(len(records)))
	seg.appended(pos0, pos0+int64(len(records)))
	seg.next.Store(next)
	if seg.firstAppendMs < 0 {
		seg.firstAppendMs = nowMs
	}
	seg.lastAppendMs = nowMs
	l.commitProducersLocked()
	if l.epochs.assign(leaderEpoch, base) {
		if err := l.writeEpochsLocked(); err != nil {
			return AppendInfo{}, err
		}
	}

	l.unflushed += int64(nrecords)
	if l.firstUnflushed < 0 {
		l.firstUnflushed = nowMs
	}
	if cfg.FlushMessages <= 1 || l.unflushed >= cfg.FlushMessages ||
		(cfg.FlushMs >= 0 && nowMs-l.firstUnflushed >= cfg.FlushMs.Milliseconds()) {
		// Before publishing: readers never see data the policy says must
		// be durable first.
		if err := l.flushLocked(); err != nil {
			return AppendInfo{}, err
		}
	}
	l.end.Store(next)
	l.wake()
	return AppendInfo{
		BaseOffset:     base,
		LastOffset:     next - 1,
		LogAppendTime:  appendTime,
		LogStartOffset: l.start.Load(),
		Records:        nrecords,
		Bytes:          len(records),
	}, nil
}

// batchSizeAt is the size of the (validated) batch at pos.
func batchSizeAt(records []byte, pos int) int {
	return batchLengthOverhead + int(int32(binary.BigEndian.Uint32(records[pos+offLength:])))
}

// validateAppend checks every batch of a produce request's records and
// returns how many batches and records there are.
func validateAppend(records []byte, cfg *Config) (nbatches, nrecords int, err error) {
	if len(records) == 0 {
		return 0, 0, errorf(kerr.CorruptMessage, "no record batches to append")
	}
	if int64(len(records)) > cfg.SegmentBytes {
		return 0, 0, errorf(kerr.RecordListTooLarge, "the %d bytes of records are more than segment.bytes (%d)", len(records), cfg.SegmentBytes)
	}
	var (
		span    int64
		keyless []RecordError
	)
	for pos := 0; pos < len(records); nbatches++ {
		h, err := ValidateBatch(records[pos:])
		if err != nil {
			return 0, 0, fmt.Errorf("batch %d (at byte %d of %d): %w", nbatches, pos, len(records), err)
		}
		if size := h.Size(); size > cfg.MaxMessageBytes {
			return 0, 0, errorf(kerr.MessageTooLarge, "batch %d is %d bytes, more than max.message.bytes (%d)", nbatches, size, cfg.MaxMessageBytes)
		}
		if h.IsControl() {
			return 0, 0, errorf(kerr.InvalidRecord, "batch %d is a control batch: clients may not write control records", nbatches)
		}
		if h.ProducerID < 0 && h.IsTransactional() {
			return 0, 0, errorf(kerr.InvalidRecord, "batch %d is transactional but has no producer id", nbatches)
		}
		if h.ProducerID >= 0 && (h.BaseSequence < 0 || h.ProducerEpoch < 0) {
			return 0, 0, errorf(kerr.InvalidRecord, "batch %d of producer %d has invalid epoch %d or base sequence %d",
				nbatches, h.ProducerID, h.ProducerEpoch, h.BaseSequence)
		}
		if cfg.Compact {
			// The only decoding on the append path, for compacted logs only.
			if keyless, err = keylessRecords(records[pos:], &h, int32(min(nrecords, math.MaxInt32)), keyless); err != nil {
				return 0, 0, fmt.Errorf("batch %d (at byte %d of %d): %w", nbatches, pos, len(records), err)
			}
		}
		nrecords += int(h.NumRecords)
		span += int64(h.NumRecords)
		pos += h.Size()
	}
	if span > math.MaxInt32 {
		return 0, 0, errorf(kerr.RecordListTooLarge, "the batches hold %d records, more than a segment can index (%d)", span, math.MaxInt32)
	}
	if len(keyless) > 0 {
		return 0, 0, &InvalidRecordsError{
			Records: keyless,
			msg: fmt.Sprintf("%d of the %d records have no key, and a compacted topic (cleanup.policy=compact) accepts only records with keys (first: %s)",
				len(keyless), nrecords, keyless[0].Message),
		}
	}
	return nbatches, nrecords, nil
}

// pendingProducer is a producer's state as updated by the batches of the
// Append in progress, committed only when the write succeeds.
type pendingProducer struct {
	e producerEntry
}

// checkProducersLocked validates the idempotent batches of records, whose
// first offset will be base. If a batch is a retry of a batch already
// written, it returns that batch and isDup (the whole append is then a
// duplicate, as in Kafka, which never writes part of a produce request).
func (l *Log) checkProducersLocked(records []byte, base int64) (dup batchMeta, isDup bool, err error) {
	l.pending = l.pending[:0]
	off := base
	for pos := 0; pos < len(records); {
		h := parseHeader(records[pos:])
		if h.ProducerID >= 0 {
			if c := l.producers[h.ProducerID]; c != nil {
				if m, ok := c.findDuplicate(h.ProducerEpoch, h.BaseSequence, h.LastSequence()); ok {
					l.pending = l.pending[:0]
					return m, true, nil
				}
			}
			if err := l.pendingFor(h.ProducerID).e.checkBatch(&h, off); err != nil {
				l.pending = l.pending[:0]
				return batchMeta{}, false, err
			}
		}
		off += int64(h.LastOffsetDelta) + 1
		pos += h.Size()
	}
	return batchMeta{}, false, nil
}

func (l *Log) pendingFor(id int64) *pendingProducer {
	for i := range l.pending {
		if l.pending[i].e.id == id {
			return &l.pending[i]
		}
	}
	e := newProducerEntry(id)
	if c := l.producers[id]; c != nil {
		e = *c
	}
	l.pending = append(l.pending, pendingProducer{e: e})
	return &l.pending[len(l.pending)-1]
}

func (l *Log) commitProducersLocked() {
	for i := range l.pending {
		p := &l.pending[i]
		if c := l.producers[p.e.id]; c != nil {
			*c = p.e
		} else {
			e := p.e
			l.producers[e.id] = &e
		}
	}
	l.pending = l.pending[:0]
}

// shouldRoll reports whether an append of appendBytes bytes in nbatches
// batches holding nrecords records must go to a new segment, as Kafka's
// LogSegment.shouldRoll: the segment would exceed segment.bytes, it is
// older than segment.ms, an index could overflow, or an offset would not
// fit in an index entry. An empty segment is never rolled.
func shouldRoll(seg *segment, cfg *Config, appendBytes, nbatches int, nrecords, nowMs int64) bool {
	size := seg.size.Load()
	if size == 0 {
		return false
	}
	return size+int64(appendBytes) > cfg.SegmentBytes ||
		segmentExpired(seg, cfg, nowMs) ||
		seg.offsets.count()+nbatches > cfg.SegmentIndexBytes/offsetEntrySize ||
		seg.times.count()+nbatches+1 > cfg.SegmentIndexBytes/timeEntrySize ||
		seg.next.Load()+nrecords-1-seg.base > math.MaxInt32
}

// segmentExpired reports whether a non-empty segment's first append is more
// than segment.ms ago (or, for a compacted log, max.compaction.lag.ms if
// that is shorter, as Kafka rolls: the cleaner never touches the active
// segment, so a record can only be compacted within the lag once its
// segment was rolled).
func segmentExpired(seg *segment, cfg *Config, nowMs int64) bool {
	rollMs := cfg.SegmentMs
	if cfg.Compact {
		rollMs = min(rollMs, cfg.MaxCompactionLag)
	}
	return seg.firstAppendMs >= 0 && nowMs-seg.firstAppendMs > rollMs.Milliseconds()
}

// rollLocked makes the active segment durable and complete (indexes
// written, data and indexes fsynced), starts a new active segment at the
// log end offset and snapshots the producer state there. Rolling an empty
// segment does nothing.
func (l *Log) rollLocked() error { return l.rollAtLocked(l.end.Load()) }

// rollAtLocked is rollLocked with the new segment's base offset, which is
// the log end offset or, for a follower's append that starts after a gap,
// the first offset of the append (base >= l.end).
func (l *Log) rollAtLocked(base int64) error {
	old := l.active()
	if old.size.Load() == 0 {
		return nil
	}
	if err := old.finish(); err != nil {
		return l.fail("rolling the active segment", err)
	}
	l.unflushed, l.firstUnflushed = 0, -1
	seg, err := createSegment(l.fs, l.dir, base, l.logger)
	if err != nil {
		return l.fail("rolling the active segment", err)
	}
	// The snapshot's atomic write fsyncs the directory, which also makes
	// the new segment's file durable.
	if err := l.writeSnapshotLocked(base); err != nil {
		seg.release()
		return err
	}
	segs := l.segments()
	next := make([]*segment, len(segs), len(segs)+1)
	copy(next, segs)
	l.publishSegments(append(next, seg))
	l.logger.Debug("rolled segment", "dir", l.dir, "base_offset", base, "previous_size", old.size.Load())
	return nil
}

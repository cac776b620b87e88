package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"path/filepath"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
)

// producerBatchesKept is how many of a producer's latest batches are
// remembered for deduplication, as Kafka's ProducerStateEntry.NumBatchesToRetain
// (and the producer's max.in.flight.requests.per.connection limit of 5).
const producerBatchesKept = 5

// batchMeta identifies one appended batch of an idempotent producer.
type batchMeta struct {
	firstSeq, lastSeq int32
	firstOff, lastOff int64
	ts                int64 // the batch's max timestamp
}

// producerEntry is the state of one idempotent producer, as Kafka's
// ProducerStateEntry. Transactions are not implemented yet: transactional
// batches are accepted as plain idempotent ones, coordinatorEpoch stays -1
// and txnStart -1.
type producerEntry struct {
	id         int64
	epoch      int16 // -1 (Kafka's NO_PRODUCER_EPOCH) for a producer with no state
	batches    [producerBatchesKept]batchMeta
	nbatches   int // batches[:nbatches] are valid, oldest first
	lastTs     int64
	coordEpoch int32
	txnStart   int64
}

func newProducerEntry(id int64) producerEntry {
	return producerEntry{id: id, epoch: -1, lastTs: -1, coordEpoch: -1, txnStart: -1}
}

// lastSeq is the last sequence written, or -1.
func (e *producerEntry) lastSeq() int32 {
	if e.nbatches == 0 {
		return -1
	}
	return e.batches[e.nbatches-1].lastSeq
}

func (e *producerEntry) addBatch(m batchMeta) {
	if e.nbatches == producerBatchesKept {
		copy(e.batches[:], e.batches[1:])
		e.nbatches--
	}
	e.batches[e.nbatches] = m
	e.nbatches++
	e.lastTs = m.ts
}

// setEpoch moves the producer to epoch, forgetting the batches of the
// previous epoch when it changes (Kafka's maybeUpdateProducerEpoch).
func (e *producerEntry) setEpoch(epoch int16) {
	if e.epoch != epoch {
		e.epoch = epoch
		e.nbatches = 0
	}
}

// findDuplicate returns the retained batch with the same epoch and
// sequence range, if any (Kafka's ProducerStateEntry.findDuplicateBatch).
func (e *producerEntry) findDuplicate(epoch int16, firstSeq, lastSeq int32) (batchMeta, bool) {
	if epoch != e.epoch {
		return batchMeta{}, false
	}
	for _, b := range e.batches[:e.nbatches] {
		if b.firstSeq == firstSeq && b.lastSeq == lastSeq {
			return b, true
		}
	}
	return batchMeta{}, false
}

// inSequence reports whether next directly follows last, wrapping from
// math.MaxInt32 to 0.
func inSequence(last, next int32) bool {
	return int64(next) == int64(last)+1 || (next == 0 && last == math.MaxInt32)
}

// checkBatch validates a batch against the producer's state the way Kafka's
// ProducerAppendInfo does for a client append, and on success records it.
func (e *producerEntry) checkBatch(h *BatchHeader, firstOff int64) error {
	if h.ProducerEpoch < e.epoch {
		return errorf(kerr.InvalidProducerEpoch, "producer %d has epoch %d, older than the current epoch %d: this producer was fenced by a newer instance",
			h.ProducerID, h.ProducerEpoch, e.epoch)
	}
	if h.ProducerEpoch != e.epoch {
		// A new epoch must start at sequence 0, unless the producer has no
		// state (unknown, or expired or deleted by retention), in which case
		// any sequence is accepted, as Kafka does since KIP-360.
		if h.BaseSequence != 0 && e.epoch != -1 {
			return errorf(kerr.OutOfOrderSequenceNumber, "producer %d started epoch %d at sequence %d, want 0 (previous epoch %d)",
				h.ProducerID, h.ProducerEpoch, h.BaseSequence, e.epoch)
		}
	} else if e.epoch != -1 && !inSequence(e.lastSeq(), h.BaseSequence) {
		return errorf(kerr.OutOfOrderSequenceNumber, "producer %d epoch %d sent sequence %d, want %d (the last sequence written is %d)",
			h.ProducerID, h.ProducerEpoch, h.BaseSequence, incrementSequence(e.lastSeq(), 1), e.lastSeq())
	}
	e.replay(h, firstOff)
	return nil
}

// replay records a batch without validation: for batches read back from
// the log on recovery, batches a follower copies from its leader, and
// after checkBatch. A control batch (a transaction marker, which only a
// leader's transaction coordinator writes) moves the producer to its epoch
// and ends its transaction but is no batch of sequences to deduplicate, as
// in Kafka's ProducerAppendInfo.appendEndTxnMarker.
func (e *producerEntry) replay(h *BatchHeader, firstOff int64) {
	e.setEpoch(h.ProducerEpoch)
	if h.IsControl() {
		e.lastTs = h.MaxTimestamp
		e.txnStart = -1
		return
	}
	e.addBatch(batchMeta{
		firstSeq: h.BaseSequence,
		lastSeq:  h.LastSequence(),
		firstOff: firstOff,
		lastOff:  firstOff + int64(h.LastOffsetDelta),
		ts:       h.MaxTimestamp,
	})
}

func (e *producerEntry) info() ProducerInfo {
	return ProducerInfo{
		ProducerID:       e.id,
		Epoch:            e.epoch,
		LastSequence:     e.lastSeq(),
		LastTimestamp:    e.lastTs,
		CoordinatorEpoch: e.coordEpoch,
		TxnStartOffset:   e.txnStart,
	}
}

// producerStates is the state of all idempotent producers of a log.
type producerStates map[int64]*producerEntry

// replay applies a batch read back from the log.
func (ps producerStates) replay(h *BatchHeader) {
	if h.ProducerID < 0 {
		return
	}
	e := ps[h.ProducerID]
	if e == nil {
		ne := newProducerEntry(h.ProducerID)
		e = &ne
		ps[h.ProducerID] = e
	}
	e.replay(h, h.BaseOffset)
}

// expire removes producers whose last timestamp is expiration or more
// before nowMs (Kafka's isProducerExpired) and returns how many.
func (ps producerStates) expire(nowMs, expirationMs int64) int {
	n := 0
	for id, e := range ps {
		if e.txnStart < 0 && nowMs-e.lastTs >= expirationMs {
			delete(ps, id)
			n++
		}
	}
	return n
}

func (ps producerStates) infos() []ProducerInfo {
	out := make([]ProducerInfo, 0, len(ps))
	for _, e := range ps {
		out = append(out, e.info())
	}
	slices.SortFunc(out, func(a, b ProducerInfo) int {
		switch {
		case a.ProducerID < b.ProducerID:
			return -1
		case a.ProducerID > b.ProducerID:
			return 1
		}
		return 0
	})
	return out
}

// Producer snapshot files, <offset>.snapshot, hold the producer state as of
// that log offset (every batch below it applied):
//
//	version uint16 (1) | crc uint32 (CRC-32C of the rest) | count uint32 | entries
//	entry: producerId int64 | epoch int16 | lastTimestamp int64 |
//	       coordinatorEpoch int32 | txnStartOffset int64 | nbatches uint8 |
//	       nbatches × (firstSeq int32 | lastSeq int32 | firstOffset int64 | lastOffset int64 | maxTimestamp int64)
const (
	snapshotVersion     = 1
	snapshotHeaderSize  = 2 + 4 + 4
	snapshotEntrySize   = 8 + 2 + 8 + 4 + 8 + 1
	snapshotBatchSize   = 4 + 4 + 8 + 8 + 8
	maxSnapshotsToKeep  = 2
	snapshotFilePattern = "%020d" + snapshotSuffix
)

func encodeSnapshot(ps producerStates) []byte {
	n := snapshotHeaderSize
	for _, e := range ps {
		n += snapshotEntrySize + e.nbatches*snapshotBatchSize
	}
	b := make([]byte, snapshotHeaderSize, n)
	binary.BigEndian.PutUint16(b, snapshotVersion)
	binary.BigEndian.PutUint32(b[6:], uint32(len(ps)))
	ids := make([]int64, 0, len(ps))
	for id := range ps {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		e := ps[id]
		b = binary.BigEndian.AppendUint64(b, uint64(e.id))
		b = binary.BigEndian.AppendUint16(b, uint16(e.epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.lastTs))
		b = binary.BigEndian.AppendUint32(b, uint32(e.coordEpoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.txnStart))
		b = append(b, byte(e.nbatches))
		for _, m := range e.batches[:e.nbatches] {
			b = binary.BigEndian.AppendUint32(b, uint32(m.firstSeq))
			b = binary.BigEndian.AppendUint32(b, uint32(m.lastSeq))
			b = binary.BigEndian.AppendUint64(b, uint64(m.firstOff))
			b = binary.BigEndian.AppendUint64(b, uint64(m.lastOff))
			b = binary.BigEndian.AppendUint64(b, uint64(m.ts))
		}
	}
	binary.BigEndian.PutUint32(b[2:], crc32.Checksum(b[6:], castagnoli))
	return b
}

var errBadSnapshot = errors.New("malformed producer snapshot")

func decodeSnapshot(b []byte) (producerStates, error) {
	if len(b) < snapshotHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes", errBadSnapshot, len(b))
	}
	if v := binary.BigEndian.Uint16(b); v != snapshotVersion {
		return nil, fmt.Errorf("%w: unknown version %d", errBadSnapshot, v)
	}
	if want, got := binary.BigEndian.Uint32(b[2:]), crc32.Checksum(b[6:], castagnoli); want != got {
		return nil, fmt.Errorf("%w: CRC-32C %08x, want %08x", errBadSnapshot, got, want)
	}
	count := int(binary.BigEndian.Uint32(b[6:]))
	b = b[snapshotHeaderSize:]
	if count > len(b)/snapshotEntrySize {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", errBadSnapshot, count, len(b))
	}
	ps := make(producerStates, count)
	for range count {
		if len(b) < snapshotEntrySize {
			return nil, fmt.Errorf("%w: truncated entry", errBadSnapshot)
		}
		e := newProducerEntry(int64(binary.BigEndian.Uint64(b)))
		e.epoch = int16(binary.BigEndian.Uint16(b[8:]))
		e.lastTs = int64(binary.BigEndian.Uint64(b[10:]))
		e.coordEpoch = int32(binary.BigEndian.Uint32(b[18:]))
		e.txnStart = int64(binary.BigEndian.Uint64(b[22:]))
		e.nbatches = int(b[30])
		b = b[snapshotEntrySize:]
		if e.nbatches > producerBatchesKept || len(b) < e.nbatches*snapshotBatchSize {
			return nil, fmt.Errorf("%w: entry for producer %d has %d batches", errBadSnapshot, e.id, e.nbatches)
		}
		for i := range e.nbatches {
			e.batches[i] = batchMeta{
				firstSeq: int32(binary.BigEndian.Uint32(b)),
				lastSeq:  int32(binary.BigEndian.Uint32(b[4:])),
				firstOff: int64(binary.BigEndian.Uint64(b[8:])),
				lastOff:  int64(binary.BigEndian.Uint64(b[16:])),
				ts:       int64(binary.BigEndian.Uint64(b[24:])),
			}
			b = b[snapshotBatchSize:]
		}
		if e.id < 0 {
			return nil, fmt.Errorf("%w: negative producer id %d", errBadSnapshot, e.id)
		}
		ps[e.id] = &e
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBadSnapshot, len(b))
	}
	return ps, nil
}

func snapshotPath(dir string, off int64) string {
	return filepath.Join(dir, fmt.Sprintf(snapshotFilePattern, off))
}

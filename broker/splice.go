package broker

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"net"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fetch responses are mostly record bytes that the broker read from its
// segments into pooled buffers. Encoding them with kmsg copies every byte
// into the response buffer. Instead, a fetch response is encoded by kmsg
// with a small marker in place of each large record set, and then written
// with one writev of the pieces: the encoded bytes between the record sets
// (with each record set's length prefix rewritten) and the record buffers
// themselves. The bytes on the wire are exactly what kmsg would have
// encoded with the real record sets.
//
// A marker is spliceMarkerLen bytes: a random per-process prefix followed
// by the record set's index. Splicing is exact because it checks that the
// encoded response holds exactly one occurrence of the prefix per record
// set, in order, each preceded by the length prefix kmsg writes for a
// marker; any other occurrence (a topic id or error message that happens to
// contain the 12 random bytes) makes it fall back to the ordinary copy.

const (
	spliceMarkerLen = 16
	// spliceMin is the smallest record set written in place; smaller
	// ones are cheaper to copy than to give their own iovec.
	spliceMin = 4096
)

// splicePrefix is the random part of every marker.
var splicePrefix = func() (p [spliceMarkerLen - 4]byte) {
	if _, err := rand.Read(p[:]); err != nil {
		panic("broker: no randomness for fetch response markers: " + err.Error())
	}
	return p
}()

// spliceSet is one record set taken out of a fetch response.
type spliceSet struct {
	p    *kmsg.FetchResponseTopicPartition
	recs []byte
}

// encodeFetchSpliced encodes fr like encodeResponse, but with record sets
// of at least spliceMin bytes as separate pieces that alias the record
// buffers. It returns nil when nothing is worth splicing or the markers
// cannot be located exactly; the caller then encodes normally. fr is left
// as it was.
func encodeFetchSpliced(req *request, fr *kmsg.FetchResponse) *response {
	var sets []spliceSet
	for i := range fr.Topics {
		for j := range fr.Topics[i].Partitions {
			p := &fr.Topics[i].Partitions[j]
			if len(p.RecordBatches) >= spliceMin {
				sets = append(sets, spliceSet{p: p, recs: p.RecordBatches})
			}
		}
	}
	if len(sets) == 0 {
		return nil
	}
	marks := make([]byte, spliceMarkerLen*len(sets))
	for i := range sets {
		m := marks[i*spliceMarkerLen : (i+1)*spliceMarkerLen]
		copy(m, splicePrefix[:])
		binary.BigEndian.PutUint32(m[len(splicePrefix):], uint32(i))
		sets[i].p.RecordBatches = m
	}
	out := encodeResponse(req, fr)
	for i := range sets {
		sets[i].p.RecordBatches = sets[i].recs
	}
	pieces, ok := splicePieces(*out.buf, sets, fr.IsFlexible())
	if !ok {
		putBuf(out.buf)
		return nil
	}
	out.pieces = pieces
	return out
}

// splicePieces finds the markers of sets in the encoded frame b and
// returns the pieces to write in its place, rewriting b's size prefix and
// each record set's length prefix in place. ok is false if the markers are
// not exactly where kmsg put them.
func splicePieces(b []byte, sets []spliceSet, flexible bool) (pieces net.Buffers, ok bool) {
	// The length prefix kmsg wrote for a marker.
	oldPrefix := kbin.AppendInt32(nil, spliceMarkerLen)
	if flexible {
		oldPrefix = kbin.AppendUvarint(nil, spliceMarkerLen+1)
	}
	// First find every occurrence of the marker prefix in the unmodified
	// frame, overlapping ones included: there must be exactly one per
	// set, in order, each a whole marker right after its length prefix.
	at := make([]int, 0, len(sets))
	for pos := 0; ; {
		k := bytes.Index(b[pos:], splicePrefix[:])
		if k < 0 {
			break
		}
		i := pos + k
		pos = i + 1
		n := len(at)
		if n == len(sets) || i+spliceMarkerLen > len(b) || i < len(oldPrefix) ||
			binary.BigEndian.Uint32(b[i+len(splicePrefix):]) != uint32(n) ||
			!bytes.Equal(b[i-len(oldPrefix):i], oldPrefix) ||
			n > 0 && i-len(oldPrefix) < at[n-1]+spliceMarkerLen {
			return nil, false
		}
		at = append(at, i)
	}
	if len(at) != len(sets) {
		return nil, false
	}
	pieces = make(net.Buffers, 0, 2*len(sets)+1)
	prev, total := 0, 0 // start of the next encoded piece; bytes to write
	for n, i := range at {
		// The new length prefix goes where the old one started: it is at
		// most 5 bytes, and the old prefix and marker span at least 17.
		start := i - len(oldPrefix)
		recs := sets[n].recs
		var np []byte
		if flexible {
			np = kbin.AppendUvarint(b[start:start], uint32(len(recs))+1)
		} else {
			np = kbin.AppendInt32(b[start:start], int32(len(recs)))
		}
		head := b[prev : start+len(np)]
		pieces = append(pieces, head, recs)
		total += len(head) + len(recs)
		prev = i + spliceMarkerLen
	}
	pieces = append(pieces, b[prev:])
	total += len(b) - prev
	binary.BigEndian.PutUint32(b, uint32(total-4))
	return pieces, true
}

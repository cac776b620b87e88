package broker

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// spliceResponse builds a fetch response of version v with the given
// record set sizes, spread over two topics. Record bytes are random, and
// every set large enough to be spliced (every set, if markAll) starts with
// the marker prefix, to show that the contents of spliced record sets never
// confuse the splicing.
func spliceResponse(r *rand.Rand, v int16, sizes []int, markAll bool) *kmsg.FetchResponse {
	fr := kmsg.NewPtrFetchResponse()
	fr.SetVersion(v)
	for ti := range 2 {
		t := kmsg.NewFetchResponseTopic()
		t.Topic = fmt.Sprintf("topic-%d", ti)
		t.TopicID[0] = byte(ti + 1)
		for pi, size := range sizes {
			if pi%2 != ti {
				continue
			}
			p := kmsg.NewFetchResponseTopicPartition()
			p.Partition = int32(pi)
			p.HighWatermark, p.LastStableOffset, p.LogStartOffset = int64(r.Uint32()), 5, 0
			recs := make([]byte, size)
			for i := range recs {
				recs[i] = byte(r.Uint32())
			}
			if size >= spliceMin || markAll {
				copy(recs, splicePrefix[:])
			}
			p.RecordBatches = recs
			if size == 0 {
				p.RecordBatches = noRecords
			}
			t.Partitions = append(t.Partitions, p)
		}
		fr.Topics = append(fr.Topics, t)
	}
	return fr
}

// TestSpliceExact: the spliced pieces are byte for byte what kmsg encodes,
// for flexible and non-flexible versions and record sets around the
// splicing threshold and the one-byte/two-byte uvarint boundaries.
func TestSpliceExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sizes := [][]int{
		{spliceMin},
		{0, spliceMin - 1, spliceMin, 1 << 20},
		{spliceMin + 1, 100, 0, 70000, 3, spliceMin * 3},
		{1 << 14, 1 << 21, 127 + spliceMin, 16383, 16384, 2097151},
	}
	for _, v := range []int16{4, 7, 11, 12, 13, 16, 17, 18} {
		for i, sz := range sizes {
			t.Run(fmt.Sprintf("v%d/%d", v, i), func(t *testing.T) {
				fr := spliceResponse(r, v, sz, false)
				req := &request{key: kmsg.Fetch.Int16(), version: v, corr: int32(r.Uint32())}
				want := encodeResponse(req, fr)
				defer want.done()
				got := encodeFetchSpliced(req, fr)
				if got == nil {
					t.Fatal("nothing spliced")
				}
				defer got.done()
				var flat []byte
				for _, p := range got.pieces {
					flat = append(flat, p...)
				}
				if !bytes.Equal(flat, *want.buf) {
					t.Fatalf("spliced response differs from kmsg's encoding (%d vs %d bytes)", len(flat), len(*want.buf))
				}
				// The response is left as it was.
				again := encodeResponse(req, fr)
				defer again.done()
				if !bytes.Equal(*again.buf, *want.buf) {
					t.Fatal("splicing changed the response")
				}
			})
		}
	}
}

// TestSpliceFallback: when the marker prefix occurs elsewhere in the
// encoded response, splicing gives up instead of guessing, and when there
// is nothing large enough it is not attempted.
func TestSpliceFallback(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	req := &request{key: kmsg.Fetch.Int16(), version: 12}

	fr := spliceResponse(r, 12, []int{spliceMin, 100}, true) // the small set is copied, marker prefix and all
	if got := encodeFetchSpliced(req, fr); got != nil {
		got.done()
		t.Fatal("spliced although the marker prefix occurs in a copied record set")
	}
	fr = spliceResponse(r, 12, []int{spliceMin, spliceMin}, false)
	fr.Topics[1].Topic = "x" + string(splicePrefix[:]) // not a valid name, but encodable
	if got := encodeFetchSpliced(req, fr); got != nil {
		got.done()
		t.Fatal("spliced although the marker prefix occurs in a topic name")
	}
	fr = spliceResponse(r, 12, []int{spliceMin - 1, 10, 0}, false)
	if got := encodeFetchSpliced(req, fr); got != nil {
		got.done()
		t.Fatal("spliced record sets below the threshold")
	}
}

// BenchmarkFetchEncode compares encoding a 6-partition fetch response of
// 1 MiB per partition by copying (kmsg) with splicing.
func BenchmarkFetchEncode(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	sizes := []int{1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20}
	fr := spliceResponse(r, 16, sizes, false)
	req := &request{key: kmsg.Fetch.Int16(), version: 16}
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(6 << 20)
		b.ReportAllocs()
		for range b.N {
			encodeResponse(req, fr).done()
		}
	})
	b.Run("splice", func(b *testing.B) {
		b.SetBytes(6 << 20)
		b.ReportAllocs()
		for range b.N {
			encodeFetchSpliced(req, fr).done()
		}
	})
}

// TestFetchSplicedOverTCP: fetch responses with large record sets (written
// with writev) and small ones (copied) decode to exactly the batches
// produced, at a non-flexible and a flexible version.
func TestFetchSplicedOverTCP(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, newAdmin(t, b), "splice", 3, nil)
	c := dialRaw(t, b)
	want := make([][]byte, 3)
	for p := int32(0); p < 3; p++ {
		n := []int{1, 40, 400}[p] // about 1 KiB, 40 KiB and 400 KiB per partition
		for i := 0; i < n; i++ {
			batch := makeBatch(-1, -1, -1, 1, bytes.Repeat([]byte{byte('a' + p)}, 1000))
			resp := produceRaw(t, c, "splice", p, batch)
			if resp.ErrorCode != 0 {
				t.Fatal(resp.ErrorCode)
			}
			// The broker assigns the base offset; the rest is stored as sent.
			binary.BigEndian.PutUint64(batch, uint64(resp.BaseOffset))
			binary.BigEndian.PutUint32(batch[12:], 0) // partition leader epoch
			want[p] = append(want[p], batch...)
		}
	}
	for _, v := range []int16{11, 12} {
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(v)
		req.MaxBytes = 16 << 20
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = "splice"
		for p := int32(0); p < 3; p++ {
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.Partition, fp.PartitionMaxBytes = p, 1<<20
			ft.Partitions = append(ft.Partitions, fp)
		}
		req.Topics = append(req.Topics, ft)
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(v)
		c.roundTrip(req, resp)
		for _, p := range resp.Topics[0].Partitions {
			if p.ErrorCode != 0 {
				t.Fatalf("v%d partition %d: error %d", v, p.Partition, p.ErrorCode)
			}
			if !bytes.Equal(p.RecordBatches, want[p.Partition]) {
				t.Fatalf("v%d partition %d: %d bytes fetched differ from the %d produced", v, p.Partition, len(p.RecordBatches), len(want[p.Partition]))
			}
		}
	}
}

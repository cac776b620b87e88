package broker

import (
	"encoding/binary"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/vigilhq/vigil/internal/proc"
)

// Benchmarks of the broker's hot paths over a real loopback connection,
// driven by a raw client in the same process (so ns/op includes the
// client's small share). For whole-system numbers see docs/benchmarks.md.
//
// Besides ns/op they report cpu-ns/op, the CPU time (user and system, all
// threads) of the test process per operation, which on a shared machine is
// a steadier measure than wall time.

// cpuTimer measures process CPU time per benchmark operation.
type cpuTimer struct{ start time.Duration }

func startCPU(b *testing.B) cpuTimer {
	b.ResetTimer()
	return cpuTimer{proc.CPU()}
}

func (t cpuTimer) report(b *testing.B) {
	if used := proc.CPU() - t.start; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkProduceRoundTrip sends one produce request at a time (acks=1,
// one batch of n 1 KiB records) and waits for its response, as a producer
// with one request in flight does: ns/op is the round trip.
func BenchmarkProduceRoundTrip(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			br := startBroker(b, "")
			brokerTopic(b, br, "bench", 1, nil)
			c := dialRaw(b, br)
			batch := makeBatch(-1, -1, -1, n, make([]byte, 1024))
			req := produceReq("bench", 0, batch)
			req.Acks = 1
			fm := kmsg.NewRequestFormatter(kmsg.FormatterClientID("bench"))
			frame := fm.AppendRequest(nil, req, 1)
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			cpu := startCPU(b)
			for range b.N {
				if _, err := c.nc.Write(frame); err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.recv(true); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
		})
	}
}

// BenchmarkFetchRoundTrip fetches 1 MiB from each of 6 partitions per
// request, over and over from the start (the data is in the page cache):
// the consume path without the client's decoding.
func BenchmarkFetchRoundTrip(b *testing.B) {
	benchFetch(b, 64, 32, 1<<20) // ~66 KiB batches, ~2 MiB per partition
}

// BenchmarkFetchLargeBatches is BenchmarkFetchRoundTrip with the ~720 KiB
// batches that producers at full speed send. With partmax=1MiB each
// partition returns one batch; with partmax=512KiB, less than a batch, only
// the first partition returns its batch (KIP-74) and the others nothing.
func BenchmarkFetchLargeBatches(b *testing.B) {
	for _, partMax := range []int32{1 << 20, 512 << 10} {
		b.Run(fmt.Sprintf("partmax=%dKiB", partMax>>10), func(b *testing.B) {
			benchFetch(b, 700, 3, partMax)
		})
	}
}

// benchFetch fills 6 partitions with n batches of the given number of
// 1 KiB records each, then fetches from offset 0 of every partition with partMax bytes
// per partition, one request at a time.
func benchFetch(b *testing.B, records, n int, partMax int32) {
	br := startBroker(b, "")
	const parts = 6
	brokerTopic(b, br, "bench", parts, nil)
	c := dialRaw(b, br)
	batch := makeBatch(-1, -1, -1, records, make([]byte, 1024))
	for p := int32(0); p < parts; p++ {
		for range n {
			if r := produceRaw(b, c, "bench", p, batch); r.ErrorCode != 0 {
				b.Fatal(r.ErrorCode)
			}
		}
	}
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(12)
	req.MaxBytes = 64 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "bench"
	for p := int32(0); p < parts; p++ {
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.PartitionMaxBytes = p, partMax
		ft.Partitions = append(ft.Partitions, fp)
	}
	req.Topics = append(req.Topics, ft)
	fm := kmsg.NewRequestFormatter(kmsg.FormatterClientID("bench"))
	frame := fm.AppendRequest(nil, req, 1)
	var bytes int64
	b.ReportAllocs()
	cpu := startCPU(b)
	for range b.N {
		if _, err := c.nc.Write(frame); err != nil {
			b.Fatal(err)
		}
		n, err := c.skip()
		if err != nil {
			b.Fatal(err)
		}
		bytes += int64(n)
	}
	cpu.report(b)
	b.SetBytes(bytes / int64(b.N))
}

// skip reads one response frame into a reused buffer and returns its size.
func (c *rawConn) skip() (int, error) {
	var size [4]byte
	if _, err := io.ReadFull(c.r, size[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint32(size[:]))
	if cap(c.scratch) < n {
		c.scratch = make([]byte, n)
	}
	_, err := io.ReadFull(c.r, c.scratch[:n])
	return n, err
}

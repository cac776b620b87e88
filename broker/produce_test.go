package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestProduceConsumeCodecs round-trips keyed records with headers through
// every compression codec and every acks setting, with franz-go's default
// idempotent producer where acks=all.
func TestProduceConsumeCodecs(t *testing.T) {
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	acks := map[string][]kgo.Opt{
		"all":  {kgo.RequiredAcks(kgo.AllISRAcks())},
		"one":  {kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite()},
		"none": {kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite()},
	}
	for cname, codec := range codecs {
		for aname, aopts := range acks {
			t.Run(cname+"/acks="+aname, func(t *testing.T) {
				topic := "codec-" + cname + "-" + aname
				createTopic(t, adm, topic, 3, nil)
				cl := newClient(t, b, append([]kgo.Opt{kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(topic)}, aopts...)...)
				const n = 2000
				var want []*kgo.Record
				for i := 0; i < n; i++ {
					r := &kgo.Record{
						Key:     []byte(fmt.Sprintf("key-%d", i%17)),
						Value:   bytes.Repeat([]byte{byte(i)}, 10+i%300),
						Headers: []kgo.RecordHeader{{Key: "h", Value: []byte(fmt.Sprint(i))}},
					}
					want = append(want, r)
				}
				if err := cl.ProduceSync(testCtx(t), want...).FirstErr(); err != nil {
					t.Fatal(err)
				}
				got := consumeN(t, b, topic, n)
				assertSameRecords(t, want, got)
			})
		}
	}
}

// assertSameRecords checks that got holds exactly want (keys, values,
// headers), with offsets per partition dense and increasing.
func assertSameRecords(t *testing.T, want, got []*kgo.Record) {
	t.Helper()
	key := func(r *kgo.Record) string {
		h := ""
		for _, x := range r.Headers {
			h += x.Key + "=" + string(x.Value) + ";"
		}
		return string(r.Key) + "|" + string(r.Value) + "|" + h
	}
	ws, gs := make([]string, len(want)), make([]string, len(got))
	for i, r := range want {
		ws[i] = key(r)
	}
	for i, r := range got {
		gs[i] = key(r)
	}
	sort.Strings(ws)
	sort.Strings(gs)
	if len(ws) != len(gs) {
		t.Fatalf("got %d records, want %d", len(gs), len(ws))
	}
	for i := range ws {
		if ws[i] != gs[i] {
			t.Fatalf("record mismatch: got %.60q want %.60q", gs[i], ws[i])
		}
	}
	next := map[int32]int64{}
	for _, r := range got {
		if exp, ok := next[r.Partition]; ok && r.Offset != exp {
			t.Fatalf("partition %d: offset %d follows %d", r.Partition, r.Offset, exp-1)
		}
		next[r.Partition] = r.Offset + 1
	}
}

// TestLogAppendTime checks that a LogAppendTime topic stamps records with
// the broker's clock, in the produce response and when read back.
func TestLogAppendTime(t *testing.T) {
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	lat := "LogAppendTime"
	createTopic(t, adm, "lat", 1, map[string]*string{"message.timestamp.type": &lat})
	cl := newClient(t, b, kgo.DefaultProduceTopic("lat"))
	old := &kgo.Record{Value: []byte("x")}
	old.Timestamp = old.Timestamp.AddDate(2001, 0, 0) // year 2002, far from now
	res := cl.ProduceSync(testCtx(t), old)
	if err := res.FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := consumeN(t, b, "lat", 1)
	if got[0].Timestamp.Year() < 2020 {
		t.Fatalf("timestamp %v was not replaced by the log append time", got[0].Timestamp)
	}
	if got[0].Attrs.TimestampType() != 1 {
		t.Fatalf("timestamp type %d, want 1 (LogAppendTime)", got[0].Attrs.TimestampType())
	}
	// The produce response's LogAppendTime (franz-go does not surface it, so
	// on the wire) is the timestamp stored in the batch, and -1 for a
	// CreateTime topic.
	c := dialRaw(t, b)
	batch := makeBatch(-1, -1, -1, 1, []byte("raw"))
	binary.BigEndian.PutUint64(batch[27:], uint64(old.Timestamp.UnixMilli())) // firstTimestamp
	binary.BigEndian.PutUint64(batch[35:], uint64(old.Timestamp.UnixMilli())) // maxTimestamp
	binary.BigEndian.PutUint32(batch[17:], crc32.Checksum(batch[21:], crc32.MakeTable(crc32.Castagnoli)))
	p := produceRaw(t, c, "lat", 0, batch)
	if p.ErrorCode != 0 || p.BaseOffset != 1 {
		t.Fatalf("raw produce: %v at offset %d", kerr.ErrorForCode(p.ErrorCode), p.BaseOffset)
	}
	if time.UnixMilli(p.LogAppendTime).Year() < 2020 {
		t.Fatalf("produce response LogAppendTime %d, want the broker's clock", p.LogAppendTime)
	}
	f := fetchRaw(t, c, "lat", 0, 1)
	var stored []int64
	if err := forEachRecord(f.RecordBatches, func(ts int64) { stored = append(stored, ts) }); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0] != p.LogAppendTime {
		t.Fatalf("stored timestamps %v, the response said LogAppendTime %d", stored, p.LogAppendTime)
	}
	createTopic(t, newAdmin(t, b), "ct", 1, nil)
	if p := produceRaw(t, c, "ct", 0, makeBatch(-1, -1, -1, 1, []byte("x"))); p.ErrorCode != 0 || p.LogAppendTime != -1 {
		t.Fatalf("CreateTime topic: %v, LogAppendTime %d, want -1", kerr.ErrorForCode(p.ErrorCode), p.LogAppendTime)
	}
}

// forEachRecord calls fn with the timestamp of every record of the
// uncompressed v2 batches in data.
func forEachRecord(data []byte, fn func(ts int64)) error {
	for len(data) > 0 {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(data); err != nil {
			return err
		}
		if rb.Attributes&0x07 != 0 {
			return errors.New("compressed batch")
		}
		recs := rb.Records
		for i := int32(0); i < rb.NumRecords; i++ {
			length, n := kbin.Varint(recs)
			if n == 0 || int(length) > len(recs)-n {
				return errors.New("bad record length")
			}
			var r kmsg.Record
			if err := r.ReadFrom(recs[:n+int(length)]); err != nil {
				return err
			}
			if rb.Attributes&0x08 != 0 { // LogAppendTime: every record has maxTimestamp
				fn(rb.MaxTimestamp)
			} else {
				fn(rb.FirstTimestamp + r.TimestampDelta64)
			}
			recs = recs[n+int(length):]
		}
		data = data[12+int(rb.Length):]
	}
	return nil
}

// TestMinInsyncReplicas: acks=all on a topic that wants two in-sync
// replicas fails with NOT_ENOUGH_REPLICAS on a single broker; acks=1 works.
func TestMinInsyncReplicas(t *testing.T) {
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	two := "2"
	createTopic(t, adm, "misr", 1, map[string]*string{"min.insync.replicas": &two})
	cl := newClient(t, b, kgo.DefaultProduceTopic("misr"), kgo.RecordRetries(1))
	err := cl.ProduceSync(testCtx(t), &kgo.Record{Value: []byte("x")}).FirstErr()
	if !errors.Is(err, kerr.NotEnoughReplicas) {
		t.Fatalf("acks=all: got %v, want NOT_ENOUGH_REPLICAS", err)
	}
	cl1 := newClient(t, b, kgo.DefaultProduceTopic("misr"), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	if err := cl1.ProduceSync(testCtx(t), &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("acks=1: %v", err)
	}
}

// TestRestartKeepsData produces, restarts the broker on the same data dir
// and reads everything back, then keeps producing with fresh offsets.
func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	adm := newAdmin(t, b)
	createTopic(t, adm, "keep", 2, nil)
	cl := newClient(t, b, kgo.DefaultProduceTopic("keep"))
	var want []*kgo.Record
	for i := 0; i < 500; i++ {
		want = append(want, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint("v", i))})
	}
	if err := cl.ProduceSync(testCtx(t), want...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := startBroker(t, dir)
	if b2.ClusterID() != b.ClusterID() {
		t.Fatalf("cluster id changed across restart: %s -> %s", b.ClusterID(), b2.ClusterID())
	}
	cl2 := newClient(t, b2, kgo.DefaultProduceTopic("keep"))
	more := []*kgo.Record{{Key: []byte("after"), Value: []byte("restart")}}
	if err := cl2.ProduceSync(testCtx(t), more...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := consumeN(t, b2, "keep", len(want)+1)
	assertSameRecords(t, append(want, more...), got)
}

// TestMaxMessageBytesZero: Kafka accepts max.message.bytes=0 (at least 0)
// and then rejects every batch as too large; so does Vigil. A negative
// value is INVALID_CONFIG.
func TestMaxMessageBytesZero(t *testing.T) {
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	zero, neg := "0", "-1"
	createTopic(t, adm, "mmb0", 1, map[string]*string{"max.message.bytes": &zero})
	c := dialRaw(t, b)
	if p := produceRaw(t, c, "mmb0", 0, makeBatch(-1, -1, -1, 1, []byte("x"))); p.ErrorCode != kerr.MessageTooLarge.Code {
		t.Fatalf("produce with max.message.bytes=0: %v, want MESSAGE_TOO_LARGE", kerr.ErrorForCode(p.ErrorCode))
	}
	resp, err := adm.CreateTopics(testCtx(t), 1, 1, map[string]*string{"max.message.bytes": &neg}, "mmbneg")
	if err != nil {
		t.Fatal(err)
	}
	if r := resp["mmbneg"]; !errors.Is(r.Err, kerr.InvalidConfig) || !strings.Contains(r.ErrMessage, "max.message.bytes") {
		t.Fatalf("max.message.bytes=-1: %v %q, want INVALID_CONFIG naming the config", r.Err, r.ErrMessage)
	}
	// Raised again, the topic takes batches.
	big := "1000"
	if _, err := adm.AlterTopicConfigs(testCtx(t), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &big}}, "mmb0"); err != nil {
		t.Fatal(err)
	}
	if p := produceRaw(t, c, "mmb0", 0, makeBatch(-1, -1, -1, 1, []byte("x"))); p.ErrorCode != 0 {
		t.Fatalf("produce with max.message.bytes=1000: %v", kerr.ErrorForCode(p.ErrorCode))
	}
}

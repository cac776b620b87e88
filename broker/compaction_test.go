package broker

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	vlog "github.com/vigilhq/vigil/broker/log"
)

// TestCompactedTopic: a topic with cleanup.policy=compact, many updates
// per key from two idempotent producers (one of which stops early, so its
// last batch is cleaned down to an empty batch) and tombstones; after the
// cleaner ran, franz-go, kcat (librdkafka) and kafka-python consuming from
// the start see
// exactly the latest value of every key, in offset order, and the deleted
// keys not at all.
func TestCompactedTopic(t *testing.T) {
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	const topic = "compacted"
	createTopic(t, adm, topic, 1, map[string]*string{
		"cleanup.policy":            kadm.StringPtr("compact"),
		"segment.bytes":             kadm.StringPtr("4096"),
		"delete.retention.ms":       kadm.StringPtr("0"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.01"),
	})
	const (
		nkeys   = 30
		rounds  = 20
		deleted = 5 // keys 0..4 end with a tombstone
	)
	key := func(k int) string { return fmt.Sprintf("key-%02d", k) }
	want := map[string]string{}
	early := newClient(t, b, kgo.DefaultProduceTopic(topic))
	var recs []*kgo.Record
	for k := range nkeys {
		recs = append(recs, &kgo.Record{Key: []byte(key(k)), Value: []byte("early")})
	}
	if err := early.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// gzip: Debian's kafka-python has no lz4, snappy or zstd.
	cl := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.GzipCompression()))
	for round := 1; round < rounds; round++ {
		recs = recs[:0]
		for k := range nkeys {
			v := fmt.Sprintf("value-%d-%d", k, round)
			r := &kgo.Record{Key: []byte(key(k)), Value: []byte(v)}
			if round == rounds-1 && k < deleted {
				r.Value = nil // a tombstone
			}
			recs = append(recs, r)
			want[key(k)] = v
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for k := range deleted {
		delete(want, key(k))
	}
	// Records with keys of their own fill the active segment, so that
	// every update above lies in segments the cleaner may clean (it never
	// touches the active segment).
	for i := range 30 {
		k, v := fmt.Sprintf("barrier-%02d", i), strings.Repeat("x", 200)
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(k), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	sizeBefore := logSize(t, adm, topic)
	// The first cleaning keeps the tombstones (and starts their
	// delete.retention.ms of 0); the second removes them.
	for range 2 {
		if err := b.cleanNow(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if after := logSize(t, adm, topic); after >= sizeBefore {
		t.Fatalf("the partition has %d bytes after cleaning, %d before", after, sizeBefore)
	}

	got := consumeN(t, b, topic, len(want))
	prev := int64(-1)
	for _, r := range got {
		if r.Offset <= prev {
			t.Fatalf("offset %d after %d", r.Offset, prev)
		}
		prev = r.Offset
		if w, ok := want[string(r.Key)]; !ok || w != string(r.Value) {
			t.Fatalf("consumed %s=%q at %d, want %q (present: %v)", r.Key, r.Value, r.Offset, w, ok)
		}
		delete(want, string(r.Key))
	}
	if len(want) != 0 {
		t.Fatalf("never consumed %v", want)
	}
	offs, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if end, _ := offs.Lookup(topic, 0); prev != end.Offset-1 {
		t.Fatalf("last record consumed at %d, the log ends at %d", prev, end.Offset)
	}

	// The early producer's batch was cleaned down to an empty batch, kept
	// for its producer state.
	if n := emptyBatches(t, b, topic); n != 1 {
		t.Fatalf("%d empty batches in the cleaned log, want 1", n)
	}

	// librdkafka and kafka-python read the compacted log (offset gaps, an
	// empty batch) the same way.
	same := func(client string, out []byte) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != len(got) {
			t.Fatalf("%s read %d records, franz-go %d", client, len(lines), len(got))
		}
		for i, line := range lines {
			var m struct {
				Key     string `json:"key"`
				Payload string `json:"payload"` // kcat
				Value   string `json:"value"`   // kafka-python
				Offset  int64  `json:"offset"`
			}
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%s output %q: %v", client, line, err)
			}
			if m.Key != string(got[i].Key) || m.Payload+m.Value != string(got[i].Value) || m.Offset != got[i].Offset {
				t.Fatalf("%s record %d: %s at %d, franz-go got %s=%s at %d", client, i, line, m.Offset, got[i].Key, got[i].Value, got[i].Offset)
			}
		}
	}
	run := func(name string, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, errb.String())
		}
		return out.Bytes()
	}
	t.Run("kcat", func(t *testing.T) {
		kcat := requireTool(t, "kcat")
		same("kcat", run(kcat, "-b", b.Addr(), "-C", "-t", topic, "-o", "beginning", "-e", "-J"))
	})
	t.Run("kafka-python", func(t *testing.T) {
		python := kafkaPython(t)
		same("kafka-python", run(python, "testdata/kafka_python_consume.py", b.Addr(), topic, strconv.Itoa(len(got))))
	})
}

// emptyBatches counts the batches without records in partition 0.
func emptyBatches(t *testing.T, b *Broker, topic string) int {
	t.Helper()
	l := b.meta.lookup(topic).partitions[0].log
	n := 0
	for off := l.StartOffset(); off < l.EndOffset(); {
		info, err := l.Read(nil, off, 1<<20, l.EndOffset())
		if err != nil {
			t.Fatal(err)
		}
		for rs := info.Records; len(rs) > 0; {
			h, err := vlog.ValidateStoredBatch(rs)
			if err != nil {
				t.Fatal(err)
			}
			if h.NumRecords == 0 {
				n++
			}
			off = h.LastOffset() + 1
			rs = rs[h.Size():]
		}
	}
	return n
}

// logSize is the partition's size on disk as DescribeLogDirs reports it.
func logSize(t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	dirs, err := adm.DescribeAllLogDirs(testCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	dirs.Each(func(d kadm.DescribedLogDir) {
		d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
			if p.Topic == topic {
				size += p.Size
			}
		})
	})
	return size
}

// TestCompactedTopicRejectsKeylessRecords: records without a key are
// rejected with INVALID_RECORD, an error message and the rejected records
// listed; the other partitions of the same request are unaffected; topics
// that are not compacted take keyless records.
func TestCompactedTopicRejectsKeylessRecords(t *testing.T) {
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	createTopic(t, adm, "ck", 2, map[string]*string{"cleanup.policy": kadm.StringPtr("compact,delete")})
	createTopic(t, adm, "plain", 1, nil)

	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordRetries(1))
	err := cl.ProduceSync(ctx, &kgo.Record{Topic: "ck", Value: []byte("no key")}).FirstErr()
	if !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("keyless produce to a compacted topic: %v, want INVALID_RECORD", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "plain", Value: []byte("no key")}).FirstErr(); err != nil {
		t.Fatalf("keyless produce to a delete topic: %v", err)
	}

	// One request, two partitions: the keyless batch fails alone.
	req := produceReq("ck", 0, keyedBatch(nil, []byte("no key"), 3))
	p1 := kmsg.NewProduceRequestTopicPartition()
	p1.Partition, p1.Records = 1, keyedBatch([]byte("k"), []byte("v"), 2)
	req.Topics[0].Partitions = append(req.Topics[0].Partitions, p1)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	resp.SetVersion(req.Version)
	dialRaw(t, b).roundTrip(req, resp)
	sp0, sp1 := resp.Topics[0].Partitions[0], resp.Topics[0].Partitions[1]
	if sp0.ErrorCode != kerr.InvalidRecord.Code || sp0.ErrorMessage == nil || !strings.Contains(*sp0.ErrorMessage, "key") {
		t.Fatalf("keyless partition: code %d message %v", sp0.ErrorCode, sp0.ErrorMessage)
	}
	if len(sp0.ErrorRecords) != 3 || sp0.ErrorRecords[2].RelativeOffset != 2 || sp0.ErrorRecords[2].ErrorMessage == nil {
		t.Fatalf("record errors: %+v", sp0.ErrorRecords)
	}
	if sp1.ErrorCode != 0 || sp1.BaseOffset != 0 {
		t.Fatalf("keyed partition of the same request: code %d base offset %d", sp1.ErrorCode, sp1.BaseOffset)
	}
}

// keyedBatch encodes an uncompressed batch of n records with key and value.
func keyedBatch(key, value []byte, n int) []byte {
	rb := kmsg.RecordBatch{
		Magic:                2,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		FirstTimestamp:       time.Now().UnixMilli(),
		MaxTimestamp:         time.Now().UnixMilli(),
		LastOffsetDelta:      int32(n - 1),
		NumRecords:           int32(n),
		PartitionLeaderEpoch: -1,
	}
	for i := range n {
		r := kmsg.Record{OffsetDelta: int32(i), Key: key, Value: value}
		body := r.AppendTo(nil)[1:] // drop the zero Length varint (one byte)
		rb.Records = binary.AppendVarint(rb.Records, int64(len(body)))
		rb.Records = append(rb.Records, body...)
	}
	out := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return out
}

// TestCompactionConfigs: the compaction topic configs are described with
// Kafka's defaults, types, sources and synonyms, reach the log engine, and
// bad values (alone or together) are INVALID_CONFIG with a message.
func TestCompactionConfigs(t *testing.T) {
	b := startBroker(t, "", func(c *Config) {
		c.TopicDefaults = map[string]string{"min.cleanable.dirty.ratio": "0.2"}
	})
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	createTopic(t, adm, "cc", 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact,delete"), "delete.retention.ms": kadm.StringPtr("1000")})

	rc, err := adm.DescribeTopicConfigs(ctx, "cc")
	if err != nil {
		t.Fatal(err)
	}
	r, err := rc.On("cc", nil)
	if err != nil || r.Err != nil {
		t.Fatalf("describe: %v %v", err, r.Err)
	}
	want := map[string]struct {
		value string
		src   kmsg.ConfigSource
	}{
		"cleanup.policy":            {"compact,delete", kmsg.ConfigSourceDynamicTopicConfig},
		"delete.retention.ms":       {"1000", kmsg.ConfigSourceDynamicTopicConfig},
		"min.cleanable.dirty.ratio": {"0.2", kmsg.ConfigSourceStaticBrokerConfig},
		"min.compaction.lag.ms":     {"0", kmsg.ConfigSourceDefaultConfig},
		"max.compaction.lag.ms":     {"9223372036854775807", kmsg.ConfigSourceDefaultConfig},
	}
	for _, c := range r.Configs {
		w, ok := want[c.Key]
		if !ok {
			continue
		}
		if c.MaybeValue() != w.value || c.Source != w.src {
			t.Errorf("%s = %q (source %v), want %q (%v)", c.Key, c.MaybeValue(), c.Source, w.value, w.src)
		}
		if c.Key == "min.cleanable.dirty.ratio" && (len(c.Synonyms) < 2 || c.Synonyms[0].Key != "log.cleaner.min.cleanable.ratio") {
			t.Errorf("synonyms of %s: %+v", c.Key, c.Synonyms)
		}
		delete(want, c.Key)
	}
	if len(want) != 0 {
		t.Fatalf("not described: %v", want)
	}
	cfg := topicLogConfig(b.meta.lookup("cc").configs, b.cfg.TopicDefaults)
	if !cfg.Compact || cfg.RetentionMs != 7*24*time.Hour || cfg.DeleteRetention != time.Second || cfg.MinCleanableDirtyRatio != 0.2 {
		t.Fatalf("log config of a compact,delete topic: %+v", cfg)
	}
	if cfg := topicLogConfig(map[string]string{"cleanup.policy": "compact"}, nil); !cfg.Compact || cfg.RetentionMs != -1 || cfg.RetentionBytes != -1 {
		t.Fatalf("log config of a compact topic: %+v", cfg)
	}

	for _, bad := range []map[string]string{
		{"min.cleanable.dirty.ratio": "1.5"},
		{"min.cleanable.dirty.ratio": "lots"},
		{"delete.retention.ms": "-1"},
		{"max.compaction.lag.ms": "0"},
		{"min.compaction.lag.ms": "5000", "max.compaction.lag.ms": "1000"},
	} {
		configs := map[string]*string{}
		for k, v := range bad {
			configs[k] = kadm.StringPtr(v)
		}
		resp, err := adm.CreateTopics(ctx, 1, 1, configs, "bad")
		if err != nil {
			t.Fatal(err)
		}
		if r := resp["bad"]; !errors.Is(r.Err, kerr.InvalidConfig) || r.ErrMessage == "" {
			t.Errorf("CreateTopics with %v: %v %q, want INVALID_CONFIG with a message", bad, r.Err, r.ErrMessage)
		}
	}
	// The pair is checked against the current configs too.
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.compaction.lag.ms", Value: kadm.StringPtr("100")}}, "cc")
	if err != nil || ar[0].Err != nil {
		t.Fatalf("%v %v", err, ar[0].Err)
	}
	ar, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "min.compaction.lag.ms", Value: kadm.StringPtr("200")}}, "cc")
	if err != nil || !errors.Is(ar[0].Err, kerr.InvalidConfig) || !strings.Contains(ar[0].ErrMessage, "max.compaction.lag.ms") {
		t.Fatalf("min.compaction.lag.ms above max.compaction.lag.ms: %v %v %q", err, ar[0].Err, ar[0].ErrMessage)
	}

	bc, err := adm.DescribeBrokerConfigs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range bc[0].Configs {
		got[c.Key] = c.MaybeValue()
	}
	for k, v := range map[string]string{
		"log.cleaner.threads":                 "1",
		"log.cleaner.enable":                  "true",
		"log.cleaner.io.max.bytes.per.second": "1.7976931348623157E308",
		"log.cleaner.dedupe.buffer.size":      "134217728",
		"log.cleaner.backoff.ms":              "15000",
		"log.cleaner.min.cleanable.ratio":     "0.2",
		"log.cleaner.delete.retention.ms":     "86400000",
	} {
		if got[k] != v {
			t.Errorf("broker config %s = %q, want %q", k, got[k], v)
		}
	}
}

// TestBackgroundCleaner: the broker's cleaner thread compacts partitions by
// itself once they are dirty enough, and a partition whose cleaning fails
// (a damaged segment) loses only its compaction: it keeps taking writes,
// the broker stays ready, other partitions are still cleaned.
func TestBackgroundCleaner(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.LogCleanerBackoff = 10 * time.Millisecond })
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	never := map[string]*string{
		"cleanup.policy":            kadm.StringPtr("compact"),
		"segment.bytes":             kadm.StringPtr("2048"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("1"), // not yet
	}
	createTopic(t, adm, "bg-good", 1, never)
	createTopic(t, adm, "bg-sick", 1, never)
	cl := newClient(t, b)
	for _, topic := range []string{"bg-good", "bg-sick"} {
		for round := range 20 {
			var recs []*kgo.Record
			for k := range 10 {
				recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint("k", k)), Value: []byte(fmt.Sprint("v", round))})
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Damage the first segment of bg-sick (a byte inside its last batch).
	sick := b.meta.lookup("bg-sick").partitions[0].log
	seg := filepath.Join(b.cfg.DataDir, "bg-sick-0", "00000000000000000000.log")
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(seg, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{data[len(data)-2] ^ 0xff}, int64(len(data)-2)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	before := logSize(t, adm, "bg-good")
	for _, topic := range []string{"bg-good", "bg-sick"} {
		ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "min.cleanable.dirty.ratio", Value: kadm.StringPtr("0.1")}}, topic)
		if err != nil || ar[0].Err != nil {
			t.Fatalf("%v %v", err, ar[0].Err)
		}
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for logSize(t, adm, "bg-good") >= before || sick.CleanerError() == nil {
		select {
		case <-ctx.Done():
			t.Fatalf("the background cleaner did not clean bg-good (%d bytes, %d before) or give up on bg-sick (%v)",
				logSize(t, adm, "bg-good"), before, sick.CleanerError())
		case <-tick.C:
		}
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "bg-sick", Key: []byte("k"), Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("produce to the partition the cleaner gave up on: %v", err)
	}
	rec := httptest.NewRecorder()
	b.HTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/readyz after a cleaner error: %d %s", rec.Code, rec.Body.String())
	}
}

// TestCompactedCodecsKcat: batches the cleaner rewrote (recompressed with
// the batch's codec) read back with librdkafka, for every codec.
func TestCompactedCodecsKcat(t *testing.T) {
	kcat := requireTool(t, "kcat")
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	wants := map[string]map[string]string{}
	for name, codec := range codecs {
		topic := "cc-" + name
		createTopic(t, adm, topic, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact"), "segment.bytes": kadm.StringPtr("1024")})
		cl := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(codec))
		want := map[string]string{}
		wants[name] = want
		for round := range 5 {
			var recs []*kgo.Record
			for k := range 8 {
				// Each batch keeps some records and loses others.
				if (k+round)%3 == 0 {
					continue
				}
				key, v := fmt.Sprint("k", k), fmt.Sprintf("%s-%d-%d", name, k, round)
				recs = append(recs, &kgo.Record{Key: []byte(key), Value: []byte(v)})
				want[key] = v
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 10 { // roll past the updates
			k := fmt.Sprint("pad-", i)
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(k), Value: bytes.Repeat([]byte("p"), 200)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			want[k] = strings.Repeat("p", 200)
		}
	}
	if err := b.cleanNow(ctx); err != nil {
		t.Fatal(err)
	}
	for name := range codecs {
		t.Run(name, func(t *testing.T) {
			topic := "cc-" + name
			cmd := exec.CommandContext(ctx, kcat, "-b", b.Addr(), "-C", "-t", topic, "-o", "beginning", "-e", "-J")
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("kcat: %v\n%s", err, errb.String())
			}
			got := map[string]string{}
			n := 0
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var m struct {
					Key     string `json:"key"`
					Payload string `json:"payload"`
				}
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("kcat output %q: %v", line, err)
				}
				got[m.Key] = m.Payload
				n++
			}
			if n != len(got) || fmt.Sprint(got) != fmt.Sprint(wants[name]) {
				t.Fatalf("kcat read %d records:\n%v\nwant the latest of each key:\n%v", n, got, wants[name])
			}
		})
	}
}

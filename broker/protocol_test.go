package broker

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// makeBatch encodes a v2 record batch of n records with the given producer
// identity, with a correct CRC-32C.
func makeBatch(producerID int64, epoch int16, seq int32, n int, value []byte) []byte {
	recs := make([]kmsg.Record, n)
	for i := range recs {
		recs[i].Value = value
	}
	return makeBatchOf(producerID, epoch, seq, recs)
}

// makeBatchHeaders encodes a batch of n records, each with one header.
func makeBatchHeaders(n int, key, value string) []byte {
	recs := make([]kmsg.Record, n)
	for i := range recs {
		recs[i].Headers = []kmsg.Header{{Key: key, Value: []byte(value)}}
	}
	return makeBatchOf(-1, -1, -1, recs)
}

// makeBatchOf encodes records (their offset deltas are set) as a v2 batch.
func makeBatchOf(producerID int64, epoch int16, seq int32, records []kmsg.Record) []byte {
	n := len(records)
	rb := kmsg.RecordBatch{
		Magic:                2,
		ProducerID:           producerID,
		ProducerEpoch:        epoch,
		FirstSequence:        seq,
		FirstTimestamp:       time.Now().UnixMilli(),
		MaxTimestamp:         time.Now().UnixMilli(),
		LastOffsetDelta:      int32(n - 1),
		NumRecords:           int32(n),
		PartitionLeaderEpoch: -1,
	}
	var recs []byte
	for i := range records {
		r := records[i]
		r.OffsetDelta = int32(i)
		body := r.AppendTo(nil)[1:] // drop the zero Length varint (one byte)
		recs = kbin.AppendVarint(recs, int32(len(body)))
		recs = append(recs, body...)
	}
	rb.Records = recs
	out := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return out
}

// checkClientMessage fails the test if an error message sent with code
// repeats the Kafka error's own name or description: the client has the
// code, the message should add what the broker knows.
func checkClientMessage(t *testing.T, code int16, msg *string) {
	t.Helper()
	ke, ok := kerr.ErrorForCode(code).(*kerr.Error)
	if code == 0 || msg == nil || !ok {
		return
	}
	if strings.Contains(*msg, ke.Message) || strings.Contains(*msg, ke.Description) {
		t.Errorf("the message %q repeats the text of %s", *msg, ke.Message)
	}
}

// rawConn is a hand-driven Kafka connection for protocol tests.
type rawConn struct {
	t       testing.TB
	nc      net.Conn
	r       *bufio.Reader
	scratch []byte // for skip
}

func dialRaw(t testing.TB, b *Broker) *rawConn {
	nc, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(time.Minute))
	return &rawConn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// send writes req with correlation id corr.
func (c *rawConn) send(req kmsg.Request, corr int32) {
	c.t.Helper()
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw-test"))
	buf := f.AppendRequest(nil, req, corr)
	if _, err := c.nc.Write(buf); err != nil {
		c.t.Fatal(err)
	}
}

// recv reads one response frame and returns its correlation id and body.
func (c *rawConn) recv(flexibleHeader bool) (int32, []byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(c.r, size[:]); err != nil {
		return 0, nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c.r, buf); err != nil {
		return 0, nil, err
	}
	corr := int32(binary.BigEndian.Uint32(buf))
	body := buf[4:]
	if flexibleHeader {
		body = body[1:]
	}
	return corr, body, nil
}

// roundTrip sends req and decodes its response into resp.
func (c *rawConn) roundTrip(req kmsg.Request, resp kmsg.Response) {
	c.t.Helper()
	c.send(req, 7)
	_, body, err := c.recv(resp.IsFlexible() && resp.Key() != kmsg.ApiVersions.Int16())
	if err != nil {
		c.t.Fatal(err)
	}
	if err := resp.ReadFrom(body); err != nil {
		c.t.Fatal(err)
	}
}

// expectClosed asserts the broker closes the connection.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	if _, _, err := c.recv(false); err == nil {
		c.t.Fatal("connection still open; want the broker to close it")
	}
}

func produceReq(topic string, partition int32, records []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = partition, records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func produceRaw(t testing.TB, c *rawConn, topic string, partition int32, records []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	req := produceReq(topic, partition, records)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	resp.SetVersion(req.Version)
	c.roundTrip(req, resp)
	return resp.Topics[0].Partitions[0]
}

func TestBadInput(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.SocketRequestMaxBytes = 64 << 10 })
	createTopic(t, newAdmin(t, b), "bad", 1, map[string]*string{"max.message.bytes": kmsg.StringPtr("2000")})
	createTopic(t, newAdmin(t, b), "tiny", 1, map[string]*string{"segment.bytes": kmsg.StringPtr("1000")})

	t.Run("oversized frame closes the connection", func(t *testing.T) {
		c := dialRaw(t, b)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], 1<<20)
		c.nc.Write(hdr[:])
		c.expectClosed()
	})
	t.Run("unknown api key closes the connection", func(t *testing.T) {
		c := dialRaw(t, b)
		frame := kbin.AppendInt32(nil, 10)
		frame = kbin.AppendInt16(frame, 9999)
		frame = kbin.AppendInt16(frame, 0)
		frame = kbin.AppendInt32(frame, 1)
		frame = kbin.AppendInt16(frame, -1)
		c.nc.Write(frame)
		c.expectClosed()
	})
	t.Run("garbage body closes the connection", func(t *testing.T) {
		c := dialRaw(t, b)
		frame := kbin.AppendInt32(nil, 14)
		frame = kbin.AppendInt16(frame, kmsg.Metadata.Int16())
		frame = kbin.AppendInt16(frame, 1)
		frame = kbin.AppendInt32(frame, 1)
		frame = kbin.AppendInt16(frame, -1)
		frame = kbin.AppendInt32(frame, 1000) // 1000 topics follow; none do
		c.nc.Write(frame)
		c.expectClosed()
	})
	t.Run("unsupported produce version closes the connection", func(t *testing.T) {
		c := dialRaw(t, b)
		req := produceReq("bad", 0, makeBatch(-1, -1, -1, 1, []byte("x")))
		req.SetVersion(2) // message format v1: not supported
		c.send(req, 1)
		c.expectClosed()
	})
	t.Run("future ApiVersions gets v0 UNSUPPORTED_VERSION", func(t *testing.T) {
		c := dialRaw(t, b)
		frame := kbin.AppendInt32(nil, 0)
		frame = kbin.AppendInt16(frame, kmsg.ApiVersions.Int16())
		frame = kbin.AppendInt16(frame, 99)
		frame = kbin.AppendInt32(frame, 42)
		frame = kbin.AppendInt16(frame, -1)
		frame = append(frame, 0, 0, 0) // tags, software name/version as empty compact strings
		binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
		c.nc.Write(frame)
		corr, body, err := c.recv(false)
		if err != nil {
			t.Fatal(err)
		}
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(0)
		if err := resp.ReadFrom(body); err != nil {
			t.Fatal(err)
		}
		if corr != 42 || resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) != 1 || resp.ApiKeys[0].ApiKey != 18 || resp.ApiKeys[0].MaxVersion != 4 {
			t.Fatalf("corr %d error %d keys %d", corr, resp.ErrorCode, len(resp.ApiKeys))
		}
	})

	c := dialRaw(t, b)
	good := makeBatch(-1, -1, -1, 3, []byte("hello"))
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-1] ^= 0xff
	badMagic := append([]byte(nil), good...)
	badMagic[16] = 1
	truncated := good[:len(good)-3]
	// Header changes with the CRC recomputed, so that the check under test
	// is the one that fails.
	edited := func(edit func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		edit(b)
		binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
		return b
	}
	badCount := edited(func(b []byte) { binary.BigEndian.PutUint32(b[57:], 7) }) // lastOffsetDelta says 3
	noRecords := edited(func(b []byte) {
		binary.BigEndian.PutUint32(b[23:], 0xffffffff) // lastOffsetDelta -1
		binary.BigEndian.PutUint32(b[57:], 0)
	})
	control := edited(func(b []byte) { b[22] |= 0x20 })
	txnNoPID := edited(func(b []byte) { b[22] |= 0x10 })
	large := makeBatch(-1, -1, -1, 1, make([]byte, 3000))
	cases := []struct {
		name  string
		topic string
		part  int32
		recs  []byte
		want  *kerr.Error
	}{
		{"corrupt crc", "bad", 0, corrupt, kerr.CorruptMessage},
		{"old magic", "bad", 0, badMagic, kerr.InvalidRecord}, // as Kafka: produce v3+ needs magic 2
		{"truncated batch", "bad", 0, truncated, kerr.CorruptMessage},
		// Kafka's LogValidator: InvalidRecordException.
		{"record count mismatch", "bad", 0, badCount, kerr.InvalidRecord},
		{"zero records", "bad", 0, noRecords, kerr.InvalidRecord},
		{"control batch", "bad", 0, control, kerr.InvalidRecord},
		{"transactional batch without a producer id", "bad", 0, txnNoPID, kerr.InvalidRecord},
		{"batch over max.message.bytes", "bad", 0, large, kerr.MessageTooLarge},
		{"records over segment.bytes", "tiny", 0, large, kerr.RecordListTooLarge},
		{"unknown partition", "bad", 5, good, kerr.UnknownTopicOrPartition},
		{"unknown topic", "nosuch", 0, good, kerr.UnknownTopicOrPartition},
		// Kafka's ProduceRequest.validateRecords: at least one batch.
		{"empty records", "bad", 0, nil, kerr.InvalidRecord},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := produceRaw(t, c, tc.topic, tc.part, tc.recs)
			if p.ErrorCode != tc.want.Code {
				t.Fatalf("error %d (%v), want %v", p.ErrorCode, kerr.ErrorForCode(p.ErrorCode), tc.want)
			}
			checkClientMessage(t, p.ErrorCode, p.ErrorMessage)
		})
	}
	t.Run("transactional produce", func(t *testing.T) {
		req := produceReq("bad", 0, good)
		req.TransactionID = kmsg.StringPtr("txn")
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		resp.SetVersion(req.Version)
		c.roundTrip(req, resp)
		if p := resp.Topics[0].Partitions[0]; p.ErrorCode != kerr.InvalidRequest.Code {
			t.Fatalf("error %v, want INVALID_REQUEST", kerr.ErrorForCode(p.ErrorCode))
		}
	})
	// Nothing bad was written; a good batch lands at offset 0.
	if p := produceRaw(t, c, "bad", 0, good); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("good batch after bad ones: error %d offset %d", p.ErrorCode, p.BaseOffset)
	}
}

// TestPipelining sends many requests before reading any response and checks
// they come back in order.
func TestPipelining(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, newAdmin(t, b), "pipe", 1, nil)
	c := dialRaw(t, b)
	const n = 50
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			c.send(produceReq("pipe", 0, makeBatch(-1, -1, -1, 2, []byte("p"))), int32(i))
		} else {
			req := kmsg.NewPtrMetadataRequest()
			req.SetVersion(1)
			c.send(req, int32(i))
		}
	}
	var offset int64
	for i := 0; i < n; i++ {
		corr, body, err := c.recv(i%2 == 0) // produce v9 is flexible, metadata v1 is not
		if err != nil {
			t.Fatal(err)
		}
		if corr != int32(i) {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
		if i%2 == 0 {
			resp := kmsg.NewPtrProduceResponse()
			resp.SetVersion(9)
			if err := resp.ReadFrom(body); err != nil {
				t.Fatal(err)
			}
			if got := resp.Topics[0].Partitions[0].BaseOffset; got != offset {
				t.Fatalf("produce %d at offset %d, want %d", i, got, offset)
			}
			offset += 2
		}
	}
}

// TestIdempotentProducer exercises sequence checks and duplicate detection,
// across a broker restart.
func TestIdempotentProducer(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	createTopic(t, newAdmin(t, b), "idem", 1, nil)
	cl := newClient(t, b)
	ipr, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(testCtx(t), cl)
	if err != nil || ipr.ErrorCode != 0 {
		t.Fatalf("init producer id: %v %d", err, ipr.ErrorCode)
	}
	pid := ipr.ProducerID
	c := dialRaw(t, b)
	b0 := makeBatch(pid, 0, 0, 5, []byte("a"))
	b1 := makeBatch(pid, 0, 5, 5, []byte("b"))
	if p := produceRaw(t, c, "idem", 0, b0); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("first batch: %+v", p)
	}
	if p := produceRaw(t, c, "idem", 0, b1); p.ErrorCode != 0 || p.BaseOffset != 5 {
		t.Fatalf("second batch: %+v", p)
	}
	// A retry of the first batch is acknowledged with its original offset.
	if p := produceRaw(t, c, "idem", 0, makeBatch(pid, 0, 0, 5, []byte("a"))); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("duplicate: %+v", p)
	}
	// A gap in sequence numbers is out of order.
	if p := produceRaw(t, c, "idem", 0, makeBatch(pid, 0, 20, 1, []byte("c"))); p.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("gap: error %d", p.ErrorCode)
	} else if p.ErrorMessage == nil || !strings.Contains(*p.ErrorMessage, "sequence") {
		t.Fatalf("gap: message %v does not explain the sequence problem", p.ErrorMessage)
	} else {
		checkClientMessage(t, p.ErrorCode, p.ErrorMessage)
	}
	// An older epoch is fenced once a newer one wrote.
	if p := produceRaw(t, c, "idem", 0, makeBatch(pid, 1, 0, 1, []byte("d"))); p.ErrorCode != 0 {
		t.Fatalf("epoch bump: error %d", p.ErrorCode)
	}
	if p := produceRaw(t, c, "idem", 0, makeBatch(pid, 0, 10, 1, []byte("e"))); p.ErrorCode != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("old epoch: error %d", p.ErrorCode)
	} else {
		checkClientMessage(t, p.ErrorCode, p.ErrorMessage)
	}
	c.nc.Close()
	b.Close()

	b2 := startBroker(t, dir)
	c2 := dialRaw(t, b2)
	if p := produceRaw(t, c2, "idem", 0, makeBatch(pid, 1, 0, 1, []byte("d"))); p.ErrorCode != 0 || p.BaseOffset != 10 {
		t.Fatalf("duplicate after restart: %+v", p)
	}
	if p := produceRaw(t, c2, "idem", 0, makeBatch(pid, 1, 1, 1, []byte("f"))); p.ErrorCode != 0 || p.BaseOffset != 11 {
		t.Fatalf("next batch after restart: %+v", p)
	}
	// Producer ids are never reused across restarts.
	ipr2, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(testCtx(t), newClient(t, b2))
	if err != nil || ipr2.ProducerID <= pid {
		t.Fatalf("producer id after restart %d, first was %d (%v)", ipr2.ProducerID, pid, err)
	}
}

// TestFetchLongPoll: a fetch waiting on an empty partition is woken by a
// produce and returns the data well before its MaxWait.
func TestFetchLongPoll(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, newAdmin(t, b), "poll", 1, nil)
	cl := newClient(t, b)
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = 600_000, 1, 1<<20 // ten minutes
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = "poll", b.meta.lookup("poll").id
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	req.Topics = append(req.Topics, ft)
	type result struct {
		resp *kmsg.FetchResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := req.RequestWith(testCtx(t), cl)
		done <- result{resp, err}
	}()
	producer := newClient(t, b, kgo.DefaultProduceTopic("poll"))
	// Keep producing until the fetch returns: the first produce may land
	// before the fetch is registered, which is fine either way.
	for i := 0; ; i++ {
		if err := producer.ProduceSync(testCtx(t), &kgo.Record{Value: []byte("wake")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatal(r.err)
			}
			p := r.resp.Topics[0].Partitions[0]
			if p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
				t.Fatalf("woken fetch: error %d, %d bytes", p.ErrorCode, len(p.RecordBatches))
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if i > 2000 {
			t.Fatal("long-poll fetch was never woken by produces")
		}
	}
}

// TestFetchLimits: MaxBytes and PartitionMaxBytes are honoured, yet a batch
// larger than both is still returned whole when it comes first.
func TestFetchLimits(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, newAdmin(t, b), "lim", 2, nil)
	c := dialRaw(t, b)
	for i := 0; i < 10; i++ {
		for p := int32(0); p < 2; p++ {
			if r := produceRaw(t, c, "lim", p, makeBatch(-1, -1, -1, 1, make([]byte, 1000))); r.ErrorCode != 0 {
				t.Fatal(r.ErrorCode)
			}
		}
	}
	fetch := func(maxBytes, partMax int32) *kmsg.FetchResponse {
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(11)
		req.MaxBytes = maxBytes
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = "lim"
		for p := int32(0); p < 2; p++ {
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.Partition, fp.PartitionMaxBytes = p, partMax
			ft.Partitions = append(ft.Partitions, fp)
		}
		req.Topics = append(req.Topics, ft)
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(11)
		c.roundTrip(req, resp)
		return resp
	}
	// 10 bytes allowed: the first partition still returns one whole batch;
	// the second returns nothing.
	r := fetch(10, 10)
	p0, p1 := r.Topics[0].Partitions[0], r.Topics[0].Partitions[1]
	if n := countBatches(t, p0.RecordBatches); n != 1 {
		t.Fatalf("first partition returned %d batches, want exactly 1", n)
	}
	if len(p1.RecordBatches) != 0 {
		t.Fatalf("second partition returned %d bytes over the response limit", len(p1.RecordBatches))
	}
	// Per-partition limit of ~3 batches.
	r = fetch(1<<20, 3500)
	for _, p := range r.Topics[0].Partitions {
		if n := countBatches(t, p.RecordBatches); n != 3 {
			t.Fatalf("partition %d returned %d batches under a 3500-byte limit, want 3", p.Partition, n)
		}
	}
}

// TestFetchSessions: the broker keeps no fetch sessions. A full fetch
// (epoch 0, or -1 closing the session it names) is served without creating
// one (session id 0); an incremental fetch (any other epoch) gets
// FETCH_SESSION_ID_NOT_FOUND, as from Kafka for a session it does not have.
func TestFetchSessions(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, newAdmin(t, b), "sess", 1, nil)
	c := dialRaw(t, b)
	if r := produceRaw(t, c, "sess", 0, makeBatch(-1, -1, -1, 2, []byte("s"))); r.ErrorCode != 0 {
		t.Fatal(kerr.ErrorForCode(r.ErrorCode))
	}
	for _, tc := range []struct {
		name  string
		id    int32
		epoch int32
		want  *kerr.Error // nil: served in full
	}{
		{"new session", 0, 0, nil},
		{"close a session", 1234, -1, nil},
		{"sessionless full fetch", 0, -1, nil},
		{"full fetch naming a session", 1234, 0, nil},
		{"incremental fetch", 1234, 5, kerr.FetchSessionIDNotFound},
		{"incremental fetch without an id", 0, 5, kerr.FetchSessionIDNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := kmsg.NewPtrFetchRequest()
			req.SetVersion(12)
			req.MaxBytes, req.SessionID, req.SessionEpoch = 1<<20, tc.id, tc.epoch
			ft := kmsg.NewFetchRequestTopic()
			ft.Topic = "sess"
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.PartitionMaxBytes = 1 << 20
			ft.Partitions = append(ft.Partitions, fp)
			req.Topics = append(req.Topics, ft)
			resp := kmsg.NewPtrFetchResponse()
			resp.SetVersion(req.Version)
			c.roundTrip(req, resp)
			if tc.want != nil {
				if resp.ErrorCode != tc.want.Code || len(resp.Topics) != 0 {
					t.Fatalf("error %v with %d topics, want %v", kerr.ErrorForCode(resp.ErrorCode), len(resp.Topics), tc.want)
				}
				return
			}
			if resp.ErrorCode != 0 || resp.SessionID != 0 {
				t.Fatalf("error %v, session id %d; want a session-less full fetch", kerr.ErrorForCode(resp.ErrorCode), resp.SessionID)
			}
			if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || countBatches(t, p.RecordBatches) != 1 {
				t.Fatalf("partition error %v, %d bytes", kerr.ErrorForCode(p.ErrorCode), len(p.RecordBatches))
			}
		})
	}
}

func countBatches(t *testing.T, data []byte) int {
	n := 0
	for len(data) > 0 {
		if len(data) < 12 {
			t.Fatalf("partial batch header at the end of a fetch")
		}
		l := int(binary.BigEndian.Uint32(data[8:])) + 12
		if l > len(data) {
			t.Fatalf("partial batch at the end of a fetch")
		}
		data = data[l:]
		n++
	}
	return n
}

// TestShutdownAnswersInflight: Close answers a waiting long-poll fetch
// instead of dropping it.
func TestShutdownAnswersInflight(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, newAdmin(t, b), "sd", 1, nil)
	c := dialRaw(t, b)
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(11)
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = 600_000, 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "sd"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	req.Topics = append(req.Topics, ft)
	c.send(req, 99)
	// Wait until the fetch is parked on the partition.
	p := b.meta.lookup("sd").partitions[0]
	deadline := time.Now().Add(time.Minute)
	for p.nwait.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("fetch never started waiting")
		}
		time.Sleep(time.Millisecond)
	}
	go b.Close()
	corr, _, err := c.recv(false)
	if err != nil {
		t.Fatalf("in-flight fetch was not answered at shutdown: %v", err)
	}
	if corr != 99 {
		t.Fatalf("correlation id %d", corr)
	}
}

// TestCloseBeforeServe: closing a broker whose Serve has not started yet
// (or starts only afterwards) is clean, and Serve then returns at once.
func TestCloseBeforeServe(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	b, err := New(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve() }() // may run before or after Close
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := b.Serve(); err != nil {
		t.Fatalf("Serve after Close: %v", err)
	}
}

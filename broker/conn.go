package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/trace"
)

// request is one framed request: its parsed header and its body.
type request struct {
	key      int16
	version  int16
	corr     int32
	clientID string
	body     []byte  // the request body after the header
	buf      *[]byte // pooled buffer holding the frame, released after handling

	r kbin.Reader // scratch for parseHeader
}

// response is an encoded response frame ready to write.
type response struct {
	buf *[]byte // size prefix, header and body

	// pieces, if not nil, is what to write instead of buf: the parts of
	// buf between the record sets of a fetch response, and the record
	// sets themselves (see encodeFetchSpliced). release returns the
	// buffers the record sets live in, once they are written.
	pieces  net.Buffers
	release func()
}

// size returns the response's length on the wire.
func (r *response) size() int {
	if r.pieces == nil {
		return len(*r.buf)
	}
	n := 0
	for _, p := range r.pieces {
		n += len(p)
	}
	return n
}

// done returns the response's buffers to their pools.
func (r *response) done() {
	putBuf(r.buf)
	r.buf = nil
	if r.release != nil {
		r.release()
		r.release = nil
	}
}

// conn is one client connection, served by one goroutine that reads a
// request, handles it and writes its response, then reads the next.
//
// Responses therefore leave in request order, as Kafka requires, and a
// request costs no goroutine handoffs: handing each request from a reader
// to a processor and each response to a writer (the first design) cost
// two goroutine wake-ups per request, which on a 2-core machine was most
// of the broker's CPU per small request. While a long-poll fetch waits the
// connection is not read, so a client that disconnects is noticed when
// the fetch returns (at its MaxWaitMillis at the latest).
//
// The one exception is an answer that waits for other brokers: an
// acks=all produce is answered only once the in-sync replicas have its
// records, and clients pipeline such requests (franz-go and the Java
// client keep up to 5 produce requests in flight per broker). Kafka reads
// nothing more from the connection meanwhile, so each request waits for
// the replication of the one before it. Here the goroutine hands the
// waiting answer to the connection's answerer (started on first use) and
// goes on reading, appending the next request's records while the first
// replicates; the answerer writes the answers in request order, and so
// does every answer that follows one it still holds, until it has none
// left. At most maxPipelined answers wait; then reading waits too.
type conn struct {
	b      *Broker
	nc     net.Conn
	logger *slog.Logger

	// closing is closed to stop the connection early (protocol error,
	// acks=0 produce error, broker shutdown): the request being handled
	// is answered, then the connection closes.
	closing   chan struct{}
	closeOnce sync.Once

	// ctx ends when the connection is stopped or the broker shuts down:
	// requests that wait (long-poll fetches) return at once with what
	// they have.
	ctx    context.Context
	cancel context.CancelFunc

	// Set from ApiVersions v3+ (KIP-511).
	clientSoftware, clientSoftwareVersion string

	// x is the request being handled, reused for the next one unless it
	// goes to the answerer.
	x exchange

	// The answerer: answers waits for it, queued counts the answers it
	// holds (the reader writes its own answers only when it holds none),
	// answererDone is closed when it ends.
	answers      chan *exchange
	queued       atomic.Int32
	answererDone chan struct{}

	// client is the client's request metrics series, resolved on first
	// use; written only by whoever answers (see queued).
	client *clientSeries
}

// maxPipelined is how many answers may wait for the answerer.
const maxPipelined = 8

// exchange is one request and what answering it takes.
type exchange struct {
	req      request
	reqBytes int
	peer     string // its class (see peerOf), for network faults
	peerID   int32

	// Set by handling: the answer, either still to be encoded (resp,
	// with release called once it is encoded or written) or already
	// encoded (out); neither when no answer is due (acks=0). await, set
	// by a handler whose answer waits for others (acks=all), blocks
	// until resp is complete.
	resp    kmsg.Response
	release func()
	out     *response
	await   func()

	// Request metrics and tracing (when on): its timing, the client
	// software when it was handled, the error codes of its response, and
	// its spans, ended when it is answered.
	timing                    requestTiming
	software, softwareVersion string
	handed                    time.Time // when the reader handed it to the answerer
	codes                     []int16
	spans                     []trace.Span
}

func newConn(b *Broker, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(b.ctx)
	return &conn{
		ctx:     ctx,
		cancel:  cancel,
		b:       b,
		nc:      nc,
		logger:  b.logger.With("remote", nc.RemoteAddr().String()),
		closing: make(chan struct{}),
	}
}

// stop asks the connection to stop after the request being handled.
func (c *conn) stop() {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.cancel()
		// Unblock a read in progress; the request being handled is
		// still answered.
		if tc, ok := c.nc.(*net.TCPConn); ok {
			_ = tc.CloseRead()
		} else {
			_ = c.nc.SetReadDeadline(time.Now())
		}
	})
}

func (c *conn) stopping() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// serve runs the connection until the client goes away or the connection
// is stopped, then closes the socket once every answer is written.
func (c *conn) serve() {
	clientGone := false
	defer func() {
		if c.answers != nil {
			if clientGone {
				// No one will read the answers: stop waiting for them.
				c.cancel()
			}
			close(c.answers)
			<-c.answererDone
		}
		c.cancel()
		_ = c.nc.Close()
	}()
	m := c.b.reqMetrics
	timed := m != nil || c.b.tracing != nil
	tr := &timedReader{r: c.nc}
	var src io.Reader = c.nc
	if timed {
		src = tr
		c.x.timing.busyTill = time.Now()
	}
	if m != nil {
		m.connCreated.Inc()
		m.connActive.Inc()
		defer func() { m.connActive.Dec(); m.connClosed.Inc() }()
	}
	defer func() { endSpans(&c.x.spans, time.Now()) }() // of a request not answered
	r := bufio.NewReaderSize(src, 64<<10)
	x := &c.x
	for !c.stopping() {
		// A request whose first bytes are buffered arrived with the read
		// that buffered them, the last one; otherwise with the first read
		// from now on.
		buffered, lastRead := r.Buffered() > 0, tr.last
		tr.first = time.Time{}
		if !c.read(r, &x.req) {
			clientGone = true
			return
		}
		x.reqBytes = len(*x.req.buf) + 4
		x.peer, x.peerID = peerOf(x.req.clientID)
		if err := c.b.faults.hold(c.ctx, x.peer, x.peerID, dirIn); err != nil {
			x.discard()
			c.logger.Debug("closing connection", "err", err)
			return
		}
		if timed {
			x.timing.arrived = tr.first
			if buffered {
				x.timing.arrived = lastRead
			}
			x.timing.read = time.Now()
			x.timing.remote = 0
		}
		err := c.handle(x)
		x.software, x.softwareVersion = c.clientSoftware, c.clientSoftwareVersion
		if err != nil {
			// Answers already handed over are still written (serve's
			// deferred wait).
			x.discard()
			c.logger.Warn("closing connection", "api", kmsg.NameForKey(x.req.key),
				"version", x.req.version, "client_id", x.req.clientID, "err", err)
			return
		}
		if x.await == nil && c.queued.Load() == 0 {
			ok := c.answer(x)
			x.timing.busyTill = time.Now()
			if !ok {
				return
			}
			continue
		}
		c.handOver()
	}
}

// handOver moves the request being handled to the answerer and makes a
// fresh one for the next request.
func (c *conn) handOver() {
	x := new(exchange)
	*x = c.x
	x.handed = time.Now()
	next := &c.x
	*next = exchange{req: request{clientID: x.req.clientID}}
	next.timing.busyTill = x.handed
	if c.answers == nil {
		c.answers = make(chan *exchange, maxPipelined)
		c.answererDone = make(chan struct{})
		go c.answerer()
	}
	c.queued.Add(1)
	c.answers <- x
}

// answerer writes the answers handed to it, in order. After a failed
// write it stops the connection and drops the rest.
func (c *conn) answerer() {
	defer close(c.answererDone)
	failed := false
	for x := range c.answers {
		if failed {
			x.discard()
		} else if !c.answer(x) {
			failed = true
			c.stop()
		}
		c.queued.Add(-1)
	}
}

// answer waits for x's answer if it must, encodes and writes it, and
// records the request's metrics and spans. It reports false if the
// connection must close.
func (c *conn) answer(x *exchange) bool {
	if x.await != nil {
		x.await()
		x.await = nil
		// Waiting for the other brokers, and behind earlier answers.
		x.timing.remote += time.Since(x.handed)
	}
	out := c.encode(x)
	putBuf(x.req.buf) // encoded: strings no longer alias it
	x.req.buf, x.req.body = nil, nil
	timed := c.b.reqMetrics != nil || c.b.tracing != nil
	var handled time.Time
	if timed {
		handled = time.Now()
	}
	if out == nil {
		if timed {
			c.answered(x, handled, time.Time{}, 0)
		}
		return true
	}
	respBytes := out.size()
	if err := c.b.faults.hold(c.ctx, x.peer, x.peerID, dirOut); err != nil {
		out.done()
		endSpans(&x.spans, time.Now())
		c.logger.Debug("closing connection", "err", err)
		return false
	}
	err := c.write(out)
	out.done()
	if err != nil {
		endSpans(&x.spans, time.Now())
		c.logger.Debug("connection write failed", "err", err)
		return false
	}
	if timed {
		c.answered(x, handled, time.Now(), respBytes)
	}
	return true
}

// answered records a request answered (written is zero when no response
// was due): its metrics and the end of its spans.
func (c *conn) answered(x *exchange, handled, written time.Time, respBytes int) {
	end := written
	if end.IsZero() {
		end = handled
	}
	if c.b.reqMetrics != nil {
		c.observe(x, handled, written, respBytes)
	}
	endSpans(&x.spans, end)
}

// discard drops a request that will not be answered.
func (x *exchange) discard() {
	if x.release != nil {
		x.release()
		x.release = nil
	}
	if x.out != nil {
		x.out.done()
		x.out = nil
	}
	x.resp, x.await = nil, nil
	putBuf(x.req.buf)
	x.req.buf, x.req.body = nil, nil
	endSpans(&x.spans, time.Now())
}

// read frames the next request into req and parses its header. It
// reports false when the connection should close (the client went away,
// the connection was stopped, or the frame is malformed, which is
// logged).
func (c *conn) read(r *bufio.Reader, req *request) bool {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		c.readError(err)
		return false
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 8 || n > c.b.cfg.SocketRequestMaxBytes {
		c.logger.Warn("closing connection: request size out of range",
			"size", n, "socket-request-max-bytes", c.b.cfg.SocketRequestMaxBytes)
		return false
	}
	buf := getBuf(int(n))
	frame := (*buf)[:n]
	if _, err := io.ReadFull(r, frame); err != nil {
		putBuf(buf)
		c.readError(err)
		return false
	}
	*buf = frame
	if err := parseHeader(frame, req); err != nil {
		putBuf(buf)
		c.logger.Warn("closing connection: malformed request header", "err", err)
		return false
	}
	req.buf = buf
	return true
}

func (c *conn) readError(err error) {
	select {
	case <-c.closing:
		return // we asked for it
	default:
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	var ne net.Error
	if errors.As(err, &ne) {
		c.logger.Debug("connection read failed", "err", err)
		return
	}
	c.logger.Info("connection read failed", "err", err)
}

// parseHeader parses the request header (v1 or v2) of a frame into req,
// which may hold the connection's previous request: its client id string
// is kept when the new one is the same (clients send the same one every
// time), so parsing a header allocates nothing.
func parseHeader(frame []byte, req *request) error {
	// The reader lives in req: a local one would escape to the heap
	// through kmsg.SkipTags.
	r := &req.r
	*r = kbin.Reader{Src: frame}
	req.key, req.version, req.corr = r.Int16(), r.Int16(), r.Int32() // frames are at least 8 bytes
	req.body, req.buf = nil, nil
	if !supported(req.key, req.version) {
		// The body is not parsed; ApiVersions answers with the ranges, any
		// other request closes the connection.
		return nil
	}
	// The client id is a nullable string with an int16 length, also in
	// flexible (v2) headers.
	if n := r.Int16(); n < 0 {
		req.clientID = ""
	} else if id := r.Span(int(n)); string(id) != req.clientID {
		req.clientID = string(id)
	}
	if req.version >= flexibleFrom[req.key] {
		kmsg.SkipTags(r)
	}
	if err := r.Complete(); err != nil {
		return fmt.Errorf("%s v%d header: %w", kmsg.NameForKey(req.key), req.version, err)
	}
	req.body = r.Src
	return nil
}

// flexibleFrom maps every implemented API to its first flexible version
// (one past its maximum if none is), whose requests have v2 headers.
var flexibleFrom = func() map[int16]int16 {
	m := make(map[int16]int16, len(apiVersions))
	for key, r := range apiVersions {
		m[key] = r.max + 1
		kreq := kmsg.RequestForKey(key)
		for v := r.min; v <= r.max; v++ {
			kreq.SetVersion(v)
			if kreq.IsFlexible() {
				m[key] = v
				break
			}
		}
	}
	return m
}()

// errCloseConn asks serve to close the connection without a
// response (an acks=0 produce that failed, as Kafka does).
var errCloseConn = errors.New("closing connection to make the client refresh metadata")

// handle decodes and dispatches one request, leaving its answer in x (see
// exchange); an error closes the connection.
func (c *conn) handle(x *exchange) error {
	req := &x.req
	x.codes = x.codes[:0]
	x.resp, x.release, x.out, x.await = nil, nil, nil, nil
	if !supported(req.key, req.version) {
		if req.key == kmsg.ApiVersions.Int16() {
			x.out = c.unsupportedApiVersions(req)
			return nil
		}
		if _, known := apiVersions[req.key]; known {
			return fmt.Errorf("unsupported version %d of %s; supported: %d-%d", req.version,
				kmsg.NameForKey(req.key), apiVersions[req.key].min, apiVersions[req.key].max)
		}
		return fmt.Errorf("unsupported API key %d (%s)", req.key, kmsg.NameForKey(req.key))
	}
	kreq := kmsg.RequestForKey(req.key)
	kreq.SetVersion(req.version)
	var err error
	if u, ok := kreq.(interface{ UnsafeReadFrom([]byte) error }); ok && isHotPath(req.key) {
		// Produce and Fetch strings alias the request buffer, which lives
		// until the response is encoded (see answer).
		err = u.UnsafeReadFrom(req.body)
	} else {
		err = kreq.ReadFrom(req.body)
	}
	if err != nil {
		return fmt.Errorf("malformed %s v%d body: %w", kmsg.NameForKey(req.key), req.version, err)
	}
	resp, release, err := c.dispatch(req, kreq)
	if err != nil {
		if release != nil {
			release()
		}
		return err
	}
	x.resp, x.release = resp, release
	return nil
}

// encode encodes x's answer (nil when none is due).
func (c *conn) encode(x *exchange) *response {
	if x.out != nil {
		out := x.out
		x.out = nil
		return out
	}
	resp, release := x.resp, x.release
	x.resp, x.release = nil, nil
	if resp == nil {
		if release != nil {
			release()
		}
		return nil
	}
	if c.b.reqMetrics != nil {
		x.codes = responseErrors(resp, x.codes)
	}
	resp.SetVersion(x.req.version)
	if fr, ok := resp.(*kmsg.FetchResponse); ok {
		if out := encodeFetchSpliced(&x.req, fr); out != nil {
			out.release = release // the pieces refer to the fetched records
			return out
		}
	}
	out := encodeResponse(&x.req, resp)
	if release != nil {
		release()
	}
	return out
}

func isHotPath(key int16) bool {
	return key == kmsg.Produce.Int16() || key == kmsg.Fetch.Int16()
}

// encodeResponse frames resp: size, correlation id, header tags (flexible
// responses other than ApiVersions), body.
func encodeResponse(req *request, resp kmsg.Response) *response {
	size := 4096
	if fr, ok := resp.(*kmsg.FetchResponse); ok {
		// Size the buffer for the records so encoding never regrows it.
		for i := range fr.Topics {
			for j := range fr.Topics[i].Partitions {
				size += len(fr.Topics[i].Partitions[j].RecordBatches) + 128
			}
		}
	}
	buf := getBuf(size)
	b := append(*buf, 0, 0, 0, 0)
	b = kbin.AppendInt32(b, req.corr)
	if resp.IsFlexible() && req.key != kmsg.ApiVersions.Int16() {
		b = append(b, 0)
	}
	b = resp.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	*buf = b
	return &response{buf: buf}
}

// unsupportedApiVersions answers an ApiVersions request of a version this
// broker does not know with version 0, UNSUPPORTED_VERSION and the range of
// ApiVersions alone, as Kafka does (KIP-511): the client retries with a
// version both sides speak, and from v3 says who it is (with every range,
// franz-go would take them and never send its software name).
func (c *conn) unsupportedApiVersions(req *request) *response {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(0)
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = []kmsg.ApiVersionsResponseApiKey{{ApiKey: kmsg.ApiVersions.Int16(), MaxVersion: apiVersions[kmsg.ApiVersions.Int16()].max}}
	return encodeResponse(req, resp)
}

// write sends one response: one write, or one writev for a spliced fetch
// response.
func (c *conn) write(resp *response) error {
	if resp.pieces != nil {
		_, err := resp.pieces.WriteTo(c.nc)
		return err
	}
	_, err := c.nc.Write(*resp.buf)
	return err
}

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
// of the broker's CPU per small request. Pipelined requests wait in the
// socket buffer meanwhile, as in Kafka, which also handles one request per
// connection at a time. Clients send one fetch per connection at a time
// and, by default, one produce request per connection at a time, so
// reading ahead would overlap nothing. While a long-poll fetch waits the
// connection is not read, so a client that disconnects is noticed when
// the fetch returns (at its MaxWaitMillis at the latest).
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

	req request // the request being handled, reused for the next one

	// Request metrics (when on): the timing of the request being handled,
	// the error codes of its response, and the client's series.
	timing requestTiming
	codes  []int16
	client *clientSeries
	spans  []trace.Span // of the request being handled, ended when answered
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
// is stopped, then closes the socket.
func (c *conn) serve() {
	defer func() {
		c.cancel()
		_ = c.nc.Close()
	}()
	m := c.b.reqMetrics
	timed := m != nil || c.b.tracing != nil
	tr := &timedReader{r: c.nc}
	var src io.Reader = c.nc
	if timed {
		src = tr
		c.timing.busyTill = time.Now()
	}
	if m != nil {
		m.connCreated.Inc()
		m.connActive.Inc()
		defer func() { m.connActive.Dec(); m.connClosed.Inc() }()
	}
	defer func() { c.endSpans(time.Now()) }() // of a request not answered
	r := bufio.NewReaderSize(src, 64<<10)
	for !c.stopping() {
		// A request whose first bytes are buffered arrived with the read
		// that buffered them, the last one; otherwise with the first read
		// from now on.
		buffered, lastRead := r.Buffered() > 0, tr.last
		tr.first = time.Time{}
		req := c.read(r)
		if req == nil {
			return
		}
		reqBytes := len(*req.buf) + 4
		peer, peerID := peerOf(req.clientID)
		if err := c.b.faults.hold(c.ctx, peer, peerID, dirIn); err != nil {
			c.logger.Debug("closing connection", "err", err)
			return
		}
		if timed {
			c.timing.arrived = tr.first
			if buffered {
				c.timing.arrived = lastRead
			}
			c.timing.read = time.Now()
			c.timing.remote = 0
		}
		resp, err := c.handle(req)
		putBuf(req.buf)
		req.buf, req.body = nil, nil
		if err != nil {
			c.logger.Warn("closing connection", "api", kmsg.NameForKey(req.key),
				"version", req.version, "client_id", req.clientID, "err", err)
			return
		}
		var handled time.Time
		if timed {
			handled = time.Now()
		}
		if resp == nil {
			if timed {
				c.answered(req, handled, time.Time{}, reqBytes, 0)
			}
			continue
		}
		respBytes := resp.size()
		if err := c.b.faults.hold(c.ctx, peer, peerID, dirOut); err != nil {
			resp.done()
			c.logger.Debug("closing connection", "err", err)
			return
		}
		err = c.write(resp)
		resp.done()
		if err != nil {
			c.logger.Debug("connection write failed", "err", err)
			return
		}
		if timed {
			c.answered(req, handled, time.Now(), reqBytes, respBytes)
		}
	}
}

// answered records a request answered (written is zero when no response
// was due): its metrics and the end of its spans.
func (c *conn) answered(req *request, handled, written time.Time, reqBytes, respBytes int) {
	end := written
	if end.IsZero() {
		end = handled
	}
	if c.b.reqMetrics != nil {
		c.observe(req, handled, written, reqBytes, respBytes, c.codes)
	}
	c.endSpans(end)
	c.timing.busyTill = end
}

// read frames the next request and parses its header. It returns nil when
// the connection should close (the client went away, the connection was
// stopped, or the frame is malformed, which is logged).
func (c *conn) read(r *bufio.Reader) *request {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		c.readError(err)
		return nil
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 8 || n > c.b.cfg.SocketRequestMaxBytes {
		c.logger.Warn("closing connection: request size out of range",
			"size", n, "socket-request-max-bytes", c.b.cfg.SocketRequestMaxBytes)
		return nil
	}
	buf := getBuf(int(n))
	frame := (*buf)[:n]
	if _, err := io.ReadFull(r, frame); err != nil {
		putBuf(buf)
		c.readError(err)
		return nil
	}
	*buf = frame
	req := &c.req
	if err := parseHeader(frame, req); err != nil {
		putBuf(buf)
		c.logger.Warn("closing connection: malformed request header", "err", err)
		return nil
	}
	req.buf = buf
	return req
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

// handle decodes, dispatches and encodes one request. A nil response with a
// nil error means no response is due (acks=0 produce).
func (c *conn) handle(req *request) (*response, error) {
	c.codes = c.codes[:0]
	if !supported(req.key, req.version) {
		if req.key == kmsg.ApiVersions.Int16() {
			return c.unsupportedApiVersions(req), nil
		}
		if _, known := apiVersions[req.key]; known {
			return nil, fmt.Errorf("unsupported version %d of %s; supported: %d-%d", req.version,
				kmsg.NameForKey(req.key), apiVersions[req.key].min, apiVersions[req.key].max)
		}
		return nil, fmt.Errorf("unsupported API key %d (%s)", req.key, kmsg.NameForKey(req.key))
	}
	kreq := kmsg.RequestForKey(req.key)
	kreq.SetVersion(req.version)
	var err error
	if u, ok := kreq.(interface{ UnsafeReadFrom([]byte) error }); ok && isHotPath(req.key) {
		// Produce and Fetch strings alias the request buffer, which lives
		// until the response is encoded below.
		err = u.UnsafeReadFrom(req.body)
	} else {
		err = kreq.ReadFrom(req.body)
	}
	if err != nil {
		return nil, fmt.Errorf("malformed %s v%d body: %w", kmsg.NameForKey(req.key), req.version, err)
	}
	resp, release, err := c.dispatch(req, kreq)
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return nil, nil
	}
	if c.b.reqMetrics != nil {
		c.codes = responseErrors(resp, c.codes)
	}
	resp.SetVersion(req.version)
	if fr, ok := resp.(*kmsg.FetchResponse); ok {
		if out := encodeFetchSpliced(req, fr); out != nil {
			out.release = release // the pieces refer to the fetched records
			return out, nil
		}
	}
	out := encodeResponse(req, resp)
	if release != nil {
		release()
	}
	return out, nil
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

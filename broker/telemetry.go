package broker

import (
	"container/list"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KIP-714 client telemetry: clients ask for their subscription
// (GetTelemetrySubscriptions) and push their metrics as OTLP (PushTelemetry)
// every push interval; the broker keeps the latest values of each client
// instance and exposes them on /metrics (telemetry_metrics.go). The rules —
// which errors, when a push is too early, when a client is forgotten —
// follow Kafka's ClientMetricsManager; docs/protocol.md has them.
//
// telemetryStore is the deterministic core: it takes requests and a
// clock, and does no I/O.

// telemetrySubscription is the subscription every client gets.
type telemetrySubscription struct {
	prefixes []string // nil: no metrics (telemetry off); [""]: every metric
	interval time.Duration
	maxBytes int32
	delta    bool
}

// acceptedTelemetryCompression are the codecs a push may use, the
// broker's preference first (Kafka's list and order). Uncompressed pushes
// are always accepted.
var acceptedTelemetryCompression = []int8{4, 3, 1, 2} // zstd, lz4, gzip, snappy

// Bounds on the clients and series the store keeps.
const (
	// maxTelemetryClients bounds the client instances tracked (exposed or
	// not); when full, the least recently heard from is forgotten
	// (Kafka's client instance cache holds 16384).
	maxTelemetryClients = 16384
	// maxTelemetrySeriesPerClient bounds the series one client instance
	// can have exposed.
	maxTelemetrySeriesPerClient = 200
)

// clientIdent is who a request came from, as its connection knows it.
type clientIdent struct {
	software, version, clientID string
}

// telemetryClient is one client instance.
type telemetryClient struct {
	id    [16]byte
	idStr string // canonical UUID form, the client_instance label
	ident clientIdent

	lastGet, lastPush time.Time // accepted requests (zero: none)
	getSincePush      bool      // a Get was answered after the last accepted push
	lastSeen          time.Time // any request; expiry counts from here
	lastErr           int16     // error code of the last push
	terminating       bool      // sent its last push

	exposed   bool // holds one of the telemetry-top-n places
	overLimit bool // its last push was dropped for want of a place

	series map[seriesKey]*telemetrySeries
	elem   *list.Element // in telemetryStore.lru
}

// seriesKey identifies a series of one client: its exposed family and key.
type seriesKey struct {
	family telemetryKind
	pointKey
}

// telemetrySeries is the latest value of one series.
type telemetrySeries struct {
	kind      telemetryKind
	value     float64
	count     uint64
	sum       float64
	bounds    []float64
	counts    []uint64 // per bucket, the last +Inf
	quantiles [][2]float64
}

// telemetryStore holds the client instances of one broker.
type telemetryStore struct {
	now func() time.Time

	// Limits, from the broker config (tests lower them).
	topN, maxNames, maxSeriesPerClient, maxClients int

	mu      sync.Mutex
	sub     telemetrySubscription
	subCRC  uint32 // of sub, the base of subscription ids
	clients map[[16]byte]*telemetryClient
	lru     list.List // of *telemetryClient, most recently seen first
	exposed int       // clients holding a place
	names   map[string]int
	nseries int

	// observe, if set (by tests), sees every push first, under mu. The
	// request's byte slices are valid only during the call.
	observe func(*kmsg.PushTelemetryRequest)

	// Counters for the broker's own metrics.
	gets, pushes  map[string]float64 // by result
	dropped       map[string]float64 // points, by reason
	receivedBytes float64
}

func newTelemetryStore(cfg TelemetryConfig, now func() time.Time) *telemetryStore {
	s := &telemetryStore{
		now:                now,
		topN:               cfg.TelemetryTopN,
		maxNames:           cfg.TelemetryMaxNames,
		maxSeriesPerClient: maxTelemetrySeriesPerClient,
		maxClients:         maxTelemetryClients,
		clients:            map[[16]byte]*telemetryClient{},
		names:              map[string]int{},
		gets:               map[string]float64{},
		pushes:             map[string]float64{},
		dropped:            map[string]float64{},
	}
	s.setSubscription(cfg.subscription())
	return s
}

// setSubscription changes the subscription: subscription ids change, so
// every client's next push gets UNKNOWN_SUBSCRIPTION_ID and the client asks
// again. Stored series are dropped (they may no longer be subscribed to).
func (s *telemetryStore) setSubscription(sub telemetrySubscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sub = sub
	s.subCRC = crc32.Checksum(fmt.Appendf(nil, "%q %d %d %t", sub.prefixes, sub.interval.Milliseconds(), sub.maxBytes, sub.delta), castagnoli)
	for _, c := range s.clients {
		s.dropSeriesLocked(c)
	}
}

// setObserver makes fn see every push (tests capture real clients' pushes
// with it).
func (s *telemetryStore) setObserver(fn func(*kmsg.PushTelemetryRequest)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observe = fn
}

// subscriptionID is the id of the subscription of client id: a CRC-32C of
// the subscription and the id, as Kafka computes it, so that any broker
// with the same settings accepts the client's pushes (a client pins its
// pushes to one broker and moves when that broker goes away).
func (s *telemetryStore) subscriptionID(id [16]byte) int32 {
	return int32(crc32.Update(s.subCRC, castagnoli, id[:]))
}

var zeroUUID [16]byte

// getSubscriptions answers GetTelemetrySubscriptions.
func (s *telemetryStore) getSubscriptions(r *kmsg.GetTelemetrySubscriptionsRequest, who clientIdent) *kmsg.GetTelemetrySubscriptionsResponse {
	resp := r.ResponseKind().(*kmsg.GetTelemetrySubscriptionsResponse)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expireLocked(now)
	id := r.ClientInstanceID
	if id == zeroUUID {
		id = s.newClientIDLocked()
	}
	c := s.clientLocked(id, who, now)
	// A Get within an interval of the client's last request is too early,
	// unless its last push was refused for a reason a new subscription
	// fixes.
	if !c.allowGet(now, s.sub.interval) && c.lastErr != kerr.UnknownSubscriptionID.Code && c.lastErr != kerr.UnsupportedCompressionType.Code {
		resp.ErrorCode = kerr.ThrottlingQuotaExceeded.Code
		s.gets[resultLabel(resp.ErrorCode)]++
		return resp
	}
	// Also when let through for its last error (where Kafka keeps the
	// older time): the client's first push after this Get is accepted.
	c.lastGet, c.getSincePush = now, true
	c.lastErr = 0
	// Kafka always returns the id, also when the client sent one, and
	// clients (franz-go) take it from the response.
	resp.ClientInstanceID = id
	resp.SubscriptionID = s.subscriptionID(id)
	resp.AcceptedCompressionTypes = acceptedTelemetryCompression
	resp.PushIntervalMillis = int32(s.sub.interval.Milliseconds())
	resp.TelemetryMaxBytes = s.sub.maxBytes
	resp.DeltaTemporality = s.sub.delta
	resp.RequestedMetrics = append([]string{}, s.sub.prefixes...)
	s.gets[resultLabel(0)]++
	return resp
}

// push answers PushTelemetry: it checks the request (in Kafka's order),
// decodes the payload outside the lock and stores its points.
func (s *telemetryStore) push(r *kmsg.PushTelemetryRequest, who clientIdent) *kmsg.PushTelemetryResponse {
	resp := r.ResponseKind().(*kmsg.PushTelemetryResponse)
	resp.ErrorCode = s.pushCode(r, who)
	return resp
}

func (s *telemetryStore) pushCode(r *kmsg.PushTelemetryRequest, who clientIdent) int16 {
	s.mu.Lock()
	if s.observe != nil {
		s.observe(r)
	}
	s.receivedBytes += float64(len(r.Metrics))
	if r.ClientInstanceID == zeroUUID {
		return s.pushDoneLocked(nil, kerr.InvalidRequest.Code)
	}
	now := s.now()
	s.expireLocked(now)
	c := s.clientLocked(r.ClientInstanceID, who, now)
	code := s.checkPushLocked(c, r, now)
	if r.Terminating {
		// The client is going away (even if this push is refused, as in
		// Kafka): its series go now, and any later push is refused.
		c.terminating = true
		s.dropSeriesLocked(c)
	}
	if code != 0 || len(r.Metrics) == 0 {
		return s.pushDoneLocked(c, code)
	}
	sub := s.sub
	s.mu.Unlock()

	points, dropped, err := decodeTelemetry(r.CompressionType, r.Metrics, int(sub.maxBytes), sub.prefixes)

	s.mu.Lock()
	switch {
	case errors.Is(err, errTelemetryTooLarge):
		return s.pushDoneLocked(c, kerr.TelemetryTooLarge.Code)
	case err != nil:
		return s.pushDoneLocked(c, kerr.InvalidRecord.Code)
	}
	if s.clients[c.id] == c && !c.terminating {
		s.applyLocked(c, points, dropped)
	}
	for reason, n := range dropped {
		s.dropped[reason] += float64(n)
	}
	return s.pushDoneLocked(c, 0)
}

// pushDoneLocked counts a push's result, records it as the client's last
// error, and unlocks.
func (s *telemetryStore) pushDoneLocked(c *telemetryClient, code int16) int16 {
	if c != nil {
		c.lastErr = code
	}
	s.pushes[resultLabel(code)]++
	s.mu.Unlock()
	return code
}

// checkPushLocked returns the error for a push from c, 0 if it is
// accepted. A push that is not too early counts as the client's last push
// for throttling, whatever its other checks find (as in Kafka).
func (s *telemetryStore) checkPushLocked(c *telemetryClient, r *kmsg.PushTelemetryRequest, now time.Time) int16 {
	switch {
	case c.terminating:
		return kerr.InvalidRequest.Code // pushed after its terminating push
	case !c.allowPush(now, s.sub.interval) && !r.Terminating:
		return kerr.ThrottlingQuotaExceeded.Code
	case r.SubscriptionID != s.subscriptionID(c.id):
		return kerr.UnknownSubscriptionID.Code
	case r.CompressionType < 0 || r.CompressionType > 4:
		return kerr.UnsupportedCompressionType.Code
	case len(r.Metrics) > int(s.sub.maxBytes):
		return kerr.TelemetryTooLarge.Code
	}
	return 0
}

// allowGet reports whether a Get may be answered now: a push interval
// after the client's last accepted request.
func (c *telemetryClient) allowGet(now time.Time, interval time.Duration) bool {
	last := c.lastGet
	if c.lastPush.After(last) {
		last = c.lastPush
	}
	return last.IsZero() || now.Sub(last) >= interval
}

// allowPush reports whether a push may be accepted now, and records it if
// so: the first push after a Get is (clients wait 0.5 to 1.5 intervals
// before it, to spread their pushes), later ones a push interval after the
// previous one.
func (c *telemetryClient) allowPush(now time.Time, interval time.Duration) bool {
	ok := c.getSincePush || c.lastPush.IsZero() || now.Sub(c.lastPush) >= interval
	if ok {
		c.lastPush, c.getSincePush = now, false
	}
	return ok
}

// clientLocked returns client id, created if new, marked as seen now with
// who as its identity.
func (s *telemetryStore) clientLocked(id [16]byte, who clientIdent, now time.Time) *telemetryClient {
	c := s.clients[id]
	if c == nil {
		for len(s.clients) >= s.maxClients && s.lru.Len() > 0 {
			s.removeLocked(s.lru.Back().Value.(*telemetryClient))
		}
		c = &telemetryClient{id: id, idStr: uuidString(id)}
		c.elem = s.lru.PushFront(c)
		s.clients[id] = c
	} else {
		s.lru.MoveToFront(c.elem)
	}
	c.lastSeen = now
	c.ident = clientIdent{
		software: labelValue(who.software, maxTelemetryLabelLen),
		version:  labelValue(who.version, maxTelemetryLabelLen),
		clientID: labelValue(who.clientID, maxTelemetryLabelLen),
	}
	return c
}

// expireLocked forgets the clients not heard from for 3 push intervals.
func (s *telemetryStore) expireLocked(now time.Time) {
	ttl := 3 * s.sub.interval
	for e := s.lru.Back(); e != nil; e = s.lru.Back() {
		c := e.Value.(*telemetryClient)
		if now.Sub(c.lastSeen) <= ttl {
			return
		}
		s.removeLocked(c)
	}
}

func (s *telemetryStore) removeLocked(c *telemetryClient) {
	s.dropSeriesLocked(c)
	s.lru.Remove(c.elem)
	delete(s.clients, c.id)
}

// dropSeriesLocked removes every series of c and gives up its place.
func (s *telemetryStore) dropSeriesLocked(c *telemetryClient) {
	for k := range c.series {
		s.removeSeriesLocked(c, k)
	}
	if c.exposed {
		c.exposed = false
		s.exposed--
	}
	c.overLimit = false
}

func (s *telemetryStore) removeSeriesLocked(c *telemetryClient, k seriesKey) {
	if _, ok := c.series[k]; !ok {
		return
	}
	delete(c.series, k)
	s.nseries--
	if s.names[k.name]--; s.names[k.name] <= 0 {
		delete(s.names, k.name)
	}
}

// applyLocked stores the points of an accepted push from c.
func (s *telemetryStore) applyLocked(c *telemetryClient, points []telemetryPoint, dropped map[string]int) {
	if !c.exposed {
		if s.exposed >= s.topN {
			c.overLimit = true
			dropped[dropClientLimit] += len(points)
			return
		}
		c.exposed, c.overLimit = true, false
		s.exposed++
		c.series = map[seriesKey]*telemetrySeries{}
	}
	// Gauges are replaced as a whole: what this push does not have is gone.
	for k, ser := range c.series {
		if ser.kind == kindGauge {
			s.removeSeriesLocked(c, k)
		}
	}
	for i := range points {
		p := &points[i]
		k := seriesKey{p.kind.family(), p.key}
		if p.noValue {
			s.removeSeriesLocked(c, k)
			continue
		}
		ser := c.series[k]
		if ser == nil {
			switch {
			case len(c.series) >= s.maxSeriesPerClient:
				dropped[dropSeriesLimit]++
				continue
			case s.names[k.name] == 0 && len(s.names) >= s.maxNames:
				dropped[dropNameLimit]++
				continue
			}
			ser = &telemetrySeries{}
			c.series[k] = ser
			s.names[k.name]++
			s.nseries++
		}
		ser.update(p)
	}
}

// update sets the series to the point, or adds a delta point to it.
func (ser *telemetrySeries) update(p *telemetryPoint) {
	sameKind := ser.kind == p.kind
	ser.kind = p.kind
	switch p.kind {
	case kindGauge, kindUpDown, kindCounter:
		if p.delta && sameKind {
			ser.value += p.value
		} else {
			ser.value = p.value
		}
	case kindHistogram:
		if p.delta && sameKind && equalBounds(ser.bounds, p.bounds) {
			ser.count += p.count
			ser.sum += p.sum
			for i := range ser.counts {
				ser.counts[i] += p.counts[i]
			}
			return
		}
		ser.count, ser.sum, ser.bounds, ser.counts = p.count, p.sum, p.bounds, p.counts
	case kindSummary:
		ser.count, ser.sum, ser.quantiles = p.count, p.sum, p.quantiles
	}
}

func equalBounds(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// newClientIDLocked returns a random (version 4) UUID no client has.
func (s *telemetryStore) newClientIDLocked() [16]byte {
	for {
		var id [16]byte
		_, _ = rand.Read(id[:])
		id[6] = id[6]&0x0f | 0x40
		id[8] = id[8]&0x3f | 0x80
		if _, taken := s.clients[id]; !taken && id != zeroUUID {
			return id
		}
	}
}

// uuidString formats id as 8-4-4-4-12 hex digits.
func uuidString(id [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return string(b[:])
}

// resultLabel is the result label of a request's error code: "ok", or the
// Kafka error's name in lower case.
func resultLabel(code int16) string {
	if code == 0 {
		return "ok"
	}
	if err := kerr.ErrorForCode(code); err != nil {
		var ke *kerr.Error
		if errors.As(err, &ke) {
			return strings.ToLower(ke.Message)
		}
	}
	return "unknown"
}

// handleGetTelemetrySubscriptions and handlePushTelemetry serve KIP-714 for
// a connection: the client's identity is its connection's (software name
// and version from ApiVersions, client id from the request header).
func (b *Broker) handleGetTelemetrySubscriptions(c *conn, req *request, r *kmsg.GetTelemetrySubscriptionsRequest) kmsg.Response {
	return b.telemetry.getSubscriptions(r, clientIdent{c.clientSoftware, c.clientSoftwareVersion, req.clientID})
}

func (b *Broker) handlePushTelemetry(c *conn, req *request, r *kmsg.PushTelemetryRequest) kmsg.Response {
	return b.telemetry.push(r, clientIdent{c.clientSoftware, c.clientSoftwareVersion, req.clientID})
}

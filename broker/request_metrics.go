package broker

import (
	"io"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/vigilhq/vigil/internal/catalogue"
)

// Request metrics: every request's latency as the client saw it, from the
// moment the broker had its first bytes to the moment the response was
// written, decomposed into stages the way Kafka's request metrics are
// (docs/metrics.md, "Request latency"):
//
//	queue    the request had arrived while the connection was still busy
//	         with earlier ones (pipelined requests wait their turn)
//	receive  reading the rest of the request once the connection was free
//	local    decoding, handling and encoding, minus remote
//	remote   waiting on others: an acks=all produce for the in-sync
//	         replicas, a fetch for data to arrive (long poll)
//	send     writing the response to the socket
//
// total is their sum. Kafka's response-queue stage does not exist here (the
// goroutine that handles a request writes its response) and neither does
// throttle (the broker has no quotas yet).
//
// Per client identity (client software name and version from ApiVersions,
// and client id), each bounded to the most active values (boundedLabels):
// total latency, errors and bytes. Per topic, bounded the same way: bytes
// and records produced and fetched by consumers.

var (
	mRequestDuration = catalogue.Declare("broker", "vigil_request_duration_seconds", catalogue.Histogram,
		"Request latency as the client saw it, by API and version: from the broker reading the request's first bytes to the end of writing its response (the sum of the stages of vigil_request_stage_seconds).", "api", "version")
	mRequestStage = catalogue.Declare("broker", "vigil_request_stage_seconds", catalogue.Histogram,
		"Request latency by stage: queue (arrived while the connection was busy with earlier requests), receive, local (decode, handle, encode), remote (acks=all replication, fetch long poll), send.", "api", "version", "stage")
	mRequestSize = catalogue.Declare("broker", "vigil_request_size_bytes", catalogue.Histogram,
		"Size of requests, framing included, by API.", "api")
	mResponseSize = catalogue.Declare("broker", "vigil_request_response_size_bytes", catalogue.Histogram,
		"Size of responses, framing included, by API.", "api")
	mRequestErrors = catalogue.Declare("broker", "vigil_request_errors_total", catalogue.Counter,
		"Responses that carry a Kafka error code, top-level or for any partition, by API and error name (a response with two different errors counts once for each).", "api", "error")
	mConnActive = catalogue.Declare("broker", "vigil_connection_active_connections", catalogue.Gauge,
		"Open client connections, by listener.", "listener")
	mConnCreated = catalogue.Declare("broker", "vigil_connection_created_total", catalogue.Counter,
		"Client connections accepted, by listener.", "listener")
	mConnClosed = catalogue.Declare("broker", "vigil_connection_closed_total", catalogue.Counter,
		"Client connections closed, by listener.", "listener")
	mClientDuration = catalogue.Declare("broker", "vigil_client_request_duration_seconds", catalogue.Histogram,
		"Request latency as each client saw it (as vigil_request_duration_seconds), by API and client identity: the --metrics-max-clients most active identities, the rest as other.", clientLabels("api")...)
	mClientErrors = catalogue.Declare("broker", "vigil_client_request_errors_total", catalogue.Counter,
		"Responses carrying any Kafka error code, by API and client identity (bounded as vigil_client_request_duration_seconds).", clientLabels("api")...)
	mClientReceived = catalogue.Declare("broker", "vigil_client_received_bytes_total", catalogue.Counter,
		"Bytes of requests received from each client identity (bounded as vigil_client_request_duration_seconds).", clientLabels()...)
	mClientSent = catalogue.Declare("broker", "vigil_client_sent_bytes_total", catalogue.Counter,
		"Bytes of responses sent to each client identity (bounded as vigil_client_request_duration_seconds).", clientLabels()...)
	mTopicProducedBytes = catalogue.Declare("broker", "vigil_topic_produced_bytes_total", catalogue.Counter,
		"Record batch bytes appended by produce requests, by topic: the --metrics-max-topics most active topics, the rest as other.", "topic")
	mTopicProducedRecords = catalogue.Declare("broker", "vigil_topic_produced_records_total", catalogue.Counter,
		"Records appended by produce requests (retried duplicates excluded), by topic (bounded as vigil_topic_produced_bytes_total).", "topic")
	mTopicFetchedBytes = catalogue.Declare("broker", "vigil_topic_fetched_bytes_total", catalogue.Counter,
		"Record batch bytes returned to consumers' fetches (not followers'), by topic (bounded as vigil_topic_produced_bytes_total).", "topic")
	mTopicFetchedRecords = catalogue.Declare("broker", "vigil_topic_fetched_records_total", catalogue.Counter,
		"Records in the batches returned to consumers' fetches, by topic (bounded as vigil_topic_produced_bytes_total).", "topic")
)

// clientLabels are the labels of a client identity, after the given ones.
func clientLabels(first ...string) []string {
	return append(first, "client_software", "client_software_version", "client_id")
}

// listenerName labels the connection metrics: the one listener speaks
// plaintext, which Kafka calls PLAINTEXT by default.
const listenerName = "PLAINTEXT"

// requestBuckets span 100 µs to 30 s: a metadata request takes well under
// a millisecond, a long-poll fetch its max wait (500 ms by default), a
// slow acks=all produce seconds.
var requestBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// sizeBuckets span 64 B to 64 MiB by powers of 4.
var sizeBuckets = prometheus.ExponentialBuckets(64, 4, 11)

// Request stages, in order.
const (
	stageQueue = iota
	stageReceive
	stageLocal
	stageRemote
	stageSend
	numStages
)

var stageNames = [numStages]string{"queue", "receive", "local", "remote", "send"}

// Bounds of the per-API table; kmsg knows fewer keys and versions.
const (
	maxAPIKey     = 128
	maxAPIVersion = 32
)

// requestMetrics are one broker's request, connection, client and topic
// metrics.
type requestMetrics struct {
	duration, stage, reqSize, respSize *prometheus.HistogramVec
	errors                             *prometheus.CounterVec
	errCounters                        sync.Map // uint32(key)<<16|uint16(code) -> prometheus.Counter

	series [maxAPIKey][maxAPIVersion]atomic.Pointer[apiSeries]

	connActive                 prometheus.Gauge
	connCreated, connClosed    prometheus.Counter
	clients                    *boundedLabels
	clientDuration             *prometheus.HistogramVec
	clientErrors               *prometheus.CounterVec
	clientReceived, clientSent *prometheus.CounterVec

	topics                         *boundedLabels
	producedBytes, producedRecords *prometheus.CounterVec
	fetchedBytes, fetchedRecords   *prometheus.CounterVec
}

// apiSeries are the request metrics of one API version.
type apiSeries struct {
	api               string
	duration          prometheus.Observer
	stages            [numStages]prometheus.Observer
	reqSize, respSize prometheus.Observer
}

// labelsIdleWindows is how many ranking windows (minutes) a client or
// topic may be silent before its series go.
const labelsIdleWindows = 10

func newRequestMetrics(reg prometheus.Registerer, maxClients, maxTopics int, native bool) *requestMetrics {
	latency := catalogue.Buckets{Classic: requestBuckets, Native: native}
	size := catalogue.Buckets{Classic: sizeBuckets, Native: native}
	m := &requestMetrics{
		duration:        mRequestDuration.HistogramVec(latency),
		stage:           mRequestStage.HistogramVec(latency),
		reqSize:         mRequestSize.HistogramVec(size),
		respSize:        mResponseSize.HistogramVec(size),
		errors:          mRequestErrors.CounterVec(),
		clientDuration:  mClientDuration.HistogramVec(latency),
		clientErrors:    mClientErrors.CounterVec(),
		clientReceived:  mClientReceived.CounterVec(),
		clientSent:      mClientSent.CounterVec(),
		producedBytes:   mTopicProducedBytes.CounterVec(),
		producedRecords: mTopicProducedRecords.CounterVec(),
		fetchedBytes:    mTopicFetchedBytes.CounterVec(),
		fetchedRecords:  mTopicFetchedRecords.CounterVec(),
	}
	conns := prometheus.Labels{"listener": listenerName}
	created := mConnCreated.CounterVec()
	closed := mConnClosed.CounterVec()
	m.connCreated, m.connClosed = created.With(conns), closed.With(conns)
	gauges := mConnActive.GaugeVec()
	m.connActive = gauges.With(conns)

	m.clients = newBoundedLabels(maxClients, labelsIdleWindows, func(key string) {
		sw, ver, id := splitClientKey(key)
		match := prometheus.Labels{"client_software": sw, "client_software_version": ver, "client_id": id}
		m.clientDuration.DeletePartialMatch(match)
		m.clientErrors.DeletePartialMatch(match)
		m.clientReceived.DeletePartialMatch(match)
		m.clientSent.DeletePartialMatch(match)
	})
	m.topics = newBoundedLabels(maxTopics, labelsIdleWindows, func(topic string) {
		for _, v := range []*prometheus.CounterVec{m.producedBytes, m.producedRecords, m.fetchedBytes, m.fetchedRecords} {
			v.DeleteLabelValues(topic)
		}
	})
	reg.MustRegister(m.duration, m.stage, m.reqSize, m.respSize, m.errors, gauges, created, closed,
		m.clientDuration, m.clientErrors, m.clientReceived, m.clientSent,
		m.producedBytes, m.producedRecords, m.fetchedBytes, m.fetchedRecords)
	return m
}

// rankLabels ends a ranking window of the bounded labels.
func (m *requestMetrics) rankLabels() {
	m.clients.rank()
	m.topics.rank()
}

// api returns the series of one API version (nil outside the table, which
// only an unsupported request can be, and those are not measured).
func (m *requestMetrics) api(key, version int16) *apiSeries {
	if key < 0 || key >= maxAPIKey || version < 0 || version >= maxAPIVersion {
		return nil
	}
	slot := &m.series[key][version]
	if s := slot.Load(); s != nil {
		return s
	}
	name, ver := kmsg.NameForKey(key), strconv.Itoa(int(version))
	s := &apiSeries{
		api:      name,
		duration: m.duration.WithLabelValues(name, ver),
		reqSize:  m.reqSize.WithLabelValues(name),
		respSize: m.respSize.WithLabelValues(name),
	}
	for i := range s.stages {
		s.stages[i] = m.stage.WithLabelValues(name, ver, stageNames[i])
	}
	slot.CompareAndSwap(nil, s)
	return slot.Load()
}

// errorCounter returns the counter of one API's responses with code.
func (m *requestMetrics) errorCounter(key, code int16) prometheus.Counter {
	k := uint32(uint16(key))<<16 | uint32(uint16(code))
	if c, ok := m.errCounters.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c := m.errors.WithLabelValues(kmsg.NameForKey(key), errorName(code))
	m.errCounters.Store(k, c)
	return c
}

// errorName is the name of a Kafka error code as Kafka spells it today.
func errorName(code int16) string {
	if code == kerr.NotLeaderForPartition.Code {
		return "NOT_LEADER_OR_FOLLOWER" // renamed in Kafka 2.6
	}
	if err := kerr.ErrorForCode(code); err != nil {
		if ke, ok := err.(*kerr.Error); ok {
			return ke.Message
		}
	}
	return "UNKNOWN_" + strconv.Itoa(int(code))
}

// clientKey joins a client identity into one bounded-label value.
func clientKey(software, version, id string) string {
	return software + "\x00" + version + "\x00" + id
}

func splitClientKey(key string) (software, version, id string) {
	if key == otherLabel {
		return otherLabel, otherLabel, otherLabel
	}
	var parts [3]string
	n := 0
	start := 0
	for i := 0; i < len(key) && n < 2; i++ {
		if key[i] == 0 {
			parts[n] = key[start:i]
			n++
			start = i + 1
		}
	}
	parts[n] = key[start:]
	return parts[0], parts[1], parts[2]
}

// clientSeries are the metrics of one connection's client identity,
// resolved once and kept while the identity and its label hold.
type clientSeries struct {
	software, version, id string
	bound                 boundLabel
	received, sent        prometheus.Counter
	perAPI                map[int16]*clientAPISeries
}

type clientAPISeries struct {
	duration prometheus.Observer
	errors   prometheus.Counter
}

// client returns the series of a connection's client identity, resolving
// them again when the identity changed or its label was re-ranked.
func (m *requestMetrics) client(cur *clientSeries, software, version, id string) *clientSeries {
	if cur != nil && cur.software == software && cur.version == version && cur.id == id && m.clients.valid(&cur.bound) {
		return cur
	}
	for {
		bound := m.clients.resolve(clientKey(software, version, id))
		sw, ver, cid := splitClientKey(bound.label)
		cs := &clientSeries{
			software: software, version: version, id: id, bound: bound,
			received: m.clientReceived.WithLabelValues(sw, ver, cid),
			sent:     m.clientSent.WithLabelValues(sw, ver, cid),
			perAPI:   map[int16]*clientAPISeries{},
		}
		// An eviction deletes series after it bumps the generation: if the
		// generation is unchanged now, the series above are not orphans.
		if m.clients.valid(&cs.bound) {
			return cs
		}
	}
}

// api returns the client's series for one API.
func (m *requestMetrics) clientAPI(cs *clientSeries, key int16, api string) *clientAPISeries {
	if s := cs.perAPI[key]; s != nil {
		return s
	}
	sw, ver, cid := splitClientKey(cs.bound.label)
	s := &clientAPISeries{
		duration: m.clientDuration.WithLabelValues(api, sw, ver, cid),
		errors:   m.clientErrors.WithLabelValues(api, sw, ver, cid),
	}
	cs.perAPI[key] = s
	return s
}

// topicSeries are the metrics of one topic, cached on its partitions.
type topicSeries struct {
	bound                                                        boundLabel
	producedBytes, producedRecords, fetchedBytes, fetchedRecords prometheus.Counter
}

// topic returns the series for partition p's topic.
func (m *requestMetrics) topic(p *partition) *topicSeries {
	if ts := p.metrics.Load(); ts != nil && m.topics.valid(&ts.bound) {
		return ts
	}
	for {
		bound := m.topics.resolve(p.topic)
		ts := &topicSeries{
			bound:           bound,
			producedBytes:   m.producedBytes.WithLabelValues(bound.label),
			producedRecords: m.producedRecords.WithLabelValues(bound.label),
			fetchedBytes:    m.fetchedBytes.WithLabelValues(bound.label),
			fetchedRecords:  m.fetchedRecords.WithLabelValues(bound.label),
		}
		if m.topics.valid(&ts.bound) {
			p.metrics.Store(ts)
			return ts
		}
	}
}

// produced counts an append to p.
func (m *requestMetrics) produced(p *partition, bytes int, records int64) {
	ts := m.topic(p)
	ts.bound.slot.count.Add(uint64(bytes))
	ts.producedBytes.Add(float64(bytes))
	ts.producedRecords.Add(float64(records))
}

// fetched counts record batches returned to a consumer from p.
func (m *requestMetrics) fetched(p *partition, batches []byte) {
	if len(batches) == 0 {
		return
	}
	ts := m.topic(p)
	ts.bound.slot.count.Add(uint64(len(batches)))
	ts.fetchedBytes.Add(float64(len(batches)))
	ts.fetchedRecords.Add(float64(countRecords(batches)))
}

// countRecords counts the records of the v2 batches in b, from their
// headers (a partial batch at the end, which a fetch may return, has its
// header and counts).
func countRecords(b []byte) int64 {
	var n int64
	for len(b) >= 61 {
		length := int(int32(uint32(b[8])<<24 | uint32(b[9])<<16 | uint32(b[10])<<8 | uint32(b[11])))
		if b[16] == 2 {
			n += int64(int32(uint32(b[57])<<24 | uint32(b[58])<<16 | uint32(b[59])<<8 | uint32(b[60])))
		}
		if length <= 0 || 12+length > len(b) {
			break
		}
		b = b[12+length:]
	}
	return n
}

// requestTiming is what a connection measures of each request.
type requestTiming struct {
	arrived  time.Time     // the broker read the request's first bytes
	busyTill time.Time     // the connection finished its previous request
	read     time.Time     // the whole request was read
	remote   time.Duration // waiting on others while handling
}

// observe records a handled request: handled is when its response was
// encoded (or the request handled, if no response is due), written when
// the response was written (zero if none).
func (c *conn) observe(x *exchange, handled, written time.Time, respBytes int) {
	m := c.b.reqMetrics
	req, reqBytes, codes := &x.req, x.reqBytes, x.codes
	s := m.api(req.key, req.version)
	if s == nil {
		return
	}
	t := &x.timing
	start := t.arrived
	var queue time.Duration
	if t.busyTill.After(start) {
		queue = t.busyTill.Sub(start)
		start = t.busyTill
	}
	end := handled
	s.stages[stageQueue].Observe(queue.Seconds())
	s.stages[stageReceive].Observe(t.read.Sub(start).Seconds())
	s.stages[stageLocal].Observe(max(handled.Sub(t.read)-t.remote, 0).Seconds())
	s.stages[stageRemote].Observe(t.remote.Seconds())
	if !written.IsZero() {
		s.stages[stageSend].Observe(written.Sub(handled).Seconds())
		s.respSize.Observe(float64(respBytes))
		end = written
	}
	total := end.Sub(t.arrived).Seconds()
	s.duration.Observe(total)
	s.reqSize.Observe(float64(reqBytes))

	cs := m.client(c.client, x.software, x.softwareVersion, req.clientID)
	c.client = cs
	cs.bound.slot.count.Add(1)
	ca := m.clientAPI(cs, req.key, s.api)
	ca.duration.Observe(total)
	cs.received.Add(float64(reqBytes))
	if respBytes > 0 {
		cs.sent.Add(float64(respBytes))
	}
	for _, code := range codes {
		m.errorCounter(req.key, code).Inc()
	}
	if len(codes) > 0 {
		ca.errors.Inc()
	}
}

// timedReader notes when reads return data: the arrival of requests.
type timedReader struct {
	r           io.Reader
	first, last time.Time // of the reads since first was reset, and of any
}

func (t *timedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.last = time.Now()
		if t.first.IsZero() {
			t.first = t.last
		}
	}
	return n, err
}

// responseErrors appends the distinct non-zero error codes of resp to
// codes: hand-walked for the hot APIs, by reflection (with a plan cached
// per type) for the rest.
func responseErrors(resp kmsg.Response, codes []int16) []int16 {
	add := func(code int16) {
		if code == 0 {
			return
		}
		for _, c := range codes {
			if c == code {
				return
			}
		}
		codes = append(codes, code)
	}
	switch r := resp.(type) {
	case *kmsg.ProduceResponse:
		for i := range r.Topics {
			for j := range r.Topics[i].Partitions {
				add(r.Topics[i].Partitions[j].ErrorCode)
			}
		}
	case *kmsg.FetchResponse:
		add(r.ErrorCode)
		for i := range r.Topics {
			for j := range r.Topics[i].Partitions {
				add(r.Topics[i].Partitions[j].ErrorCode)
			}
		}
	default:
		walkErrorCodes(reflect.ValueOf(resp), add)
	}
	return codes
}

// errorPlan lists, for a struct type, the fields holding an error code and
// the fields that may contain some.
type errorPlan struct {
	codes  []int
	nested []int
}

var errorPlans sync.Map // reflect.Type -> *errorPlan

func planFor(t reflect.Type) *errorPlan {
	if p, ok := errorPlans.Load(t); ok {
		return p.(*errorPlan)
	}
	p := &errorPlan{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		switch {
		case f.Name == "ErrorCode" && f.Type.Kind() == reflect.Int16:
			p.codes = append(p.codes, i)
		case mayHoldErrors(f.Type):
			p.nested = append(p.nested, i)
		}
	}
	actual, _ := errorPlans.LoadOrStore(t, p)
	return actual.(*errorPlan)
}

func mayHoldErrors(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}

func walkErrorCodes(v reflect.Value, add func(int16)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkErrorCodes(v.Elem(), add)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			walkErrorCodes(v.Index(i), add)
		}
	case reflect.Struct:
		p := planFor(v.Type())
		for _, i := range p.codes {
			add(int16(v.Field(i).Int()))
		}
		for _, i := range p.nested {
			walkErrorCodes(v.Field(i), add)
		}
	}
}

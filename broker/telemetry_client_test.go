package broker

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	vlog "github.com/vigilhq/vigil/broker/log"
)

// Integration tests of KIP-714 client telemetry with real franz-go
// clients, which push their metrics by default.

// pushedSeries is one series of the vigil_client_metric_* families.
type pushedSeries struct {
	family string
	labels map[string]string
	value  float64 // gauge or counter value; histogram and summary count
}

// gatherClientSeries returns the series of the client metric families of
// b's registry that have every label of match.
func gatherClientSeries(t testing.TB, g prometheus.Gatherer, match map[string]string) []pushedSeries {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	var out []pushedSeries
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "vigil_client_metric_") {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			s := pushedSeries{family: mf.GetName(), labels: map[string]string{}}
			for _, lp := range m.GetLabel() {
				s.labels[lp.GetName()] = lp.GetValue()
			}
			for k, v := range match {
				if s.labels[k] != v {
					continue next
				}
			}
			switch mf.GetType() {
			case dto.MetricType_GAUGE:
				s.value = m.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				s.value = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				s.value = float64(m.GetHistogram().GetSampleCount())
			case dto.MetricType_SUMMARY:
				s.value = float64(m.GetSummary().GetSampleCount())
			}
			out = append(out, s)
		}
	}
	return out
}

// findSeries returns the first series of family with the given name label.
func findSeries(ss []pushedSeries, family, name string) *pushedSeries {
	for i := range ss {
		if ss[i].family == family && ss[i].labels["name"] == name {
			return &ss[i]
		}
	}
	return nil
}

// gatherValue returns the value of the vigil_ metric name with the given
// labels (0 when absent).
func gatherValue(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if l[k] != v {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// slowDiskFS delays every write to files whose path contains slow, so
// that produce requests take milliseconds and the producer's request
// latency (which franz-go measures in whole milliseconds) is not zero.
type slowDiskFS struct {
	vlog.FS
	slow  string
	delay time.Duration
}

func (f *slowDiskFS) OpenFile(name string, flag int, perm uint32) (vlog.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.Contains(name, f.slow) {
		return file, err
	}
	return &slowFile{File: file, delay: f.delay}, nil
}

type slowFile struct {
	vlog.File
	delay time.Duration
}

func (f *slowFile) Write(p []byte) (int, error) {
	time.Sleep(f.delay) // the fault injected, not a wait for a condition
	return f.File.Write(p)
}

// background runs fn every few milliseconds until the test ends.
func background(t *testing.T, fn func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			fn(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestTelemetryFromFranzGoClients runs a franz-go producer and consumer
// against a broker with a 1s push interval: their KIP-714 metrics appear
// on the broker's /metrics with the client's labels, and go away when the
// producer closes (its terminating push).
func TestTelemetryFromFranzGoClients(t *testing.T) {
	var (
		mu       sync.Mutex
		payloads int
		decodeOK = true
	)
	b := startBroker(t, "", func(c *Config) {
		c.TelemetryPushInterval = time.Second
		c.FS = &slowDiskFS{FS: vlog.OSFS(), slow: "slow-", delay: 3 * time.Millisecond}
	})
	// Every payload franz-go pushes decodes, with no point dropped as
	// invalid.
	b.telemetry.setObserver(func(r *kmsg.PushTelemetryRequest) {
		if len(r.Metrics) == 0 {
			return
		}
		_, dropped, err := decodeTelemetry(r.CompressionType, r.Metrics, 1<<20, []string{""})
		mu.Lock()
		defer mu.Unlock()
		payloads++
		if err != nil || dropped[dropInvalid] > 0 {
			decodeOK = false
			t.Errorf("franz-go push (codec %d, %d bytes): %v, dropped %v", r.CompressionType, len(r.Metrics), err, dropped)
		}
	})
	t.Cleanup(func() { b.telemetry.setObserver(nil) }) // after the clients' terminating pushes
	createTopic(t, newAdmin(t, b), "slow-telemetry", 1, nil)

	producer := newClient(t, b, kgo.ClientID("tele-producer"), kgo.DefaultProduceTopic("slow-telemetry"))
	produceCtx, stopProducing := context.WithCancel(context.Background())
	var producing sync.WaitGroup
	producing.Add(1)
	go func() {
		defer producing.Done()
		for produceCtx.Err() == nil {
			if err := producer.ProduceSync(produceCtx, kgo.StringRecord("x")).FirstErr(); err != nil && produceCtx.Err() == nil {
				t.Errorf("produce: %v", err)
				return
			}
		}
	}()
	defer func() { stopProducing(); producing.Wait() }()

	// The consumer's fetches wait up to 50ms for records that do not
	// come often, so its fetch latency is not zero either.
	consumer := newClient(t, b, kgo.ClientID("tele-consumer"), kgo.ConsumeTopics("slow-telemetry"),
		kgo.FetchMaxWait(50*time.Millisecond), kgo.FetchMinBytes(1<<20))
	background(t, func(ctx context.Context) {
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		consumer.PollFetches(pctx)
	})

	want := []struct{ client, family, name, node string }{
		{"tele-producer", "vigil_client_metric_total", "org_apache_kafka_producer_connection_creation_total", ""},
		{"tele-producer", "vigil_client_metric_gauge", "org_apache_kafka_producer_node_request_latency_avg", "0"},
		{"tele-producer", "vigil_client_metric_gauge", "org_apache_kafka_producer_node_request_latency_max", "0"},
		{"tele-consumer", "vigil_client_metric_total", "org_apache_kafka_consumer_connection_creation_total", ""},
		{"tele-consumer", "vigil_client_metric_gauge", "org_apache_kafka_consumer_node_request_latency_avg", "0"},
	}
	seen := make([]bool, len(want))
	instances := map[string]string{}
	waitFor(t, "franz-go client metrics on the broker", 60*time.Second, func() bool {
		all := true
		for i, w := range want {
			if seen[i] {
				continue
			}
			ss := gatherClientSeries(t, b.registry, map[string]string{"client_id": w.client, "name": w.name})
			s := findSeries(ss, w.family, w.name)
			if s == nil || s.value <= 0 {
				all = false
				continue
			}
			seen[i] = true
			l := s.labels
			if l["broker"] != "0" || l["client_software"] != "kgo" || l["client_software_version"] == "" ||
				l["node_id"] != w.node || len(l["client_instance"]) != 36 {
				t.Errorf("%s of %s: labels %v", w.name, w.client, l)
			}
			if prev, ok := instances[w.client]; ok && prev != l["client_instance"] {
				t.Errorf("%s has two client instances: %s and %s", w.client, prev, l["client_instance"])
			}
			instances[w.client] = l["client_instance"]
		}
		return all
	})
	if instances["tele-producer"] == instances["tele-consumer"] {
		t.Errorf("producer and consumer share client instance %s", instances["tele-producer"])
	}
	if n := gatherValue(t, b.registry, "vigil_client_telemetry_pushes_total", map[string]string{"result": "ok"}); n < 2 {
		t.Errorf("pushes ok: %v, want at least 2", n)
	}
	if n := gatherValue(t, b.registry, "vigil_client_telemetry_received_bytes_total", nil); n <= 0 {
		t.Errorf("received bytes: %v", n)
	}
	if n := gatherValue(t, b.registry, "vigil_client_telemetry_clients", map[string]string{"state": "exposed"}); n < 2 {
		t.Errorf("exposed clients: %v, want at least 2", n)
	}

	// Closing the producer sends its terminating push: its series go.
	stopProducing()
	producing.Wait()
	producer.Close()
	waitFor(t, "the closed producer's series to go", 30*time.Second, func() bool {
		return len(gatherClientSeries(t, b.registry, map[string]string{"client_id": "tele-producer"})) == 0
	})
	if len(gatherClientSeries(t, b.registry, map[string]string{"client_id": "tele-consumer"})) == 0 {
		t.Error("the consumer's series went with the producer's")
	}
	mu.Lock()
	defer mu.Unlock()
	if payloads == 0 || !decodeOK {
		t.Errorf("%d payloads observed, all decoded: %v", payloads, decodeOK)
	}
}

// cuttableDialer dials normally until cut, then fails every dial and
// closes the connections it made: the client is cut off from the broker.
type cuttableDialer struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (d *cuttableDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut {
		return nil, errors.New("cut off")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *cuttableDialer) cutOff() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cut = true
	for _, c := range d.conns {
		c.Close()
	}
}

// TestTelemetryClientExpires cuts a pushing franz-go consumer off from the
// broker, so that its terminating push never arrives: its series expire
// after 3 push intervals.
func TestTelemetryClientExpires(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.TelemetryPushInterval = time.Second })
	createTopic(t, newAdmin(t, b), "expiring", 1, nil)
	d := &cuttableDialer{}
	cl := newClient(t, b, kgo.ClientID("tele-expiring"), kgo.ConsumeTopics("expiring"), kgo.Dialer(d.dial),
		kgo.FetchMaxWait(50*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	var polling sync.WaitGroup
	polling.Add(1)
	go func() {
		defer polling.Done()
		for ctx.Err() == nil {
			pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
			cl.PollFetches(pctx)
			pcancel()
		}
	}()
	waitFor(t, "the consumer's series", 60*time.Second, func() bool {
		return len(gatherClientSeries(t, b.registry, map[string]string{"client_id": "tele-expiring"})) > 0
	})
	cancel()
	polling.Wait()
	d.cutOff()
	cl.Close() // its terminating push cannot get through
	waitFor(t, "the cut-off consumer's series to expire", 60*time.Second, func() bool {
		return len(gatherClientSeries(t, b.registry, map[string]string{"client_id": "tele-expiring"})) == 0
	})
	if n := gatherValue(t, b.registry, "vigil_client_telemetry_clients", map[string]string{"state": "exposed"}); n != 0 {
		t.Errorf("exposed clients after expiry: %v", n)
	}
}

// TestTelemetrySubscriptionChangeWithFranzGo changes the subscription under
// a pushing franz-go client that produces and consumes: its next push gets
// UNKNOWN_SUBSCRIPTION_ID, it asks again, and from then on pushes only the
// consumer metrics the new subscription asks for.
func TestTelemetrySubscriptionChangeWithFranzGo(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.TelemetryPushInterval = time.Second })
	createTopic(t, newAdmin(t, b), "resubscribe", 1, nil)
	cl := newClient(t, b, kgo.ClientID("tele-both"), kgo.DefaultProduceTopic("resubscribe"), kgo.ConsumeTopics("resubscribe"),
		kgo.FetchMaxWait(50*time.Millisecond), kgo.FetchMinBytes(1<<20))
	background(t, func(ctx context.Context) {
		cl.ProduceSync(ctx, kgo.StringRecord("x"))
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		cl.PollFetches(pctx)
	})
	has := func(prefix string) bool {
		for _, s := range gatherClientSeries(t, b.registry, map[string]string{"client_id": "tele-both"}) {
			if strings.HasPrefix(s.labels["name"], prefix) {
				return true
			}
		}
		return false
	}
	waitFor(t, "producer and consumer metrics", 60*time.Second, func() bool {
		return has("org_apache_kafka_producer_") && has("org_apache_kafka_consumer_")
	})

	sub := b.cfg.TelemetryConfig
	sub.TelemetryMetrics = []string{"org.apache.kafka.consumer."}
	b.telemetry.setSubscription(sub.subscription())
	waitFor(t, "the client to push under the new subscription", 60*time.Second, func() bool {
		return has("org_apache_kafka_consumer_")
	})
	if has("org_apache_kafka_producer_") {
		t.Error("producer metrics exposed under a consumer-only subscription")
	}
	if n := gatherValue(t, b.registry, "vigil_client_telemetry_pushes_total", map[string]string{"result": "unknown_subscription_id"}); n < 1 {
		t.Errorf("pushes answered UNKNOWN_SUBSCRIPTION_ID: %v, want at least 1", n)
	}
	if n := gatherValue(t, b.registry, "vigil_client_telemetry_dropped_total", map[string]string{"reason": dropNotSubscribed}); n != 0 {
		t.Errorf("%v points dropped as not subscribed: franz-go filters by the subscription itself", n)
	}
}

// pushEveryKind subscribes a client to b over the Kafka protocol and
// pushes one metric of each kind (gauge, sum, histogram, summary), so that
// every vigil_client_metric_* family has a series. It returns the client
// instance id.
func pushEveryKind(t testing.TB, b *Broker) [16]byte {
	t.Helper()
	cl := newClient(t, b, kgo.ClientID("every-kind"))
	ctx := testCtx(t)
	get := kmsg.NewPtrGetTelemetrySubscriptionsRequest()
	sub, err := get.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(sub.ErrorCode)
	}
	if err != nil {
		t.Fatalf("GetTelemetrySubscriptions: %v", err)
	}
	hist := &metricspb.Metric{Name: "org.apache.kafka.test.histogram", Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{
		AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
		DataPoints:             []*metricspb.HistogramDataPoint{{Count: 2, Sum: proto.Float64(3), ExplicitBounds: []float64{1}, BucketCounts: []uint64{1, 1}}},
	}}}
	summary := &metricspb.Metric{Name: "org.apache.kafka.test.summary", Data: &metricspb.Metric_Summary{Summary: &metricspb.Summary{
		DataPoints: []*metricspb.SummaryDataPoint{{Count: 2, Sum: 3, QuantileValues: []*metricspb.SummaryDataPoint_ValueAtQuantile{{Quantile: 0.5, Value: 1}}}},
	}}}
	codec, payload := compressTelemetry(otlpPayload(
		gaugeMetric("org.apache.kafka.test.gauge", 1, "node_id", "0"),
		sumMetric("org.apache.kafka.test.total", 1, true, false),
		hist, summary), kgo.Lz4Compression())
	push := kmsg.NewPtrPushTelemetryRequest()
	push.ClientInstanceID, push.SubscriptionID, push.CompressionType, push.Metrics = sub.ClientInstanceID, sub.SubscriptionID, codec, payload
	resp, err := push.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("PushTelemetry: %v", err)
	}
	return sub.ClientInstanceID
}

// TestTelemetryOverTheWire pushes every kind of metric through the Kafka
// protocol and finds each on the broker's HTTP /metrics, labelled with the
// connection's client id and software.
func TestTelemetryOverTheWire(t *testing.T) {
	b := startBroker(t, "")
	id := pushEveryKind(t, b)
	rec := httptest.NewRecorder()
	b.HTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	labels := `client_id="every-kind",client_instance="` + uuidString(id) + `",client_software="kgo"`
	for _, want := range []string{
		`vigil_client_metric_gauge{attributes="",broker="0",` + labels,
		`name="org_apache_kafka_test_gauge",node_id="0"`,
		`vigil_client_metric_total{attributes="",broker="0",` + labels,
		`vigil_client_metric_histogram_bucket{attributes="",broker="0",` + labels,
		`vigil_client_metric_summary{attributes="",broker="0",` + labels,
		`vigil_client_telemetry_pushes_total{broker="0",result="ok"} 1`,
		`vigil_client_telemetry_series{broker="0"} 4`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

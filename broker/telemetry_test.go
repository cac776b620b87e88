package broker

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// Unit tests of the telemetry store: a fake clock, requests built by hand,
// payloads built with the OTLP protobuf types and compressed by franz-go's
// own compressors.

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// testTelemetry is a store on a fake clock, with a registry around it as
// the broker has (with its broker label).
type testTelemetry struct {
	*telemetryStore
	clock *fakeClock
	reg   *prometheus.Registry
}

func newTestTelemetry(t testing.TB, mutate ...func(*TelemetryConfig)) *testTelemetry {
	t.Helper()
	cfg := DefaultTelemetryConfig()
	cfg.TelemetryPushInterval = 10 * time.Second
	for _, m := range mutate {
		m(&cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s := newTelemetryStore(cfg, clock.now)
	reg := prometheus.NewRegistry()
	prometheus.WrapRegistererWith(prometheus.Labels{"broker": "0"}, reg).MustRegister(s)
	return &testTelemetry{s, clock, reg}
}

var testIdent = clientIdent{software: "kgo", version: "v1.22.3", clientID: "unit"}

// subscribe sends a GetTelemetrySubscriptions for id (zero: a new client)
// and fails the test on an error.
func (tt *testTelemetry) subscribe(t testing.TB, id [16]byte, who clientIdent) *kmsg.GetTelemetrySubscriptionsResponse {
	t.Helper()
	req := kmsg.NewPtrGetTelemetrySubscriptionsRequest()
	req.ClientInstanceID = id
	resp := tt.getSubscriptions(req, who)
	if resp.ErrorCode != 0 {
		t.Fatalf("GetTelemetrySubscriptions: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp
}

// pushRaw pushes payload as compressed with codec.
func (tt *testTelemetry) pushRaw(sub *kmsg.GetTelemetrySubscriptionsResponse, codec int8, payload []byte, terminating bool, who clientIdent) int16 {
	req := kmsg.NewPtrPushTelemetryRequest()
	req.ClientInstanceID = sub.ClientInstanceID
	req.SubscriptionID = sub.SubscriptionID
	req.CompressionType = codec
	req.Metrics = payload
	req.Terminating = terminating
	return tt.push(req, who).ErrorCode
}

// pushMetrics pushes metrics, zstd-compressed by franz-go's compressor.
func (tt *testTelemetry) pushMetrics(sub *kmsg.GetTelemetrySubscriptionsResponse, who clientIdent, ms ...*metricspb.Metric) int16 {
	out, codec := testZstd.Compress(new(bytes.Buffer), otlpPayload(ms...))
	return tt.pushRaw(sub, int8(codec), append([]byte(nil), out...), false, who)
}

var testZstd, _ = kgo.DefaultCompressor(kgo.ZstdCompression())

func compressTelemetry(raw []byte, codec kgo.CompressionCodec) (int8, []byte) {
	c, err := kgo.DefaultCompressor(codec)
	if err != nil || c == nil {
		return 0, raw
	}
	out, typ := c.Compress(new(bytes.Buffer), raw)
	return int8(typ), append([]byte(nil), out...)
}

// otlpPayload marshals metrics as one resource's MetricsData, as clients
// send it.
func otlpPayload(ms ...*metricspb.Metric) []byte {
	md := &metricspb.MetricsData{ResourceMetrics: []*metricspb.ResourceMetrics{{
		ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: ms}},
	}}}
	b, err := proto.Marshal(md)
	if err != nil {
		panic(err)
	}
	return b
}

func attrs(kv ...string) []*commonpb.KeyValue {
	var out []*commonpb.KeyValue
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &commonpb.KeyValue{Key: kv[i], Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: kv[i+1]}}})
	}
	return out
}

func gaugeMetric(name string, v float64, kv ...string) *metricspb.Metric {
	return &metricspb.Metric{Name: name, Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{
		DataPoints: []*metricspb.NumberDataPoint{{Attributes: attrs(kv...), TimeUnixNano: 1, Value: &metricspb.NumberDataPoint_AsDouble{AsDouble: v}}},
	}}}
}

func sumMetric(name string, v int64, monotonic, delta bool, kv ...string) *metricspb.Metric {
	temp := metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE
	if delta {
		temp = metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA
	}
	return &metricspb.Metric{Name: name, Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{
		AggregationTemporality: temp, IsMonotonic: monotonic,
		DataPoints: []*metricspb.NumberDataPoint{{Attributes: attrs(kv...), TimeUnixNano: 1, Value: &metricspb.NumberDataPoint_AsInt{AsInt: v}}},
	}}}
}

// series returns the exposed client series as "family name{label=value,...}"
// → value, with the empty labels and the client instance left out.
func (tt *testTelemetry) series(t testing.TB) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, s := range gatherClientSeries(t, tt.reg, nil) {
		var ls []string
		for _, k := range []string{"client_id", "client_software", "client_software_version", "node_id", "topic", "partition", "attributes"} {
			if v := s.labels[k]; v != "" {
				ls = append(ls, k+"="+v)
			}
		}
		out[s.family+" "+s.labels["name"]+"{"+strings.Join(ls, ",")+"}"] = s.value
	}
	return out
}

func (tt *testTelemetry) value(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	return gatherValue(t, tt.reg, name, labels)
}

func wantSeries(t *testing.T, got, want map[string]float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d series, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
		return
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v && !(math.IsNaN(g) && math.IsNaN(v)) {
			t.Errorf("series %s = %v (present %v), want %v\n got %v", k, g, ok, v, got)
		}
	}
}

// TestTelemetrySubscription: a client sending the zero id gets a new
// instance id and the broker's subscription; asking again with its id
// within a push interval is throttled, after one it gets the same
// subscription id. No prefixes at all asks for no metrics.
func TestTelemetrySubscription(t *testing.T) {
	tt := newTestTelemetry(t, func(c *TelemetryConfig) {
		c.TelemetryMetrics = []string{"org.apache.kafka.producer.", "org.apache.kafka.consumer."}
		c.TelemetryMaxBytes = 4096
	})
	resp := tt.subscribe(t, zeroUUID, testIdent)
	id := resp.ClientInstanceID
	if id == zeroUUID || id[6]>>4 != 4 || id[8]>>6 != 2 {
		t.Fatalf("client instance id %x is not a version 4 UUID", id)
	}
	if resp.PushIntervalMillis != 10_000 || resp.TelemetryMaxBytes != 4096 || resp.DeltaTemporality ||
		fmt.Sprint(resp.RequestedMetrics) != "[org.apache.kafka.producer. org.apache.kafka.consumer.]" ||
		fmt.Sprint(resp.AcceptedCompressionTypes) != "[4 3 1 2]" {
		t.Fatalf("subscription: %+v", resp)
	}
	req := kmsg.NewPtrGetTelemetrySubscriptionsRequest()
	req.ClientInstanceID = id
	if code := tt.getSubscriptions(req, testIdent).ErrorCode; code != kerr.ThrottlingQuotaExceeded.Code {
		t.Fatalf("a second Get at once: %v, want THROTTLING_QUOTA_EXCEEDED", kerr.ErrorForCode(code))
	}
	tt.clock.advance(10 * time.Second)
	again := tt.subscribe(t, id, testIdent)
	if again.ClientInstanceID != id || again.SubscriptionID != resp.SubscriptionID {
		t.Fatalf("second subscription: id %x sub %d, want %x %d", again.ClientInstanceID, again.SubscriptionID, id, resp.SubscriptionID)
	}
	// Another broker with the same settings gives the same subscription
	// id, so a client can move its pushes there.
	other := newTestTelemetry(t, func(c *TelemetryConfig) {
		c.TelemetryMetrics = []string{"org.apache.kafka.producer.", "org.apache.kafka.consumer."}
		c.TelemetryMaxBytes = 4096
	})
	if sub := other.subscribe(t, id, testIdent); sub.SubscriptionID != resp.SubscriptionID {
		t.Fatalf("another broker's subscription id %d, want %d", sub.SubscriptionID, resp.SubscriptionID)
	}
	if n := tt.value(t, "vigil_client_telemetry_subscription_requests_total", map[string]string{"result": "throttling_quota_exceeded"}); n != 1 {
		t.Errorf("throttled Gets counted: %v", n)
	}

	for _, c := range []struct {
		metrics []string
		want    string
	}{{nil, "[]"}, {[]string{}, "[]"}, {[]string{"*"}, "[]"}, {[]string{"a.", "*"}, "[]"}} {
		off := newTestTelemetry(t, func(cfg *TelemetryConfig) { cfg.TelemetryMetrics = c.metrics })
		got := off.subscribe(t, zeroUUID, testIdent).RequestedMetrics
		if len(c.metrics) > 0 {
			// '*' is every metric: one empty prefix.
			if len(got) != 1 || got[0] != "" {
				t.Errorf("metrics %q: requested %q, want [\"\"]", c.metrics, got)
			}
		} else if got == nil || len(got) != 0 {
			t.Errorf("metrics %q (telemetry off): requested %q, want an empty list", c.metrics, got)
		}
	}
}

// TestTelemetryPushErrors: every refused push gets Kafka's error for it,
// stores nothing and panics nowhere.
func TestTelemetryPushErrors(t *testing.T) {
	good := otlpPayload(gaugeMetric("org.apache.kafka.producer.x", 1))
	huge := otlpPayload(gaugeMetric("org.apache.kafka.producer."+strings.Repeat("y", 10000), 1))
	zstdHuge, zstdCodec := compressTelemetryCodec(huge, kgo.ZstdCompression())
	garbage := []byte("\x05garbage, not compressed")
	for _, c := range []struct {
		name string
		// edit changes a good push from a subscribed client.
		edit func(tt *testTelemetry, req *kmsg.PushTelemetryRequest)
		want *kerr.Error
	}{
		{"zero instance id", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) { r.ClientInstanceID = zeroUUID }, kerr.InvalidRequest},
		{"unknown subscription", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) { r.SubscriptionID++ }, kerr.UnknownSubscriptionID},
		{"subscription changed", func(tt *testTelemetry, r *kmsg.PushTelemetryRequest) {
			sub := tt.sub
			sub.interval = 20 * time.Second
			tt.setSubscription(sub)
		}, kerr.UnknownSubscriptionID},
		{"unknown codec", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) { r.CompressionType = 7 }, kerr.UnsupportedCompressionType},
		{"negative codec", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) { r.CompressionType = -1 }, kerr.UnsupportedCompressionType},
		{"too large as sent", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) { r.Metrics = huge }, kerr.TelemetryTooLarge},
		{"too large decompressed", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) {
			r.Metrics, r.CompressionType = zstdHuge, zstdCodec
		}, kerr.TelemetryTooLarge},
		{"garbage", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) { r.Metrics = []byte("\xff\xff\xff not protobuf") }, kerr.InvalidRecord},
		{"protobuf said to be gzip", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) { r.CompressionType = 1 }, kerr.InvalidRecord},
		{"garbage said to be snappy", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) { r.CompressionType, r.Metrics = 2, garbage }, kerr.InvalidRecord},
		{"protobuf said to be lz4", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) { r.CompressionType = 3 }, kerr.InvalidRecord},
		{"protobuf said to be zstd", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) { r.CompressionType = 4 }, kerr.InvalidRecord},
		{"snappy claiming a huge size", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) {
			r.CompressionType, r.Metrics = 2, []byte("\xff\xff\xff\x7f rest")
		}, kerr.TelemetryTooLarge},
		{"truncated", func(_ *testTelemetry, r *kmsg.PushTelemetryRequest) { r.Metrics = r.Metrics[:len(r.Metrics)-3] }, kerr.InvalidRecord},
		{"too soon", func(tt *testTelemetry, r *kmsg.PushTelemetryRequest) {
			tt.push(r, testIdent) // the first push after the Get is accepted at once
			tt.clock.advance(9 * time.Second)
		}, kerr.ThrottlingQuotaExceeded},
		{"after terminating", func(tt *testTelemetry, r *kmsg.PushTelemetryRequest) {
			term := *r
			term.Terminating = true
			term.Metrics = nil
			tt.push(&term, testIdent)
			tt.clock.advance(10 * time.Second)
		}, kerr.InvalidRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			tt := newTestTelemetry(t, func(cfg *TelemetryConfig) { cfg.TelemetryMaxBytes = 4096 })
			sub := tt.subscribe(t, zeroUUID, testIdent)
			req := kmsg.NewPtrPushTelemetryRequest()
			req.ClientInstanceID, req.SubscriptionID, req.Metrics = sub.ClientInstanceID, sub.SubscriptionID, good
			c.edit(tt, req)
			stored := len(tt.series(t))
			code := tt.push(req, testIdent).ErrorCode
			if code != c.want.Code {
				t.Fatalf("push answered %v, want %v", kerr.ErrorForCode(code), c.want)
			}
			if n := len(tt.series(t)); n != stored {
				t.Fatalf("a refused push changed the series: %d before, %d after", stored, n)
			}
			if n := tt.value(t, "vigil_client_telemetry_pushes_total", map[string]string{"result": strings.ToLower(c.want.Message)}); n != 1 {
				t.Errorf("pushes_total{result=%s} = %v, want 1", strings.ToLower(c.want.Message), n)
			}
		})
	}

	// After UNKNOWN_SUBSCRIPTION_ID the client may ask again at once, and
	// push at once after that.
	tt := newTestTelemetry(t)
	sub := tt.subscribe(t, zeroUUID, testIdent)
	sub.SubscriptionID++
	if code := tt.pushMetrics(sub, testIdent, gaugeMetric("org.apache.kafka.producer.x", 1)); code != kerr.UnknownSubscriptionID.Code {
		t.Fatalf("push with a wrong subscription: %v", kerr.ErrorForCode(code))
	}
	sub = tt.subscribe(t, sub.ClientInstanceID, testIdent)
	if code := tt.pushMetrics(sub, testIdent, gaugeMetric("org.apache.kafka.producer.x", 1)); code != 0 {
		t.Fatalf("push after re-subscribing: %v", kerr.ErrorForCode(code))
	}
	if len(tt.series(t)) != 1 {
		t.Fatalf("series: %v", tt.series(t))
	}
}

func compressTelemetryCodec(raw []byte, codec kgo.CompressionCodec) ([]byte, int8) {
	c, p := compressTelemetry(raw, codec)
	return p, c
}

// TestTelemetryKinds pushes every OTLP metric type with every codec and
// checks what /metrics shows: names sanitized, attributes as labels,
// gauges replaced by each push, sums kept, deltas added up, histogram
// buckets made cumulative, summaries, "no recorded value" ending a series.
func TestTelemetryKinds(t *testing.T) {
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		tt := newTestTelemetry(t, func(c *TelemetryConfig) { c.TelemetryMetrics = []string{"*"} })
		sub := tt.subscribe(t, zeroUUID, testIdent)
		hist := &metricspb.Metric{Name: "app.latency", Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{
			AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA,
			DataPoints: []*metricspb.HistogramDataPoint{{Count: 6, Sum: proto.Float64(12.5),
				ExplicitBounds: []float64{1, 5}, BucketCounts: []uint64{1, 2, 3}}},
		}}}
		exp := &metricspb.Metric{Name: "app.exp", Data: &metricspb.Metric_ExponentialHistogram{ExponentialHistogram: &metricspb.ExponentialHistogram{
			AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
			DataPoints:             []*metricspb.ExponentialHistogramDataPoint{{Count: 4, Sum: proto.Float64(2)}},
		}}}
		summary := &metricspb.Metric{Name: "app.summary", Data: &metricspb.Metric_Summary{Summary: &metricspb.Summary{
			DataPoints: []*metricspb.SummaryDataPoint{{Count: 3, Sum: 9, QuantileValues: []*metricspb.SummaryDataPoint_ValueAtQuantile{
				{Quantile: 0.5, Value: 2}, {Quantile: 0.99, Value: 5}, {Quantile: 7, Value: 1}}}},
		}}}
		first := []*metricspb.Metric{
			gaugeMetric("org.apache.kafka.producer.node.request.latency.avg", 4.5, "node_id", "1"),
			gaugeMetric("org.apache.kafka.producer.node.request.latency.avg", 2, "node_id", "2"),
			sumMetric("org.apache.kafka.producer.connection.creation.total", 3, true, false),
			sumMetric("app.requests", 5, true, true, "topic", "t", "partition", "0", "zone", "b", "acks", "all"),
			sumMetric("app.inflight", 7, false, false),
			hist, exp, summary,
		}
		raw := otlpPayload(first...)
		c, payload := compressTelemetry(raw, codec)
		if code := tt.pushRaw(sub, c, payload, false, testIdent); code != 0 {
			t.Fatalf("codec %d: push: %v", c, kerr.ErrorForCode(code))
		}
		who := "client_id=unit,client_software=kgo,client_software_version=v1.22.3"
		wantSeries(t, tt.series(t), map[string]float64{
			"vigil_client_metric_gauge org_apache_kafka_producer_node_request_latency_avg{" + who + ",node_id=1}": 4.5,
			"vigil_client_metric_gauge org_apache_kafka_producer_node_request_latency_avg{" + who + ",node_id=2}": 2,
			"vigil_client_metric_total org_apache_kafka_producer_connection_creation_total{" + who + "}":          3,
			"vigil_client_metric_total app_requests{" + who + ",topic=t,partition=0,attributes=acks=all,zone=b}":  5,
			"vigil_client_metric_gauge app_inflight{" + who + "}":                                                 7,
			"vigil_client_metric_histogram app_latency{" + who + "}":                                              6,
			"vigil_client_metric_histogram app_exp{" + who + "}":                                                  4,
			"vigil_client_metric_summary app_summary{" + who + "}":                                                3,
		})
		checkHistogram(t, tt.reg, "app_latency", 6, 12.5, map[float64]uint64{1: 1, 5: 3})

		// The next push: one gauge (the other goes), the delta sum and
		// histogram add up, the cumulative sum is kept though absent, the
		// exponential histogram's series ends (no recorded value).
		tt.clock.advance(10 * time.Second)
		next := []*metricspb.Metric{
			gaugeMetric("org.apache.kafka.producer.node.request.latency.avg", 3, "node_id", "1"),
			sumMetric("app.requests", 2, true, true, "topic", "t", "partition", "0", "zone", "b", "acks", "all"),
			hist,
			{Name: "app.exp", Data: &metricspb.Metric_ExponentialHistogram{ExponentialHistogram: &metricspb.ExponentialHistogram{
				DataPoints: []*metricspb.ExponentialHistogramDataPoint{{Flags: 1}}}}},
		}
		c, payload = compressTelemetry(otlpPayload(next...), codec)
		if code := tt.pushRaw(sub, c, payload, false, testIdent); code != 0 {
			t.Fatalf("second push: %v", kerr.ErrorForCode(code))
		}
		wantSeries(t, tt.series(t), map[string]float64{
			"vigil_client_metric_gauge org_apache_kafka_producer_node_request_latency_avg{" + who + ",node_id=1}": 3,
			"vigil_client_metric_total org_apache_kafka_producer_connection_creation_total{" + who + "}":          3,
			"vigil_client_metric_total app_requests{" + who + ",topic=t,partition=0,attributes=acks=all,zone=b}":  7,
			"vigil_client_metric_gauge app_inflight{" + who + "}":                                                 7,
			"vigil_client_metric_histogram app_latency{" + who + "}":                                              12,
			"vigil_client_metric_summary app_summary{" + who + "}":                                                3,
		})
		checkHistogram(t, tt.reg, "app_latency", 12, 25, map[float64]uint64{1: 2, 5: 6})

		// A terminating push takes every series away.
		tt.clock.advance(10 * time.Second)
		if code := tt.pushRaw(sub, 0, nil, true, testIdent); code != 0 {
			t.Fatalf("terminating push: %v", kerr.ErrorForCode(code))
		}
		if s := tt.series(t); len(s) != 0 {
			t.Fatalf("series after the terminating push: %v", s)
		}
		if n := tt.value(t, "vigil_client_telemetry_series", nil); n != 0 {
			t.Fatalf("vigil_client_telemetry_series = %v after the terminating push", n)
		}
	}
}

// checkHistogram checks the count, sum and cumulative buckets of the
// histogram series named name.
func checkHistogram(t *testing.T, g prometheus.Gatherer, name string, count uint64, sum float64, buckets map[float64]uint64) {
	t.Helper()
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "vigil_client_metric_histogram" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "name" && lp.GetValue() == name {
					h := m.GetHistogram()
					got := map[float64]uint64{}
					for _, b := range h.GetBucket() {
						got[b.GetUpperBound()] = b.GetCumulativeCount()
					}
					if h.GetSampleCount() != count || h.GetSampleSum() != sum || fmt.Sprint(got) != fmt.Sprint(buckets) {
						t.Errorf("histogram %s: count %d sum %v buckets %v, want %d %v %v", name, h.GetSampleCount(), h.GetSampleSum(), got, count, sum, buckets)
					}
					return
				}
			}
		}
	}
	t.Errorf("no histogram %s", name)
}

// TestTelemetryExpiry: a client not heard from for 3 push intervals is
// forgotten, its series with it; one that keeps pushing is not.
func TestTelemetryExpiry(t *testing.T) {
	tt := newTestTelemetry(t)
	quiet := tt.subscribe(t, zeroUUID, clientIdent{"kgo", "1", "quiet"})
	busy := tt.subscribe(t, zeroUUID, clientIdent{"kgo", "1", "busy"})
	for s, id := range map[*kmsg.GetTelemetrySubscriptionsResponse]string{quiet: "quiet", busy: "busy"} {
		if code := tt.pushMetrics(s, clientIdent{"kgo", "1", id}, sumMetric("org.apache.kafka.consumer.connection.creation.total", 1, true, false)); code != 0 {
			t.Fatal(kerr.ErrorForCode(code))
		}
	}
	if len(tt.series(t)) != 2 {
		t.Fatalf("series: %v", tt.series(t))
	}
	for range 3 {
		tt.clock.advance(10 * time.Second)
		if code := tt.pushMetrics(busy, clientIdent{"kgo", "1", "busy"}, sumMetric("org.apache.kafka.consumer.connection.creation.total", 1, true, false)); code != 0 {
			t.Fatal(kerr.ErrorForCode(code))
		}
	}
	// 30s: the quiet client is at its limit, still there.
	if len(tt.series(t)) != 2 {
		t.Fatalf("series at 3 intervals: %v", tt.series(t))
	}
	tt.clock.advance(time.Millisecond)
	got := tt.series(t)
	if len(got) != 1 || got["vigil_client_metric_total org_apache_kafka_consumer_connection_creation_total{client_id=busy,client_software=kgo,client_software_version=1}"] != 1 {
		t.Fatalf("series after the quiet client expired: %v", got)
	}
	if n := tt.value(t, "vigil_client_telemetry_clients", map[string]string{"state": "exposed"}); n != 1 {
		t.Fatalf("exposed clients: %v", n)
	}
	// The forgotten client may come back: its pushes are accepted (its
	// subscription id is a function of its id) and its series return.
	if code := tt.pushMetrics(quiet, clientIdent{"kgo", "1", "quiet"}, sumMetric("org.apache.kafka.consumer.connection.creation.total", 1, true, false)); code != 0 {
		t.Fatalf("push from a forgotten client: %v", kerr.ErrorForCode(code))
	}
	if len(tt.series(t)) != 2 {
		t.Fatalf("series after the quiet client came back: %v", tt.series(t))
	}
}

// TestTelemetryLimits: top-N clients, distinct names, series per client
// and subscribed prefixes bound what is exposed; the rest is counted.
func TestTelemetryLimits(t *testing.T) {
	tt := newTestTelemetry(t, func(c *TelemetryConfig) {
		c.TelemetryTopN = 2
		c.TelemetryMaxNames = 3
	})
	tt.maxSeriesPerClient = 4
	var subs []*kmsg.GetTelemetrySubscriptionsResponse
	for i := range 3 {
		subs = append(subs, tt.subscribe(t, zeroUUID, clientIdent{"kgo", "1", fmt.Sprint("c", i)}))
	}
	push := func(i int, ms ...*metricspb.Metric) {
		t.Helper()
		if code := tt.pushMetrics(subs[i], clientIdent{"kgo", "1", fmt.Sprint("c", i)}, ms...); code != 0 {
			t.Fatal(kerr.ErrorForCode(code))
		}
	}
	g := func(name string, v float64, kv ...string) *metricspb.Metric {
		return gaugeMetric("org.apache.kafka."+name, v, kv...)
	}
	push(0, g("a", 1), g("b", 1), g("c", 1), g("d", 1), gaugeMetric("not.subscribed", 1)) // d: a 4th name
	push(1, g("a", 1, "node_id", "1"), g("a", 1, "node_id", "2"), g("a", 1, "node_id", "3"), g("a", 1, "node_id", "4"), g("a", 1, "node_id", "5"))
	push(2, g("a", 1)) // a 3rd client
	drops := map[string]float64{}
	for _, r := range telemetryDropReasons {
		drops[r] = tt.value(t, "vigil_client_telemetry_dropped_total", map[string]string{"reason": r})
	}
	if drops[dropNameLimit] != 1 || drops[dropSeriesLimit] != 1 || drops[dropClientLimit] != 1 || drops[dropNotSubscribed] != 1 || drops[dropInvalid] != 0 {
		t.Fatalf("dropped: %v", drops)
	}
	if n := len(tt.series(t)); n != 7 {
		t.Fatalf("%d series, want 7: %v", n, tt.series(t))
	}
	for state, want := range map[string]float64{"exposed": 2, "over_limit": 1, "idle": 0} {
		if n := tt.value(t, "vigil_client_telemetry_clients", map[string]string{"state": state}); n != want {
			t.Errorf("clients{state=%s} = %v, want %v", state, n, want)
		}
	}
	// When client 0 goes, client 2 takes its place at its next push, and
	// name d fits.
	tt.clock.advance(10 * time.Second)
	if code := tt.pushRaw(subs[0], 0, nil, true, clientIdent{"kgo", "1", "c0"}); code != 0 {
		t.Fatal(kerr.ErrorForCode(code))
	}
	push(2, g("a", 2), g("d", 2))
	got := tt.series(t)
	if got["vigil_client_metric_gauge org_apache_kafka_a{client_id=c2,client_software=kgo,client_software_version=1}"] != 2 ||
		got["vigil_client_metric_gauge org_apache_kafka_d{client_id=c2,client_software=kgo,client_software_version=1}"] != 2 || len(got) != 6 {
		t.Fatalf("series after client 0 went: %v", got)
	}
	// The client table itself is bounded: the least recently seen go.
	tt.maxClients = 3
	for range 5 {
		tt.subscribe(t, zeroUUID, testIdent)
	}
	if n := len(tt.clients); n != 3 {
		t.Fatalf("%d clients tracked, want 3", n)
	}
}

// TestTelemetryCardinality pushes from 10,000 client instances, each with
// its own client id: what is exposed stays within the bounds (top-N
// clients, so as many client ids; series per client), the rest is
// counted, and the registry still gathers.
func TestTelemetryCardinality(t *testing.T) {
	const clients = 10_000
	tt := newTestTelemetry(t) // telemetry-top-n 100
	var payloads [7][]byte    // uncompressed: the codecs are tested elsewhere
	for n := range payloads {
		payloads[n] = otlpPayload(gaugeMetric("org.apache.kafka.producer.node.request.latency.avg", 1, "node_id", fmt.Sprint(n)),
			sumMetric("org.apache.kafka.producer.connection.creation.total", 1, true, false))
	}
	for i := range clients {
		who := clientIdent{"kgo", "v1.22.3", fmt.Sprintf("client-%d-%s", i, strings.Repeat("x", i%300))}
		sub := tt.subscribe(t, zeroUUID, who)
		if code := tt.pushRaw(sub, 0, payloads[i%7], false, who); code != 0 {
			t.Fatal(kerr.ErrorForCode(code))
		}
	}
	all := gatherClientSeries(t, tt.reg, nil)
	ids, instances := map[string]bool{}, map[string]bool{}
	for _, s := range all {
		ids[s.labels["client_id"]] = true
		instances[s.labels["client_instance"]] = true
		if len(s.labels["client_id"]) > maxTelemetryLabelLen {
			t.Fatalf("client_id label of %d bytes", len(s.labels["client_id"]))
		}
	}
	if len(all) != 200 || len(ids) != 100 || len(instances) != 100 {
		t.Fatalf("%d series, %d client ids, %d instances; want 200, 100, 100", len(all), len(ids), len(instances))
	}
	if n := tt.value(t, "vigil_client_telemetry_dropped_total", map[string]string{"reason": dropClientLimit}); n != 2*(clients-100) {
		t.Fatalf("dropped for the client limit: %v, want %d", n, 2*(clients-100))
	}
	if n := tt.value(t, "vigil_client_telemetry_clients", map[string]string{"state": "over_limit"}); n != clients-100 {
		t.Fatalf("over-limit clients: %v", n)
	}
	// All expire together after 3 intervals of silence.
	tt.clock.advance(31 * time.Second)
	if n := len(gatherClientSeries(t, tt.reg, nil)); n != 0 {
		t.Fatalf("%d series after every client expired", n)
	}
	if len(tt.clients) != 0 || tt.exposed != 0 || len(tt.names) != 0 || tt.nseries != 0 {
		t.Fatalf("after expiry: %d clients, %d exposed, %d names, %d series", len(tt.clients), tt.exposed, len(tt.names), tt.nseries)
	}
}

// TestTelemetryLabelHygiene: names and label values are made valid and
// bounded, whatever the client sends, and the registry gathers.
func TestTelemetryLabelHygiene(t *testing.T) {
	tt := newTestTelemetry(t, func(c *TelemetryConfig) { c.TelemetryMetrics = []string{"*"} })
	who := clientIdent{"kgo", "v1", "bad\xffid-" + strings.Repeat("é", 200)}
	sub := tt.subscribe(t, zeroUUID, who)
	if code := tt.pushMetrics(sub, who,
		&metricspb.Metric{Name: "9lives.höhe-m/s", Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: []*metricspb.NumberDataPoint{{
			Attributes: append(attrs("topic", strings.Repeat("t", 1000)), &commonpb.KeyValue{Key: "node_id",
				Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte("\xff\xfe")}}}),
			Value: &metricspb.NumberDataPoint_AsInt{AsInt: 1}}}}}},
		gaugeMetric("9lives_höhe_m_s", 2), // the same name once sanitized: another series
		gaugeMetric("", 3),
		&metricspb.Metric{Name: "no.data"},
	); code != 0 {
		t.Fatal(kerr.ErrorForCode(code))
	}
	all := gatherClientSeries(t, tt.reg, nil)
	if len(all) != 2 {
		t.Fatalf("series: %v", all)
	}
	for _, s := range all {
		if s.labels["name"] != "_9lives_h__he_m_s" {
			t.Errorf("sanitized name %q", s.labels["name"])
		}
		for k, v := range s.labels {
			if len(v) > maxTelemetryLabelLen || !utf8.ValidString(v) {
				t.Errorf("label %s=%q", k, v)
			}
		}
	}
	if n := tt.value(t, "vigil_client_telemetry_dropped_total", map[string]string{"reason": dropInvalid}); n != 2 {
		t.Errorf("invalid points dropped: %v, want 2", n)
	}
}

// TestTelemetryConfig: the settings load from YAML and flags, and bad
// values are refused with the setting's name.
func TestTelemetryConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broker.yaml")
	os.WriteFile(path, []byte("telemetry-metrics: [\"org.apache.kafka.producer.\"]\ntelemetry-push-interval: 5s\ntelemetry-top-n: 7\n"), 0o644)
	cfg := DefaultConfig()
	if err := cfg.LoadConfigFile(path); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--telemetry-max-bytes", "2048", "--telemetry-delta-temporality", "--telemetry-max-names", "9"}); err != nil {
		t.Fatal(err)
	}
	tc := cfg.TelemetryConfig
	if fmt.Sprint(tc.TelemetryMetrics) != "[org.apache.kafka.producer.]" || tc.TelemetryPushInterval != 5*time.Second || tc.TelemetryTopN != 7 ||
		tc.TelemetryMaxBytes != 2048 || !tc.TelemetryDeltaTemporality || tc.TelemetryMaxNames != 9 {
		t.Fatalf("telemetry config: %+v", tc)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--telemetry-metrics", ""}); err != nil || len(cfg.TelemetryMetrics) != 0 {
		t.Fatalf("--telemetry-metrics '': %q, %v", cfg.TelemetryMetrics, err)
	}
	// Every telemetry setting has a flag named as its YAML key.
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	typ := reflect.TypeOf(cfg.TelemetryConfig)
	for i := 0; i < typ.NumField(); i++ {
		if key := typ.Field(i).Tag.Get("yaml"); fs.Lookup(key) == nil {
			t.Errorf("YAML key %q has no flag", key)
		}
	}
	for _, c := range []struct {
		mutate func(*TelemetryConfig)
		want   string
	}{
		{func(c *TelemetryConfig) { c.TelemetryPushInterval = 0 }, "telemetry-push-interval"},
		{func(c *TelemetryConfig) { c.TelemetryMaxBytes = 10 }, "telemetry-max-bytes"},
		{func(c *TelemetryConfig) { c.TelemetryTopN = -1 }, "telemetry-top-n"},
		{func(c *TelemetryConfig) { c.TelemetryMetrics = []string{"org.*"} }, "telemetry-metrics"},
	} {
		cfg := DefaultConfig()
		c.mutate(&cfg.TelemetryConfig)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error about %s, got %v", c.want, err)
		}
	}
}

// BenchmarkTelemetryPush measures one accepted push of a franz-go-sized
// payload (zstd): decompression, OTLP decoding and storing.
func BenchmarkTelemetryPush(b *testing.B) {
	tt := newTestTelemetry(b)
	sub := tt.subscribe(b, zeroUUID, testIdent)
	var ms []*metricspb.Metric
	for i := range 6 {
		ms = append(ms, gaugeMetric(fmt.Sprintf("org.apache.kafka.producer.m%d.avg", i), 1.5, "node_id", "1"),
			sumMetric(fmt.Sprintf("org.apache.kafka.producer.m%d.total", i), 10, true, false))
	}
	out, codec := testZstd.Compress(new(bytes.Buffer), otlpPayload(ms...))
	payload := append([]byte(nil), out...)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		tt.clock.advance(10 * time.Second)
		if code := tt.pushRaw(sub, int8(codec), payload, false, testIdent); code != 0 {
			b.Fatal(kerr.ErrorForCode(code))
		}
	}
}

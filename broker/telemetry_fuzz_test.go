package broker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// FuzzTelemetryPayload feeds arbitrary PushTelemetry payloads, with any
// codec, through the whole push path of a telemetry store (decompression,
// OTLP decoding, storing) and gathers its metrics. Whatever the bytes, the
// broker must not panic, must answer one of the errors a push can get, and
// /metrics must stay gatherable. The seed corpus in
// testdata/fuzz/FuzzTelemetryPayload holds real franz-go pushes, one per
// codec (TestCaptureTelemetrySeeds writes them).
func FuzzTelemetryPayload(f *testing.F) {
	hist := &metricspb.Metric{Name: "app.latency", Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{
		DataPoints: []*metricspb.HistogramDataPoint{{Count: 3, Sum: proto.Float64(1), ExplicitBounds: []float64{1}, BucketCounts: []uint64{1, 2}}},
	}}}
	summary := &metricspb.Metric{Name: "app.summary", Data: &metricspb.Metric_Summary{Summary: &metricspb.Summary{
		DataPoints: []*metricspb.SummaryDataPoint{{Count: 1, QuantileValues: []*metricspb.SummaryDataPoint_ValueAtQuantile{{Quantile: 0.5, Value: 1}}}},
	}}}
	raw := otlpPayload(gaugeMetric("org.apache.kafka.producer.node.request.latency.avg", 2, "node_id", "1"),
		sumMetric("org.apache.kafka.producer.connection.creation.total", 1, true, false),
		sumMetric("app.delta", 1, true, true, "topic", "t"), hist, summary)
	f.Add(int8(0), raw)
	for _, codec := range []kgo.CompressionCodec{kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		c, p := compressTelemetry(raw, codec)
		f.Add(c, p)
	}
	f.Add(int8(0), []byte{})
	f.Add(int8(2), []byte("\xff\xff\xff\x7f"))

	f.Fuzz(func(t *testing.T, codec int8, payload []byte) {
		tt := newTestTelemetry(t, func(c *TelemetryConfig) {
			c.TelemetryMetrics = []string{"*"}
			c.TelemetryTopN = 1
			c.TelemetryMaxNames = 50
		})
		sub := tt.subscribe(t, zeroUUID, testIdent)
		for i := range 2 { // twice: the second push updates what the first stored
			switch code := tt.pushRaw(sub, codec, payload, false, testIdent); code {
			case 0, kerr.UnsupportedCompressionType.Code, kerr.TelemetryTooLarge.Code, kerr.InvalidRecord.Code:
			default:
				t.Fatalf("push %d answered %v", i, kerr.ErrorForCode(code))
			}
			if _, err := tt.reg.Gather(); err != nil {
				t.Fatalf("gathering after push %d: %v", i, err)
			}
			tt.clock.advance(10 * time.Second)
		}
		if tt.nseries > tt.maxSeriesPerClient || len(tt.names) > tt.maxNames {
			t.Fatalf("%d series, %d names: over the bounds", tt.nseries, len(tt.names))
		}
	})
}

// TestCaptureTelemetrySeeds records real franz-go pushes, one per codec the
// broker may accept, as the seed corpus of FuzzTelemetryPayload. It runs
// only with VIGIL_WRITE_TELEMETRY_SEEDS=1 (it rewrites testdata).
func TestCaptureTelemetrySeeds(t *testing.T) {
	if os.Getenv("VIGIL_WRITE_TELEMETRY_SEEDS") == "" {
		t.Skip("set VIGIL_WRITE_TELEMETRY_SEEDS=1 to rewrite testdata/fuzz/FuzzTelemetryPayload")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzTelemetryPayload")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	saved := acceptedTelemetryCompression
	defer func() { acceptedTelemetryCompression = saved }()
	for _, codecs := range [][]int8{{}, {1}, {2}, {3}, {4}} {
		acceptedTelemetryCompression = codecs
		b := startBroker(t, "", func(c *Config) {
			c.TelemetryPushInterval = time.Second
			c.TelemetryMetrics = []string{"*"}
		})
		createTopic(t, newAdmin(t, b), "seeds", 1, nil)
		var (
			mu   sync.Mutex
			got  *kmsg.PushTelemetryRequest
			done = make(chan struct{})
		)
		b.telemetry.setObserver(func(r *kmsg.PushTelemetryRequest) {
			mu.Lock()
			defer mu.Unlock()
			if got == nil && len(r.Metrics) > 0 {
				// The request's bytes are the connection's buffer, reused
				// once the push is answered.
				got = &kmsg.PushTelemetryRequest{CompressionType: r.CompressionType, Metrics: append([]byte(nil), r.Metrics...)}
				close(done)
			}
		})
		cl := newClient(t, b, kgo.ClientID("seed"), kgo.DefaultProduceTopic("seeds"), kgo.ConsumeTopics("seeds"), kgo.FetchMaxWait(50*time.Millisecond))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for {
			cl.ProduceSync(ctx, kgo.StringRecord("seed"))
			pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
			cl.PollFetches(pctx)
			pcancel()
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatalf("no push with codecs %v", codecs)
			default:
				continue
			}
			break
		}
		cancel()
		cl.Close()
		mu.Lock()
		name := filepath.Join(dir, fmt.Sprintf("franz-go-codec-%d", got.CompressionType))
		body := fmt.Sprintf("go test fuzz v1\nint8(%d)\n[]byte(%q)\n", got.CompressionType, got.Metrics)
		mu.Unlock()
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", name)
	}
}

// TestFranzGoTelemetrySeeds: the recorded franz-go pushes decode with
// every codec, to franz-go's standard metrics and nothing dropped.
func TestFranzGoTelemetrySeeds(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzTelemetryPayload", "franz-go-codec-*"))
	if len(files) != 5 {
		t.Fatalf("%d franz-go seeds, want one per codec (5)", len(files))
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		var codec int8
		if len(lines) != 3 {
			t.Fatalf("%s: %d lines", name, len(lines))
		}
		if _, err := fmt.Sscanf(lines[1], "int8(%d)", &codec); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		payload, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		points, dropped, err := decodeTelemetry(codec, []byte(payload), 1<<20, []string{"org.apache.kafka."})
		if err != nil || len(points) == 0 || len(dropped) != 0 {
			t.Errorf("%s: %d points, dropped %v, %v", name, len(points), dropped, err)
		}
		for _, p := range points {
			if !strings.HasPrefix(p.key.name, "org_apache_kafka_") {
				t.Errorf("%s: point %+v", name, p)
			}
		}
	}
}

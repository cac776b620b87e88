package broker

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP trace collector that keeps the spans it is
// sent.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	o.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			o.spans = append(o.spans, ss.Spans...)
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// TestTracingFollowsRecords produces records carrying W3C trace contexts
// (sampled, not sampled, none) and consumes them, with spans exported over
// OTLP/HTTP to a collector: the sampled record's trace gets the produce
// span as a child of the producer's span, with receive, append and
// replicate children, and the consumer's fetch span; the others get
// nothing (the sample ratio for records without a context is 0).
func TestTracingFollowsRecords(t *testing.T) {
	recv := &otlpReceiver{}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	b := startBroker(t, "", func(c *Config) {
		c.TracingEndpoint = srv.URL
		c.TracingSampleRatio = 0
	})
	createTopic(t, newAdmin(t, b), "traced", 1, nil)

	const (
		sampledTrace   = "4bf92f3577b34da6a3ce929d0e0e4736"
		sampledParent  = "00f067aa0ba902b7"
		unsampledTrace = "5bf92f3577b34da6a3ce929d0e0e4736"
	)
	cl := newClient(t, b, kgo.DefaultProduceTopic("traced"), kgo.ProducerLinger(0))
	for _, tp := range []string{
		"00-" + sampledTrace + "-" + sampledParent + "-01",
		"00-" + unsampledTrace + "-00f067aa0ba902b8-00",
		"",
	} {
		r := &kgo.Record{Value: []byte("v")}
		if tp != "" {
			r.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte(tp)}}
		}
		if err := cl.ProduceSync(testCtx(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	consumeN(t, b, "traced", 3)
	b.Close() // exports what is buffered

	recv.mu.Lock()
	defer recv.mu.Unlock()
	byName := map[string]*tracepb.Span{}
	for _, s := range recv.spans {
		switch hex.EncodeToString(s.TraceId) {
		case sampledTrace:
		case unsampledTrace:
			t.Errorf("span %q in the trace whose traceparent says not sampled", s.Name)
			continue
		default:
			t.Errorf("span %q in trace %x: no record without a trace context should be traced at ratio 0", s.Name, s.TraceId)
			continue
		}
		if byName[s.Name] != nil && s.Name != "fetch traced" {
			t.Errorf("two %q spans", s.Name)
		}
		byName[s.Name] = s
	}
	produce, fetch := byName["produce traced"], byName["fetch traced"]
	if produce == nil || fetch == nil {
		t.Fatalf("spans of the sampled trace: %v; want produce traced and fetch traced", keys(byName))
	}
	if got := hex.EncodeToString(produce.ParentSpanId); got != sampledParent {
		t.Errorf("produce span's parent %s, want the producer's span %s", got, sampledParent)
	}
	if got := hex.EncodeToString(fetch.ParentSpanId); got != sampledParent {
		t.Errorf("fetch span's parent %s, want the producer's span %s", got, sampledParent)
	}
	for _, stage := range []string{"receive", "append", "replicate"} {
		s := byName[stage]
		if s == nil {
			t.Errorf("no %s span", stage)
			continue
		}
		if !bytes.Equal(s.ParentSpanId, produce.SpanId) {
			t.Errorf("%s span's parent is not the produce span", stage)
		}
		if s.StartTimeUnixNano < produce.StartTimeUnixNano || s.EndTimeUnixNano > produce.EndTimeUnixNano {
			t.Errorf("%s span [%d, %d] outside the produce span [%d, %d]", stage, s.StartTimeUnixNano, s.EndTimeUnixNano, produce.StartTimeUnixNano, produce.EndTimeUnixNano)
		}
	}
	attrs := map[string]string{}
	for _, kv := range produce.Attributes {
		attrs[kv.Key] = kv.Value.GetStringValue()
	}
	if attrs["messaging.destination.name"] != "traced" || attrs["messaging.system"] != "kafka" {
		t.Errorf("produce span attributes: %v", attrs)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// FuzzRecordContexts feeds arbitrary bytes, as produced or fetched record
// batches, to the search for trace contexts: it must not panic and finds
// at most maxTraceLinks contexts.
func FuzzRecordContexts(f *testing.F) {
	withHeader := func(tp string) []byte {
		return makeBatchHeaders(1, "traceparent", tp)
	}
	f.Add(withHeader("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	f.Add(withHeader("00-zz-00f067aa0ba902b7-01"))
	f.Add(makeBatch(-1, -1, -1, 3, []byte("x")))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := len(recordContexts(b, maxTraceLinks)); n > maxTraceLinks {
			t.Fatalf("%d contexts", n)
		}
	})
}

// TestTracingSamples checks the sampling decision start makes before any
// span is built: a record's sampled context is followed whatever the
// ratio, an unsampled one never is, and records without a context are
// traced at the ratio.
func TestTracingSamples(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tr := &tracing{provider: tp, tracer: tp.Tracer("test"), broker: attribute.Int("vigil.broker", 0)}
	sampled := makeBatchHeaders(3, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	unsampled := makeBatchHeaders(3, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	plain := makeBatch(-1, -1, -1, 3, []byte("x"))
	for _, c := range []struct {
		name    string
		ratio   float64
		batches []byte
		want    int // spans of 1000 starts
	}{
		{"sampled parent, ratio 0", 0, sampled, 1000},
		{"unsampled parent, ratio 1", 1, unsampled, 0},
		{"no parent, ratio 0", 0, plain, 0},
		{"no parent, ratio 1", 1, plain, 1000},
	} {
		tr.ratio = c.ratio
		n := 0
		for range 1000 {
			if s := tr.start("produce", "t", trace.SpanKindServer, time.Now(), c.batches); s != nil {
				n++
				// A span with a parent is in the parent's trace.
				if inParent := s.SpanContext().TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736"; inParent != bytes.Equal(c.batches, sampled) {
					t.Errorf("%s: span in trace %s", c.name, s.SpanContext().TraceID())
				}
				s.End()
			}
		}
		if n != c.want {
			t.Errorf("%s: %d spans of 1000, want %d", c.name, n, c.want)
		}
	}
	// At a ratio in between, about that share of unparented requests.
	tr.ratio = 0.1
	n := 0
	for range 10000 {
		if s := tr.start("produce", "t", trace.SpanKindServer, time.Now(), plain); s != nil {
			n++
			s.End()
		}
	}
	if n < 700 || n > 1300 {
		t.Errorf("ratio 0.1: %d spans of 10000", n)
	}
}

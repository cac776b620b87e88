package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	vlog "github.com/vigilhq/vigil/broker/log"
)

// Tracing: spans for produce (receive, append, replicate, acknowledged) and
// for fetches by consumers and followers, joined to the traces of the
// records they carry. A producer (a Vigil probe, or any client with OTel's
// Kafka instrumentation) puts a W3C traceparent header on a record; the
// broker finds it in the batch and makes its span a child of that
// context, linked to the other contexts in the batch. A trace then shows
// the record's path: the producer's span, the leader's produce span with
// its append and replicate children, each follower's fetch of it, and each
// consumer's fetch.
//
// Sampling is parent-based: a record whose traceparent says sampled is
// traced, one that says not sampled is not, and requests without any are
// sampled at --tracing-sample-ratio. Spans go to an OTLP/HTTP collector
// (--tracing-endpoint) in batches. Off by default; off, the broker neither
// looks at record headers nor starts spans (one nil check per request).

// maxTraceLinks bounds the trace contexts a span follows (the parent and
// its links), and so the records a batch is searched through.
const maxTraceLinks = 8

// tracing is a broker's tracer, nil when tracing is off.
type tracing struct {
	ratio    float64 // of requests whose records carry no trace context
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	broker   attribute.KeyValue
}

// newTracing starts the span exporter when the configuration asks for it.
func newTracing(cfg Config, logger *slog.Logger) (*tracing, error) {
	if cfg.TracingEndpoint == "" {
		return nil, nil
	}
	// A base URL gets OTLP's path, as OTEL_EXPORTER_OTLP_ENDPOINT does.
	endpoint := cfg.TracingEndpoint
	if u, err := url.Parse(endpoint); err == nil && (u.Path == "" || u.Path == "/") {
		u.Path = "/v1/traces"
		endpoint = u.String()
	}
	// The SDK reports export failures to a process-wide handler.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("exporting spans failed", "endpoint", endpoint, "err", err)
	}))
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("tracing-endpoint %q: %w", cfg.TracingEndpoint, err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", "vigil-broker"),
		attribute.String("service.instance.id", strconv.Itoa(int(cfg.NodeID))),
		attribute.String("vigil.cell", cfg.Cell),
	)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		// start samples before the SDK sees a span (parent-based, else
		// at the ratio); what reaches the SDK is recorded.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
	)
	return &tracing{
		ratio:    cfg.TracingSampleRatio,
		provider: tp,
		tracer:   tp.Tracer("github.com/vigilhq/vigil/broker"),
		broker:   attribute.Int("vigil.broker", int(cfg.NodeID)),
	}, nil
}

// shutdown exports the spans still buffered.
func (t *tracing) shutdown() error {
	if t == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return t.provider.Shutdown(ctx)
}

var errEnoughContexts = errors.New("enough trace contexts")

// recordContexts returns the distinct trace contexts found in the
// traceparent headers of the records of the first batch of batches, the
// first one first: at most max of them, and with max 1 only the first
// record is read. Only the first batch is read: a producer's batch is one
// send, whose first record's context is the parent and the rest links;
// decoding every batch of a produce or fetch to sample 1% of spans cost
// more than the spans themselves.
func recordContexts(batches []byte, max int) []trace.SpanContext {
	if len(batches) < vlog.BatchHeaderSize {
		return nil
	}
	h, err := vlog.ParseBatchHeader(batches)
	if err != nil || h.Size() < vlog.BatchHeaderSize || h.Size() > len(batches) {
		return nil
	}
	var out []trace.SpanContext
	prop := propagation.TraceContext{}
	// Produced batches were validated and fetched ones come from the log:
	// no second checksum.
	_ = vlog.DecodeTrustedRecords(batches[:h.Size()], func(r *vlog.Record) error {
		for _, hd := range r.Headers {
			if hd.Key != "traceparent" {
				continue
			}
			sc := trace.SpanContextFromContext(prop.Extract(context.Background(), propagation.MapCarrier{"traceparent": string(hd.Value)}))
			if !sc.IsValid() || containsContext(out, sc) {
				continue
			}
			if out = append(out, sc); len(out) == max {
				return errEnoughContexts
			}
		}
		if max == 1 {
			return errEnoughContexts
		}
		return nil
	})
	return out
}

func containsContext(scs []trace.SpanContext, sc trace.SpanContext) bool {
	for _, s := range scs {
		if s.Equal(sc) {
			return true
		}
	}
	return false
}

// start starts the span "verb topic" over batches, a child of the
// context of their first record and linked to the others of the first
// batch; nil if it is not sampled. The sampling decision comes first and
// reads one record header, so an unsampled request builds nothing.
func (t *tracing) start(verb, topic string, kind trace.SpanKind, at time.Time, batches []byte) trace.Span {
	ctx := context.Background()
	parent := recordContexts(batches, 1)
	switch {
	case len(parent) == 1 && !parent[0].IsSampled():
		return nil
	case len(parent) == 1:
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent[0])
	case rand.Float64() >= t.ratio:
		return nil
	}
	_, span := t.tracer.Start(ctx, verb+" "+topic, trace.WithSpanKind(kind), trace.WithTimestamp(at),
		trace.WithAttributes(t.broker))
	for _, sc := range recordContexts(batches, maxTraceLinks) {
		if len(parent) == 0 || !sc.Equal(parent[0]) {
			span.AddLink(trace.Link{SpanContext: sc})
		}
	}
	return span
}

// child records a finished child span of parent.
func (t *tracing) child(parent trace.Span, name string, start, end time.Time, attrs ...attribute.KeyValue) {
	ctx := trace.ContextWithSpan(context.Background(), parent)
	_, span := t.tracer.Start(ctx, name, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	span.End(trace.WithTimestamp(end))
}

// messaging returns the OpenTelemetry messaging attributes of a partition.
func messaging(op, topic string, partition int32, clientID string) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.operation.type", op),
		attribute.String("messaging.destination.name", topic),
		attribute.String("messaging.destination.partition.id", strconv.Itoa(int(partition))),
		attribute.String("messaging.client.id", clientID),
	}
}

// setError marks a span failed with a Kafka error code.
func setError(span trace.Span, code int16) {
	if code == 0 {
		return
	}
	name := errorName(code)
	span.SetAttributes(attribute.String("error.type", name))
	span.SetStatus(codes.Error, name)
}

// endSpans ends the spans of a request just answered, at when.
func endSpans(spans *[]trace.Span, when time.Time) {
	for _, s := range *spans {
		s.End(trace.WithTimestamp(when))
	}
	clear(*spans)
	*spans = (*spans)[:0]
}

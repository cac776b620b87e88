package broker

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	vlog "github.com/vigilhq/vigil/broker/log"
)

// This file turns a PushTelemetry payload (a compressed OTLP MetricsData
// protobuf) into data points ready to store. It has no state: the store
// (telemetry.go) calls it outside its lock, and FuzzTelemetryPayload
// feeds it anything.

// telemetryKind is what a data point becomes on /metrics.
type telemetryKind uint8

const (
	// kindGauge is an OTLP gauge: vigil_client_metric_gauge, replaced as a
	// whole by every push (a series the client stops sending goes away).
	kindGauge telemetryKind = iota
	// kindUpDown is a non-monotonic OTLP sum: vigil_client_metric_gauge,
	// kept until the client sends it again.
	kindUpDown
	// kindCounter is a monotonic OTLP sum: vigil_client_metric_total.
	kindCounter
	// kindHistogram is an OTLP histogram (explicit buckets) or
	// exponential histogram (sum and count only):
	// vigil_client_metric_histogram.
	kindHistogram
	// kindSummary is an OTLP summary: vigil_client_metric_summary.
	kindSummary
)

// family is the exposed metric family of a kind: gauges and non-monotonic
// sums share one.
func (k telemetryKind) family() telemetryKind {
	if k == kindUpDown {
		return kindGauge
	}
	return k
}

// Bounds on what one data point can bring.
const (
	maxTelemetryNameLen       = 200 // bytes of a sanitized metric name
	maxTelemetryLabelLen      = 128 // bytes of an attribute or client label value
	maxTelemetryAttrsLen      = 256 // bytes of the attributes label
	maxTelemetryBuckets       = 64  // explicit histogram buckets kept (more: sum and count only)
	maxTelemetryQuantiles     = 16  // summary quantiles kept
	maxTelemetryAttrsPerPoint = 32  // attributes of one point looked at
)

// pointKey identifies one series of a client: its sanitized name and its
// data point attributes (node_id, topic and partition have labels of their
// own; the others are folded, sorted, into attrs).
type pointKey struct {
	name                     string
	nodeID, topic, partition string
	attrs                    string
}

// telemetryPoint is one decoded data point.
type telemetryPoint struct {
	kind telemetryKind
	key  pointKey
	// delta points add to the stored value (delta temporality); others
	// replace it.
	delta bool
	// noValue is OTLP's "no recorded value" flag: the series ends.
	noValue bool

	value float64 // gauges, sums

	// Histograms and summaries.
	count uint64
	sum   float64
	// bounds are a histogram's finite, increasing upper bounds and counts
	// its per-bucket counts (one more than bounds: the last is +Inf); both
	// nil when the buckets were unusable or too many.
	bounds []float64
	counts []uint64
	// quantiles of a summary, as (quantile, value) pairs.
	quantiles [][2]float64
}

// Dropped-point reasons counted in vigil_client_telemetry_dropped_total.
const (
	dropNotSubscribed = "not_subscribed" // a name outside the subscription's prefixes
	dropInvalid       = "invalid"        // no name, or no data of a known type
	dropClientLimit   = "client_limit"   // the client is beyond telemetry-top-n
	dropNameLimit     = "name_limit"     // a new name beyond telemetry-max-names
	dropSeriesLimit   = "series_limit"   // beyond maxTelemetrySeriesPerClient
)

var telemetryDropReasons = []string{dropNotSubscribed, dropInvalid, dropClientLimit, dropNameLimit, dropSeriesLimit}

// Decoding errors, answered TELEMETRY_TOO_LARGE and INVALID_RECORD.
var (
	errTelemetryTooLarge = errors.New("telemetry payload too large once decompressed")
	errTelemetryInvalid  = errors.New("telemetry payload is not a compressed OTLP MetricsData")
)

// decodeTelemetry decompresses payload (codec: a record batch codec id),
// decodes it as an OTLP MetricsData and returns its data points whose
// metric names match one of prefixes (nil: none do), with how many points
// it dropped and why. It fails with errTelemetryTooLarge when the payload
// decompresses to more than maxBytes, and errTelemetryInvalid when it does
// not decompress or decode.
func decodeTelemetry(codec int8, payload []byte, maxBytes int, prefixes []string) ([]telemetryPoint, map[string]int, error) {
	raw, err := vlog.Decompress(nil, int(codec), payload, maxBytes)
	if err != nil {
		if errors.Is(err, vlog.ErrDecompressLimit) {
			return nil, nil, fmt.Errorf("%w: %v", errTelemetryTooLarge, err)
		}
		return nil, nil, fmt.Errorf("%w: %v", errTelemetryInvalid, err)
	}
	var md metricspb.MetricsData
	if err := proto.Unmarshal(raw, &md); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errTelemetryInvalid, err)
	}
	var (
		points  []telemetryPoint
		dropped = map[string]int{}
	)
	for _, rm := range md.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				points = appendMetricPoints(points, m, prefixes, dropped)
			}
		}
	}
	return points, dropped, nil
}

// appendMetricPoints appends the data points of one OTLP metric.
func appendMetricPoints(points []telemetryPoint, m *metricspb.Metric, prefixes []string, dropped map[string]int) []telemetryPoint {
	n := metricPointCount(m)
	if m.GetName() == "" || n == 0 {
		dropped[dropInvalid] += max(n, 1)
		return points
	}
	if !matchesPrefix(m.GetName(), prefixes) {
		dropped[dropNotSubscribed] += n
		return points
	}
	name := sanitizeMetricName(m.GetName())
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		for _, dp := range d.Gauge.GetDataPoints() {
			points = append(points, numberPoint(kindGauge, name, false, dp))
		}
	case *metricspb.Metric_Sum:
		kind := kindUpDown
		if d.Sum.GetIsMonotonic() {
			kind = kindCounter
		}
		delta := d.Sum.GetAggregationTemporality() == metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA
		for _, dp := range d.Sum.GetDataPoints() {
			points = append(points, numberPoint(kind, name, delta, dp))
		}
	case *metricspb.Metric_Histogram:
		delta := d.Histogram.GetAggregationTemporality() == metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA
		for _, dp := range d.Histogram.GetDataPoints() {
			p := telemetryPoint{kind: kindHistogram, delta: delta, count: dp.GetCount(), sum: dp.GetSum(),
				key: pointKeyOf(name, dp.GetAttributes()), noValue: noRecordedValue(dp.GetFlags())}
			p.bounds, p.counts = histogramBuckets(dp.GetExplicitBounds(), dp.GetBucketCounts(), dp.GetCount())
			points = append(points, p)
		}
	case *metricspb.Metric_ExponentialHistogram:
		delta := d.ExponentialHistogram.GetAggregationTemporality() == metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA
		for _, dp := range d.ExponentialHistogram.GetDataPoints() {
			points = append(points, telemetryPoint{kind: kindHistogram, delta: delta, count: dp.GetCount(), sum: dp.GetSum(),
				key: pointKeyOf(name, dp.GetAttributes()), noValue: noRecordedValue(dp.GetFlags())})
		}
	case *metricspb.Metric_Summary:
		for _, dp := range d.Summary.GetDataPoints() {
			p := telemetryPoint{kind: kindSummary, count: dp.GetCount(), sum: dp.GetSum(),
				key: pointKeyOf(name, dp.GetAttributes()), noValue: noRecordedValue(dp.GetFlags())}
			for _, q := range dp.GetQuantileValues() {
				if len(p.quantiles) == maxTelemetryQuantiles {
					break
				}
				if qq := q.GetQuantile(); qq >= 0 && qq <= 1 {
					p.quantiles = append(p.quantiles, [2]float64{qq, q.GetValue()})
				}
			}
			points = append(points, p)
		}
	}
	return points
}

// metricPointCount is the number of data points of m (0 for an unknown or
// absent data type).
func metricPointCount(m *metricspb.Metric) int {
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		return len(d.Gauge.GetDataPoints())
	case *metricspb.Metric_Sum:
		return len(d.Sum.GetDataPoints())
	case *metricspb.Metric_Histogram:
		return len(d.Histogram.GetDataPoints())
	case *metricspb.Metric_ExponentialHistogram:
		return len(d.ExponentialHistogram.GetDataPoints())
	case *metricspb.Metric_Summary:
		return len(d.Summary.GetDataPoints())
	}
	return 0
}

func numberPoint(kind telemetryKind, name string, delta bool, dp *metricspb.NumberDataPoint) telemetryPoint {
	p := telemetryPoint{kind: kind, delta: delta, key: pointKeyOf(name, dp.GetAttributes()), noValue: noRecordedValue(dp.GetFlags())}
	switch v := dp.GetValue().(type) {
	case *metricspb.NumberDataPoint_AsDouble:
		p.value = v.AsDouble
	case *metricspb.NumberDataPoint_AsInt:
		p.value = float64(v.AsInt)
	}
	// No value at all is a zero: franz-go, for one, leaves zeros out of
	// its encoding.
	return p
}

func noRecordedValue(flags uint32) bool {
	return flags&uint32(metricspb.DataPointFlags_DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK) != 0
}

// histogramBuckets returns the usable explicit buckets of a histogram
// point: finite, strictly increasing bounds, one more count than bounds,
// counts adding up to count, and at most maxTelemetryBuckets of them.
// Otherwise it returns nil, nil: the series keeps its sum and count.
func histogramBuckets(bounds []float64, counts []uint64, count uint64) ([]float64, []uint64) {
	if len(bounds) == 0 || len(bounds) > maxTelemetryBuckets || len(counts) != len(bounds)+1 {
		return nil, nil
	}
	var total uint64
	for i, b := range bounds {
		if math.IsNaN(b) || math.IsInf(b, 0) || i > 0 && b <= bounds[i-1] {
			return nil, nil
		}
	}
	for _, c := range counts {
		if total+c < total {
			return nil, nil // overflow
		}
		total += c
	}
	if total != count {
		return nil, nil
	}
	return append([]float64(nil), bounds...), append([]uint64(nil), counts...)
}

// matchesPrefix reports whether name starts with one of prefixes ("" matches
// every name).
func matchesPrefix(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// sanitizeMetricName turns an OTLP metric name into a Prometheus metric
// name: every byte other than ASCII letters, digits, '_' and ':' becomes
// '_' (org.apache.kafka.producer.node.request.latency.avg becomes
// org_apache_kafka_producer_node_request_latency_avg), a leading digit
// gets a '_' before it, and the result is cut at maxTelemetryNameLen bytes.
func sanitizeMetricName(s string) string {
	if len(s) > maxTelemetryNameLen {
		s = s[:maxTelemetryNameLen]
	}
	b := make([]byte, 0, len(s)+1)
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		b = append(b, '_')
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == ':') {
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}

// labelValue makes s a bounded, valid UTF-8 label value.
func labelValue(s string, limit int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s[:min(len(s), 4*limit)], "\uFFFD")
	}
	if len(s) > limit {
		s = s[:limit]
		// Do not leave a cut rune at the end.
		for len(s) > 0 && !utf8.ValidString(s[max(len(s)-utf8.UTFMax, 0):]) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// pointKeyOf builds the key of a data point from its attributes.
func pointKeyOf(name string, attrs []*commonpb.KeyValue) pointKey {
	k := pointKey{name: name}
	var rest []string
	for i, kv := range attrs {
		if i == maxTelemetryAttrsPerPoint {
			break
		}
		v, ok := attrValue(kv.GetValue())
		if !ok {
			continue
		}
		switch key := kv.GetKey(); key {
		case "node_id":
			k.nodeID = v
		case "topic":
			k.topic = v
		case "partition":
			k.partition = v
		default:
			rest = append(rest, labelValue(key, maxTelemetryLabelLen)+"="+v)
		}
	}
	if len(rest) > 0 {
		sort.Strings(rest)
		k.attrs = labelValue(strings.Join(rest, ","), maxTelemetryAttrsLen)
	}
	return k
}

// attrValue renders a scalar attribute value; arrays and maps are left
// out (their size has no useful bound).
func attrValue(v *commonpb.AnyValue) (string, bool) {
	var s string
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		s = x.StringValue
	case *commonpb.AnyValue_BoolValue:
		s = strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		s = strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		s = strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		s = hex.EncodeToString(x.BytesValue[:min(len(x.BytesValue), maxTelemetryLabelLen/2)])
	default:
		return "", false
	}
	return labelValue(s, maxTelemetryLabelLen), true
}

package broker

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/internal/catalogue"
)

// The families the pushed client metrics are exposed in, one per kind of
// metric, each with the client metric's sanitized name in the name label
// (see docs/metrics.md for why one family per kind rather than one per
// client metric).
var (
	clientMetricLabels = []string{"name", "client_instance", "client_id", "client_software", "client_software_version",
		"node_id", "topic", "partition", "attributes"}

	clientGaugeDesc = catalogue.Declare("broker", "vigil_client_metric_gauge", catalogue.Gauge,
		"Latest value of a gauge (or non-monotonic sum) pushed by a client through KIP-714 telemetry; name is the client's metric name with '.' as '_'.", clientMetricLabels...).Desc()
	clientCounterDesc = catalogue.Declare("broker", "vigil_client_metric_total", catalogue.Counter,
		"Running total of a monotonic sum pushed by a client through KIP-714 telemetry; name is the client's metric name with '.' as '_'.", clientMetricLabels...).Desc()
	clientHistogramDesc = catalogue.Declare("broker", "vigil_client_metric_histogram", catalogue.Histogram,
		"Histogram pushed by a client through KIP-714 telemetry (explicit buckets; sum and count only for exponential histograms).", clientMetricLabels...).Desc()
	clientSummaryDesc = catalogue.Declare("broker", "vigil_client_metric_summary", catalogue.Summary,
		"Summary pushed by a client through KIP-714 telemetry.", clientMetricLabels...).Desc()

	telemetryPushesDesc = catalogue.Declare("broker", "vigil_client_telemetry_pushes_total", catalogue.Counter,
		"PushTelemetry requests, by result (ok or the Kafka error answered, lower case).", "result").Desc()
	telemetryGetsDesc = catalogue.Declare("broker", "vigil_client_telemetry_subscription_requests_total", catalogue.Counter,
		"GetTelemetrySubscriptions requests, by result (ok or the Kafka error answered, lower case).", "result").Desc()
	telemetryBytesDesc = catalogue.Declare("broker", "vigil_client_telemetry_received_bytes_total", catalogue.Counter,
		"Bytes of telemetry payloads received in PushTelemetry requests, as sent (compressed).").Desc()
	telemetryDroppedDesc = catalogue.Declare("broker", "vigil_client_telemetry_dropped_total", catalogue.Counter,
		"Pushed data points not exposed, by reason: not_subscribed, invalid, client_limit, name_limit, series_limit.", "reason").Desc()
	telemetryClientsDesc = catalogue.Declare("broker", "vigil_client_telemetry_clients", catalogue.Gauge,
		"Client instances the broker tracks, by state: exposed (its metrics are on /metrics), over_limit (its last push found no place among telemetry-top-n), idle (no metrics stored yet, or telemetry off).", "state").Desc()
	telemetrySeriesDesc = catalogue.Declare("broker", "vigil_client_telemetry_series", catalogue.Gauge,
		"Series of client metrics exposed, over all clients.").Desc()
)

// telemetryPushResults are the results counted from zero, so that rates
// exist before the first error.
var telemetryPushResults = []string{"ok", "invalid_request", "throttling_quota_exceeded", "unknown_subscription_id",
	"unsupported_compression_type", "telemetry_too_large", "invalid_record"}

// Describe and Collect make the store a Prometheus collector.
func (s *telemetryStore) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{clientGaugeDesc, clientCounterDesc, clientHistogramDesc, clientSummaryDesc,
		telemetryPushesDesc, telemetryGetsDesc, telemetryBytesDesc, telemetryDroppedDesc, telemetryClientsDesc, telemetrySeriesDesc} {
		ch <- d
	}
}

func (s *telemetryStore) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())

	for _, r := range telemetryPushResults {
		ch <- prometheus.MustNewConstMetric(telemetryPushesDesc, prometheus.CounterValue, s.pushes[r], r)
	}
	for r, n := range s.pushes {
		if !slices.Contains(telemetryPushResults, r) {
			ch <- prometheus.MustNewConstMetric(telemetryPushesDesc, prometheus.CounterValue, n, r)
		}
	}
	for _, r := range []string{"ok", "throttling_quota_exceeded"} {
		ch <- prometheus.MustNewConstMetric(telemetryGetsDesc, prometheus.CounterValue, s.gets[r], r)
	}
	ch <- prometheus.MustNewConstMetric(telemetryBytesDesc, prometheus.CounterValue, s.receivedBytes)
	for _, r := range telemetryDropReasons {
		ch <- prometheus.MustNewConstMetric(telemetryDroppedDesc, prometheus.CounterValue, s.dropped[r], r)
	}
	overLimit := 0
	for _, c := range s.clients {
		if c.overLimit {
			overLimit++
		}
	}
	ch <- prometheus.MustNewConstMetric(telemetryClientsDesc, prometheus.GaugeValue, float64(s.exposed), "exposed")
	ch <- prometheus.MustNewConstMetric(telemetryClientsDesc, prometheus.GaugeValue, float64(overLimit), "over_limit")
	ch <- prometheus.MustNewConstMetric(telemetryClientsDesc, prometheus.GaugeValue, float64(len(s.clients)-s.exposed-overLimit), "idle")
	ch <- prometheus.MustNewConstMetric(telemetrySeriesDesc, prometheus.GaugeValue, float64(s.nseries))

	for _, c := range s.clients {
		if !c.exposed {
			continue
		}
		for k, ser := range c.series {
			labels := []string{k.name, c.idStr, c.ident.clientID, c.ident.software, c.ident.version,
				k.nodeID, k.topic, k.partition, k.attrs}
			var (
				m   prometheus.Metric
				err error
			)
			switch k.family {
			case kindGauge:
				m, err = prometheus.NewConstMetric(clientGaugeDesc, prometheus.GaugeValue, ser.value, labels...)
			case kindCounter:
				m, err = prometheus.NewConstMetric(clientCounterDesc, prometheus.CounterValue, ser.value, labels...)
			case kindHistogram:
				buckets := make(map[float64]uint64, len(ser.bounds))
				var cum uint64
				for i, b := range ser.bounds {
					cum += ser.counts[i]
					buckets[b] = cum
				}
				m, err = prometheus.NewConstHistogram(clientHistogramDesc, ser.count, ser.sum, buckets, labels...)
			case kindSummary:
				q := make(map[float64]float64, len(ser.quantiles))
				for _, qv := range ser.quantiles {
					q[qv[0]] = qv[1]
				}
				m, err = prometheus.NewConstSummary(clientSummaryDesc, ser.count, ser.sum, q, labels...)
			}
			if err == nil && m != nil {
				ch <- m
			}
		}
	}
}

package broker

import (
	"flag"
	"fmt"
	"strings"
	"time"
)

// TelemetryConfig is the KIP-714 client telemetry subscription every client
// of the broker gets, and the bounds on what the broker keeps of it (see
// docs/protocol.md and docs/metrics.md). It is embedded in Config: its
// YAML keys and flags are those of the broker.
type TelemetryConfig struct {
	// TelemetryMetrics are the metric name prefixes clients are asked to
	// push (a subscription's "metrics", as in Kafka's client-metrics
	// configs). "*" asks for every metric; no prefix at all turns client
	// telemetry off (clients are told no metrics are wanted). The default,
	// "org.apache.kafka.", is the namespace of the standard KIP-714 client
	// metrics, which is what franz-go, librdkafka and the Java client push.
	TelemetryMetrics []string `yaml:"telemetry-metrics"`
	// TelemetryPushInterval is how often clients push (interval.ms of a
	// Kafka subscription, whose default, 5m, is slower than a scrape).
	// Pushes faster than this are refused with THROTTLING_QUOTA_EXCEEDED,
	// and a client not heard from for 3 intervals is forgotten.
	TelemetryPushInterval time.Duration `yaml:"telemetry-push-interval"`
	// TelemetryMaxBytes is the largest payload a push may carry, both as
	// sent and once decompressed (telemetry.max.bytes).
	TelemetryMaxBytes int32 `yaml:"telemetry-max-bytes"`
	// TelemetryDeltaTemporality asks clients for the increments of their
	// counters since the previous push instead of their running totals;
	// the broker then adds them up. Off by default: cumulative values are
	// what Prometheus counters are, and they survive a client moving its
	// pushes to another broker.
	TelemetryDeltaTemporality bool `yaml:"telemetry-delta-temporality"`
	// TelemetryTopN bounds the client instances whose metrics are
	// exposed: the first N to push keep their series until they end or
	// expire; the metrics of the others are dropped and counted (see
	// docs/metrics.md).
	TelemetryTopN int `yaml:"telemetry-top-n"`
	// TelemetryMaxNames bounds the distinct metric names exposed, over
	// all clients; data points of further names are dropped and counted.
	TelemetryMaxNames int `yaml:"telemetry-max-names"`
}

// DefaultTelemetryConfig returns the telemetry settings of DefaultConfig.
func DefaultTelemetryConfig() TelemetryConfig {
	return TelemetryConfig{
		TelemetryMetrics:      []string{"org.apache.kafka."},
		TelemetryPushInterval: 30 * time.Second,
		TelemetryMaxBytes:     1 << 20,
		TelemetryTopN:         100,
		TelemetryMaxNames:     500,
	}
}

// registerFlags binds the telemetry settings to flags named as their YAML
// keys.
func (c *TelemetryConfig) registerFlags(fs *flag.FlagSet) {
	fs.Func("telemetry-metrics", "KIP-714 client metric name prefixes to subscribe clients to, comma-separated; '*' for all, empty for none (telemetry off) (default "+strings.Join(c.TelemetryMetrics, ",")+")", func(s string) error {
		c.TelemetryMetrics = []string{}
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.TelemetryMetrics = append(c.TelemetryMetrics, p)
			}
		}
		return nil
	})
	fs.DurationVar(&c.TelemetryPushInterval, "telemetry-push-interval", c.TelemetryPushInterval, "how often clients push their KIP-714 metrics; a client silent for 3 intervals is forgotten")
	int32Flag(fs, "telemetry-max-bytes", "largest KIP-714 telemetry payload a client may push, compressed and decompressed", &c.TelemetryMaxBytes)
	fs.BoolVar(&c.TelemetryDeltaTemporality, "telemetry-delta-temporality", c.TelemetryDeltaTemporality, "ask clients for counter increments instead of running totals")
	fs.IntVar(&c.TelemetryTopN, "telemetry-top-n", c.TelemetryTopN, "client instances whose pushed metrics are exposed (the rest are dropped and counted)")
	fs.IntVar(&c.TelemetryMaxNames, "telemetry-max-names", c.TelemetryMaxNames, "distinct client metric names exposed over all clients (the rest are dropped and counted)")
}

// validate checks the telemetry settings.
func (c *TelemetryConfig) validate() error {
	if c.TelemetryPushInterval < 100*time.Millisecond || c.TelemetryPushInterval > time.Hour {
		return fmt.Errorf("telemetry-push-interval must be between 100ms and 1h, got %v", c.TelemetryPushInterval)
	}
	if c.TelemetryMaxBytes < 1024 || c.TelemetryMaxBytes > 64<<20 {
		return fmt.Errorf("telemetry-max-bytes must be between 1024 and %d, got %d", 64<<20, c.TelemetryMaxBytes)
	}
	if c.TelemetryTopN < 0 || c.TelemetryMaxNames < 0 {
		return fmt.Errorf("telemetry-top-n and telemetry-max-names must not be negative, got %d and %d", c.TelemetryTopN, c.TelemetryMaxNames)
	}
	for _, p := range c.TelemetryMetrics {
		if p == "" || p != "*" && strings.Contains(p, "*") {
			return fmt.Errorf("telemetry-metrics: %q is not a metric name prefix (use '*' alone for every metric)", p)
		}
	}
	return nil
}

// subscription is the subscription these settings describe.
func (c *TelemetryConfig) subscription() telemetrySubscription {
	s := telemetrySubscription{
		interval: c.TelemetryPushInterval,
		maxBytes: c.TelemetryMaxBytes,
		delta:    c.TelemetryDeltaTemporality,
	}
	for _, p := range c.TelemetryMetrics {
		if p == "*" {
			// KIP-714: a single empty prefix asks for every metric. (Kafka's
			// brokers answer "*", which the Java client understands and
			// franz-go does not; "" works for both.)
			s.prefixes = []string{""}
			return s
		}
	}
	s.prefixes = append([]string(nil), c.TelemetryMetrics...)
	return s
}

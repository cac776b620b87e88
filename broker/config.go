package broker

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigilhq/vigil/broker/group"
	vlog "github.com/vigilhq/vigil/broker/log"
	"github.com/vigilhq/vigil/controller"
)

// Config is a broker's static configuration. Every field can be set in the
// YAML file given to `vigil broker --config FILE` (the key is the yaml tag)
// and by the command-line flag of the same name; flags win over the file.
// (topic-defaults, a map in the file, is a repeatable name=value flag.)
type Config struct {
	// NodeID is this broker's id in the cluster.
	NodeID int32 `yaml:"node-id"`
	// ClusterID is reported in Metadata and DescribeCluster. Empty means one
	// is generated on first start and kept in the data directory.
	ClusterID string `yaml:"cluster-id"`
	// Listen is the host:port the Kafka listener binds.
	Listen string `yaml:"listen"`
	// Advertise is the host:port clients are told to connect to; empty
	// means Listen (with the port actually bound when Listen's port is 0).
	Advertise string `yaml:"advertise"`
	// HTTPListen is the host:port of the broker's HTTP endpoint (/healthz
	// and /readyz today; metrics and APIs arrive with later issues); empty
	// disables it.
	HTTPListen string `yaml:"http-listen"`
	// Pprof serves Go's profiles under /debug/pprof/ on the HTTP endpoint.
	// Off by default: they are unauthenticated and can reveal memory
	// contents, so enable them only where the endpoint is not reachable
	// by untrusted clients.
	Pprof bool `yaml:"pprof"`
	// LogLevel is the level of the process log: debug, info (also when
	// empty), warn or error. The broker package does not read it; the
	// vigil command builds its logger from it.
	LogLevel string `yaml:"log-level"`
	// Rack is reported in Metadata; Cell is the blast-radius cell.
	Rack string `yaml:"rack"`
	Cell string `yaml:"cell"`
	// DataDir holds the partition logs and the broker's own state.
	DataDir string `yaml:"data-dir"`

	// Controllers are the HTTP API addresses (host:port) of the controller
	// quorum. Empty runs a single-node quorum inside this process, under
	// DataDir/controller (combined mode, for a lone broker).
	Controllers []string `yaml:"controllers"`
	// ControllerToken is the quorum's admin token, if it has one.
	ControllerToken string `yaml:"controller-token"`
	// BrokerHeartbeatInterval is how often the broker heartbeats to the
	// quorum (broker.heartbeat.interval.ms).
	BrokerHeartbeatInterval time.Duration `yaml:"broker-heartbeat-interval"`
	// BrokerSessionTimeout is the session timeout of the embedded quorum
	// (combined mode): a broker not heard from for this long is fenced
	// (broker.session.timeout.ms). A separate quorum has its own.
	BrokerSessionTimeout time.Duration `yaml:"broker-session-timeout"`
	// DiskCanaryInterval is how often the disk canary writes and fsyncs a
	// small file in the data directory (vigil_storage_canary_seconds).
	DiskCanaryInterval time.Duration `yaml:"disk-canary-interval"`
	// RequestMetrics measures every request (latency by stage, sizes,
	// errors, per client and per topic). Off saves their cost, which
	// docs/benchmarks.md measures.
	RequestMetrics bool `yaml:"request-metrics"`
	// MetricsMaxClients bounds the client identities (software, version,
	// client id) with series of their own: the most active ones; the rest
	// are labelled other.
	MetricsMaxClients int `yaml:"metrics-max-clients"`
	// MetricsMaxTopics bounds the topics with series of their own, the
	// same way.
	MetricsMaxTopics int `yaml:"metrics-max-topics"`
	// MetricsNativeHistograms gives the broker's histograms native
	// (sparse) buckets besides the classic ones. They are observed on
	// every request and write, and a native bucket lookup costs ~50 ns
	// each (docs/benchmarks.md), so they are off unless asked for.
	MetricsNativeHistograms bool `yaml:"metrics-native-histograms"`
	// Staging allows fault injection (SetFaults, /admin/v1/faults). Never
	// in production.
	Staging bool `yaml:"staging"`
	// AdminToken, when set, is the bearer token the broker's admin API
	// (/admin/v1/...) requires; without it, only loopback clients may call.
	AdminToken string `yaml:"admin-token"`
	// TracingEndpoint is the OTLP/HTTP endpoint spans are exported to
	// (e.g. http://localhost:4318); empty turns tracing off.
	TracingEndpoint string `yaml:"tracing-endpoint"`
	// TracingSampleRatio is the fraction of requests traced when their
	// records carry no trace context (records with a traceparent follow
	// its sampled flag).
	TracingSampleRatio float64 `yaml:"tracing-sample-ratio"`
	// ReplicaLagTimeMax is how long a follower may stay behind the
	// leader's log end before it leaves the ISR (replica.lag.time.max.ms).
	ReplicaLagTimeMax time.Duration `yaml:"replica-lag-time-max"`
	// ReplicaReassignmentThrottleBytesPerSecond limits the bytes this
	// broker, as a leader, sends to replicas that partition reassignments
	// are adding and that are not in the ISR yet, all together (Kafka's
	// leader.replication.throttled.rate for the reassignment's throttled
	// replicas); in-sync followers are never throttled. 0 means unlimited.
	ReplicaReassignmentThrottleBytesPerSecond float64 `yaml:"replica-reassignment-throttle-bytes-per-second"`
	// DefaultReplicationFactor is the replication factor of topics created
	// without one (auto-created, or CreateTopics with -1)
	// (default.replication.factor).
	DefaultReplicationFactor int16 `yaml:"default-replication-factor"`
	// OffsetsTopicReplicationFactor is the replication factor of
	// __consumer_offsets when it is created; fewer live brokers in the
	// cell make it smaller (offsets.topic.replication.factor).
	OffsetsTopicReplicationFactor int16 `yaml:"offsets-topic-replication-factor"`

	// SocketRequestMaxBytes is the largest request accepted; a larger size
	// prefix closes the connection (socket.request.max.bytes).
	SocketRequestMaxBytes int32 `yaml:"socket-request-max-bytes"`
	// AutoCreateTopics lets Metadata requests create unknown topics
	// (auto.create.topics.enable).
	AutoCreateTopics bool `yaml:"auto-create-topics"`
	// NumPartitions is the partition count of auto-created topics and of
	// CreateTopics requests that leave it at -1 (num.partitions).
	NumPartitions int32 `yaml:"num-partitions"`
	// RetentionCheckInterval is how often retention and time-based
	// rolling run (log.retention.check.interval.ms).
	RetentionCheckInterval time.Duration `yaml:"retention-check-interval"`
	// TopicDefaults overrides Kafka's default for topic configs on this
	// broker, e.g. {"retention.ms": "3600000", "flush.messages": "1"}.
	// DescribeConfigs reports them with source STATIC_BROKER_CONFIG.
	TopicDefaults map[string]string `yaml:"topic-defaults"`
	// ShutdownTimeout bounds how long Close waits for in-flight requests.
	ShutdownTimeout time.Duration `yaml:"shutdown-timeout"`

	// OffsetsTopicPartitions is the partition count of __consumer_offsets
	// when the broker creates it (offsets.topic.num.partitions).
	OffsetsTopicPartitions int32 `yaml:"offsets-topic-num-partitions"`
	// Group coordinator settings, named after Kafka's (see broker/group).
	GroupMinSessionTimeout        time.Duration `yaml:"group-min-session-timeout"`
	GroupMaxSessionTimeout        time.Duration `yaml:"group-max-session-timeout"`
	GroupInitialRebalanceDelay    time.Duration `yaml:"group-initial-rebalance-delay"`
	GroupMaxSize                  int           `yaml:"group-max-size"`
	OffsetsRetention              time.Duration `yaml:"offsets-retention"`
	OffsetsRetentionCheckInterval time.Duration `yaml:"offsets-retention-check-interval"`
	OffsetMetadataMaxBytes        int           `yaml:"offset-metadata-max-bytes"`
	GroupConsumerSessionTimeout   time.Duration `yaml:"group-consumer-session-timeout"`
	GroupConsumerHeartbeat        time.Duration `yaml:"group-consumer-heartbeat-interval"`
	GroupConsumerMaxSize          int           `yaml:"group-consumer-max-size"`
	// GroupLagTopN bounds vigil_group_lag_records: the N groups with the
	// most lag are reported by name, the rest summed as group="other".
	GroupLagTopN int `yaml:"group-lag-top-n"`
	// LogCleanerThreads is how many partitions are compacted at once
	// (log.cleaner.threads); 0 turns the cleaner off.
	LogCleanerThreads int `yaml:"log-cleaner-threads"`
	// LogCleanerIOMaxBytesPerSecond limits the disk bytes all cleaner
	// threads read and write together
	// (log.cleaner.io.max.bytes.per.second); 0 means unlimited.
	LogCleanerIOMaxBytesPerSecond float64 `yaml:"log-cleaner-io-max-bytes-per-second"`
	// LogCleanerDedupeBufferSize is the memory for the cleaners' key
	// → offset maps, shared by the threads (log.cleaner.dedupe.buffer.size).
	LogCleanerDedupeBufferSize int64 `yaml:"log-cleaner-dedupe-buffer-size"`
	// LogCleanerBackoff is how long the cleaner sleeps when no partition
	// needs cleaning (log.cleaner.backoff.ms).
	LogCleanerBackoff time.Duration `yaml:"log-cleaner-backoff"`

	// Client telemetry (KIP-714): the subscription and its bounds.
	TelemetryConfig `yaml:",inline"`

	// FS is the file system partition logs use; nil is the operating
	// system's. Tests and staging drills inject disk faults through it.
	FS vlog.FS `yaml:"-"`
}

// DefaultConfig returns the configuration a broker runs with when nothing is
// set: node 0 on 127.0.0.1:9092 with data under ./vigil-data.
func DefaultConfig() Config {
	g := group.DefaultConfig()
	return Config{
		NodeID:                 0,
		Listen:                 "127.0.0.1:9092",
		HTTPListen:             "",
		LogLevel:               "info",
		Cell:                   "a",
		DataDir:                "vigil-data",
		SocketRequestMaxBytes:  100 << 20,
		AutoCreateTopics:       true,
		NumPartitions:          1,
		RetentionCheckInterval: 30 * time.Second,
		ShutdownTimeout:        10 * time.Second,

		BrokerHeartbeatInterval:       defaultHeartbeatInterval,
		BrokerSessionTimeout:          controller.DefaultSessionTimeout,
		ReplicaLagTimeMax:             30 * time.Second,
		DiskCanaryInterval:            5 * time.Second,
		RequestMetrics:                true,
		MetricsMaxClients:             100,
		MetricsMaxTopics:              1000,
		TracingSampleRatio:            0.01,
		DefaultReplicationFactor:      1,
		OffsetsTopicReplicationFactor: 3,
		OffsetsTopicPartitions:        50,
		GroupLagTopN:                  100,
		GroupMinSessionTimeout:        g.MinSessionTimeout,
		GroupMaxSessionTimeout:        g.MaxSessionTimeout,
		GroupInitialRebalanceDelay:    g.InitialRebalanceDelay,
		OffsetsRetention:              g.OffsetsRetention,
		OffsetsRetentionCheckInterval: g.OffsetsRetentionCheckInterval,
		OffsetMetadataMaxBytes:        g.OffsetMetadataMaxBytes,
		GroupConsumerSessionTimeout:   g.ConsumerSessionTimeout,
		GroupConsumerHeartbeat:        g.ConsumerHeartbeatInterval,
		LogCleanerThreads:             1,
		LogCleanerDedupeBufferSize:    128 << 20,
		LogCleanerBackoff:             15 * time.Second,
		TelemetryConfig:               DefaultTelemetryConfig(),
	}
}

// groupConfig is the coordinator configuration these settings describe.
func (c *Config) groupConfig() group.Config {
	g := group.DefaultConfig()
	g.MinSessionTimeout = c.GroupMinSessionTimeout
	g.MaxSessionTimeout = c.GroupMaxSessionTimeout
	g.InitialRebalanceDelay = c.GroupInitialRebalanceDelay
	g.MaxSize = c.GroupMaxSize
	g.OffsetsRetention = c.OffsetsRetention
	g.OffsetsRetentionCheckInterval = c.OffsetsRetentionCheckInterval
	g.OffsetMetadataMaxBytes = c.OffsetMetadataMaxBytes
	g.ConsumerSessionTimeout = c.GroupConsumerSessionTimeout
	g.ConsumerHeartbeatInterval = c.GroupConsumerHeartbeat
	g.ConsumerMaxSize = c.GroupConsumerMaxSize
	return g
}

// LoadConfigFile reads a YAML file over the values already in c. Unknown keys
// are an error, so a misspelt setting is not silently ignored.
func (c *Config) LoadConfigFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading broker config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("parsing broker config %s: %w", path, err)
	}
	return nil
}

// RegisterFlags binds every setting to a flag of the same name as its YAML
// key, with c's current values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Func("node-id", "broker node id (default "+strconv.Itoa(int(c.NodeID))+")", func(s string) error {
		v, err := strconv.ParseInt(s, 10, 32)
		c.NodeID = int32(v)
		return err
	})
	fs.StringVar(&c.ClusterID, "cluster-id", c.ClusterID, "cluster id (generated and kept in the data dir when empty)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "Kafka listener host:port")
	fs.StringVar(&c.Advertise, "advertise", c.Advertise, "host:port advertised to clients (default: the listener's)")
	fs.StringVar(&c.HTTPListen, "http-listen", c.HTTPListen, "HTTP host:port for /healthz and /readyz (empty: off)")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve Go profiles under /debug/pprof/ on http-listen (unauthenticated: only where untrusted clients cannot reach it)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.Rack, "rack", c.Rack, "rack of this broker")
	fs.StringVar(&c.Cell, "cell", c.Cell, "cell of this broker")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for partition logs and broker state")
	fs.Func("socket-request-max-bytes", "largest request accepted, in bytes", func(s string) error {
		v, err := strconv.ParseInt(s, 10, 32)
		c.SocketRequestMaxBytes = int32(v)
		return err
	})
	fs.BoolVar(&c.AutoCreateTopics, "auto-create-topics", c.AutoCreateTopics, "create unknown topics on Metadata requests")
	fs.Func("num-partitions", "partitions of auto-created topics", func(s string) error {
		v, err := strconv.ParseInt(s, 10, 32)
		c.NumPartitions = int32(v)
		return err
	})
	fs.DurationVar(&c.RetentionCheckInterval, "retention-check-interval", c.RetentionCheckInterval, "how often retention and time-based rolling run")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long shutdown waits for in-flight requests")
	fs.Func("controllers", "controller quorum HTTP addresses, host:port,... (empty: run a single-node quorum in this process)", func(s string) error {
		c.Controllers = nil
		for _, a := range strings.Split(s, ",") {
			if a = strings.TrimSpace(a); a != "" {
				c.Controllers = append(c.Controllers, a)
			}
		}
		return nil
	})
	fs.StringVar(&c.ControllerToken, "controller-token", c.ControllerToken, "the controller quorum's admin token")
	fs.DurationVar(&c.BrokerHeartbeatInterval, "broker-heartbeat-interval", c.BrokerHeartbeatInterval, "how often the broker heartbeats to the controller quorum")
	fs.DurationVar(&c.BrokerSessionTimeout, "broker-session-timeout", c.BrokerSessionTimeout, "combined mode: how long the embedded quorum waits for a heartbeat before fencing a broker")
	fs.DurationVar(&c.DiskCanaryInterval, "disk-canary-interval", c.DiskCanaryInterval, "how often the disk canary writes and fsyncs a small file in the data directory")
	fs.BoolVar(&c.RequestMetrics, "request-metrics", c.RequestMetrics, "measure every request: latency by stage, sizes, errors, per client and per topic")
	fs.IntVar(&c.MetricsMaxClients, "metrics-max-clients", c.MetricsMaxClients, "client identities (software, version, client id) with their own series, the most active; the rest are labelled other")
	fs.BoolVar(&c.Staging, "staging", c.Staging, "allow fault injection through the admin API (staging only, never production)")
	fs.StringVar(&c.AdminToken, "admin-token", c.AdminToken, "bearer token the admin API (/admin/v1/...) requires; without one only loopback clients may call it (default $VIGIL_ADMIN_TOKEN)")
	fs.StringVar(&c.TracingEndpoint, "tracing-endpoint", c.TracingEndpoint, "OTLP/HTTP endpoint to export spans to, e.g. http://localhost:4318 (empty: tracing off)")
	fs.Float64Var(&c.TracingSampleRatio, "tracing-sample-ratio", c.TracingSampleRatio, "fraction of requests traced when their records carry no traceparent (those with one follow its sampled flag)")
	fs.IntVar(&c.MetricsMaxTopics, "metrics-max-topics", c.MetricsMaxTopics, "topics with their own series, the most active; the rest are labelled other")
	fs.BoolVar(&c.MetricsNativeHistograms, "metrics-native-histograms", c.MetricsNativeHistograms, "give the request and storage histograms native (sparse) buckets as well as the classic ones; costs CPU on every request")
	fs.DurationVar(&c.ReplicaLagTimeMax, "replica-lag-time-max", c.ReplicaLagTimeMax, "how long a follower may lag before it leaves the ISR")
	fs.Float64Var(&c.ReplicaReassignmentThrottleBytesPerSecond, "replica-reassignment-throttle-bytes-per-second", c.ReplicaReassignmentThrottleBytesPerSecond,
		"limit on the bytes this broker's leaders send to replicas being added by partition reassignments (not yet in the ISR), all together, bytes per second; in-sync followers are never throttled (0: unlimited)")
	fs.Func("default-replication-factor", "replication factor of topics created without one", func(s string) error {
		v, err := strconv.ParseInt(s, 10, 16)
		c.DefaultReplicationFactor = int16(v)
		return err
	})
	fs.Func("offsets-topic-replication-factor", "replication factor of __consumer_offsets when it is created", func(s string) error {
		v, err := strconv.ParseInt(s, 10, 16)
		c.OffsetsTopicReplicationFactor = int16(v)
		return err
	})
	int32Flag(fs, "offsets-topic-num-partitions", "partitions of __consumer_offsets when it is created", &c.OffsetsTopicPartitions)
	fs.DurationVar(&c.GroupMinSessionTimeout, "group-min-session-timeout", c.GroupMinSessionTimeout, "shortest session timeout a classic group member may ask for")
	fs.DurationVar(&c.GroupMaxSessionTimeout, "group-max-session-timeout", c.GroupMaxSessionTimeout, "longest session timeout a classic group member may ask for")
	fs.DurationVar(&c.GroupInitialRebalanceDelay, "group-initial-rebalance-delay", c.GroupInitialRebalanceDelay, "delay of the first rebalance of an empty group, so members starting together join one generation")
	fs.IntVar(&c.GroupMaxSize, "group-max-size", c.GroupMaxSize, "most members of a classic group (0: unlimited)")
	fs.DurationVar(&c.OffsetsRetention, "offsets-retention", c.OffsetsRetention, "how long committed offsets of an empty group are kept")
	fs.DurationVar(&c.OffsetsRetentionCheckInterval, "offsets-retention-check-interval", c.OffsetsRetentionCheckInterval, "how often expired offsets are removed")
	fs.IntVar(&c.OffsetMetadataMaxBytes, "offset-metadata-max-bytes", c.OffsetMetadataMaxBytes, "largest commit metadata string")
	fs.DurationVar(&c.GroupConsumerSessionTimeout, "group-consumer-session-timeout", c.GroupConsumerSessionTimeout, "session timeout of KIP-848 consumer group members")
	fs.DurationVar(&c.GroupConsumerHeartbeat, "group-consumer-heartbeat-interval", c.GroupConsumerHeartbeat, "heartbeat interval told to KIP-848 consumer group members")
	fs.IntVar(&c.GroupConsumerMaxSize, "group-consumer-max-size", c.GroupConsumerMaxSize, "most members of a KIP-848 consumer group (0: unlimited)")
	fs.IntVar(&c.GroupLagTopN, "group-lag-top-n", c.GroupLagTopN, "consumer groups reported by name in vigil_group_lag_records (the rest are summed as group=\"other\")")
	fs.IntVar(&c.LogCleanerThreads, "log-cleaner-threads", c.LogCleanerThreads, "partitions compacted at once (0: no log compaction)")
	fs.Float64Var(&c.LogCleanerIOMaxBytesPerSecond, "log-cleaner-io-max-bytes-per-second", c.LogCleanerIOMaxBytesPerSecond, "limit on the log cleaner's disk reads and writes, bytes per second (0: unlimited)")
	fs.Int64Var(&c.LogCleanerDedupeBufferSize, "log-cleaner-dedupe-buffer-size", c.LogCleanerDedupeBufferSize, "memory for the log cleaner's key maps, in bytes, shared by its threads")
	fs.DurationVar(&c.LogCleanerBackoff, "log-cleaner-backoff", c.LogCleanerBackoff, "how long the log cleaner waits when no partition needs cleaning")
	topicDefault := func(s string) error {
		for i := 0; i < len(s); i++ {
			if s[i] == '=' {
				if c.TopicDefaults == nil {
					c.TopicDefaults = map[string]string{}
				}
				c.TopicDefaults[s[:i]] = s[i+1:]
				return nil
			}
		}
		return fmt.Errorf("want name=value, got %q", s)
	}
	fs.Func("topic-defaults", "topic config default as name=value (repeatable), e.g. flush.messages=1", topicDefault)
	fs.Func("topic-default", "same as --topic-defaults", topicDefault)
	c.TelemetryConfig.registerFlags(fs)
}

// Validate checks the configuration and returns an error saying what to fix.
func (c *Config) Validate() error {
	if c.NodeID < 0 {
		return fmt.Errorf("node-id must be >= 0, got %d", c.NodeID)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil && c.LogLevel != "" {
		return fmt.Errorf("log-level must be debug, info, warn or error, got %q", c.LogLevel)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen must be host:port: %v", err)
	}
	if c.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
			return fmt.Errorf("advertise must be host:port: %v", err)
		}
	}
	if c.DataDir == "" {
		return errors.New("data-dir must be set")
	}
	if c.SocketRequestMaxBytes < 1024 {
		return fmt.Errorf("socket-request-max-bytes must be at least 1024, got %d", c.SocketRequestMaxBytes)
	}
	if c.NumPartitions < 1 {
		return fmt.Errorf("num-partitions must be at least 1, got %d", c.NumPartitions)
	}
	if c.RetentionCheckInterval <= 0 {
		return fmt.Errorf("retention-check-interval must be positive, got %v", c.RetentionCheckInterval)
	}
	for _, a := range c.Controllers {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("controllers: %q is not host:port: %v", a, err)
		}
	}
	if c.BrokerHeartbeatInterval <= 0 || c.BrokerSessionTimeout <= c.BrokerHeartbeatInterval {
		return fmt.Errorf("broker-heartbeat-interval (%v) must be positive and shorter than broker-session-timeout (%v)", c.BrokerHeartbeatInterval, c.BrokerSessionTimeout)
	}
	if c.TracingSampleRatio < 0 || c.TracingSampleRatio > 1 {
		return fmt.Errorf("tracing-sample-ratio must be between 0 and 1, got %v", c.TracingSampleRatio)
	}
	if c.TracingEndpoint != "" {
		if u, err := url.Parse(c.TracingEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("tracing-endpoint must be an http:// or https:// URL such as http://localhost:4318, got %q", c.TracingEndpoint)
		}
	}
	if c.MetricsMaxClients < 0 || c.MetricsMaxTopics < 0 {
		return fmt.Errorf("metrics-max-clients and metrics-max-topics must not be negative, got %d and %d", c.MetricsMaxClients, c.MetricsMaxTopics)
	}
	if c.DiskCanaryInterval <= 0 {
		return fmt.Errorf("disk-canary-interval must be positive, got %v", c.DiskCanaryInterval)
	}
	if c.ReplicaLagTimeMax <= 0 {
		return fmt.Errorf("replica-lag-time-max must be positive, got %v", c.ReplicaLagTimeMax)
	}
	if c.DefaultReplicationFactor < 1 || c.OffsetsTopicReplicationFactor < 1 {
		return fmt.Errorf("default-replication-factor and offsets-topic-replication-factor must be at least 1, got %d and %d", c.DefaultReplicationFactor, c.OffsetsTopicReplicationFactor)
	}
	if c.OffsetsTopicPartitions < 1 || c.OffsetsTopicPartitions > maxPartitions {
		return fmt.Errorf("offsets-topic-num-partitions must be 1..%d, got %d", maxPartitions, c.OffsetsTopicPartitions)
	}
	if c.GroupMinSessionTimeout <= 0 || c.GroupMaxSessionTimeout < c.GroupMinSessionTimeout {
		return fmt.Errorf("group-min-session-timeout (%v) must be positive and at most group-max-session-timeout (%v)", c.GroupMinSessionTimeout, c.GroupMaxSessionTimeout)
	}
	if c.GroupInitialRebalanceDelay < 0 {
		return fmt.Errorf("group-initial-rebalance-delay must not be negative, got %v", c.GroupInitialRebalanceDelay)
	}
	if c.GroupMaxSize < 0 || c.GroupConsumerMaxSize < 0 {
		return errors.New("group-max-size and group-consumer-max-size must not be negative (0 means unlimited)")
	}
	for name, d := range map[string]time.Duration{
		"offsets-retention":                 c.OffsetsRetention,
		"offsets-retention-check-interval":  c.OffsetsRetentionCheckInterval,
		"group-consumer-session-timeout":    c.GroupConsumerSessionTimeout,
		"group-consumer-heartbeat-interval": c.GroupConsumerHeartbeat,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, got %v", name, d)
		}
	}
	if c.GroupConsumerHeartbeat >= c.GroupConsumerSessionTimeout {
		return fmt.Errorf("group-consumer-heartbeat-interval (%v) must be shorter than group-consumer-session-timeout (%v)", c.GroupConsumerHeartbeat, c.GroupConsumerSessionTimeout)
	}
	if c.GroupLagTopN < 0 {
		return fmt.Errorf("group-lag-top-n must not be negative, got %d", c.GroupLagTopN)
	}
	if c.OffsetMetadataMaxBytes < 0 {
		return fmt.Errorf("offset-metadata-max-bytes must not be negative, got %d", c.OffsetMetadataMaxBytes)
	}
	if c.LogCleanerThreads < 0 || c.LogCleanerThreads > 64 {
		return fmt.Errorf("log-cleaner-threads must be in [0, 64], got %d", c.LogCleanerThreads)
	}
	if !(c.ReplicaReassignmentThrottleBytesPerSecond >= 0) {
		return fmt.Errorf("replica-reassignment-throttle-bytes-per-second must be >= 0 (0: unlimited), got %v", c.ReplicaReassignmentThrottleBytesPerSecond)
	}
	if !(c.LogCleanerIOMaxBytesPerSecond >= 0) {
		return fmt.Errorf("log-cleaner-io-max-bytes-per-second must be >= 0 (0: unlimited), got %v", c.LogCleanerIOMaxBytesPerSecond)
	}
	if c.LogCleanerDedupeBufferSize < 1<<20 {
		return fmt.Errorf("log-cleaner-dedupe-buffer-size must be at least 1 MiB, got %d", c.LogCleanerDedupeBufferSize)
	}
	if c.LogCleanerBackoff <= 0 {
		return fmt.Errorf("log-cleaner-backoff must be positive, got %v", c.LogCleanerBackoff)
	}
	for name, value := range c.TopicDefaults {
		if _, err := parseTopicConfig(name, value); err != nil {
			return fmt.Errorf("topic-defaults: %v", err)
		}
	}
	if err := checkTopicConfigs(nil, c.TopicDefaults); err != nil {
		return fmt.Errorf("topic-defaults: %v", err)
	}
	if err := c.TelemetryConfig.validate(); err != nil {
		return err
	}
	return nil
}

// int32Flag binds an int32 setting to a flag.
func int32Flag(fs *flag.FlagSet, name, usage string, p *int32) {
	fs.Func(name, usage+" (default "+strconv.Itoa(int(*p))+")", func(s string) error {
		v, err := strconv.ParseInt(s, 10, 32)
		if err == nil {
			*p = int32(v)
		}
		return err
	})
}

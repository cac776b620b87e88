package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Defaults used by [DefaultConfig], by the command-line flags, and for the
// zero value of the corresponding [Config] fields.
const (
	DefaultBroker            = "127.0.0.1:9092"
	DefaultTopic             = "vigil-bench"
	DefaultPartitions        = 6
	DefaultReplicationFactor = 1
	DefaultProducers         = 4
	DefaultConsumers         = 1
	DefaultRecordSize        = 1024
	DefaultAcks              = "all"
	DefaultCompression       = "none"
	DefaultBatchMaxBytes     = 1 << 20
	DefaultDuration          = 10 * time.Second
	DefaultDrainTimeout      = 30 * time.Second
	DefaultBalancer          = "range"
	DefaultCommits           = 100

	// DefaultGOGC is the garbage collector target the command line runs
	// the clients with. A consumer's live heap is about one fetch
	// response (a few MiB, which franz-go allocates afresh for every
	// response) and it allocates the next one at once, so at Go's default
	// of 100 it collects after almost every fetch: a third of the single
	// consumer's CPU went to the collector and to faulting in the memory
	// it had just handed back, and at 5,000 records/s the e2e clients
	// collected 15 times a second, each collection a millisecond-scale
	// stall somewhere in the e2e tail (docs/benchmarks.md, section 4). 400
	// is what a throughput- or latency-minded Go program with a small
	// heap would set; the heap grows to about five times what is live.
	DefaultGOGC = 400

	// bufferedBytesBudget is the per-producer budget used to size
	// MaxBufferedRecords when Config.MaxBufferedRecords is zero: enough
	// to keep several full batches per partition in flight. A larger
	// buffer adds no throughput; in a saturated run it only adds queueing
	// time (buffer / throughput) to every record's produce latency.
	bufferedBytesBudget = 8 << 20
)

// Config describes one benchmark run. Use [DefaultConfig] as a starting
// point; for the fields documented as such, the zero value also means the
// default, so Config{Brokers: []string{addr}} is a valid produce config.
type Config struct {
	// Brokers are the seed brokers (host:port). Zero: [DefaultBroker].
	Brokers []string
	// Topic is the topic to produce to and consume from. It is created
	// with Partitions and ReplicationFactor if it does not exist; an
	// existing topic is used as it is. Zero: [DefaultTopic].
	Topic string
	// Partitions is the partition count used when creating the topic.
	// Zero: [DefaultPartitions].
	Partitions int32
	// ReplicationFactor is used when creating the topic. Zero:
	// [DefaultReplicationFactor].
	ReplicationFactor int16

	// Producers is the number of producer clients (each its own
	// kgo.Client and goroutine). Zero: [DefaultProducers].
	Producers int
	// Consumers is the number of consumer clients; partitions are
	// split between them round-robin. Zero: [DefaultConsumers].
	Consumers int
	// RecordSize is the value size in bytes (records have no key).
	// E2E needs at least 32 bytes for its stamp. Zero: [DefaultRecordSize].
	RecordSize int
	// Acks is "all" (idempotent producer), "1" or "0" (idempotence off,
	// as franz-go requires). Zero: [DefaultAcks].
	Acks string
	// Compression is none, gzip, snappy, lz4 or zstd. Zero: none.
	Compression string
	// Linger is kgo.ProducerLinger; 0 sends as soon as possible.
	Linger time.Duration
	// BatchMaxBytes is kgo.ProducerBatchMaxBytes. Keep it at or below the
	// broker's max.message.bytes. Zero: [DefaultBatchMaxBytes].
	BatchMaxBytes int32
	// MaxBufferedRecords is kgo.MaxBufferedRecords per producer: how many
	// records may wait in the client before Produce blocks. Zero: 8 MiB
	// worth of records, clamped to [1 000, 1 000 000].
	MaxBufferedRecords int

	// Duration bounds the measured phase (after Warmup). Records bounds
	// the number of measured records (across all producers, or for
	// Consume across all consumers). Whichever is reached first stops
	// the run. For Produce and E2E, when both are zero Duration is
	// [DefaultDuration]; for Consume, when both are zero the consumers
	// read until the end offsets listed when the run started.
	Duration time.Duration
	Records  int64
	// Rate is the target produce rate in records per second across all
	// producers, paced by a token bucket; 0 means as fast as possible.
	// E2E requires Rate > 0.
	Rate float64
	// Warmup runs the workload for this long before measuring. Records
	// sent during the warmup are excluded from counts, throughput and
	// latency, but E2E still checks them for loss and duplication.
	Warmup time.Duration

	// ProduceFirst makes Consume first produce this many records (with
	// the producer settings above; not measured) so there is data to read.
	ProduceFirst int64
	// DrainTimeout bounds how long E2E waits, after the producers
	// finished, for the consumers to read everything that was
	// acknowledged. Records not read by then count as missing. Zero:
	// [DefaultDrainTimeout].
	DrainTimeout time.Duration

	// BrokerPID, if non-zero, is a local broker process whose CPU time
	// (utime+stime from /proc/PID/stat) is sampled around the measured
	// phase to compute CPU-seconds per GB moved.
	BrokerPID int
	// BrokerMetricsURL, used when BrokerPID is zero, is a Prometheus
	// text endpoint whose process_cpu_seconds_total is sampled instead.
	BrokerMetricsURL string

	// Progress, if non-nil, receives a one-line progress report every
	// ProgressInterval (zero: one second).
	Progress         io.Writer
	ProgressInterval time.Duration

	// ClientOpts are appended to every franz-go client the benchmark
	// creates (producers, consumers and the admin client), e.g. for TLS
	// or SASL. They are applied last and can override the benchmark's
	// own settings.
	ClientOpts []kgo.Opt

	// CPUProfile, if set, is a file for a Go CPU profile of the client
	// (Run only).
	CPUProfile string
	// MemProfile, if set, is a file for a Go allocation profile of the
	// client, written when the run ends (Run only).
	MemProfile string

	// GOGC, if non-zero, is the Go garbage collector's target percentage
	// for the client process (Run only; debug.SetGCPercent, negative
	// turns the collector off). The command line sets [DefaultGOGC]
	// unless the GOGC environment variable or --gogc says otherwise.
	GOGC int

	// ClientTelemetry lets the benchmark's clients push KIP-714 client
	// metrics, as franz-go does by default (at the interval the broker
	// asks for). Off by default, so the telemetry's cost is not part of
	// the numbers unless asked for.
	ClientTelemetry bool

	// Group benchmark: GroupID is the consumer group (empty: a new one
	// per run), Balancer one of range, roundrobin, sticky,
	// cooperative-sticky (classic protocol) or uniform, server-range
	// (KIP-848 server-side assignors), and Commits the synchronous commits
	// each member makes once the group is stable. Zero: a new group,
	// [DefaultBalancer], [DefaultCommits].
	GroupID  string
	Balancer string
	Commits  int
}

// DefaultConfig returns the configuration that the command line uses when no
// flags are given.
func DefaultConfig() Config {
	return Config{
		Brokers:           []string{DefaultBroker},
		Topic:             DefaultTopic,
		Partitions:        DefaultPartitions,
		ReplicationFactor: DefaultReplicationFactor,
		Producers:         DefaultProducers,
		Consumers:         DefaultConsumers,
		RecordSize:        DefaultRecordSize,
		Acks:              DefaultAcks,
		Compression:       DefaultCompression,
		BatchMaxBytes:     DefaultBatchMaxBytes,
		DrainTimeout:      DefaultDrainTimeout,
		Balancer:          DefaultBalancer,
		Commits:           DefaultCommits,
	}
}

// withDefaults returns c with zero fields replaced by their defaults and
// validated for the given mode.
func (c Config) withDefaults(mode string) (Config, error) {
	if len(c.Brokers) == 0 {
		c.Brokers = []string{DefaultBroker}
	}
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = DefaultReplicationFactor
	}
	if c.Producers == 0 {
		c.Producers = DefaultProducers
	}
	if c.Consumers == 0 {
		c.Consumers = DefaultConsumers
	}
	if c.RecordSize == 0 {
		c.RecordSize = DefaultRecordSize
	}
	if c.Acks == "" {
		c.Acks = DefaultAcks
	}
	if c.Acks == "-1" {
		c.Acks = "all"
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	c.Compression = strings.ToLower(c.Compression)
	if c.BatchMaxBytes == 0 {
		c.BatchMaxBytes = DefaultBatchMaxBytes
	}
	if c.MaxBufferedRecords == 0 {
		c.MaxBufferedRecords = min(max(bufferedBytesBudget/max(c.RecordSize, 1), 1_000), 1_000_000)
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = time.Second
	}
	if c.Balancer == "" {
		c.Balancer = DefaultBalancer
	}
	if c.Commits == 0 {
		c.Commits = DefaultCommits
	}
	if mode != modeConsume && mode != modeGroup && c.Duration == 0 && c.Records == 0 {
		c.Duration = DefaultDuration
	}
	return c, c.validate(mode)
}

func (c Config) validate(mode string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, b := range c.Brokers {
		if b == "" || !strings.Contains(b, ":") {
			bad("broker %q: want HOST:PORT", b)
		}
	}
	if c.Partitions < 0 {
		bad("partitions must be positive, got %d", c.Partitions)
	}
	if c.ReplicationFactor < 0 {
		bad("replication factor must be positive, got %d", c.ReplicationFactor)
	}
	if c.Producers < 0 {
		bad("producers must be positive, got %d", c.Producers)
	}
	if c.Consumers < 0 {
		bad("consumers must be positive, got %d", c.Consumers)
	}
	if !slices.Contains(groupBalancers, c.Balancer) {
		bad("balancer %q: want one of %s", c.Balancer, strings.Join(groupBalancers, ", "))
	}
	if c.Commits < 0 {
		bad("commits must not be negative, got %d", c.Commits)
	}
	if c.RecordSize < 0 {
		bad("record size must be positive, got %d", c.RecordSize)
	}
	if mode == modeE2E && c.RecordSize < stampLen {
		bad("e2e needs a record size of at least %d bytes to carry its stamp, got %d", stampLen, c.RecordSize)
	}
	if _, err := parseAcks(c.Acks); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseCompression(c.Compression); err != nil {
		errs = append(errs, err)
	}
	if c.Linger < 0 {
		bad("linger must not be negative, got %v", c.Linger)
	}
	if c.BatchMaxBytes < 512 || c.BatchMaxBytes > 1<<30 {
		bad("batch max bytes must be in [512, 1073741824], got %d", c.BatchMaxBytes)
	}
	if c.MaxBufferedRecords < 0 {
		bad("max buffered records must be positive, got %d", c.MaxBufferedRecords)
	}
	if c.Duration < 0 {
		bad("duration must not be negative, got %v", c.Duration)
	}
	if c.Records < 0 {
		bad("records must not be negative, got %d", c.Records)
	}
	if c.Rate < 0 {
		bad("rate must not be negative, got %v", c.Rate)
	}
	if mode == modeE2E && c.Rate <= 0 {
		bad("e2e needs a fixed --rate (records/s across all producers): end-to-end latency is only meaningful below saturation, so measure the maximum with 'produce' first and use a fraction of it")
	}
	if c.Warmup < 0 {
		bad("warmup must not be negative, got %v", c.Warmup)
	}
	if c.ProduceFirst < 0 {
		bad("produce-first must not be negative, got %d", c.ProduceFirst)
	}
	if c.DrainTimeout < 0 {
		bad("drain timeout must not be negative, got %v", c.DrainTimeout)
	}
	if c.BrokerPID < 0 {
		bad("broker pid must be positive, got %d", c.BrokerPID)
	}
	return errors.Join(errs...)
}

func parseAcks(s string) (kgo.Acks, error) {
	switch s {
	case "all", "-1":
		return kgo.AllISRAcks(), nil
	case "1":
		return kgo.LeaderAck(), nil
	case "0":
		return kgo.NoAck(), nil
	}
	return kgo.Acks{}, fmt.Errorf("acks %q: want one of all, 1, 0", s)
}

func parseCompression(s string) (kgo.CompressionCodec, error) {
	switch s {
	case "none", "":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("compression %q: want one of none, gzip, snappy, lz4, zstd", s)
}

// baseOpts are the options shared by every client.
func (c Config) baseOpts(clientID string) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(clientID),
	}
	if !c.ClientTelemetry {
		opts = append(opts, kgo.DisableClientMetrics())
	}
	return opts
}

// producerOpts builds a producer client's options. c must be defaulted.
func (c Config) producerOpts(i int) []kgo.Opt {
	acks, _ := parseAcks(c.Acks)
	codec, _ := parseCompression(c.Compression)
	opts := append(c.baseOpts(fmt.Sprintf("vigil-bench-producer-%d", i)),
		kgo.DefaultProduceTopic(c.Topic),
		kgo.RequiredAcks(acks),
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerLinger(c.Linger),
		kgo.ProducerBatchMaxBytes(c.BatchMaxBytes),
		kgo.MaxBufferedRecords(c.MaxBufferedRecords),
		// Fail fast rather than hang forever on a dead broker; a
		// benchmark that cannot deliver in a minute has failed.
		kgo.RecordDeliveryTimeout(time.Minute),
	)
	if c.Acks != "all" {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	return append(opts, c.ClientOpts...)
}

// consumerOpts builds a consumer client's options for the given starting
// offsets. c must be defaulted.
func (c Config) consumerOpts(i int, start map[int32]kgo.Offset) []kgo.Opt {
	opts := append(c.baseOpts(fmt.Sprintf("vigil-bench-consumer-%d", i)),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c.Topic: start}),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(16<<20),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	return append(opts, c.ClientOpts...)
}

func (c Config) adminOpts() []kgo.Opt {
	// kadm answers metadata from a cache younger than MetadataMinAge
	// (default 5s); keep it short so a just-created topic shows up.
	opts := append(c.baseOpts("vigil-bench-admin"), kgo.MetadataMinAge(100*time.Millisecond))
	return append(opts, c.ClientOpts...)
}

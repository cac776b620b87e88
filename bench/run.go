package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

const usageHead = `Usage: vigil bench produce|consume|e2e|group [flags]

Load generator for any Kafka-compatible cluster (Vigil, Apache Kafka, ...).

Modes:
  produce  write records as fast as possible (or at --rate); report throughput
           and produce latency (Produce call to acknowledgement)
  consume  read the topic from the start of every partition up to the end
           offsets listed at the start; report throughput. The topic must hold
           data: use --produce-first N, or run 'produce' first
  e2e      produce at a fixed --rate while consuming; report end-to-end latency
           (Produce call to consumer receipt) and check that every acknowledged
           record arrives exactly once (missing and duplicate counts)
  group    start --consumers consumers in a new group at once; report the time
           to a stable assignment and the latency of synchronous commits

The measured phase lasts --duration (default 10s), or until --records records,
whichever comes first, after --warmup. MB = 10^6 bytes, GB = 10^9 bytes, of
record payload (no protocol overhead).

Examples:
  vigil bench produce --brokers 127.0.0.1:9092 --duration 30s --acks all
  vigil bench produce --records 1000000 --compression zstd --broker-pid 4242
  vigil bench consume --produce-first 2000000 --consumers 2
  vigil bench e2e --rate 20000 --duration 1m --warmup 5s --json
  vigil bench group --consumers 6 --balancer cooperative-sticky --commits 200
`

// Run runs `vigil bench` with args (the words after "bench": the mode, then
// flags). It prints the result to stdout, as text or, with --json, as one
// JSON object (see the package documentation); progress goes to stderr.
// -h prints the usage to stdout and returns nil. Errors, including flag
// errors, are returned, not printed: the caller prints them and exits
// non-zero. If ctx is cancelled mid-run, the partial result is printed and
// ctx's error returned.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("vigil bench: missing mode: want produce, consume or e2e (see 'vigil bench -h')")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usageHead)
		fmt.Fprintln(stdout, "\nRun 'vigil bench MODE -h' for the flags.")
		return nil
	}
	mode, cfg, jsonOut, err := parseArgs(args, stdout)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if cfg.ProgressInterval > 0 {
		cfg.Progress = stderr
	}

	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return fmt.Errorf("vigil bench: --cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("vigil bench: --cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.GOGC != 0 {
		debug.SetGCPercent(cfg.GOGC)
	}
	if cfg.MemProfile != "" {
		f, err := os.Create(cfg.MemProfile)
		if err != nil {
			return fmt.Errorf("vigil bench: --memprofile: %w", err)
		}
		defer func() {
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				fmt.Fprintf(stderr, "vigil bench: --memprofile: %v\n", err)
			}
			f.Close()
		}()
	}
	var res *Result
	switch mode {
	case modeProduce:
		res, err = Produce(ctx, cfg)
	case modeConsume:
		res, err = Consume(ctx, cfg)
	case modeE2E:
		res, err = E2E(ctx, cfg)
	case modeGroup:
		res, err = Group(ctx, cfg)
	}
	if res != nil {
		if jsonOut {
			enc := json.NewEncoder(stdout)
			if werr := enc.Encode(res); werr != nil && err == nil {
				err = werr
			}
		} else {
			res.WriteText(stdout)
		}
	}
	if err != nil {
		return fmt.Errorf("vigil bench %s: %w", mode, err)
	}
	return nil
}

// parseArgs parses the mode and flags into a Config. help is written to
// usageOut when -h is given, in which case the error is flag.ErrHelp.
func parseArgs(args []string, usageOut io.Writer) (mode string, cfg Config, jsonOut bool, err error) {
	if len(args) == 0 {
		return "", cfg, false, errors.New("missing mode: want produce, consume or e2e")
	}
	mode = args[0]
	switch mode {
	case modeProduce, modeConsume, modeE2E, modeGroup:
	default:
		return "", cfg, false, fmt.Errorf("vigil bench: unknown mode %q: want produce, consume, e2e or group (see 'vigil bench -h')", mode)
	}
	hint := fmt.Sprintf("see 'vigil bench %s -h'", mode)

	cfg = DefaultConfig()
	fs := flag.NewFlagSet("vigil bench "+mode, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, not printed
	brokers := fs.String("brokers", DefaultBroker, "comma-separated seed brokers, `HOST:PORT,...`")
	fs.StringVar(&cfg.Topic, "topic", cfg.Topic, "topic to use; created if missing")
	partitions := fs.Int("partitions", int(cfg.Partitions), "partitions when creating the topic (an existing topic is used as is)")
	rf := fs.Int("replication-factor", int(cfg.ReplicationFactor), "replication factor when creating the topic")
	fs.IntVar(&cfg.Producers, "producers", cfg.Producers, "producer clients, each with its own connections")
	fs.IntVar(&cfg.Consumers, "consumers", cfg.Consumers, "consumer clients; partitions are split between them")
	fs.IntVar(&cfg.RecordSize, "record-size", cfg.RecordSize, "record value size in `bytes` (no key)")
	fs.Var(choice{&cfg.Acks, []string{"all", "1", "0"}}, "acks", "required acks: all (idempotent producer), 1 or 0 (idempotence off)")
	fs.Var(choice{&cfg.Compression, []string{"none", "gzip", "snappy", "lz4", "zstd"}}, "compression", "batch compression: none, gzip, snappy, lz4 or zstd")
	fs.DurationVar(&cfg.Linger, "linger", 0, "producer linger; 0 sends as soon as possible")
	batch := fs.Int("batch-max-bytes", int(cfg.BatchMaxBytes), "max record batch `bytes`; keep <= the broker's max.message.bytes")
	fs.IntVar(&cfg.MaxBufferedRecords, "max-buffered-records", 0, "records each producer may buffer before Produce blocks (0: 8 MiB worth)")
	duration := fs.Duration("duration", DefaultDuration, "length of the measured phase (consume: default until the end offsets)")
	fs.Int64Var(&cfg.Records, "records", 0, "stop after `N` measured records (across all producers, or consumers)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "target produce rate in `records/s` across all producers; 0 = as fast as possible (e2e: required)")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "run this long before measuring; warmup records are not counted")
	fs.Int64Var(&cfg.ProduceFirst, "produce-first", 0, "consume: first produce `N` records (not measured)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "e2e: how long to wait for the consumers to catch up at the end; consume: stop after this long without records")
	fs.IntVar(&cfg.BrokerPID, "broker-pid", 0, "local broker `PID`: report its CPU-seconds per GB from /proc/PID/stat")
	fs.StringVar(&cfg.BrokerMetricsURL, "broker-metrics", "", "broker Prometheus metrics `URL`: report CPU-seconds per GB from process_cpu_seconds_total (if no --broker-pid)")
	progress := fs.Duration("progress", time.Second, "print progress to stderr this often; 0 = never; off with --json unless given")
	fs.BoolVar(&jsonOut, "json", false, "print the result as one JSON object")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a Go CPU profile of the benchmark client to `FILE`")
	fs.StringVar(&cfg.MemProfile, "memprofile", "", "write a Go allocation profile of the benchmark client to `FILE` at the end")
	fs.IntVar(&cfg.GOGC, "gogc", envGOGC(), "the clients' Go garbage collector target `percent` (debug.SetGCPercent; -1: off; default: $GOGC if set, else 400)")
	fs.StringVar(&cfg.GroupID, "group", "", "group: consumer group `ID` (default: a new group per run)")
	fs.Var(choice{&cfg.Balancer, groupBalancers}, "balancer", "group: range, roundrobin, sticky, cooperative-sticky (classic protocol), uniform or server-range (KIP-848)")
	fs.IntVar(&cfg.Commits, "commits", DefaultCommits, "group: synchronous commits per member once the group is stable")
	fs.BoolVar(&cfg.ClientTelemetry, "client-telemetry", false, "let the clients push KIP-714 client metrics, as franz-go does by default (off: the numbers exclude telemetry)")
	// The flag package calls Usage on every parse error; print it only
	// when asked for, and return errors with a pointer to -h instead.
	fs.Usage = func() {}

	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(usageOut, usageHead)
			fmt.Fprintf(usageOut, "\nFlags of 'vigil bench %s':\n", mode)
			fs.SetOutput(usageOut)
			fs.PrintDefaults()
			return mode, cfg, false, err
		}
		return mode, cfg, false, fmt.Errorf("vigil bench %s: %v (%s)", mode, err, hint)
	}
	if fs.NArg() > 0 {
		return mode, cfg, false, fmt.Errorf("vigil bench %s: unexpected argument %q: flags only (%s)", mode, fs.Arg(0), hint)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg.Brokers = nil
	for b := range strings.SplitSeq(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.Brokers = append(cfg.Brokers, b)
		}
	}
	if len(cfg.Brokers) == 0 {
		return mode, cfg, false, fmt.Errorf("vigil bench %s: --brokers is empty (%s)", mode, hint)
	}

	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	positive := func(name string, v int) {
		if v <= 0 {
			bad("--%s must be at least 1, got %d", name, v)
		}
	}
	positive("partitions", *partitions)
	positive("replication-factor", *rf)
	positive("producers", cfg.Producers)
	positive("consumers", cfg.Consumers)
	positive("record-size", cfg.RecordSize)
	if *partitions > 1<<31-1 {
		bad("--partitions is too large")
	}
	if *rf > 1<<15-1 {
		bad("--replication-factor is too large")
	}
	if *batch < 512 || *batch > 1<<30 {
		bad("--batch-max-bytes must be in [512, 1073741824], got %d", *batch)
	}
	cfg.Partitions, cfg.ReplicationFactor, cfg.BatchMaxBytes = int32(*partitions), int16(*rf), int32(*batch)

	cfg.Duration = *duration
	if !set["duration"] && (set["records"] || mode == modeConsume) {
		cfg.Duration = 0 // --records alone bounds the run
	}
	if set["duration"] && *duration <= 0 {
		bad("--duration must be positive, got %v", *duration)
	}
	if set["records"] && cfg.Records <= 0 {
		bad("--records must be at least 1, got %d", cfg.Records)
	}
	if set["produce-first"] && mode != modeConsume {
		bad("--produce-first only applies to consume")
	}
	if mode == modeE2E && cfg.Rate <= 0 {
		bad("e2e needs --rate > 0 (records/s across all producers): end-to-end latency is only meaningful below saturation; measure the maximum with 'produce' and use a fraction of it")
	}
	if mode == modeE2E && cfg.RecordSize < stampLen && cfg.RecordSize > 0 {
		bad("e2e needs --record-size of at least %d bytes to carry its stamp, got %d", stampLen, cfg.RecordSize)
	}
	if cfg.Rate < 0 {
		bad("--rate must not be negative, got %v", cfg.Rate)
	}
	if cfg.Warmup < 0 {
		bad("--warmup must not be negative, got %v", cfg.Warmup)
	}
	if cfg.Linger < 0 {
		bad("--linger must not be negative, got %v", cfg.Linger)
	}
	if cfg.MaxBufferedRecords < 0 {
		bad("--max-buffered-records must not be negative, got %d", cfg.MaxBufferedRecords)
	}
	if cfg.ProduceFirst < 0 {
		bad("--produce-first must not be negative, got %d", cfg.ProduceFirst)
	}
	if cfg.DrainTimeout <= 0 {
		bad("--drain-timeout must be positive, got %v", cfg.DrainTimeout)
	}
	if cfg.BrokerPID < 0 {
		bad("--broker-pid must be positive, got %d", cfg.BrokerPID)
	}
	if cfg.BrokerMetricsURL != "" && !strings.HasPrefix(cfg.BrokerMetricsURL, "http://") && !strings.HasPrefix(cfg.BrokerMetricsURL, "https://") {
		bad("--broker-metrics must be an http:// or https:// URL, got %q", cfg.BrokerMetricsURL)
	}
	if *progress < 0 {
		bad("--progress must not be negative, got %v", *progress)
	}
	if len(errs) > 0 {
		return mode, cfg, false, fmt.Errorf("vigil bench %s: %s (%s)", mode, strings.Join(errs, "; "), hint)
	}

	cfg.ProgressInterval = *progress
	if jsonOut && !set["progress"] {
		cfg.ProgressInterval = 0
	}
	if _, err := cfg.withDefaults(mode); err != nil {
		return mode, cfg, false, fmt.Errorf("vigil bench %s: %v (%s)", mode, err, hint)
	}
	return mode, cfg, jsonOut, nil
}

// choice is a flag.Value that accepts one of a fixed set of strings.
type choice struct {
	v       *string
	allowed []string
}

func (c choice) String() string {
	if c.v == nil {
		return ""
	}
	return *c.v
}

func (c choice) Set(s string) error {
	for _, a := range c.allowed {
		if strings.EqualFold(s, a) {
			*c.v = a
			return nil
		}
	}
	if c.allowed[0] == "all" && s == "-1" {
		*c.v = "all"
		return nil
	}
	return fmt.Errorf("want one of %s", strings.Join(c.allowed, ", "))
}

// envGOGC is the --gogc default: the GOGC environment variable if it is
// set (the Go runtime has applied it already), else DefaultGOGC.
func envGOGC() int {
	switch v := os.Getenv("GOGC"); v {
	case "":
		return DefaultGOGC
	case "off":
		return -1
	default:
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		return DefaultGOGC
	}
}

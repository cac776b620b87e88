package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests run the real benchmark against a Kafka-protocol peer from
// startTestCluster. They assert counts and delivery, never speed.

// testCtx bounds a test so that a hang fails instead of stalling the suite.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func smallConfig(addr, topic string) Config {
	return Config{
		Brokers:    []string{addr},
		Topic:      topic,
		Partitions: 3,
		Producers:  2,
		Consumers:  2,
		RecordSize: 200,
	}
}

func TestProduceThenConsume(t *testing.T) {
	addr := startTestCluster(t)
	ctx := testCtx(t)
	cfg := smallConfig(addr, "produce-consume")
	cfg.Records = 3001          // not a multiple of the producer count
	cfg.BrokerPID = os.Getpid() // kfake runs in this process

	res, err := Produce(ctx, cfg)
	if err != nil {
		t.Fatalf("Produce: %v", err)
	}
	p := res.Produce
	if p == nil || p.Records != 3001 || p.Bytes != 3001*200 || p.Errors != 0 {
		t.Fatalf("produce stage: %+v", p)
	}
	if p.Latency == nil || p.Latency.Count != 3001 || p.Latency.P50 > p.Latency.P99 || p.Latency.P99 > p.Latency.Max || p.Latency.Min > p.Latency.P50 {
		t.Fatalf("produce latency: %+v", p.Latency)
	}
	if p.ElapsedSeconds <= 0 || p.RecordsPerSec <= 0 || p.MBPerSec <= 0 {
		t.Fatalf("produce rates: %+v", p)
	}
	if res.Consume != nil || res.E2E != nil {
		t.Fatalf("produce result has consume or e2e sections: %+v", res)
	}
	if c := res.BrokerCPU; c == nil || c.BytesMoved != p.Bytes || c.CPUSeconds < 0 || c.Source != "proc:"+itoa(os.Getpid()) {
		t.Fatalf("broker CPU: %+v (warnings %v)", c, res.Warnings)
	}
	checkHost(t, res)

	// Consume reads everything from the start.
	cres, err := Consume(ctx, cfg)
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	if c := cres.Consume; c == nil || c.Records != 3001 || c.Bytes != 3001*200 || c.Errors != 0 {
		t.Fatalf("consume stage: %+v", cres.Consume)
	}

	// A record bound stops the consumers at exactly that many.
	cfg.Records = 1000
	cfg.BrokerPID = 0
	cres, err = Consume(ctx, cfg)
	if err != nil {
		t.Fatalf("Consume --records: %v", err)
	}
	if cres.Consume.Records != 1000 || cres.Consume.Bytes != 1000*200 {
		t.Fatalf("consume --records 1000: %+v", cres.Consume)
	}

	// Producing again to the existing topic works and appends.
	cfg.Records = 500
	if res, err := Produce(ctx, cfg); err != nil || res.Produce.Records != 500 {
		t.Fatalf("second Produce: %v, %+v", err, res)
	}
}

func TestProduceSettings(t *testing.T) {
	addr := startTestCluster(t)
	ctx := testCtx(t)
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"acks1-lz4", func(c *Config) { c.Acks, c.Compression = "1", "lz4" }},
		{"acks0-snappy", func(c *Config) { c.Acks, c.Compression = "0", "snappy" }},
		{"acksall-zstd-linger", func(c *Config) { c.Compression, c.Linger = "zstd", time.Millisecond }},
		{"gzip-small-batches-paced", func(c *Config) {
			c.Compression, c.BatchMaxBytes, c.Rate, c.MaxBufferedRecords = "gzip", 4096, 5000, 100
		}},
		{"seeded-topic-one-producer", func(c *Config) { c.Topic, c.Producers = "vigil-bench-seeded", 1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig(addr, "settings-"+tc.name)
			cfg.Records = 500
			tc.change(&cfg)
			res, err := Produce(ctx, cfg)
			if err != nil {
				t.Fatalf("Produce: %v", err)
			}
			if res.Produce.Records != 500 || res.Produce.Errors != 0 {
				t.Fatalf("produce stage: %+v", res.Produce)
			}
			if want := cfg.Acks == "" || cfg.Acks == "all"; res.Settings.Idempotent != want {
				t.Errorf("settings: idempotent %v, want %v", res.Settings.Idempotent, want)
			}
			if cfg.Acks != "0" {
				// Everything acknowledged is readable.
				cres, err := Consume(ctx, cfg)
				if err != nil {
					t.Fatalf("Consume: %v", err)
				}
				if cres.Consume.Records != 500 {
					t.Fatalf("consumed %d records, want 500", cres.Consume.Records)
				}
			}
		})
	}
}

func TestConsumeEmptyTopic(t *testing.T) {
	addr := startTestCluster(t)
	_, err := Consume(testCtx(t), smallConfig(addr, "empty"))
	if err == nil || !strings.Contains(err.Error(), "--produce-first") {
		t.Fatalf("Consume of an empty topic: %v, want an error suggesting --produce-first", err)
	}
}

func TestE2E(t *testing.T) {
	addr := startTestCluster(t)
	ctx := testCtx(t)
	cfg := smallConfig(addr, "e2e")
	cfg.Partitions = 4
	cfg.Consumers = 5 // one more than there are partitions
	cfg.Rate = 2000
	cfg.Records = 2000 // about a second

	res, err := E2E(ctx, cfg)
	if err != nil {
		t.Fatalf("E2E: %v", err)
	}
	e := res.E2E
	if e == nil {
		t.Fatal("no e2e section")
	}
	if e.Expected != 2000 || e.Received != 2000 || e.Missing != 0 || e.Duplicates != 0 || e.OffsetGaps != 0 || e.Foreign != 0 || !e.Drained {
		t.Fatalf("delivery: %+v (warnings %v)", e, res.Warnings)
	}
	if e.Latency == nil || e.Latency.Count != 2000 || e.Latency.P50 > e.Latency.P999 || e.Latency.P999 > e.Latency.Max {
		t.Fatalf("e2e latency: %+v", e.Latency)
	}
	if res.Produce.Records != 2000 || res.Consume.Records != 2000 || res.Consume.Bytes != 2000*200 {
		t.Fatalf("stages: produce %+v consume %+v", res.Produce, res.Consume)
	}
	if res.Settings.TargetRate != 2000 || res.Settings.Partitions != 4 || res.Settings.Consumers != 4 || res.Settings.Producers != 2 {
		t.Fatalf("settings: %+v", res.Settings)
	}
}

func TestE2EWarmupAndOldData(t *testing.T) {
	addr := startTestCluster(t)
	ctx := testCtx(t)
	cfg := smallConfig(addr, "e2e-warmup")
	// Data already in the topic is not part of the check: e2e starts at
	// the end offsets.
	cfg.Records = 300
	if _, err := Produce(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Rate = 2000
	cfg.Records = 400
	cfg.Warmup = 200 * time.Millisecond
	cfg.Acks = "1"
	res, err := E2E(ctx, cfg)
	if err != nil {
		t.Fatalf("E2E: %v", err)
	}
	e := res.E2E
	// Warmup records are checked for delivery but not measured.
	if e.Missing != 0 || e.Duplicates != 0 || e.Foreign != 0 || e.Expected < 400 || e.Received != e.Expected || !e.Drained {
		t.Fatalf("delivery: %+v", e)
	}
	if res.Produce.Records != 400 || e.Latency.Count != 400 || res.Consume.Records != 400 {
		t.Fatalf("measured: produce %d, e2e latency samples %d, consumed %d; want 400 each",
			res.Produce.Records, e.Latency.Count, res.Consume.Records)
	}
}

func TestRunJSON(t *testing.T) {
	addr := startTestCluster(t)
	ctx := testCtx(t)

	run := func(args ...string) map[string]any {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := Run(ctx, append(args, "--brokers", addr, "--json"), &out, &errOut); err != nil {
			t.Fatalf("Run(%q): %v\nstderr: %s", args, err, errOut.String())
		}
		if errOut.Len() != 0 {
			t.Errorf("Run(%q) wrote to stderr with --json: %q", args, errOut.String())
		}
		if n := strings.Count(strings.TrimSpace(out.String()), "\n"); n != 0 {
			t.Errorf("--json output is %d lines, want one object on one line", n+1)
		}
		var m map[string]any
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatalf("--json output does not parse: %v\n%s", err, out.String())
		}
		return m
	}

	m := run("e2e", "--topic", "json-e2e", "--partitions", "2", "--producers", "2", "--rate", "1500", "--records", "1000", "--record-size", "64")
	for _, path := range []string{
		"mode", "config.brokers", "config.topic", "config.partitions", "config.replication_factor",
		"config.producers", "config.consumers", "config.record_size", "config.acks", "config.idempotent",
		"config.compression", "config.linger_ms", "config.batch_max_bytes", "config.target_rate",
		"config.duration_seconds", "config.target_records", "config.warmup_seconds",
		"produce.records", "produce.bytes", "produce.elapsed_seconds", "produce.records_per_sec",
		"produce.mb_per_sec", "produce.errors",
		"produce.latency_ms.count", "produce.latency_ms.min", "produce.latency_ms.mean", "produce.latency_ms.p50",
		"produce.latency_ms.p90", "produce.latency_ms.p99", "produce.latency_ms.p99_9", "produce.latency_ms.max",
		"consume.records", "consume.bytes", "consume.elapsed_seconds", "consume.records_per_sec", "consume.mb_per_sec", "consume.errors",
		"e2e.latency_ms.p50", "e2e.latency_ms.p99_9", "e2e.latency_ms.max", "e2e.expected", "e2e.received",
		"e2e.missing", "e2e.duplicates", "e2e.offset_gaps", "e2e.foreign", "e2e.drained",
	} {
		if _, ok := lookup(m, path); !ok {
			t.Errorf("e2e JSON has no %s", path)
		}
	}
	if _, ok := m["broker_cpu"]; ok {
		t.Error("broker_cpu present without --broker-pid or --broker-metrics")
	}
	for path, want := range map[string]any{
		"mode": "e2e", "config.topic": "json-e2e", "config.acks": "all", "config.target_rate": 1500.0,
		"produce.records": 1000.0, "consume.records": 1000.0, "e2e.expected": 1000.0, "e2e.received": 1000.0,
		"e2e.missing": 0.0, "e2e.duplicates": 0.0, "e2e.drained": true, "e2e.latency_ms.count": 1000.0,
	} {
		if got, _ := lookup(m, path); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}

	m = run("consume", "--topic", "json-consume", "--produce-first", "1200", "--consumers", "3")
	if got, _ := lookup(m, "consume.records"); got != 1200.0 {
		t.Errorf("consume.records = %v, want 1200", got)
	}
	if _, ok := m["produce"]; ok {
		t.Error("consume JSON has a produce section")
	}

	m = run("produce", "--topic", "json-produce", "--records", "700", "--broker-pid", itoa(os.Getpid()))
	if got, _ := lookup(m, "produce.records"); got != 700.0 {
		t.Errorf("produce.records = %v, want 700", got)
	}
	for _, path := range []string{"broker_cpu.source", "broker_cpu.cpu_seconds", "broker_cpu.bytes_moved", "broker_cpu.cpu_seconds_per_gb"} {
		if _, ok := lookup(m, path); !ok {
			t.Errorf("produce JSON with --broker-pid has no %s", path)
		}
	}
}

func TestRunText(t *testing.T) {
	addr := startTestCluster(t)
	var out, errOut bytes.Buffer
	err := Run(testCtx(t), []string{"produce", "--brokers", addr, "--topic", "text", "--records", "300", "--progress", "0"}, &out, &errOut)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"vigil bench produce: topic text (6 partitions), 4 producers, 1024-byte records, acks=all, compression=none\n", "produce", "300 records", "produce latency ms: p50", "p99.9", "MB = 10^6 bytes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary does not contain %q:\n%s", want, out.String())
		}
	}
}

func TestProduceCancelled(t *testing.T) {
	addr := startTestCluster(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	cfg := smallConfig(addr, "cancel")
	cfg.Duration = time.Hour
	cfg.Rate = 1000
	// The first progress line cancels the run.
	cfg.Progress = writerFunc(func([]byte) { cancel() })
	cfg.ProgressInterval = time.Millisecond
	res, err := Produce(ctx, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Produce after cancel: %v, want context.Canceled", err)
	}
	if res == nil || res.Produce == nil {
		t.Fatalf("no partial result after cancel: %+v", res)
	}
}

type writerFunc func([]byte)

var writerMu sync.Mutex

func (f writerFunc) Write(b []byte) (int, error) {
	writerMu.Lock()
	defer writerMu.Unlock()
	f(b)
	return len(b), nil
}

func lookup(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		args []string
		want []string // substrings of the error
	}{
		{nil, []string{"missing mode"}},
		{[]string{"bogus"}, []string{`unknown mode "bogus"`, "produce, consume, e2e or group"}},
		{[]string{"produce", "--nope"}, []string{"flag provided but not defined: -nope", "vigil bench produce -h"}},
		{[]string{"produce", "--acks", "2"}, []string{`invalid value "2" for flag -acks`, "all, 1, 0"}},
		{[]string{"produce", "--compression", "brotli"}, []string{"flag -compression", "none, gzip, snappy, lz4, zstd"}},
		{[]string{"produce", "--records", "lots"}, []string{"flag -records"}},
		{[]string{"produce", "--records", "0"}, []string{"--records must be at least 1"}},
		{[]string{"produce", "--duration", "0s"}, []string{"--duration must be positive"}},
		{[]string{"produce", "--producers", "0"}, []string{"--producers must be at least 1"}},
		{[]string{"produce", "--partitions", "-3"}, []string{"--partitions must be at least 1"}},
		{[]string{"produce", "--record-size", "0"}, []string{"--record-size must be at least 1"}},
		{[]string{"produce", "--batch-max-bytes", "10"}, []string{"--batch-max-bytes must be in [512, 1073741824]"}},
		{[]string{"produce", "--rate", "-1"}, []string{"--rate must not be negative"}},
		{[]string{"produce", "--brokers", " , "}, []string{"--brokers is empty"}},
		{[]string{"produce", "--brokers", "localhost"}, []string{`broker "localhost": want HOST:PORT`}},
		{[]string{"produce", "--produce-first", "10"}, []string{"--produce-first only applies to consume"}},
		{[]string{"produce", "extra"}, []string{`unexpected argument "extra"`}},
		{[]string{"produce", "--broker-metrics", "localhost:9090/metrics"}, []string{"--broker-metrics must be an http:// or https:// URL"}},
		{[]string{"e2e"}, []string{"e2e needs --rate > 0"}},
		{[]string{"e2e", "--rate", "100", "--record-size", "16"}, []string{"at least 32 bytes"}},
		{[]string{"consume", "--drain-timeout", "0s"}, []string{"--drain-timeout must be positive"}},
		// Several problems are reported together.
		{[]string{"produce", "--producers", "0", "--consumers", "0"}, []string{"--producers must be at least 1", "--consumers must be at least 1"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			_, _, _, err := parseArgs(tc.args, &out)
			if err == nil {
				t.Fatalf("parseArgs(%q) succeeded, want an error", tc.args)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if out.Len() != 0 {
				t.Errorf("parseArgs printed %q on error; errors are returned, not printed", out.String())
			}
		})
	}
}

func TestParseArgsDefaults(t *testing.T) {
	mode, cfg, jsonOut, err := parseArgs([]string{"produce"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if mode != "produce" || jsonOut {
		t.Fatalf("mode %q json %v", mode, jsonOut)
	}
	want := DefaultConfig()
	want.Duration = DefaultDuration
	want.ProgressInterval = time.Second
	if cfg.Topic != want.Topic || cfg.Partitions != 6 || cfg.ReplicationFactor != 1 || cfg.Producers != 4 ||
		cfg.Consumers != 1 || cfg.RecordSize != 1024 || cfg.Acks != "all" || cfg.Compression != "none" ||
		cfg.Duration != 10*time.Second || cfg.Records != 0 || cfg.Rate != 0 || cfg.BatchMaxBytes != 1<<20 ||
		len(cfg.Brokers) != 1 || cfg.Brokers[0] != "127.0.0.1:9092" || cfg.ProgressInterval != time.Second ||
		cfg.ClientTelemetry {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestParseArgsValues(t *testing.T) {
	_, cfg, jsonOut, err := parseArgs([]string{"e2e",
		"--brokers", "a:1, b:2", "--topic", "t", "--partitions", "12", "--replication-factor", "3",
		"--producers", "2", "--consumers", "3", "--record-size", "100", "--acks", "1",
		"--compression", "ZSTD", "--linger", "5ms", "--batch-max-bytes", "65536", "--records", "500",
		"--rate", "250.5", "--warmup", "2s", "--drain-timeout", "3s", "--broker-pid", "77",
		"--broker-metrics", "http://x:1/metrics", "--json", "--client-telemetry",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !jsonOut || strings.Join(cfg.Brokers, "|") != "a:1|b:2" || cfg.Topic != "t" || cfg.Partitions != 12 ||
		cfg.ReplicationFactor != 3 || cfg.Producers != 2 || cfg.Consumers != 3 || cfg.RecordSize != 100 ||
		cfg.Acks != "1" || cfg.Compression != "zstd" || cfg.Linger != 5*time.Millisecond ||
		cfg.BatchMaxBytes != 65536 || cfg.Records != 500 || cfg.Rate != 250.5 || cfg.Warmup != 2*time.Second ||
		cfg.DrainTimeout != 3*time.Second || cfg.BrokerPID != 77 || cfg.BrokerMetricsURL != "http://x:1/metrics" ||
		!cfg.ClientTelemetry {
		t.Fatalf("parsed: %+v", cfg)
	}
	// --records alone bounds the run: no default duration.
	if cfg.Duration != 0 {
		t.Errorf("duration %v with --records and no --duration, want 0", cfg.Duration)
	}
	// --json turns progress off unless asked for.
	if cfg.ProgressInterval != 0 {
		t.Errorf("progress %v with --json, want 0", cfg.ProgressInterval)
	}
	// acks -1 is an alias of all.
	if _, cfg, _, err := parseArgs([]string{"produce", "--acks", "-1"}, &bytes.Buffer{}); err != nil || cfg.Acks != "all" {
		t.Errorf("--acks -1: %q, %v", cfg.Acks, err)
	}
	// consume has no default duration: it reads to the end offsets.
	if _, cfg, _, err := parseArgs([]string{"consume"}, &bytes.Buffer{}); err != nil || cfg.Duration != 0 {
		t.Errorf("consume duration %v, %v; want 0", cfg.Duration, err)
	}
}

func TestRunHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"produce", "-h"}, {"e2e", "--help"}} {
		var out, errOut bytes.Buffer
		if err := Run(context.Background(), args, &out, &errOut); err != nil {
			t.Fatalf("Run(%q) = %v, want nil", args, err)
		}
		if !strings.Contains(out.String(), "Usage: vigil bench produce|consume|e2e") {
			t.Errorf("Run(%q) usage output: %q", args, out.String())
		}
		if args[0] != "-h" && args[0] != "help" {
			for _, f := range []string{"-brokers", "-acks", "-rate", "-broker-pid", "-json"} {
				if !strings.Contains(out.String(), f) {
					t.Errorf("Run(%q) usage does not list %s", args, f)
				}
			}
		}
	}
}

func TestRunErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "missing mode") {
		t.Errorf("Run(nil) = %v", err)
	}
	if err := Run(context.Background(), []string{"produce", "--acks=2"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "all, 1, 0") {
		t.Errorf("Run(--acks=2) = %v", err)
	}
	if out.Len() != 0 || errOut.Len() != 0 {
		t.Errorf("Run printed %q / %q on a flag error", out.String(), errOut.String())
	}
}

func TestConfigValidate(t *testing.T) {
	// Go callers get the same checks as the command line.
	if _, err := (Config{Acks: "2"}).withDefaults(modeProduce); err == nil || !strings.Contains(err.Error(), "all, 1, 0") {
		t.Errorf("Acks 2: %v", err)
	}
	if _, err := (Config{}).withDefaults(modeE2E); err == nil || !strings.Contains(err.Error(), "--rate") {
		t.Errorf("e2e without a rate: %v", err)
	}
	cfg, err := (Config{}).withDefaults(modeProduce)
	if err != nil || cfg.Duration != DefaultDuration || cfg.MaxBufferedRecords != 8192 {
		t.Errorf("zero Config: %+v, %v", cfg, err)
	}
}

package broker

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFileAndFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broker.yaml")
	yaml := "node-id: 3\nlisten: 127.0.0.1:9999\ndata-dir: /var/lib/vigil\nrack: r2\nretention-check-interval: 1m\ntopic-defaults:\n  retention.ms: \"1000\"\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if err := cfg.LoadConfigFile(path); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--rack", "r9", "--topic-default", "flush.messages=1",
		"--log-cleaner-threads", "2", "--log-cleaner-io-max-bytes-per-second", "1e6", "--log-cleaner-backoff", "3s"}); err != nil {
		t.Fatal(err)
	}
	if cfg.NodeID != 3 || cfg.Listen != "127.0.0.1:9999" || cfg.Rack != "r9" || cfg.RetentionCheckInterval != time.Minute ||
		cfg.TopicDefaults["retention.ms"] != "1000" || cfg.TopicDefaults["flush.messages"] != "1" ||
		cfg.LogCleanerThreads != 2 || cfg.LogCleanerIOMaxBytesPerSecond != 1e6 || cfg.LogCleanerBackoff != 3*time.Second ||
		cfg.LogCleanerDedupeBufferSize != 128<<20 {
		t.Fatalf("config: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("node-idd: 1\n"), 0o644)
	cfg := DefaultConfig()
	if err := cfg.LoadConfigFile(bad); err == nil || !strings.Contains(err.Error(), "node-idd") {
		t.Fatalf("misspelt key: %v", err)
	}
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, nil, 0o644)
	if err := cfg.LoadConfigFile(empty); err != nil {
		t.Fatalf("empty file: %v", err)
	}
	for _, c := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Listen = "nope" }, "listen"},
		{func(c *Config) { c.NumPartitions = 0 }, "num-partitions"},
		{func(c *Config) { c.TopicDefaults = map[string]string{"retention.ms": "soon"} }, "retention.ms"},
		{func(c *Config) { c.TopicDefaults = map[string]string{"no.such": "1"} }, "no.such"},
		{func(c *Config) { c.DataDir = "" }, "data-dir"},
		{func(c *Config) { c.LogCleanerThreads = -1 }, "log-cleaner-threads"},
		{func(c *Config) { c.LogCleanerIOMaxBytesPerSecond = -5 }, "log-cleaner-io-max-bytes-per-second"},
		{func(c *Config) { c.LogCleanerDedupeBufferSize = 10 }, "log-cleaner-dedupe-buffer-size"},
		{func(c *Config) { c.LogCleanerBackoff = 0 }, "log-cleaner-backoff"},
		{func(c *Config) {
			c.TopicDefaults = map[string]string{"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"}
		}, "min.compaction.lag.ms"},
	} {
		cfg := DefaultConfig()
		c.mutate(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error about %s, got %v", c.want, err)
		}
	}
}

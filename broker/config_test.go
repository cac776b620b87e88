package broker

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigFileAndFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broker.yaml")
	yaml := "node-id: 3\nlisten: 127.0.0.1:9999\ndata-dir: /var/lib/vigil\nrack: r2\nretention-check-interval: 1m\nlog-level: debug\npprof: true\ntopic-defaults:\n  retention.ms: \"1000\"\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if err := cfg.LoadConfigFile(path); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--rack", "r9", "--topic-defaults", "flush.messages=1", "--topic-default", "segment.ms=60000", "--log-level", "warn",
		"--log-cleaner-threads", "2", "--log-cleaner-io-max-bytes-per-second", "1e6", "--log-cleaner-backoff", "3s"}); err != nil {
		t.Fatal(err)
	}
	if cfg.NodeID != 3 || cfg.Listen != "127.0.0.1:9999" || cfg.Rack != "r9" || cfg.RetentionCheckInterval != time.Minute ||
		cfg.TopicDefaults["retention.ms"] != "1000" || cfg.TopicDefaults["flush.messages"] != "1" ||
		cfg.TopicDefaults["segment.ms"] != "60000" || cfg.LogLevel != "warn" || !cfg.Pprof ||
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
		{func(c *Config) { c.LogLevel = "loud" }, "log-level"},
	} {
		cfg := DefaultConfig()
		c.mutate(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error about %s, got %v", c.want, err)
		}
	}
}

// TestFlagsMatchYAMLKeys: every setting of the YAML file has a flag of the
// same name, as the README promises.
func TestFlagsMatchYAMLKeys(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	typ := reflect.TypeOf(cfg)
	for i := 0; i < typ.NumField(); i++ {
		key, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			continue
		}
		if fs.Lookup(key) == nil {
			t.Errorf("YAML key %q has no flag of the same name", key)
		}
	}
}

// TestPprofOnlyWhenEnabled: Go's profiles are unauthenticated, so the
// broker serves them only when asked to.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	for _, on := range []bool{false, true} {
		b := startBroker(t, "", func(c *Config) { c.Pprof = on })
		rec := httptest.NewRecorder()
		b.HTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
		if want := map[bool]int{false: http.StatusNotFound, true: http.StatusOK}[on]; rec.Code != want {
			t.Errorf("pprof %v: /debug/pprof/ answered %d, want %d", on, rec.Code, want)
		}
	}
}

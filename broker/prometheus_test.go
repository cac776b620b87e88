package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestPrometheusScrapes has Debian's real Prometheus scrape a broker that
// served a workload: with classic buckets only, in the text format, and
// with --metrics-native-histograms, in the protobuf format by a Prometheus
// with native histograms on. The target is up without scrape errors,
// every vigil_ metric family the broker exposes is in Prometheus, and the
// native histograms arrive as native histograms.
func TestPrometheusScrapes(t *testing.T) {
	prom := requireTool(t, "prometheus")
	for _, native := range []bool{false, true} {
		t.Run(fmt.Sprintf("native-histograms=%v", native), func(t *testing.T) {
			b := startBroker(t, "", func(c *Config) { c.MetricsNativeHistograms = native })
			createTopic(t, newAdmin(t, b), "scraped", 2, nil)
			produceValues(t, b, "scraped", 0, 50)
			consumeN(t, b, "scraped", 50)
			srv := httptest.NewServer(b.HTTPHandler())
			defer srv.Close()
			want := exposedFamilies(t, b)
			checkNativeBuckets(t, b, native)

			api := runPrometheus(t, prom, srv.Listener.Addr().String(), native)
			waitFor(t, "the broker target up", 60*time.Second, func() bool {
				var targets struct {
					ActiveTargets []struct {
						Health, LastError string
					}
				}
				promGet(t, api, "/api/v1/targets", nil, &targets)
				for _, tg := range targets.ActiveTargets {
					if tg.LastError != "" {
						t.Fatalf("scrape error: %s", tg.LastError)
					}
				}
				return len(targets.ActiveTargets) == 1 && targets.ActiveTargets[0].Health == "up"
			})
			var got []string
			waitFor(t, "every vigil_ family ingested", 60*time.Second, func() bool {
				var res []struct {
					Metric map[string]string
				}
				promGet(t, api, "/api/v1/query", url.Values{"query": {`count by (__name__) ({__name__=~"vigil_.+"})`}}, &res)
				got = nil
				for _, r := range res {
					got = append(got, familyOf(r.Metric["__name__"]))
				}
				got = dedupe(got)
				return strings.Join(got, " ") == strings.Join(want, " ")
			})
			// A native histogram is one series with a histogram sample;
			// without native buckets the family has _bucket series only.
			var res []struct {
				Histogram json.RawMessage
			}
			promGet(t, api, "/api/v1/query", url.Values{"query": {`vigil_request_duration_seconds{api="Produce"}`}}, &res)
			if gotNative := len(res) > 0 && res[0].Histogram != nil; gotNative != native {
				t.Fatalf("vigil_request_duration_seconds as a native histogram: %v, want %v (%d series)", gotNative, native, len(res))
			}
		})
	}
}

// checkNativeBuckets checks that every histogram of the broker has native
// buckets exactly when native is set.
func checkNativeBuckets(t *testing.T, b *Broker, native bool) {
	t.Helper()
	mfs, err := b.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				n++
				if has := h.Schema != nil; has != native {
					t.Fatalf("%s has native buckets: %v, want %v", mf.GetName(), has, native)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("the broker exposes no histogram")
	}
}

// exposedFamilies lists the vigil_ metric families with series.
func exposedFamilies(t *testing.T, b *Broker) []string {
	mfs, err := b.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "vigil_") && len(mf.GetMetric()) > 0 {
			out = append(out, mf.GetName())
		}
	}
	sort.Strings(out)
	return out
}

// familyOf maps a series name to its family (histogram series have
// suffixes in the text format).
func familyOf(name string) string {
	for _, suf := range []string{"_bucket", "_count", "_sum"} {
		if f, ok := strings.CutSuffix(name, suf); ok && (strings.HasSuffix(f, "_seconds") || strings.HasSuffix(f, "_bytes")) {
			return f
		}
	}
	return name
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// runPrometheus starts Prometheus scraping target every second and
// returns its HTTP address.
func runPrometheus(t *testing.T, prom, target string, native bool) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: broker\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"--config.file=" + filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path=" + filepath.Join(dir, "data"), "--web.listen-address=" + addr}
	if native {
		args = append(args, "--enable-feature=native-histograms")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, prom, args...)
	logs := &logBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", strings.Join(logs.lines(), "\n"))
		}
	})
	waitFor(t, "prometheus ready", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return addr
}

// promGet calls Prometheus's HTTP API and decodes the data of its answer.
func promGet(t *testing.T, addr, path string, q url.Values, data any) {
	t.Helper()
	u := "http://" + addr + path
	if q != nil {
		u += "?" + q.Encode()
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Error  string
		Data   json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Status != "success" {
		t.Fatalf("%s: %s", u, body.Error)
	}
	if strings.HasSuffix(path, "/query") {
		var v struct{ Result json.RawMessage }
		if err := json.Unmarshal(body.Data, &v); err != nil {
			t.Fatal(err)
		}
		body.Data = v.Result
	}
	if err := json.Unmarshal(body.Data, data); err != nil {
		t.Fatal(err)
	}
}

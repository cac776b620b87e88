package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/internal/vigiltest"
)

// scrape reads the Prometheus text exposition at url.
func scrape(t *testing.T, url string) prometheus.Gatherer {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		var out []*dto.MetricFamily
		for _, mf := range mfs {
			out = append(out, mf)
		}
		return out, nil
	})
}

// waitProbed waits until the probe metrics at url show at least records
// produced through each of brokers 0..n-1 and consumed by the probe at
// location, and then that none was lost.
func waitProbed(t *testing.T, p *vigilProc, url, location string, n int, records float64) {
	t.Helper()
	vigiltest.WaitFor(t, "end-to-end probes of every broker at "+url, 3*time.Minute, func() bool {
		g := scrape(t, url)
		for b := range n {
			if vigiltest.Sum(t, g, "vigil_probe_e2e_seconds", map[string]string{"broker": strconv.Itoa(b), "location": location, "cell": "a"}) < records {
				return false
			}
		}
		return true
	})
	if lost := vigiltest.Sum(t, scrape(t, url), "vigil_probe_lost_records_total", nil); lost != 0 {
		t.Errorf("%v probe records lost in a healthy run\n%s", lost, p.stderr)
	}
}

// TestProbeCommandAndDev runs `vigil dev`, whose embedded probe must reach
// every broker (its metrics on dev's /metrics), then a separate `vigil
// probe` against it, a second vantage point, stopped by SIGINT.
func TestProbeCommandAndDev(t *testing.T) {
	kport, hport := devPorts(t, 3)
	dev := startVigil(t, true, "dev", "--data-dir", t.TempDir(), "--kafka-port", strconv.Itoa(kport), "--http-port", strconv.Itoa(hport))
	waitProbed(t, dev, "http://"+dev.http+"/metrics", "dev", 3, 5)

	// A second vantage point, probing fast, that runs past its loss
	// deadline: a healthy run loses nothing.
	probe := startVigil(t, true, "probe", "--bootstrap", dev.kafka, "--location", "elsewhere", "--cell-from-rack",
		"--metrics-addr", "127.0.0.1:0", "--interval", "200ms", "--loss-deadline", "8s")
	waitProbed(t, probe, "http://"+probe.http+"/metrics", "elsewhere", 3, 60)
	probe.interrupt(t)
}

// TestProbeFlags checks that vigil probe refuses to start without what it
// needs, saying what is missing.
func TestProbeFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--location", "x"},
		{"--bootstrap", "127.0.0.1:9092"},
		{"--bootstrap", "127.0.0.1:9092", "--location", "x", "--interval", "10ms"},
		{"--bootstrap", "127.0.0.1:9092", "--location", "x", "--cell", "a/b"},
	} {
		if err := runProbe(t.Context(), args, io.Discard); err == nil {
			t.Errorf("vigil probe %v started", args)
		}
	}
}

// TestDevMetricsKeepNativeHistograms checks that merging the probe's
// metrics into dev's /metrics keeps what the brokers' handler serves,
// native histograms included, for a scraper that negotiates protobuf.
func TestDevMetricsKeepNativeHistograms(t *testing.T) {
	brokers := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vigil_storage_test_seconds", Help: "h",
		Buckets: prometheus.DefBuckets, NativeHistogramBucketFactor: 1.1})
	h.Observe(0.003)
	brokers.MustRegister(h)
	probe := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_probe_test_total", Help: "c"})
	c.Inc()
	probe.MustRegister(c)

	srv := httptest.NewServer(devMetrics(promhttp.HandlerFor(brokers, promhttp.HandlerOpts{}), probe))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	got := map[string]*dto.MetricFamily{}
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); err != nil {
			break
		}
		got[mf.GetName()] = mf
	}
	hist := got["vigil_storage_test_seconds"]
	if hist == nil || hist.GetMetric()[0].GetHistogram().Schema == nil || got["vigil_probe_test_total"] == nil {
		t.Fatalf("merged exposition lacks the native histogram or the probe counter: %v", got)
	}
}

// startProcessCluster runs a cluster of separate processes: a controller
// and n brokers of cell a (racks a0, a1, ...), with failure detection tuned
// for tests. It returns the broker processes, their addresses, and a
// function that (re)starts broker i on its address and data.
func startProcessCluster(t testing.TB, n int) ([]*vigilProc, []string, func(i int) *vigilProc) {
	api := freeAddr(t)
	startVigil(t, false, "controller", "--id", "1", "--data-dir", t.TempDir(), "--listen", api, "--raft-listen", freeAddr(t), "--session-timeout", "2s")
	addrs, dirs := make([]string, n), make([]string, n)
	start := func(i int) *vigilProc {
		return startVigil(t, false, "broker", "--node-id", strconv.Itoa(i), "--listen", addrs[i], "--data-dir", dirs[i],
			"--controllers", api, "--cell", "a", "--rack", "a"+strconv.Itoa(i),
			"--broker-heartbeat-interval", "200ms", "--replica-lag-time-max", "2s",
			"--offsets-topic-replication-factor", strconv.Itoa(min(n, 3)), "--offsets-topic-num-partitions", "3")
	}
	procs := make([]*vigilProc, n)
	for i := range procs {
		addrs[i], dirs[i] = freeAddr(t), t.TempDir()
		procs[i] = start(i)
	}
	return procs, addrs, start
}

// TestProbeSeesBrokerKilled runs a cluster of separate processes — a
// controller and three brokers of cell a — and `vigil probe`, then kills
// one broker with SIGKILL: the probe's failures for it rise (connection
// refused) while records keep flowing through the other two, and once the
// broker is restarted the same probe process sees it healthy again.
func TestProbeSeesBrokerKilled(t *testing.T) {
	procs, addrs, startBroker := startProcessCluster(t, 3)
	probe := startVigil(t, true, "probe", "--bootstrap", strings.Join(addrs, ","), "--location", "t", "--cell-from-rack",
		"--metrics-addr", "127.0.0.1:0", "--interval", "200ms", "--timeout", "3s", "--layout-interval", "1s")
	url := "http://" + probe.http + "/metrics"
	waitProbed(t, probe, url, "t", 3, 5)
	value := func(name string, labels ...string) float64 {
		want := map[string]string{}
		for i := 0; i+1 < len(labels); i += 2 {
			want[labels[i]] = labels[i+1]
		}
		return vigiltest.Sum(t, scrape(t, url), name, want)
	}

	const victim = 2
	before := value("vigil_probe_failures_total", "broker", "2", "op", "produce")
	if err := procs[victim].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-procs[victim].done
	vigiltest.WaitFor(t, "failed probes of the killed broker", time.Minute, func() bool {
		return value("vigil_probe_failures_total", "broker", "2", "op", "produce", "class", "connection_refused") > 0 &&
			value("vigil_probe_failures_total", "broker", "2", "op", "produce") >= before+2 &&
			value("vigil_probe_up", "broker", "2") == 0
	})
	e0, e1 := value("vigil_probe_e2e_seconds", "broker", "0"), value("vigil_probe_e2e_seconds", "broker", "1")
	vigiltest.WaitFor(t, "probes through the other brokers", time.Minute, func() bool {
		return value("vigil_probe_e2e_seconds", "broker", "0") >= e0+10 && value("vigil_probe_e2e_seconds", "broker", "1") >= e1+10
	})

	procs[victim] = startBroker(victim)
	e2 := value("vigil_probe_e2e_seconds", "broker", "2")
	vigiltest.WaitFor(t, "the restarted broker probed again", 2*time.Minute, func() bool {
		return value("vigil_probe_e2e_seconds", "broker", "2") >= e2+10 && value("vigil_probe_up", "broker", "2") == 1
	})
	t.Logf("failures by class for broker 2: timeout %v, not_leader %v, connection_refused %v, other %v; lost %v",
		value("vigil_probe_failures_total", "broker", "2", "op", "produce", "class", "timeout"),
		value("vigil_probe_failures_total", "broker", "2", "op", "produce", "class", "not_leader"),
		value("vigil_probe_failures_total", "broker", "2", "op", "produce", "class", "connection_refused"),
		value("vigil_probe_failures_total", "broker", "2", "op", "produce", "class", "other"),
		value("vigil_probe_lost_records_total"))
}

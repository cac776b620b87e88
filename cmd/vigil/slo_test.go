package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gopkg.in/yaml.v3"

	"github.com/vigilhq/vigil/broker"
	"github.com/vigilhq/vigil/controller"
	"github.com/vigilhq/vigil/probes"
	"github.com/vigilhq/vigil/slo"
)

// waitUntil polls cond every 100 ms until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s; last state: %s", what, d, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// TestDevEvaluatesDefaultSLOs: `vigil dev` runs the embedded engine on its
// own metrics; the default SLOs evaluate without errors, the disk canary
// SLO has data per cell, and `vigil slo report` prints it.
func TestDevEvaluatesDefaultSLOs(t *testing.T) {
	kport, hport := devPorts(t, 3)
	p := startVigil(t, true, "dev", "--data-dir", t.TempDir(), "--kafka-port", strconv.Itoa(kport), "--http-port", strconv.Itoa(hport))
	var resp struct {
		Data struct {
			SLOs []*slo.Status `json:"slos"`
		} `json:"data"`
	}
	waitUntil(t, "the disk canary SLO of cell a has events", 2*time.Minute, func() (bool, string) {
		if err := getJSON("http://"+p.http+"/api/v1/slos", &resp); err != nil {
			return false, err.Error()
		}
		for _, st := range resp.Data.SLOs {
			if st.Name != "storage-canary-latency" {
				continue
			}
			for _, g := range st.Groups {
				if w, ok := g.Window(5 * time.Minute); ok && g.Labels["cell"] == "a" && g.Labels["cluster"] == "dev" && w.Total > 0 {
					return true, ""
				}
			}
			b, _ := json.Marshal(st)
			return false, string(b)
		}
		return false, "no storage-canary-latency status"
	})
	if len(resp.Data.SLOs) != len(slo.Defaults().SLOs) {
		t.Errorf("%d SLOs evaluated, want the %d defaults", len(resp.Data.SLOs), len(slo.Defaults().SLOs))
	}
	for _, st := range resp.Data.SLOs {
		if st.Error != "" {
			t.Errorf("SLO %s: %s", st.Name, st.Error)
		}
	}
	var sigs struct {
		Status string `json:"status"`
	}
	if err := getJSON("http://"+p.http+"/api/v1/signals", &sigs); err != nil || sigs.Status != "success" {
		t.Errorf("/api/v1/signals: %v %+v", err, sigs)
	}
	var out, errb bytes.Buffer
	if err := run([]string{"slo", "report", "--url", "http://" + p.http}, &out, &errb); err != nil {
		t.Fatalf("vigil slo report: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "## storage-canary-latency") || !strings.Contains(out.String(), `cell="a"`) {
		t.Errorf("report:\n%s", out.String())
	}
}

func TestSLOCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, slo.DefaultsYAML(), 0o644)
	os.WriteFile(bad, []byte("slos:\n  - name: x\n    sli: {latency: {metric: m_seconds, threshold: 1}}\n    objective: 99\n    window: 1d\n    group_by: [cell]\nhealth_rules:\n  - name: y\n    expr: rate(x[5m]\n"), 0o644)
	var out bytes.Buffer
	if err := run([]string{"slo", "check", good}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "good.yaml: ok") {
		t.Errorf("check of the defaults: %v %s", err, out.String())
	}
	err := run([]string{"slo", "check", bad}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:9:11: health_rules[0].expr: PromQL does not parse") {
		t.Errorf("check of a bad spec: %v", err)
	}
}

// inProcessCluster starts a controller and three brokers of cell a, each
// with its own HTTP port serving its handler, as `vigil broker` does; kill
// stops broker i and its HTTP port, as its process dying would.
func inProcessCluster(t *testing.T) (ctrl *controller.Server, bs []*broker.Broker, httpAddrs []string, kill func(i int)) {
	t.Helper()
	dir := t.TempDir()
	var servers []*http.Server
	ctrl, err := controller.NewServer(controller.ServerConfig{ID: "1", DataDir: filepath.Join(dir, "controller"), Listen: "127.0.0.1:0",
		RaftListen: "127.0.0.1:0", ValidateTopicConfig: broker.ValidateTopicConfig}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Close() })
	for i := range 3 {
		cfg := broker.DefaultConfig()
		cfg.NodeID = int32(i)
		cfg.Listen = "127.0.0.1:0"

		cfg.DataDir = filepath.Join(dir, "broker-"+strconv.Itoa(i))
		cfg.Controllers = []string{ctrl.Addr()}
		cfg.Cell = "a"
		cfg.Rack = "a" + strconv.Itoa(i)
		cfg.DiskCanaryInterval = 200 * time.Millisecond
		// A dead follower leaves the ISRs within seconds, so acks=all
		// produces to the live brokers (the probe's) stall only briefly.
		cfg.ReplicaLagTimeMax = 3 * time.Second
		b, err := broker.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		go b.Serve()
		t.Cleanup(func() { b.Close() })
		bs = append(bs, b)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: b.HTTPHandler()}
		go hs.Serve(ln)
		t.Cleanup(func() { hs.Close() })
		servers = append(servers, hs)
		httpAddrs = append(httpAddrs, ln.Addr().String())
	}
	return ctrl, bs, httpAddrs, func(i int) {
		servers[i].Close()
		if err := bs[i].Close(); err != nil {
			t.Error(err)
		}
	}
}

// startTestProbe runs a probe of the cluster's brokers (as vigil dev's
// startDevProbe does: cells from the racks, here cluster t and location
// test) every 200 ms, and serves its metrics on an HTTP port of its own,
// whose address it returns.
func startTestProbe(t *testing.T, bs []*broker.Broker) (metricsAddr string, reg *prometheus.Registry) {
	t.Helper()
	reg = prometheus.NewRegistry()
	var bootstrap []string
	for _, b := range bs {
		bootstrap = append(bootstrap, b.Addr())
	}
	p, err := probes.New(probes.Config{Bootstrap: bootstrap, Location: "test", Cluster: "t", CellOf: probes.CellFromRack,
		Interval: 200 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), reg
}

// probeProduces returns the probe's produce attempts and failures per
// broker, from its registry.
func probeProduces(t *testing.T, reg prometheus.Gatherer) (attempts, failures map[string]float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	attempts, failures = map[string]float64{}, map[string]float64{}
	for _, mf := range mfs {
		var into map[string]float64
		switch mf.GetName() {
		case "vigil_probe_attempts_total":
			into = attempts
		case "vigil_probe_failures_total":
			into = failures
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["op"] == "produce" {
				into[l["broker"]] += m.GetCounter().GetValue()
			}
		}
	}
	return attempts, failures
}

// TestKillBrokerRaisesSignalNamingIt: the observer scrapes each broker of
// a cell, the controller, and a real probe of the cell (probes.New, run in
// process as vigil dev runs it; not synthetic series). When broker 2
// dies, target_down names it with its evidence, the cell's
// probe-produce-availability SLO burns (error ratio > 0 in its short
// windows, then a slo_burning signal for cell a) with a breakdown that
// names broker 2 first, and no signal names the healthy brokers.
func TestKillBrokerRaisesSignalNamingIt(t *testing.T) {
	ctrl, bs, httpAddrs, kill := inProcessCluster(t)
	probeAddr, probeReg := startTestProbe(t, bs)
	// The observer starts once every broker has taken 20 probe produces
	// more than have failed: the probe topic's creation and layout
	// (leaders moving to their preferred brokers) can fail a few produces
	// at first, before anything is recorded.
	waitUntil(t, "the probe produces through the 3 brokers", 2*time.Minute, func() (bool, string) {
		att, fail := probeProduces(t, probeReg)
		for _, b := range []string{"0", "1", "2"} {
			if att[b]-fail[b] < 20 {
				return false, fmt.Sprintf("attempts %v failures %v", att, fail)
			}
		}
		return true, ""
	})
	var targets []slo.Target
	for i := range bs {
		targets = append(targets, slo.Target{URL: "http://" + httpAddrs[i] + "/metrics",
			Labels: map[string]string{"job": "vigil-broker", "cluster": "t", "cell": "a", "broker": strconv.Itoa(i)}})
	}
	targets = append(targets, slo.Target{URL: "http://" + ctrl.Addr() + "/metrics", Labels: map[string]string{"job": "vigil-controller", "cluster": "t"}},
		slo.Target{URL: "http://" + probeAddr + "/metrics", Labels: map[string]string{"job": "vigil-probe", "cluster": "t"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obs, err := slo.StartObserver(ctx, slo.ObserverConfig{DataDir: t.TempDir(), Targets: targets, ScrapeInterval: 500 * time.Millisecond,
		Step: 2 * time.Second, EvalInterval: 500 * time.Millisecond, Spec: slo.Defaults()})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	probeWindow := func(w time.Duration) (slo.WindowStatus, string) {
		st, ok := obs.Engine.Status("probe-produce-availability")
		if !ok || len(st.Groups) != 1 || st.Groups[0].Labels["cell"] != "a" || st.Groups[0].Labels["cluster"] != "t" {
			return slo.WindowStatus{}, fmt.Sprintf("probe SLO %+v", st)
		}
		ws, _ := st.Groups[0].Window(w)
		return ws, fmt.Sprintf("%+v", st.Groups[0])
	}
	// Healthy: the canary and probe SLOs have events and nothing is
	// signalled (a produce failed by the probe's start-up could make the
	// probe SLO burn for its first seconds; it must stop doing so).
	waitUntil(t, "the disk canary and probe SLOs have events from the 3 brokers, without signals", 2*time.Minute, func() (bool, string) {
		st, ok := obs.Engine.Status("storage-canary-latency")
		if !ok || len(st.Groups) != 1 {
			return false, fmt.Sprintf("%+v; targets %+v", st, obs.Scraper.Targets())
		}
		if w, _ := st.Groups[0].Window(5 * time.Minute); !(w.Total > 0) {
			return false, fmt.Sprintf("%+v", st.Groups[0])
		}
		if w, state := probeWindow(5 * time.Minute); !(w.Total > 0) {
			return false, state
		}
		// No health rule fires and the probe SLO does not burn. (Another
		// SLO may: with a few dozen canary events, one fsync over 100 ms
		// on a loaded machine is a 3% error ratio, and that is what it
		// says.)
		for _, sig := range obs.Engine.Signals() {
			if sig.Source != "slo" || sig.Labels["slo"] == "probe-produce-availability" {
				return false, fmt.Sprintf("signal while healthy: %+v", sig)
			}
		}
		return true, ""
	})
	updates, unsubscribe := obs.Engine.Subscribe(16)
	defer unsubscribe()
	kill(2)
	var sig slo.Signal
	waitUntil(t, "a target_down signal for broker 2", 2*time.Minute, func() (bool, string) {
		for _, s := range obs.Engine.Signals() {
			if s.Name == "target_down" {
				sig = s
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", obs.Engine.Signals())
	})
	if sig.Labels["broker"] != "2" || sig.Labels["cell"] != "a" || len(sig.Evidence) != 1 || sig.Evidence[0].Labels["broker"] != "2" ||
		sig.Evidence[0].Expr != "up == 0" || float64(sig.Evidence[0].Value) != 0 || sig.Since.IsZero() {
		t.Errorf("signal %+v", sig)
	}
	// Subscribers were told (read now: a slow reader loses older
	// updates).
	started := false
	for !started {
		select {
		case u := <-updates:
			for _, s := range u.Started {
				started = started || s.ID == sig.ID
			}
		case <-time.After(time.Minute):
			t.Fatal("no update announced the signal")
		}
	}
	// The cell's probe availability SLO burns: its 5m window sees the
	// failed produces towards broker 2, then it pages, with the bad
	// events broken down by broker, broker 2 first (produces to the
	// others may fail too while broker 2 leaves their ISRs, but only for
	// seconds; broker 2's keep failing).
	waitUntil(t, "the probe SLO's 5m window has bad events", 2*time.Minute, func() (bool, string) {
		w, state := probeWindow(5 * time.Minute)
		return float64(w.ErrorRatio) > 0, state
	})
	var burning slo.Signal
	waitUntil(t, "slo_burning for probe-produce-availability of cell a, broken down to broker 2 first", 2*time.Minute, func() (bool, string) {
		for _, s := range obs.Engine.Signals() {
			if s.Name != "slo_burning" || s.Rule != "probe-produce-availability" {
				continue
			}
			burning = s
			var byBroker []slo.Evidence
			for _, ev := range s.Evidence {
				if ev.Labels["broker"] != "" {
					byBroker = append(byBroker, ev)
				}
			}
			if len(byBroker) > 0 && byBroker[0].Labels["broker"] == "2" && (len(byBroker) == 1 || byBroker[0].Value > byBroker[1].Value) {
				return true, ""
			}
			return false, fmt.Sprintf("breakdown %+v", byBroker)
		}
		w, state := probeWindow(5 * time.Minute)
		return false, fmt.Sprintf("no slo_burning; 5m window %+v; %s; signals %+v", w, state, obs.Engine.Signals())
	})
	if burning.Labels["cluster"] != "t" || burning.Labels["cell"] != "a" || burning.Labels["slo"] != "probe-produce-availability" ||
		burning.Severity != "page" || burning.Labels["broker"] != "" {
		t.Errorf("slo_burning %+v, want a page for cell a of cluster t", burning)
	}
	for _, s := range obs.Engine.Signals() {
		if s.Labels["broker"] == "0" || s.Labels["broker"] == "1" {
			t.Errorf("a signal names a healthy broker: %+v", s)
		}
	}
}

// TestRemoteModeMatchesEmbedded: Debian's prometheus and the embedded
// scraper scrape the same vigil dev cluster; an engine on each, evaluated
// at the same instants, gives the same SLO groups and states, the same
// health signals, and event counts that differ only by scrape phase.
func TestRemoteModeMatchesEmbedded(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is not installed (.ci/run installs Debian's prometheus package)")
		}
		t.Skip("prometheus is not installed (apt-get install prometheus)")
	}
	kport, hport := devPorts(t, 3)
	// The probes' default timeout (5s), not dev's 2s: on a loaded machine
	// 2s timeouts fail a few probe records, and the two modes, scraping
	// at different phases, then disagree on whether the cell's
	// availability SLO burns; this test compares the modes, not probes.
	p := startVigil(t, true, "dev", "--data-dir", t.TempDir(), "--kafka-port", strconv.Itoa(kport), "--http-port", strconv.Itoa(hport), "--probe-timeout", "5s")
	ctrlAPI := "127.0.0.1:" + strconv.Itoa(hport+1)
	targets := devTargets(p.http, []string{ctrlAPI}, []devBrokerInfo{{ID: 0, Cell: "a"}, {ID: 1, Cell: "a"}, {ID: 2, Cell: "a"}})

	// Prometheus, with the same targets, labels and relabelling, and the
	// embedded scraper scrape every 2 s: at 1 s, on a loaded machine, a
	// scrape of a broker's large /metrics sometimes outlasted the interval
	// (and so its timeout) on one side only, and the two then counted
	// different events.
	const scrapeEvery = 2 * time.Second
	type staticConfig struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels"`
	}
	var scrapeConfigs []map[string]any
	for _, tg := range targets {
		labels := map[string]string{}
		for k, v := range tg.Labels {
			if k != "job" {
				labels[k] = v
			}
		}
		scrapeConfigs = append(scrapeConfigs, map[string]any{
			"job_name": tg.Labels["job"], "scrape_interval": scrapeEvery.String(), "scrape_timeout": scrapeEvery.String(), "honor_labels": true,
			"static_configs":         []staticConfig{{Targets: []string{strings.TrimSuffix(strings.TrimPrefix(tg.URL, "http://"), "/metrics")}, Labels: labels}},
			"metric_relabel_configs": tg.MetricRelabel,
		})
	}
	cfgYAML, err := yaml.Marshal(map[string]any{"scrape_configs": scrapeConfigs})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "prometheus.yml"), cfgYAML, 0o644)
	promAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr)
	var promLog bytes.Buffer
	prom.Stderr = &lockedWriter{w: &promLog}
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prom.Process.Kill(); prom.Wait() })
	waitUntil(t, "prometheus ready", time.Minute, func() (bool, string) {
		resp, err := http.Get("http://" + promAddr + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})

	// The embedded side scrapes the same targets at the same interval.
	spec, _ := slo.Merge(slo.Defaults(), &slo.Spec{HealthRules: []slo.HealthRule{{Name: "replicas", Expr: "vigil_partition_replicas >= 0"}}})
	db, err := slo.OpenTSDB(t.TempDir(), slo.TSDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sc, err := slo.NewScraper(db, slo.ScrapeConfig{Targets: targets, Interval: scrapeEvery, Timeout: scrapeEvery})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sc.Run(ctx)
	var now time.Time
	clock := func() time.Time { return now }
	recDB, err := slo.OpenTSDB(t.TempDir(), slo.TSDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer recDB.Close()
	newEngine := func(raw slo.Querier, store slo.Store) *slo.Engine {
		// A step of five scrape intervals: rate over [step] then sees
		// enough samples that the two PromQL versions agree.
		e, err := slo.New(slo.Config{Spec: spec, Raw: raw, Store: store, Step: 5 * scrapeEvery, Delay: 3 * scrapeEvery / 2, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	embedded := newEngine(&slo.LocalQuerier{Engine: slo.NewPromQLEngine(nil), Store: db}, db)
	remote := newEngine(&slo.RemoteQuerier{URL: "http://" + promAddr}, recDB)
	// Evaluate both at the same instants, about once a second, until
	// the canary SLO has had events for 50 cycles (5 steps).
	steps := 0
	waitUntil(t, "50 cycles with disk canary events in both modes", 4*time.Minute, func() (bool, string) {
		now = time.Now()
		for _, e := range []*slo.Engine{embedded, remote} {
			if err := e.Cycle(ctx); err != nil {
				return false, err.Error()
			}
		}
		st, _ := embedded.Status("storage-canary-latency")
		if len(st.Groups) > 0 {
			if w, _ := st.Groups[0].Window(5 * time.Minute); w.Total > 0 {
				steps++
			}
		}
		time.Sleep(time.Second)
		return steps >= 50, fmt.Sprintf("%d cycles", steps)
	})
	for _, name := range []string{"storage-canary-latency", "storage-append-latency", "probe-produce-availability", "broker-request-errors"} {
		a, _ := embedded.Status(name)
		b, _ := remote.Status(name)
		if a.Error != "" || b.Error != "" {
			t.Errorf("%s: errors: embedded %q, remote %q", name, a.Error, b.Error)
		}
		if len(a.Groups) == 0 {
			t.Errorf("%s: no groups: its metrics are missing from vigil dev", name)
		}
		if !a.At.Equal(b.At) || len(a.Groups) != len(b.Groups) {
			t.Errorf("%s: embedded at %v with %d groups, remote at %v with %d", name, a.At, len(a.Groups), b.At, len(b.Groups))
			continue
		}
		for i := range a.Groups {
			ga, gb := a.Groups[i], b.Groups[i]
			wa, _ := ga.Window(5 * time.Minute)
			wb, _ := gb.Window(5 * time.Minute)
			badDiff := math.Abs((wa.Total - wa.Good) - (wb.Total - wb.Good))
			// The same groups; the same alert state unless a handful of
			// bad events (which one scraper may see in a window and the
			// other lose at a step's edge) make the difference.
			if fmt.Sprint(ga.Labels) != fmt.Sprint(gb.Labels) ||
				ga.State != gb.State && badDiff > scrapeNoise {
				t.Errorf("%s: group %v %s (embedded) vs %v %s (remote)", name, ga.Labels, ga.State, gb.Labels, gb.State)
			}
			// The two scrape the same counters at different phases, and
			// on a loaded machine either may miss a scrape and with it
			// a step's events: counts agree to within scrape noise (a
			// wrong rate/increase or grouping is off by far more), and
			// error ratios to within two points unless a handful of bad
			// events seen by one side only explain the difference (one
			// slow canary at a window's edge moves a ratio over ~150
			// events by more than that).
			t.Logf("%s %v: embedded %+v, remote %+v", name, ga.Labels, wa, wb)
			if !near(wa.Total, wb.Total) || !near(wa.Total-wa.Good, wb.Total-wb.Good) ||
				math.Abs(float64(wa.ErrorRatio-wb.ErrorRatio)) > 0.02 && badDiff > scrapeNoise {
				t.Errorf("%s %v: embedded %+v attainment %v, remote %+v attainment %v", name, ga.Labels, wa, ga.Attainment, wb, gb.Attainment)
			}
		}
	}
	// The same health signals, with values as near as the counts behind
	// them (slo_burning follows the group states compared above).
	values := func(e *slo.Engine) map[string]float64 {
		m := map[string]float64{}
		for _, x := range e.Signals() {
			if x.Source != "slo" {
				m[x.ID] = float64(x.Evidence[0].Value)
			}
		}
		return m
	}
	a, b := values(embedded), values(remote)
	if len(a) != len(b) {
		t.Errorf("signals differ:\nembedded: %v\nremote:   %v", a, b)
	}
	for id, va := range a {
		if vb, ok := b[id]; !ok || !near(va, vb) {
			t.Errorf("signal %s: embedded %v, remote %v (present %v)", id, va, vb, ok)
		}
	}
	if _, ok := a[`replicas{broker="1", cell="a", cluster="dev", instance="`+p.http+`", job="vigil-dev"}`]; !ok {
		t.Errorf("no replicas signal for broker 1 among %v", a)
	}
}

// scrapeNoise is how many events two scrapers of the same counters may
// disagree on: one disk stall at a window's edge slows a few canaries in a
// row, which one side counts and the other, scraping at another phase,
// may not.
const scrapeNoise = 5

// near reports whether two measurements of the same counters taken by
// different scrapers agree: within half, or scrapeNoise events.
func near(a, b float64) bool {
	return math.Abs(a-b) <= 0.5*math.Max(math.Abs(a), math.Abs(b))+scrapeNoise
}

func TestParseWindows(t *testing.T) {
	got, err := parseWindows([]string{"1h", " 30m", "28d"})
	if err != nil || fmt.Sprint(got) != fmt.Sprint([]time.Duration{time.Hour, 30 * time.Minute, 28 * 24 * time.Hour}) {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := parseWindows([]string{"1h", "soon"}); err == nil {
		t.Fatal("a bad window parsed")
	}
	if got, err := parseWindows(nil); got != nil || err != nil {
		t.Fatalf("none: %v %v", got, err)
	}
}

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

	"gopkg.in/yaml.v3"

	"github.com/vigilhq/vigil/broker"
	"github.com/vigilhq/vigil/controller"
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
	kport, hport := freePortRange(t, 3), freePortRange(t, 12)
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

// TestKillBrokerRaisesSignalNamingIt: the observer scrapes each broker of
// a cell; when broker 2 dies, a signal names it, with its evidence. The
// probes' availability SLO (which would burn for the cell) needs the
// probes package; until then the signals come from what the brokers and
// the scrape export.
func TestKillBrokerRaisesSignalNamingIt(t *testing.T) {
	ctrl, bs, httpAddrs, kill := inProcessCluster(t)
	var targets []slo.Target
	for i := range bs {
		targets = append(targets, slo.Target{URL: "http://" + httpAddrs[i] + "/metrics",
			Labels: map[string]string{"job": "vigil-broker", "cluster": "t", "cell": "a", "broker": strconv.Itoa(i)}})
	}
	targets = append(targets, slo.Target{URL: "http://" + ctrl.Addr() + "/metrics", Labels: map[string]string{"job": "vigil-controller", "cluster": "t"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obs, err := slo.StartObserver(ctx, slo.ObserverConfig{DataDir: t.TempDir(), Targets: targets, ScrapeInterval: 500 * time.Millisecond,
		Step: 2 * time.Second, EvalInterval: 500 * time.Millisecond, Spec: slo.Defaults()})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	waitUntil(t, "the disk canary SLO has events from the 3 brokers", 2*time.Minute, func() (bool, string) {
		st, ok := obs.Engine.Status("storage-canary-latency")
		if !ok || len(st.Groups) != 1 {
			return false, fmt.Sprintf("%+v; targets %+v", st, obs.Scraper.Targets())
		}
		w, _ := st.Groups[0].Window(5 * time.Minute)
		return w.Total > 0, fmt.Sprintf("%+v", st.Groups[0])
	})
	if sigs := obs.Engine.Signals(); len(sigs) != 0 {
		t.Fatalf("signals while healthy: %+v", sigs)
	}
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
	for _, s := range obs.Engine.Signals() {
		if s.Labels["broker"] == "0" || s.Labels["broker"] == "1" {
			t.Errorf("a signal names a healthy broker: %+v", s)
		}
	}
	// Subscribers were told.
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
	kport, hport := freePortRange(t, 3), freePortRange(t, 12)
	p := startVigil(t, true, "dev", "--data-dir", t.TempDir(), "--kafka-port", strconv.Itoa(kport), "--http-port", strconv.Itoa(hport))
	ctrlAPI := "127.0.0.1:" + strconv.Itoa(hport+1)
	targets := devTargets(p.http, []string{ctrlAPI}, []devBrokerInfo{{ID: 0, Cell: "a"}, {ID: 1, Cell: "a"}, {ID: 2, Cell: "a"}})

	// Prometheus, with the same targets, labels and relabelling.
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
			"job_name": tg.Labels["job"], "scrape_interval": "1s", "honor_labels": true,
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
	sc, err := slo.NewScraper(db, slo.ScrapeConfig{Targets: targets, Interval: time.Second})
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
		e, err := slo.New(slo.Config{Spec: spec, Raw: raw, Store: store, Step: 2 * time.Second, Delay: 3 * time.Second, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	embedded := newEngine(&slo.LocalQuerier{Engine: slo.NewPromQLEngine(nil), Store: db}, db)
	remote := newEngine(&slo.RemoteQuerier{URL: "http://" + promAddr}, recDB)
	// Evaluate both at the same instants until the canary SLO has 10
	// steps of events.
	steps := 0
	waitUntil(t, "10 steps with disk canary events in both modes", 3*time.Minute, func() (bool, string) {
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
		return steps >= 10, fmt.Sprintf("%d steps", steps)
	})
	for _, name := range []string{"storage-canary-latency", "storage-append-latency", "probe-produce-availability", "broker-request-errors"} {
		a, _ := embedded.Status(name)
		b, _ := remote.Status(name)
		if a.Error != "" || b.Error != "" {
			t.Errorf("%s: errors: embedded %q, remote %q", name, a.Error, b.Error)
		}
		if !a.At.Equal(b.At) || len(a.Groups) != len(b.Groups) {
			t.Errorf("%s: embedded at %v with %d groups, remote at %v with %d", name, a.At, len(a.Groups), b.At, len(b.Groups))
			continue
		}
		for i := range a.Groups {
			ga, gb := a.Groups[i], b.Groups[i]
			if fmt.Sprint(ga.Labels) != fmt.Sprint(gb.Labels) || ga.State != gb.State {
				t.Errorf("%s: group %v %s (embedded) vs %v %s (remote)", name, ga.Labels, ga.State, gb.Labels, gb.State)
			}
			wa, _ := ga.Window(5 * time.Minute)
			wb, _ := gb.Window(5 * time.Minute)
			// The two scrape at different phases of the same counters:
			// their counts over 10+ steps agree to within a few events.
			if math.Abs(wa.Total-wb.Total) > 0.25*math.Max(wa.Total, wb.Total)+3 ||
				math.Abs(float64(ga.Attainment)-float64(gb.Attainment)) > 1 && !(math.IsNaN(float64(ga.Attainment)) && math.IsNaN(float64(gb.Attainment))) {
				t.Errorf("%s %v: embedded %+v attainment %v, remote %+v attainment %v", name, ga.Labels, wa, ga.Attainment, wb, gb.Attainment)
			}
		}
	}
	ids := func(e *slo.Engine) string {
		var s []string
		for _, x := range e.Signals() {
			s = append(s, x.ID+"="+strconv.FormatFloat(float64(x.Evidence[0].Value), 'g', -1, 64))
		}
		return strings.Join(s, "\n")
	}
	if a, b := ids(embedded), ids(remote); a != b || !strings.Contains(a, `replicas{broker="1"`) {
		t.Errorf("signals differ or lack the replicas rule:\nembedded:\n%s\nremote:\n%s", a, b)
	}
}

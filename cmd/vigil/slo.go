package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
	"gopkg.in/yaml.v3"

	"github.com/vigilhq/vigil/controller"
	"github.com/vigilhq/vigil/mitigator"
	"github.com/vigilhq/vigil/slo"
)

const sloUsage = `usage: vigil slo check FILE...
       vigil slo report [--url URL] [--format md|json]
       vigil slo report --prometheus URL [--spec FILE]... [--no-defaults] [--format md|json]
       vigil slo defaults

check     validate SLO spec files: every problem with its file, line and field
report    print the SLO report of a running vigil dev or vigil observer (--url,
          default http://127.0.0.1:8080), or evaluate the specs once against a
          Prometheus-compatible API (--prometheus), recording each SLO's window
defaults  print the built-in spec
`

// runSLO runs `vigil slo ...`.
func runSLO(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, sloUsage)
		return errors.New("vigil slo: missing subcommand")
	}
	switch args[0] {
	case "check":
		return sloCheck(args[1:], stdout)
	case "report":
		return sloReport(ctx, args[1:], stdout, stderr)
	case "defaults":
		_, err := stdout.Write(slo.DefaultsYAML())
		return err
	case "-h", "--help", "help":
		fmt.Fprint(stdout, sloUsage)
		return nil
	default:
		fmt.Fprint(stderr, sloUsage)
		return fmt.Errorf("vigil slo: unknown subcommand %q", args[0])
	}
}

func sloCheck(files []string, stdout io.Writer) error {
	if len(files) == 0 {
		return errors.New("vigil slo check: name at least one spec file")
	}
	var errs []error
	for _, f := range files {
		s, err := slo.LoadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok (%d SLOs, %d health rules, %d latency roll-ups)\n", f, len(s.SLOs), len(s.HealthRules), len(s.LatencyRollups))
	}
	return errors.Join(errs...)
}

// specFlags collects repeated --spec flags.
type specFlags []string

func (s *specFlags) String() string     { return strings.Join(*s, ",") }
func (s *specFlags) Set(v string) error { *s = append(*s, v); return nil }

// loadSpecs merges the built-in defaults (unless noDefaults) and files.
func loadSpecs(files []string, noDefaults bool) (*slo.Spec, error) {
	var specs []*slo.Spec
	if !noDefaults {
		specs = append(specs, slo.Defaults())
	}
	for _, f := range files {
		s, err := slo.LoadFile(f)
		if err != nil {
			return nil, err
		}
		specs = append(specs, s)
	}
	return slo.Merge(specs...)
}

func sloReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("slo report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080", "a running vigil dev or vigil observer")
	prom := fs.String("prometheus", "", "evaluate once against this Prometheus-compatible API instead of asking a running engine")
	format := fs.String("format", "md", "md or json")
	step := fs.Duration("step", time.Minute, "recording step (with --prometheus)")
	var specs specFlags
	fs.Var(&specs, "spec", "SLO spec file (repeatable; with --prometheus)")
	noDefaults := fs.Bool("no-defaults", false, "leave out the built-in spec (with --prometheus)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *format != "md" && *format != "json" {
		return fmt.Errorf("--format: want md or json, got %q", *format)
	}
	var rep *slo.Report
	if *prom == "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(*url, "/")+"/api/v1/report", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("asking %s for its report (is vigil dev or vigil observer running there?): %w", *url, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			return fmt.Errorf("%s/api/v1/report: %s: %s", *url, resp.Status, b)
		}
		rep = &slo.Report{}
		if err := json.NewDecoder(resp.Body).Decode(rep); err != nil {
			return fmt.Errorf("%s/api/v1/report: %w", *url, err)
		}
	} else {
		spec, err := loadSpecs(specs, *noDefaults)
		if err != nil {
			return err
		}
		dir, err := os.MkdirTemp("", "vigil-slo-report-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		db, err := slo.OpenTSDB(dir, slo.TSDBOptions{OutOfOrder: longestWindow(spec)})
		if err != nil {
			return err
		}
		defer db.Close()
		eng, err := slo.New(slo.Config{Spec: spec, Raw: &slo.RemoteQuerier{URL: *prom}, Store: db, Step: *step,
			Backfill: longestWindow(spec), MaxStepsPerCycle: 11000})
		if err != nil {
			return err
		}
		// Each cycle records up to 11,000 steps; cycle until every SLO
		// has caught up with the clock.
		for i := 0; ; i++ {
			err := eng.Cycle(ctx)
			if err != nil {
				fmt.Fprintln(stderr, "vigil slo report:", err)
			}
			if caughtUp(eng) || i > 1000 || ctx.Err() != nil {
				break
			}
		}
		rep = eng.Report()
	}
	if *format == "json" {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteMarkdown(stdout)
}

func longestWindow(s *slo.Spec) time.Duration {
	d := time.Hour
	for _, x := range s.SLOs {
		d = max(d, x.Window.D())
	}
	return d
}

// caughtUp: every SLO's status is at the step of the clock.
func caughtUp(e *slo.Engine) bool {
	now := time.Now().Add(-e.Step())
	for _, st := range e.Statuses() {
		if st.At.Before(now) && st.Error == "" {
			return false
		}
	}
	return true
}

// observerFile is `vigil observer --config FILE`.
type observerFile struct {
	Listen         string            `yaml:"listen"`
	DataDir        string            `yaml:"data_dir"`
	Retention      string            `yaml:"retention"`
	Remote         string            `yaml:"remote_url"`
	RemoteHeaders  map[string]string `yaml:"remote_headers"`
	ScrapeInterval string            `yaml:"scrape_interval"`
	Step           string            `yaml:"step"`
	EvalInterval   string            `yaml:"eval_interval"`
	Delay          string            `yaml:"delay"`
	Backfill       string            `yaml:"backfill"`
	Specs          []string          `yaml:"specs"`
	NoDefaults     bool              `yaml:"no_defaults"`
	ReportSchedule string            `yaml:"report_schedule"`
	ReportDir      string            `yaml:"report_dir"`
	MemoryLimit    string            `yaml:"memory_limit"`
	// RecordWindows are the windows whose burn rate is recorded per SLO
	// group (default [1h]); RecordStepRates adds vigil_slo_events:rate.
	RecordWindows   []string     `yaml:"record_windows"`
	RecordStepRates bool         `yaml:"record_step_rates"`
	Targets         []slo.Target `yaml:"targets"`
	// Controllers enables the mitigator (controller API addresses).
	Controllers    []string `yaml:"controllers"`
	MitigationMode string   `yaml:"mitigation_mode"`
}

const observerUsage = `usage: vigil observer [--config FILE] [flags]

Runs the SLO engine on its own: embedded mode scrapes --target URLs (or the
targets of the config file) into a TSDB in --data-dir; remote mode (--remote)
evaluates through a Prometheus-compatible query API. Serves /api/v1/slos,
/api/v1/slos/{name}, /api/v1/signals, /api/v1/report and /api/v1/targets.

With --controller, it also runs the mitigator on the engine's signals (and
on Alertmanager webhooks posted to /api/v1/alertmanager), acting through
the controller API, in --mitigation-mode (default dry-run); it serves
/api/v1/mitigations, /api/v1/mitigator/mode and /metrics (vigil_mitigator_*).
It has no Provisioner: restarts and replacements are refused with a reason.

Config file (YAML; flags override it):

  listen: 127.0.0.1:8085
  data_dir: vigil-observer
  remote_url: http://prometheus:9090     # remote mode; omit for embedded
  scrape_interval: 15s
  step: 1m
  specs: [slos.yaml]
  report_schedule: "@daily"              # robfig/cron syntax
  report_dir: reports
  controllers: [controller-0:8090]       # enables the mitigator
  mitigation_mode: dry-run               # off | dry-run | approve | auto
  memory_limit: auto                     # Go soft memory limit: auto | off | 5GiB
  record_windows: [1h]                   # burn rates recorded per SLO group
  record_step_rates: false               # also record vigil_slo_events:rate
  targets:
    - url: http://broker-0:8080/metrics
      labels: {cluster: prod, cell: a}
      metric_relabel_configs: []         # as Prometheus'

`

// runObserver runs `vigil observer`.
func runObserver(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("observer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, observerUsage); fs.PrintDefaults() }
	config := fs.String("config", "", "YAML config file")
	listen := fs.String("listen", "", "HTTP host:port of the API (default 127.0.0.1:8085)")
	dataDir := fs.String("data-dir", "", "directory of the TSDB (default vigil-observer)")
	remote := fs.String("remote", "", "Prometheus-compatible API URL: remote mode")
	var targets specFlags
	fs.Var(&targets, "target", "metrics URL to scrape, optionally followed by labels: URL,cluster=prod,cell=a (repeatable)")
	var specs specFlags
	fs.Var(&specs, "spec", "SLO spec file (repeatable)")
	noDefaults := fs.Bool("no-defaults", false, "leave out the built-in SLOs and health rules")
	step := fs.Duration("step", 0, "recording step (default 1m)")
	scrapeInterval := fs.Duration("scrape-interval", 0, "scrape interval (default 15s)")
	reportSchedule := fs.String("report-schedule", "", "cron schedule of JSON and Markdown reports, e.g. @daily")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	ctrlAddrs := fs.String("controller", os.Getenv("VIGIL_CONTROLLER"), "controller API addresses, comma-separated: enables the mitigator")
	mitMode := fs.String("mitigation-mode", "", "mitigator mode: off, dry-run (default), approve, auto")
	token := fs.String("token", os.Getenv("VIGIL_ADMIN_TOKEN"), "admin token of the controller API")
	memLimit := fs.String("memory-limit", "", "Go soft memory limit: auto (default: GOMEMLIMIT, else 90% of a cgroup memory limit, else none), off, or a size such as 5GiB")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var f observerFile
	if *config != "" {
		b, err := os.ReadFile(*config)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %w", *config, err)
		}
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&f.Listen, *listen)
	set(&f.DataDir, *dataDir)
	set(&f.Remote, *remote)
	set(&f.ReportSchedule, *reportSchedule)
	set(&f.MitigationMode, *mitMode)
	set(&f.MemoryLimit, *memLimit)
	if *ctrlAddrs != "" {
		f.Controllers = []string{*ctrlAddrs}
	}
	if f.MitigationMode == "" {
		f.MitigationMode = mitigator.ModeDryRun
	}
	if !mitigator.ValidMode(f.MitigationMode) {
		return fmt.Errorf("--mitigation-mode %q: want one of off, dry-run, approve, auto", f.MitigationMode)
	}
	if len(f.Controllers) == 0 && *mitMode != "" {
		return errors.New("--mitigation-mode needs --controller: the mitigator acts through the controller API")
	}
	f.Specs = append(f.Specs, specs...)
	f.NoDefaults = f.NoDefaults || *noDefaults
	if f.Listen == "" {
		f.Listen = "127.0.0.1:8085"
	}
	if f.DataDir == "" {
		f.DataDir = "vigil-observer"
	}
	for _, t := range targets {
		parts := strings.Split(t, ",")
		tg := slo.Target{URL: parts[0], Labels: map[string]string{}}
		for _, kv := range parts[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("--target %s: labels are name=value", t)
			}
			tg.Labels[k] = v
		}
		f.Targets = append(f.Targets, tg)
	}
	if f.Remote == "" && len(f.Targets) == 0 {
		return errors.New("vigil observer: give --target URLs to scrape (embedded mode) or --remote URL")
	}
	cfg := slo.ObserverConfig{DataDir: f.DataDir, RemoteURL: f.Remote, Targets: f.Targets, ReportSchedule: f.ReportSchedule, ReportDir: f.ReportDir}
	for name, p := range map[string]struct {
		s   string
		dst *time.Duration
	}{"retention": {f.Retention, &cfg.TSDB.Retention}, "scrape_interval": {f.ScrapeInterval, &cfg.ScrapeInterval}, "step": {f.Step, &cfg.Step},
		"eval_interval": {f.EvalInterval, &cfg.EvalInterval}, "delay": {f.Delay, &cfg.Delay}, "backfill": {f.Backfill, &cfg.Backfill}} {
		if p.s == "" {
			continue
		}
		d, err := model.ParseDuration(p.s)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*p.dst = time.Duration(d)
	}
	ws, err := parseWindows(f.RecordWindows)
	if err != nil {
		return fmt.Errorf("record_windows: %w", err)
	}
	cfg.RecordWindows = ws
	cfg.RecordStepRates = f.RecordStepRates
	if *step > 0 {
		cfg.Step = *step
	}
	if *scrapeInterval > 0 {
		cfg.ScrapeInterval = *scrapeInterval
	}
	if len(f.RemoteHeaders) > 0 {
		cfg.RemoteHeader = http.Header{}
		for k, v := range f.RemoteHeaders {
			cfg.RemoteHeader.Set(k, v)
		}
	}
	spec, err := loadSpecs(f.Specs, f.NoDefaults)
	if err != nil {
		return err
	}
	cfg.Spec = spec
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	limit, how, err := applyMemoryLimit(f.MemoryLimit)
	if err != nil {
		return err
	}
	logger.Info("Go memory limit", "bytes", limit, "from", how)
	obs, err := slo.StartObserver(ctx, cfg)
	if err != nil {
		return err
	}
	defer obs.Close()
	ln, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", f.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", obs.Handler())
	if len(f.Controllers) > 0 {
		cc, err := controller.NewClient(controller.ClientConfig{Addrs: f.Controllers, Token: *token})
		if err != nil {
			return err
		}
		defer cc.Close()
		reg := prometheus.NewRegistry()
		if _, err := startMitigator(ctx, logger, mux, filepath.Join(f.DataDir, "mitigator"), f.MitigationMode, cc, nil, obs.Engine, reg, nil); err != nil {
			return err
		}
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	logger.Info("HTTP serving", "addr", "http://"+ln.Addr().String())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}

// devTargets is what `vigil dev` scrapes: its own /metrics (every broker,
// labelled cluster=dev and, by relabelling on the broker label, each
// broker's cell) and each controller's /metrics.
func devTargets(httpAddr string, controllerAPIs []string, brokers []devBrokerInfo) []slo.Target {
	cells := map[string][]string{}
	var order []string
	for _, b := range brokers {
		if _, ok := cells[b.Cell]; !ok {
			order = append(order, b.Cell)
		}
		cells[b.Cell] = append(cells[b.Cell], strconv.Itoa(int(b.ID)))
	}
	var relabels []*relabel.Config
	for _, c := range order {
		rc := relabel.DefaultRelabelConfig
		rc.SourceLabels = model.LabelNames{"broker"}
		rc.Regex = relabel.MustNewRegexp(strings.Join(cells[c], "|"))
		rc.TargetLabel = "cell"
		rc.Replacement = c
		rc.Action = relabel.Replace
		relabels = append(relabels, &rc)
	}
	ts := []slo.Target{{URL: "http://" + httpAddr + "/metrics", Labels: map[string]string{"job": "vigil-dev", "cluster": "dev"}, MetricRelabel: relabels}}
	for _, a := range controllerAPIs {
		ts = append(ts, slo.Target{URL: "http://" + a + "/metrics", Labels: map[string]string{"job": "vigil-controller", "cluster": "dev"}})
	}
	return ts
}

// startDevSLO starts the embedded SLO engine of `vigil dev` on
// <data-dir>/slo, scraping the dev HTTP port and the controllers every
// second and evaluating every second (recording every 10s), and serves
// its API under /api/v1/ on mux. The scrape targets follow the cluster's
// brokers as they change.
func startDevSLO(ctx context.Context, logger *slog.Logger, mux *http.ServeMux, dataDir, httpAddr string, apis []string, cluster *devCluster) (*slo.Observer, error) {
	obs, err := slo.StartObserver(ctx, slo.ObserverConfig{
		DataDir:        filepath.Join(dataDir, "slo"),
		Targets:        devTargets(httpAddr, apis, cluster.Infos()),
		ScrapeInterval: devScrapeInterval, Step: 10 * time.Second, EvalInterval: devEvalInterval,
		Spec: slo.FastDefaults(), Logger: logger.With("component", "slo"),
	})
	if err != nil {
		return nil, err
	}
	cluster.OnChange(func() {
		if err := obs.Scraper.SetTargets(devTargets(httpAddr, apis, cluster.Infos())); err != nil {
			logger.Error("updating the SLO engine's scrape targets", "err", err)
		}
	})
	mux.Handle("/api/v1/", obs.Handler())
	return obs, nil
}

// vigil dev scrapes and evaluates the health rules often, so the
// mitigator hears of a sick broker within seconds (docs/slo.md).
const (
	devScrapeInterval = time.Second
	devEvalInterval   = time.Second
)

// parseWindows parses Prometheus durations (1h, 30m, 28d); nil for none.
func parseWindows(ws []string) ([]time.Duration, error) {
	var out []time.Duration
	for _, w := range ws {
		d, err := model.ParseDuration(strings.TrimSpace(w))
		if err != nil {
			return nil, err
		}
		out = append(out, time.Duration(d))
	}
	return out, nil
}

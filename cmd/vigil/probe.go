package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/vigilhq/vigil/broker"
	"github.com/vigilhq/vigil/probes"
)

// runProbe runs `vigil probe`: synthetic clients that produce and consume
// through every broker of a Kafka-compatible cluster, with their metrics
// at --metrics-addr (see docs/probes.md).
func runProbe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bootstrap := fs.String("bootstrap", "", "seed brokers, host:port[,host:port...] (required)")
	location := fs.String("location", "", "this probe's vantage point, the location label of its metrics (required)")
	cell := fs.String("cell", probes.DefaultCell, "cell of the brokers (of all of them, unless --cell-from-rack places them)")
	cellFromRack := fs.Bool("cell-from-rack", false, "a broker's cell is its rack without its trailing digits (racks a0, a1, a2: cell a), as vigil dev names racks")
	cluster := fs.String("cluster", "", "cluster label (default: the cluster id the brokers report)")
	metricsAddr := fs.String("metrics-addr", ":9645", "HTTP address serving /metrics and /healthz")
	interval := fs.Duration("interval", probes.DefaultInterval, "time between two probes of each broker (at least 100ms)")
	timeout := fs.Duration("timeout", probes.DefaultTimeout, "deadline of every produce, metadata request, commit and connection")
	lossDeadline := fs.Duration("loss-deadline", probes.DefaultLossDeadline, "an acknowledged probe record not consumed this long after its acknowledgement is lost")
	layoutInterval := fs.Duration("layout-interval", probes.DefaultLayoutInterval, "least time between two changes to a probe topic (partitions, reassignments, elections)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logger, err := parseFlags(fs, args, logLevel, stderr)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := probes.Config{
		Bootstrap: splitList(*bootstrap), Location: *location, Cluster: *cluster, Cell: *cell,
		Interval: *interval, Timeout: *timeout, LossDeadline: *lossDeadline, LayoutInterval: *layoutInterval,
		Registerer: reg, Logger: logger,
	}
	if *cellFromRack {
		cfg.CellOf = probes.CellFromRack
	}
	p, err := probes.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *metricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("HTTP server failed", "err", err)
		}
	}()
	logger.Info("HTTP serving", "addr", "http://"+ln.Addr().String())
	err = p.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	return err
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// startDevProbe runs the probe of `vigil dev` over every cell (a probe
// topic per cell; cells read from the racks, as dev names them), location
// "dev" and cluster "dev" like the rest of dev's metrics, until ctx ends or stop is called. Its metrics are to be served
// with the brokers' (devMetrics).
func startDevProbe(ctx context.Context, bs []*broker.Broker, timeout time.Duration, logger *slog.Logger) (metrics prometheus.Gatherer, stop func()) {
	reg := prometheus.NewRegistry()
	var bootstrap []string
	for _, b := range bs {
		bootstrap = append(bootstrap, b.Addr())
	}
	p, err := probes.New(probes.Config{
		Bootstrap: bootstrap, Location: "dev", Cluster: "dev", CellOf: probes.CellFromRack,
		// Loopback answers in milliseconds: a short timeout lets the
		// fast unreachable rule see a blackholed broker sooner.
		Timeout:    timeout,
		Registerer: reg, Logger: logger.With("component", "probe"),
	})
	if err != nil { // cannot happen with this configuration
		logger.Error("not probing", "err", err)
		return reg, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Run(ctx) })
	return reg, func() { cancel(); wg.Wait() }
}

// devProbeTimeout is the default of vigil dev --probe-timeout.
const devProbeTimeout = 2 * time.Second

// devMetrics serves the brokers' metrics (h) and those of gs in one
// exposition, in whatever format the scraper negotiates (native
// histograms need protobuf).
func devMetrics(h http.Handler, gs ...prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(append(prometheus.Gatherers{handlerGatherer{h}}, gs...), promhttp.HandlerOpts{})
}

// handlerGatherer gathers the metrics a Prometheus handler serves.
type handlerGatherer struct{ h http.Handler }

func (g handlerGatherer) Gather() ([]*dto.MetricFamily, error) {
	req, err := http.NewRequest(http.MethodGet, "/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	rec := &statusRecorder{header: http.Header{}}
	g.h.ServeHTTP(rec, req)
	if rec.code != 0 && rec.code != http.StatusOK {
		return nil, fmt.Errorf("metrics handler: status %d: %s", rec.code, rec.body.String())
	}
	dec := expfmt.NewDecoder(strings.NewReader(rec.body.String()), expfmt.ResponseFormat(rec.header))
	var out []*dto.MetricFamily
	for {
		mf := &dto.MetricFamily{}
		switch err := dec.Decode(mf); {
		case errors.Is(err, io.EOF):
			return out, nil
		case err != nil:
			return out, fmt.Errorf("decoding the brokers' metrics: %w", err)
		}
		out = append(out, mf)
	}
}

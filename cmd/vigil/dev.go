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
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/broker"
	"github.com/vigilhq/vigil/controller"
)

// runDev runs `vigil dev`: the whole platform in one process with embedded
// defaults: a controller quorum, brokers in one or more cells on
// consecutive ports from --kafka-port, a probe of every broker (location
// "dev"), and one HTTP port carrying health, metrics and (as later issues
// add them) the APIs and the console.
//
// Addresses, with the defaults (--kafka-port 9092, --http-port 8080):
//
//	broker N (cell c, rack c<N mod 3>)  Kafka on 127.0.0.1:9092+N
//	controller i (1-based)              API on 127.0.0.1:8080+i, Raft on 127.0.0.1:8090+i
//	HTTP                                127.0.0.1:8080
//
// Data goes to --data-dir: controller-<i>/ and broker-<N>/.
func runDev(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "vigil-data", "directory for all data")
	kafkaPort := fs.Int("kafka-port", 9092, "Kafka port of the first broker on 127.0.0.1; broker N listens on this port + N")
	httpPort := fs.Int("http-port", 8080, "HTTP port on 127.0.0.1 (health, metrics, APIs, console); controller i's API uses this port + i, its Raft this port + 10 + i")
	brokers := fs.Int("brokers", 3, "brokers per cell")
	cells := fs.Int("cells", 1, "cells (a, b, c, ...)")
	controllers := fs.Int("controllers", 1, "controllers in the metadata quorum: 1, 3 or 5")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	pprof := fs.Bool("pprof", true, "serve Go profiles at /debug/pprof/ (the HTTP port binds 127.0.0.1)")
	staging := fs.Bool("staging", false, "allow fault injection into the brokers (vigil admin fault --broker-api http://127.0.0.1:<http-port>/brokers/<id> ...)")
	probeTimeout := fs.Duration("probe-timeout", devProbeTimeout, "timeout of each probe operation; short, so the fast unreachable rule sees a blackholed broker within seconds, but on a heavily loaded machine a short one also fails slow healthy requests")
	var mit devMitigationFlags
	mit.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := mit.validate(); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	case *brokers < 1 || *brokers > 50:
		return fmt.Errorf("--brokers must be 1..50, got %d", *brokers)
	case *cells < 1 || *cells > 26:
		return fmt.Errorf("--cells must be 1..26, got %d", *cells)
	case *controllers != 1 && *controllers != 3 && *controllers != 5:
		return fmt.Errorf("--controllers must be 1, 3 or 5, got %d", *controllers)
	}
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}

	// The quorum.
	peers := map[string]string{}
	var apis []string
	for i := 1; i <= *controllers; i++ {
		peers[strconv.Itoa(i)] = hostPort("127.0.0.1", *httpPort+10+i)
		apis = append(apis, hostPort("127.0.0.1", *httpPort+i))
	}
	if *controllers == 1 {
		peers = nil
	}
	var ctrls []*controller.Server
	closeCtrls := func() {
		for _, c := range ctrls {
			c.Close()
		}
	}
	for i := 1; i <= *controllers; i++ {
		srv, err := controller.NewServer(controller.ServerConfig{
			ID: strconv.Itoa(i), DataDir: filepath.Join(*dataDir, "controller-"+strconv.Itoa(i)),
			Listen: apis[i-1], RaftListen: hostPort("127.0.0.1", *httpPort+10+i), Peers: peers,
			ValidateTopicConfig: broker.ValidateTopicConfig,
		}, logger)
		if err != nil {
			closeCtrls()
			return err
		}
		ctrls = append(ctrls, srv)
	}

	// The brokers.
	perCell := *brokers
	rf := int16(min(3, perCell))
	tmpl := broker.DefaultConfig()
	tmpl.Controllers = apis
	tmpl.DefaultReplicationFactor = rf
	tmpl.OffsetsTopicReplicationFactor = rf
	tmpl.Pprof = *pprof
	tmpl.Staging = *staging
	// A canary a second: the fast storage rules see a slow disk within
	// seconds (docs/slo.md).
	tmpl.DiskCanaryInterval = time.Second
	cluster := newDevCluster(logger, *dataDir, tmpl)
	for c := 0; c < *cells; c++ {
		cell := string(rune('a' + c))
		for j := 0; j < perCell; j++ {
			id := c*perCell + j
			if err := cluster.add(cluster.config(int32(id), *kafkaPort+id, cell, cell+strconv.Itoa(j%3))); err != nil {
				cluster.Close()
				closeCtrls()
				return err
			}
		}
	}
	bs := cluster.current()

	probeMetrics, stopProbe := startDevProbe(ctx, bs, *probeTimeout, logger)
	defer stopProbe()
	mux := http.NewServeMux()
	mitMetrics := prometheus.NewRegistry()
	mux.Handle("/metrics", devMetrics(cluster.metricsHandler(), probeMetrics, mitMetrics))
	mux.HandleFunc("/healthz", cluster.health("/healthz"))
	mux.HandleFunc("/readyz", cluster.health("/readyz"))
	if *pprof {
		mux.Handle("/debug/pprof/", bs[0].HTTPHandler())
	}
	// Each broker's own endpoints (its admin API among them) under
	// /brokers/<id>/.
	mux.Handle("/brokers/", cluster.brokerRoutes())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		var bootstrap []string
		clusterID := ""
		for _, b := range cluster.current() {
			bootstrap = append(bootstrap, b.Addr())
			if clusterID == "" {
				clusterID = b.ClusterID()
			}
		}
		fmt.Fprintf(w, "Vigil dev\n\nKafka bootstrap: %s\ncluster id: %s\ncontroller API: %s\n\n/healthz  liveness of every broker\n/readyz   readiness of every broker\n/metrics  Prometheus metrics\n/api/v1/slos, /api/v1/signals, /api/v1/report  the SLO engine\n/brokers/<id>/  one broker's endpoints (/metrics, /readyz, /admin/v1/faults with --staging)\n",
			strings.Join(bootstrap, ","), clusterID, strings.Join(apis, ","))
	})
	// The SLO engine, embedded, scraping this process's metrics.
	obs, err := startDevSLO(ctx, logger, mux, *dataDir, hostPort("127.0.0.1", *httpPort), apis, cluster)
	if err != nil {
		cluster.Close()
		closeCtrls()
		return err
	}
	defer obs.Close()
	// The mitigator, acting on the engine's signals through the
	// controller API, with this process's brokers as its Provisioner.
	stopMitigator, err := startDevMitigator(ctx, logger, mux, mitMetrics, *dataDir, apis, cluster, obs.Engine, mit)
	if err != nil {
		cluster.Close()
		closeCtrls()
		return err
	}
	return serveAll(ctx, logger, cluster, ctrls, hostPort("127.0.0.1", *httpPort), mux, stopMitigator)
}

// devProbe answers a health endpoint for every broker: 200 when all say
// 200, else 503 with the broker that does not.
func devProbe(w http.ResponseWriter, r *http.Request, bs []*broker.Broker, path string) {
	for _, b := range bs {
		rec := &statusRecorder{header: http.Header{}}
		req := r.Clone(r.Context())
		req.URL.Path = path
		b.HTTPHandler().ServeHTTP(rec, req)
		if rec.code != 0 && rec.code != http.StatusOK {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "broker at %s: %s", b.Addr(), rec.body.String())
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// statusRecorder captures a handler's status and body.
type statusRecorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) WriteHeader(code int)        { s.code = code }
func (s *statusRecorder) Write(p []byte) (int, error) { return s.body.Write(p) }

// serveAll runs the brokers and an HTTP server until ctx ends, then shuts
// down cleanly: brokers first (controlled shutdown while the quorum is up),
// then the controllers.
func serveAll(ctx context.Context, logger *slog.Logger, cluster *devCluster, ctrls []*controller.Server, httpAddr string, handler http.Handler, stopFirst func()) error {
	// Nothing acts on the brokers while they shut down (stopFirst may
	// be called more than once).
	defer stopFirst()
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		stopFirst()
		cluster.Close()
		for _, c := range ctrls {
			c.Close()
		}
		return fmt.Errorf("listening for HTTP on %s: %w", httpAddr, err)
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("HTTP server failed", "err", err)
		}
	}()
	logger.Info("HTTP serving", "addr", "http://"+ln.Addr().String())
	cluster.serveAll()
	var serveErr error
	select {
	case <-ctx.Done():
		logger.Info("signal received; shutting down")
	case serveErr = <-cluster.serveErrs:
	}
	stopFirst()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = hs.Shutdown(sctx)
	cancel()
	errs := []error{cluster.Close()}
	for _, c := range ctrls {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return serveErr
}

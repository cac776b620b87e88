package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"

	"github.com/vigilhq/vigil/broker"
)

// runDev runs `vigil dev`: the platform in one process with embedded
// defaults. Today that is one broker and the HTTP port carrying its health
// endpoints; later issues add the controller quorum, probes, the SLO engine,
// the mitigator and the console to the same process and port.
func runDev(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "vigil-data", "directory for all data")
	kafkaPort := fs.Int("kafka-port", 9092, "Kafka listener port on 127.0.0.1")
	httpPort := fs.Int("http-port", 8080, "HTTP port on 127.0.0.1 (health today; metrics, APIs and the console as they arrive)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	pprofOn := fs.Bool("pprof", true, "serve Go profiles under /debug/pprof/ (the HTTP port binds 127.0.0.1 only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg := broker.DefaultConfig()
	cfg.DataDir = *dataDir
	cfg.Listen = hostPort("127.0.0.1", *kafkaPort)
	cfg.Pprof = *pprofOn
	b, err := broker.New(cfg, logger)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	bh := b.HTTPHandler()
	mux.Handle("/healthz", bh)
	mux.Handle("/readyz", bh)
	mux.Handle("/metrics", bh)
	endpoints := "/healthz  liveness\n/readyz   readiness\n/metrics  Prometheus metrics\n"
	if cfg.Pprof {
		mux.Handle("/debug/pprof/", bh)
		endpoints += "/debug/pprof/  Go profiles\n"
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "Vigil dev\n\nKafka bootstrap: %s\ncluster id: %s\n\n%s", b.Addr(), b.ClusterID(), endpoints)
	})
	return serve(ctx, logger, b, hostPort("127.0.0.1", *httpPort), mux)
}

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
	"os"
	"strconv"
	"time"

	"github.com/vigilhq/vigil/broker"
)

// runBroker runs `vigil broker --config FILE [flags]`: defaults, then the
// file, then flags (flags win).
func runBroker(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := broker.DefaultConfig()
	// The config file is loaded before the other flags are applied, so
	// find it first.
	pre := flag.NewFlagSet("broker", flag.ContinueOnError)
	pre.SetOutput(io.Discard)
	configPath := pre.String("config", "", "")
	_ = pre.Parse(filterFlag(args, "config"))
	if *configPath != "" {
		if err := cfg.LoadConfigFile(*configPath); err != nil {
			return err
		}
	}
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "YAML file with broker settings (keys are the flag names)")
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = os.Getenv("VIGIL_ADMIN_TOKEN")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	b, err := broker.New(cfg, logger)
	if err != nil {
		return err
	}
	return serve(ctx, logger, b, cfg.HTTPListen, b.HTTPHandler())
}

// filterFlag returns only the -name/--name flag (and its value) from args.
func filterFlag(args []string, name string) []string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		for _, p := range []string{"-" + name, "--" + name} {
			if a == p && i+1 < len(args) {
				return []string{a, args[i+1]}
			}
			if len(a) > len(p) && a[:len(p)+1] == p+"=" {
				return []string{a}
			}
		}
	}
	return nil
}

// serve runs b (and an HTTP server on httpAddr when set) until ctx ends,
// then shuts both down cleanly: in-flight requests are answered and every
// log is flushed before serve returns.
func serve(ctx context.Context, logger *slog.Logger, b *broker.Broker, httpAddr string, handler http.Handler) error {
	var hs *http.Server
	if httpAddr != "" {
		ln, err := net.Listen("tcp", httpAddr)
		if err != nil {
			b.Close()
			return fmt.Errorf("listening for HTTP on %s: %w", httpAddr, err)
		}
		hs = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("HTTP server failed", "err", err)
			}
		}()
		logger.Info("HTTP serving", "addr", "http://"+ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- b.Serve() }()
	var serveErr error
	select {
	case <-ctx.Done():
		logger.Info("signal received; shutting down")
	case serveErr = <-errc:
	}
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
	}
	if err := b.Close(); err != nil {
		return fmt.Errorf("closing broker: %w", err)
	}
	return serveErr
}

// hostPort joins host and a port number.
func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/controller"
	"github.com/vigilhq/vigil/mitigator"
	"github.com/vigilhq/vigil/slo"
)

// devMitigationFlags are vigil dev's mitigator settings.
type devMitigationFlags struct {
	mode         string
	sustain      time.Duration
	healthyFor   time.Duration
	cooldown     time.Duration
	replaceAfter time.Duration
}

func (f *devMitigationFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.mode, "mitigation-mode", mitigator.ModeAuto, "mitigator mode: off, dry-run, approve or auto (a mode set through /api/v1/mitigator/mode is kept across restarts)")
	fs.DurationVar(&f.sustain, "mitigation-sustain", time.Second, "how long a signal must hold before the mitigator acts, on top of the health rule's own for")
	fs.DurationVar(&f.healthyFor, "mitigation-healthy-for", 30*time.Second, "how long a broker must be healthy before its mitigation is undone")
	fs.DurationVar(&f.cooldown, "mitigation-cooldown", time.Minute, "least time between two mitigations of the same kind of one broker")
	fs.DurationVar(&f.replaceAfter, "mitigation-replace-after", 10*time.Minute, "how long a broker must stay sick before it is replaced by a new one (negative: never)")
}

func (f *devMitigationFlags) validate() error {
	if !mitigator.ValidMode(f.mode) {
		return fmt.Errorf("--mitigation-mode: want off, dry-run, approve or auto, got %q", f.mode)
	}
	return nil
}

// startDevMitigator runs the mitigator of vigil dev: signals from the
// embedded SLO engine, actions through the controller API, the dev
// cluster as Provisioner, its audit trail in <data-dir>/mitigator and its
// API on mux. Its metrics are registered on reg.
func startDevMitigator(ctx context.Context, logger *slog.Logger, mux *http.ServeMux, reg prometheus.Registerer, dataDir string, apis []string,
	cluster *devCluster, engine *slo.Engine, f devMitigationFlags) (stop func(), err error) {
	ctrl, err := controller.NewClient(controller.ClientConfig{Addrs: apis})
	if err != nil {
		return nil, err
	}
	m, err := mitigator.New(mitigator.Config{
		Mode: f.mode, DataDir: filepath.Join(dataDir, "mitigator"),
		Sustain: f.sustain, HealthyFor: f.healthyFor, Cooldown: f.cooldown, ReplaceAfter: f.replaceAfter,
		Logger: logger.With("component", "mitigator"), Registerer: reg,
	}, ctrl, cluster)
	if err != nil {
		return nil, err
	}
	m.Mount(mux)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		// Brokers that have not joined yet look fenced: wait for them
		// rather than record them all as down at start.
		for _, b := range cluster.current() {
			select {
			case <-b.Joined():
			case <-ctx.Done():
				return
			}
		}
		// ... and for an evaluation of metrics scraped since.
		joined := time.Now()
		for engine.LastEvaluation().Before(joined.Add(2 * devScrapeInterval)) {
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
		if err := m.Run(ctx, engine); err != nil {
			logger.Error("mitigator stopped", "err", err)
		}
	})
	return sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		if err := m.Close(); err != nil {
			logger.Warn("closing the mitigator's audit trail", "err", err)
		}
		ctrl.Close()
	}), nil
}

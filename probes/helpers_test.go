package probes

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/internal/vigiltest"
)

// startProbe runs a probe until the test ends.
func startProbe(t *testing.T, cfg Config) *Prober {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = vigiltest.Logger().With("probe", cfg.Location)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("probe: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("the probe did not stop within a minute")
		}
	})
	return p
}

var waitFor = vigiltest.WaitFor

// metric sums the series of a family whose labels include want.
func metric(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	return vigiltest.Sum(t, g, name, want)
}

// l builds a label set from pairs.
func l(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

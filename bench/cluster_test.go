package bench

import (
	"io"
	"log/slog"
	"testing"

	"github.com/vigilhq/vigil/broker"
)

// startTestCluster starts a Vigil broker on a loopback port for the duration
// of the test and returns its bootstrap address.
func startTestCluster(t *testing.T) (addr string) {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	b, err := broker.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("starting broker: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve() }()
	select {
	case <-b.Joined():
	case err := <-done:
		t.Fatalf("broker: %v", err)
	}
	t.Cleanup(func() {
		b.Close()
		if err := <-done; err != nil {
			t.Errorf("broker: %v", err)
		}
	})
	return b.Addr()
}

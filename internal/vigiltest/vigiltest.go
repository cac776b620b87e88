// Package vigiltest is test support for the packages that drive a Vigil
// cluster from outside (probes, and later the SLO engine, the mitigator,
// chaos drills): a cluster of real brokers and a controller in the test
// process, on loopback ports, and helpers to wait for conditions and read
// metrics. The broker's own tests cannot use it (it imports the broker).
package vigiltest

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/broker"
	"github.com/vigilhq/vigil/controller"
)

// Logger logs at debug level to stderr when VIGIL_TEST_LOG is set, else
// nowhere.
func Logger() *slog.Logger {
	if os.Getenv("VIGIL_TEST_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// WaitFor polls cond every 20ms until it holds, failing the test after d.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// Sum adds up the series of the metric family name whose labels include
// want: counter and gauge values, histogram sample counts.
func Sum(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			matched := 0
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
					matched++
				}
			}
			if matched < len(want) {
				continue
			}
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// Cluster is a controller quorum of one and brokers 0..n-1 in cell a
// (racks a0, a1, ...), as `vigil dev` lays them out, with failure
// detection tuned for tests (2s sessions and replica lag). A stopped
// broker restarts on its address and data.
type Cluster struct {
	t       testing.TB
	ctrl    *controller.Server
	dirs    []string
	addrs   []string
	brokers []*broker.Broker // nil while stopped
	done    []chan error
	opts    []func(i int, cfg *broker.Config)
}

// StartCluster starts a cluster of n brokers and stops it when the test
// ends. opts change broker i's configuration at every start.
func StartCluster(t testing.TB, n int, opts ...func(i int, cfg *broker.Config)) *Cluster {
	t.Helper()
	ctrl, err := controller.NewServer(controller.ServerConfig{
		ID: "1", DataDir: filepath.Join(t.TempDir(), "controller"),
		Listen: "127.0.0.1:0", RaftListen: "127.0.0.1:0",
		SessionTimeout:       2 * time.Second,
		ValidateTopicConfig:  broker.ValidateTopicConfig,
		RaftHeartbeatTimeout: 200 * time.Millisecond, RaftElectionTimeout: 200 * time.Millisecond,
		LeaderRebalanceInterval: -1,
	}, Logger())
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, ctrl: ctrl, opts: opts}
	for range n {
		c.dirs = append(c.dirs, t.TempDir())
		c.addrs = append(c.addrs, "127.0.0.1:0")
		c.brokers = append(c.brokers, nil)
		c.done = append(c.done, nil)
	}
	t.Cleanup(func() {
		for i := range c.brokers {
			c.Stop(i)
		}
		ctrl.Close()
	})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { c.Start(i) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return c
}

// Start starts broker i on its data and address (a new loopback port the
// first time) and waits until it has joined the cluster.
func (c *Cluster) Start(i int) {
	cfg := broker.DefaultConfig()
	cfg.NodeID, cfg.Listen, cfg.DataDir = int32(i), c.addrs[i], c.dirs[i]
	cfg.Controllers = []string{c.ctrl.Addr()}
	cfg.Cell, cfg.Rack = "a", "a"+strconv.Itoa(i)
	cfg.BrokerHeartbeatInterval = 200 * time.Millisecond
	cfg.ReplicaLagTimeMax = 2 * time.Second
	cfg.OffsetsTopicPartitions = 3
	cfg.OffsetsTopicReplicationFactor = int16(min(3, len(c.addrs)))
	for _, o := range c.opts {
		o(i, &cfg)
	}
	b, err := broker.New(cfg, Logger().With("node", i))
	if err != nil {
		c.t.Errorf("starting broker %d: %v", i, err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve() }()
	select {
	case <-b.Joined():
		c.brokers[i], c.done[i], c.addrs[i] = b, done, b.Addr()
	case err := <-done:
		c.t.Errorf("broker %d stopped while joining: %v", i, err)
	}
}

// Stop stops broker i, if it runs, with a controlled shutdown.
func (c *Cluster) Stop(i int) {
	if b := c.brokers[i]; b != nil {
		c.brokers[i] = nil
		b.Close()
		if err := <-c.done[i]; err != nil {
			c.t.Errorf("broker %d: %v", i, err)
		}
	}
}

// ControllerAddr returns the controller's HTTP API address, for a
// controller.Client (admin actions, metadata).
func (c *Cluster) ControllerAddr() string { return c.ctrl.Addr() }

// Addr returns the address broker i listens on.
func (c *Cluster) Addr(i int) string { return c.addrs[i] }

// Bootstrap returns the addresses of the running brokers.
func (c *Cluster) Bootstrap() []string {
	var out []string
	for i, b := range c.brokers {
		if b != nil {
			out = append(out, c.addrs[i])
		}
	}
	return out
}

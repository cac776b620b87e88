package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil/broker"
)

// devCluster is the set of brokers of `vigil dev`, which can change while
// it runs: the mitigator provisions, restarts and retires brokers through
// it (it implements the mitigator's Provisioner). Everything that serves
// or watches the brokers (health, /metrics, /brokers/<id>/, the SLO
// engine's scrape targets) asks it for the current set.
type devCluster struct {
	logger   *slog.Logger
	dataDir  string
	template broker.Config // NodeID, Listen, DataDir, Cell and Rack are set per broker

	mu      sync.Mutex
	brokers map[int32]*devBroker
	retired map[int32]bool // ids never to reuse
	// busy serialises the Provision, Restart and Retire of one id.
	busy      map[int32]bool
	onChange  []func()
	closed    bool
	serveWG   sync.WaitGroup
	serveErrs chan error // a broker's Serve failing (not after Close)
}

// devBroker is one broker of the dev cluster: its configuration survives
// restarts.
type devBroker struct {
	cfg broker.Config
	b   *broker.Broker // nil while restarting
}

// devBrokerInfo describes a broker of the dev cluster.
type devBrokerInfo struct {
	ID   int32
	Cell string
	Rack string
	Addr string
}

// restartCloseTimeout bounds how long Restart and Retire wait for a broker
// to close. Close itself is bounded (controlled shutdown within half the
// shutdown timeout, in-flight requests within the shutdown timeout, and
// injected stuck storage is released when it begins), so this only
// guards against a bug.
func (c *devCluster) closeTimeout() time.Duration {
	return 2*c.template.ShutdownTimeout + 10*time.Second
}

func newDevCluster(logger *slog.Logger, dataDir string, template broker.Config) *devCluster {
	return &devCluster{
		logger: logger, dataDir: dataDir, template: template,
		brokers: map[int32]*devBroker{}, retired: map[int32]bool{}, busy: map[int32]bool{},
		serveErrs: make(chan error, 64),
	}
}

// config returns the configuration of broker id.
func (c *devCluster) config(id int32, port int, cell, rack string) broker.Config {
	cfg := c.template
	cfg.NodeID = id
	cfg.Listen = hostPort("127.0.0.1", port)
	cfg.DataDir = filepath.Join(c.dataDir, "broker-"+strconv.Itoa(int(id)))
	cfg.Cell = cell
	cfg.Rack = rack
	return cfg
}

// add opens a broker (New: its listener is bound) without serving it.
func (c *devCluster) add(cfg broker.Config) error {
	b, err := broker.New(cfg, c.logger)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.brokers[cfg.NodeID] = &devBroker{cfg: cfg, b: b}
	c.mu.Unlock()
	return nil
}

// serve runs b.Serve in the background; an error (never after Close) is
// reported on serveErrs.
func (c *devCluster) serve(b *broker.Broker) {
	c.serveWG.Add(1)
	go func() {
		defer c.serveWG.Done()
		if err := b.Serve(); err != nil {
			select {
			case c.serveErrs <- err:
			default:
			}
		}
	}()
}

// serveAll serves every broker opened so far.
func (c *devCluster) serveAll() {
	for _, b := range c.current() {
		c.serve(b)
	}
}

// current returns the running brokers, by id.
func (c *devCluster) current() []*broker.Broker {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*broker.Broker
	for _, id := range c.idsLocked() {
		if b := c.brokers[id].b; b != nil {
			out = append(out, b)
		}
	}
	return out
}

// Broker returns broker id, or nil.
func (c *devCluster) Broker(id int32) *broker.Broker {
	c.mu.Lock()
	defer c.mu.Unlock()
	if db := c.brokers[id]; db != nil {
		return db.b
	}
	return nil
}

func (c *devCluster) idsLocked() []int32 {
	var ids []int32
	for id := range c.brokers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Infos describes every broker of the cluster (running or restarting), by
// id.
func (c *devCluster) Infos() []devBrokerInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []devBrokerInfo
	for _, id := range c.idsLocked() {
		db := c.brokers[id]
		out = append(out, devBrokerInfo{ID: id, Cell: db.cfg.Cell, Rack: db.cfg.Rack, Addr: db.cfg.Listen})
	}
	return out
}

// OnChange registers fn, called after every change to the set of brokers
// (not under the cluster's lock).
func (c *devCluster) OnChange(fn func()) {
	c.mu.Lock()
	c.onChange = append(c.onChange, fn)
	c.mu.Unlock()
}

func (c *devCluster) changed() {
	c.mu.Lock()
	fns := slices.Clone(c.onChange)
	c.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// claim marks id busy (one operation at a time per broker).
func (c *devCluster) claim(id int32) (*devBroker, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("vigil dev is shutting down")
	}
	db := c.brokers[id]
	if db == nil {
		return nil, fmt.Errorf("broker %d is not part of this vigil dev", id)
	}
	if c.busy[id] {
		return nil, fmt.Errorf("broker %d is being restarted or retired already", id)
	}
	c.busy[id] = true
	return db, nil
}

func (c *devCluster) release(id int32) {
	c.mu.Lock()
	delete(c.busy, id)
	c.mu.Unlock()
}

// Provision starts a new broker in cell with rack: the next id (one more
// than any broker this process has had), its data in <data-dir>/broker-<id>,
// Kafka on the first free port after the existing brokers'. It returns
// the id once the broker has registered with the quorum and is ready.
func (c *devCluster) Provision(ctx context.Context, cell, rack string) (int32, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, errors.New("vigil dev is shutting down")
	}
	id := int32(0)
	port := 0
	for bid, db := range c.brokers {
		id = max(id, bid+1)
		_, p, _ := strings.Cut(db.cfg.Listen, "127.0.0.1:")
		if n, err := strconv.Atoi(p); err == nil {
			port = max(port, n+1)
		}
	}
	for rid := range c.retired {
		id = max(id, rid+1)
	}
	c.busy[id] = true
	c.retired[id] = true // reserved: a concurrent Provision takes the next
	c.mu.Unlock()
	defer c.release(id)
	var b *broker.Broker
	var err error
	for try := 0; try < 100; try++ {
		cfg := c.config(id, port+try, cell, rack)
		if b, err = broker.New(cfg, c.logger); err == nil {
			c.mu.Lock()
			delete(c.retired, id)
			c.brokers[id] = &devBroker{cfg: cfg, b: b}
			c.mu.Unlock()
			break
		}
		if !strings.Contains(err.Error(), "listening") {
			return 0, fmt.Errorf("provisioning broker %d: %w", id, err)
		}
	}
	if b == nil {
		return 0, fmt.Errorf("provisioning broker %d: no free port from %d: %w", id, port, err)
	}
	c.serve(b)
	c.changed()
	c.logger.Info("provisioned a broker", "broker", id, "cell", cell, "rack", rack, "listen", b.Addr())
	if err := c.awaitReady(ctx, b); err != nil {
		return id, fmt.Errorf("broker %d started but is not ready: %w", id, err)
	}
	return id, nil
}

// awaitReady waits until b has joined the cluster and answers /readyz.
func (c *devCluster) awaitReady(ctx context.Context, b *broker.Broker) error {
	select {
	case <-b.Joined():
	case <-ctx.Done():
		return ctx.Err()
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		rec := &statusRecorder{header: http.Header{}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/readyz", nil)
		b.HTTPHandler().ServeHTTP(rec, req)
		if rec.code == 0 || rec.code == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last /readyz: %d %s)", ctx.Err(), rec.code, strings.TrimSpace(rec.body.String()))
		case <-t.C:
		}
	}
}

// closeBounded closes b, giving up (and leaving it behind) after the
// cluster's close timeout or when ctx ends; closed says whether Close
// returned (err is then what it returned).
func (c *devCluster) closeBounded(ctx context.Context, b *broker.Broker) (closed bool, err error) {
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	t := time.NewTimer(c.closeTimeout())
	defer t.Stop()
	select {
	case err := <-done:
		return true, err
	case <-t.C:
		// A bug: say where it is stuck.
		var stacks strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		c.logger.Error("a broker did not close in time; goroutines follow", "timeout", c.closeTimeout(), "goroutines", stacks.String())
		return false, fmt.Errorf("broker did not close within %s", c.closeTimeout())
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// Restart stops broker id (a controlled shutdown; injected faults, stuck
// storage among them, are released and forgotten) and starts it again
// with the same id, port and data. It returns once the broker is ready
// again.
func (c *devCluster) Restart(ctx context.Context, id int32) error {
	db, err := c.claim(id)
	if err != nil {
		return err
	}
	defer c.release(id)
	c.mu.Lock()
	old := db.b
	db.b = nil
	c.mu.Unlock()
	c.changed()
	if old != nil {
		c.logger.Info("restarting a broker", "broker", id)
		closed, err := c.closeBounded(ctx, old)
		if !closed {
			return fmt.Errorf("restarting broker %d: %w", id, err)
		}
		if err != nil {
			// A log that failed to flush on a broken disk: recovery
			// at start handles it.
			c.logger.Warn("closing the broker to restart it", "broker", id, "err", err)
		}
	}
	var b *broker.Broker
	for try := 0; ; try++ {
		b, err = broker.New(db.cfg, c.logger)
		if err == nil {
			break
		}
		// The kernel may take a moment to free the port.
		if try >= 50 || !strings.Contains(err.Error(), "listening") {
			return fmt.Errorf("restarting broker %d: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("restarting broker %d: %w (last: %v)", id, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		b.Close()
		return errors.New("vigil dev is shutting down")
	}
	db.b = b
	c.mu.Unlock()
	c.serve(b)
	c.changed()
	if err := c.awaitReady(ctx, b); err != nil {
		return fmt.Errorf("broker %d restarted but is not ready: %w", id, err)
	}
	c.logger.Info("restarted a broker", "broker", id)
	return nil
}

// Retire stops broker id for good (it should have been decommissioned:
// it holds no replicas) and forgets it; its data directory stays.
func (c *devCluster) Retire(ctx context.Context, id int32) error {
	db, err := c.claim(id)
	if err != nil {
		return err
	}
	defer c.release(id)
	c.mu.Lock()
	old := db.b
	db.b = nil
	c.mu.Unlock()
	var cerr error
	if old != nil {
		_, cerr = c.closeBounded(ctx, old)
	}
	c.mu.Lock()
	delete(c.brokers, id)
	c.retired[id] = true
	c.mu.Unlock()
	c.changed()
	c.logger.Info("retired a broker", "broker", id)
	if cerr != nil {
		return fmt.Errorf("retiring broker %d: %w", id, cerr)
	}
	return nil
}

// Close closes every broker at once (each a controlled shutdown) and
// refuses further changes.
func (c *devCluster) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	bs := c.current()
	errs := make([]error, len(bs))
	var wg sync.WaitGroup
	for i, b := range bs {
		wg.Go(func() { errs[i] = b.Close() })
	}
	wg.Wait()
	c.serveWG.Wait()
	return errors.Join(errs...)
}

// metricsHandler serves the process metrics and every current broker's.
func (c *devCluster) metricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		broker.MetricsHandler(c.current()...).ServeHTTP(w, r)
	})
}

// health answers /healthz or /readyz for every broker: 200 when all say
// 200, else 503 naming the broker that does not (or that is restarting).
func (c *devCluster) health(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		restarting := []int32{}
		for _, id := range c.idsLocked() {
			if c.brokers[id].b == nil {
				restarting = append(restarting, id)
			}
		}
		c.mu.Unlock()
		if len(restarting) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "broker %d is restarting", restarting[0])
			return
		}
		devProbe(w, r, c.current(), path)
	}
}

// brokerRoutes serves /brokers/<id>/... from broker id's own handler.
func (c *devCluster) brokerRoutes() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/brokers/")
		idStr, _, _ := strings.Cut(rest, "/")
		id, err := strconv.ParseInt(idStr, 10, 32)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		b := c.Broker(int32(id))
		if b == nil {
			http.Error(w, fmt.Sprintf("broker %d is not running in this vigil dev", id), http.StatusNotFound)
			return
		}
		http.StripPrefix("/brokers/"+idStr, b.HTTPHandler()).ServeHTTP(w, r)
	})
}

package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	vlog "github.com/vigilhq/vigil/broker/log"
)

// Broker is one Vigil broker. Create it with New, run it with Serve, stop it
// with Close.
type Broker struct {
	cfg    Config
	logger *slog.Logger

	ln            net.Listener
	advertiseHost string
	advertisePort int32

	meta     *metaStore
	link     *controllerLink
	fetchers *fetchers
	pids     pidAllocator
	groups   *groupCoordinator
	registry *prometheus.Registry
	storage  *storageMetrics
	// reqMetrics is nil when request metrics are off, tracing when
	// tracing is.
	reqMetrics *requestMetrics
	tracing    *tracing
	faults     *faults // injected faults (--staging)
	// ISR changes made as a leader (vigil_partition_isr_*_total).
	isrShrinks, isrExpands prometheus.Counter
	// reassignThrottle limits replication to replicas being added by a
	// reassignment (throttle.go); throttledBytes and throttledReads
	// count what it let through and what it held back.
	reassignThrottle               *replicaThrottle
	throttledBytes, throttledReads prometheus.Counter
	cleaner                        *vlog.Cleaner // nil when log-cleaner-threads is 0

	telemetry *telemetryStore // KIP-714 client metrics

	ctx    context.Context // ends when Close begins
	cancel context.CancelFunc

	connsMu sync.Mutex
	conns   map[*conn]struct{}
	connWG  sync.WaitGroup
	bgWG    sync.WaitGroup

	ready     atomic.Bool
	joined    chan struct{} // closed when Serve has joined the cluster (or failed to)
	closeOnce sync.Once
	closeErr  error
}

// New opens the broker's data directory (recovering every partition log),
// binds its Kafka listener, and returns a broker ready to Serve.
func New(cfg Config, logger *slog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("broker", cfg.NodeID)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	registry, labeled, storage := newRegistry(cfg.NodeID, cfg.MetricsNativeHistograms)
	base := cfg.FS
	if base == nil {
		base = vlog.OSFS()
	}
	flt := newFaults(cfg.Staging)
	cfg.FS = meteredFS{FS: base, m: storage, faults: flt}
	meta, err := newMetaStore(cfg, logger)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening for Kafka clients on %s: %w", cfg.Listen, err)
	}
	adv := cfg.Advertise
	if adv == "" {
		adv = ln.Addr().String()
	}
	host, portStr, _ := net.SplitHostPort(adv)
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		ln.Close()
		return nil, fmt.Errorf("advertised address %q has no usable port", adv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:           cfg,
		logger:        logger,
		ln:            ln,
		advertiseHost: host,
		advertisePort: int32(port),
		meta:          meta,
		ctx:           ctx,
		cancel:        cancel,
		conns:         make(map[*conn]struct{}),
		joined:        make(chan struct{}),
		faults:        flt,
	}
	b.fetchers = newFetchers(b)
	b.reassignThrottle = newReplicaThrottle(cfg.ReplicaReassignmentThrottleBytesPerSecond, nil)
	b.groups = newGroupCoordinator(b)
	meta.hooks = b
	b.telemetry = newTelemetryStore(cfg.TelemetryConfig, time.Now)
	b.registry, b.storage = registry, storage
	b.registerCollectors(labeled)
	if b.link, err = newControllerLink(b); err != nil {
		ln.Close()
		cancel()
		return nil, err
	}
	if b.tracing, err = newTracing(cfg, logger); err != nil {
		ln.Close()
		cancel()
		return nil, err
	}
	if cfg.LogCleanerThreads > 0 {
		b.cleaner = vlog.NewCleaner(vlog.CleanerConfig{
			IOMaxBytesPerSecond: cfg.LogCleanerIOMaxBytesPerSecond,
			DedupeBufferBytes:   cfg.LogCleanerDedupeBufferSize / int64(cfg.LogCleanerThreads),
			Logger:              logger,
		})
	}
	return b, nil
}

// Joined is closed once Serve has registered with the controller quorum
// and applied its metadata image (the logs of this broker's replicas are
// open), or failed to.
func (b *Broker) Joined() <-chan struct{} { return b.joined }

// Addr returns the address the Kafka listener is bound to.
func (b *Broker) Addr() string { return b.ln.Addr().String() }

// ClusterID returns the cluster id reported to clients (empty until the
// broker has the metadata image).
func (b *Broker) ClusterID() string { return b.meta.clusterIDNow() }

// Serve accepts Kafka connections until Close. It returns nil after Close.
func (b *Broker) Serve() error {
	// Under connsMu, which Close takes after cancelling ctx: either Close
	// waits for this goroutine, or Serve sees ctx ended and starts nothing.
	b.connsMu.Lock()
	if b.ctx.Err() != nil {
		b.connsMu.Unlock()
		return nil
	}
	b.bgWG.Add(1)
	b.connsMu.Unlock()
	// Join the cluster before taking clients: register, take the image
	// (opening the logs of the replicas it assigns here), then follow it.
	if err := b.link.register(b.ctx); err != nil {
		b.bgWG.Done()
		close(b.joined)
		return b.startError(err)
	}
	offset, err := b.link.loadImage(b.ctx)
	if err != nil {
		b.bgWG.Done()
		close(b.joined)
		return b.startError(err)
	}
	b.link.start(offset)
	if err := b.link.awaitUnfenced(b.ctx); err != nil {
		b.bgWG.Done()
		close(b.joined)
		return b.startError(err)
	}
	close(b.joined)
	// ISR changes every replica.lag.time.max.ms/4.
	b.every(max(b.cfg.ReplicaLagTimeMax/4, 50*time.Millisecond), b.checkISRs)
	b.bgWG.Add(1)
	go func() { defer b.bgWG.Done(); b.canaryLoop() }()
	if b.reqMetrics != nil {
		b.every(labelsWindow, b.reqMetrics.rankLabels)
	}
	// Retention, time-based rolling and time-based flushing.
	b.every(b.cfg.RetentionCheckInterval, b.meta.maintain)
	b.bgWG.Done() // taken above, under connsMu
	if b.cleaner != nil {
		for range b.cfg.LogCleanerThreads {
			b.bgWG.Add(1)
			go func() { defer b.bgWG.Done(); b.cleanerLoop() }()
		}
	}
	b.ready.Store(true)
	b.logger.Info("broker serving Kafka", "listen", b.Addr(),
		"advertise", net.JoinHostPort(b.advertiseHost, strconv.Itoa(int(b.advertisePort))),
		"data_dir", b.cfg.DataDir, "cluster_id", b.meta.clusterID)
	var tempDelay time.Duration
	for {
		nc, err := b.ln.Accept()
		if err != nil {
			if b.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors or similar: back off, do not spin.
				if tempDelay == 0 {
					tempDelay = 5 * time.Millisecond
				} else if tempDelay *= 2; tempDelay > time.Second {
					tempDelay = time.Second
				}
				b.logger.Warn("accept failed; retrying", "err", err, "delay", tempDelay)
				select {
				case <-time.After(tempDelay):
				case <-b.ctx.Done():
					return nil
				}
				continue
			}
			return fmt.Errorf("accepting Kafka connections: %w", err)
		}
		tempDelay = 0
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		c := newConn(b, nc)
		b.connsMu.Lock()
		if b.ctx.Err() != nil {
			b.connsMu.Unlock()
			nc.Close()
			return nil
		}
		b.conns[c] = struct{}{}
		b.connWG.Add(1)
		b.connsMu.Unlock()
		go func() {
			defer b.connWG.Done()
			c.serve()
			b.connsMu.Lock()
			delete(b.conns, c)
			b.connsMu.Unlock()
		}()
	}
}

// startError is what Serve returns when joining the cluster failed: nothing
// if Close interrupted it.
func (b *Broker) startError(err error) error {
	if b.ctx.Err() != nil {
		return nil
	}
	return err
}

// Close moves this broker's leaderships to other replicas (controlled
// shutdown), stops accepting connections, answers the requests already
// received (long-poll fetches return at once with what they have), closes
// every connection, and flushes and closes every partition log.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		wasReady := b.ready.Swap(false)
		b.logger.Info("broker shutting down")
		// Controlled shutdown gets half the shutdown timeout. It waits
		// for metadata, whose lock a write blocked on a stuck disk may
		// hold: past the timeout, shutdown goes on, releases the injected
		// faults (which frees that lock) and only then waits for it.
		csDone := make(chan struct{})
		if wasReady {
			ctx, cancel := context.WithTimeout(b.ctx, b.cfg.ShutdownTimeout/2)
			go func() { defer close(csDone); b.link.controlledShutdown(ctx) }()
			select {
			case <-csDone:
			case <-ctx.Done():
				b.logger.Warn("controlled shutdown did not finish in time (stuck storage?); shutting down anyway", "timeout", b.cfg.ShutdownTimeout/2)
			}
			cancel()
		} else {
			close(csDone)
		}
		b.cancel()
		b.faults.close() // releases blocked writes and traffic
		<-csDone
		b.ln.Close()
		b.connsMu.Lock()
		for c := range b.conns {
			c.stop()
		}
		b.connsMu.Unlock()
		done := make(chan struct{})
		go func() { b.connWG.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(b.cfg.ShutdownTimeout):
			b.logger.Warn("in-flight requests did not finish in time; closing connections", "timeout", b.cfg.ShutdownTimeout)
			b.connsMu.Lock()
			for c := range b.conns {
				c.nc.Close()
			}
			b.connsMu.Unlock()
			<-done
		}
		b.bgWG.Wait()
		b.fetchers.close()
		b.groups.close()
		b.link.close()
		b.closeErr = b.meta.close()
		if err := b.tracing.shutdown(); err != nil {
			b.logger.Warn("exporting the last spans failed", "err", err)
		}
		b.logger.Info("broker stopped")
	})
	return b.closeErr
}

// every runs fn every interval in the background until the broker closes.
func (b *Broker) every(interval time.Duration, fn func()) {
	b.bgWG.Add(1)
	go func() {
		defer b.bgWG.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-b.ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	}()
}

// maxCleaningsInARow bounds the cleanings a cleaner thread runs back to
// back before it pauses for log-cleaner-backoff, so that a partition that
// keeps asking for cleaning cannot keep a thread busy forever.
const maxCleaningsInARow = 100

// cleanerLoop is one cleaner thread (log.cleaner.threads): it cleans the
// filthiest compacted partition that needs it, one partition at a time,
// and sleeps for log-cleaner-backoff when none does. Shutdown stops a
// cleaning between two batches. A cleaning that fails takes only that
// partition's compaction offline (logged by the log engine); appends and
// fetches go on.
func (b *Broker) cleanerLoop() {
	inARow := 0
	for {
		l, _, err := b.cleaner.CleanFilthiest(b.ctx, b.meta.partitionLogs())
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			b.logger.Debug("log cleaning failed", "err", err)
		}
		if l != nil && inARow < maxCleaningsInARow {
			inARow++
			continue
		}
		inARow = 0
		t := time.NewTimer(b.cfg.LogCleanerBackoff)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// cleanNow compacts every compacted partition now, ignoring
// min.cleanable.dirty.ratio (tests use it instead of waiting for the
// background cleaner).
func (b *Broker) cleanNow(ctx context.Context) error {
	if b.cleaner == nil {
		return errors.New("the log cleaner is off (log-cleaner-threads is 0)")
	}
	for _, l := range b.meta.partitionLogs() {
		if _, err := b.cleaner.Clean(ctx, l); err != nil {
			return err
		}
	}
	return nil
}

// HTTPHandler serves the broker's health endpoints and metrics:
//
//	/metrics  Prometheus metrics (see docs/metrics.md)
//	/healthz  200 while the process is up and serving (liveness)
//	/readyz   200 once the listener accepts and every partition log is
//	          online; 503 with the offline partitions otherwise (readiness)
//	/debug/pprof/  Go profiles (CPU, heap, goroutines, trace), only when
//	          Config.Pprof is set: they are not authenticated
func (b *Broker) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	if b.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/metrics", MetricsHandler(b))
	mux.HandleFunc("/admin/v1/faults", b.serveFaults)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if b.ctx.Err() != nil {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !b.ready.Load() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		if offline := b.meta.offlinePartitions(); len(offline) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "offline partitions (storage errors): %v\n", offline)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

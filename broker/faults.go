package broker

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/internal/catalogue"
)

// Fault injection, for staging only (--staging): what the mitigator and the
// chaos drills need to make a broker sick for real. Storage faults add
// latency to, fail, or block the writes and fsyncs of the partition logs
// (and the disk canary), below the storage metrics, so they look exactly
// like a degraded disk. Network faults blackhole or drop the broker's
// traffic by peer class — its client connections, its replication to and
// from other brokers, its link to the controller quorum — in either
// direction, so a broker can stay alive to the controller while clients
// and peers time out (a gray failure). Faults are set and cleared through
// the admin API (PUT/DELETE /admin/v1/faults, `vigil admin fault`) and
// vanish on restart.

// Faults is the set of faults a broker injects.
type Faults struct {
	Storage []StorageFault `json:"storage,omitempty"`
	Network []NetworkFault `json:"network,omitempty"`
}

// StorageFault slows, fails or blocks file operations of the partition logs.
type StorageFault struct {
	// Op is write, fsync or all.
	Op string `json:"op"`
	// Latency is added to every matching operation.
	Latency Duration `json:"latency,omitempty"`
	// ErrorRate is the fraction (0 to 1) of matching operations that fail
	// with EIO.
	ErrorRate float64 `json:"error_rate,omitempty"`
	// Stuck blocks every matching operation until the fault is cleared
	// (a disk that makes no progress).
	Stuck bool `json:"stuck,omitempty"`
}

// NetworkFault blackholes or drops one class of the broker's traffic.
type NetworkFault struct {
	// Peer is clients (connections from anything but another broker's
	// replica fetcher), replication (fetches between brokers, both ways)
	// or controller (the broker's link to the quorum).
	Peer string `json:"peer"`
	// Broker limits a replication fault to traffic with one broker.
	Broker *int32 `json:"broker,omitempty"`
	// Direction is in (what the broker receives), out (what it sends) or
	// both. For connections to the broker, out means requests are handled
	// but their responses never leave.
	Direction string `json:"direction"`
	// Mode is blackhole (traffic vanishes; peers wait until they time
	// out) or drop (connections are reset at once).
	Mode string `json:"mode"`
}

// Duration is a time.Duration written as a Go duration string ("300ms").
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 300ms or 2s", b)
	}
	*d = Duration(v)
	return nil
}

// Peer classes and directions.
const (
	peerClients     = "clients"
	peerReplication = "replication"
	peerController  = "controller"
	dirIn           = "in"
	dirOut          = "out"
	modeBlackhole   = "blackhole"
	modeDrop        = "drop"
)

// Validate says what is wrong with a fault set.
func (f Faults) Validate() error {
	for i, s := range f.Storage {
		where := fmt.Sprintf("storage[%d]", i)
		switch {
		case s.Op != "write" && s.Op != "fsync" && s.Op != "all":
			return fmt.Errorf("%s.op must be write, fsync or all, got %q", where, s.Op)
		case s.Latency < 0 || time.Duration(s.Latency) > time.Hour:
			return fmt.Errorf("%s.latency must be between 0 and 1h, got %v", where, time.Duration(s.Latency))
		case s.ErrorRate < 0 || s.ErrorRate > 1:
			return fmt.Errorf("%s.error_rate must be between 0 and 1, got %v", where, s.ErrorRate)
		case s.Latency == 0 && s.ErrorRate == 0 && !s.Stuck:
			return fmt.Errorf("%s does nothing: set latency, error_rate or stuck", where)
		}
	}
	for i, n := range f.Network {
		where := fmt.Sprintf("network[%d]", i)
		switch {
		case n.Peer != peerClients && n.Peer != peerReplication && n.Peer != peerController:
			return fmt.Errorf("%s.peer must be clients, replication or controller, got %q", where, n.Peer)
		case n.Direction != dirIn && n.Direction != dirOut && n.Direction != "both":
			return fmt.Errorf("%s.direction must be in, out or both, got %q", where, n.Direction)
		case n.Mode != modeBlackhole && n.Mode != modeDrop:
			return fmt.Errorf("%s.mode must be blackhole or drop, got %q", where, n.Mode)
		case n.Broker != nil && n.Peer != peerReplication:
			return fmt.Errorf("%s.broker applies to peer replication only", where)
		}
	}
	return nil
}

// errFaultsNotStaging refuses fault injection outside staging.
var errFaultsNotStaging = errors.New("fault injection is refused: this broker was not started with --staging (never inject faults in production)")

// errInjected is the error of an injected storage failure.
var errInjected = fmt.Errorf("injected fault: %w", syscall.EIO)

// faults is a broker's fault injector. The hot paths read one atomic
// pointer; nil means no fault.
type faults struct {
	staging bool
	mu      sync.Mutex
	cur     atomic.Pointer[Faults]
	changed chan struct{} // closed and replaced on every change
	closed  bool
	stuck   atomic.Int64 // storage operations blocked by a stuck fault
}

var (
	mInjectedFaults = catalogue.Declare("broker", "vigil_broker_injected_faults", catalogue.Gauge,
		"Faults this broker injects (--staging only), by kind (storage, network).", "kind")
	mStuckOps = catalogue.Declare("broker", "vigil_storage_stuck_operations", catalogue.Gauge,
		"Log writes and fsyncs blocked by an injected stuck-storage fault.")
)

// Describe and Collect export the fault metrics.
func (f *faults) Describe(ch chan<- *prometheus.Desc) {
	ch <- mInjectedFaults.Desc()
	ch <- mStuckOps.Desc()
}

func (f *faults) Collect(ch chan<- prometheus.Metric) {
	cur := f.get()
	ch <- prometheus.MustNewConstMetric(mInjectedFaults.Desc(), prometheus.GaugeValue, float64(len(cur.Storage)), "storage")
	ch <- prometheus.MustNewConstMetric(mInjectedFaults.Desc(), prometheus.GaugeValue, float64(len(cur.Network)), "network")
	ch <- prometheus.MustNewConstMetric(mStuckOps.Desc(), prometheus.GaugeValue, float64(f.stuck.Load()))
}

func newFaults(staging bool) *faults {
	return &faults{staging: staging, changed: make(chan struct{})}
}

// set replaces the faults; an empty set clears them.
func (f *faults) set(next Faults) error {
	if !f.staging {
		return errFaultsNotStaging
	}
	if err := next.Validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("the broker is shutting down")
	}
	if len(next.Storage) == 0 && len(next.Network) == 0 {
		f.cur.Store(nil)
	} else {
		f.cur.Store(&next)
	}
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

// get returns the faults in force.
func (f *faults) get() Faults {
	if c := f.cur.Load(); c != nil {
		return *c
	}
	return Faults{}
}

// close clears the faults for good, releasing every blocked operation
// (stuck storage fails, blackholed traffic resumes), so the broker can
// shut down.
func (f *faults) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	f.cur.Store(nil)
	close(f.changed)
}

// wait returns a channel closed at the next change.
func (f *faults) wait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// storage applies the storage faults to one operation (write or fsync):
// it sleeps the added latency, blocks while stuck, and returns an error
// for an injected failure.
func (f *faults) storage(op string) error {
	if f.cur.Load() == nil {
		return nil
	}
	for {
		changed := f.wait()
		cur := f.cur.Load()
		if cur == nil {
			if f.isClosed() {
				return errInjected // stuck until shutdown
			}
			return nil
		}
		var latency time.Duration
		var rate float64
		stuck := false
		for _, s := range cur.Storage {
			if s.Op != op && s.Op != "all" {
				continue
			}
			latency += time.Duration(s.Latency)
			rate = max(rate, s.ErrorRate)
			stuck = stuck || s.Stuck
		}
		if stuck {
			f.stuck.Add(1)
			<-changed
			f.stuck.Add(-1)
			continue
		}
		if latency > 0 {
			select {
			case <-time.After(latency):
			case <-changed:
			}
		}
		if rate > 0 && rand.Float64() < rate {
			return errInjected
		}
		return nil
	}
}

func (f *faults) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// network returns the mode (blackhole, drop, or "" for none) of the
// fault on one class of traffic in one direction; broker is the peer
// broker for replication traffic (-1 if unknown).
func (f *faults) network(peer string, broker int32, dir string) string {
	cur := f.cur.Load()
	if cur == nil {
		return ""
	}
	mode := ""
	for _, n := range cur.Network {
		if n.Peer != peer || (n.Direction != dir && n.Direction != "both") {
			continue
		}
		if n.Broker != nil && *n.Broker != broker {
			continue
		}
		if n.Mode == modeDrop {
			return modeDrop
		}
		mode = n.Mode
	}
	return mode
}

// hold applies a network fault to traffic about to pass: it returns nil
// to let it pass (after waiting out a blackhole, if the fault is cleared
// before ctx ends), or an error to drop the connection.
func (f *faults) hold(ctx context.Context, peer string, broker int32, dir string) error {
	if f.cur.Load() == nil {
		return nil
	}
	for {
		changed := f.wait()
		switch f.network(peer, broker, dir) {
		case "":
			return nil
		case modeDrop:
			return fmt.Errorf("injected fault: %s traffic (%s) dropped: %w", peer, dir, syscall.ECONNRESET)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("injected fault: %s traffic (%s) blackholed: %w", peer, dir, ctx.Err())
		}
	}
}

// replicaClientPrefix starts the client id of a broker's replica fetchers,
// followed by its node id: how a connection from another broker's
// replication is told from a client's.
const replicaClientPrefix = "vigil-replica-fetcher-"

// peerOf classifies a connection by the client id of its requests.
func peerOf(clientID string) (string, int32) {
	if id, ok := strings.CutPrefix(clientID, replicaClientPrefix); ok {
		if n, err := strconv.ParseInt(id, 10, 32); err == nil {
			return peerReplication, int32(n)
		}
	}
	return peerClients, -1
}

// faultConn applies network faults to an outgoing connection (to a leader
// for replication, or to the controller quorum): writes are the out
// direction, reads the in direction.
type faultConn struct {
	net.Conn
	f      *faults
	peer   string
	broker int32
	ctx    context.Context // ends when the connection closes
	cancel context.CancelFunc
}

func (c *faultConn) Write(p []byte) (int, error) {
	if err := c.f.hold(c.ctx, c.peer, c.broker, dirOut); err != nil {
		c.Conn.Close()
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *faultConn) Read(p []byte) (int, error) {
	if err := c.f.hold(c.ctx, c.peer, c.broker, dirIn); err != nil {
		c.Conn.Close()
		return 0, err
	}
	n, err := c.Conn.Read(p)
	// What arrived while a blackhole began is held back too.
	if herr := c.f.hold(c.ctx, c.peer, c.broker, dirIn); herr != nil {
		c.Conn.Close()
		return 0, herr
	}
	return n, err
}

func (c *faultConn) Close() error {
	c.cancel()
	return c.Conn.Close()
}

// dialer returns a dial function whose connections carry the faults of one
// peer class (broker is the peer broker for replication, else -1).
func (f *faults) dialer(peer string, broker int32) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if f.network(peer, broker, dirOut) == modeDrop {
			return nil, fmt.Errorf("injected fault: %s connection to %s refused: %w", peer, addr, syscall.ECONNREFUSED)
		}
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cctx, cancel := context.WithCancel(context.Background())
		return &faultConn{Conn: nc, f: f, peer: peer, broker: broker, ctx: cctx, cancel: cancel}, nil
	}
}

// SetFaults replaces the faults the broker injects (an empty set clears
// them). It is refused unless the broker runs with --staging.
func (b *Broker) SetFaults(f Faults) error {
	if err := b.faults.set(f); err != nil {
		return err
	}
	b.logger.Warn("injected faults changed", "faults", f)
	return nil
}

// Faults returns the faults the broker injects.
func (b *Broker) Faults() Faults { return b.faults.get() }

// serveFaults serves the fault API: GET the faults, PUT a new set (JSON
// Faults), DELETE to clear them.
func (b *Broker) serveFaults(w http.ResponseWriter, r *http.Request) {
	if !b.adminAllowed(w, r) {
		return
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPut, http.MethodPost:
		var f Faults
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			http.Error(w, "the body must be a JSON fault set such as {\"storage\":[{\"op\":\"fsync\",\"latency\":\"300ms\"}]}: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := b.SetFaults(f); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, errFaultsNotStaging) {
				code = http.StatusForbidden
			}
			http.Error(w, err.Error(), code)
			return
		}
	case http.MethodDelete:
		if err := b.SetFaults(Faults{}); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, errFaultsNotStaging) {
				code = http.StatusForbidden
			}
			http.Error(w, err.Error(), code)
			return
		}
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		http.Error(w, "use GET, PUT or DELETE", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(b.Faults())
}

// adminAllowed authenticates a call to the broker's admin API: with an
// admin token configured, the request must carry it as a bearer token;
// without one, only loopback clients may call.
func (b *Broker) adminAllowed(w http.ResponseWriter, r *http.Request) bool {
	if tok := b.cfg.AdminToken; tok != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "the admin API needs Authorization: Bearer <admin token> (--admin-token)", http.StatusUnauthorized)
			return false
		}
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		http.Error(w, "the admin API without --admin-token answers loopback clients only; set --admin-token to call it remotely", http.StatusForbidden)
		return false
	}
	return true
}

// FaultClient calls a broker's fault API.
type FaultClient struct {
	// URL is the broker's admin base URL: http://host:port of its HTTP
	// endpoint (in vigil dev, http://127.0.0.1:8080/brokers/<id>).
	URL string
	// Token is the broker's admin token, if it has one.
	Token string
	// HTTP is the client to use (http.DefaultClient when nil).
	HTTP *http.Client
}

// Get returns the faults in force.
func (c *FaultClient) Get(ctx context.Context) (Faults, error) {
	return c.do(ctx, http.MethodGet, nil)
}

// Set replaces the faults.
func (c *FaultClient) Set(ctx context.Context, f Faults) (Faults, error) {
	return c.do(ctx, http.MethodPut, &f)
}

// Clear removes every fault.
func (c *FaultClient) Clear(ctx context.Context) (Faults, error) {
	return c.do(ctx, http.MethodDelete, nil)
}

func (c *FaultClient) do(ctx context.Context, method string, body *Faults) (Faults, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Faults{}, err
		}
		rd = bytes.NewReader(b)
	}
	u := strings.TrimSuffix(c.URL, "/") + "/admin/v1/faults"
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return Faults{}, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Faults{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Faults{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Faults{}, fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, strings.TrimSpace(string(data)))
	}
	var out Faults
	if err := json.Unmarshal(data, &out); err != nil {
		return Faults{}, fmt.Errorf("%s %s: %w", method, u, err)
	}
	return out, nil
}

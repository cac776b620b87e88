package controller

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// ServerConfig configures a controller.
type ServerConfig struct {
	// ID is this controller's id in the quorum ("1", "2", ...).
	ID string
	// DataDir holds the Raft log and stable store (raft.db) and snapshots.
	DataDir string
	// Listen is the HTTP API address; Listener, if set, is used instead.
	Listen   string
	Listener net.Listener
	// RaftListen is the Raft transport address; RaftListener, if set, is
	// used instead. RaftAdvertise is the address peers dial (default: this
	// controller's entry in Peers, else the listener's address).
	RaftListen    string
	RaftListener  net.Listener
	RaftAdvertise string
	// Peers maps every voter's id to its Raft address, this controller
	// included. Empty means a single-node quorum of this controller. The
	// configuration is bootstrapped on first start only (empty data dir).
	Peers map[string]string
	// AdminToken, when set, is required as "Authorization: Bearer <token>"
	// on every API call.
	AdminToken string
	// SessionTimeout is broker.session.timeout.ms (DefaultSessionTimeout).
	SessionTimeout time.Duration
	// ValidateTopicConfig checks topic config values; nil accepts any value
	// (the controller still checks unclean.leader.election.enable).
	ValidateTopicConfig ConfigValidator
	// RaftHeartbeatTimeout and RaftElectionTimeout tune failure detection
	// between controllers (hashicorp/raft's defaults, 1s, when zero).
	RaftHeartbeatTimeout time.Duration
	RaftElectionTimeout  time.Duration
	// SnapshotThreshold is how many log entries trigger a snapshot (raft's
	// default 8192 when zero).
	SnapshotThreshold uint64
	// ApplyTimeout bounds one proposal (10s when zero).
	ApplyTimeout time.Duration
	// TickInterval is how often the active controller checks broker
	// sessions (250ms when zero).
	TickInterval time.Duration
	// LeaderRebalanceInterval is how often the active controller moves
	// leadership back to preferred replicas that are alive, in sync and not
	// demoted (Kafka's auto.leader.rebalance.enable); 5m when zero,
	// disabled when negative.
	LeaderRebalanceInterval time.Duration
	// WatchMaxWait caps one WatchMetadata long poll (30s when zero).
	WatchMaxWait time.Duration
	// HistorySize is how many changes are kept for WatchMetadata deltas.
	HistorySize int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// RaftLogOutput receives hashicorp/raft's own log (discarded when nil).
	RaftLogOutput io.Writer
}

func (c *ServerConfig) setDefaults() {
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.ApplyTimeout <= 0 {
		c.ApplyTimeout = 10 * time.Second
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 250 * time.Millisecond
	}
	if c.LeaderRebalanceInterval == 0 {
		c.LeaderRebalanceInterval = 5 * time.Minute
	}
	if c.WatchMaxWait <= 0 {
		c.WatchMaxWait = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RaftLogOutput == nil {
		c.RaftLogOutput = io.Discard
	}
}

// Server is one controller: a hashicorp/raft node whose FSM is the
// metadata State, and the HTTP/JSON API. The active controller (the Raft
// leader) also tracks broker liveness and proposes fencing.
type Server struct {
	cfg    ServerConfig
	logger *slog.Logger

	fsm       *fsm
	raft      *raft.Raft
	transport *raft.NetworkTransport
	store     *raftboltdb.BoltStore
	http      *http.Server
	ln        net.Listener

	// propMu serializes decisions and proposals on the active controller:
	// each decision reads an image that includes every earlier proposal.
	propMu   sync.Mutex
	live     *Liveness
	active   atomic.Bool // leader and caught up (Barrier done); set under propMu
	activeCh chan struct{}
	// activeTerm is the Raft term in which this node became active; a new
	// term means leadership was lost and regained, so duties restart.
	activeTerm atomic.Uint64

	lastRebalance time.Time // leader loop only

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// NewServer opens the data directory, starts Raft (bootstrapping the
// quorum on first start), the leader duties and the HTTP API.
func NewServer(cfg ServerConfig, logger *slog.Logger) (*Server, error) {
	cfg.setDefaults()
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ID == "" {
		return nil, errors.New("controller id is required (--id)")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("controller data dir is required (--data-dir)")
	}
	if len(cfg.Peers) > 0 {
		if _, ok := cfg.Peers[cfg.ID]; !ok {
			return nil, fmt.Errorf("--peers does not name this controller's id %s; list every voter, this one included", cfg.ID)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating controller data dir: %w", err)
	}
	s := &Server{
		cfg: cfg, logger: logger.With("controller", cfg.ID),
		fsm: newFSM(cfg.HistorySize), live: NewLiveness(cfg.SessionTimeout), stop: make(chan struct{}),
		activeCh: make(chan struct{}, 1),
	}
	if err := s.startRaft(); err != nil {
		s.closeRaft()
		return nil, err
	}
	if err := s.startHTTP(); err != nil {
		s.closeRaft()
		return nil, err
	}
	s.wg.Add(1)
	go s.leaderLoop()
	return s, nil
}

func (s *Server) startRaft() error {
	cfg := s.cfg
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	if cfg.RaftHeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.RaftHeartbeatTimeout
		rc.LeaderLeaseTimeout = cfg.RaftHeartbeatTimeout / 2
	}
	if cfg.RaftElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.RaftElectionTimeout
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
		rc.TrailingLogs = cfg.SnapshotThreshold
	}
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Output: cfg.RaftLogOutput, Level: hclog.Info})
	notify := make(chan bool, 16)
	rc.NotifyCh = notify

	ln := cfg.RaftListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.RaftListen); err != nil {
			return fmt.Errorf("listening for Raft on %s: %w", cfg.RaftListen, err)
		}
	}
	advertise := cfg.RaftAdvertise
	if advertise == "" {
		advertise = cfg.Peers[cfg.ID]
	}
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		ln.Close()
		return fmt.Errorf("raft advertise address %q: %w", advertise, err)
	}
	s.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &tcpStream{ln: ln, adv: adv}, MaxPool: 3, Timeout: 10 * time.Second, Logger: rc.Logger,
	})
	s.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft.db")})
	if err != nil {
		return fmt.Errorf("opening Raft log %s: %w", filepath.Join(cfg.DataDir, "raft.db"), err)
	}
	snaps, err := raft.NewFileSnapshotStore(cfg.DataDir, 2, cfg.RaftLogOutput)
	if err != nil {
		return fmt.Errorf("opening snapshot store: %w", err)
	}
	existing, err := raft.HasExistingState(s.store, s.store, snaps)
	if err != nil {
		return fmt.Errorf("reading Raft state: %w", err)
	}
	if !existing {
		conf := raft.Configuration{}
		peers := cfg.Peers
		if len(peers) == 0 {
			peers = map[string]string{cfg.ID: advertise}
		}
		ids := make([]string, 0, len(peers))
		for id := range peers {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(peers[id])})
		}
		if err := raft.BootstrapCluster(rc, s.store, s.store, snaps, s.transport, conf); err != nil {
			return fmt.Errorf("bootstrapping the quorum: %w", err)
		}
		s.logger.Info("bootstrapped controller quorum", "voters", len(conf.Servers))
	}
	s.raft, err = raft.NewRaft(rc, s.fsm, s.store, s.store, snaps, s.transport)
	if err != nil {
		return fmt.Errorf("starting Raft: %w", err)
	}
	go s.forwardNotify(notify)
	s.logger.Info("controller Raft started", "raft_addr", advertise, "data_dir", cfg.DataDir)
	return nil
}

// forwardNotify wakes the leader loop on every leadership change.
func (s *Server) forwardNotify(ch <-chan bool) {
	for {
		select {
		case <-s.stop:
			return
		case <-ch:
			select {
			case s.activeCh <- struct{}{}:
			default:
			}
		}
	}
}

// leaderLoop runs the active controller's duties while this node leads:
// catch up (Barrier), record its address and the cluster id, reset broker
// timers, then check sessions every tick.
func (s *Server) leaderLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(s.cfg.TickInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.activeCh:
		case <-tick.C:
		}
		leader := s.raft.State() == raft.Leader
		wasActive := s.active.Load()
		switch {
		case leader && (!wasActive || s.raft.CurrentTerm() != s.activeTerm.Load()):
			s.becomeActive()
		case !leader && wasActive:
			s.propMu.Lock()
			s.active.Store(false)
			s.propMu.Unlock()
			s.logger.Info("no longer the active controller")
		case leader:
			s.checkSessions()
			if iv := s.cfg.LeaderRebalanceInterval; iv > 0 && s.cfg.Now().Sub(s.lastRebalance) >= iv {
				s.lastRebalance = s.cfg.Now()
				s.rebalanceLeaders()
			}
		}
	}
}

func (s *Server) becomeActive() {
	term := s.raft.CurrentTerm()
	if err := s.raft.Barrier(s.cfg.ApplyTimeout).Error(); err != nil {
		s.logger.Warn("becoming active: barrier failed; will retry", "err", err)
		return
	}
	s.propMu.Lock()
	defer s.propMu.Unlock()
	img, _ := s.fsm.image()
	s.live.Reset(img, s.cfg.Now())
	s.lastRebalance = s.cfg.Now()
	s.activeTerm.Store(term)
	s.active.Store(true)
	if img.ClusterID == "" {
		id := make([]byte, 16)
		_, _ = rand.Read(id)
		s.proposeLocked(&Command{InitCluster: &InitClusterCmd{ClusterID: base64.RawURLEncoding.EncodeToString(id)}})
	}
	if addr := s.Addr(); img.Controllers[s.cfg.ID] != addr {
		s.proposeLocked(&Command{SetControllerAddr: &SetControllerAddrCmd{ID: s.cfg.ID, Addr: addr}})
	}
	s.logger.Info("active controller", "brokers", len(img.Brokers), "topics", len(img.Topics))
}

// checkSessions fences brokers whose session expired.
func (s *Server) checkSessions() {
	s.propMu.Lock()
	defer s.propMu.Unlock()
	if !s.active.Load() {
		return
	}
	var cmds []*Command
	s.fsm.read(func(st *State) { cmds = s.live.Expired(st.img, s.cfg.Now()) })
	for _, c := range cmds {
		res, err := s.proposeLocked(c)
		if err == nil {
			err = res.Err
		}
		if err != nil {
			s.logger.Warn("fencing broker failed", "broker", c.FenceBroker.ID, "err", err)
			continue
		}
		s.logger.Warn("fenced broker: session expired", "broker", c.FenceBroker.ID, "session_timeout", s.cfg.SessionTimeout)
	}
}

// rebalanceLeaders runs a preferred election on every partition whose
// preferred replica could lead but does not; nothing is written to the log
// when no partition would change.
func (s *Server) rebalanceLeaders() {
	s.propMu.Lock()
	defer s.propMu.Unlock()
	cmd := &Command{ElectLeaders: &ElectLeadersCmd{ElectLeadersRequest{Type: ElectPreferred}}}
	if !s.active.Load() || s.dryRun(cmd).Change == nil {
		return
	}
	res, err := s.proposeLocked(cmd)
	if err != nil {
		s.logger.Warn("preferred leader rebalance failed", "err", err)
		return
	}
	if res.Change != nil {
		s.logger.Info("moved leaderships back to preferred replicas", "partitions", len(res.Change.Partitions))
	}
}

// proposeLocked replicates cmd and returns its Result once applied here.
// Callers hold propMu.
func (s *Server) proposeLocked(cmd *Command) (Result, *Error) {
	if !s.active.Load() {
		return Result{}, s.notController()
	}
	data, err := json.Marshal(cmd)
	if err != nil {
		return Result{}, asError(err)
	}
	f := s.raft.Apply(data, s.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			s.active.Store(false)
			return Result{}, s.notController()
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return Result{}, errorf(CodeRequestTimedOut, "the quorum did not accept the change within %v; check that a majority of controllers is up", s.cfg.ApplyTimeout)
		case errors.Is(err, raft.ErrRaftShutdown):
			return Result{}, errorf(CodeNotController, "controller %s is shutting down; retry on another", s.cfg.ID)
		}
		return Result{}, errorf(CodeRequestTimedOut, "proposal failed: %v; retry", err)
	}
	res, _ := f.Response().(Result)
	return res, nil
}

// propose is proposeLocked under propMu.
func (s *Server) propose(cmd *Command) (Result, *Error) {
	s.propMu.Lock()
	defer s.propMu.Unlock()
	return s.proposeLocked(cmd)
}

// notController returns NOT_CONTROLLER naming the leader if known.
func (s *Server) notController() *Error {
	e := &Error{Code: CodeNotController}
	_, id := s.raft.LeaderWithID()
	if id == "" {
		e.Message = "no controller is active right now (election in progress or no majority); retry shortly"
		return e
	}
	e.LeaderID = string(id)
	s.fsm.read(func(st *State) { e.LeaderAddr = st.img.Controllers[string(id)] })
	if string(id) == s.cfg.ID {
		e.Message = "this controller was just elected and is catching up; retry shortly"
	} else {
		e.Message = fmt.Sprintf("controller %s is active; send the request there (%s)", id, e.LeaderAddr)
	}
	return e
}

// Addr returns the HTTP API address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// ID returns the controller id.
func (s *Server) ID() string { return s.cfg.ID }

// IsActive reports whether this controller is the active one (Raft leader
// and caught up).
func (s *Server) IsActive() bool {
	return s.active.Load() && s.raft.State() == raft.Leader
}

// Image returns a copy of this controller's image and its applied index.
func (s *Server) Image() (*Image, uint64) { return s.fsm.image() }

// Raft returns the underlying Raft node (for tests and diagnostics).
func (s *Server) Raft() *raft.Raft { return s.raft }

// Close stops the API and Raft and closes the stores. It does not hand
// leadership over: the others elect a new leader after their timeout.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = s.http.Shutdown(ctx)
			cancel()
			_ = s.http.Close()
		}
		// Shut Raft down first so that a proposal or barrier in flight in
		// the leader loop returns at once.
		var errs []error
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, err)
		}
		s.wg.Wait()
		errs = append(errs, s.closeRaft())
		err = errors.Join(errs...)
	})
	return err
}

// closeRaft shuts Raft down (if not yet) and closes the transport and store.
func (s *Server) closeRaft() error {
	var errs []error
	if s.raft != nil {
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.transport != nil {
		_ = s.transport.Close()
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tcpStream is a raft.StreamLayer on a TCP listener.
type tcpStream struct {
	ln  net.Listener
	adv net.Addr
}

func (t *tcpStream) Accept() (net.Conn, error) { return t.ln.Accept() }
func (t *tcpStream) Close() error              { return t.ln.Close() }
func (t *tcpStream) Addr() net.Addr            { return t.adv }
func (t *tcpStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

// ParsePeers parses "1=host:port,2=host:port" into a map.
func ParsePeers(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %q: want id=host:port", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("peer %s: %v", id, err)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("peer id %s listed twice", id)
		}
		out[id] = addr
	}
	return out, nil
}

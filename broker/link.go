package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil/controller"
)

// A broker's link to the controller quorum: it registers (with its cell,
// rack and Kafka endpoint), heartbeats, follows the metadata image with a
// long poll, and on shutdown asks for its leaderships to be moved away
// (controlled shutdown) before it stops. With no --controllers the broker
// runs a single-node quorum of its own in the same process, in a
// "controller" directory under its data directory: Kafka's combined mode,
// so a lone broker needs nothing else.

// Broker-side quorum settings (Kafka's broker.heartbeat.interval.ms and
// the controller's broker.session.timeout.ms).
const (
	defaultHeartbeatInterval = 2 * time.Second
	registerRetry            = 500 * time.Millisecond
)

type controllerLink struct {
	b           *Broker
	cl          *controller.Client
	embedded    *controller.Server // combined mode
	incarnation string

	epoch  atomic.Int64 // broker epoch from the latest registration
	fenced atomic.Bool
	// quorumOffset is the quorum's applied index at the last heartbeat.
	quorumOffset atomic.Int64

	wg sync.WaitGroup
}

func newControllerLink(b *Broker) (*controllerLink, error) {
	var id [16]byte
	_, _ = rand.Read(id[:])
	l := &controllerLink{b: b, incarnation: base64.RawURLEncoding.EncodeToString(id[:])}
	l.fenced.Store(true)
	addrs := b.cfg.Controllers
	if len(addrs) == 0 {
		srv, err := controller.NewServer(controller.ServerConfig{
			ID:                   "1",
			DataDir:              filepath.Join(b.cfg.DataDir, "controller"),
			Listen:               "127.0.0.1:0",
			RaftListen:           "127.0.0.1:0",
			SessionTimeout:       b.cfg.BrokerSessionTimeout,
			ValidateTopicConfig:  ValidateTopicConfig,
			RaftHeartbeatTimeout: 200 * time.Millisecond,
			RaftElectionTimeout:  200 * time.Millisecond,
		}, b.logger.With("role", "embedded-controller"))
		if err != nil {
			return nil, fmt.Errorf("starting the embedded controller (combined mode: no --controllers): %w", err)
		}
		l.embedded = srv
		addrs = []string{srv.Addr()}
	}
	hc := &http.Client{Transport: &http.Transport{
		DialContext:         b.faults.dialer(peerController, -1),
		MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
	}}
	cl, err := controller.NewClient(controller.ClientConfig{Addrs: addrs, Token: b.cfg.ControllerToken, HTTPClient: hc})
	if err != nil {
		if l.embedded != nil {
			l.embedded.Close()
		}
		return nil, err
	}
	l.cl = cl
	return l, nil
}

func (l *controllerLink) brokerEpoch() int64 { return l.epoch.Load() }

// register registers the broker, retrying while the quorum still holds the
// session of this broker's previous process (DUPLICATE_BROKER_REGISTRATION
// until it expires) or is unreachable, until ctx ends.
func (l *controllerLink) register(ctx context.Context) error {
	b := l.b
	reg := controller.BrokerRegistration{
		ID: b.cfg.NodeID, IncarnationID: l.incarnation, Cell: b.cfg.Cell, Rack: b.cfg.Rack,
		Endpoint: b.advertiseHost + ":" + strconv.Itoa(int(b.advertisePort)),
	}
	logged := false
	for {
		epoch, err := l.cl.Register(ctx, reg)
		if err == nil {
			l.epoch.Store(epoch)
			b.logger.Info("registered with the controller quorum", "broker_epoch", epoch, "cell", reg.Cell, "rack", reg.Rack)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("registering with the controller quorum: %w", err)
		}
		if !logged {
			b.logger.Warn("registering with the controller quorum failed; retrying (a restarted broker waits for its old session to expire)", "err", err)
			logged = true
		}
		select {
		case <-time.After(registerRetry):
		case <-ctx.Done():
			return fmt.Errorf("registering with the controller quorum: %w", err)
		}
	}
}

// loadImage takes the whole image and applies it.
func (l *controllerLink) loadImage(ctx context.Context) (int64, error) {
	for {
		d, err := l.cl.WatchMetadata(ctx, -1)
		if err == nil {
			if err := l.b.meta.apply(d); err != nil {
				return 0, err
			}
			return d.Offset, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("loading metadata from the controller quorum: %w", err)
		}
		select {
		case <-time.After(registerRetry):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// start runs the heartbeat and metadata loops until the broker's context
// ends.
func (l *controllerLink) start(offset int64) {
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.watchLoop(offset) }()
	go func() { defer l.wg.Done(); l.heartbeatLoop() }()
}

// watchLoop follows the metadata image.
func (l *controllerLink) watchLoop(offset int64) {
	ctx := l.b.ctx
	for ctx.Err() == nil {
		d, err := l.cl.WatchMetadata(ctx, offset)
		if err != nil {
			if ctx.Err() == nil {
				l.b.logger.Debug("metadata watch failed; retrying", "err", err)
				select {
				case <-time.After(registerRetry):
				case <-ctx.Done():
				}
			}
			continue
		}
		if d.Offset == offset && d.Image == nil && len(d.Changes) == 0 {
			continue
		}
		if d.Offset < offset {
			// A controller behind this broker's image (one that lags
			// the active controller) must not take it back; current
			// controllers refuse such watches with NOT_CONTROLLER.
			l.b.logger.Debug("ignoring metadata older than this broker's", "offset", d.Offset, "have", offset)
			select {
			case <-time.After(registerRetry):
			case <-ctx.Done():
			}
			continue
		}
		if err := l.b.meta.apply(d); err != nil {
			l.b.logger.Error("applying metadata failed", "err", err)
			continue
		}
		offset = d.Offset
	}
}

// heartbeatLoop keeps the broker's session alive; a broker the quorum no
// longer knows (or knows with another epoch) registers again.
func (l *controllerLink) heartbeatLoop() {
	ctx := l.b.ctx
	t := time.NewTicker(l.b.cfg.BrokerHeartbeatInterval)
	defer t.Stop()
	for {
		if err := l.heartbeat(ctx, false); err != nil && ctx.Err() == nil {
			l.b.logger.Debug("heartbeat failed", "err", err)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

func (l *controllerLink) heartbeat(ctx context.Context, wantShutdown bool) error {
	_, err := l.heartbeatResult(ctx, wantShutdown)
	return err
}

func (l *controllerLink) heartbeatResult(ctx context.Context, wantShutdown bool) (controller.HeartbeatResult, error) {
	res, err := l.cl.Heartbeat(ctx, l.b.cfg.NodeID, l.epoch.Load(), wantShutdown)
	if errors.Is(err, controller.ErrStaleBrokerEpoch) || errors.Is(err, controller.ErrBrokerNotRegistered) {
		l.b.logger.Warn("the controller quorum lost this broker's registration; registering again", "err", err)
		return res, l.register(ctx)
	}
	if err != nil {
		return res, err
	}
	l.quorumOffset.Store(res.MetadataOffset)
	if was := l.fenced.Swap(res.Fenced); was != res.Fenced {
		if res.Fenced {
			l.b.logger.Warn("this broker is fenced: it leads nothing and is out of the ISRs", "admin_fenced", res.AdminFenced)
		} else {
			l.b.logger.Info("this broker is unfenced")
		}
	}
	if wantShutdown && !res.ShutdownReady {
		return res, errNotReady
	}
	return res, nil
}

// awaitUnfenced heartbeats until the quorum unfences this broker (it may
// then lead: partitions it is the only live in-sync replica of are given
// back to it) and this broker's image has caught up with that, so it
// serves its partitions as soon as it takes clients. A broker an operator
// fenced is not waited for.
func (l *controllerLink) awaitUnfenced(ctx context.Context) error {
	for {
		res, err := l.heartbeatResult(ctx, false)
		if err == nil && (!res.Fenced || res.AdminFenced) {
			return l.b.meta.waitFor(ctx, func(set *topicSet) bool { return set.offset >= res.MetadataOffset })
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("waiting to be unfenced by the controller quorum: %w", err)
		}
	}
}

var errNotReady = errors.New("leaderships not moved away yet")

// controlledShutdown asks the quorum to move this broker's leaderships
// away and waits (until ctx ends) until it has and this broker's image
// shows it: until then, requests still answered here would be told this
// broker leads, and NOT_LEADER_OR_FOLLOWER answers could not name the new
// leaders (KIP-951), so clients would back off and refresh their metadata
// instead of moving at once.
func (l *controllerLink) controlledShutdown(ctx context.Context) {
	for ctx.Err() == nil {
		res, err := l.heartbeatResult(ctx, true)
		if err == nil {
			if err := l.b.meta.waitFor(ctx, func(set *topicSet) bool { return set.offset >= res.MetadataOffset }); err != nil {
				l.b.logger.Warn("controlled shutdown: leaderships moved to other brokers, but this broker's metadata did not catch up in time", "err", err)
				return
			}
			l.b.logger.Info("controlled shutdown: leaderships moved to other brokers")
			return
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	l.b.logger.Warn("controlled shutdown timed out; stopping anyway (clients fail over when the session expires)")
}

// close stops the loops, the client and an embedded controller.
func (l *controllerLink) close() {
	l.wg.Wait()
	l.cl.Close()
	if l.embedded != nil {
		l.embedded.Close()
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

package controller

import (
	"sort"
	"time"
)

// DefaultSessionTimeout is broker.session.timeout.ms's default: a broker
// that has not heartbeaten for this long is fenced.
const DefaultSessionTimeout = 9 * time.Second

// Liveness is the active controller's in-memory view of broker heartbeats.
// Heartbeats are not written to the log: only their consequences are
// (fence and unfence commands). Liveness is deterministic: every method
// takes the current time, so tests drive it with a fake clock.
//
// A new active controller starts every broker's timer afresh (Reset): a
// broker is fenced only after it missed a whole session on this controller.
type Liveness struct {
	// SessionTimeout is how long a broker may go without a heartbeat.
	SessionTimeout time.Duration
	lastSeen       map[int32]time.Time
}

// NewLiveness returns a tracker with the given session timeout
// (DefaultSessionTimeout if zero).
func NewLiveness(sessionTimeout time.Duration) *Liveness {
	if sessionTimeout <= 0 {
		sessionTimeout = DefaultSessionTimeout
	}
	return &Liveness{SessionTimeout: sessionTimeout, lastSeen: map[int32]time.Time{}}
}

// Reset starts every broker of img afresh at now; called when this
// controller becomes active.
func (l *Liveness) Reset(img *Image, now time.Time) {
	l.lastSeen = map[int32]time.Time{}
	for id := range img.Brokers {
		l.lastSeen[id] = now
	}
}

// Touch records a heartbeat (or registration) of broker id at now.
func (l *Liveness) Touch(id int32, now time.Time) { l.lastSeen[id] = now }

// Forget drops broker id (unregistered).
func (l *Liveness) Forget(id int32) { delete(l.lastSeen, id) }

// Alive reports whether broker id heartbeated within the session timeout.
func (l *Liveness) Alive(id int32, now time.Time) bool {
	t, ok := l.lastSeen[id]
	return ok && now.Sub(t) < l.SessionTimeout
}

// Age returns the time since broker id's last heartbeat, or -1 if unknown.
func (l *Liveness) Age(id int32, now time.Time) time.Duration {
	t, ok := l.lastSeen[id]
	if !ok {
		return -1
	}
	return now.Sub(t)
}

// Expired returns the fence commands for every broker of img that is not
// fenced yet and whose session expired at now, in id order.
func (l *Liveness) Expired(img *Image, now time.Time) []*Command {
	var out []*Command
	for _, b := range img.Brokers {
		if b.State != BrokerRegistered && b.State != BrokerControlledShutdown {
			continue
		}
		t, ok := l.lastSeen[b.ID]
		if !ok {
			// Not seen by this controller yet (registered before it became
			// active and Reset missed it): start its timer now.
			l.lastSeen[b.ID] = now
			continue
		}
		if now.Sub(t) >= l.SessionTimeout {
			out = append(out, &Command{FenceBroker: &FenceBrokerCmd{ID: b.ID, Epoch: b.Epoch}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FenceBroker.ID < out[j].FenceBroker.ID })
	return out
}

// CheckRegistration refuses a registration while another incarnation of
// the same broker id is alive: two processes configured with one id.
func (l *Liveness) CheckRegistration(img *Image, r BrokerRegistration, now time.Time) *Error {
	old := img.Brokers[r.ID]
	if old == nil || old.IncarnationID == r.IncarnationID {
		return nil
	}
	if old.State == BrokerRegistered && l.Alive(r.ID, now) {
		return errorf(CodeDuplicateBrokerRegistration,
			"broker %d is registered by another live process (incarnation %s, last heartbeat %v ago); if it restarted, retry after its session expires (%v); otherwise two brokers share id %d",
			r.ID, old.IncarnationID, l.Age(r.ID, now).Round(time.Millisecond), l.SessionTimeout, r.ID)
	}
	return nil
}

// Heartbeat records a heartbeat at now and returns the commands it calls
// for: unfence a fenced broker that heartbeats (unless an operator fenced
// it), start a controlled shutdown the broker asks for.
func (l *Liveness) Heartbeat(img *Image, req HeartbeatRequest, now time.Time) ([]*Command, *Error) {
	b := img.Brokers[req.ID]
	if b == nil {
		return nil, errorf(CodeBrokerNotRegistered, "broker %d is not registered; register again", req.ID)
	}
	if b.Epoch != req.Epoch {
		return nil, errorf(CodeStaleBrokerEpoch, "broker %d has epoch %d, the heartbeat %d; register again", req.ID, b.Epoch, req.Epoch)
	}
	l.Touch(req.ID, now)
	switch {
	case req.WantShutdown && b.State == BrokerRegistered:
		return []*Command{{ControlledShutdown: &ControlledShutdownCmd{ID: b.ID, Epoch: b.Epoch}}}, nil
	case !req.WantShutdown && b.State == BrokerFenced && !b.AdminFenced:
		return []*Command{{UnfenceBroker: &UnfenceBrokerCmd{ID: b.ID, Epoch: b.Epoch}}}, nil
	}
	return nil, nil
}

// HeartbeatAnswer builds the answer to broker id's heartbeat from img
// (after the heartbeat's commands were applied).
func HeartbeatAnswer(img *Image, id int32, offset int64) HeartbeatResult {
	b := img.Brokers[id]
	res := HeartbeatResult{MetadataOffset: offset}
	if b == nil {
		res.Fenced = true
		return res
	}
	res.Fenced = b.State == BrokerFenced || b.State == BrokerDecommissioned
	res.AdminFenced = b.AdminFenced
	res.Demoted = b.Demoted
	res.InControlledShutdown = b.State == BrokerControlledShutdown
	if b.State != BrokerRegistered {
		res.ShutdownReady = img.LeaderCount()[id] == 0
	}
	return res
}

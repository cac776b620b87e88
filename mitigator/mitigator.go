package mitigator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/slo"
)

// Mitigator consumes signals, decides through the core and its policy,
// carries decisions out through the Controller and the Provisioner, and
// records every decision in the audit trail. Its methods are safe for
// concurrent use.
type Mitigator struct {
	cfg  Config
	ctrl Controller
	prov Provisioner
	log  *slog.Logger
	met  *metrics
	am   *AlertmanagerReceiver

	// op serializes evaluations, approvals, undos and mode changes (and
	// the actions they carry out); mu guards the core for readers.
	op    sync.Mutex
	mu    sync.RWMutex
	core  *core
	audit *audit
	last  []slo.Signal // the last signals Run saw, re-evaluated on ticks
	// counted is the outcome last counted per decision, so each change
	// of outcome is counted once.
	counted map[string]string
}

// New returns a mitigator. ctrl is required; prov may be nil, and then
// restarts and replacements are refused with a reason. The audit trail in
// cfg.DataDir is reloaded: history and open mitigations survive restarts,
// and a mode set through the API wins over cfg.Mode.
func New(cfg Config, ctrl Controller, prov Provisioner) (*Mitigator, error) {
	if ctrl == nil {
		return nil, errors.New("mitigator: a Controller is required")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	met, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("mitigator: registering metrics: %w", err)
	}
	a, ds, mode, err := openAudit(cfg.DataDir, cfg.AuditMaxBytes, cfg.AuditKeep, cfg.Clock)
	if err != nil {
		return nil, err
	}
	if mode != "" && ValidMode(mode) {
		cfg.Mode = mode
	}
	m := &Mitigator{cfg: cfg, ctrl: ctrl, prov: prov, log: cfg.Logger, met: met, audit: a, core: newCore(cfg, prov != nil)}
	m.am = NewAlertmanagerReceiver(cfg.AlertTTL, cfg.Clock)
	now := cfg.Clock()
	changed := m.core.restore(ds, now)
	if err := m.record("restored", changed...); err != nil {
		a.close()
		return nil, err
	}
	m.updateGauges()
	m.log.Info("mitigator ready", "mode", cfg.Mode, "decisions", len(ds), "provisioner", prov != nil, "audit", cfg.DataDir)
	return m, nil
}

// Close closes the audit trail.
func (m *Mitigator) Close() error {
	m.op.Lock()
	defer m.op.Unlock()
	return m.audit.close()
}

// Alertmanager returns the receiver behind POST /api/v1/alertmanager; its
// alerts are added to the signals Run evaluates.
func (m *Mitigator) Alertmanager() *AlertmanagerReceiver { return m.am }

// Run evaluates every update of src (nil: only Alertmanager webhooks)
// until ctx ends, and re-evaluates the last signals every Config.Tick so
// sustain and healthy times advance between updates.
func (m *Mitigator) Run(ctx context.Context, src slo.SignalSource) error {
	var updates <-chan slo.Update
	if src != nil {
		ch, cancel := src.Subscribe(1)
		defer cancel()
		updates = ch
		m.last = src.Signals()
	}
	tick := time.NewTicker(m.cfg.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
			m.last = u.Signals
		case <-tick.C:
		}
		m.observe(ctx, m.cfg.Clock(), append(append([]slo.Signal(nil), m.last...), m.am.Signals()...))
	}
}

// Observe evaluates one set of active signals at now: it reads the
// cluster view from the controller, decides, carries out what the mode
// allows and records everything. Run calls it; tests call it directly.
func (m *Mitigator) Observe(now time.Time, signals []slo.Signal) {
	m.observe(context.Background(), now, signals)
}

func (m *Mitigator) observe(ctx context.Context, now time.Time, signals []slo.Signal) {
	m.op.Lock()
	defer m.op.Unlock()
	view, viewErr := m.readView(ctx)
	m.mu.Lock()
	changed, exec := m.core.step(now, signals, view, viewErr)
	changed = cloneAll(changed)
	exec = cloneAll(exec)
	m.mu.Unlock()
	if err := m.record("decided", changed...); err != nil {
		m.log.Error("audit trail", "err", err)
	}
	m.execute(ctx, exec, view)
	m.updateGauges()
}

func (m *Mitigator) readView(ctx context.Context) (*View, string) {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.ActionTimeout)
	defer cancel()
	md, err := m.ctrl.Metadata(cctx)
	if err != nil {
		return nil, err.Error()
	}
	if md == nil || md.Image == nil {
		return nil, "the controller returned no metadata image"
	}
	return ViewFromImage(md.Image, m.cfg.DefaultMinInsync), ""
}

// execute carries out decisions and records their results.
func (m *Mitigator) execute(ctx context.Context, exec []*Decision, view *View) {
	for _, d := range exec {
		res := m.carryOut(ctx, d, view)
		m.mu.Lock()
		changed := cloneAll(m.core.complete(m.cfg.Clock(), res))
		m.mu.Unlock()
		ev := "executed"
		if res.Outcome == OutExecuting {
			ev = "progress"
		}
		if err := m.record(ev, changed...); err != nil {
			m.log.Error("audit trail", "err", err)
		}
	}
}

// record appends decisions to the audit trail, counts and logs them.
// event names what happened (decided, executed, approved, ...).
func (m *Mitigator) record(event string, ds ...*Decision) error {
	if len(ds) == 0 {
		return nil
	}
	now := m.cfg.Clock()
	rs := make([]AuditRecord, 0, len(ds))
	for _, d := range ds {
		ev, out := event, d.Outcome
		switch {
		case d.UndoneBy != "":
			ev, out = "undone", OutUndone
		case event == "approved":
			out = OutApproved
		case !d.Open && d.UndoNote != "" && d.Outcome != OutCancelled:
			ev = "closed"
		}
		rs = append(rs, AuditRecord{At: now, Event: ev, Decision: d})
		if m.counted == nil {
			m.counted = map[string]string{}
		}
		if event == "restored" {
			m.counted[d.ID] = out
			continue
		}
		if m.counted[d.ID] != out {
			m.counted[d.ID] = out
			m.met.decisions.WithLabelValues(d.Action, out).Inc()
		}
		level := slog.LevelInfo
		switch d.Outcome {
		case OutFailed, OutSuppress, OutRefused:
			level = slog.LevelWarn
		}
		m.log.Log(context.Background(), level, "mitigation "+ev, "id", d.ID, "action", d.Action, "broker", d.Broker, "cell", d.Cell,
			"outcome", d.Outcome, "detector", d.Detector, "reason", d.Reason, "policy", d.Policy, "error", d.Error)
	}
	return m.audit.append(rs...)
}

func (m *Mitigator) updateGauges() {
	m.mu.RLock()
	defer m.mu.RUnlock()
	counts := map[string]int{}
	for _, t := range m.core.brokers {
		for a := range t.open {
			counts[a]++
		}
	}
	for _, a := range []string{ActDemote, ActFence, ActRestart, ActShrinkISR, ActReplace, ActUndemote, ActUnfence} {
		m.met.active.WithLabelValues(a).Set(float64(counts[a]))
	}
	s := 0.0
	if len(m.core.suppress) > 0 {
		s = 1
	}
	m.met.suppressed.WithLabelValues().Set(s)
	for _, x := range Modes {
		v := 0.0
		if x == m.core.mode {
			v = 1
		}
		m.met.mode.WithLabelValues(x).Set(v)
	}
}

// Decisions returns every decision, oldest first (copies).
func (m *Mitigator) Decisions() []Decision {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Decision, len(m.core.all))
	for i, d := range m.core.all {
		out[i] = *d.clone()
	}
	return out
}

// Decision returns decision id.
func (m *Mitigator) Decision(id string) (Decision, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d := m.core.byID[id]
	if d == nil {
		return Decision{}, false
	}
	return *d.clone(), true
}

// Mode returns the current mode.
func (m *Mitigator) Mode() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.core.mode
}

// SetMode changes the mode (off is the kill switch) and records it in the
// audit trail, so it survives restarts. Pending approvals are cancelled
// and dry-run mitigations closed.
func (m *Mitigator) SetMode(mode string) error {
	if !ValidMode(mode) {
		return fmt.Errorf("mode %q: want one of off, dry-run, approve, auto", mode)
	}
	m.op.Lock()
	defer m.op.Unlock()
	now := m.cfg.Clock()
	m.mu.Lock()
	old := m.core.mode
	changed := cloneAll(m.core.setMode(now, mode))
	m.mu.Unlock()
	if old != mode {
		if err := m.audit.append(AuditRecord{At: now, Event: "mode", Mode: mode}); err != nil {
			return err
		}
		m.log.Warn("mitigator mode changed", "from", old, "to", mode)
	}
	err := m.record("cancelled", changed...)
	m.updateGauges()
	return err
}

// Approve carries out pending decision id (mode approve) and returns it
// as it ended. The policy is checked again against the current cluster.
func (m *Mitigator) Approve(ctx context.Context, id string) (Decision, error) {
	m.op.Lock()
	defer m.op.Unlock()
	view, viewErr := m.readView(ctx)
	now := m.cfg.Clock()
	m.mu.Lock()
	m.core.view, m.core.viewErr = view, viewErr
	d, err := m.core.approve(now, id)
	if err != nil {
		m.mu.Unlock()
		return Decision{}, err
	}
	c := d.clone()
	m.mu.Unlock()
	ev := "approved"
	if c.Outcome == OutRefused {
		ev = "refused"
	}
	if err := m.record(ev, c); err != nil {
		return Decision{}, err
	}
	if c.Outcome == OutExecuting {
		m.execute(ctx, []*Decision{c}, view)
	}
	m.updateGauges()
	got, _ := m.Decision(id)
	return got, nil
}

// Undo reverses decision id: a demotion is undemoted (and leaders
// rebalanced), a fence unfenced, a pending approval cancelled; an ISR
// shrink needs nothing (the follower rejoins by itself); a replacement or
// a restart cannot be undone. The condition is then not acted on again
// until it clears. It returns the undo decision (or id itself).
func (m *Mitigator) Undo(ctx context.Context, id string) (Decision, error) {
	m.op.Lock()
	defer m.op.Unlock()
	now := m.cfg.Clock()
	m.mu.Lock()
	if m.core.mode == ModeOff {
		m.mu.Unlock()
		return Decision{}, &conflictError{"the mitigator is off (kill switch): set another mode first, or act through vigil admin"}
	}
	d, err := m.core.manualUndo(now, id)
	if err != nil {
		m.mu.Unlock()
		return Decision{}, err
	}
	c := d.clone()
	var orig *Decision
	if c.UndoOf != "" {
		if o := m.core.byID[c.UndoOf]; o != nil {
			orig = o.clone()
		}
	}
	m.mu.Unlock()
	recs := []*Decision{c}
	if orig != nil && !orig.Open {
		recs = append(recs, orig)
	}
	if err := m.record("decided", recs...); err != nil {
		return Decision{}, err
	}
	if c.Outcome == OutExecuting {
		view, _ := m.readView(ctx)
		m.execute(ctx, []*Decision{c}, view)
	}
	m.updateGauges()
	got, _ := m.Decision(c.ID)
	return got, nil
}

// Suppressed returns a mitigation_suppressed signal per cell (or for the
// fleet) where mitigation is suppressed now.
func (m *Mitigator) Suppressed() []slo.Signal {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []slo.Signal
	for scope, d := range m.core.suppress {
		l := map[string]string{"scope": scope}
		if d.Cell != "" {
			l["cell"] = d.Cell
		}
		out = append(out, slo.Signal{ID: "mitigation_suppressed{scope=" + scope + "}", Name: "mitigation_suppressed", Source: "mitigator", Rule: "decision " + d.ID,
			Severity: "page", Description: d.Reason, Labels: l, Since: d.At, At: d.Updated, Evidence: flatten(d.Evidence)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func flatten(ss []slo.Signal) []slo.Evidence {
	var out []slo.Evidence
	for _, s := range ss {
		out = append(out, s.Evidence...)
	}
	return out
}

func cloneAll(ds []*Decision) []*Decision {
	out := make([]*Decision, len(ds))
	for i, d := range ds {
		out[i] = d.clone()
	}
	return out
}

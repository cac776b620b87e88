package mitigator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/controller"
	"github.com/vigilhq/vigil/slo"
)

// fakeCtrl is an in-memory controller: it applies admin actions to an
// image the way the real one does, in the simplest way that keeps the
// invariants the mitigator relies on, and records every call.
type fakeCtrl struct {
	mu    sync.Mutex
	img   *controller.Image
	calls []string
	// fail makes calls of an op fail.
	fail map[string]error
	// metaErr makes Metadata fail.
	metaErr error
}

// newFakeCtrl returns a cluster of n brokers in cell a and topic t with
// partitions parts, replication factor min(3, n), led by partition%n.
func newFakeCtrl(n, parts int, minInsync int) *fakeCtrl {
	img := controller.NewImage()
	for i := range n {
		img.Brokers[int32(i)] = &controller.Broker{ID: int32(i), Cell: "a", Rack: "a" + strconv.Itoa(i), State: controller.BrokerRegistered}
	}
	t := &controller.Topic{Name: "t", Configs: map[string]string{}}
	if minInsync > 0 {
		t.Configs["min.insync.replicas"] = strconv.Itoa(minInsync)
	}
	rf := min(3, n)
	for p := range parts {
		var rs []int32
		for k := range rf {
			rs = append(rs, int32((p+k)%n))
		}
		t.Partitions = append(t.Partitions, &controller.Partition{Replicas: rs, ISR: slices.Clone(rs), Leader: rs[0]})
	}
	img.Topics["t"] = t
	return &fakeCtrl{img: img, fail: map[string]error{}}
}

func (f *fakeCtrl) call(op string, id int32) error {
	f.calls = append(f.calls, fmt.Sprintf("%s %d", op, id))
	return f.fail[op]
}

func (f *fakeCtrl) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeCtrl) alive(id int32) bool {
	b := f.img.Brokers[id]
	return b != nil && b.State == controller.BrokerRegistered
}

// moveLeaders moves the leaderships of id to another alive, in-sync, not
// demoted replica where there is one.
func (f *fakeCtrl) moveLeaders(id int32) {
	for _, t := range f.img.Topics {
		for _, p := range t.Partitions {
			if p.Leader != id {
				continue
			}
			for _, r := range p.ISR {
				if r != id && f.alive(r) && !f.img.Brokers[r].Demoted {
					p.Leader = r
					break
				}
			}
		}
	}
}

func (f *fakeCtrl) desc(id int32) *controller.BrokerDescription {
	return &controller.BrokerDescription{Broker: *f.img.Brokers[id]}
}

func (f *fakeCtrl) Metadata(ctx context.Context) (*controller.Delta, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.metaErr != nil {
		return nil, f.metaErr
	}
	return &controller.Delta{Image: f.img.Clone()}, nil
}

func (f *fakeCtrl) Demote(ctx context.Context, id int32) (*controller.BrokerDescription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("demote", id); err != nil {
		return nil, err
	}
	f.img.Brokers[id].Demoted = true
	f.moveLeaders(id)
	return f.desc(id), nil
}

func (f *fakeCtrl) Undemote(ctx context.Context, id int32) (*controller.BrokerDescription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("undemote", id); err != nil {
		return nil, err
	}
	f.img.Brokers[id].Demoted = false
	return f.desc(id), nil
}

func (f *fakeCtrl) Fence(ctx context.Context, id int32) (*controller.BrokerDescription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("fence", id); err != nil {
		return nil, err
	}
	b := f.img.Brokers[id]
	b.State, b.AdminFenced = controller.BrokerFenced, true
	for _, t := range f.img.Topics {
		for _, p := range t.Partitions {
			if len(p.ISR) > 1 && slices.Contains(p.ISR, id) {
				p.ISR = slices.DeleteFunc(p.ISR, func(r int32) bool { return r == id })
			}
			if p.Leader == id {
				p.Leader = controller.NoLeader
				for _, r := range p.ISR {
					if f.alive(r) {
						p.Leader = r
						break
					}
				}
			}
		}
	}
	return f.desc(id), nil
}

func (f *fakeCtrl) Unfence(ctx context.Context, id int32) (*controller.BrokerDescription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("unfence", id); err != nil {
		return nil, err
	}
	b := f.img.Brokers[id]
	b.State, b.AdminFenced = controller.BrokerRegistered, false
	return f.desc(id), nil
}

func (f *fakeCtrl) Decommission(ctx context.Context, id, to int32) (*controller.BrokerDescription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("decommission %d to %d", id, to))
	if err := f.fail["decommission"]; err != nil {
		return nil, err
	}
	f.img.Brokers[id].Decommissioning = true
	for _, t := range f.img.Topics {
		for _, p := range t.Partitions {
			// The new replicas catch up at once.
			if i := slices.Index(p.Replicas, id); i >= 0 && to != controller.NoBroker {
				p.Replicas[i] = to
				p.ISR = slices.Clone(p.Replicas)
				if p.Leader == id {
					p.Leader = p.Replicas[0]
				}
			}
		}
	}
	if !f.holds(id) {
		f.img.Brokers[id].State = controller.BrokerDecommissioned
	}
	return f.desc(id), nil
}

// holds reports whether broker id is a replica of any partition.
func (f *fakeCtrl) holds(id int32) bool {
	for _, t := range f.img.Topics {
		for _, p := range t.Partitions {
			if slices.Contains(p.Replicas, id) {
				return true
			}
		}
	}
	return false
}

func (f *fakeCtrl) RemoveFromISR(ctx context.Context, topic string, partition, broker int32) (*controller.Partition, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("remove_from_isr %s/%d %d", topic, partition, broker))
	if err := f.fail["remove_from_isr"]; err != nil {
		return nil, err
	}
	p := f.img.Topics[topic].Partitions[partition]
	if len(p.ISR) == 1 {
		return nil, errors.New("INVALID_REQUEST: the only member")
	}
	p.ISR = slices.DeleteFunc(p.ISR, func(r int32) bool { return r == broker })
	c := *p
	return &c, nil
}

func (f *fakeCtrl) ElectLeaders(ctx context.Context, req controller.ElectLeadersRequest) ([]controller.ElectionResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("elect_preferred", -1); err != nil {
		return nil, err
	}
	var out []controller.ElectionResult
	for name, t := range f.img.Topics {
		for i, p := range t.Partitions {
			pref := p.Replicas[0]
			if p.Leader != pref && slices.Contains(p.ISR, pref) && f.alive(pref) && !f.img.Brokers[pref].Demoted {
				p.Leader = pref
				out = append(out, controller.ElectionResult{Topic: name, Partition: int32(i), Leader: pref})
			}
		}
	}
	return out, nil
}

// fakeProv records Provisioner calls; Provision registers a new broker
// in the fake controller.
type fakeProv struct {
	ctrl  *fakeCtrl
	mu    sync.Mutex
	calls []string
	// state is what a new broker starts as (default registered).
	state controller.BrokerState
}

func (p *fakeProv) Provision(ctx context.Context, cell, rack string) (int32, error) {
	p.ctrl.mu.Lock()
	defer p.ctrl.mu.Unlock()
	id := int32(len(p.ctrl.img.Brokers))
	p.mu.Lock()
	defer p.mu.Unlock()
	state := p.state
	if state == "" {
		state = controller.BrokerRegistered
	}
	p.ctrl.img.Brokers[id] = &controller.Broker{ID: id, Cell: cell, Rack: rack, State: state}
	p.calls = append(p.calls, fmt.Sprintf("provision %s %s -> %d", cell, rack, id))
	return id, nil
}

func (p *fakeProv) Restart(ctx context.Context, id int32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, fmt.Sprintf("restart %d", id))
	return nil
}

func (p *fakeProv) Retire(ctx context.Context, id int32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, fmt.Sprintf("retire %d", id))
	return nil
}

func (p *fakeProv) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// harness is a mitigator on a fake controller and a fake clock.
type harness struct {
	t    *testing.T
	m    *Mitigator
	ctrl *fakeCtrl
	prov *fakeProv
	now  time.Time
	reg  *prometheus.Registry
	cfg  Config
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newHarness(t *testing.T, ctrl *fakeCtrl, withProv bool, change func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, ctrl: ctrl, now: t0, reg: prometheus.NewRegistry()}
	if withProv {
		h.prov = &fakeProv{ctrl: ctrl}
	}
	h.cfg = Config{Mode: ModeAuto, Clock: func() time.Time { return h.now }, Registerer: h.reg}
	if change != nil {
		change(&h.cfg)
	}
	h.start()
	return h
}

// start (re)creates the mitigator on the harness's config.
func (h *harness) start() {
	h.t.Helper()
	var p Provisioner
	if h.prov != nil {
		p = h.prov
	}
	h.reg = prometheus.NewRegistry()
	h.cfg.Registerer = h.reg
	m, err := New(h.cfg, h.ctrl, p)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { m.Close() })
	h.m = m
}

// at advances the clock by d and observes signals.
func (h *harness) at(d time.Duration, signals ...slo.Signal) {
	h.now = h.now.Add(d)
	h.m.Observe(h.now, signals)
}

// sig is a signal about broker b in cell a.
func sig(name string, b int32, extra ...string) slo.Signal {
	l := map[string]string{"broker": strconv.Itoa(int(b)), "cell": "a", "cluster": "dev"}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return slo.Signal{ID: name + fmt.Sprint(l), Name: name, Source: "health_rule", Rule: name + "-rule", Labels: l, Since: t0, At: t0,
		Evidence: []slo.Evidence{{Expr: "some_expr > 1", Value: 42, Labels: l, At: t0}}}
}

// decisions returns action/outcome/broker of each decision, in order.
func (h *harness) decisions() []string {
	var out []string
	for _, d := range h.m.Decisions() {
		out = append(out, fmt.Sprintf("%s %s %d", d.Action, d.Outcome, d.Broker))
	}
	return out
}

func (h *harness) wantDecisions(want ...string) {
	h.t.Helper()
	got := h.decisions()
	if !slices.Equal(got, want) {
		h.t.Fatalf("decisions:\n got  %q\n want %q", got, want)
	}
}

func (h *harness) wantCalls(want ...string) {
	h.t.Helper()
	got := h.ctrl.Calls()
	if !slices.Equal(got, want) {
		h.t.Fatalf("controller calls:\n got  %q\n want %q", got, want)
	}
}

func (h *harness) leads(id int32) int {
	h.ctrl.mu.Lock()
	defer h.ctrl.mu.Unlock()
	n := 0
	for _, p := range h.ctrl.img.Topics["t"].Partitions {
		if p.Leader == id {
			n++
		}
	}
	return n
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

package mitigator

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/controller"
	"github.com/vigilhq/vigil/internal/vigiltest"
)

const sec = time.Second

// Storage degradation: nothing before the sustain time, a demotion after
// it, and an undemotion (with a preferred election) only once the broker
// has been healthy for HealthyFor.
func TestStorageDegradedDemoteThenUndemote(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 6, 2), false, nil)
	s := sig("storage_degraded", 2)
	h.at(0, s)
	h.at(2*sec, s)
	h.wantDecisions()
	h.at(1*sec, s) // 3s: sustained
	h.wantDecisions("demote done 2")
	h.wantCalls("demote 2")
	if n := h.leads(2); n != 0 {
		t.Fatalf("broker 2 still leads %d partitions", n)
	}
	d := h.m.Decisions()[0]
	if !d.Open || len(d.Evidence) != 1 || d.Evidence[0].Evidence[0].Value != 42 || d.Policy != "allowed" || d.Mode != ModeAuto {
		t.Fatalf("decision: %+v", d)
	}
	// Still degraded: nothing more.
	h.at(10*sec, s)
	h.wantDecisions("demote done 2")
	// Healthy, but not for long enough.
	h.at(sec)
	h.at(29 * sec)
	h.wantDecisions("demote done 2")
	h.at(sec) // healthy for 30s
	h.wantDecisions("demote done 2", "undemote done 2")
	h.wantCalls("demote 2", "undemote 2", "elect_preferred -1")
	ds := h.m.Decisions()
	if ds[0].Open || ds[0].UndoneBy != ds[1].ID || ds[1].UndoOf != ds[0].ID {
		t.Fatalf("undo links: %+v / %+v", ds[0], ds[1])
	}
	if h.leads(2) == 0 {
		t.Fatal("leaders were not rebalanced back to broker 2")
	}
	if v := vigiltest.Sum(t, h.reg, "vigil_mitigator_decisions_total", map[string]string{"action": "demote", "outcome": "undone"}); v != 1 {
		t.Fatalf("demote undone counted %v times", v)
	}
}

// Hysteresis: a condition that flaps shorter than the sustain time is
// never acted on; a healthy gap shorter than HealthyFor does not undo.
func TestHysteresis(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 3, 1), false, nil)
	s := sig("unreachable", 1)
	for range 5 {
		h.at(sec, s)
		h.at(sec, s)
		h.at(sec) // cleared before 3s
	}
	h.wantDecisions()
	h.at(sec, s)
	h.at(3*sec, s)
	h.wantDecisions("demote done 1")
	for range 5 {
		h.at(20 * sec)
		h.at(sec, s) // back before 30s healthy
	}
	h.wantDecisions("demote done 1")
}

// Gray failure: demoted first, then fenced because its followers cannot
// fetch from it; unfenced and undemoted once reachable again.
func TestUnreachableDemoteFenceUnfence(t *testing.T) {
	for _, tc := range []struct {
		name    string
		signals func() []any
		isolate bool
	}{
		{name: "followers_not_fetching signal"},
		{name: "ISR shrunk to the leader", isolate: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := newFakeCtrl(3, 3, 1)
			h := newHarness(t, fc, false, nil)
			sigs := []any{}
			_ = sigs
			un := sig("unreachable", 0)
			nf := sig("followers_not_fetching", 0)
			if tc.isolate {
				// Partition 0 (led by 0): its followers fell out of the ISR.
				fc.img.Topics["t"].Partitions[0].ISR = []int32{0}
				h.at(0, un)
				h.at(3*sec, un)
				h.at(sec, un)
			} else {
				h.at(0, un, nf)
				h.at(3*sec, un, nf)
				h.at(sec, un, nf)
			}
			h.wantDecisions("demote done 0", "fence done 0")
			h.wantCalls("demote 0", "fence 0")
			h.at(sec)
			h.at(30 * sec)
			h.wantDecisions("demote done 0", "fence done 0", "unfence done 0")
			h.at(sec)
			h.wantDecisions("demote done 0", "fence done 0", "unfence done 0", "undemote done 0")
			h.wantCalls("demote 0", "fence 0", "unfence 0", "undemote 0", "elect_preferred -1")
		})
	}
}

// Stuck storage: demoted, then restarted through the Provisioner once its
// leaderships have moved; refused with a reason without a Provisioner.
func TestStorageStuckRestart(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 3, 1), true, nil)
	s := sig("storage_stuck", 1)
	h.at(0, s)
	h.at(3*sec, s)
	h.at(sec, s)
	h.wantDecisions("demote done 1", "restart done 1")
	if got := h.prov.Calls(); len(got) != 1 || got[0] != "restart 1" {
		t.Fatalf("provisioner calls %q", got)
	}
	// Still stuck: no second restart within the cool-down.
	h.at(30*sec, s)
	h.wantDecisions("demote done 1", "restart done 1", "restart refused 1")
	h.at(10*sec, s)
	h.wantDecisions("demote done 1", "restart done 1", "restart refused 1")
	h.at(25*sec, s)
	h.wantDecisions("demote done 1", "restart done 1", "restart refused 1", "restart done 1")

	t.Run("no provisioner", func(t *testing.T) {
		h := newHarness(t, newFakeCtrl(3, 3, 1), false, nil)
		h.at(0, s)
		h.at(3*sec, s)
		h.at(sec, s)
		h.at(sec, s)
		h.wantDecisions("demote done 1", "restart refused 1")
		if p := h.m.Decisions()[1].Policy; !strings.Contains(p, "no Provisioner") || !strings.Contains(p, "by hand") {
			t.Fatalf("policy %q", p)
		}
	})
}

// A slow follower is removed from the ISR of the partition it slows; the
// min.insync.replicas guard refuses when that would go below it.
func TestSlowFollowerShrinkAndMinISRGuard(t *testing.T) {
	for _, tc := range []struct {
		name      string
		minInsync int
		want      []string
		calls     []string
	}{
		{"shrinks", 2, []string{"shrink_isr done 1"}, []string{"remove_from_isr t/0 1"}},
		{"refused below min.insync.replicas", 3, []string{"shrink_isr refused 1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, newFakeCtrl(3, 3, tc.minInsync), false, nil)
			s := sig("slow_follower", 1, "topic", "t", "partition", "0")
			h.at(0, s)
			h.at(3*sec, s)
			h.at(sec, s) // a refusal that holds is recorded once
			h.wantDecisions(tc.want...)
			h.wantCalls(tc.calls...)
			if tc.minInsync == 3 && !strings.Contains(h.m.Decisions()[0].Policy, "t/0 below min.insync.replicas") {
				t.Fatalf("policy %q", h.m.Decisions()[0].Policy)
			}
		})
	}
	t.Run("fence refused below min.insync.replicas", func(t *testing.T) {
		h := newHarness(t, newFakeCtrl(3, 3, 3), false, nil)
		un, nf := sig("unreachable", 0), sig("followers_not_fetching", 0)
		h.at(0, un, nf)
		h.at(3*sec, un, nf)
		h.at(sec, un, nf)
		h.wantDecisions("demote done 0", "fence refused 0")
		h.wantCalls("demote 0")
	})
}

// Two brokers of a cell degraded at once: one is mitigated, the other
// refused (once) until the first is healthy again.
func TestOneBrokerPerCell(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 3, 1), false, nil)
	a, b := sig("storage_degraded", 1), sig("storage_degraded", 2)
	h.at(0, a, b)
	h.at(3*sec, a, b)
	h.at(sec, a, b)
	h.at(sec, a, b)
	h.wantDecisions("demote done 1", "demote refused 2")
	if p := h.m.Decisions()[1].Policy; !strings.Contains(p, "one broker per cell") {
		t.Fatalf("policy %q", p)
	}
	h.wantCalls("demote 1")
	// Broker 1 heals; once undemoted, broker 2 is demoted.
	h.at(sec, b)
	h.at(30*sec, b)
	h.at(sec, b)
	h.wantDecisions("demote done 1", "demote refused 2", "undemote done 1", "demote done 2")
}

// All brokers sick at once: nothing is done, mitigation_suppressed is
// raised (decision, gauge, signal) and lifted when they recover.
func TestSuppressionWhenTooManySick(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 3, 1), false, nil)
	s0, s1, s2 := sig("slow_follower", 0), sig("slow_follower", 1), sig("storage_degraded", 2)
	for range 5 {
		h.at(sec, s0, s1, s2)
	}
	h.wantDecisions("suppress suppressed -1")
	h.wantCalls()
	if v := vigiltest.Sum(t, h.reg, "vigil_mitigator_suppressed", nil); v != 1 {
		t.Fatalf("suppressed gauge %v", v)
	}
	sup := h.m.Suppressed()
	if len(sup) == 0 || sup[0].Name != "mitigation_suppressed" || sup[0].Labels["cell"] != "a" {
		t.Fatalf("suppressed signals %+v", sup)
	}
	d := h.m.Decisions()[0]
	if !d.Open || len(d.Evidence) != 3 || !strings.Contains(d.Reason, "3 of the 3 brokers of cell a") {
		t.Fatalf("suppression decision %+v", d)
	}
	h.at(sec)
	if v := vigiltest.Sum(t, h.reg, "vigil_mitigator_suppressed", nil); v != 0 {
		t.Fatalf("suppressed gauge %v after recovery", v)
	}
	if len(h.m.Suppressed()) != 0 || h.m.Decisions()[0].Open {
		t.Fatal("suppression not lifted")
	}
}

// A whole cell whose disks are slow (storage_slow on every broker, which
// no relative rule names) is suppressed, not blamed on one broker; one
// broker slow in absolute terms alone changes nothing.
func TestSlowStorageEverywhereSuppresses(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 3, 1), false, nil)
	s0, s1, s2 := sig("storage_slow", 0), sig("storage_slow", 1), sig("storage_slow", 2)
	for range 5 {
		h.at(sec, s0, s1, s2)
	}
	h.wantDecisions("suppress suppressed -1")
	h.wantCalls()

	h2 := newHarness(t, newFakeCtrl(3, 3, 1), false, nil)
	for range 5 {
		h2.at(sec, sig("storage_slow", 1))
	}
	h2.wantDecisions()
	h2.wantCalls()
}

// Cool-down: after an undemotion, the broker is not demoted again before
// Cooldown has passed.
func TestCooldown(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 3, 1), false, func(c *Config) { c.Cooldown = 2 * time.Minute })
	s := sig("storage_degraded", 2)
	h.at(0, s)
	h.at(3*sec, s)
	h.at(sec)
	h.at(30 * sec) // undemoted at T
	h.at(sec, s)
	h.at(3*sec, s)
	h.at(sec, s)
	h.wantDecisions("demote done 2", "undemote done 2", "demote refused 2")
	if p := h.m.Decisions()[2].Policy; !strings.Contains(p, "cool-down") {
		t.Fatalf("policy %q", p)
	}
	h.at(2*time.Minute, s)
	h.wantDecisions("demote done 2", "undemote done 2", "demote refused 2", "demote done 2")
}

// Dry-run records what would be done, including the undo, and calls
// nothing.
func TestDryRun(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 3, 1), true, func(c *Config) { c.Mode = ModeDryRun })
	s := sig("storage_stuck", 1)
	h.at(0, s)
	h.at(3*sec, s)
	h.at(sec, s)
	h.at(sec)
	h.at(30 * sec)
	h.wantDecisions("demote dry_run 1", "undemote dry_run 1")
	h.wantCalls()
	if len(h.prov.Calls()) != 0 {
		t.Fatalf("provisioner called: %q", h.prov.Calls())
	}
	t.Run("default mode is dry-run", func(t *testing.T) {
		m, err := New(Config{}, newFakeCtrl(1, 1, 1), nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.Mode() != ModeDryRun {
			t.Fatalf("mode %s", m.Mode())
		}
	})
}

// Approve mode: a decision waits, nothing is called until it is
// approved; a pending decision whose condition clears is cancelled.
func TestApprove(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 3, 1), false, func(c *Config) { c.Mode = ModeApprove })
	s := sig("storage_degraded", 2)
	h.at(0, s)
	h.at(3*sec, s)
	h.at(10*sec, s)
	h.wantDecisions("demote pending_approval 2")
	h.wantCalls()
	id := h.m.Decisions()[0].ID
	d, err := h.m.Approve(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome != OutDone || d.ApprovedAt == nil {
		t.Fatalf("approved decision %+v", d)
	}
	h.wantCalls("demote 2")
	if _, err := h.m.Approve(context.Background(), id); err == nil || !strings.Contains(err.Error(), "not pending") {
		t.Fatalf("second approval: %v", err)
	}
	// The undo needs no approval.
	h.at(sec)
	h.at(30 * sec)
	h.wantDecisions("demote done 2", "undemote done 2")

	// Pending, then the condition clears: cancelled.
	o := sig("unreachable", 0)
	h.at(sec, o)
	h.at(3*sec, o)
	h.at(sec)
	h.wantDecisions("demote done 2", "undemote done 2", "demote cancelled 0")
}

// An operator's undo reverses a demotion at once, and the mitigator does
// not demote again while the condition lasts.
func TestManualUndo(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 3, 1), false, nil)
	s := sig("storage_degraded", 2)
	h.at(0, s)
	h.at(3*sec, s)
	u, err := h.m.Undo(context.Background(), "1")
	if err != nil {
		t.Fatal(err)
	}
	if u.Action != ActUndemote || u.Outcome != OutDone || u.UndoOf != "1" {
		t.Fatalf("undo %+v", u)
	}
	h.wantCalls("demote 2", "undemote 2", "elect_preferred -1")
	h.at(sec, s)
	h.at(5*sec, s)
	h.wantDecisions("demote done 2", "undemote done 2", "demote refused 2")
	if p := h.m.Decisions()[2].Policy; !strings.Contains(p, "an operator undid") {
		t.Fatalf("policy %q", p)
	}
	if _, err := h.m.Undo(context.Background(), "1"); err == nil {
		t.Fatal("undid twice")
	}
	if _, err := h.m.Undo(context.Background(), "99"); err == nil || !strings.Contains(err.Error(), "vigil mitigations list") {
		t.Fatalf("unknown id: %v", err)
	}
}

// The kill switch: mode off decides nothing and undoes nothing.
func TestKillSwitch(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 3, 1), false, nil)
	s := sig("storage_degraded", 2)
	h.at(0, s)
	h.at(3*sec, s)
	h.wantDecisions("demote done 2")
	if err := h.m.SetMode(ModeOff); err != nil {
		t.Fatal(err)
	}
	h.at(sec)
	h.at(time.Minute)
	h.at(sec, sig("storage_degraded", 1))
	h.at(time.Minute, sig("storage_degraded", 1))
	h.wantDecisions("demote done 2")
	h.wantCalls("demote 2")
	if v := vigiltest.Sum(t, h.reg, "vigil_mitigator_mode", map[string]string{"mode": "off"}); v != 1 {
		t.Fatalf("mode gauge %v", v)
	}
	if err := h.m.SetMode(ModeAuto); err != nil {
		t.Fatal(err)
	}
	h.at(sec, sig("storage_degraded", 1))
	h.at(sec, sig("storage_degraded", 1))
	// The undo runs first; broker 1 waits one evaluation for the cell.
	h.wantDecisions("demote done 2", "undemote done 2", "demote refused 1", "demote done 1")
}

// The audit trail survives a restart: history, open mitigations and the
// mode set through the API.
func TestAuditTrailReload(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, newFakeCtrl(3, 3, 1), false, func(c *Config) { c.DataDir = dir })
	s := sig("storage_degraded", 2)
	h.at(0, s)
	h.at(3*sec, s)
	h.at(sec, sig("storage_degraded", 1))
	h.at(3*sec, sig("storage_degraded", 1)) // refused: one per cell
	if err := h.m.SetMode(ModeApprove); err != nil {
		t.Fatal(err)
	}
	before := h.m.Decisions()
	h.m.Close()

	h.start()
	if h.m.Mode() != ModeApprove {
		t.Fatalf("mode after restart %s", h.m.Mode())
	}
	after := h.m.Decisions()
	if len(after) != len(before) {
		t.Fatalf("%d decisions after restart, %d before", len(after), len(before))
	}
	for i := range before {
		if after[i].ID != before[i].ID || after[i].Outcome != before[i].Outcome || after[i].Open != before[i].Open || len(after[i].Evidence) != len(before[i].Evidence) {
			t.Fatalf("decision %d: %+v after, %+v before", i, after[i], before[i])
		}
	}
	// The open demotion is still known: it is undone when healthy.
	h.at(sec)
	h.at(30 * sec)
	got := h.decisions()
	if got[len(got)-1] != "undemote done 2" || h.m.Decisions()[len(got)-1].ID != strconv.Itoa(len(before)+1) {
		t.Fatalf("after restart: %q", got)
	}
	// A torn last line (a crash mid-write) is ignored.
	h.m.Close()
	appendFile(t, dir+"/"+AuditFile, `{"at":"2026-01-0`)
	h.start()
	if len(h.m.Decisions()) != len(got) {
		t.Fatalf("torn tail: %d decisions", len(h.m.Decisions()))
	}
}

// Replacement: a broker down past ReplaceAfter gets a new broker in its
// cell, its replicas move, and it is decommissioned and retired.
func TestReplaceBrokerDown(t *testing.T) {
	fc := newFakeCtrl(3, 3, 1)
	h := newHarness(t, fc, true, func(c *Config) { c.ReplaceAfter = time.Minute })
	fc.img.Brokers[1].State = "fenced" // down: missed heartbeats
	h.at(0)
	h.wantDecisions("record recorded 1")
	h.at(30 * sec)
	h.at(30 * sec)
	h.wantDecisions("record recorded 1", "replace executing 1")
	if d := h.m.Decisions()[1]; d.Phase != "sync" || d.NewBroker != 3 || !d.Open {
		t.Fatalf("replacement %+v", d)
	}
	h.at(sec) // the replicas are in sync on broker 3
	h.wantDecisions("record recorded 1", "replace done 1")
	if got := h.prov.Calls(); strings.Join(got, ",") != "provision a a1 -> 3,retire 1" {
		t.Fatalf("provisioner calls %q", got)
	}
	h.wantCalls("decommission 1 to 3")
	for _, p := range fc.img.Topics["t"].Partitions {
		for _, r := range p.Replicas {
			if r == 1 {
				t.Fatalf("broker 1 still holds replicas: %+v", p)
			}
		}
	}
	if _, err := h.m.Undo(context.Background(), h.m.Decisions()[1].ID); err == nil || !strings.Contains(err.Error(), "cannot be undone") {
		t.Fatalf("undo replace: %v", err)
	}
}

// A new broker that has not joined yet (fenced until its first heartbeat)
// gets no replicas: the replacement waits for it, then goes on.
func TestReplaceWaitsForTheNewBroker(t *testing.T) {
	fc := newFakeCtrl(3, 3, 1)
	h := newHarness(t, fc, true, func(c *Config) { c.ReplaceAfter = time.Minute })
	h.prov.state = controller.BrokerFenced
	fc.img.Brokers[1].State = "fenced"
	h.at(0)
	h.at(61 * sec)
	h.at(sec)
	d := h.m.Decisions()[1]
	if d.Phase != "reassign" || !d.Open || d.Outcome != OutExecuting || !strings.Contains(d.Steps[1].Detail, "waiting for new broker 3") {
		t.Fatalf("replacement before the new broker joined: %+v", d)
	}
	h.wantCalls()
	fc.mu.Lock()
	fc.img.Brokers[3].State = controller.BrokerRegistered
	fc.mu.Unlock()
	h.at(sec)
	h.at(sec)
	// (Broker 3, fenced meanwhile, was recorded as down.)
	h.wantDecisions("record recorded 1", "replace done 1", "record recorded 3")
	h.wantCalls("decommission 1 to 3")
}

// Without a cluster view, mitigations are refused with the reason.
func TestNoViewRefuses(t *testing.T) {
	fc := newFakeCtrl(3, 3, 1)
	fc.metaErr = errors.New("connection refused")
	h := newHarness(t, fc, false, nil)
	s := sig("storage_degraded", 2)
	h.at(0, s)
	h.at(3*sec, s)
	fc.mu.Lock()
	fc.metaErr = errors.New("i/o timeout")
	fc.mu.Unlock()
	h.at(sec, s) // another error, the same refusal: recorded once
	h.wantDecisions("demote refused 2")
	if p := h.m.Decisions()[0].Policy; !strings.Contains(p, "connection refused") {
		t.Fatalf("policy %q", p)
	}
	fc.mu.Lock()
	fc.metaErr = nil
	fc.mu.Unlock()
	h.at(sec, s)
	h.wantDecisions("demote refused 2", "demote done 2")
}

// A failed action is recorded as failed with its error and retried only
// after the cool-down.
func TestFailedAction(t *testing.T) {
	fc := newFakeCtrl(3, 3, 1)
	fc.fail["demote"] = errors.New("NOT_CONTROLLER")
	h := newHarness(t, fc, false, nil)
	s := sig("storage_degraded", 2)
	h.at(0, s)
	h.at(3*sec, s)
	h.at(sec, s)
	h.wantDecisions("demote failed 2", "demote refused 2")
	if d := h.m.Decisions()[0]; !strings.Contains(d.Error, "NOT_CONTROLLER") || d.Steps[0].Result != "error" {
		t.Fatalf("failed decision %+v", d)
	}
}

// A broker degraded past ReplaceAfter is demoted first, then replaced;
// the replacement ends its demotion, and the decommissioned broker is not
// mitigated again.
func TestReplaceDegradedBrokerEndsItsDemotion(t *testing.T) {
	fc := newFakeCtrl(3, 3, 2)
	h := newHarness(t, fc, true, func(c *Config) { c.ReplaceAfter = time.Minute })
	s := sig("storage_degraded", 1)
	h.at(0, s)
	h.at(3*sec, s)
	h.at(57*sec, s)
	h.at(sec, s)
	h.wantDecisions("demote done 1", "replace done 1")
	ds := h.m.Decisions()
	if ds[0].Open || !strings.Contains(ds[0].UndoNote, "replaced by broker 3") {
		t.Fatalf("demotion after the replacement: %+v", ds[0])
	}
	for range 3 {
		h.at(time.Minute, s)
	}
	h.wantDecisions("demote done 1", "replace done 1")
	h.wantCalls("demote 1", "decommission 1 to 3")
}

// The audit trail rotates past AuditMaxBytes: the new trail starts with
// the mode and every decision's last state, so a restart restores the
// same decisions from it alone; only AuditKeep rotated trails stay; a
// rotation a crash interrupted between its renames is completed.
func TestAuditRotation(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *Config) { c.DataDir, c.AuditMaxBytes, c.AuditKeep = dir, 2000, 2 }
	h := newHarness(t, newFakeCtrl(3, 3, 1), false, cfg)
	if err := h.m.SetMode(ModeApprove); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ { // demote (pending approval) and cancel, repeatedly
		s := sig("storage_degraded", 2)
		h.at(0, s)
		h.at(3*sec, s)
		h.at(time.Minute)
	}
	before := h.m.Decisions()
	if len(before) < 4 {
		t.Fatalf("%d decisions; the test wants several", len(before))
	}
	h.m.Close()
	rotated, err := filepath.Glob(filepath.Join(dir, "mitigations-*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rotated) != 2 {
		t.Fatalf("%d rotated trails %v, want AuditKeep = 2 (the trail grew past 2,000 bytes several times)", len(rotated), rotated)
	}

	check := func(what string) {
		t.Helper()
		h.start()
		defer h.m.Close()
		if h.m.Mode() != ModeApprove {
			t.Fatalf("%s: mode %s", what, h.m.Mode())
		}
		after := h.m.Decisions()
		if len(after) != len(before) {
			t.Fatalf("%s: %d decisions, %d before", what, len(after), len(before))
		}
		for i := range before {
			if after[i].ID != before[i].ID || after[i].Outcome != before[i].Outcome || after[i].Open != before[i].Open {
				t.Fatalf("%s: decision %d: %+v, before %+v", what, i, after[i], before[i])
			}
		}
	}
	check("restart")
	// A crash between the two renames of a rotation: the trail is gone,
	// the complete new one is beside it.
	trail := filepath.Join(dir, AuditFile)
	if err := os.Rename(trail, trail+".new"); err != nil {
		t.Fatal(err)
	}
	check("interrupted rotation")
	if _, err := os.Stat(trail + ".new"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the new trail was not moved into place: %v", err)
	}
}

// An operator's undemote outside the mitigator (vigil admin undemote, a
// controller call) ends the open demotion; the broker is not demoted
// again while the condition holds (a refusal says why), only once it has
// cleared and returned.
func TestUndemotedOutside(t *testing.T) {
	fc := newFakeCtrl(3, 3, 1)
	h := newHarness(t, fc, false, func(*Config) {})
	s := sig("storage_degraded", 2)
	h.at(0, s)
	h.at(3*sec, s)
	h.wantDecisions("demote done 2")
	if _, err := fc.Undemote(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	h.at(sec, s)
	d := h.m.Decisions()[0]
	if d.Open || !strings.Contains(d.UndoNote, "outside the mitigator") {
		t.Fatalf("demotion after the operator's undemote: open %v, note %q", d.Open, d.UndoNote)
	}
	h.at(5*time.Minute, s) // past the cooldown, condition still there
	h.wantDecisions("demote done 2", "demote refused 2")
	if r := h.m.Decisions()[1]; !strings.Contains(r.Policy, "an operator undid") {
		t.Fatalf("refusal: %q", r.Policy)
	}
	h.at(sec) // cleared
	h.at(sec, s)
	h.at(3*sec, s)
	h.wantDecisions("demote done 2", "demote refused 2", "demote done 2")
}

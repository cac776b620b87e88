package mitigator

import (
	"context"
	"fmt"
	"slices"

	"github.com/vigilhq/vigil/controller"
)

// carryOut performs d's actions through the Controller and Provisioner
// and returns d with its steps' results and its outcome: done, failed, or
// still executing (a replacement waiting for its replicas to sync).
func (m *Mitigator) carryOut(ctx context.Context, d *Decision, view *View) *Decision {
	d = d.clone()
	if d.Action == ActReplace {
		m.advanceReplace(ctx, d, view)
		return d
	}
	ok := true
	for i := range d.Steps {
		st := &d.Steps[i]
		if st.Result != "planned" {
			continue
		}
		err := m.step(ctx, d, st)
		st.At = m.cfg.Clock()
		if err != nil {
			st.Result, st.Detail = "error", err.Error()
			if d.Error == "" {
				d.Error = fmt.Sprintf("%s broker %d: %v", st.Op, st.Broker, err)
			}
			// A failed preferred election does not undo the undemotion.
			if st.Op != "elect_preferred" {
				ok = false
			}
			continue
		}
		if st.Result == "planned" {
			st.Result = "ok"
		}
	}
	if ok {
		d.Outcome = OutDone
	} else {
		d.Outcome = OutFailed
	}
	return d
}

// step performs one step.
func (m *Mitigator) step(ctx context.Context, d *Decision, st *Step) error {
	timeout := m.cfg.ActionTimeout
	if st.Op == "restart" || st.Op == "provision" || st.Op == "retire" {
		timeout = m.cfg.ProvisionTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	switch st.Op {
	case "demote":
		_, err = m.ctrl.Demote(ctx, st.Broker)
	case "undemote":
		_, err = m.ctrl.Undemote(ctx, st.Broker)
	case "fence":
		_, err = m.ctrl.Fence(ctx, st.Broker)
	case "unfence":
		_, err = m.ctrl.Unfence(ctx, st.Broker)
	case "elect_preferred":
		var rs []controller.ElectionResult
		rs, err = m.ctrl.ElectLeaders(ctx, controller.ElectLeadersRequest{Type: controller.ElectPreferred})
		moved := 0
		for _, r := range rs {
			if r.Error == nil && r.Leader == st.Broker {
				moved++
			}
		}
		st.Detail = fmt.Sprintf("%d partitions elected their preferred leader, %d of them broker %d", len(rs), moved, st.Broker)
	case "remove_from_isr":
		var p *controller.Partition
		p, err = m.ctrl.RemoveFromISR(ctx, st.Topic, st.Partition, st.Broker)
		if err == nil && p != nil {
			st.Detail = fmt.Sprintf("ISR now %v", p.ISR)
		}
	case "restart":
		if m.prov == nil {
			return fmt.Errorf("no Provisioner: restart broker %d by hand", st.Broker)
		}
		err = m.prov.Restart(ctx, st.Broker)
	default:
		err = fmt.Errorf("unknown step %q", st.Op)
	}
	return err
}

// advanceReplace moves a replacement on as far as it can go now:
// provision a new broker, reassign the old broker's replicas to it, wait
// until none are left on the old one, decommission and retire it.
func (m *Mitigator) advanceReplace(ctx context.Context, d *Decision, view *View) {
	set := func(op, result, detail string) {
		for i := range d.Steps {
			if d.Steps[i].Op == op {
				d.Steps[i].Result, d.Steps[i].Detail, d.Steps[i].At = result, detail, m.cfg.Clock()
			}
		}
	}
	fail := func(op string, err error) {
		set(op, "error", err.Error())
		d.Outcome, d.Open = OutFailed, false
		if d.Error == "" {
			d.Error = fmt.Sprintf("%s: %v", op, err)
		}
	}
	if m.prov == nil {
		fail("provision", fmt.Errorf("no Provisioner: replace broker %d by hand", d.Broker))
		return
	}
	old := d.Broker
	if d.Phase == "" {
		rack := ""
		if view != nil {
			rack = view.Brokers[old].Rack
		}
		pctx, cancel := context.WithTimeout(ctx, m.cfg.ProvisionTimeout)
		id, err := m.prov.Provision(pctx, d.Cell, rack)
		cancel()
		if err != nil {
			fail("provision", err)
			return
		}
		d.NewBroker = id
		set("provision", "ok", fmt.Sprintf("new broker %d in cell %s rack %s", id, d.Cell, rack))
		d.Phase = "reassign"
		view = nil // stale: read again before reassigning
	}
	if view == nil {
		v, errs := m.readView(ctx)
		if v == nil {
			d.Outcome = OutExecuting // try again at the next evaluation
			set("reassign", "planned", "waiting for the cluster view: "+errs)
			return
		}
		view = v
	}
	if d.Phase == "reassign" {
		// A provisioned broker registers and is unfenced by its first
		// heartbeat, perhaps after Provision returned: replicas can only
		// go to it then.
		if nb, ok := view.Brokers[d.NewBroker]; !ok || nb.State != controller.BrokerRegistered {
			if m.cfg.Clock().Sub(d.At) > m.cfg.ProvisionTimeout {
				fail("reassign", fmt.Errorf("new broker %d has not joined the cluster %s after the replacement began; look at its log", d.NewBroker, m.cfg.ProvisionTimeout))
				return
			}
			set("reassign", "planned", fmt.Sprintf("waiting for new broker %d to join the cluster", d.NewBroker))
			d.Outcome = OutExecuting
			return
		}
		// One controller command marks the old broker decommissioning (no
		// new replica may go to it: a probe re-asserting its topic's
		// layout, an operator's reassignment or new topics cannot put one
		// back while the moves run) and moves every replica of it to the
		// new broker.
		n := 0
		for _, p := range view.Partitions {
			if slices.Contains(p.Replicas, old) {
				n++
			}
		}
		rctx, cancel := context.WithTimeout(ctx, m.cfg.ActionTimeout)
		_, err := m.ctrl.Decommission(rctx, old, d.NewBroker)
		cancel()
		if err != nil {
			fail("reassign", err)
			return
		}
		set("reassign", "ok", fmt.Sprintf("%d partitions moving from broker %d to broker %d; broker %d decommissioning", n, old, d.NewBroker, old))
		d.Phase = "sync"
	}
	if d.Phase == "sync" {
		if view.holdsReplicas(old) {
			if m.cfg.Clock().Sub(d.At) > m.cfg.ReplaceTimeout {
				fail("reassign", fmt.Errorf("replicas still on broker %d after %s; look at vigil admin reassign --list", old, m.cfg.ReplaceTimeout))
				return
			}
			d.Outcome = OutExecuting
			return
		}
		d.Phase = "decommission"
	}
	if d.Phase == "decommission" {
		// The controller marks the broker decommissioned once its last
		// replica has moved. A replacement begun by an older version,
		// which moved the replicas before decommissioning, asks here.
		if view.Brokers[old].State != controller.BrokerDecommissioned {
			cctx, cancel := context.WithTimeout(ctx, m.cfg.ActionTimeout)
			_, err := m.ctrl.Decommission(cctx, old, controller.NoBroker)
			cancel()
			if err != nil {
				fail("decommission", err)
				return
			}
		}
		set("decommission", "ok", "")
		d.Phase = "retire"
	}
	if d.Phase == "retire" {
		rctx, cancel := context.WithTimeout(ctx, m.cfg.ProvisionTimeout)
		err := m.prov.Retire(rctx, old)
		cancel()
		if err != nil {
			fail("retire", err)
			return
		}
		set("retire", "ok", "")
		d.Phase = "done"
	}
	d.Outcome = OutDone
}

package mitigator

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/controller"
	"github.com/vigilhq/vigil/slo"
)

// Conditions the detectors track per broker, and the signals that raise
// them.
const (
	condStorage     = "storage_degraded"
	condStuck       = "storage_stuck"
	condUnreachable = "unreachable"
	condNotServing  = "followers_not_fetching"
	condSlow        = "slow_follower"
	condDown        = "down"
	// condSlowStorage is storage slow in absolute terms: never acted on
	// (a whole cell can be slow), but sick for the suppression rule.
	condSlowStorage = "storage_slow"
)

// signalConds maps a signal name to the condition it raises.
var signalConds = map[string]string{
	"storage_degraded":       condStorage,
	"storage_stuck":          condStuck,
	"unreachable":            condUnreachable,
	"followers_not_fetching": condNotServing,
	"slow_follower":          condSlow,
	"storage_slow":           condSlowStorage,
	"broker_fenced":          condDown,
	"broker_down":            condDown,
}

// cond is one condition of one broker over time.
type cond struct {
	active    bool
	since     time.Time // when it became active
	clearedAt time.Time // when it last stopped (zero: never active)
	signals   []slo.Signal
}

// track is the core's state of one broker.
type track struct {
	id    int32
	cell  string
	conds map[string]*cond
	// open are the open decisions by action.
	open map[string]*Decision
	// lastEnd is when the last mitigation of an action ended (undone,
	// carried out for one-shot actions, or failed): cool-downs count
	// from it.
	lastEnd map[string]time.Time
	// refused is the last refusal recorded per action, so a refusal that
	// holds is recorded once.
	refused map[string]string
	// held are actions an operator undid: not done again until their
	// condition clears.
	held map[string]bool
	// recordedDown is set while a down episode has been recorded.
	recordedDown bool
}

func (t *track) c(name string) *cond {
	c := t.conds[name]
	if c == nil {
		c = &cond{}
		t.conds[name] = c
	}
	return c
}

func (t *track) sustained(name string, now time.Time, d time.Duration) bool {
	c := t.conds[name]
	return c != nil && c.active && now.Sub(c.since) >= d
}

func (t *track) activeCond(name string) bool {
	c := t.conds[name]
	return c != nil && c.active
}

// healthy reports whether none of names has been active for d.
func (t *track) healthy(now time.Time, d time.Duration, names ...string) bool {
	for _, n := range names {
		c := t.conds[n]
		if c == nil {
			continue
		}
		if c.active || (!c.clearedAt.IsZero() && now.Sub(c.clearedAt) < d) {
			return false
		}
	}
	return true
}

func (t *track) evidence(names ...string) []slo.Signal {
	var out []slo.Signal
	for _, n := range names {
		if c := t.conds[n]; c != nil && c.active {
			out = append(out, c.signals...)
		}
	}
	return out
}

// core is the deterministic state machine: step takes the time, the
// active signals and the cluster view and returns the decisions it made
// or changed; complete takes back what the executor did. It does no I/O.
type core struct {
	cfg     Config
	hasProv bool
	mode    string
	seq     int
	all     []*Decision
	byID    map[string]*Decision
	brokers map[int32]*track
	// suppress is the open suppression decision per scope ("cell a",
	// "fleet").
	suppress map[string]*Decision
	view     *View
	viewErr  string
}

func newCore(cfg Config, hasProv bool) *core {
	return &core{cfg: cfg, hasProv: hasProv, mode: cfg.Mode, byID: map[string]*Decision{}, brokers: map[int32]*track{}, suppress: map[string]*Decision{}}
}

func (c *core) broker(id int32) *track {
	t := c.brokers[id]
	if t == nil {
		t = &track{id: id, conds: map[string]*cond{}, open: map[string]*Decision{}, lastEnd: map[string]time.Time{}, refused: map[string]string{}, held: map[string]bool{}}
		c.brokers[id] = t
	}
	return t
}

func (c *core) newDecision(now time.Time, action string, broker int32, cell, detector, reason string, ev []slo.Signal) *Decision {
	c.seq++
	d := &Decision{ID: strconv.Itoa(c.seq), At: now, Updated: now, Action: action, Broker: broker, Cell: cell, Detector: detector,
		Reason: reason, Mode: c.mode, Evidence: ev}
	c.all = append(c.all, d)
	c.byID[d.ID] = d
	return d
}

// step runs one evaluation. view is nil when the controller could not be
// read (viewErr says why): mitigations are then refused, undos still run.
// It returns the decisions made or changed (to record) and those the
// executor must carry out or advance.
func (c *core) step(now time.Time, signals []slo.Signal, view *View, viewErr string) (changed, exec []*Decision) {
	c.view, c.viewErr = view, viewErr
	c.observe(now, signals, view)
	if c.mode == ModeOff {
		return nil, nil
	}
	ch := &changes{}
	suppressed := c.suppression(now, view, ch)
	ids := make([]int32, 0, len(c.brokers))
	for id := range c.brokers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	// Undos first, so a mitigation ending frees its cell in the order
	// the audit trail shows.
	for _, id := range ids {
		c.stepUndo(now, c.brokers[id], view, ch)
	}
	for _, id := range ids {
		c.stepNew(now, c.brokers[id], view, suppressed, ch)
	}
	// Replacements under way advance on every step.
	for _, d := range c.all {
		if d.Outcome == OutExecuting && d.Action == ActReplace && !slices.Contains(ch.exec, d) {
			ch.exec = append(ch.exec, d)
		}
	}
	return ch.changed, ch.exec
}

type changes struct{ changed, exec []*Decision }

func (ch *changes) add(d *Decision) {
	if !slices.Contains(ch.changed, d) {
		ch.changed = append(ch.changed, d)
	}
	if d.Outcome == OutExecuting && !slices.Contains(ch.exec, d) {
		ch.exec = append(ch.exec, d)
	}
}

// observe updates every broker's conditions from the signals and the view.
func (c *core) observe(now time.Time, signals []slo.Signal, view *View) {
	seen := map[int32]map[string][]slo.Signal{}
	for _, s := range signals {
		cn, ok := signalConds[s.Name]
		if !ok {
			continue
		}
		id, err := strconv.ParseInt(s.Labels["broker"], 10, 32)
		if err != nil {
			continue
		}
		t := c.broker(int32(id))
		if t.cell == "" && s.Labels["cell"] != "" {
			t.cell = s.Labels["cell"]
		}
		if seen[t.id] == nil {
			seen[t.id] = map[string][]slo.Signal{}
		}
		seen[t.id][cn] = append(seen[t.id][cn], s)
	}
	if view != nil {
		for id, b := range view.Brokers {
			t := c.broker(id)
			t.cell = b.Cell
			// Fenced by the controller (not by an operator or by us):
			// down.
			if b.State == controller.BrokerFenced && !b.AdminFenced {
				if seen[id] == nil {
					seen[id] = map[string][]slo.Signal{}
				}
				if len(seen[id][condDown]) == 0 {
					seen[id][condDown] = []slo.Signal{{ID: "controller_fenced" + fmt.Sprintf("{broker=%q}", strconv.Itoa(int(id))), Name: "broker_fenced", Source: "controller",
						Description: "the controller fences the broker: it missed its heartbeats", Labels: map[string]string{"broker": strconv.Itoa(int(id)), "cell": b.Cell}, At: now, Since: now}}
				}
			}
		}
	}
	for id, t := range c.brokers {
		for name, cd := range t.conds {
			if _, ok := seen[id][name]; !ok && cd.active {
				cd.active, cd.clearedAt, cd.signals = false, now, nil
			}
		}
		for name, ss := range seen[id] {
			cd := t.c(name)
			if !cd.active {
				cd.active, cd.since = true, now
			}
			cd.signals = ss
		}
	}
}

// sickConds are the conditions that make a broker count as sick for the
// suppression rule: what an observer that is itself broken would report
// about many brokers at once.
var sickConds = []string{condStorage, condStuck, condUnreachable, condSlow, condSlowStorage}

// suppression opens or closes mitigation_suppressed decisions per cell and
// for the fleet and returns the suppressed cells ("*" for the fleet).
func (c *core) suppression(now time.Time, view *View, ch *changes) map[string]bool {
	sick := map[string][]int32{}
	total := 0
	var ev = map[string][]slo.Signal{}
	for _, t := range c.brokers {
		for _, n := range sickConds {
			if t.activeCond(n) {
				sick[t.cell] = append(sick[t.cell], t.id)
				ev[t.cell] = append(ev[t.cell], t.evidence(sickConds...)...)
				total++
				break
			}
		}
	}
	size := func(cell string) int {
		if view != nil {
			if n := view.brokersInCell(cell); n > 0 {
				return n
			}
		}
		n := 0
		for _, t := range c.brokers {
			if t.cell == cell {
				n++
			}
		}
		return n
	}
	fleet := 0
	if view != nil {
		for _, b := range view.Brokers {
			if b.State != controller.BrokerDecommissioned {
				fleet++
			}
		}
	}
	if fleet == 0 {
		fleet = len(c.brokers)
	}
	want := map[string]string{}
	out := map[string]bool{}
	for cell, ids := range sick {
		slices.Sort(ids)
		n := size(cell)
		if len(ids) >= 2 && float64(len(ids)) > c.cfg.MaxSickCellFraction*float64(n) {
			out[cell] = true
			want["cell "+cell] = fmt.Sprintf("%d of the %d brokers of cell %s look sick at once (brokers %s; the limit is %.0f%%): nothing in the cell is mitigated, because the observer itself may be what is broken; a person should look",
				len(ids), n, cell, joinIDs(ids), 100*c.cfg.MaxSickCellFraction)
		}
	}
	uncovered := false // sick brokers in cells not suppressed already
	for cell := range sick {
		if !out[cell] {
			uncovered = true
		}
	}
	if uncovered && total >= 2 && float64(total) > c.cfg.MaxSickFleetFraction*float64(fleet) {
		out["*"] = true
		want["fleet"] = fmt.Sprintf("%d of the %d brokers of the fleet look sick at once (the limit is %.0f%%): nothing is mitigated, because the observer itself may be what is broken; a person should look",
			total, fleet, 100*c.cfg.MaxSickFleetFraction)
	}
	scopes := make([]string, 0, len(want))
	for s := range want {
		scopes = append(scopes, s)
	}
	sort.Strings(scopes)
	for _, s := range scopes {
		if c.suppress[s] != nil {
			continue
		}
		cell := strings.TrimPrefix(s, "cell ")
		var e []slo.Signal
		if s == "fleet" {
			cell = ""
			for _, x := range ev {
				e = append(e, x...)
			}
		} else {
			e = ev[cell]
		}
		d := c.newDecision(now, ActSuppress, -1, cell, "too_many_sick", want[s], e)
		d.Outcome, d.Open, d.Policy = OutSuppress, true, "mitigation_suppressed raised"
		c.suppress[s] = d
		ch.add(d)
	}
	for s, d := range c.suppress {
		if _, ok := want[s]; !ok {
			d.Open, d.Updated = false, now
			d.UndoNote = "no longer too many sick brokers: mitigation resumed"
			delete(c.suppress, s)
			ch.add(d)
		}
	}
	return out
}

func joinIDs(ids []int32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(int(id))
	}
	return strings.Join(s, ", ")
}

// stepUndo ends what should end for one broker: operator holds,
// pending approvals whose condition cleared, mitigations of a broker
// healthy again; and records a broker down.
func (c *core) stepUndo(now time.Time, t *track, view *View, ch *changes) {
	cfg := &c.cfg
	// Undone outside the mitigator (an operator's vigil admin undemote or
	// unfence): the mitigation ends, and, as after an undo through the
	// API, it is not done again until the condition clears.
	if b, ok := view.broker(t.id); ok {
		if d := t.open[ActDemote]; d != nil && d.Outcome == OutDone && !b.Demoted {
			c.endOutside(now, t, d, fmt.Sprintf("broker %d was undemoted outside the mitigator (vigil admin undemote)", t.id))
			ch.add(d)
		}
		if d := t.open[ActFence]; d != nil && d.Outcome == OutDone && !b.AdminFenced {
			c.endOutside(now, t, d, fmt.Sprintf("broker %d was unfenced outside the mitigator (vigil admin unfence)", t.id))
			ch.add(d)
		}
	}
	// Operator holds end when the condition has cleared.
	for a := range t.held {
		if !t.activeCond(condStorage) && !t.activeCond(condStuck) && !t.activeCond(condUnreachable) && !t.activeCond(condSlow) && !t.activeCond(condDown) {
			delete(t.held, a)
		}
	}
	// Pending approvals whose condition cleared are cancelled.
	for a, d := range t.open {
		if d.Outcome != OutPending {
			continue
		}
		still := false
		switch a {
		case ActDemote:
			still = t.activeCond(condStorage) || t.activeCond(condStuck) || t.activeCond(condUnreachable)
		case ActFence:
			still = t.activeCond(condUnreachable)
		case ActRestart:
			still = t.activeCond(condStuck)
		case ActShrinkISR:
			still = t.activeCond(condSlow)
		case ActReplace:
			still = t.activeCond(condStorage) || t.activeCond(condUnreachable) || t.activeCond(condDown)
		}
		if !still {
			d.Outcome, d.Open, d.Updated = OutCancelled, false, now
			d.UndoNote = "the condition cleared before approval"
			delete(t.open, a)
			ch.add(d)
		}
	}
	// Undo: unfence once reachable again, undemote once healthy.
	if f := t.open[ActFence]; f != nil && (f.Outcome == OutDone || f.Outcome == OutDryRun) &&
		t.healthy(now, cfg.HealthyFor, condUnreachable, condNotServing) && c.cooled(t, ActUnfence, now) {
		ch.add(c.undo(now, t, f, ActUnfence, "healthy", fmt.Sprintf("broker %d has been reachable for %s", t.id, cfg.HealthyFor), false))
	}
	if d := t.open[ActDemote]; d != nil && (d.Outcome == OutDone || d.Outcome == OutDryRun) && t.open[ActFence] == nil &&
		t.healthy(now, cfg.HealthyFor, condStorage, condStuck, condUnreachable) && c.cooled(t, ActUndemote, now) {
		ch.add(c.undo(now, t, d, ActUndemote, "healthy", fmt.Sprintf("broker %d has been free of storage and reachability problems for %s", t.id, cfg.HealthyFor), false))
	}
	// Down: record each episode.
	if t.activeCond(condDown) && !t.recordedDown && t.open[ActFence] == nil && t.open[ActRestart] == nil {
		t.recordedDown = true
		d := c.newDecision(now, ActRecord, t.id, t.cell, condDown, fmt.Sprintf("broker %d is down (fenced by the controller or not heartbeating): nothing to do but record it; it is replaced if it stays down for %s", t.id, cfg.ReplaceAfter),
			t.evidence(condDown))
		d.Outcome, d.Policy = OutRecorded, "nothing to decide"
		ch.add(d)
	} else if !t.activeCond(condDown) {
		t.recordedDown = false
	}
}

// stepNew decides new mitigations for one broker.
func (c *core) stepNew(now time.Time, t *track, view *View, suppressed map[string]bool, ch *changes) {
	cfg := &c.cfg
	if suppressed[t.cell] || suppressed["*"] {
		return
	}
	if view != nil {
		if b, ok := view.Brokers[t.id]; ok && (b.State == controller.BrokerDecommissioned || b.Decommissioning) {
			return // being or already replaced: nothing to mitigate
		}
	}
	wanted := map[string]bool{}
	propose := func(action, detector, reason string, ev []slo.Signal, parts []controller.TopicPartition) {
		wanted[action] = true
		if t.open[action] != nil {
			return
		}
		c.propose(now, t, action, detector, reason, ev, parts, ch)
	}
	// Demote: storage degraded, storage stuck or unreachable.
	for _, cn := range []string{condStorage, condStuck, condUnreachable} {
		if t.sustained(cn, now, cfg.Sustain) {
			propose(ActDemote, cn, fmt.Sprintf("broker %d: %s for %s", t.id, strings.ReplaceAll(cn, "_", " "), cfg.Sustain), t.evidence(condStorage, condStuck, condUnreachable), nil)
			break
		}
	}
	dem := t.open[ActDemote]
	demoted := dem != nil && (dem.Outcome == OutDone || dem.Outcome == OutDryRun)
	// Fence: unreachable, demoted, and its followers cannot fetch from it.
	if demoted && t.sustained(condUnreachable, now, cfg.Sustain) {
		notServing := t.sustained(condNotServing, now, cfg.Sustain)
		isolated := view != nil && view.isolatedLeader(t.id)
		if notServing || isolated {
			why := "its followers do not fetch from it (followers_not_fetching)"
			if !notServing {
				why = "partitions it leads have shrunk to itself in the ISR"
			}
			propose(ActFence, condNotServing, fmt.Sprintf("broker %d is unreachable and %s", t.id, why), t.evidence(condUnreachable, condNotServing), nil)
		}
	}
	// Restart: stuck storage, once its leaderships have moved.
	if demoted && t.sustained(condStuck, now, cfg.Sustain) && view != nil && view.movableLeaderships(t.id) == 0 {
		propose(ActRestart, condStuck, fmt.Sprintf("broker %d: its storage makes no progress; its leaderships have moved", t.id), t.evidence(condStuck), nil)
	}
	// Shrink ISR: a slow follower.
	if t.sustained(condSlow, now, cfg.Sustain) && (view == nil || view.followsInISR(t.id, slowPartitions(t.conds[condSlow].signals))) {
		parts := slowPartitions(t.conds[condSlow].signals)
		propose(ActShrinkISR, condSlow, fmt.Sprintf("broker %d is a slow follower for %s", t.id, cfg.Sustain), t.evidence(condSlow), parts)
	}
	// Replace: sick past ReplaceAfter.
	if cfg.ReplaceAfter > 0 {
		for _, cn := range []string{condStorage, condUnreachable, condDown} {
			if t.sustained(cn, now, cfg.ReplaceAfter) {
				propose(ActReplace, cn, fmt.Sprintf("broker %d: %s for more than %s", t.id, strings.ReplaceAll(cn, "_", " "), cfg.ReplaceAfter), t.evidence(condStorage, condUnreachable, condDown), nil)
				break
			}
		}
	}
	for a := range t.refused {
		if !wanted[a] {
			delete(t.refused, a)
		}
	}
}

// slowPartitions returns the partitions named by slow_follower signals
// (labels topic and partition); none means every partition it follows.
func slowPartitions(ss []slo.Signal) []controller.TopicPartition {
	var out []controller.TopicPartition
	for _, s := range ss {
		p, err := strconv.ParseInt(s.Labels["partition"], 10, 32)
		if s.Labels["topic"] == "" || err != nil {
			continue
		}
		tp := controller.TopicPartition{Topic: s.Labels["topic"], Partition: int32(p)}
		if !slices.Contains(out, tp) {
			out = append(out, tp)
		}
	}
	return out
}

func (c *core) cooled(t *track, action string, now time.Time) bool {
	e, ok := t.lastEnd[action]
	return !ok || now.Sub(e) >= c.cfg.Cooldown
}

// propose runs a new mitigation through the policy and records it in the
// mode's outcome.
func (c *core) propose(now time.Time, t *track, action, detector, reason string, ev []slo.Signal, parts []controller.TopicPartition, ch *changes) {
	verdict, notes := c.policy(now, t, action, &parts)
	if verdict != "" {
		// The controller's error varies from call to call: the same
		// refusal is recorded once whatever it says.
		key, _, _ := strings.Cut(verdict, viewErrSep)
		if t.refused[action] == key {
			return
		}
		t.refused[action] = key
		d := c.newDecision(now, action, t.id, t.cell, detector, reason, ev)
		d.Outcome, d.Policy = OutRefused, "refused: "+verdict
		ch.add(d)
		return
	}
	delete(t.refused, action)
	d := c.newDecision(now, action, t.id, t.cell, detector, reason, ev)
	d.Partitions = parts
	d.Policy = "allowed"
	if notes != "" {
		d.Policy += "; " + notes
	}
	d.Steps = plan(action, t.id, parts)
	oneShot := action == ActRestart || action == ActShrinkISR
	switch c.mode {
	case ModeDryRun:
		d.Outcome = OutDryRun
		d.Open = !oneShot
		if oneShot {
			t.lastEnd[action] = now
		}
	case ModeApprove:
		d.Outcome, d.Open = OutPending, true
	default:
		d.Outcome, d.Open = OutExecuting, true
	}
	if d.Open {
		t.open[action] = d
	}
	ch.add(d)
}

// plan lists the steps an action will take.
func plan(action string, broker int32, parts []controller.TopicPartition) []Step {
	s := func(op string) Step { return Step{Op: op, Broker: broker, Result: "planned"} }
	switch action {
	case ActDemote:
		return []Step{s("demote")}
	case ActUndemote:
		return []Step{s("undemote"), s("elect_preferred")}
	case ActFence:
		return []Step{s("fence")}
	case ActUnfence:
		return []Step{s("unfence")}
	case ActRestart:
		return []Step{s("restart")}
	case ActShrinkISR:
		var out []Step
		for _, p := range parts {
			st := s("remove_from_isr")
			st.Topic, st.Partition = p.Topic, p.Partition
			out = append(out, st)
		}
		return out
	case ActReplace:
		return []Step{s("provision"), s("reassign"), s("decommission"), s("retire")}
	}
	return nil
}

// policy returns why action on t is refused ("" if allowed) and notes on
// an allowed one. It narrows a shrink's partitions to those it may
// shrink.
func (c *core) policy(now time.Time, t *track, action string, parts *[]controller.TopicPartition) (verdict, notes string) {
	if t.held[action] {
		return fmt.Sprintf("an operator undid the last %s of broker %d; not done again until its condition clears", action, t.id), ""
	}
	if (action == ActRestart || action == ActReplace) && !c.hasProv {
		return fmt.Sprintf("this mitigator has no Provisioner (vigil observer cannot start or stop brokers): %s broker %d by hand", action, t.id), ""
	}
	if e, ok := t.lastEnd[action]; ok && now.Sub(e) < c.cfg.Cooldown {
		return fmt.Sprintf("cool-down: the last %s of broker %d ended at %s; the next may start at %s", action, t.id, e.UTC().Format(time.RFC3339), e.Add(c.cfg.Cooldown).UTC().Format(time.RFC3339)), ""
	}
	// One broker per cell in mitigation.
	ids := make([]int32, 0, len(c.brokers))
	for id := range c.brokers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		o := c.brokers[id]
		if o == t || o.cell != t.cell {
			continue
		}
		for _, a := range []string{ActDemote, ActFence, ActRestart, ActShrinkISR, ActReplace} {
			if d := o.open[a]; d != nil {
				return fmt.Sprintf("broker %d of cell %s is already in mitigation (%s, decision %s): one broker per cell at a time", o.id, t.cell, a, d.ID), ""
			}
		}
	}
	view := c.view
	if view == nil {
		return "no cluster view from the controller, so min.insync.replicas cannot be checked" + viewErrSep + c.viewErr + ")", ""
	}
	switch action {
	case ActDemote:
		if n := view.leaderships(t.id) - view.movableLeaderships(t.id); n > 0 {
			notes = fmt.Sprintf("%d partitions have no other in-sync replica to lead and stay on broker %d", n, t.id)
		}
	case ActFence, ActRestart:
		if bad := view.belowMinIfRemoved(t.id, nil); len(bad) > 0 {
			return fmt.Sprintf("%s broker %d would leave %s below min.insync.replicas", action, t.id, strings.Join(bad, ", ")), ""
		}
	case ActShrinkISR:
		var cands []controller.TopicPartition
		if len(*parts) > 0 {
			cands = *parts
		} else {
			for _, p := range view.Partitions {
				if p.Leader != t.id && slices.Contains(p.ISR, t.id) {
					cands = append(cands, controller.TopicPartition{Topic: p.Topic, Partition: p.Partition})
				}
			}
		}
		var ok []controller.TopicPartition
		var bad []string
		for _, tp := range cands {
			var pv *PartitionView
			for i := range view.Partitions {
				if view.Partitions[i].Topic == tp.Topic && view.Partitions[i].Partition == tp.Partition {
					pv = &view.Partitions[i]
				}
			}
			switch {
			case pv == nil || !slices.Contains(pv.ISR, t.id) || pv.Leader == t.id:
				// Not in its ISR any more, or it leads it: nothing to shrink.
			case len(pv.ISR)-1 < pv.MinInsync:
				bad = append(bad, fmt.Sprintf("%s/%d", tp.Topic, tp.Partition))
			default:
				ok = append(ok, tp)
			}
		}
		if len(ok) == 0 {
			if len(bad) > 0 {
				return fmt.Sprintf("removing broker %d from the ISR would leave %s below min.insync.replicas", t.id, strings.Join(bad, ", ")), ""
			}
			return fmt.Sprintf("broker %d follows no partition whose ISR it is in", t.id), ""
		}
		if len(bad) > 0 {
			notes = fmt.Sprintf("left alone to keep min.insync.replicas: %s", strings.Join(bad, ", "))
		}
		*parts = ok
	}
	return "", notes
}

// undo records the reversal of open decision d. manual is an operator's
// undo; otherwise the broker is healthy again.
func (c *core) undo(now time.Time, t *track, d *Decision, action, detector, reason string, manual bool) *Decision {
	u := c.newDecision(now, action, t.id, t.cell, detector, reason, nil)
	u.UndoOf = d.ID
	u.Policy = "allowed: an undo restores the normal state"
	u.Steps = plan(action, t.id, nil)
	// Undoing a real mitigation is carried out in every mode but off;
	// undoing a dry-run one is dry-run.
	if d.Outcome == OutDryRun {
		u.Outcome = OutDryRun
		c.close(now, t, d, u)
	} else {
		u.Outcome, u.Open = OutExecuting, true
		t.open[action] = u
	}
	if manual {
		t.held[d.Action] = true
	}
	return u
}

// endOutside ends open decision d, undone by someone else, and holds its
// action until the condition clears.
func (c *core) endOutside(now time.Time, t *track, d *Decision, note string) {
	d.Open, d.Updated, d.UndoNote = false, now, note
	delete(t.open, d.Action)
	t.lastEnd[d.Action] = now
	t.held[d.Action] = true
}

// close ends open decision d, undone by u.
func (c *core) close(now time.Time, t *track, d, u *Decision) {
	d.Open, d.Updated, d.UndoneBy = false, now, u.ID
	if t.open[d.Action] == d {
		delete(t.open, d.Action)
	}
	t.lastEnd[d.Action] = now
}

// complete takes back a decision the executor carried out (or advanced)
// and returns the decisions changed with it.
func (c *core) complete(now time.Time, res *Decision) []*Decision {
	d := c.byID[res.ID]
	if d == nil {
		return nil
	}
	*d = *res.clone()
	d.Updated = now
	t := c.broker(d.Broker)
	out := []*Decision{d}
	switch d.Outcome {
	case OutExecuting:
		return out // a replacement in progress
	case OutFailed:
		d.Open = false
		if t.open[d.Action] == d {
			delete(t.open, d.Action)
		}
		t.lastEnd[d.Action] = now
		return out
	}
	// Done.
	switch d.Action {
	case ActUndemote, ActUnfence:
		d.Open = false
		if t.open[d.Action] == d {
			delete(t.open, d.Action)
		}
		if o := c.byID[d.UndoOf]; o != nil {
			c.close(now, t, o, d)
			out = append(out, o)
		}
	case ActRestart, ActShrinkISR, ActReplace:
		d.Open = false
		if t.open[d.Action] == d {
			delete(t.open, d.Action)
		}
		t.lastEnd[d.Action] = now
	}
	if d.Action == ActReplace {
		// The old broker is gone: its demotion and fence end with it.
		for a, o := range t.open {
			o.Open, o.Updated = false, now
			o.UndoNote = fmt.Sprintf("broker %d was replaced by broker %d (decision %s)", t.id, d.NewBroker, d.ID)
			delete(t.open, a)
			out = append(out, o)
		}
	}
	return out
}

// approve moves a pending decision to executing after re-checking the
// policy against the latest view.
func (c *core) approve(now time.Time, id string) (*Decision, error) {
	d := c.byID[id]
	if d == nil {
		return nil, errNotFound(id)
	}
	if d.Outcome != OutPending {
		return nil, &conflictError{fmt.Sprintf("decision %s is %s, not pending approval: only pending decisions can be approved", id, d.Outcome)}
	}
	if c.mode == ModeOff {
		return nil, &conflictError{"the mitigator is off (kill switch): set the mode to approve or auto first"}
	}
	t := c.broker(d.Broker)
	delete(t.open, d.Action)
	parts := d.Partitions
	verdict, _ := c.policy(now, t, d.Action, &parts)
	t.open[d.Action] = d
	d.Updated = now
	at := now
	d.ApprovedAt = &at
	if verdict != "" {
		d.Outcome, d.Open, d.Policy = OutRefused, false, "refused at approval: "+verdict
		delete(t.open, d.Action)
		return d, nil
	}
	d.Partitions = parts
	d.Outcome = OutExecuting
	return d, nil
}

// manualUndo records an operator's undo of decision id.
func (c *core) manualUndo(now time.Time, id string) (*Decision, error) {
	d := c.byID[id]
	if d == nil {
		return nil, errNotFound(id)
	}
	t := c.broker(d.Broker)
	switch {
	case d.Outcome == OutPending:
		d.Outcome, d.Open, d.Updated = OutCancelled, false, now
		d.UndoNote = "cancelled by an operator before approval"
		delete(t.open, d.Action)
		t.held[d.Action] = true
		return d, nil
	case d.Action == ActReplace:
		return nil, &conflictError{"a replacement cannot be undone: its replicas moved to a new broker and the old one was decommissioned; move replicas back with vigil admin reassign if needed"}
	case d.Action == ActShrinkISR && (d.Outcome == OutDone || d.Outcome == OutDryRun):
		if d.UndoNote != "" {
			return nil, &conflictError{"decision " + id + " was already undone"}
		}
		d.Updated = now
		d.UndoNote = "nothing to undo: the follower keeps replicating and rejoins the ISR by itself once caught up"
		return d, nil
	case d.Action == ActRestart && (d.Outcome == OutDone || d.Outcome == OutDryRun):
		return nil, &conflictError{"a restart cannot be undone"}
	case (d.Action == ActDemote || d.Action == ActFence) && d.Open && (d.Outcome == OutDone || d.Outcome == OutDryRun):
		if d.Action == ActDemote && t.open[ActFence] != nil {
			return nil, &conflictError{fmt.Sprintf("broker %d is also fenced (decision %s): undo that first", d.Broker, t.open[ActFence].ID)}
		}
		inv := ActUndemote
		if d.Action == ActFence {
			inv = ActUnfence
		}
		if u := t.open[inv]; u != nil {
			return nil, &conflictError{fmt.Sprintf("decision %s is already being undone by %s", id, u.ID)}
		}
		return c.undo(now, t, d, inv, "operator", "undone by an operator", true), nil
	}
	return nil, &conflictError{fmt.Sprintf("decision %s (%s, %s) has nothing to undo: only open demotions and fences, pending approvals and ISR shrinks can be undone", id, d.Action, d.Outcome)}
}

// setMode changes the mode; pending approvals are cancelled and dry-run
// mitigations closed, so the new mode decides afresh.
func (c *core) setMode(now time.Time, mode string) []*Decision {
	if mode == c.mode {
		return nil
	}
	c.mode = mode
	var out []*Decision
	for _, t := range c.brokers {
		for a, d := range t.open {
			switch d.Outcome {
			case OutPending:
				d.Outcome, d.Open, d.Updated = OutCancelled, false, now
				d.UndoNote = "cancelled: the mode changed to " + mode
			case OutDryRun:
				d.Open, d.Updated = false, now
				d.UndoNote = "closed: the mode changed to " + mode
			default:
				continue
			}
			delete(t.open, a)
			out = append(out, d)
		}
		t.refused = map[string]string{}
	}
	return out
}

// restore rebuilds the core from an audit trail's decisions (last state
// of each, in ID order).
func (c *core) restore(ds []*Decision, now time.Time) (changed []*Decision) {
	for _, d := range ds {
		if n, err := strconv.Atoi(d.ID); err == nil && n > c.seq {
			c.seq = n
		}
		c.all = append(c.all, d)
		c.byID[d.ID] = d
		if d.Action == ActSuppress {
			// Suppressions are re-evaluated from the signals.
			if d.Open {
				d.Open, d.Updated, d.UndoNote = false, now, "closed by a restart of the mitigator"
				changed = append(changed, d)
			}
			continue
		}
		t := c.broker(d.Broker)
		if t.cell == "" {
			t.cell = d.Cell
		}
		switch {
		case d.Outcome == OutExecuting && d.Action != ActReplace:
			// Interrupted mid-call: the controller may or may not have
			// applied it. Fail it; the detector decides again.
			d.Outcome, d.Open, d.Updated = OutFailed, false, now
			d.Error = "interrupted by a restart of the mitigator"
			if o := c.byID[d.UndoOf]; o != nil && o.Open {
				t.open[o.Action] = o
			}
			changed = append(changed, d)
		case d.Outcome == OutDryRun && d.Open && c.mode != ModeDryRun:
			d.Open, d.Updated, d.UndoNote = false, now, "closed: the mitigator restarted in mode "+c.mode
			changed = append(changed, d)
		case d.Open:
			t.open[d.Action] = d
		}
		if !d.Open && d.UndoneBy != "" || d.Outcome == OutDone && (d.Action == ActRestart || d.Action == ActShrinkISR) {
			t.lastEnd[d.Action] = d.Updated
		}
	}
	return changed
}

// viewErrSep introduces the controller's error in a refusal.
const viewErrSep = " (controller: "

type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

func errNotFound(id string) error {
	return &notFoundError{fmt.Sprintf("no decision %s: list them with vigil mitigations list (GET /api/v1/mitigations)", id)}
}

package mitigator

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/controller"
	"github.com/vigilhq/vigil/slo"
)

// Provisioner manages broker processes. `vigil dev` implements it by
// starting in-process brokers; `vigil observer` has none, so restarts and
// replacements are refused there with a reason.
type Provisioner interface {
	// Provision starts a new broker in cell and rack and returns its id
	// once it has registered with the controller.
	Provision(ctx context.Context, cell, rack string) (int32, error)
	// Restart stops broker id and starts it again on its data.
	Restart(ctx context.Context, id int32) error
	// Retire stops a decommissioned broker for good.
	Retire(ctx context.Context, id int32) error
}

// Controller is the part of the controller's admin API the mitigator
// uses. *controller.Client satisfies it; tests use a fake.
type Controller interface {
	// Metadata returns the whole image: brokers and partitions.
	Metadata(ctx context.Context) (*controller.Delta, error)
	Demote(ctx context.Context, id int32) (*controller.BrokerDescription, error)
	Undemote(ctx context.Context, id int32) (*controller.BrokerDescription, error)
	Fence(ctx context.Context, id int32) (*controller.BrokerDescription, error)
	Unfence(ctx context.Context, id int32) (*controller.BrokerDescription, error)
	// Decommission marks broker id decommissioning and moves its replicas
	// to broker to (controller.NoBroker: placement chooses).
	Decommission(ctx context.Context, id, to int32) (*controller.BrokerDescription, error)
	RemoveFromISR(ctx context.Context, topic string, partition, broker int32) (*controller.Partition, error)
	ElectLeaders(ctx context.Context, req controller.ElectLeadersRequest) ([]controller.ElectionResult, error)
}

var _ Controller = (*controller.Client)(nil)

// Modes. ModeOff is the kill switch: nothing is decided, nothing undone.
const (
	// ModeOff: the kill switch. Signals are still tracked, but nothing is
	// decided or done, not even undone.
	ModeOff = "off"
	// ModeDryRun: decide and record what would be done, do nothing. The
	// default: a new installation shows what it would do before it acts.
	ModeDryRun = "dry-run"
	// ModeApprove: decisions wait for an operator's approval (`vigil
	// mitigations approve ID`); undoing a mitigation once its broker is
	// healthy again needs none.
	ModeApprove = "approve"
	// ModeAuto: decide and act.
	ModeAuto = "auto"
)

// Modes lists the valid modes.
var Modes = []string{ModeOff, ModeDryRun, ModeApprove, ModeAuto}

// ValidMode reports whether m is a mode.
func ValidMode(m string) bool {
	for _, x := range Modes {
		if x == m {
			return true
		}
	}
	return false
}

// Config configures a Mitigator. Zero durations and fractions take the
// defaults documented on each field (see also docs/mitigator.md).
type Config struct {
	// Mode is off, dry-run, approve or auto (default dry-run). `vigil dev`
	// runs auto; it can be changed at run time through the API.
	Mode string
	// DataDir holds the audit trail (mitigations.jsonl, append-only,
	// fsynced). Empty keeps the trail in memory only.
	DataDir string
	// AuditMaxBytes is how much a trail may grow before it is rotated
	// (default 64 MiB; negative: never); AuditKeep how many rotated trails
	// are kept (default 10; negative: none).
	AuditMaxBytes int64
	AuditKeep     int

	// Sustain is how long a condition must hold before it is acted on
	// (default 3s). The health rules' own `for` debounce the signals
	// already; this is on top.
	Sustain time.Duration
	// HealthyFor is how long a broker must be free of the condition before
	// its mitigation is undone (default 30s): hysteresis against flapping.
	HealthyFor time.Duration
	// Cooldown is the least time between the end of a mitigation of a
	// broker and the next one of the same kind, and between two restarts
	// or two ISR shrinks of one broker (default 1m).
	Cooldown time.Duration
	// ReplaceAfter is how long a broker must stay storage-degraded,
	// unreachable or down before it is replaced (default 10m; negative
	// disables replacement).
	ReplaceAfter time.Duration
	// MaxSickCellFraction: when more than this fraction of a cell's
	// brokers looks sick at once, nothing in the cell is mitigated and a
	// mitigation_suppressed decision is raised (default 0.67: in a cell of
	// 3, two sick brokers are mitigated one at a time, three are not).
	MaxSickCellFraction float64
	// MaxSickFleetFraction is the same over every broker (default 0.67).
	MaxSickFleetFraction float64
	// DefaultMinInsync is the min.insync.replicas of topics that set none
	// (default 1, the broker default).
	DefaultMinInsync int
	// ActionTimeout bounds one controller call (default 30s);
	// ProvisionTimeout one Provisioner call (default 5m).
	ActionTimeout    time.Duration
	ProvisionTimeout time.Duration
	// ReplaceTimeout bounds a replacement from its reassignment to the
	// new broker being in sync (default 30m); past it the replacement
	// fails and is left for a person.
	ReplaceTimeout time.Duration
	// Tick is how often Run re-evaluates the last signals when no update
	// arrives, so hysteresis and timeouts advance (default 1s).
	Tick time.Duration
	// AlertTTL is how long an Alertmanager alert stays active without
	// being sent again or resolved (default 15m).
	AlertTTL time.Duration

	// Clock returns the time (time.Now by default); tests pass a fake.
	Clock func() time.Time
	// Logger logs every decision (discarded when nil).
	Logger *slog.Logger
	// Registerer registers the vigil_mitigator_* metrics (a private
	// registry when nil).
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() error {
	if c.Mode == "" {
		c.Mode = ModeDryRun
	}
	if !ValidMode(c.Mode) {
		return fmt.Errorf("mitigator: mode %q: want one of off, dry-run, approve, auto", c.Mode)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Sustain, 3*time.Second)
	def(&c.HealthyFor, 30*time.Second)
	def(&c.Cooldown, time.Minute)
	def(&c.ReplaceAfter, 10*time.Minute)
	def(&c.ActionTimeout, 30*time.Second)
	def(&c.ProvisionTimeout, 5*time.Minute)
	def(&c.ReplaceTimeout, 30*time.Minute)
	def(&c.Tick, time.Second)
	def(&c.AlertTTL, 15*time.Minute)
	if c.AuditMaxBytes == 0 {
		c.AuditMaxBytes = 64 << 20
	}
	if c.AuditKeep == 0 {
		c.AuditKeep = 10
	}
	c.AuditKeep = max(c.AuditKeep, 0)
	if c.MaxSickCellFraction == 0 {
		c.MaxSickCellFraction = 0.67
	}
	if c.MaxSickFleetFraction == 0 {
		c.MaxSickFleetFraction = 0.67
	}
	if c.MaxSickCellFraction < 0 || c.MaxSickCellFraction > 1 || c.MaxSickFleetFraction < 0 || c.MaxSickFleetFraction > 1 {
		return fmt.Errorf("mitigator: the max sick fractions are between 0 and 1")
	}
	if c.DefaultMinInsync <= 0 {
		c.DefaultMinInsync = 1
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Actions: what a decision does.
const (
	ActDemote    = "demote"     // move leaderships off a broker and keep them off
	ActUndemote  = "undemote"   // let it lead again, then rebalance leaders
	ActFence     = "fence"      // fence a broker that cannot serve its followers
	ActUnfence   = "unfence"    // unfence it once it is reachable again
	ActRestart   = "restart"    // restart a broker whose storage is stuck
	ActShrinkISR = "shrink_isr" // remove a slow follower from ISRs
	ActReplace   = "replace"    // provision a new broker, move the replicas, decommission the old
	ActRecord    = "record"     // a broker is down: nothing to do but record it
	ActSuppress  = "suppress"   // too many brokers look sick: mitigation_suppressed
)

// Outcomes: where a decision is.
const (
	OutPending   = "pending_approval" // waits for approve (mode approve)
	OutExecuting = "executing"        // being carried out (a replace for minutes)
	OutDone      = "done"             // carried out
	OutFailed    = "failed"           // an action failed; see Steps
	OutRefused   = "refused"          // the policy refused it; see Policy
	OutDryRun    = "dry_run"          // mode dry-run: recorded, not done
	OutRecorded  = "recorded"         // nothing to do (a broker is down)
	OutSuppress  = "suppressed"       // mitigation_suppressed raised
	OutCancelled = "cancelled"        // pending, but the condition cleared or the mode changed
	// Events counted in vigil_mitigator_decisions_total besides the above.
	OutApproved = "approved"
	OutUndone   = "undone"
)

// Decision is one decision of the mitigator, with its evidence, the
// policy's verdict, its actions and their results. Decisions are the
// audit trail: every change of one is appended to it.
type Decision struct {
	// ID is a sequence number, unique in one audit trail.
	ID string `json:"id"`
	// At is when it was decided; Updated when it last changed.
	At      time.Time `json:"at"`
	Updated time.Time `json:"updated"`
	// Action is what it does (demote, undemote, fence, ...).
	Action string `json:"action"`
	// Broker is the broker concerned (-1 for a cell- or fleet-wide
	// suppression); Cell its cell.
	Broker int32  `json:"broker"`
	Cell   string `json:"cell,omitempty"`
	// Detector names the condition that led to it: storage_degraded,
	// storage_stuck, unreachable, not_serving_followers, slow_follower,
	// down, healthy (for an undo), too_many_sick.
	Detector string `json:"detector"`
	// Reason says why, in words.
	Reason string `json:"reason"`
	// Mode is the mode it was decided in.
	Mode string `json:"mode"`
	// Outcome is where it is (pending_approval, executing, done, ...).
	Outcome string `json:"outcome"`
	// Policy is the safety policy's verdict: "allowed" with notes, or why
	// it was refused.
	Policy string `json:"policy"`
	// Open is true while the mitigation holds (a demotion not yet
	// undone, a pending approval, a replacement under way, or in dry-run
	// what would hold). An open mitigation counts for one-per-cell.
	Open bool `json:"open"`
	// Evidence are the signals behind it, as the SLO engine or
	// Alertmanager reported them.
	Evidence []slo.Signal `json:"evidence,omitempty"`
	// Steps are the actions planned and, once carried out, their results.
	Steps []Step `json:"steps,omitempty"`
	// Partitions limits a shrink_isr to these partitions.
	Partitions []controller.TopicPartition `json:"partitions,omitempty"`
	// Phase is a replacement's progress: provision, sync, decommission,
	// retire, done. NewBroker is the broker it provisioned.
	Phase     string `json:"phase,omitempty"`
	NewBroker int32  `json:"new_broker,omitempty"`
	// UndoOf names the decision an undo reverses; UndoneBy the undo of
	// this one; UndoNote what undoing it meant.
	UndoOf   string `json:"undo_of,omitempty"`
	UndoneBy string `json:"undone_by,omitempty"`
	UndoNote string `json:"undo_note,omitempty"`
	// ApprovedAt is set when an operator approved it.
	ApprovedAt *time.Time `json:"approved_at,omitempty"`
	// Error is the first failure.
	Error string `json:"error,omitempty"`
}

// Step is one action of a decision and its result.
type Step struct {
	// Op is the controller or Provisioner call: demote, undemote, fence,
	// unfence, elect_preferred, remove_from_isr, provision, reassign,
	// decommission, retire, restart, or note.
	Op        string `json:"op"`
	Broker    int32  `json:"broker"`
	Topic     string `json:"topic,omitempty"`
	Partition int32  `json:"partition,omitempty"`
	// Result is ok, error, skipped or planned; Detail says more.
	Result string    `json:"result"`
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

func (d *Decision) clone() *Decision {
	c := *d
	c.Evidence = append([]slo.Signal(nil), d.Evidence...)
	c.Steps = append([]Step(nil), d.Steps...)
	c.Partitions = append([]controller.TopicPartition(nil), d.Partitions...)
	return &c
}

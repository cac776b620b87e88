package mitigator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/internal/catalogue"
)

// Mitigator metrics, exposed by the process that runs the mitigator (vigil
// dev, vigil observer). Label values are bounded: actions and outcomes
// are the constants of this package, modes the four modes.
var (
	mDecisions = catalogue.Declare("mitigator", "vigil_mitigator_decisions_total", catalogue.Counter,
		"Mitigator decisions by action (demote, undemote, fence, unfence, restart, shrink_isr, replace, record, suppress) and outcome (done, failed, refused, dry_run, pending_approval, approved, undone, cancelled, recorded, suppressed).",
		"action", "outcome")
	mActive = catalogue.Declare("mitigator", "vigil_mitigator_active_mitigations", catalogue.Gauge,
		"Open mitigations by action: demotions and fences not yet undone, replacements under way, pending approvals, and in dry-run what would hold.",
		"action")
	mSuppressed = catalogue.Declare("mitigator", "vigil_mitigator_suppressed", catalogue.Gauge,
		"1 while mitigation is suppressed because too many brokers of a cell or of the fleet look sick at once (mitigation_suppressed: a person should look), else 0.")
	mMode = catalogue.Declare("mitigator", "vigil_mitigator_mode", catalogue.Gauge,
		"1 for the mitigator's current mode (off, dry-run, approve, auto), 0 for the others.",
		"mode")
)

type metrics struct {
	decisions  *prometheus.CounterVec
	active     *prometheus.GaugeVec
	suppressed *prometheus.GaugeVec
	mode       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{decisions: mDecisions.CounterVec(), active: mActive.GaugeVec(), suppressed: mSuppressed.GaugeVec(), mode: mMode.GaugeVec()}
	for _, c := range []prometheus.Collector{m.decisions, m.active, m.suppressed, m.mode} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, a := range []string{ActDemote, ActFence, ActRestart, ActShrinkISR, ActReplace, ActUndemote, ActUnfence} {
		m.active.WithLabelValues(a)
	}
	m.suppressed.WithLabelValues().Set(0)
	return m, nil
}

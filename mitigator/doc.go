// Package mitigator turns health signals into safe, audited actions on the
// cluster: it demotes a broker whose storage is degraded or that clients
// and peers cannot reach, fences one that also stops serving its
// followers, restarts one whose storage is stuck, removes a slow follower
// from the ISR, records brokers that are down, and replaces a broker that
// stays sick past a limit.
//
// It is built like etcd's raft: a deterministic core (core.go) takes the
// time, the active signals and the cluster view and returns decisions with
// planned actions, and is tested with a fake clock and no I/O; the edges
// carry the actions out through the controller's admin API (Controller)
// and a Provisioner, write the audit trail (audit.go), export metrics and
// serve the HTTP API (http.go), including an Alertmanager webhook that
// turns alerts into signals.
//
// Every decision passes a safety policy first: at most one broker per cell
// in mitigation at a time, nothing at all while more than a set fraction
// of a cell or of the fleet looks sick (a mitigation_suppressed decision
// is raised instead, because the observer may be what is broken), never an
// action that leaves a partition with fewer in-sync replicas than its
// min.insync.replicas, cool-downs per broker, and the modes off (the kill
// switch), dry-run, approve and auto. See docs/mitigator.md.
package mitigator

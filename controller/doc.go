// Package controller is Vigil's metadata quorum: the replicated record of
// brokers, topics, partitions, leaders, ISRs and epochs that brokers
// register with, take their metadata from and report ISR changes to, and
// the admin operations operators and the mitigator drive.
//
// # What it owns
//
// The Image: the cluster id; every broker's registration (id, cell, rack,
// Kafka endpoint, incarnation id, broker epoch, state registered / fenced /
// controlled_shutdown / decommissioned, demoted and operator-fenced flags);
// every topic (name, 16-byte id, config overrides) and partition (replicas
// in preference order, leader, leader epoch, partition epoch, ISR, replicas
// being added and removed by a reassignment); the controllers' API
// addresses.
//
// # The command log
//
// Changes are Commands in a hashicorp/raft log (bolt store and file
// snapshots in the data directory; snapshots are the Image as JSON). The
// active controller — the Raft leader, once it has applied everything
// committed before its term — turns requests into commands, choosing what
// needs a choice before proposing: topic ids, replica placement (see
// AssignReplicas and ChooseCell), decommission targets. Every controller
// then applies the commands in log order with State.Apply.
//
// # Determinism
//
// State.Apply reads no clock, no randomness and no I/O, and validates each
// command completely before changing anything, so all controllers hold the
// same image and a refused command changes nothing. Apply enforces the
// replication rules: a leader change bumps the leader epoch and any change
// the partition epoch; leaders come from the ISR in replica order, alive
// and not demoted first, a demoted broker only when no other in-sync
// replica can lead, and from outside the ISR only when the topic sets
// unclean.leader.election.enable (or an operator asks for an unclean
// election); an ISR is never empty; a broker that is fenced, shuts down or
// re-registers loses its leaderships and leaves every ISR that stays
// non-empty without it; AlterPartition follows KIP-497 (stale leader epoch:
// FENCED_LEADER_EPOCH, stale partition epoch: INVALID_UPDATE_VERSION, a
// fenced or shutting-down replica added: INELIGIBLE_REPLICA); a
// reassignment completes once every target replica is in the ISR.
//
// Every applied command yields a Change (the new state of what it
// touched); Image.ApplyChange replays changes, which is how brokers keep
// their copy current.
//
// # Heartbeats and fencing
//
// Heartbeats are not logged. The active controller keeps each broker's last
// heartbeat in a Liveness tracker (driven by the clock it is given) and
// proposes a fence when a broker misses the session timeout
// (broker.session.timeout.ms, 9s by default); a heartbeat from a fenced
// broker proposes its unfencing, unless an operator fenced it. A new active
// controller starts every broker's timer afresh.
//
// # The API
//
// Server serves HTTP/JSON (optionally requiring a bearer token) for
// brokers (register, heartbeat, AlterPartition, a WatchMetadata long poll)
// and for administration (topics, configs, brokers, demotion, fencing,
// elections, reassignments, decommissioning, the quorum). Client is the Go
// client brokers, `vigil admin` and the mitigator use; it finds the active
// controller itself. Errors are *Error values carrying a Kafka error code
// name and a message saying what to do. docs/controller.md documents the
// endpoints and how to operate a quorum.
package controller

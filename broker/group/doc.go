// Package group is the consumer group coordinator of a Vigil broker: the
// classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, with
// eager and cooperative rebalancing run by the clients and static
// membership, KIP-345), the consumer protocol of KIP-848
// (ConsumerGroupHeartbeat with server-side assignors), committed offsets and
// the administrative group APIs.
//
// # A deterministic core
//
// A Coordinator owns the groups of one partition of the internal topic
// __consumer_offsets (a group belongs to partition PartitionFor(group, n), as
// in Kafka). It does no I/O, starts no goroutines and reads no clock: every
// method takes the current time and returns an Output, which says what the
// caller must do, in order:
//
//   - deliver Replies: the response to a request, addressed to the opaque
//     ReplyTo value the caller passed with it. A JoinGroup or SyncGroup
//     response may come out of a later call (another member's request, a
//     Tick, or Persisted), because the classic protocol holds those requests
//     until the rebalance completes.
//   - persist Append: records for the group's __consumer_offsets partition
//     (group metadata and committed offsets in Kafka's own formats; a nil
//     value is a tombstone), then call Persisted with its id and the outcome.
//     Replies that depend on the write (OffsetCommit, SyncGroup's
//     assignment) come out of Persisted.
//   - call Tick at NextDeadline, the earliest timer (session timeouts,
//     rebalance timeouts, the initial rebalance delay, offset expiry).
//
// Tests drive it with a fake clock and read the outputs; the broker wraps it
// with a lock, a timer and the partition log (see broker/groups.go).
//
// # Persistence
//
// Records use Kafka's __consumer_offsets schemas (kmsg.OffsetCommitKey/Value,
// kmsg.GroupMetadataKey/Value), so tools that read that topic understand
// them. Replay rebuilds the state from the partition's records on load: the
// latest record per key wins and tombstones delete. Group metadata is
// written when a generation's assignment is stored, when a group becomes
// empty, when a static member is replaced and when a group is deleted;
// offsets when committed, deleted or expired. KIP-848 groups persist their
// members' subscriptions and the target assignment as group metadata too
// (see consumer.go).
package group

// Package probes measures a Kafka-compatible cluster the way its clients see
// it: synthetic producers and a consumer that go through every broker of
// every cell, every interval, and export what they find as Prometheus
// metrics (vigil_probe_*, see docs/metrics.md). It uses a Kafka client
// (franz-go) and nothing else, so it works against any Kafka-compatible
// cluster: Vigil, Apache Kafka, franz-go's kfake.
//
// # What a probe does
//
// For each cell it keeps a probe topic, TopicName(cell), with one
// partition per broker of the cell, that broker being the partition's
// first replica (its preferred leader), replicated on min(3, brokers)
// brokers of the cell with min.insync.replicas 2 of 3. Every interval it
// re-reads the metadata and re-asserts that layout: it creates the topic,
// adds partitions when the cell grows (CreatePartitions), puts the
// preferred leader first and adds replicas (AlterPartitionReassignments),
// and moves leadership back to the preferred leader (ElectLeaders) — at
// most every Config.LayoutInterval. A broker that is down keeps its
// partition (its probes fail; nothing moves during an outage).
//
// Every interval, for every broker, with a client of the broker's own and
// per-operation deadlines (so a broker that hangs never stalls the probing
// of the others), it:
//
//   - produces one record (acks=all) straight to the broker, to the
//     partition the broker should lead, stamped with the probe's id, the
//     partition's next sequence number, the send time and a W3C
//     traceparent header (see Payload and TraceContext), and times the
//     acknowledgement; a failure is classified as timeout, not_leader,
//     connection_refused or other;
//   - sends the broker a Metadata request for the probe topic and times it;
//   - times every new connection to the broker.
//
// One consumer reads every probe partition from the end it had when the
// probe started reading it (no record is produced to a partition before),
// times each of its own records end to end, and follows the sequence
// numbers: an acknowledged record not consumed within Config.LossDeadline
// is lost, a record found at a second offset duplicated, a record
// consumed after one sent only once it had been acknowledged reordered.
// Records of other probes (other locations) are skipped.
//
// Every interval, for every cell, it also commits the consumer's
// positions in a consumer group of the cell (simple commit, no group
// membership) and times the round trip to the group coordinator.
//
// # Cells
//
// The Kafka protocol carries racks, not cells. Config.CellOf maps a broker
// to its cell; CellFromRack reads the rack as `vigil dev` names them (cell
// a has racks a0, a1, a2); without CellOf every broker is in Config.Cell.
//
// # Bounds
//
// At most maxInFlight records are in flight to a broker (enough that a
// broker answering within the timeout never makes the probe skip an
// interval; an interval with none left counts as a timeout), at most
// maxPending records per partition are followed between send and
// consumption, and duplicates are recognised within the last 1024
// sequence numbers of a partition. Failures never stop the probe: it keeps
// probing the brokers it knows while the metadata cannot be read, and
// recovers by itself when the cluster does.
package probes

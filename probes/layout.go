package probes

import (
	"maps"
	"slices"
	"sort"
)

// The layout of a cell's probe topic: one partition per broker of the cell,
// led by that broker (it is the partition's first replica, Kafka's
// preferred leader), replicated on min(3, brokers) brokers of the cell,
// spread over racks. planLayout is pure: it reads what the cluster reports
// and the probe's previous intent, and returns the intent and the admin
// operations that move the cluster towards it.

// BrokerInfo is a broker as the cluster's metadata reports it.
type BrokerInfo struct {
	ID   int32
	Host string
	Port int32
	Rack string
}

// partitionState is a probe partition as the metadata reports it.
type partitionState struct {
	Replicas []int32
	Leader   int32
}

// layoutInput is what planLayout decides from.
type layoutInput struct {
	// Live are the brokers of the cell the metadata lists, by id.
	Live []BrokerInfo
	// Exists says whether the topic exists; Partitions are its partitions.
	Exists     bool
	Partitions []partitionState
	// Intent is the previous plan's intent (partition → broker).
	Intent map[int32]int32
	// Reassigning are the partitions someone (an operator, the
	// mitigator's replacement of a broker) is reassigning: their replicas
	// and leaders are left alone until that completes, since a new
	// reassignment would cancel the other one.
	Reassigning map[int32]bool
}

// layoutPlan is what to do.
type layoutPlan struct {
	// Intent maps each partition to the broker it probes: its preferred
	// leader, live or not (a dead broker keeps its partition, so that its
	// probes fail instead of moving elsewhere).
	Intent map[int32]int32
	// Create, when the topic does not exist, are the replica lists of its
	// partitions.
	Create [][]int32
	// Add are the replica lists of partitions to add, for brokers that
	// joined.
	Add [][]int32
	// Reassign are new replica lists of existing partitions: the preferred
	// leader first, and enough replicas.
	Reassign map[int32][]int32
	// Elect are the partitions whose leader is not their live preferred
	// leader (after Reassign, if they are in it).
	Elect []int32
	// MinInsync, when not 0, is the min.insync.replicas the topic should
	// have now that its replication factor grew.
	MinInsync int
}

// replicationFactor is the replication factor of a probe topic in a cell
// of n brokers.
func replicationFactor(n int) int { return min(3, n) }

// minInsync is the min.insync.replicas of a topic of replication factor
// rf: 2 of 3, else 1 (a cell of one or two brokers tolerates no loss of
// a replica anyway).
func minInsync(rf int) int {
	if rf >= 3 {
		return 2
	}
	return 1
}

// planLayout plans the layout of one cell's probe topic.
func planLayout(in layoutInput) layoutPlan {
	plan := layoutPlan{Intent: map[int32]int32{}, Reassign: map[int32][]int32{}}
	live := map[int32]bool{}
	for _, b := range in.Live {
		live[b.ID] = true
	}
	rf := replicationFactor(len(in.Live))
	if !in.Exists {
		for i, b := range in.Live {
			plan.Create = append(plan.Create, replicasFor(b.ID, in.Live, rf))
			plan.Intent[int32(i)] = b.ID
		}
		return plan
	}

	owned := map[int32]bool{}
	assign := func(p, b int32) {
		plan.Intent[p] = b
		owned[b] = true
	}
	// Keep what was intended while its broker is live or still a replica
	// of the partition (a broker that is down keeps its partition).
	for _, p := range slices.Sorted(maps.Keys(in.Intent)) {
		b := in.Intent[p]
		if int(p) < len(in.Partitions) && !owned[b] && (live[b] || slices.Contains(in.Partitions[p].Replicas, b)) {
			assign(p, b)
		}
	}
	// Partitions nobody claims yet go to their preferred leader.
	for p, ps := range in.Partitions {
		if _, ok := plan.Intent[int32(p)]; !ok && len(ps.Replicas) > 0 && !owned[ps.Replicas[0]] {
			assign(int32(p), ps.Replicas[0])
		}
	}
	// Brokers without a partition take a free one, else a new one.
	free := []int32{}
	for p := range in.Partitions {
		if _, ok := plan.Intent[int32(p)]; !ok {
			free = append(free, int32(p))
		}
	}
	for _, b := range in.Live {
		if owned[b.ID] {
			continue
		}
		if len(free) > 0 {
			assign(free[0], b.ID)
			free = free[1:]
			continue
		}
		plan.Add = append(plan.Add, replicasFor(b.ID, in.Live, rf))
		assign(int32(len(in.Partitions)+len(plan.Add)-1), b.ID)
	}
	// Each live broker's partition: preferred leader first, enough
	// replicas, led by it. A partition with a replica that is down is left
	// alone (no moves during an outage), apart from the election.
	for p, ps := range in.Partitions {
		b, ok := plan.Intent[int32(p)]
		if !ok || !live[b] || in.Reassigning[int32(p)] {
			continue
		}
		if want := wantReplicas(b, ps.Replicas, in.Live, live, rf); !slices.Equal(want, ps.Replicas) {
			plan.Reassign[int32(p)] = want
			if len(want) > len(ps.Replicas) && len(want) == rf && rf > 1 {
				plan.MinInsync = minInsync(rf)
			}
		}
		if ps.Leader != b {
			plan.Elect = append(plan.Elect, int32(p))
		}
	}
	return plan
}

// wantReplicas returns the replica list partition should have for its
// preferred leader b: b first, then the other current replicas, grown to rf
// with live brokers of the cell. A list with a replica that is not live is
// only reordered.
func wantReplicas(b int32, cur []int32, cell []BrokerInfo, live map[int32]bool, rf int) []int32 {
	want := []int32{b}
	allLive := true
	for _, r := range cur {
		if r != b {
			want = append(want, r)
			allLive = allLive && live[r]
		}
	}
	if !allLive || len(want) >= rf {
		if !slices.Contains(cur, b) && len(want) > max(len(cur), 1) {
			// b replaced a replica: keep the replication factor.
			want = want[:len(cur)]
		}
		return want
	}
	for _, r := range replicasFor(b, cell, rf) {
		if len(want) == rf {
			break
		}
		if !slices.Contains(want, r) {
			want = append(want, r)
		}
	}
	return want
}

// replicasFor returns rf replicas for the partition led by b: b, then
// brokers of the cell in id order after b (wrapping), those on racks not
// used yet first.
func replicasFor(b int32, cell []BrokerInfo, rf int) []int32 {
	ring := slices.Clone(cell)
	sort.Slice(ring, func(i, j int) bool { return ring[i].ID < ring[j].ID })
	start := 0
	rack := ""
	for i, c := range ring {
		if c.ID == b {
			start, rack = i+1, c.Rack
		}
	}
	ring = append(ring[start:], ring[:start]...)
	out := []int32{b}
	racks := map[string]bool{rack: true}
	for pass := 0; pass < 2 && len(out) < rf; pass++ {
		for _, c := range ring {
			if len(out) == rf {
				break
			}
			if c.ID == b || slices.Contains(out, c.ID) || (pass == 0 && racks[c.Rack]) {
				continue
			}
			out = append(out, c.ID)
			racks[c.Rack] = true
		}
	}
	return out
}

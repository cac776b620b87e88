package controller

import (
	"slices"
	"sort"
)

// Placement is pure: it reads brokers and current load and returns replica
// lists; the active controller runs it before proposing a command, so
// applying the command stays deterministic.
//
// The rules:
//   - every replica of a partition is in one cell;
//   - a new topic goes to the least-loaded cell (fewest replicas per live
//     broker) that has at least replication-factor live brokers;
//   - within the cell replicas spread over racks: a partition uses a rack
//     twice only when every rack of the cell is already used;
//   - first replicas (preferred leaders) go to the brokers that are first
//     replica of the fewest partitions, then to the least-loaded, walking
//     the brokers in rack-alternating order (a1, b1, c1, a2, b2, ...) as
//     Kafka's rack-aware assignment does, so equal loads round-robin.

// Load is the current replica load per broker.
type Load struct {
	// Replicas counts the replicas each broker holds.
	Replicas map[int32]int
	// Preferred counts the partitions whose first replica each broker is.
	Preferred map[int32]int
}

// LoadOf computes the load of img.
func LoadOf(img *Image) Load {
	l := Load{Replicas: map[int32]int{}, Preferred: map[int32]int{}}
	for _, t := range img.Topics {
		for _, p := range t.Partitions {
			for i, r := range p.Target() {
				l.Replicas[r]++
				if i == 0 {
					l.Preferred[r]++
				}
			}
		}
	}
	return l
}

// placeable reports whether new replicas may go to b: alive and not
// being decommissioned.
func placeable(b *Broker) bool { return b.Alive() && !b.Decommissioning }

// CellBrokers returns the placeable brokers of each cell, in id order.
func CellBrokers(img *Image) map[string][]*Broker {
	out := map[string][]*Broker{}
	for _, b := range img.SortedBrokers() {
		if placeable(b) {
			out[b.Cell] = append(out[b.Cell], b)
		}
	}
	return out
}

// ChooseCell returns the least-loaded cell with at least rf placeable
// brokers: fewest replicas per broker, ties by cell name.
func ChooseCell(cells map[string][]*Broker, load Load, rf int) (string, *Error) {
	best, bestLoad, largest := "", 0.0, 0
	names := make([]string, 0, len(cells))
	for c := range cells {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, c := range names {
		bs := cells[c]
		largest = max(largest, len(bs))
		if len(bs) < rf {
			continue
		}
		n := 0
		for _, b := range bs {
			n += load.Replicas[b.ID]
		}
		per := float64(n) / float64(len(bs))
		if best == "" || per < bestLoad {
			best, bestLoad = c, per
		}
	}
	if best == "" {
		return "", errorf(CodeInvalidReplicationFactor,
			"replication factor %d is larger than the number of live brokers in any cell (largest: %d); lower the replication factor or start more brokers in one cell", rf, largest)
	}
	return best, nil
}

// rackOrder returns brokers interleaved by rack: the first broker of each
// rack (racks in name order), then the second of each, and so on.
func rackOrder(brokers []*Broker) []*Broker {
	byRack := map[string][]*Broker{}
	var racks []string
	for _, b := range brokers {
		if _, ok := byRack[b.Rack]; !ok {
			racks = append(racks, b.Rack)
		}
		byRack[b.Rack] = append(byRack[b.Rack], b)
	}
	sort.Strings(racks)
	for _, r := range racks {
		sort.Slice(byRack[r], func(i, j int) bool { return byRack[r][i].ID < byRack[r][j].ID })
	}
	out := make([]*Broker, 0, len(brokers))
	for i := 0; len(out) < len(brokers); i++ {
		for _, r := range racks {
			if i < len(byRack[r]) {
				out = append(out, byRack[r][i])
			}
		}
	}
	return out
}

// AssignReplicas places n partitions of rf replicas on brokers (all of one
// cell), given the current load, which it updates with what it placed.
// brokers must number at least rf.
func AssignReplicas(brokers []*Broker, load Load, n, rf int) [][]int32 {
	order := rackOrder(brokers)
	if load.Replicas == nil {
		load.Replicas = map[int32]int{}
	}
	if load.Preferred == nil {
		load.Preferred = map[int32]int{}
	}
	out := make([][]int32, 0, n)
	for p := 0; p < n; p++ {
		// Leader: fewest preferred leaderships, then fewest replicas, then
		// rack order.
		li := 0
		for i, b := range order {
			lb := order[li]
			if load.Preferred[b.ID] < load.Preferred[lb.ID] ||
				(load.Preferred[b.ID] == load.Preferred[lb.ID] && load.Replicas[b.ID] < load.Replicas[lb.ID]) {
				li = i
			}
		}
		replicas := []int32{order[li].ID}
		racks := []string{order[li].Rack}
		load.Preferred[order[li].ID]++
		load.Replicas[order[li].ID]++
		for len(replicas) < rf {
			allRacks := rackCount(order) == len(uniq(racks))
			pick := -1
			// Walk the rack order starting after the leader so followers
			// rotate; take the least-loaded broker from an unused rack (or
			// any rack once all are used).
			for k := 1; k <= len(order); k++ {
				i := (li + k) % len(order)
				b := order[i]
				if slices.Contains(replicas, b.ID) || (!allRacks && slices.Contains(racks, b.Rack)) {
					continue
				}
				if pick == -1 || load.Replicas[b.ID] < load.Replicas[order[pick].ID] {
					pick = i
				}
			}
			b := order[pick]
			replicas = append(replicas, b.ID)
			racks = append(racks, b.Rack)
			load.Replicas[b.ID]++
		}
		out = append(out, replicas)
	}
	return out
}

func rackCount(bs []*Broker) int {
	racks := make([]string, 0, len(bs))
	for _, b := range bs {
		racks = append(racks, b.Rack)
	}
	return len(uniq(racks))
}

func uniq(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return slices.Compact(c)
}

// replacementFor picks a broker to replace gone in a partition whose other
// replicas are keep, from cell's placeable brokers: an unused rack first,
// then the least-loaded; -1 if none is free.
func replacementFor(cell []*Broker, load Load, keep []int32, gone int32, img *Image) int32 {
	var racks []string
	for _, r := range keep {
		if b := img.Brokers[r]; b != nil {
			racks = append(racks, b.Rack)
		}
	}
	best := int32(-1)
	bestNewRack := false
	for _, b := range rackOrder(cell) {
		if b.ID == gone || slices.Contains(keep, b.ID) {
			continue
		}
		newRack := !slices.Contains(racks, b.Rack)
		switch {
		case best == -1,
			newRack && !bestNewRack,
			newRack == bestNewRack && load.Replicas[b.ID] < load.Replicas[best]:
			best, bestNewRack = b.ID, newRack
		}
	}
	return best
}

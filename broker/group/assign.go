package group

import (
	"sort"
)

// Server-side assignors of the KIP-848 consumer protocol. An assignor maps
// every partition of the topics the members subscribe to onto exactly one
// subscribed member. Both are deterministic: the same members, topics and
// previous assignment always give the same result.

// Assignor names, as clients ask for them (ServerAssignor).
const (
	AssignorUniform = "uniform"
	AssignorRange   = "range"
)

// assignment maps member id → topic → sorted partitions.
type assignment map[string]map[string][]int32

// assignInput is what an assignor works from.
type assignInput struct {
	members    []string                   // member ids, sorted
	subscribed map[string]map[string]bool // member → subscribed topics (existing ones)
	partitions map[string]int32           // topic → partition count
	previous   assignment                 // the previous target, for stickiness
}

func knownAssignor(name string) bool { return name == AssignorUniform || name == AssignorRange }

func runAssignor(name string, in assignInput) assignment {
	if name == AssignorRange {
		return assignRange(in)
	}
	return assignUniform(in)
}

// assignRange gives each member a contiguous range of every topic it
// subscribes to: members sorted by id, the first (partitions mod members)
// getting one extra. Members subscribing to the same co-partitioned topics
// get the same partition numbers of each.
func assignRange(in assignInput) assignment {
	out := assignment{}
	for _, id := range in.members {
		out[id] = map[string][]int32{}
	}
	for _, topic := range sortedKeys(in.partitions) {
		var ms []string
		for _, id := range in.members {
			if in.subscribed[id][topic] {
				ms = append(ms, id)
			}
		}
		if len(ms) == 0 {
			continue
		}
		n := in.partitions[topic]
		per, extra := n/int32(len(ms)), n%int32(len(ms))
		next := int32(0)
		for i, id := range ms {
			count := per
			if int32(i) < extra {
				count++
			}
			for p := next; p < next+count; p++ {
				out[id][topic] = append(out[id][topic], p)
			}
			next += count
		}
	}
	return out
}

// assignUniform spreads all partitions so that member loads differ by at
// most one wherever subscriptions allow, moving as few partitions as
// possible from the previous assignment: partitions stay with a member
// that still subscribes to their topic, new or orphaned partitions go to
// the least loaded eligible member, then partitions move from the most to
// the least loaded members until balanced.
func assignUniform(in assignInput) assignment {
	type tp struct {
		topic string
		part  int32
	}
	load := map[string]int{}
	owner := map[tp]string{}
	out := assignment{}
	for _, id := range in.members {
		out[id] = map[string][]int32{}
		load[id] = 0
	}
	// Sticky: keep what the previous target gave to members still here
	// and still subscribed.
	for _, id := range in.members {
		for topic, ps := range in.previous[id] {
			n, ok := in.partitions[topic]
			if !ok || !in.subscribed[id][topic] {
				continue
			}
			for _, p := range ps {
				k := tp{topic, p}
				if p < n && owner[k] == "" {
					owner[k] = id
					load[id]++
				}
			}
		}
	}
	eligible := func(topic string) []string {
		var ms []string
		for _, id := range in.members {
			if in.subscribed[id][topic] {
				ms = append(ms, id)
			}
		}
		return ms
	}
	leastLoaded := func(ms []string) string {
		best := ""
		for _, id := range ms {
			if best == "" || load[id] < load[best] {
				best = id
			}
		}
		return best
	}
	// Everything not kept goes to the least loaded eligible member.
	topics := sortedKeys(in.partitions)
	for _, topic := range topics {
		ms := eligible(topic)
		if len(ms) == 0 {
			continue
		}
		for p := int32(0); p < in.partitions[topic]; p++ {
			k := tp{topic, p}
			if owner[k] != "" {
				continue
			}
			id := leastLoaded(ms)
			owner[k] = id
			load[id]++
		}
	}
	// Balance: move a partition from the most loaded member that has one
	// the receiver may take, while that narrows the spread.
	for moved := true; moved; {
		moved = false
		receivers := append([]string(nil), in.members...)
		sort.SliceStable(receivers, func(i, j int) bool { return load[receivers[i]] < load[receivers[j]] })
		for _, to := range receivers {
			var (
				from string
				pick tp
			)
			for _, topic := range topics {
				if !in.subscribed[to][topic] {
					continue
				}
				for p := in.partitions[topic] - 1; p >= 0; p-- {
					k := tp{topic, p}
					o := owner[k]
					if o == "" || o == to || load[o]-load[to] <= 1 {
						continue
					}
					if from == "" || load[o] > load[from] {
						from, pick = o, k
					}
				}
			}
			if from != "" {
				owner[pick] = to
				load[from]--
				load[to]++
				moved = true
				break
			}
		}
	}
	for k, id := range owner {
		out[id][k.topic] = append(out[id][k.topic], k.part)
	}
	for _, ts := range out {
		for t := range ts {
			sort.Slice(ts[t], func(i, j int) bool { return ts[t][i] < ts[t][j] })
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

package probes

import (
	"reflect"
	"testing"
)

func brokers(racks ...string) []BrokerInfo {
	var out []BrokerInfo
	for i, r := range racks {
		out = append(out, BrokerInfo{ID: int32(i), Rack: r})
	}
	return out
}

func parts(leaders []int32, replicas ...[]int32) []partitionState {
	var out []partitionState
	for i, r := range replicas {
		out = append(out, partitionState{Replicas: r, Leader: leaders[i]})
	}
	return out
}

func TestPlanLayout(t *testing.T) {
	abc := brokers("a0", "a1", "a2")
	healthy := parts([]int32{0, 1, 2}, []int32{0, 1, 2}, []int32{1, 2, 0}, []int32{2, 0, 1})
	tests := []struct {
		name string
		in   layoutInput
		want layoutPlan
	}{
		{"new topic: a partition per broker, led by it, three replicas",
			layoutInput{Live: abc},
			layoutPlan{Intent: map[int32]int32{0: 0, 1: 1, 2: 2}, Create: [][]int32{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}}}},
		{"as it should be: nothing to do",
			layoutInput{Live: abc, Exists: true, Partitions: healthy},
			layoutPlan{Intent: map[int32]int32{0: 0, 1: 1, 2: 2}}},
		{"leadership moved away from a live broker: elect",
			layoutInput{Live: abc, Exists: true, Partitions: parts([]int32{0, 1, 0}, []int32{0, 1, 2}, []int32{1, 2, 0}, []int32{2, 0, 1})},
			layoutPlan{Intent: map[int32]int32{0: 0, 1: 1, 2: 2}, Elect: []int32{2}}},
		{"a broker is down: it keeps its partition, nothing moves",
			layoutInput{Live: abc[:2], Exists: true, Intent: map[int32]int32{0: 0, 1: 1, 2: 2},
				Partitions: parts([]int32{0, 1, 0}, []int32{0, 1, 2}, []int32{1, 2, 0}, []int32{2, 0, 1})},
			layoutPlan{Intent: map[int32]int32{0: 0, 1: 1, 2: 2}}},
		{"someone else is reassigning a partition: it is left alone",
			layoutInput{Live: abc, Exists: true, Intent: map[int32]int32{0: 0, 1: 1, 2: 2}, Reassigning: map[int32]bool{1: true},
				Partitions: parts([]int32{0, 0, 0}, []int32{0, 1, 2}, []int32{1, 2, 0, 3}, []int32{2, 0, 1})},
			layoutPlan{Intent: map[int32]int32{0: 0, 1: 1, 2: 2}, Elect: []int32{2}}},
		{"a broker joins: a partition for it",
			layoutInput{Live: brokers("a0", "a1", "a2", "a0"), Exists: true, Partitions: healthy},
			layoutPlan{Intent: map[int32]int32{0: 0, 1: 1, 2: 2, 3: 3}, Add: [][]int32{{3, 1, 2}}}},
		{"the cell grew from one broker: partitions, replicas, min.insync.replicas",
			layoutInput{Live: abc, Exists: true, Partitions: parts([]int32{0}, []int32{0})},
			layoutPlan{Intent: map[int32]int32{0: 0, 1: 1, 2: 2}, Add: [][]int32{{1, 2, 0}, {2, 0, 1}},
				Reassign: map[int32][]int32{0: {0, 1, 2}}, MinInsync: 2}},
		{"a broker gone for good (no longer a replica): its partition goes to a newcomer",
			layoutInput{Live: []BrokerInfo{abc[0], abc[1], {ID: 3, Rack: "a2"}}, Exists: true, Intent: map[int32]int32{0: 0, 1: 1, 2: 2},
				Partitions: parts([]int32{0, 1, 0}, []int32{0, 1, 3}, []int32{1, 3, 0}, []int32{0, 1, 3})},
			layoutPlan{Intent: map[int32]int32{0: 0, 1: 1, 2: 3}, Reassign: map[int32][]int32{2: {3, 0, 1}}, Elect: []int32{2}}},
		{"a cluster that reports its leader as first replica (kfake): the broker without one takes the spare partition",
			layoutInput{Live: abc, Exists: true, Partitions: parts([]int32{1, 1, 2}, []int32{1, 2, 0}, []int32{1, 2, 0}, []int32{2, 0, 1})},
			layoutPlan{Intent: map[int32]int32{0: 1, 1: 0, 2: 2}, Reassign: map[int32][]int32{1: {0, 1, 2}}, Elect: []int32{1}}},
		{"... and keeps it while the cluster rotates the leader",
			layoutInput{Live: abc, Exists: true, Intent: map[int32]int32{0: 1, 1: 0, 2: 2},
				Partitions: parts([]int32{1, 2, 2}, []int32{1, 2, 0}, []int32{2, 0, 1}, []int32{2, 0, 1})},
			layoutPlan{Intent: map[int32]int32{0: 1, 1: 0, 2: 2}, Reassign: map[int32][]int32{1: {0, 2, 1}}, Elect: []int32{1}}},
		{"one broker: one replica",
			layoutInput{Live: brokers("")},
			layoutPlan{Intent: map[int32]int32{0: 0}, Create: [][]int32{{0}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planLayout(tt.in)
			if tt.want.Reassign == nil {
				tt.want.Reassign = map[int32][]int32{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestReplicasForSpreadsRacks(t *testing.T) {
	cell := brokers("r1", "r1", "r2", "r2")
	if got := replicasFor(0, cell, 3); !reflect.DeepEqual(got, []int32{0, 2, 1}) {
		t.Errorf("replicasFor(0) = %v, want [0 2 1]: the other rack before the same rack again", got)
	}
	if got := replicasFor(3, cell, 2); !reflect.DeepEqual(got, []int32{3, 0}) {
		t.Errorf("replicasFor(3) = %v, want [3 0]", got)
	}
}

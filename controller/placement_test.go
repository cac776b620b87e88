package controller

import (
	"fmt"
	"testing"
)

func brokers(specs ...string) []*Broker {
	// spec: "id:cell:rack"
	var out []*Broker
	for _, s := range specs {
		var id int32
		var cell, rack string
		var rest string
		fmt.Sscanf(s, "%d:%s", &id, &rest)
		for i := 0; i < len(rest); i++ {
			if rest[i] == ':' {
				cell, rack = rest[:i], rest[i+1:]
				break
			}
		}
		out = append(out, &Broker{ID: id, Cell: cell, Rack: rack, State: BrokerRegistered})
	}
	return out
}

func TestRackOrder(t *testing.T) {
	got := rackOrder(brokers("1:a:x", "2:a:x", "3:a:y", "4:a:z", "5:a:y"))
	var ids []int32
	for _, b := range got {
		ids = append(ids, b.ID)
	}
	if !eq(ids, []int32{1, 3, 4, 2, 5}) {
		t.Fatalf("rack order %v", ids)
	}
}

func TestAssignReplicas(t *testing.T) {
	for _, tc := range []struct {
		name    string
		brokers []*Broker
		load    Load
		n, rf   int
	}{
		{"3 racks x 2", brokers("1:a:x", "2:a:x", "3:a:y", "4:a:y", "5:a:z", "6:a:z"), Load{}, 12, 3},
		{"no racks", brokers("1:a:", "2:a:", "3:a:", "4:a:"), Load{}, 8, 2},
		{"2 racks rf 3", brokers("1:a:x", "2:a:x", "3:a:y", "4:a:y"), Load{}, 8, 3},
		{"rf 1", brokers("1:a:x", "2:a:y", "3:a:z"), Load{}, 6, 1},
		{"loaded broker", brokers("1:a:x", "2:a:y", "3:a:z", "4:a:w"), Load{Replicas: map[int32]int{1: 10}, Preferred: map[int32]int{1: 5}}, 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			racks := map[int32]string{}
			for _, b := range tc.brokers {
				racks[b.ID] = b.Rack
			}
			nRacks := rackCount(tc.brokers)
			pre := map[int32]int{}
			for k, v := range tc.load.Preferred {
				pre[k] = v
			}
			got := AssignReplicas(tc.brokers, tc.load, tc.n, tc.rf)
			if len(got) != tc.n {
				t.Fatalf("%d partitions, want %d", len(got), tc.n)
			}
			leaders := map[int32]int{}
			replicas := map[int32]int{}
			for _, a := range got {
				if len(a) != tc.rf {
					t.Fatalf("assignment %v: want %d replicas", a, tc.rf)
				}
				seen := map[int32]bool{}
				used := map[string]bool{}
				for _, r := range a {
					if seen[r] {
						t.Fatalf("duplicate broker in %v", a)
					}
					seen[r] = true
					used[racks[r]] = true
					replicas[r]++
				}
				// Racks: as many distinct as possible.
				if want := min(tc.rf, nRacks); len(used) < want {
					t.Fatalf("%v uses %d racks, want %d", a, len(used), want)
				}
				leaders[a[0]]++
			}
			// Leaders (with the prior load) differ by at most one.
			lo, hi := 1<<30, 0
			for _, b := range tc.brokers {
				n := leaders[b.ID] + pre[b.ID]
				lo, hi = min(lo, n), max(hi, n)
			}
			if tc.load.Preferred == nil && hi-lo > 1 {
				t.Fatalf("leaders unbalanced %v: %v", leaders, got)
			}
			if tc.load.Preferred != nil && leaders[1] != 0 {
				t.Fatalf("loaded broker 1 got leaders: %v", got)
			}
			if tc.load.Replicas == nil {
				lo, hi = 1<<30, 0
				for _, b := range tc.brokers {
					lo, hi = min(lo, replicas[b.ID]), max(hi, replicas[b.ID])
				}
				if hi-lo > 1 {
					t.Fatalf("replicas unbalanced %v: %v", replicas, got)
				}
			}
		})
	}
}

func TestChooseCell(t *testing.T) {
	cells := map[string][]*Broker{
		"a": brokers("1:a:", "2:a:", "3:a:"),
		"b": brokers("4:b:", "5:b:", "6:b:"),
		"c": brokers("7:c:"),
	}
	for _, tc := range []struct {
		name string
		load map[int32]int
		rf   int
		want string
		err  bool
	}{
		{"empty: first by name", nil, 3, "a", false},
		{"a loaded", map[int32]int{1: 3, 2: 3, 3: 3, 4: 1}, 3, "b", false},
		{"per broker, not total", map[int32]int{1: 1, 4: 1, 5: 1, 7: 1}, 1, "a", false},
		{"c is least loaded but too small", map[int32]int{1: 5, 4: 5}, 2, "a", false},
		{"rf 1 can use c", map[int32]int{1: 5, 4: 5}, 1, "c", false},
		{"too few brokers anywhere", nil, 4, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ChooseCell(cells, Load{Replicas: tc.load}, tc.rf)
			if tc.err {
				if err == nil || err.Code != CodeInvalidReplicationFactor {
					t.Fatalf("want INVALID_REPLICATION_FACTOR, got %q %v", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
}

func TestPlacementThroughCreateTopic(t *testing.T) {
	h := newHarness(t)
	for i := int32(1); i <= 3; i++ {
		h.addBroker(i, "a", "r"+string(rune('0'+i)))
		h.addBroker(i+10, "b", "r"+string(rune('0'+i)))
	}
	h.addBroker(20, "c", "r1") // too small for RF 3
	// Two topics land in different cells (the second goes to the emptier one).
	tx := h.createTopic("x", 6, 3, nil)
	ty := h.createTopic("y", 6, 3, nil)
	cellOf := func(tp *Topic) string {
		cell := ""
		for _, p := range tp.Partitions {
			for _, r := range p.Replicas {
				c := h.img().Brokers[r].Cell
				if cell != "" && c != cell {
					t.Fatalf("topic %s spans cells: %v", tp.Name, p.Replicas)
				}
				cell = c
			}
		}
		return cell
	}
	if cx, cy := cellOf(tx), cellOf(ty); cx == cy || cx == "c" || cy == "c" {
		t.Fatalf("topics in cells %s and %s", cx, cy)
	}
	// Leaders start on the preferred replicas, balanced.
	if lc := h.img().LeaderCount(); lc[1] != 2 || lc[11] != 2 {
		t.Fatalf("leader counts %v", lc)
	}
	// RF larger than any cell: a clear error.
	_, err := PlanCreateTopic(h.img(), CreateTopic{Name: "z", Partitions: 1, ReplicationFactor: 4}, h.topicID(), nil)
	if err == nil || err.Code != CodeInvalidReplicationFactor {
		t.Fatalf("rf 4: %v", err)
	}
	// Fenced brokers do not count.
	h.mustApply(&Command{FenceBroker: &FenceBrokerCmd{ID: 1, Admin: true}})
	_, err = PlanCreateTopic(h.img(), CreateTopic{Name: "z", Partitions: 1, ReplicationFactor: 3, Cell: "a"}, h.topicID(), nil)
	if err == nil || err.Code != CodeInvalidReplicationFactor {
		t.Fatalf("rf 3 in cell a with a fenced broker: %v", err)
	}
	// Explicit assignments may not span cells.
	_, err = PlanCreateTopic(h.img(), CreateTopic{Name: "z", Assignments: [][]int32{{2, 11}}}, h.topicID(), nil)
	if err == nil {
		err = h.apply(&Command{CreateTopic: &CreateTopicCmd{Name: "z", ID: h.topicID(), Assignments: [][]int32{{2, 11}}}}).Err
	}
	if err == nil || err.Code != CodeInvalidReplicaAssignment {
		t.Fatalf("cross-cell assignment: %v", err)
	}
	h.checkReplica()
}

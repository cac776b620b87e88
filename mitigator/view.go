package mitigator

import (
	"slices"
	"sort"
	"strconv"

	"github.com/vigilhq/vigil/controller"
)

// View is the cluster as the core needs it: brokers and partitions, from
// the controller's metadata image.
type View struct {
	Brokers    map[int32]BrokerView
	Partitions []PartitionView
}

// BrokerView is one broker as the controller sees it.
type BrokerView struct {
	ID          int32
	Cell, Rack  string
	State       controller.BrokerState
	Demoted     bool
	AdminFenced bool
	// Decommissioning is set while its replicas move away.
	Decommissioning bool
}

// PartitionView is one partition's replication state.
type PartitionView struct {
	Topic     string
	Partition int32
	Replicas  []int32
	ISR       []int32
	Leader    int32
	// MinInsync is the topic's min.insync.replicas.
	MinInsync   int
	Reassigning bool
}

// broker returns broker id as the view has it; false without a view or
// without that broker.
func (v *View) broker(id int32) (BrokerView, bool) {
	if v == nil {
		return BrokerView{}, false
	}
	b, ok := v.Brokers[id]
	return b, ok
}

// ViewFromImage builds a View from a controller image; topics without a
// min.insync.replicas override get defaultMinInsync.
func ViewFromImage(img *controller.Image, defaultMinInsync int) *View {
	v := &View{Brokers: map[int32]BrokerView{}}
	if img == nil {
		return v
	}
	for id, b := range img.Brokers {
		cell := b.Cell
		if cell == "" {
			cell = controller.DefaultCell
		}
		v.Brokers[id] = BrokerView{ID: id, Cell: cell, Rack: b.Rack, State: b.State, Demoted: b.Demoted, AdminFenced: b.AdminFenced, Decommissioning: b.Decommissioning}
	}
	names := make([]string, 0, len(img.Topics))
	for n := range img.Topics {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t := img.Topics[n]
		minISR := defaultMinInsync
		if s, ok := t.Configs["min.insync.replicas"]; ok {
			if x, err := strconv.Atoi(s); err == nil && x > 0 {
				minISR = x
			}
		}
		for i, p := range t.Partitions {
			if p == nil {
				continue
			}
			v.Partitions = append(v.Partitions, PartitionView{Topic: n, Partition: int32(i), Replicas: slices.Clone(p.Replicas), ISR: slices.Clone(p.ISR),
				Leader: p.Leader, MinInsync: minISR, Reassigning: p.Reassigning()})
		}
	}
	return v
}

// brokersInCell counts the brokers of cell that take part (not
// decommissioned).
func (v *View) brokersInCell(cell string) (n int) {
	for _, b := range v.Brokers {
		if b.Cell == cell && b.State != controller.BrokerDecommissioned {
			n++
		}
	}
	return n
}

// alive reports whether broker id may lead and join ISRs.
func (v *View) alive(id int32) bool {
	b, ok := v.Brokers[id]
	return ok && b.State == controller.BrokerRegistered
}

// isolatedLeader reports whether broker id leads a replicated partition
// whose ISR has shrunk to itself: its followers cannot fetch from it.
func (v *View) isolatedLeader(id int32) bool {
	for _, p := range v.Partitions {
		if p.Leader == id && len(p.Replicas) > 1 && len(p.ISR) == 1 && p.ISR[0] == id {
			return true
		}
	}
	return false
}

// movableLeaderships counts the partitions broker id leads that another
// alive, in-sync, not demoted replica could lead instead.
func (v *View) movableLeaderships(id int32) (n int) {
	for _, p := range v.Partitions {
		if p.Leader != id {
			continue
		}
		for _, r := range p.ISR {
			if r != id && v.alive(r) && !v.Brokers[r].Demoted {
				n++
				break
			}
		}
	}
	return n
}

// leaderships counts the partitions broker id leads.
func (v *View) leaderships(id int32) (n int) {
	for _, p := range v.Partitions {
		if p.Leader == id {
			n++
		}
	}
	return n
}

// holdsReplicas reports whether broker id is in any partition's replicas.
func (v *View) holdsReplicas(id int32) bool {
	for _, p := range v.Partitions {
		if slices.Contains(p.Replicas, id) {
			return true
		}
	}
	return false
}

// belowMinIfRemoved returns the partitions that would have fewer in-sync
// replicas than their min.insync.replicas if broker id left their ISR
// (among only, when given). The controller keeps an ISR non-empty, so a
// partition whose ISR is id alone is not made worse and is not returned.
func (v *View) belowMinIfRemoved(id int32, only []controller.TopicPartition) []string {
	var out []string
	for _, p := range v.Partitions {
		if len(only) > 0 && !slices.Contains(only, controller.TopicPartition{Topic: p.Topic, Partition: p.Partition}) {
			continue
		}
		if !slices.Contains(p.ISR, id) || len(p.ISR) == 1 {
			continue
		}
		if len(p.ISR)-1 < p.MinInsync {
			out = append(out, p.Topic+"/"+strconv.Itoa(int(p.Partition)))
		}
	}
	return out
}

// followsInISR reports whether broker id is an in-sync follower of any
// partition (of only, when given): whether there is an ISR to shrink.
func (v *View) followsInISR(id int32, only []controller.TopicPartition) bool {
	for _, p := range v.Partitions {
		if len(only) > 0 && !slices.Contains(only, controller.TopicPartition{Topic: p.Topic, Partition: p.Partition}) {
			continue
		}
		if p.Leader != id && slices.Contains(p.ISR, id) {
			return true
		}
	}
	return false
}

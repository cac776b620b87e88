package controller

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// harness drives the deterministic core the way the active controller
// does: decisions from Liveness and the planners, commands applied in
// order to a State, a fake clock. Every change is also replayed onto a
// second image to check that deltas reproduce the state.
type harness struct {
	t       *testing.T
	st      *State
	idx     uint64
	live    *Liveness
	now     time.Time
	replica *Image // built only from Changes
	nextID  byte
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return &harness{t: t, st: NewState(), live: NewLiveness(9 * time.Second), now: time.Unix(1_700_000_000, 0), replica: NewImage()}
}

func (h *harness) img() *Image { return h.st.Image() }

// apply applies cmd and replays its change onto the replica image.
func (h *harness) apply(cmd *Command) Result {
	h.t.Helper()
	h.idx++
	before, _ := json.Marshal(h.st.Image())
	res := h.st.Apply(h.idx, cmd)
	if res.Err != nil {
		// A refused command changes nothing.
		if after, _ := json.Marshal(h.st.Image()); string(after) != string(before) {
			h.t.Fatalf("refused command %+v (%v) changed the image", cmd, res.Err)
		}
	}
	if res.Change != nil {
		// Through JSON, as a broker receives it.
		data, err := json.Marshal(res.Change)
		if err != nil {
			h.t.Fatal(err)
		}
		var c Change
		if err := json.Unmarshal(data, &c); err != nil {
			h.t.Fatal(err)
		}
		h.replica.ApplyChange(&c)
	}
	return res
}

func (h *harness) mustApply(cmd *Command) Result {
	h.t.Helper()
	res := h.apply(cmd)
	if res.Err != nil {
		h.t.Fatalf("apply %+v: %v", cmd, res.Err)
	}
	return res
}

func (h *harness) wantErr(res Result, code string) {
	h.t.Helper()
	if res.Err == nil || res.Err.Code != code {
		h.t.Fatalf("want %s, got %v", code, res.Err)
	}
}

// addBroker registers broker id in cell and rack and heartbeats it alive.
func (h *harness) addBroker(id int32, cell, rack string) {
	h.t.Helper()
	reg := BrokerRegistration{ID: id, IncarnationID: "inc-" + strconv.Itoa(int(id)) + "-" + strconv.Itoa(int(h.idx)), Cell: cell, Rack: rack, Endpoint: "127.0.0.1:" + strconv.Itoa(9000+int(id))}
	if err := h.live.CheckRegistration(h.img(), reg, h.now); err != nil {
		h.t.Fatal(err)
	}
	h.mustApply(&Command{RegisterBroker: &RegisterBrokerCmd{reg}})
	h.live.Touch(id, h.now)
	if b := h.img().Brokers[id]; b.State != BrokerFenced {
		h.t.Fatalf("a new registration should start fenced, is %s", b.State)
	}
	h.heartbeat(id, false)
}

// heartbeat sends broker id's heartbeat and applies what it calls for.
func (h *harness) heartbeat(id int32, wantShutdown bool) HeartbeatResult {
	h.t.Helper()
	b := h.img().Brokers[id]
	cmds, err := h.live.Heartbeat(h.img(), HeartbeatRequest{ID: id, Epoch: b.Epoch, WantShutdown: wantShutdown}, h.now)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, c := range cmds {
		h.mustApply(c)
	}
	return HeartbeatAnswer(h.img(), id, int64(h.idx))
}

// advance moves the clock and applies the fences that expired sessions call for.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.now = h.now.Add(d)
	for _, c := range h.live.Expired(h.img(), h.now) {
		h.mustApply(c)
	}
}

func (h *harness) topicID() TopicID {
	h.nextID++
	return TopicID{1, h.nextID}
}

func (h *harness) createTopic(name string, parts int32, rf int16, configs map[string]string) *Topic {
	h.t.Helper()
	cmd, err := PlanCreateTopic(h.img(), CreateTopic{Name: name, Partitions: parts, ReplicationFactor: rf, Configs: configs}, h.topicID(), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.mustApply(cmd)
	return h.img().Topics[name]
}

func (h *harness) createAssigned(name string, assignments [][]int32, configs map[string]string) {
	h.t.Helper()
	cmd, err := PlanCreateTopic(h.img(), CreateTopic{Name: name, Assignments: assignments, Configs: configs}, h.topicID(), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.mustApply(cmd)
}

func (h *harness) part(topic string, i int32) *Partition { return h.img().Topics[topic].Partitions[i] }

// alterISR sends the leader's AlterPartition with the current epochs.
func (h *harness) alterISR(topic string, i int32, isr ...int32) Result {
	h.t.Helper()
	p := h.part(topic, i)
	b := h.img().Brokers[p.Leader]
	return h.apply(&Command{AlterPartition: &AlterPartitionCmd{AlterPartitionRequest{
		BrokerID: p.Leader, BrokerEpoch: b.Epoch, Topic: topic, Partition: i,
		LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, NewISR: isr,
	}}})
}

// checkReplica fails unless the image rebuilt from changes equals the state's.
func (h *harness) checkReplica() {
	h.t.Helper()
	a, _ := json.Marshal(h.img())
	b, _ := json.Marshal(h.replica)
	if string(a) != string(b) {
		h.t.Fatalf("image rebuilt from changes differs:\nstate:   %s\nreplica: %s", a, b)
	}
}

func eq(a, b []int32) bool {
	return reflect.DeepEqual(append([]int32{}, a...), append([]int32{}, b...))
}

func wantPart(t *testing.T, p *Partition, leader int32, isr []int32) {
	t.Helper()
	if p.Leader != leader || !eq(p.ISR, isr) {
		t.Fatalf("partition: leader %d isr %v, want leader %d isr %v (replicas %v)", p.Leader, p.ISR, leader, isr, p.Replicas)
	}
}

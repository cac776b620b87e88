package controller

import (
	"slices"
	"sort"
	"strings"
)

// This file turns admin requests into commands. It runs on the active
// controller before proposing (it may choose: placement, ids), reading the
// image; State.Apply validates again, so a command built from an image that
// changed meanwhile is refused rather than misapplied.

// ConfigValidator checks one topic config and returns the value to store.
// The broker owns the list of topic configs and their checks; it plugs its
// validator into the controller. Errors should say what is wrong and what
// is allowed.
type ConfigValidator func(name, value string) (string, error)

// Limits on what a request may ask for.
const (
	maxTopicNameLen  = 249
	maxPartitions    = 100_000
	maxReplicaFactor = 32
)

// ValidateTopicName checks a topic name as Kafka does: 1 to 249 characters
// of [a-zA-Z0-9._-], and not "." or "..".
func ValidateTopicName(name string) *Error {
	if name == "" || name == "." || name == ".." {
		return errorf(CodeInvalidTopicException, "topic name %q is not allowed", name)
	}
	if len(name) > maxTopicNameLen {
		return errorf(CodeInvalidTopicException, "topic name is %d characters long; the limit is %d", len(name), maxTopicNameLen)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return errorf(CodeInvalidTopicException, "topic name %q contains %q; use only letters, digits, '.', '_' and '-'", name, c)
		}
	}
	return nil
}

// checkNameFree refuses a name in use, or one differing from a name in use
// only by '.' versus '_' (their metric names would collide).
func checkNameFree(img *Image, name string) *Error {
	if _, ok := img.Topics[name]; ok {
		return errorf(CodeTopicAlreadyExists, "topic %q already exists", name)
	}
	norm := strings.ReplaceAll(name, ".", "_")
	for other := range img.Topics {
		if strings.ReplaceAll(other, ".", "_") == norm {
			return errorf(CodeTopicAlreadyExists, "topic %q collides with existing topic %q ('.' and '_' are equivalent in metric names); choose another name", name, other)
		}
	}
	return nil
}

// validateConfigs checks configs with the pluggable validator; the
// controller itself checks unclean.leader.election.enable, which it reads.
func validateConfigs(configs map[string]string, validate ConfigValidator) (map[string]string, *Error) {
	if len(configs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(configs))
	for _, k := range sortedStrings(configs) {
		v := configs[k]
		if validate != nil {
			nv, err := validate(k, v)
			if err != nil {
				return nil, errorf(CodeInvalidConfig, "%v", err)
			}
			v = nv
		}
		if k == "unclean.leader.election.enable" && v != "true" && v != "false" {
			return nil, errorf(CodeInvalidConfig, "unclean.leader.election.enable must be true or false, not %q", v)
		}
		out[k] = v
	}
	return out, nil
}

func sortedStrings(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// PlanCreateTopic builds the command creating ct with id, placing replicas
// unless ct gives explicit assignments.
func PlanCreateTopic(img *Image, ct CreateTopic, id TopicID, validate ConfigValidator) (*Command, *Error) {
	if err := ValidateTopicName(ct.Name); err != nil {
		return nil, err
	}
	if err := checkNameFree(img, ct.Name); err != nil {
		return nil, err
	}
	configs, err := validateConfigs(ct.Configs, validate)
	if err != nil {
		return nil, err
	}
	assignments := ct.Assignments
	if len(assignments) > 0 {
		if ct.Partitions != 0 && int(ct.Partitions) != len(assignments) {
			return nil, errorf(CodeInvalidRequest, "give either partitions or assignments, not both (partitions %d, %d assignments)", ct.Partitions, len(assignments))
		}
		if len(assignments) > maxPartitions {
			return nil, errorf(CodeInvalidPartitions, "%d partitions is more than the limit %d", len(assignments), maxPartitions)
		}
	} else {
		if ct.Partitions < 1 || ct.Partitions > maxPartitions {
			return nil, errorf(CodeInvalidPartitions, "partition count %d must be between 1 and %d", ct.Partitions, maxPartitions)
		}
		if ct.ReplicationFactor < 1 || ct.ReplicationFactor > maxReplicaFactor {
			return nil, errorf(CodeInvalidReplicationFactor, "replication factor %d must be between 1 and %d", ct.ReplicationFactor, maxReplicaFactor)
		}
		cells := CellBrokers(img)
		load := LoadOf(img)
		cell := ct.Cell
		if cell == "" {
			if cell, err = ChooseCell(cells, load, int(ct.ReplicationFactor)); err != nil {
				return nil, err
			}
		} else if len(cells[cell]) < int(ct.ReplicationFactor) {
			return nil, errorf(CodeInvalidReplicationFactor, "replication factor %d is larger than the %d live brokers of cell %q; lower it or start more brokers there", ct.ReplicationFactor, len(cells[cell]), cell)
		}
		assignments = AssignReplicas(cells[cell], load, int(ct.Partitions), int(ct.ReplicationFactor))
	}
	return &Command{CreateTopic: &CreateTopicCmd{Name: ct.Name, ID: id, Configs: configs, Assignments: assignments}}, nil
}

// topicCell returns the cell of a topic's replicas ("" if unknown).
func topicCell(img *Image, t *Topic) string {
	for _, p := range t.Partitions {
		for _, r := range p.Replicas {
			if b := img.Brokers[r]; b != nil {
				return b.Cell
			}
		}
	}
	return ""
}

// PlanCreatePartitions builds the command growing a topic to cp.Count
// partitions, in the topic's cell with its replication factor.
func PlanCreatePartitions(img *Image, cp CreatePartitions) (*Command, *Error) {
	t := img.Topics[cp.Topic]
	if t == nil {
		return nil, errorf(CodeUnknownTopicOrPartition, "topic %q does not exist", cp.Topic)
	}
	cur := int32(len(t.Partitions))
	if cp.Count <= cur {
		return nil, errorf(CodeInvalidPartitions, "topic %q has %d partitions; the new count %d must be larger (partitions cannot be removed)", cp.Topic, cur, cp.Count)
	}
	if cp.Count > maxPartitions {
		return nil, errorf(CodeInvalidPartitions, "%d partitions is more than the limit %d", cp.Count, maxPartitions)
	}
	add := int(cp.Count - cur)
	assignments := cp.Assignments
	if len(assignments) > 0 {
		if len(assignments) != add {
			return nil, errorf(CodeInvalidReplicaAssignment, "%d assignments given for %d new partitions", len(assignments), add)
		}
	} else {
		rf := len(t.Partitions[0].Target())
		cell := topicCell(img, t)
		cells := CellBrokers(img)
		if len(cells[cell]) < rf {
			return nil, errorf(CodeInvalidReplicationFactor, "topic %q has replication factor %d but its cell %q has %d live brokers; start brokers there or give explicit assignments", cp.Topic, rf, cell, len(cells[cell]))
		}
		assignments = AssignReplicas(cells[cell], LoadOf(img), add, rf)
	}
	return &Command{CreatePartitions: &CreatePartitionsCmd{Topic: cp.Topic, ID: t.ID, Assignments: assignments}}, nil
}

// PlanAlterConfigs builds the command setting a topic's new overrides.
func PlanAlterConfigs(img *Image, req AlterConfigsRequest, validate ConfigValidator) (*Command, *Error) {
	t := img.Topics[req.Topic]
	if t == nil {
		return nil, errorf(CodeUnknownTopicOrPartition, "topic %q does not exist", req.Topic)
	}
	set, err := validateConfigs(req.Set, validate)
	if err != nil {
		return nil, err
	}
	next := map[string]string{}
	if !req.Replace {
		for k, v := range t.Configs {
			next[k] = v
		}
	}
	for _, k := range req.Delete {
		if _, ok := set[k]; ok {
			return nil, errorf(CodeInvalidRequest, "config %s is both set and deleted", k)
		}
		delete(next, k)
	}
	for k, v := range set {
		next[k] = v
	}
	return &Command{AlterConfigs: &AlterConfigsCmd{Topic: req.Topic, Configs: next}}, nil
}

// NoBroker is the broker id that names none.
const NoBroker int32 = -1

// PlanDecommission builds the command that marks broker id
// decommissioning and moves every replica of it to another broker of its
// cell: to, when to is not NoBroker (a replacement: the new broker takes
// the old one's place in every partition it does not hold already), else
// an unused rack first, then the least loaded broker.
func PlanDecommission(img *Image, id, to int32) (*Command, *Error) {
	b := img.Brokers[id]
	if b == nil {
		return nil, errorf(CodeBrokerNotRegistered, "broker %d is not registered", id)
	}
	if to != NoBroker {
		tb := img.Brokers[to]
		switch {
		case tb == nil:
			return nil, errorf(CodeBrokerNotRegistered, "cannot decommission broker %d to broker %d: broker %d is not registered", id, to, to)
		case to == id:
			return nil, errorf(CodeInvalidRequest, "cannot decommission broker %d to itself", id)
		case tb.Cell != b.Cell:
			return nil, errorf(CodeInvalidReplicaAssignment, "cannot decommission broker %d (cell %s) to broker %d of cell %s: replicas stay in their cell", id, b.Cell, to, tb.Cell)
		case tb.Decommissioning:
			return nil, errorf(CodeInvalidReplicaAssignment, "cannot decommission broker %d to broker %d: broker %d is being decommissioned itself", id, to, to)
		case !tb.Alive():
			return nil, errorf(CodeInvalidReplicaAssignment, "cannot decommission broker %d to broker %d: broker %d is %s; start it first", id, to, to, tb.State)
		}
	}
	var cell []*Broker
	for _, c := range CellBrokers(img)[b.Cell] {
		if c.ID != id {
			cell = append(cell, c)
		}
	}
	load := LoadOf(img)
	cmd := &DecommissionCmd{ID: id}
	for _, t := range img.SortedTopics() {
		for i, p := range t.Partitions {
			target := p.Target()
			pos := slices.Index(target, id)
			if pos < 0 {
				continue
			}
			keep := without(target, id)
			r := to
			if to == NoBroker || slices.Contains(keep, to) {
				r = replacementFor(cell, load, keep, id, img)
			}
			if r < 0 {
				return nil, errorf(CodeInvalidReplicationFactor,
					"cannot decommission broker %d: %s-%d needs a replacement in cell %q but every other live broker there already holds it; start another broker in the cell first",
					id, t.Name, i, b.Cell)
			}
			load.Replicas[r]++
			nt := slices.Clone(target)
			nt[pos] = r
			cmd.Reassignments = append(cmd.Reassignments, Reassignment{Topic: t.Name, Partition: int32(i), Replicas: nt})
		}
	}
	return &Command{Decommission: cmd}, nil
}

// ListReassignments returns the reassignments in progress in img.
func ListReassignments(img *Image) []ReassignmentStatus {
	var out []ReassignmentStatus
	for _, t := range img.SortedTopics() {
		for i, p := range t.Partitions {
			if p.Reassigning() {
				out = append(out, ReassignmentStatus{
					Topic: t.Name, Partition: int32(i), Replicas: slices.Clone(p.Replicas),
					AddingReplicas: slices.Clone(p.AddingReplicas), RemovingReplicas: slices.Clone(p.RemovingReplicas),
					ISR: slices.Clone(p.ISR), Leader: p.Leader,
				})
			}
		}
	}
	return out
}

package controller

// Partition reassignment.

import "slices"

func (s *State) reassign(rs []Reassignment) []ReassignmentResult {
	out := make([]ReassignmentResult, 0, len(rs))
	for _, r := range rs {
		res := ReassignmentResult{Topic: r.Topic, Partition: r.Partition}
		t, p, err := s.partition(r.Topic, r.Partition)
		if err == nil {
			var np *Partition
			if np, err = s.reassigned(t, p, r.Replicas); err == nil {
				s.put(t, r.Partition, np)
			}
		}
		res.Error = err
		out = append(out, res)
	}
	return out
}

// reassigned returns p with a reassignment to target started (or, with nil
// target, cancelled), completed at once if target is already in sync.
func (s *State) reassigned(t *Topic, p *Partition, target []int32) (*Partition, *Error) {
	orig := make([]int32, 0, len(p.Replicas))
	for _, r := range p.Replicas {
		if !slices.Contains(p.AddingReplicas, r) {
			orig = append(orig, r)
		}
	}
	if target == nil {
		if !p.Reassigning() {
			return nil, errorf(CodeNoReassignmentInProgress, "no reassignment of %s is in progress", t.Name)
		}
		target = orig
	} else if err := s.checkAssignment(target); err != nil {
		return nil, err
	}
	np := p.Clone()
	np.AddingReplicas, np.RemovingReplicas = nil, nil
	for _, r := range target {
		if !slices.Contains(orig, r) {
			np.AddingReplicas = append(np.AddingReplicas, r)
		}
	}
	for _, r := range orig {
		if !slices.Contains(target, r) {
			np.RemovingReplicas = append(np.RemovingReplicas, r)
		}
	}
	np.Replicas = append(slices.Clone(target), np.RemovingReplicas...)
	var isr []int32
	for _, r := range np.ISR {
		if slices.Contains(np.Replicas, r) {
			isr = append(isr, r)
		}
	}
	if len(isr) == 0 {
		return nil, errorf(CodeInvalidReplicaAssignment, "no in-sync replica would remain; keep at least one of %v", p.ISR)
	}
	np.ISR = isr
	if !slices.Contains(np.ISR, np.Leader) {
		s.elect(t, np)
	}
	s.completeReassignment(t, np)
	return np, nil
}

// completeReassignment finishes np's reassignment once every target
// replica is in the ISR: the removed replicas go, and the leader moves if
// it was one of them.
func (s *State) completeReassignment(t *Topic, np *Partition) {
	if !np.Reassigning() {
		return
	}
	target := np.Target()
	for _, r := range target {
		if !slices.Contains(np.ISR, r) {
			return
		}
	}
	np.Replicas = target
	np.AddingReplicas, np.RemovingReplicas = nil, nil
	var isr []int32
	for _, r := range np.ISR {
		if slices.Contains(target, r) {
			isr = append(isr, r)
		}
	}
	np.ISR = isr
	if !slices.Contains(target, np.Leader) {
		s.elect(t, np)
	}
}

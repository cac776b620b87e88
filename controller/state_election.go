package controller

// Leader election rules.

import "slices"

// eligible reports whether broker id may lead or join an ISR.
func (s *State) eligible(id int32) bool { return s.img.Brokers[id].Alive() }

// pickLeader chooses a leader for p: the first replica (in preference
// order) that is in the ISR, alive and not demoted; else the first alive
// demoted ISR member; else, when unclean is allowed, the first alive
// replica outside the ISR (unclean reports that case). NoLeader if none.
func (s *State) pickLeader(t *Topic, p *Partition, unclean bool) (leader int32, wasUnclean bool) {
	demoted := NoLeader
	for _, r := range p.Replicas {
		if !slices.Contains(p.ISR, r) || !s.eligible(r) {
			continue
		}
		if !s.img.Brokers[r].Demoted {
			return r, false
		}
		if demoted == NoLeader {
			demoted = r
		}
	}
	if demoted != NoLeader || !unclean {
		return demoted, false
	}
	for _, pass := range []bool{false, true} { // non-demoted first
		for _, r := range p.Replicas {
			if s.eligible(r) && s.img.Brokers[r].Demoted == pass {
				return r, true
			}
		}
	}
	return NoLeader, false
}

// uncleanAllowed reports the topic's unclean.leader.election.enable.
func uncleanAllowed(t *Topic) bool { return t.Configs["unclean.leader.election.enable"] == "true" }

// elect sets np's leader by pickLeader, with unclean election if the topic
// allows it (the ISR then becomes just the new leader).
func (s *State) elect(t *Topic, np *Partition) {
	l, unclean := s.pickLeader(t, np, uncleanAllowed(t))
	np.Leader = l
	if unclean {
		np.ISR = []int32{l}
	}
}

func (s *State) electLeaders(req *ElectLeadersRequest) []ElectionResult {
	var out []ElectionResult
	one := func(t *Topic, i int32, p *Partition, explicit bool) {
		res := ElectionResult{Topic: t.Name, Partition: i, Leader: p.Leader}
		switch req.Type {
		case ElectUnclean:
			if p.Leader != NoLeader {
				if !explicit {
					return
				}
				res.Error = errorf(CodeElectionNotNeeded, "partition has leader %d; unclean election is only for leaderless partitions", p.Leader)
				break
			}
			l, unclean := s.pickLeader(t, p, true)
			if l == NoLeader {
				res.Error = errorf(CodeEligibleLeadersNotAvailable, "no replica of %v is alive; bring one of them back", p.Replicas)
				break
			}
			s.update(t, i, func(np *Partition) {
				np.Leader = l
				if unclean {
					np.ISR = []int32{l}
				}
			})
			res.Leader = l
		default:
			pref := p.Replicas[0]
			if p.Leader == pref {
				if !explicit {
					return
				}
				res.Error = errorf(CodeElectionNotNeeded, "preferred replica %d already leads", pref)
				break
			}
			b := s.img.Brokers[pref]
			switch {
			case !b.Alive():
				res.Error = errorf(CodePreferredLeaderNotAvailable, "preferred replica %d is not alive", pref)
			case !slices.Contains(p.ISR, pref):
				res.Error = errorf(CodePreferredLeaderNotAvailable, "preferred replica %d is not in the ISR %v; wait for it to catch up", pref, p.ISR)
			case b.Demoted:
				res.Error = errorf(CodePreferredLeaderNotAvailable, "preferred replica %d is demoted; undemote it first", pref)
			}
			if res.Error != nil {
				break
			}
			s.update(t, i, func(np *Partition) { np.Leader = pref })
			res.Leader = pref
		}
		out = append(out, res)
	}
	if len(req.Partitions) == 0 {
		s.eachPartition(func(t *Topic, i int32, p *Partition) { one(t, i, p, false) })
		return out
	}
	for _, tp := range req.Partitions {
		t, p, err := s.partition(tp.Topic, tp.Partition)
		if err != nil {
			out = append(out, ElectionResult{Topic: tp.Topic, Partition: tp.Partition, Leader: NoLeader, Error: err})
			continue
		}
		one(t, tp.Partition, p, true)
	}
	return out
}

package controller

// Handlers of the admin API: topics, configs, brokers, elections,
// reassignments, the quorum.

import (
	"crypto/rand"
	"net/http"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

func (s *Server) handleMetadata(r *http.Request) (any, *Error) {
	img, idx := s.fsm.image()
	return &Delta{Offset: int64(idx), Image: img}, nil
}

// dryRun applies cmd to a copy of the image and returns the verdict.
func (s *Server) dryRun(cmd *Command) Result {
	var res Result
	s.fsm.read(func(st *State) {
		res = NewStateFrom(st.img.Clone(), st.index).Apply(st.index+1, cmd)
	})
	return res
}

func newTopicID() TopicID {
	var id TopicID
	for id == (TopicID{}) {
		_, _ = rand.Read(id[:])
		id[6] = id[6]&0x0f | 0x40 // version 4
		id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant
	}
	return id
}

type resultsBody[T any] struct {
	Results []T `json:"results"`
}

func (s *Server) handleCreateTopics(r *http.Request) (any, *Error) {
	var req CreateTopicsRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	out := resultsBody[TopicResult]{Results: []TopicResult{}}
	s.propMu.Lock()
	defer s.propMu.Unlock()
	for _, ct := range req.Topics {
		res := TopicResult{Name: ct.Name}
		var cmd *Command
		var err *Error
		s.fsm.read(func(st *State) { cmd, err = PlanCreateTopic(st.img, ct, newTopicID(), s.cfg.ValidateTopicConfig) })
		if err == nil {
			if req.ValidateOnly {
				err = s.dryRun(cmd).Err
			} else {
				_, err = result(s.proposeLocked(cmd))
			}
		}
		if err == nil && !req.ValidateOnly {
			res.ID = cmd.CreateTopic.ID
			s.logger.Info("created topic", "topic", ct.Name, "partitions", len(cmd.CreateTopic.Assignments), "topic_id", res.ID)
		}
		res.Error = err
		out.Results = append(out.Results, res)
	}
	return out, nil
}

func (s *Server) handleDeleteTopics(r *http.Request) (any, *Error) {
	var req DeleteTopicsRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	out := resultsBody[TopicResult]{Results: []TopicResult{}}
	s.propMu.Lock()
	defer s.propMu.Unlock()
	for _, name := range req.Names {
		res := TopicResult{Name: name}
		var t *Topic
		s.fsm.read(func(st *State) { t = st.img.Topics[name] })
		switch {
		case t == nil:
			res.Error = errorf(CodeUnknownTopicOrPartition, "topic %q does not exist", name)
		case req.ValidateOnly:
			res.ID = t.ID
		default:
			res.ID = t.ID
			_, res.Error = result(s.proposeLocked(&Command{DeleteTopic: &DeleteTopicCmd{Name: name, ID: t.ID}}))
			if res.Error == nil {
				s.logger.Info("deleted topic", "topic", name)
			}
		}
		out.Results = append(out.Results, res)
	}
	return out, nil
}

func (s *Server) handleCreatePartitions(r *http.Request) (any, *Error) {
	var req CreatePartitionsRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	out := resultsBody[TopicResult]{Results: []TopicResult{}}
	s.propMu.Lock()
	defer s.propMu.Unlock()
	for _, cp := range req.Topics {
		res := TopicResult{Name: cp.Topic}
		var cmd *Command
		var err *Error
		s.fsm.read(func(st *State) { cmd, err = PlanCreatePartitions(st.img, cp) })
		if err == nil {
			res.ID = cmd.CreatePartitions.ID
			if req.ValidateOnly {
				err = s.dryRun(cmd).Err
			} else {
				_, err = result(s.proposeLocked(cmd))
			}
		}
		res.Error = err
		out.Results = append(out.Results, res)
	}
	return out, nil
}

func (s *Server) handleAlterConfigs(r *http.Request) (any, *Error) {
	var req AlterConfigsRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	s.propMu.Lock()
	defer s.propMu.Unlock()
	var cmd *Command
	var err *Error
	s.fsm.read(func(st *State) { cmd, err = PlanAlterConfigs(st.img, req, s.cfg.ValidateTopicConfig) })
	if err != nil {
		return nil, err
	}
	if !req.ValidateOnly {
		if _, err := result(s.proposeLocked(cmd)); err != nil {
			return nil, err
		}
	}
	return ConfigsResult{Topic: req.Topic, Configs: cmd.AlterConfigs.Configs}, nil
}

func (s *Server) handleDescribeConfigs(r *http.Request) (any, *Error) {
	name := r.URL.Query().Get("topic")
	var out *ConfigsResult
	s.fsm.read(func(st *State) {
		if t := st.img.Topics[name]; t != nil {
			out = &ConfigsResult{Topic: name, Configs: map[string]string{}}
			for k, v := range t.Configs {
				out.Configs[k] = v
			}
		}
	})
	if out == nil {
		return nil, errorf(CodeUnknownTopicOrPartition, "topic %q does not exist", name)
	}
	return out, nil
}

// describeBroker builds b's description. Callers hold propMu (liveness).
func (s *Server) describeBroker(img *Image, b *Broker, now time.Time) BrokerDescription {
	d := BrokerDescription{Broker: *b, LastHeartbeatAge: s.live.Age(b.ID, now)}
	for _, t := range img.Topics {
		for _, p := range t.Partitions {
			if p.Leader == b.ID {
				d.Leaders++
			}
			if slices.Contains(p.Replicas, b.ID) {
				d.Replicas++
			}
		}
	}
	return d
}

func (s *Server) handleCluster(r *http.Request) (any, *Error) {
	s.propMu.Lock()
	defer s.propMu.Unlock()
	now := s.cfg.Now()
	out := ClusterDescription{ControllerID: s.cfg.ID, Brokers: []BrokerDescription{}}
	s.fsm.read(func(st *State) {
		out.ClusterID = st.img.ClusterID
		out.MetadataOffset = int64(st.index)
		for _, b := range st.img.SortedBrokers() {
			out.Brokers = append(out.Brokers, s.describeBroker(st.img, b, now))
		}
	})
	return out, nil
}

func (s *Server) handleDescribeBroker(r *http.Request) (any, *Error) {
	id, err := pathBroker(r)
	if err != nil {
		return nil, err
	}
	s.propMu.Lock()
	defer s.propMu.Unlock()
	return s.describeBrokerLocked(id)
}

func (s *Server) describeBrokerLocked(id int32) (any, *Error) {
	var out *BrokerDescription
	s.fsm.read(func(st *State) {
		if b := st.img.Brokers[id]; b != nil {
			d := s.describeBroker(st.img, b, s.cfg.Now())
			out = &d
		}
	})
	if out == nil {
		return nil, errorf(CodeBrokerNotRegistered, "broker %d is not registered; vigil admin brokers lists the brokers", id)
	}
	return out, nil
}

func (s *Server) handleBrokerAction(r *http.Request) (any, *Error) {
	id, err := pathBroker(r)
	if err != nil {
		return nil, err
	}
	action := r.PathValue("action")
	to := NoBroker
	if action == "decommission" {
		var req DecommissionRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		if req.To != nil {
			to = *req.To
		}
	}
	s.propMu.Lock()
	defer s.propMu.Unlock()
	var cmd *Command
	switch action {
	case "demote", "undemote":
		cmd = &Command{DemoteBroker: &DemoteBrokerCmd{ID: id, Demoted: action == "demote"}}
	case "fence":
		cmd = &Command{FenceBroker: &FenceBrokerCmd{ID: id, Admin: true}}
	case "unfence":
		c := &UnfenceBrokerCmd{ID: id, ClearAdmin: true}
		s.fsm.read(func(st *State) {
			if b := st.img.Brokers[id]; b != nil && s.live.Alive(id, s.cfg.Now()) {
				c.Epoch = b.Epoch
			}
		})
		cmd = &Command{UnfenceBroker: c}
	case "decommission":
		s.fsm.read(func(st *State) { cmd, err = PlanDecommission(st.img, id, to) })
		if err != nil {
			return nil, err
		}
	case "unregister":
		if _, err := result(s.proposeLocked(&Command{UnregisterBroker: &UnregisterBrokerCmd{ID: id}})); err != nil {
			return nil, err
		}
		s.live.Forget(id)
		s.logger.Info("broker unregistered", "broker", id)
		return struct{}{}, nil
	default:
		return nil, errorf(CodeInvalidRequest, "unknown broker action %q; use demote, undemote, fence, unfence, decommission or unregister", action)
	}
	if _, err := result(s.proposeLocked(cmd)); err != nil {
		return nil, err
	}
	s.logger.Info("broker "+action, "broker", id)
	return s.describeBrokerLocked(id)
}

// RemoveFromISRRequest takes Broker out of a partition's ISR.
// DecommissionRequest is the body of POST /v1/brokers/{id}/decommission:
// To, when set, is the broker that takes the decommissioned one's place in
// every partition (a replacement); else placement chooses per partition.
type DecommissionRequest struct {
	To *int32 `json:"to,omitempty"`
}

type RemoveFromISRRequest = RemoveFromISRCmd

func (s *Server) handleRemoveFromISR(r *http.Request) (any, *Error) {
	var req RemoveFromISRRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return result(s.propose(&Command{RemoveFromISR: &req}))
}

func (s *Server) handleElect(r *http.Request) (any, *Error) {
	var req ElectLeadersRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Type == "" {
		req.Type = ElectPreferred
	}
	if req.Type != ElectPreferred && req.Type != ElectUnclean {
		return nil, errorf(CodeInvalidRequest, "election type %q: use preferred or unclean", req.Type)
	}
	v, err := result(s.propose(&Command{ElectLeaders: &ElectLeadersCmd{req}}))
	if err != nil {
		return nil, err
	}
	out, _ := v.([]ElectionResult)
	if out == nil {
		out = []ElectionResult{}
	}
	return resultsBody[ElectionResult]{Results: out}, nil
}

type reassignBody struct {
	Reassignments []Reassignment `json:"reassignments"`
}

func (s *Server) handleReassign(r *http.Request) (any, *Error) {
	var req reassignBody
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	v, err := result(s.propose(&Command{Reassign: &ReassignCmd{Reassignments: req.Reassignments}}))
	if err != nil {
		return nil, err
	}
	out, _ := v.([]ReassignmentResult)
	return resultsBody[ReassignmentResult]{Results: out}, nil
}

func (s *Server) handleListReassignments(r *http.Request) (any, *Error) {
	var out []ReassignmentStatus
	s.fsm.read(func(st *State) { out = ListReassignments(st.img) })
	if out == nil {
		out = []ReassignmentStatus{}
	}
	return reassignmentsBody{Reassignments: out}, nil
}

type reassignmentsBody struct {
	Reassignments []ReassignmentStatus `json:"reassignments"`
}

func (s *Server) handleQuorum(r *http.Request) (any, *Error) {
	out := QuorumDescription{Self: s.cfg.ID, Voters: []QuorumVoter{}}
	_, lid := s.raft.LeaderWithID()
	out.LeaderID = string(lid)
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, errorf(CodeUnknownServerError, "reading the quorum configuration: %v", err)
	}
	s.fsm.read(func(st *State) {
		out.AppliedIndex = st.index
		out.LeaderAddr = st.img.Controllers[out.LeaderID]
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage != raft.Voter {
				continue
			}
			out.Voters = append(out.Voters, QuorumVoter{ID: string(srv.ID), RaftAddr: string(srv.Address), APIAddr: st.img.Controllers[string(srv.ID)]})
		}
	})
	out.CommitIndex = s.raft.CommitIndex()
	out.LastIndex = s.raft.LastIndex()
	out.Term = s.raft.CurrentTerm()
	return out, nil
}

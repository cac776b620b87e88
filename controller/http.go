package controller

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// maxBody bounds a request body.
const maxBody = 8 << 20

func (s *Server) startHTTP() error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
			return err
		}
	}
	s.ln = ln
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("controller API server failed", "err", err)
		}
	}()
	s.logger.Info("controller API serving", "addr", "http://"+ln.Addr().String())
	return nil
}

// handlerFunc answers one API call with a JSON value or an *Error.
type handlerFunc func(r *http.Request) (any, *Error)

// Handler returns the HTTP API (see docs/controller.md). Calls that need
// the active controller answer NOT_CONTROLLER elsewhere.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, needActive bool, h handlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if !s.authorized(r) {
				writeError(w, errorf(CodeClusterAuthorizationFailed, "missing or wrong admin token; send Authorization: Bearer <token> (vigil admin --token)"))
				return
			}
			if needActive && !s.active.Load() {
				writeError(w, s.notController())
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			v, err := h(r)
			if err != nil {
				writeError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, v)
		})
	}
	// Broker side.
	route("POST /v1/brokers/register", true, s.handleRegister)
	route("POST /v1/brokers/heartbeat", true, s.handleHeartbeat)
	route("POST /v1/partitions/alter", true, s.handleAlterPartition)
	route("POST /v1/producer-ids/allocate", true, s.handleAllocateProducerIDs)
	route("GET /v1/metadata/watch", false, s.handleWatch)
	// Admin side.
	route("GET /v1/metadata", true, s.handleMetadata)
	route("POST /v1/topics/create", true, s.handleCreateTopics)
	route("POST /v1/topics/delete", true, s.handleDeleteTopics)
	route("POST /v1/topics/partitions", true, s.handleCreatePartitions)
	route("POST /v1/configs/alter", true, s.handleAlterConfigs)
	route("GET /v1/configs", true, s.handleDescribeConfigs)
	route("GET /v1/cluster", true, s.handleCluster)
	route("GET /v1/brokers/{id}", true, s.handleDescribeBroker)
	route("POST /v1/brokers/{id}/{action}", true, s.handleBrokerAction)
	route("POST /v1/partitions/remove-from-isr", true, s.handleRemoveFromISR)
	route("POST /v1/partitions/elect", true, s.handleElect)
	route("POST /v1/partitions/reassign", true, s.handleReassign)
	route("GET /v1/partitions/reassignments", true, s.handleListReassignments)
	route("GET /v1/quorum", false, s.handleQuorum)
	return mux
}

func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.AdminToken == "" {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AdminToken)) == 1
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *Error) {
	writeJSON(w, httpStatus(e.Code), errorBody{Error: e})
}

func decode(r *http.Request, v any) *Error {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		return errorf(CodeInvalidRequest, "request body is not valid JSON for this call: %v", err)
	}
	return nil
}

func pathBroker(r *http.Request) (int32, *Error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 32)
	if err != nil {
		return 0, errorf(CodeInvalidRequest, "broker id %q is not a number", r.PathValue("id"))
	}
	return int32(id), nil
}

// result turns a proposal's outcome into the handler's.
func result(res Result, err *Error) (any, *Error) {
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return res.Value, nil
}

// ---- broker side ----

func (s *Server) handleRegister(r *http.Request) (any, *Error) {
	var reg BrokerRegistration
	if err := decode(r, &reg); err != nil {
		return nil, err
	}
	if reg.IncarnationID == "" {
		return nil, errorf(CodeInvalidRequest, "incarnation_id is required: a random id per broker process start")
	}
	s.propMu.Lock()
	defer s.propMu.Unlock()
	now := s.cfg.Now()
	var err *Error
	s.fsm.read(func(st *State) { err = s.live.CheckRegistration(st.img, reg, now) })
	if err != nil {
		return nil, err
	}
	v, err := result(s.proposeLocked(&Command{RegisterBroker: &RegisterBrokerCmd{reg}}))
	if err != nil {
		return nil, err
	}
	s.live.Touch(reg.ID, now)
	s.logger.Info("broker registered", "broker", reg.ID, "epoch", v, "cell", reg.Cell, "rack", reg.Rack, "endpoint", reg.Endpoint)
	return RegisterResult{Epoch: v.(int64)}, nil
}

func (s *Server) handleHeartbeat(r *http.Request) (any, *Error) {
	var req HeartbeatRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	s.propMu.Lock()
	defer s.propMu.Unlock()
	var cmds []*Command
	var err *Error
	s.fsm.read(func(st *State) { cmds, err = s.live.Heartbeat(st.img, req, s.cfg.Now()) })
	if err != nil {
		return nil, err
	}
	for _, c := range cmds {
		if _, err := result(s.proposeLocked(c)); err != nil {
			return nil, err
		}
		if c.UnfenceBroker != nil {
			s.logger.Info("broker unfenced by heartbeat", "broker", req.ID)
		}
		if c.ControlledShutdown != nil {
			s.logger.Info("broker in controlled shutdown", "broker", req.ID)
		}
	}
	var out HeartbeatResult
	s.fsm.read(func(st *State) { out = HeartbeatAnswer(st.img, req.ID, int64(st.index)) })
	return out, nil
}

func (s *Server) handleAlterPartition(r *http.Request) (any, *Error) {
	var req AlterPartitionRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return result(s.propose(&Command{AlterPartition: &AlterPartitionCmd{req}}))
}

// allocateProducerIDsBody is the request of AllocateProducerIDs.
type allocateProducerIDsBody struct {
	BrokerID    int32 `json:"broker_id"`
	BrokerEpoch int64 `json:"broker_epoch"`
}

func (s *Server) handleAllocateProducerIDs(r *http.Request) (any, *Error) {
	var req allocateProducerIDsBody
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return result(s.propose(&Command{AllocateProducerIDs: &AllocateProducerIDsCmd{BrokerID: req.BrokerID, BrokerEpoch: req.BrokerEpoch}}))
}

func (s *Server) handleWatch(r *http.Request) (any, *Error) {
	q := r.URL.Query()
	after := int64(-1)
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, errorf(CodeInvalidRequest, "after=%q is not a number", v)
		}
		after = n
	}
	wait := s.cfg.WatchMaxWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return nil, errorf(CodeInvalidRequest, "wait=%q is not a duration such as 10s", v)
		}
		wait = min(d, wait)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		d, ch, ok := s.fsm.delta(after)
		if ok {
			return d, nil
		}
		select {
		case <-ch:
			continue
		case <-timer.C:
		case <-r.Context().Done():
		case <-s.stop:
		}
		img, idx := s.fsm.image()
		if uint64(after) > idx {
			// The caller is ahead of this controller (it came from one that
			// has applied more, or the data here was lost): start it over.
			return &Delta{Offset: int64(idx), Image: img}, nil
		}
		return &Delta{Offset: int64(idx)}, nil
	}
}

// ---- admin side ----

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
		s.fsm.read(func(st *State) { cmd, err = PlanDecommission(st.img, id) })
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

package controller

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
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
	mux.Handle("GET /metrics", s.metricsHandler())
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
		if idx := s.fsm.appliedIndex(); after > 0 && uint64(after) > idx {
			// The caller has seen more than this controller has applied
			// (from the active controller, while this one lags or has
			// just lost the leadership): answering with this older state
			// would take the caller's image back. Send it to the active
			// controller.
			e := s.notController()
			e.Message = fmt.Sprintf("controller %s has applied the metadata log up to %d, behind the caller's %d; watch the active controller (%s)", s.cfg.ID, idx, after, e.LeaderAddr)
			return nil, e
		}
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
		idx := s.fsm.appliedIndex()
		if uint64(after) > idx {
			continue // answered above
		}
		return &Delta{Offset: int64(idx)}, nil
	}
}

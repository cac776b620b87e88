package slo

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Handler serves the engine's HTTP API:
//
//	GET /api/v1/slos          every SLO's status (groups, roll-ups, worst offenders) and the latency roll-ups
//	GET /api/v1/slos/{name}   one SLO: spec, status and history (?range=1d&step=5m; default the last 6h)
//	GET /api/v1/signals       the active signals
//
// Answers are JSON: {"status":"success","data":...} or
// {"status":"error","error":"..."} with a 4xx/5xx code, as Prometheus does.
func (e *Engine) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/slos", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"evaluated_at":    e.LastEvaluation(),
			"slos":            e.Statuses(),
			"latency_rollups": e.Rollups(),
		})
	})
	mux.HandleFunc("GET /api/v1/slos/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		spec, ok := e.SLO(name)
		if !ok {
			writeError(w, http.StatusNotFound, "no SLO named "+name)
			return
		}
		rng, step := 6*time.Hour, time.Duration(0)
		if v := r.URL.Query().Get("range"); v != "" {
			d, err := model.ParseDuration(v)
			if err != nil || d <= 0 {
				writeError(w, http.StatusBadRequest, "range: want a duration such as 1d")
				return
			}
			rng = time.Duration(d)
		}
		if v := r.URL.Query().Get("step"); v != "" {
			d, err := model.ParseDuration(v)
			if err != nil || d <= 0 {
				writeError(w, http.StatusBadRequest, "step: want a duration such as 5m")
				return
			}
			step = time.Duration(d)
		}
		if step == 0 {
			step = max(e.cfg.Step, rng/240)
		}
		if rng/step > 11000 {
			writeError(w, http.StatusBadRequest, "range/step: at most 11000 points")
			return
		}
		st, _ := e.Status(name)
		end := e.LastEvaluation()
		if st != nil {
			end = st.At
		}
		var hist map[string][]Series
		if !end.IsZero() {
			var err error
			hist, err = e.History(r.Context(), name, end.Add(-rng), end, step)
			if err != nil {
				writeError(w, http.StatusInternalServerError, err.Error())
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"spec": spec, "status": st, "history": historyJSON(hist)})
	})
	mux.HandleFunc("GET /api/v1/signals", func(w http.ResponseWriter, r *http.Request) {
		sigs := e.Signals()
		if sigs == nil {
			sigs = []Signal{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"evaluated_at": e.LastEvaluation(), "signals": sigs})
	})
	return mux
}

type historySeries struct {
	Labels map[string]string `json:"labels"`
	Points [][2]any          `json:"points"` // [unix seconds, value]
}

func historyJSON(h map[string][]Series) map[string][]historySeries {
	out := map[string][]historySeries{}
	for k, ss := range h {
		hs := []historySeries{}
		for _, s := range ss {
			x := historySeries{Labels: labelsMap(s.Labels)}
			for _, p := range s.Points {
				x.Points = append(x.Points, [2]any{float64(p.T) / 1000, Float(p.V)})
			}
			hs = append(hs, x)
		}
		out[k] = hs
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(map[string]any{"status": "success", "data": data})
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "error", "error": strings.TrimSpace(msg)})
}

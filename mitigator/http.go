package mitigator

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Handler serves the mitigator's HTTP API:
//
//	GET  /api/v1/mitigations               decisions, newest first (?open=true: open ones only; ?limit=N, default 100)
//	GET  /api/v1/mitigations/{id}          one decision
//	POST /api/v1/mitigations/{id}/approve  carry out a pending decision (mode approve)
//	POST /api/v1/mitigations/{id}/undo     undo a decision
//	GET  /api/v1/mitigator/mode            the mode
//	PUT  /api/v1/mitigator/mode            set the mode: {"mode":"off|dry-run|approve|auto"} (off is the kill switch)
//	GET  /api/v1/mitigator/status          mode, open mitigations, suppressions (mitigation_suppressed signals)
//	POST /api/v1/alertmanager              Alertmanager webhook (version 4): alerts become signals
//
// Answers are JSON, {"status":"success","data":...} or
// {"status":"error","error":"..."} with a 4xx code that says what to do.
func (m *Mitigator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/mitigations", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit := 100
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				writeError(w, http.StatusBadRequest, "limit: want a positive number of decisions, such as ?limit=50")
				return
			}
			limit = n
		}
		onlyOpen := false
		if v := q.Get("open"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "open: want true or false")
				return
			}
			onlyOpen = b
		}
		all := m.Decisions()
		out := []Decision{}
		for i := len(all) - 1; i >= 0 && len(out) < limit; i-- {
			if onlyOpen && !all[i].Open {
				continue
			}
			out = append(out, all[i])
		}
		writeJSON(w, http.StatusOK, map[string]any{"mode": m.Mode(), "total": len(all), "mitigations": out, "suppressed": m.Suppressed()})
	})
	mux.HandleFunc("GET /api/v1/mitigations/{id}", func(w http.ResponseWriter, r *http.Request) {
		d, ok := m.Decision(r.PathValue("id"))
		if !ok {
			writeErr(w, errNotFound(r.PathValue("id")))
			return
		}
		writeJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("POST /api/v1/mitigations/{id}/approve", func(w http.ResponseWriter, r *http.Request) {
		d, err := m.Approve(r.Context(), r.PathValue("id"))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("POST /api/v1/mitigations/{id}/undo", func(w http.ResponseWriter, r *http.Request) {
		d, err := m.Undo(r.Context(), r.PathValue("id"))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("/api/v1/mitigations/{id}/{verb}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("verb") {
		case "approve", "undo":
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "use POST /api/v1/mitigations/"+r.PathValue("id")+"/"+r.PathValue("verb"))
		default:
			writeError(w, http.StatusNotFound, "unknown verb "+strconv.Quote(r.PathValue("verb"))+": use approve or undo")
		}
	})
	mux.HandleFunc("GET /api/v1/mitigator/mode", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"mode": m.Mode()})
	})
	mux.HandleFunc("PUT /api/v1/mitigator/mode", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Mode string `json:"mode"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, `want a JSON body {"mode":"off|dry-run|approve|auto"}: `+err.Error())
			return
		}
		if !ValidMode(body.Mode) {
			writeError(w, http.StatusBadRequest, "mode "+strconv.Quote(body.Mode)+": want one of off (the kill switch), dry-run, approve, auto")
			return
		}
		if err := m.SetMode(body.Mode); err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"mode": m.Mode()})
	})
	mux.HandleFunc("/api/v1/mitigator/mode", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, PUT")
		writeError(w, http.StatusMethodNotAllowed, "use GET to read the mode or PUT {\"mode\":...} to set it")
	})
	mux.HandleFunc("GET /api/v1/mitigator/status", func(w http.ResponseWriter, r *http.Request) {
		var open []Decision
		for _, d := range m.Decisions() {
			if d.Open {
				open = append(open, d)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"mode": m.Mode(), "open": open, "suppressed": m.Suppressed()})
	})
	mux.HandleFunc("POST /api/v1/alertmanager", func(w http.ResponseWriter, r *http.Request) {
		wh, err := ParseAlertmanagerWebhook(r.Body)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		firing, resolved, err := m.am.Receive(wh)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"firing": firing, "resolved": resolved})
	})
	mux.HandleFunc("/api/v1/alertmanager", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "Alertmanager posts its webhooks here: configure a webhook_configs receiver with url http://HOST/api/v1/alertmanager")
	})
	mux.HandleFunc("/api/v1/mitigations", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "use GET /api/v1/mitigations; approve and undo are POST /api/v1/mitigations/{id}/approve|undo")
	})
	return mux
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

func writeErr(w http.ResponseWriter, err error) {
	var nf *notFoundError
	var cf *conflictError
	switch {
	case errors.As(err, &nf):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.As(err, &cf):
		writeError(w, http.StatusConflict, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// Mount registers the API of Handler on mux under /api/v1/mitigations,
// /api/v1/mitigator/ and /api/v1/alertmanager, next to other APIs (the
// SLO engine's) on one server.
func (m *Mitigator) Mount(mux *http.ServeMux) {
	h := m.Handler()
	for _, p := range []string{"/api/v1/mitigations", "/api/v1/mitigations/", "/api/v1/mitigator/", "/api/v1/alertmanager"} {
		mux.Handle(p, h)
	}
}

package slo

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// apiGet serves one GET through the engine's handler and decodes the
// answer's envelope.
func apiGet(t *testing.T, h http.Handler, url string) (code int, status, errMsg string, data json.RawMessage) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q, want application/json", url, ct)
	}
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		t.Fatalf("GET %s: %d, body not JSON: %v\n%s", url, rec.Code, err, rec.Body)
	}
	return rec.Code, env.Status, env.Error, env.Data
}

// GET /api/v1/slos/{name}: the spec, the latest status and the recorded
// history of budget remaining and 1h burn rate per group, over ?range at
// ?step ending at the last evaluation; bad requests are 4xx JSON errors
// that say what is wrong. The engine is evaluated on the synthetic fleet
// of engine_test.go up to 40m.
func TestAPISLOByName(t *testing.T) {
	db := openTestDB(t)
	writeFleet(t, db)
	clock := &fakeClock{}
	e := newTestEngine(t, db, testSpec, clock)
	h := e.Handler()

	// Before any evaluation: the spec, no status, no history.
	code, status, _, data := apiGet(t, h, "/api/v1/slos/requests")
	if code != 200 || status != "success" || !strings.Contains(string(data), `"name": "requests"`) || !strings.Contains(string(data), `"status": null`) {
		t.Errorf("before evaluating: %d %s %s", code, status, data)
	}

	for m := 1; m <= 40; m++ {
		cycleAt(t, e, clock, m)
	}
	type point [2]*float64
	var one struct {
		Spec    SLO     `json:"spec"`
		Status  *Status `json:"status"`
		History map[string][]struct {
			Labels map[string]string `json:"labels"`
			Points []point           `json:"points"`
		} `json:"history"`
	}
	code, status, msg, data := apiGet(t, h, "/api/v1/slos/requests?range=1h&step=5m")
	if code != 200 || status != "success" {
		t.Fatalf("GET /api/v1/slos/requests: %d %s %s", code, status, msg)
	}
	if err := json.Unmarshal(data, &one); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if one.Spec.Name != "requests" || one.Spec.Objective != 90 || one.Spec.Window.D() != time.Hour || strings.Join(one.Spec.GroupBy, ",") != "cluster,cell" {
		t.Errorf("spec %+v", one.Spec)
	}
	if one.Status == nil || !one.Status.At.Equal(time.UnixMilli(0).Add(40*time.Minute)) {
		t.Fatalf("status %+v, want the evaluation at 40m", one.Status)
	}
	a := groupOf(t, one.Status, "a")
	checkWindow(t, a, time.Hour, 1400, 1600)
	if a.State != statePage {
		t.Errorf("cell a: %s, want page", a.State)
	}
	// History from -20m to 40m every 5m; the engine recorded from 1m on,
	// so the points are 5m, 10m ... 40m. Cell a's budget (over the 1h
	// window = everything recorded): untouched to 30m; at 35m steps
	// 31..35 were half bad, 100 bad of 1400 (burn 0.714); at 40m 200
	// of 1600 (burn 1.25, budget -0.25). Cell b's is untouched.
	value := func(key, cell string, at time.Duration) float64 {
		t.Helper()
		for _, s := range one.History[key] {
			if s.Labels["cell"] != cell {
				continue
			}
			if s.Labels["cluster"] != "c1" || s.Labels["slo"] != "" || s.Labels["__name__"] != "" {
				t.Errorf("%s history labels %v, want the group's", key, s.Labels)
			}
			if len(s.Points) != 8 {
				t.Errorf("%s history of cell %s: %d points, want 8 (5m to 40m)", key, cell, len(s.Points))
			}
			for _, p := range s.Points {
				if p[0] != nil && p[1] != nil && *p[0] == at.Seconds() {
					return *p[1]
				}
			}
			t.Fatalf("%s history of cell %s has no point at %s: %v", key, cell, at, s.Points)
		}
		t.Fatalf("no %s history for cell %s in %+v", key, cell, one.History)
		return math.NaN()
	}
	for _, c := range []struct {
		key, cell string
		at        time.Duration
		want      float64
	}{
		{"budget_remaining", "a", 30 * time.Minute, 1},
		{"budget_remaining", "a", 35 * time.Minute, 1 - (100.0/1400)/0.1},
		{"budget_remaining", "a", 40 * time.Minute, -0.25},
		{"budget_remaining", "b", 40 * time.Minute, 1},
		{"burn_rate_1h", "a", 30 * time.Minute, 0},
		{"burn_rate_1h", "a", 40 * time.Minute, 1.25},
		{"burn_rate_1h", "b", 40 * time.Minute, 0},
	} {
		if v := value(c.key, c.cell, c.at); !near(v, c.want) {
			t.Errorf("%s of cell %s at %s: %v, want %v", c.key, c.cell, c.at, v, c.want)
		}
	}

	// The default range (6h) and step answer too.
	if code, status, msg, _ := apiGet(t, h, "/api/v1/slos/requests"); code != 200 || status != "success" {
		t.Errorf("default range: %d %s %s", code, status, msg)
	}

	// Bad requests: a 4xx JSON error whose message says what is wrong.
	for _, c := range []struct {
		url  string
		code int
		msg  string
	}{
		{"/api/v1/slos/nope", 404, "no SLO named nope"},
		{"/api/v1/slos/nope?range=1h", 404, "no SLO named nope"},
		{"/api/v1/slos/requests?range=abc", 400, "range: want a duration such as 1d"},
		{"/api/v1/slos/requests?range=-1h", 400, "range: want a duration such as 1d"},
		{"/api/v1/slos/requests?range=0s", 400, "range: want a duration such as 1d"},
		{"/api/v1/slos/requests?step=fast", 400, "step: want a duration such as 5m"},
		{"/api/v1/slos/requests?range=1h&step=0", 400, "step: want a duration such as 5m"},
		{"/api/v1/slos/requests?range=30d&step=1s", 400, "range/step: at most 11000 points"},
	} {
		code, status, msg, data := apiGet(t, h, c.url)
		if code != c.code || status != "error" || msg != c.msg || len(data) != 0 {
			t.Errorf("GET %s: %d %q %q data %s, want %d and error %q", c.url, code, status, msg, data, c.code, c.msg)
		}
	}
}

package mitigator

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A webhook as Alertmanager 0.27 posts it (webhook_configs, version 4).
const amFiring = `{
  "receiver": "vigil-mitigator",
  "status": "firing",
  "alerts": [
    {
      "status": "firing",
      "labels": {"alertname": "VigilStorageSlowVsCell", "signal": "storage_degraded", "broker": "2", "cell": "a", "cluster": "prod", "severity": "page"},
      "annotations": {"description": "A broker's fsync p99 is more than 5 times its cell's median broker."},
      "startsAt": "2026-01-02T03:00:00.000Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://prometheus:9090/graph?g0.expr=histogram_quantile",
      "fingerprint": "5c8e1d0f3b9a7e21"
    },
    {
      "status": "firing",
      "labels": {"alertname": "VigilProbeFailing", "broker": "1", "cell": "a", "severity": "info"},
      "annotations": {},
      "startsAt": "2026-01-02T03:00:00.000Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://prometheus:9090/graph",
      "fingerprint": "0a1b2c3d4e5f6a7b"
    }
  ],
  "groupLabels": {"alertname": "VigilStorageSlowVsCell"},
  "commonLabels": {"cell": "a"},
  "commonAnnotations": {},
  "externalURL": "http://alertmanager:9093",
  "version": "4",
  "groupKey": "{}:{alertname=\"VigilStorageSlowVsCell\"}",
  "truncatedAlerts": 0
}`

const amResolved = `{"receiver":"vigil-mitigator","status":"resolved","version":"4","groupKey":"{}","truncatedAlerts":0,
  "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://alertmanager:9093",
  "alerts":[{"status":"resolved","labels":{"alertname":"VigilStorageSlowVsCell","signal":"storage_degraded","broker":"2","cell":"a"},
  "annotations":{},"startsAt":"2026-01-02T03:00:00Z","endsAt":"2026-01-02T03:05:00Z","generatorURL":"","fingerprint":"5c8e1d0f3b9a7e21"}]}`

func do(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, rd))
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %q", method, path, rec.Body.String())
	}
	return rec.Code, out
}

// Alertmanager webhooks become signals the mitigator acts on; resolved
// alerts end them.
func TestAlertmanagerWebhook(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 3, 1), false, nil)
	api := h.m.Handler()
	code, out := do(t, api, "POST", "/api/v1/alertmanager", amFiring)
	if code != 200 || out["data"].(map[string]any)["firing"].(float64) != 2 {
		t.Fatalf("webhook: %d %v", code, out)
	}
	ss := h.m.Alertmanager().Signals()
	if len(ss) != 2 {
		t.Fatalf("signals %+v", ss)
	}
	var storage bool
	for _, s := range ss {
		if s.Name == "storage_degraded" {
			storage = s.Labels["broker"] == "2" && s.Source == "alertmanager" && len(s.Evidence) == 1 && strings.Contains(s.Description, "fsync")
		}
		if s.Labels["broker"] == "1" && s.Name != "VigilProbeFailing" {
			t.Fatalf("an alert without a signal label is named by its alertname: %+v", s)
		}
	}
	if !storage {
		t.Fatalf("no storage_degraded signal for broker 2: %+v", ss)
	}
	h.at(0, h.m.Alertmanager().Signals()...)
	h.at(3*sec, h.m.Alertmanager().Signals()...)
	h.wantDecisions("demote done 2")
	code, _ = do(t, api, "POST", "/api/v1/alertmanager", amResolved)
	if code != 200 {
		t.Fatal(code)
	}
	if ss := h.m.Alertmanager().Signals(); len(ss) != 1 {
		t.Fatalf("after resolve: %+v", ss)
	}
	// Alerts expire when Alertmanager stops sending them.
	h.now = h.now.Add(h.m.cfg.AlertTTL + sec)
	if ss := h.m.Alertmanager().Signals(); len(ss) != 0 {
		t.Fatalf("after the TTL: %+v", ss)
	}
}

// The API: listing, one decision, approve, undo, mode; every bad request
// gets a 4xx JSON error that says what to do.
func TestHTTPAPI(t *testing.T) {
	h := newHarness(t, newFakeCtrl(3, 3, 1), false, func(c *Config) { c.Mode = ModeApprove })
	api := h.m.Handler()
	s := sig("storage_degraded", 2)
	h.at(0, s)
	h.at(3*sec, s)
	code, out := do(t, api, "GET", "/api/v1/mitigations", "")
	data := out["data"].(map[string]any)
	if code != 200 || data["mode"] != "approve" || len(data["mitigations"].([]any)) != 1 {
		t.Fatalf("list: %d %v", code, out)
	}
	if code, out = do(t, api, "GET", "/api/v1/mitigations/1", ""); code != 200 || out["data"].(map[string]any)["outcome"] != OutPending {
		t.Fatalf("show: %d %v", code, out)
	}
	if code, out = do(t, api, "POST", "/api/v1/mitigations/1/approve", ""); code != 200 || out["data"].(map[string]any)["outcome"] != OutDone {
		t.Fatalf("approve: %d %v", code, out)
	}
	h.wantCalls("demote 2")
	if code, out = do(t, api, "POST", "/api/v1/mitigations/1/undo", ""); code != 200 || out["data"].(map[string]any)["action"] != ActUndemote {
		t.Fatalf("undo: %d %v", code, out)
	}
	if code, out = do(t, api, "PUT", "/api/v1/mitigator/mode", `{"mode":"off"}`); code != 200 || h.m.Mode() != ModeOff {
		t.Fatalf("mode: %d %v", code, out)
	}
	if code, out = do(t, api, "GET", "/api/v1/mitigator/mode", ""); code != 200 || out["data"].(map[string]any)["mode"] != "off" {
		t.Fatalf("mode: %d %v", code, out)
	}
	if code, _ = do(t, api, "GET", "/api/v1/mitigator/status", ""); code != 200 {
		t.Fatal(code)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		says               string
	}{
		{"GET", "/api/v1/mitigations/42", "", 404, "vigil mitigations list"},
		{"POST", "/api/v1/mitigations/42/approve", "", 404, "vigil mitigations list"},
		{"POST", "/api/v1/mitigations/1/approve", "", 409, "only pending decisions"},
		{"POST", "/api/v1/mitigations/2/undo", "", 409, "kill switch"},
		{"GET", "/api/v1/mitigations/1/approve", "", 405, "use POST"},
		{"POST", "/api/v1/mitigations/1/frobnicate", "", 404, "approve or undo"},
		{"GET", "/api/v1/mitigations?limit=x", "", 400, "positive number"},
		{"GET", "/api/v1/mitigations?open=maybe", "", 400, "true or false"},
		{"PUT", "/api/v1/mitigator/mode", `{"mode":"yolo"}`, 400, "want one of off"},
		{"PUT", "/api/v1/mitigator/mode", `auto`, 400, `{"mode"`},
		{"PUT", "/api/v1/mitigator/mode", `{"mode":"auto","x":1}`, 400, "unknown field"},
		{"POST", "/api/v1/mitigator/mode", `{"mode":"auto"}`, 405, "PUT"},
		{"POST", "/api/v1/alertmanager", `{"version":"3","alerts":[]}`, 400, "version 4"},
		{"POST", "/api/v1/alertmanager", `not json`, 400, "Alertmanager webhook"},
		{"POST", "/api/v1/alertmanager", `{"version":"4","alerts":[{"status":"firing","labels":{}}]}`, 400, "alertname"},
		{"GET", "/api/v1/alertmanager", "", 405, "webhook_configs"},
		{"DELETE", "/api/v1/mitigations", "", 405, "GET"},
	} {
		code, out := do(t, api, tc.method, tc.path, tc.body)
		msg, _ := out["error"].(string)
		if code != tc.code || out["status"] != "error" || !strings.Contains(msg, tc.says) {
			t.Errorf("%s %s %s: %d %q, want %d saying %q", tc.method, tc.path, tc.body, code, msg, tc.code, tc.says)
		}
	}
}

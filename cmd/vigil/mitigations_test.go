package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/controller"
	"github.com/vigilhq/vigil/internal/vigiltest"
	"github.com/vigilhq/vigil/mitigator"
	"github.com/vigilhq/vigil/slo"
)

func storageSignal(b string) slo.Signal {
	l := map[string]string{"broker": b, "cell": "a", "cluster": "dev"}
	return slo.Signal{ID: "storage_degraded" + b, Name: "storage_degraded", Source: "health_rule", Rule: "storage-slow-vs-cell", Labels: l,
		Evidence: []slo.Evidence{{Expr: "histogram_quantile(0.99, ...) > 5 * ...", Value: 0.3, Labels: l}}}
}

// vigil mitigations list, show, approve, undo and mode against the API of
// a mitigator in approve mode on a real cluster.
func TestMitigationsCLI(t *testing.T) {
	cl := vigiltest.StartCluster(t, 3)
	cc, err := controller.NewClient(controller.ClientConfig{Addrs: []string{cl.ControllerAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	m, err := mitigator.New(mitigator.Config{Mode: mitigator.ModeApprove, DataDir: t.TempDir(), Clock: func() time.Time { return now }}, cc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mux := http.NewServeMux()
	m.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	vigil := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(append([]string{"mitigations"}, append(args, "--url", srv.URL)...), &out, io.Discard)
		return out.String(), err
	}
	s := storageSignal("1")
	m.Observe(now, []slo.Signal{s})
	now = now.Add(5 * time.Second)
	m.Observe(now, []slo.Signal{s})

	out, err := vigil("list")
	if err != nil || !strings.Contains(out, "mode: approve") || !strings.Contains(out, "demote") || !strings.Contains(out, "pending_approval") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = vigil("show", "1")
	if err != nil || !strings.Contains(out, "storage_degraded") || !strings.Contains(out, "histogram_quantile") || !strings.Contains(out, "policy") {
		t.Fatalf("show: %v\n%s", err, out)
	}
	out, err = vigil("approve", "1")
	if err != nil || !hasLine(out, "outcome done") || !hasLine(out, "demote broker 1 ok") {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	d, err := cc.DescribeBroker(context.Background(), 1)
	if err != nil || !d.Demoted || d.Leaders != 0 {
		t.Fatalf("broker 1 after approval: %v %+v", err, d)
	}
	if out, err = vigil("mode"); err != nil || strings.TrimSpace(out) != "approve" {
		t.Fatalf("mode: %v %q", err, out)
	}
	if out, err = vigil("mode", "off"); err != nil || strings.TrimSpace(out) != "off" {
		t.Fatalf("mode off: %v %q", err, out)
	}
	if _, err = vigil("undo", "1"); err == nil || !strings.Contains(err.Error(), "kill switch") {
		t.Fatalf("undo while off: %v", err)
	}
	if _, err = vigil("mode", "auto", "--json"); err != nil {
		t.Fatal(err)
	}
	out, err = vigil("undo", "1")
	if err != nil || !hasLine(out, "action undemote") || !hasLine(out, "undo of 1") {
		t.Fatalf("undo: %v\n%s", err, out)
	}
	if d, err := cc.DescribeBroker(context.Background(), 1); err != nil || d.Demoted {
		t.Fatalf("broker 1 after undo: %v %+v", err, d)
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"approve"}, "give one decision id"},
		{[]string{"show", "77"}, "no decision 77"},
		{[]string{"approve", "1"}, "not pending approval"},
		{[]string{"mode", "yolo"}, "want one of off"},
		{[]string{"frob"}, "unknown subcommand"},
		{[]string{"list", "--limit", "0"}, "positive"},
	} {
		if _, err := vigil(tc.args...); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("vigil mitigations %v: %v, want an error saying %q", tc.args, err, tc.says)
		}
	}
	if err := run([]string{"mitigations", "list", "--url", "http://127.0.0.1:1"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "is vigil dev or vigil observer running there") {
		t.Errorf("unreachable API: %v", err)
	}
}

// vigil observer --controller runs the mitigator: Alertmanager webhooks
// posted to it become decisions (dry-run by default), listed by vigil
// mitigations; restarts would be refused (no Provisioner).
func TestObserverRunsMitigator(t *testing.T) {
	cl := vigiltest.StartCluster(t, 3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runObserver(ctx, []string{"--listen", addr, "--data-dir", filepath.Join(t.TempDir(), "obs"), "--target", "http://127.0.0.1:1/metrics",
			"--controller", cl.ControllerAddr(), "--log-level", "error"}, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	url := "http://" + addr
	vigiltest.WaitFor(t, "the observer's API", 20*time.Second, func() bool {
		out, err := runOut("mitigations", "mode", "--url", url)
		return err == nil && strings.TrimSpace(out) == "dry-run"
	})
	hook := `{"version":"4","status":"firing","receiver":"vigil","groupKey":"{}","alerts":[{"status":"firing",
	  "labels":{"alertname":"VigilStorageStuck","signal":"storage_stuck","broker":"2","cell":"a"},"annotations":{},
	  "startsAt":"2026-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"abc"}]}`
	resp, err := http.Post(url+"/api/v1/alertmanager", "application/json", strings.NewReader(hook))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("webhook: %v %v", err, resp)
	}
	resp.Body.Close()
	vigiltest.WaitFor(t, "a dry-run demotion of broker 2", 30*time.Second, func() bool {
		out, err := runOut("mitigations", "list", "--url", url)
		return err == nil && strings.Contains(out, "demote") && strings.Contains(out, "dry_run")
	})
	if err := runObserver(context.Background(), []string{"--target", "http://x/metrics", "--mitigation-mode", "auto"}, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "needs --controller") {
		t.Errorf("--mitigation-mode without --controller: %v", err)
	}
}

func runOut(args ...string) (string, error) {
	var out bytes.Buffer
	err := run(args, &out, io.Discard)
	return out.String(), err
}

// hasLine reports whether out has a line whose words are those of want.
func hasLine(out, want string) bool {
	w := strings.Join(strings.Fields(want), " ")
	for _, l := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(l), " ") == w {
			return true
		}
	}
	return false
}

package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/broker"
)

// TestAdminFault drives a staging broker's faults through `vigil admin
// fault`: the shorthand verbs add faults, show lists them, set replaces
// them from a file, clear removes them, and bad input says what to fix.
func TestAdminFault(t *testing.T) {
	cfg := broker.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Staging = true
	cfg.AdminToken = "tok"
	b, err := broker.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve() }()
	t.Cleanup(func() { b.Close(); <-done })
	select {
	case <-b.Joined():
	case <-time.After(time.Minute):
		t.Fatal("broker did not join")
	}
	srv := httptest.NewServer(b.HTTPHandler())
	defer srv.Close()

	admin := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(append([]string{"admin", "--token", "tok", "fault", "--broker-api", srv.URL}, args...), &out, &errb)
		return out.String() + errb.String(), err
	}
	if out, err := admin("slow-disk", "fsync", "300ms"); err != nil || !strings.Contains(out, "+300ms") {
		t.Fatalf("slow-disk: %v\n%s", err, out)
	}
	if out, err := admin("blackhole", "replication", "in", "--peer-broker", "2"); err != nil || !strings.Contains(out, "replication with broker 2") {
		t.Fatalf("blackhole: %v\n%s", err, out)
	}
	f := b.Faults()
	if len(f.Storage) != 1 || time.Duration(f.Storage[0].Latency) != 300*time.Millisecond || len(f.Network) != 1 || f.Network[0].Direction != "in" {
		t.Fatalf("faults after two verbs: %+v", f)
	}
	file := filepath.Join(t.TempDir(), "faults.json")
	os.WriteFile(file, []byte(`{"storage":[{"op":"all","stuck":true}]}`), 0o644)
	if out, err := admin("set", file); err != nil || !strings.Contains(out, "stuck") || strings.Contains(out, "network") {
		t.Fatalf("set: %v\n%s", err, out)
	}
	if out, err := admin("clear"); err != nil || !strings.Contains(out, "no faults") {
		t.Fatalf("clear: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"slow-disk", "fsync", "soon"}, "give a duration"},
		{[]string{"blackhole", "everyone"}, "clients, replication or controller"},
		{[]string{"teleport"}, "unknown fault verb"},
	} {
		if out, err := admin(c.args...); err == nil || !strings.Contains(err.Error()+out, c.says) {
			t.Errorf("%v: %v\n%s; want an error saying %q", c.args, err, out, c.says)
		}
	}
	var out, errb bytes.Buffer
	if err := run([]string{"admin", "--token", "wrong", "fault", "--broker-api", srv.URL, "show"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "Bearer") {
		t.Errorf("wrong token: %v", err)
	}
}

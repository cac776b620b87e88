package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/controller"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestControllerAndAdmin runs `vigil controller` (single node) and drives
// it with `vigil admin`.
func TestControllerAndAdmin(t *testing.T) {
	api, raftAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- runController(ctx, []string{"--id", "1", "--data-dir", t.TempDir(), "--listen", api, "--raft-listen", raftAddr, "--admin-token", "tok"}, &lockedWriter{w: &logs})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("vigil controller: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("vigil controller did not stop")
		}
	}()
	admin := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := runAdmin(context.Background(), append([]string{"--controller", api, "--token", "tok"}, args...), &out, &errb)
		return out.String() + errb.String(), err
	}
	// Wait for the controller to be active.
	c, err := controller.NewClient(controller.ClientConfig{Addrs: []string{api}, Token: "tok", RetryTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for id := int32(1); id <= 3; id++ {
		epoch, err := c.Register(context.Background(), controller.BrokerRegistration{ID: id, IncarnationID: "i", Rack: "r" + string(rune('0'+id)), Endpoint: "127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Heartbeat(context.Background(), id, epoch, false); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"create-topic", "orders", "--partitions", "3", "--replication-factor", "3"}, "orders  created"},
		{[]string{"brokers"}, "registered"},
		{[]string{"demote", "1"}, "demoted"},
		{[]string{"describe-broker", "1"}, "demoted"},
		{[]string{"undemote", "1"}, "registered"},
		{[]string{"elect-leaders", "--preferred", "orders"}, "orders"},
		{[]string{"remove-from-isr", "orders:0", "3"}, "ISR"},
		{[]string{"reassign", "orders:1=1,2"}, "accepted"},
		{[]string{"reassign", "--list"}, "no reassignment in progress"}, // a shrink to in-sync replicas completes at once
		{[]string{"fence", "2"}, "admin-fenced"},
		{[]string{"unfence", "2"}, "registered"},
		{[]string{"topics", "orders"}, "orders"},
		{[]string{"quorum"}, "(leader)"},
	}
	for _, s := range steps {
		out, err := admin(s.args...)
		if err != nil || !strings.Contains(out, s.want) {
			t.Fatalf("vigil admin %s: %v\n%s\n(want %q)", strings.Join(s.args, " "), err, out, s.want)
		}
	}
	out, err := admin("--json", "brokers")
	if err != nil {
		t.Fatal(err)
	}
	var cd controller.ClusterDescription
	if err := json.Unmarshal([]byte(out), &cd); err != nil || len(cd.Brokers) != 3 {
		t.Fatalf("--json brokers: %v\n%s", err, out)
	}
	// Errors carry the code and what to do.
	if out, err := admin("--token", "bad", "brokers"); err == nil || !strings.Contains(err.Error(), "CLUSTER_AUTHORIZATION_FAILED") {
		t.Fatalf("bad token: %v %s", err, out)
	}
	if _, err := admin("decommission", "1"); err == nil || !strings.Contains(err.Error(), "INVALID_REPLICATION_FACTOR") {
		t.Fatalf("decommission without a spare broker: %v", err)
	}
	if _, err := admin("decommission", "1", "--to", "7"); err == nil || !strings.Contains(err.Error(), "broker 7 is not registered") {
		t.Fatalf("decommission to an unknown broker: %v", err)
	}
}

// lockedWriter serializes writes from the controller's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

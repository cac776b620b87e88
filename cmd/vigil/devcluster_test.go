package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigilhq/vigil/broker"
	"github.com/vigilhq/vigil/controller"
)

// startTestDevCluster starts a controller and a devCluster of n brokers
// in cell a (staging), as vigil dev does, on consecutive free ports.
func startTestDevCluster(t *testing.T, n int, logger *slog.Logger) (*devCluster, *controller.Server) {
	t.Helper()
	dir := t.TempDir()
	ctrl, err := controller.NewServer(controller.ServerConfig{ID: "1", DataDir: filepath.Join(dir, "controller-1"), Listen: "127.0.0.1:0",
		RaftListen: "127.0.0.1:0", ValidateTopicConfig: broker.ValidateTopicConfig}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Close() })
	tmpl := broker.DefaultConfig()
	tmpl.Controllers = []string{ctrl.Addr()}
	tmpl.DefaultReplicationFactor = int16(min(3, n))
	tmpl.OffsetsTopicReplicationFactor = int16(min(3, n))
	tmpl.Staging = true
	tmpl.DiskCanaryInterval = 200 * time.Millisecond
	c := newDevCluster(logger, dir, tmpl)
	kport := freePortRange(t, n+4)
	for i := range n {
		if err := c.add(c.config(int32(i), kport+i, "a", "a"+strconv.Itoa(i%3))); err != nil {
			t.Fatal(err)
		}
	}
	c.serveAll()
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, b := range c.current() {
		if err := c.awaitReady(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	return c, ctrl
}

// TestDevClusterProvisionRestartRetire: the dev cluster's Provisioner
// starts a broker with the next id on the next port, restarts a broker
// whose storage is stuck (Close returns: the stuck writes are released),
// and retires one; /metrics, /brokers/<id>/ and the health endpoints
// follow.
func TestDevClusterProvisionRestartRetire(t *testing.T) {
	c, ctrl := startTestDevCluster(t, 3, slog.New(slog.DiscardHandler))
	var changes int
	c.OnChange(func() { changes++ })
	mux := http.NewServeMux()
	mux.Handle("/metrics", c.metricsHandler())
	mux.Handle("/brokers/", c.brokerRoutes())
	mux.HandleFunc("/readyz", c.health("/readyz"))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	id, err := c.Provision(ctx, "a", "a0")
	if err != nil {
		t.Fatal(err)
	}
	if id != 3 {
		t.Fatalf("provisioned broker %d, want 3", id)
	}
	infos := c.Infos()
	if len(infos) != 4 || infos[3].Cell != "a" || infos[3].Rack != "a0" || infos[3].Addr != hostPort("127.0.0.1", mustPort(t, infos[2].Addr)+1) {
		t.Fatalf("brokers after Provision: %+v", infos)
	}
	if code := get("/brokers/3/readyz"); code != 200 {
		t.Fatalf("/brokers/3/readyz: %d", code)
	}
	cc, err := controller.NewClient(controller.ClientConfig{Addrs: []string{ctrl.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := cc.DescribeBroker(ctx, 3)
	if err != nil || d.State != controller.BrokerRegistered {
		t.Fatalf("the quorum's view of broker 3: %+v, %v", d, err)
	}

	// Stuck storage on broker 1 while a producer writes to it.
	var seeds []string
	for _, i := range c.Infos() {
		seeds = append(seeds, i.Addr)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("t"), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 6, 3, nil, "t"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Broker(1).SetFaults(broker.Faults{Storage: []broker.StorageFault{{Op: "all", Stuck: true}}}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		cl.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, nil)
	}
	old := c.Broker(1)
	if err := c.Restart(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if c.Broker(1) == old || len(c.Broker(1).Faults().Storage) != 0 {
		t.Fatal("broker 1 was not restarted afresh")
	}
	if code := get("/readyz"); code != 200 {
		t.Fatalf("/readyz after the restart: %d", code)
	}
	if err := c.Restart(ctx, 42); err == nil {
		t.Fatal("Restart of an unknown broker succeeded")
	}

	if err := c.Retire(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if code := get("/brokers/3/readyz"); code != 404 {
		t.Fatalf("/brokers/3/readyz after Retire: %d, want 404", code)
	}
	if len(c.Infos()) != 3 {
		t.Fatalf("brokers after Retire: %+v", c.Infos())
	}
	// Ids are never reused.
	id, err = c.Provision(ctx, "a", "a1")
	if err != nil || id != 4 {
		t.Fatalf("Provision after Retire: broker %d, %v; want 4", id, err)
	}
	if changes < 5 {
		t.Fatalf("%d change notifications, want one per Provision, Retire and two per Restart", changes)
	}
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

package broker

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/vigilhq/vigil/controller"
)

func staging(c *Config) { c.Staging = true }

func TestFaultsRefusedOutsideStaging(t *testing.T) {
	b := startBroker(t, "")
	err := b.SetFaults(Faults{Storage: []StorageFault{{Op: "fsync", Latency: Duration(time.Second)}}})
	if !errors.Is(err, errFaultsNotStaging) {
		t.Fatalf("SetFaults without --staging: %v", err)
	}
	srv := httptest.NewServer(b.HTTPHandler())
	defer srv.Close()
	code, body := faultsHTTP(t, srv.URL, http.MethodPut, "", `{"storage":[{"op":"fsync","latency":"1s"}]}`)
	if code != http.StatusForbidden || !strings.Contains(body, "--staging") {
		t.Fatalf("PUT without --staging: %d %s", code, body)
	}
}

func TestFaultsAPI(t *testing.T) {
	b := startBroker(t, "", staging, func(c *Config) { c.AdminToken = "secret" })
	srv := httptest.NewServer(b.HTTPHandler())
	defer srv.Close()
	for _, c := range []struct {
		token, body string
		code        int
		says        string
	}{
		{"", `{}`, http.StatusUnauthorized, "Bearer"},
		{"wrong", `{}`, http.StatusUnauthorized, "Bearer"},
		{"secret", `{"storage":[{"op":"read","latency":"1s"}]}`, http.StatusBadRequest, "storage[0].op must be write, fsync or all"},
		{"secret", `{"storage":[{"op":"fsync","latency":"soon"}]}`, http.StatusBadRequest, "not a duration"},
		{"secret", `{"storage":[{"op":"fsync"}]}`, http.StatusBadRequest, "does nothing"},
		{"secret", `{"network":[{"peer":"clients","direction":"in","mode":"blackhole","broker":2}]}`, http.StatusBadRequest, "peer replication only"},
		{"secret", `{"network":[{"peer":"everyone","direction":"in","mode":"blackhole"}]}`, http.StatusBadRequest, "clients, replication or controller"},
		{"secret", `{"storage":[],"extra":1}`, http.StatusBadRequest, "unknown field"},
		{"secret", `{"storage":[{"op":"fsync","latency":"250ms"}],"network":[{"peer":"replication","broker":2,"direction":"out","mode":"drop"}]}`, http.StatusOK, `"latency":"250ms"`},
	} {
		code, body := faultsHTTP(t, srv.URL, http.MethodPut, c.token, c.body)
		if code != c.code || !strings.Contains(body, c.says) {
			t.Errorf("PUT %s (token %q): %d %s; want %d saying %q", c.body, c.token, code, body, c.code, c.says)
		}
	}
	if f := b.Faults(); len(f.Storage) != 1 || len(f.Network) != 1 || *f.Network[0].Broker != 2 {
		t.Fatalf("faults after PUT: %+v", f)
	}
	if v := metricValue(t, b, "vigil_broker_injected_faults", map[string]string{"kind": "storage"}); v != 1 {
		t.Errorf("vigil_broker_injected_faults{kind=storage} = %v", v)
	}
	if code, body := faultsHTTP(t, srv.URL, http.MethodDelete, "secret", ""); code != http.StatusOK || strings.Contains(body, "latency") {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if f := b.Faults(); len(f.Storage)+len(f.Network) != 0 {
		t.Fatalf("faults after DELETE: %+v", f)
	}
}

func faultsHTTP(t *testing.T, base, method, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+"/admin/v1/faults", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, out.String()
}

// TestStorageFaults slows fsyncs (the storage metrics see it, as they
// would a slow disk), blocks writes until the fault is cleared, and fails
// writes (the partition goes offline with KAFKA_STORAGE_ERROR).
func TestStorageFaults(t *testing.T) {
	b := startBroker(t, "", staging, func(c *Config) {
		c.TopicDefaults = map[string]string{"flush.messages": "1"}
		c.DiskCanaryInterval = time.Hour
	})
	adm := newAdmin(t, b)
	createTopic(t, adm, "slow", 1, nil)
	createTopic(t, adm, "stuck", 1, nil)
	createTopic(t, adm, "failing", 1, nil)
	c := dialRaw(t, b)

	t.Run("latency", func(t *testing.T) {
		const latency = 100 * time.Millisecond
		before := histograms(t, b, "vigil_storage_fsync_seconds")[""]
		if err := b.SetFaults(Faults{Storage: []StorageFault{{Op: "fsync", Latency: Duration(latency)}}}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if got := produceRaw(t, c, "slow", 0, makeBatch(-1, -1, -1, 1, []byte("x"))); got.ErrorCode != 0 {
				t.Fatalf("produce with slow fsyncs: %v", kerr.ErrorForCode(got.ErrorCode))
			}
		}
		after := histograms(t, b, "vigil_storage_fsync_seconds")[""]
		if n, sum := after[0]-before[0], after[1]-before[1]; n < 3 || sum < 3*latency.Seconds() {
			t.Fatalf("%v fsyncs took %vs in all; each had %v added", n, sum, latency)
		}
		b.SetFaults(Faults{})
	})

	t.Run("stuck", func(t *testing.T) {
		if err := b.SetFaults(Faults{Storage: []StorageFault{{Op: "write", Stuck: true}}}); err != nil {
			t.Fatal(err)
		}
		done := make(chan kmsg.ProduceResponseTopicPartition, 1)
		go func() {
			c2 := dialRaw(t, b)
			req := produceReq("stuck", 0, makeBatch(-1, -1, -1, 1, []byte("x")))
			req.Acks = 1
			resp := req.ResponseKind().(*kmsg.ProduceResponse)
			resp.SetVersion(req.Version)
			c2.roundTrip(req, resp)
			done <- resp.Topics[0].Partitions[0]
		}()
		waitFor(t, "the append blocked", 30*time.Second, func() bool { return b.faults.stuck.Load() > 0 })
		select {
		case r := <-done:
			t.Fatalf("produce answered (%d) while every write is stuck", r.ErrorCode)
		default:
		}
		if v := metricValue(t, b, "vigil_storage_stuck_operations", nil); v < 1 {
			t.Errorf("vigil_storage_stuck_operations = %v while an append is stuck", v)
		}
		b.SetFaults(Faults{})
		select {
		case r := <-done:
			if r.ErrorCode != 0 {
				t.Fatalf("produce after the disk came back: %v", kerr.ErrorForCode(r.ErrorCode))
			}
		case <-time.After(30 * time.Second):
			t.Fatal("produce still blocked after the fault was cleared")
		}
	})

	t.Run("errors", func(t *testing.T) {
		if err := b.SetFaults(Faults{Storage: []StorageFault{{Op: "write", ErrorRate: 1}}}); err != nil {
			t.Fatal(err)
		}
		got := produceRaw(t, c, "failing", 0, makeBatch(-1, -1, -1, 1, []byte("x")))
		if got.ErrorCode != kerr.KafkaStorageError.Code {
			t.Fatalf("produce with failing writes: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(got.ErrorCode))
		}
		if v := metricValue(t, b, "vigil_storage_io_errors_total", map[string]string{"op": "write"}); v < 1 {
			t.Errorf("vigil_storage_io_errors_total{op=write} = %v", v)
		}
		b.SetFaults(Faults{})
	})
}

// TestClientNetworkFaults blackholes and drops client traffic.
func TestClientNetworkFaults(t *testing.T) {
	b := startBroker(t, "", staging)
	apiVersions := func(c *rawConn) error {
		req := kmsg.NewPtrApiVersionsRequest()
		req.SetVersion(0)
		c.send(req, 1)
		_ = c.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, _, err := c.recv(false)
		_ = c.nc.SetReadDeadline(time.Now().Add(time.Minute))
		return err
	}
	for _, dir := range []string{"in", "out"} {
		t.Run("blackhole "+dir, func(t *testing.T) {
			c := dialRaw(t, b)
			if err := b.SetFaults(Faults{Network: []NetworkFault{{Peer: "clients", Direction: dir, Mode: "blackhole"}}}); err != nil {
				t.Fatal(err)
			}
			if err := apiVersions(c); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("request into a blackhole: %v, want no answer", err)
			}
			// Traffic resumes where it was once the fault is cleared.
			b.SetFaults(Faults{})
			if _, _, err := c.recv(false); err != nil {
				t.Fatalf("the answer after the blackhole ended: %v", err)
			}
		})
	}
	t.Run("drop", func(t *testing.T) {
		c := dialRaw(t, b)
		if err := b.SetFaults(Faults{Network: []NetworkFault{{Peer: "clients", Direction: "both", Mode: "drop"}}}); err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrApiVersionsRequest()
		req.SetVersion(0)
		c.send(req, 1)
		c.expectClosed()
		b.SetFaults(Faults{})
		if err := apiVersions(dialRaw(t, b)); err != nil {
			t.Fatalf("a new connection after the fault: %v", err)
		}
	})
}

// TestGrayFailure blackholes a leader's client and replication traffic
// while its controller link stays up: its followers fall out of sync (the
// ISR shrinks to the leader) and clients time out, yet the quorum keeps it
// unfenced. Cutting the controller link too gets it fenced. Clearing the
// faults heals both.
func TestGrayFailure(t *testing.T) {
	c := startCluster(t, 3, staging)
	adm := kadm.NewClient(c.client())
	if _, err := adm.CreateTopic(testCtx(t), 1, 3, nil, "gray"); err != nil {
		t.Fatal(err)
	}
	c.waitReplicasEqual("gray")
	leader := c.partitionState("gray", 0).Leader
	lb := c.brokers[leader]
	if n := len(produceAcked(t, c.client(), "gray", 0, 10)); n != 10 {
		t.Fatalf("%d of 10 records acknowledged before the fault", n)
	}

	if err := lb.SetFaults(Faults{Network: []NetworkFault{
		{Peer: "clients", Direction: "both", Mode: "blackhole"},
		{Peer: "replication", Direction: "both", Mode: "blackhole"},
	}}); err != nil {
		t.Fatal(err)
	}
	// The leader cannot hear its followers: the ISR shrinks to itself.
	waitFor(t, "the ISR shrunk to the gray leader", 60*time.Second, func() bool {
		st := c.partitionState("gray", 0)
		return len(st.ISR) == 1 && st.ISR[0] == leader
	})
	if st := brokerState(t, c, leader); st != string(controller.BrokerRegistered) {
		t.Fatalf("gray broker's state: %s; its controller link is up, so it should stay unfenced", st)
	}
	// Cutting the controller link too: the quorum fences it.
	if err := lb.SetFaults(Faults{Network: []NetworkFault{
		{Peer: "clients", Direction: "both", Mode: "blackhole"},
		{Peer: "replication", Direction: "both", Mode: "blackhole"},
		{Peer: "controller", Direction: "both", Mode: "blackhole"},
	}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the isolated broker fenced", 60*time.Second, func() bool { return brokerState(t, c, leader) == string(controller.BrokerFenced) })
	lb.SetFaults(Faults{})
	waitFor(t, "the healed broker unfenced and back in the ISR", 60*time.Second, func() bool {
		return brokerState(t, c, leader) == string(controller.BrokerRegistered) && len(c.partitionState("gray", 0).ISR) == 3
	})
	if n := len(produceAcked(t, c.client(), "gray", 10, 10)); n != 10 {
		t.Fatalf("%d of 10 records acknowledged after healing", n)
	}
}

// brokerState returns a broker's state as the quorum sees it.
func brokerState(t *testing.T, c *testCluster, id int32) string {
	t.Helper()
	cl, err := controller.NewClient(controller.ClientConfig{Addrs: []string{c.ctrl.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	d, err := cl.DescribeBroker(testCtx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return string(d.State)
}

// TestOfflineLeaderHandsOver fails every log write on a partition's leader:
// its log goes offline, it leaves the ISR, another in-sync replica takes
// over, and producers carry on with every acknowledged record readable.
func TestOfflineLeaderHandsOver(t *testing.T) {
	c := startCluster(t, 3, staging)
	cl := c.client(kgo.RequiredAcks(kgo.AllISRAcks()))
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(testCtx(t), 1, 3, nil, "handover"); err != nil {
		t.Fatal(err)
	}
	c.waitReplicasEqual("handover")
	acked := produceAcked(t, cl, "handover", 0, 100)
	leader := c.partitionState("handover", 0).Leader
	if err := c.brokers[leader].SetFaults(Faults{Storage: []StorageFault{{Op: "write", ErrorRate: 1}}}); err != nil {
		t.Fatal(err)
	}
	// The next write fails and takes the log offline; the producer retries.
	more := produceAcked(t, cl, "handover", 100, 100)
	waitFor(t, "a new leader, and the failed one out of the ISR", time.Minute, func() bool {
		st := c.partitionState("handover", 0)
		return st.Leader >= 0 && st.Leader != leader && !slices.Contains(st.ISR, leader)
	})
	for v := range more {
		acked[v] = true
	}
	for v := range produceAcked(t, cl, "handover", 200, 100) {
		acked[v] = true
	}
	if len(acked) < 200 {
		t.Fatalf("only %d records acknowledged; the new leader should take writes", len(acked))
	}
	readAll(t, c, "handover", acked)
}

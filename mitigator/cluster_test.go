package mitigator

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/controller"
	"github.com/vigilhq/vigil/internal/vigiltest"
	"github.com/vigilhq/vigil/slo"
)

// source is a SignalSource whose signals a test sets.
type source struct {
	mu   sync.Mutex
	sigs []slo.Signal
	ch   chan slo.Update
}

func (s *source) Signals() []slo.Signal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]slo.Signal(nil), s.sigs...)
}

func (s *source) Subscribe(int) (<-chan slo.Update, func()) { return s.ch, func() {} }

func (s *source) set(sigs ...slo.Signal) {
	s.mu.Lock()
	s.sigs = sigs
	s.mu.Unlock()
	select {
	case s.ch <- slo.Update{At: time.Now(), Signals: sigs}:
	default:
	}
}

// A real cluster: a storage_degraded signal for broker 1 gets it demoted
// through the controller until it leads nothing; once the signal is gone
// for the healthy time it is undemoted and leads again.
func TestClusterDemoteUndemote(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	cl := vigiltest.StartCluster(t, 3)
	cc, err := controller.NewClient(controller.ClientConfig{Addrs: []string{cl.ControllerAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cc.CreateTopics(ctx, controller.CreateTopicsRequest{Topics: []controller.CreateTopic{{Name: "orders", Partitions: 6, ReplicationFactor: 3,
		Configs: map[string]string{"min.insync.replicas": "2"}}}})
	if err != nil || res[0].Error != nil {
		t.Fatalf("creating the topic: %v %+v", err, res)
	}
	leads := func(id int32) (n int, demoted bool) {
		md, err := cc.Metadata(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range md.Image.Topics["orders"].Partitions {
			if p.Leader == id {
				n++
			}
		}
		return n, md.Image.Brokers[id].Demoted
	}
	vigiltest.WaitFor(t, "broker 1 to lead partitions of orders", 20*time.Second, func() bool { n, _ := leads(1); return n > 0 })

	m, err := New(Config{Mode: ModeAuto, DataDir: t.TempDir(), Sustain: 200 * time.Millisecond, HealthyFor: 500 * time.Millisecond,
		Tick: 50 * time.Millisecond, Logger: vigiltest.Logger()}, cc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	src := &source{ch: make(chan slo.Update, 1)}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx, src) }()
	defer func() { stop(); <-done }()

	src.set(sig("storage_degraded", 1))
	vigiltest.WaitFor(t, "broker 1 demoted and leading nothing", 20*time.Second, func() bool { n, d := leads(1); return d && n == 0 })
	src.set()
	vigiltest.WaitFor(t, "broker 1 undemoted and leading again", 20*time.Second, func() bool { n, d := leads(1); return !d && n > 0 })
	// The decisions are recorded once the calls return.
	var got []string
	vigiltest.WaitFor(t, "the demotion and undemotion recorded as done", 20*time.Second, func() bool {
		got = got[:0]
		for _, d := range m.Decisions() {
			got = append(got, d.Action+" "+d.Outcome)
		}
		return len(got) == 2 && got[0] == "demote done" && got[1] == "undemote done"
	})
}

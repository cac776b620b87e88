package main

import (
	"context"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMeasureUnavailability measures how long a partition takes no writes
// when its leader dies (kill -9) and when it is stopped cleanly (SIGTERM:
// a controlled shutdown), with real processes: one `vigil controller` and
// three `vigil broker`s. It is a benchmark, not a test: it runs only with
// VIGIL_MEASURE_UNAVAILABILITY=N (N events of each kind) and reports
// numbers without asserting on them. VIGIL_SESSION_TIMEOUT and
// VIGIL_HEARTBEAT_INTERVAL override the defaults (9s and 2s, Kafka's).
//
// A producer writes to one partition (acks=all, idempotent, no linger,
// at most 8 records in flight) as fast as it can; the window of an event
// is the longest gap between two consecutive acknowledgements from just
// before the signal until writes flow again.
func TestMeasureUnavailability(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("VIGIL_MEASURE_UNAVAILABILITY"))
	if n <= 0 {
		t.Skip("set VIGIL_MEASURE_UNAVAILABILITY=N to measure N leader kills and N controlled shutdowns")
	}
	session, heartbeat := 9*time.Second, 2*time.Second
	if d, err := time.ParseDuration(os.Getenv("VIGIL_SESSION_TIMEOUT")); err == nil {
		session = d
	}
	if d, err := time.ParseDuration(os.Getenv("VIGIL_HEARTBEAT_INTERVAL")); err == nil {
		heartbeat = d
	}
	const topic = "avail"
	c := startProcCluster(t, procClusterConfig{
		controllers: 1, brokers: 3, sessionTimeout: session,
		brokerFlags: []string{"--broker-heartbeat-interval", heartbeat.String()},
	})
	c.createTopic(topic, 1, 3, map[string]string{"min.insync.replicas": "2"})
	c.waitFullISR(topic, time.Minute)

	opts := []kgo.Opt{kgo.SeedBrokers(c.brokerAddr...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(8)}
	minAge := "franz-go's default (5s)"
	if d, err := time.ParseDuration(os.Getenv("VIGIL_METADATA_MIN_AGE")); err == nil {
		opts = append(opts, kgo.MetadataMinAge(d))
		minAge = d.String()
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var (
		mu    sync.Mutex
		acks  []time.Time
		fails int
	)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		v := make([]byte, 1024)
		for ctx.Err() == nil {
			cl.Produce(ctx, &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
				now := time.Now()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					fails++
					return
				}
				acks = append(acks, now)
			})
		}
	}()
	// window returns the longest gap between acknowledgements after from
	// once writes have flowed for a second after it, and the number of
	// acknowledgements seen.
	window := func(from time.Time, timeout time.Duration) time.Duration {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			time.Sleep(100 * time.Millisecond)
			mu.Lock()
			i := sort.Search(len(acks), func(i int) bool { return !acks[i].Before(from) })
			if i > 0 {
				i-- // the gap starts at the last ack before the event
			}
			var gap time.Duration
			var gapEnd time.Time
			for j := i + 1; j < len(acks); j++ {
				if d := acks[j].Sub(acks[j-1]); d > gap {
					gap, gapEnd = d, acks[j]
				}
			}
			last := time.Time{}
			if len(acks) > 0 {
				last = acks[len(acks)-1]
			}
			mu.Unlock()
			if !gapEnd.IsZero() && last.Sub(gapEnd) > time.Second && last.Sub(from) > 2*time.Second {
				return gap
			}
			if time.Now().After(deadline) {
				t.Fatalf("writes did not resume within %v", timeout)
			}
		}
	}
	// baseline: the largest gap in 3s of undisturbed writes.
	time.Sleep(time.Second)
	base := window(time.Now(), time.Minute)

	results := map[string][]time.Duration{}
	for i := 0; i < n; i++ {
		for _, ev := range []struct {
			name string
			sig  syscall.Signal
		}{{"kill -9", syscall.SIGKILL}, {"controlled shutdown (SIGTERM)", syscall.SIGTERM}} {
			var leader int
			pollUntil(t, "a leader", time.Minute, func() bool {
				st := c.partitionState(topic, 0)
				if st == nil || st.Leader < 0 {
					return false
				}
				leader = int(st.Leader)
				return true
			})
			time.Sleep(time.Second)
			at := time.Now()
			// When the controllers move the leadership.
			moved := make(chan time.Duration, 1)
			go func() {
				for time.Since(at) < time.Minute {
					if st := c.partitionState(topic, 0); st != nil && st.Leader >= 0 && st.Leader != int32(leader) {
						moved <- time.Since(at)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
				moved <- -1
			}()
			c.killBroker(leader, ev.sig)
			w := window(at, 2*time.Minute)
			results[ev.name] = append(results[ev.name], w)
			t.Logf("%s of leader broker %d: no acknowledgement for %v (the controller named a new leader %v after the signal)",
				ev.name, leader, w.Round(time.Millisecond), (<-moved).Round(10*time.Millisecond))
			c.startBroker(leader)
			c.waitFullISR(topic, 2*time.Minute)
		}
	}
	stop()
	mu.Lock()
	t.Logf("session timeout %v, heartbeat interval %v, client metadata min age %s; %d acknowledgements, %d failed records; largest gap with no event: %v",
		session, heartbeat, minAge, len(acks), fails, base.Round(time.Millisecond))
	mu.Unlock()
	for name, ws := range results {
		slices.Sort(ws)
		t.Logf("%-30s min %v  median %v  max %v  (%d events)", name, ws[0].Round(time.Millisecond), ws[len(ws)/2].Round(time.Millisecond), ws[len(ws)-1].Round(time.Millisecond), len(ws))
	}
}

package probes

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigilhq/vigil/broker"
	"github.com/vigilhq/vigil/internal/vigiltest"
)

// Integration tests probe every 100ms, declare a record lost after 10s
// (long enough for a loaded machine), and change layouts at once.
const (
	testInterval     = 100 * time.Millisecond
	testLossDeadline = 10 * time.Second
)

func probeConfig(bootstrap []string, reg prometheus.Registerer) Config {
	return Config{
		Bootstrap: bootstrap, Location: "test", CellOf: CellFromRack, Registerer: reg,
		Interval: testInterval, Timeout: 3 * time.Second, LossDeadline: testLossDeadline,
		LayoutInterval: 200 * time.Millisecond,
	}
}

// e2eCount returns how many probe records produced through broker were
// consumed.
func e2eCount(t *testing.T, reg prometheus.Gatherer, broker int) float64 {
	return metric(t, reg, "vigil_probe_e2e_seconds", l("broker", strconv.Itoa(broker)))
}

// waitAllProbed waits until at least n records produced through each of the
// brokers were consumed.
func waitAllProbed(t *testing.T, reg prometheus.Gatherer, brokers []int, n float64) {
	t.Helper()
	waitFor(t, "end-to-end probes through every broker", 2*time.Minute, func() bool {
		for _, b := range brokers {
			if e2eCount(t, reg, b) < n {
				return false
			}
		}
		return true
	})
}

// TestProbeHealthyCluster probes a healthy 3-broker cell: every broker is
// probed, every histogram fills, nothing is lost, duplicated or
// reordered, the topic has one partition led by each broker, and every
// record carries a valid payload and traceparent.
func TestProbeHealthyCluster(t *testing.T) {
	c := vigiltest.StartCluster(t, 3)
	reg := prometheus.NewRegistry()
	startProbe(t, probeConfig(c.Bootstrap(), reg))
	// Long enough that the first records are past the loss deadline.
	waitAllProbed(t, reg, []int{0, 1, 2}, float64(40+testLossDeadline/testInterval))
	waitFor(t, "every broker up", 2*time.Minute, func() bool {
		return metric(t, reg, "vigil_probe_up", nil) == 3
	})
	for b := 0; b < 3; b++ {
		lb := l("broker", strconv.Itoa(b), "cell", "a", "location", "test")
		for _, name := range []string{"vigil_probe_produce_seconds", "vigil_probe_metadata_seconds", "vigil_probe_connect_seconds"} {
			if v := metric(t, reg, name, lb); v < 1 {
				t.Errorf("%s{broker=%d} has %v samples", name, b, v)
			}
		}
		if v := metric(t, reg, "vigil_probe_last_success_timestamp_seconds", lb); time.Since(time.Unix(int64(v), 0)) > time.Minute {
			t.Errorf("vigil_probe_last_success_timestamp_seconds{broker=%d} = %v", b, v)
		}
	}
	waitFor(t, "a timed commit", 2*time.Minute, func() bool { return metric(t, reg, "vigil_probe_commit_seconds", nil) >= 1 })
	for _, name := range []string{"vigil_probe_lost_records_total", "vigil_probe_duplicated_records_total", "vigil_probe_reordered_records_total"} {
		if v := metric(t, reg, name, nil); v != 0 {
			t.Errorf("%s = %v in a healthy run", name, v)
		}
	}

	// The layout: partition i led by broker i (the probe created the
	// topic for brokers in id order), three replicas each.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Bootstrap()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	md, err := kadm.NewClient(cl).Metadata(ctx, TopicName("a"))
	if err != nil {
		t.Fatal(err)
	}
	td := md.Topics[TopicName("a")]
	if len(td.Partitions) != 3 {
		t.Fatalf("probe topic has %d partitions, want 3", len(td.Partitions))
	}
	for _, pd := range td.Partitions {
		if pd.Leader != pd.Partition || len(pd.Replicas) != 3 || pd.Replicas[0] != pd.Partition {
			t.Errorf("partition %d: leader %d, replicas %v", pd.Partition, pd.Leader, pd.Replicas)
		}
	}

	// Every record: a payload and a W3C traceparent.
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.Bootstrap()...), kgo.ConsumeTopics(TopicName("a")), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := 0
	for seen < 30 {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen++
			pl, err := DecodePayload(r.Value)
			if err != nil || pl.Broker != r.Partition || pl.Seq == 0 {
				t.Errorf("record at %d/%d: payload %+v, %v", r.Partition, r.Offset, pl, err)
			}
			if len(r.Headers) != 1 || r.Headers[0].Key != TraceparentHeader {
				t.Errorf("record at %d/%d: headers %v", r.Partition, r.Offset, r.Headers)
			} else if _, err := ParseTraceparent(string(r.Headers[0].Value)); err != nil {
				t.Errorf("record at %d/%d: traceparent %q: %v", r.Partition, r.Offset, r.Headers[0].Value, err)
			}
		})
	}
}

// failures returns the failed produce probes through broker, of one class
// or ("" ) all.
func failures(t *testing.T, reg prometheus.Gatherer, broker int, class string) float64 {
	want := l("broker", strconv.Itoa(broker), "op", "produce")
	if class != "" {
		want["class"] = class
	}
	return metric(t, reg, "vigil_probe_failures_total", want)
}

// TestProbeBrokerDownAndBack stops one broker of three: its probes fail
// (connection refused) while records keep flowing through the other two;
// restarted, it is probed successfully again by the same probe, which
// moves leadership of its partition back to it.
func TestProbeBrokerDownAndBack(t *testing.T) {
	c := vigiltest.StartCluster(t, 3)
	reg := prometheus.NewRegistry()
	startProbe(t, probeConfig(c.Bootstrap(), reg))
	waitAllProbed(t, reg, []int{0, 1, 2}, 10)

	const victim = 2
	before := failures(t, reg, victim, ClassConnectionRefused)
	c.Stop(victim)
	waitFor(t, "refused probes of the stopped broker", 2*time.Minute, func() bool {
		return failures(t, reg, victim, ClassConnectionRefused) >= before+2 &&
			metric(t, reg, "vigil_probe_up", l("broker", strconv.Itoa(victim))) == 0
	})
	// The others stay green: records produced through them keep arriving.
	e0, e1 := e2eCount(t, reg, 0), e2eCount(t, reg, 1)
	waitFor(t, "probes through the other brokers", 2*time.Minute, func() bool {
		return e2eCount(t, reg, 0) >= e0+10 && e2eCount(t, reg, 1) >= e1+10
	})
	waitFor(t, "the other brokers up", 2*time.Minute, func() bool {
		return metric(t, reg, "vigil_probe_up", l("broker", "0"))+metric(t, reg, "vigil_probe_up", l("broker", "1")) == 2
	})

	c.Start(victim)
	ev := e2eCount(t, reg, victim)
	waitFor(t, "the restarted broker probed again", 2*time.Minute, func() bool {
		return e2eCount(t, reg, victim) >= ev+10 && metric(t, reg, "vigil_probe_up", l("broker", strconv.Itoa(victim))) == 1
	})
	if v := metric(t, reg, "vigil_probe_lost_records_total", nil); v != 0 {
		t.Errorf("%v records lost around a controlled shutdown", v)
	}
}

// TestProbeDetectsLoss makes acknowledged probe records disappear before
// the probe's consumer reads them — the consumer is paused on one
// partition while DeleteRecords removes everything up to its high
// watermark — and expects the loss counter of that partition to count
// them.
func TestProbeDetectsLoss(t *testing.T) {
	c := vigiltest.StartCluster(t, 3)
	reg := prometheus.NewRegistry()
	p := startProbe(t, probeConfig(c.Bootstrap(), reg))
	waitAllProbed(t, reg, []int{0, 1, 2}, 5)

	topic := TopicName("a")
	cons := p.consumer.Load()
	cons.PauseFetchPartitions(map[string][]int32{topic: {0}})
	// Partition 0, whichever broker leads it: the layout gives partition
	// i to the i-th broker live when the topic was created, which need not
	// be broker i.
	acked := func() float64 { return metric(t, reg, "vigil_probe_produce_seconds", l("partition", "0")) }
	from := acked()
	waitFor(t, "records acknowledged while the consumer is paused", 2*time.Minute, func() bool { return acked() >= from+5 })

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Bootstrap()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	del, err := adm.DeleteRecords(ctx, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: end.Offset}}})
	if err != nil || del.Error() != nil {
		t.Fatalf("DeleteRecords: %v %v", err, del.Error())
	}
	cons.ResumeFetchPartitions(map[string][]int32{topic: {0}})
	waitFor(t, "the loss counted", 2*time.Minute, func() bool {
		return metric(t, reg, "vigil_probe_lost_records_total", l("partition", "0")) >= 5
	})
	// Only what was deleted: the other partitions lost nothing, and the
	// partition's later records arrive.
	if v := metric(t, reg, "vigil_probe_lost_records_total", l("partition", "1")) + metric(t, reg, "vigil_probe_lost_records_total", l("partition", "2")); v != 0 {
		t.Errorf("%v records lost on partitions nobody touched", v)
	}
	consumed := func() float64 { return metric(t, reg, "vigil_probe_e2e_seconds", l("partition", "0")) }
	e := consumed()
	waitFor(t, "records after the deletion consumed", 2*time.Minute, func() bool { return consumed() >= e+5 })
}

// TestProbeKfake runs the probe against franz-go's kfake, a Kafka
// implementation of its own: every broker gets probed end to end, nothing
// is lost. kfake accepts reassignments without performing them and moves
// a leader to the next broker on each election, so the probe's layout
// converges by elections alone.
func TestProbeKfake(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	reg := prometheus.NewRegistry()
	cfg := probeConfig(kc.ListenAddrs(), reg)
	cfg.CellOf, cfg.LayoutInterval = nil, 50*time.Millisecond
	startProbe(t, cfg)
	waitAllProbed(t, reg, []int{0, 1, 2}, float64(40+testLossDeadline/testInterval))
	waitFor(t, "a timed commit", 2*time.Minute, func() bool { return metric(t, reg, "vigil_probe_commit_seconds", l("cell", DefaultCell)) >= 1 })
	for _, name := range []string{"vigil_probe_lost_records_total", "vigil_probe_duplicated_records_total", "vigil_probe_reordered_records_total"} {
		if v := metric(t, reg, name, nil); v != 0 {
			t.Errorf("%s = %v", name, v)
		}
	}
}

// TestProbeStuckBroker freezes every connection to one broker (it hangs
// without closing them, behind a proxy it is advertised through): its
// probes time out while the other brokers keep being probed end to end,
// and once thawed it is probed successfully again.
func TestProbeStuckBroker(t *testing.T) {
	proxy := vigiltest.NewProxy(t)
	const stuck = 2
	c := vigiltest.StartCluster(t, 3, func(i int, cfg *broker.Config) {
		if i == stuck {
			cfg.Advertise = proxy.Addr()
		}
	})
	proxy.SetTarget(c.Addr(stuck))
	reg := prometheus.NewRegistry()
	startProbe(t, probeConfig(c.Bootstrap()[:stuck], reg))
	waitAllProbed(t, reg, []int{0, 1, 2}, 10)

	proxy.Freeze()
	waitFor(t, "timeouts of the stuck broker", 2*time.Minute, func() bool {
		return failures(t, reg, stuck, ClassTimeout) >= 3 && metric(t, reg, "vigil_probe_up", l("broker", strconv.Itoa(stuck))) == 0
	})
	e0, e1 := e2eCount(t, reg, 0), e2eCount(t, reg, 1)
	waitFor(t, "probes through the other brokers", 2*time.Minute, func() bool {
		return e2eCount(t, reg, 0) >= e0+10 && e2eCount(t, reg, 1) >= e1+10
	})

	proxy.Thaw()
	e2 := e2eCount(t, reg, stuck)
	waitFor(t, "the thawed broker probed again", 2*time.Minute, func() bool {
		return e2eCount(t, reg, stuck) >= e2+10 && metric(t, reg, "vigil_probe_up", l("broker", strconv.Itoa(stuck))) == 1
	})
}

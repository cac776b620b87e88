package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigilhq/vigil/broker"
	"github.com/vigilhq/vigil/controller"
	"github.com/vigilhq/vigil/mitigator"
)

// End-to-end tests of the mitigation loop: `vigil dev --staging` as a
// process (its probes, SLO engine with the fast rules, mitigator in auto
// mode and its own brokers as Provisioner), real faults injected through
// /brokers/<id>/admin/v1/faults, and the outcome read from the controller
// API, the mitigator API and a Kafka client. Every wait polls with a
// deadline; nothing asserts on how long anything took. The times from
// fault to decision and to mitigation are logged (MEASURE lines) and
// collected by VIGIL_MEASURE_MITIGATION=1 into docs/benchmarks.md.

// mitDev is a running vigil dev with its clients.
type mitDev struct {
	t      *testing.T
	p      *vigilProc
	kport  int
	hport  int
	ctrl   *controller.Client
	seeds  []string
	before map[string]bool // decisions that existed when mark was called
}

func startMitDev(t *testing.T, brokers int, args ...string) *mitDev {
	t.Helper()
	kport, hport := devPorts(t, brokers+4) // room for replacements
	all := append([]string{"dev", "--staging", "--data-dir", t.TempDir(), "--brokers", strconv.Itoa(brokers),
		"--kafka-port", strconv.Itoa(kport), "--http-port", strconv.Itoa(hport), "--mitigation-healthy-for", "5s", "--mitigation-cooldown", "5s"}, args...)
	p := startVigil(t, true, all...)
	ctrl, err := controller.NewClient(controller.ClientConfig{Addrs: []string{hostPort("127.0.0.1", hport+1)}})
	if err != nil {
		t.Fatal(err)
	}
	d := &mitDev{t: t, p: p, kport: kport, hport: hport, ctrl: ctrl}
	for i := range brokers {
		d.seeds = append(d.seeds, hostPort("127.0.0.1", kport+i))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("decisions:\n%s\nvigil dev log:\n%s", d.dumpDecisions(), p.stderr)
		}
	})
	pollUntil(t, "/readyz to answer 200", time.Minute, func() bool {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	// The mitigator runs once the engine has evaluated fresh metrics.
	pollUntil(t, "the mitigator API", time.Minute, func() bool {
		_, err := d.decisionsErr()
		return err == nil
	})
	d.awaitSettled(brokers)
	return d
}

// awaitSettled waits until the probe topic of cell a has a partition per
// broker (the probe may create it while only some brokers have
// registered, then fixes its layout) and every partition has all its
// replicas in sync, so that faults hit a settled cluster.
func (d *mitDev) awaitSettled(brokers int) {
	d.t.Helper()
	rf := min(3, brokers)
	waitUntil(d.t, "a settled cluster: the probe topic laid out, every ISR full", 2*time.Minute, func() (bool, string) {
		img := d.image()
		probe := img.Topics["__vigil_probe_a"]
		if probe == nil || len(probe.Partitions) != brokers {
			return false, "probe topic not laid out yet"
		}
		for name, tp := range img.Topics {
			for i, p := range tp.Partitions {
				if len(p.Replicas) != rf || len(p.ISR) != rf {
					return false, fmt.Sprintf("%s-%d: replicas %v, ISR %v", name, i, p.Replicas, p.ISR)
				}
			}
		}
		return true, ""
	})
}

func (d *mitDev) faults(id int32) *broker.FaultClient {
	return &broker.FaultClient{URL: "http://" + d.p.http + "/brokers/" + strconv.Itoa(int(id))}
}

// inject sets faults on broker id and returns when it did.
func (d *mitDev) inject(id int32, f broker.Faults) time.Time {
	d.t.Helper()
	at := time.Now()
	if _, err := d.faults(id).Set(context.Background(), f); err != nil {
		d.t.Fatal(err)
	}
	return at
}

func (d *mitDev) clear(id int32) {
	d.t.Helper()
	if _, err := d.faults(id).Clear(context.Background()); err != nil {
		d.t.Fatal(err)
	}
}

func (d *mitDev) decisionsErr() ([]mitigator.Decision, error) {
	resp, err := http.Get("http://" + d.p.http + "/api/v1/mitigations?limit=100000")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Mitigations []mitigator.Decision `json:"mitigations"`
		} `json:"data"`
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("/api/v1/mitigations: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	slices.Reverse(out.Data.Mitigations) // oldest first
	return out.Data.Mitigations, nil
}

func (d *mitDev) decisions() []mitigator.Decision {
	d.t.Helper()
	ds, err := d.decisionsErr()
	if err != nil {
		d.t.Fatal(err)
	}
	return ds
}

func (d *mitDev) dumpDecisions() string {
	ds, err := d.decisionsErr()
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, x := range ds {
		fmt.Fprintf(&b, "%s %s %s broker=%d detector=%s outcome=%s open=%v policy=%q reason=%q\n", x.ID, x.At.Format("15:04:05.000"), x.Action, x.Broker, x.Detector, x.Outcome, x.Open, x.Policy, x.Reason)
		for _, s := range x.Steps {
			fmt.Fprintf(&b, "    step %s broker=%d %s/%d %s %s\n", s.Op, s.Broker, s.Topic, s.Partition, s.Result, s.Detail)
		}
	}
	return b.String()
}

// mark remembers the decisions so far: find looks only at later ones.
func (d *mitDev) mark() {
	d.before = map[string]bool{}
	for _, x := range d.decisions() {
		d.before[x.ID] = true
	}
}

// find returns the first decision since mark with this action and broker
// whose outcome is one of outcomes (any when none), or nil.
func (d *mitDev) find(action string, id int32, outcomes ...string) *mitigator.Decision {
	d.t.Helper()
	for _, x := range d.decisions() {
		if d.before[x.ID] || x.Action != action || x.Broker != id {
			continue
		}
		if len(outcomes) == 0 || slices.Contains(outcomes, x.Outcome) {
			return &x
		}
	}
	return nil
}

// await polls until a decision find returns exists and returns it.
func (d *mitDev) await(what, action string, id int32, outcomes ...string) *mitigator.Decision {
	d.t.Helper()
	var got *mitigator.Decision
	pollUntil(d.t, what, 2*time.Minute, func() bool {
		got = d.find(action, id, outcomes...)
		return got != nil
	})
	return got
}

func (d *mitDev) describe(id int32) *controller.BrokerDescription {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := d.ctrl.DescribeBroker(ctx, id)
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

func (d *mitDev) image() *controller.Image {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	delta, err := d.ctrl.Metadata(ctx)
	if err != nil || delta.Image == nil {
		d.t.Fatalf("metadata: %v", err)
	}
	return delta.Image
}

// probeProduce returns the probe's produce attempts and failures so far,
// over every broker but exclude (-1: none).
func (d *mitDev) probeProduce(exclude int32) (attempts, failures float64) {
	d.t.Helper()
	resp, err := http.Get("http://" + d.p.http + "/metrics")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `op="produce"`) || strings.Contains(line, `broker="`+strconv.Itoa(int(exclude))+`"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, "vigil_probe_attempts_total{"):
			attempts += v
		case strings.HasPrefix(line, "vigil_probe_failures_total{"):
			failures += v
		}
	}
	return attempts, failures
}

// probesHealthy: over the next two seconds the probe produced records
// and none of its produce requests failed, leaving out those sent to
// broker exclude (-1: none). The probe of a broker always writes to that
// broker, so a broker that clients cannot reach keeps failing its own
// probes however well it is mitigated: what must recover is the others'.
func (d *mitDev) probesHealthy(exclude int32) bool {
	a0, f0 := d.probeProduce(exclude)
	time.Sleep(2 * time.Second)
	a1, f1 := d.probeProduce(exclude)
	return a1 > a0 && f1 == f0
}

// measure logs one scenario's times (see docs/benchmarks.md).
func measure(t *testing.T, scenario string, faultAt, decidedAt, mitigatedAt time.Time) {
	line := fmt.Sprintf("MEASURE scenario=%s detect=%.1fs mitigate=%.1fs", scenario, decidedAt.Sub(faultAt).Seconds(), mitigatedAt.Sub(faultAt).Seconds())
	t.Log(line)
	if os.Getenv("VIGIL_MEASURE_MITIGATION") == "1" {
		fmt.Println(line)
	}
}

// ackedProducer writes records with acks=all through the whole test and
// remembers each one acknowledged.
type ackedProducer struct {
	t      *testing.T
	topic  string
	cl     *kgo.Client
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	acked  map[string]bool
	gaveUp bool // finish timed out once; it does not wait again
}

// startAckedProducer creates topic (6 partitions, 3 replicas,
// min.insync.replicas 2) and starts writing to it.
func startAckedProducer(t *testing.T, seeds []string, topic string) *ackedProducer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(20*time.Second), kgo.ProducerBatchMaxBytes(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	two := "2"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 6, 3, map[string]*string{"min.insync.replicas": &two}, topic); err != nil {
		t.Fatal(err)
	}
	p := &ackedProducer{t: t, topic: topic, cl: cl, stop: make(chan struct{}), done: make(chan struct{}), acked: map[string]bool{}}
	go p.run()
	t.Cleanup(func() { p.finish(); cl.Close() })
	pollUntil(t, "the first acknowledged records", time.Minute, func() bool { return p.ackedNow() >= 50 })
	return p
}

func (p *ackedProducer) run() {
	defer close(p.done)
	for i := 0; ; i++ {
		select {
		case <-p.stop:
			return
		default:
		}
		var recs []*kgo.Record
		for j := range 10 {
			recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i*10 + j))})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res := p.cl.ProduceSync(ctx, recs...)
		cancel()
		p.mu.Lock()
		for _, r := range res {
			if r.Err == nil {
				p.acked[string(r.Record.Value)] = true
			}
		}
		p.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *ackedProducer) ackedNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// finish stops the producer and waits for its last produce call. A call
// still running after a minute (its context has a 30 s deadline) is a
// failure: the test says so and goes on, and closing the client ends it.
func (p *ackedProducer) finish() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	if p.gaveUp {
		return
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.gaveUp = true
		p.t.Errorf("the acks=all producer is still in a produce call a minute after it was stopped")
	}
}

// verify stops the producer and reads the topic back: every acknowledged
// record must be there.
func (p *ackedProducer) verify(seeds []string) {
	t := p.t
	t.Helper()
	p.finish()
	p.mu.Lock()
	acked := maps.Clone(p.acked)
	p.mu.Unlock()
	want := len(acked)
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(p.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]bool{}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		missing := 0
		for v := range acked {
			if !seen[v] {
				missing++
			}
		}
		if missing == 0 {
			t.Logf("all %d acknowledged records read back", want)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	missing := 0
	for v := range acked {
		if !seen[v] {
			missing++
		}
	}
	t.Fatalf("%d of %d acknowledged records were not read back", missing, want)
}

var (
	slowFsync = broker.Faults{Storage: []broker.StorageFault{{Op: "fsync", Latency: broker.Duration(300 * time.Millisecond)}}}
	stuckDisk = broker.Faults{Storage: []broker.StorageFault{{Op: "all", Stuck: true}}}
	grayNet   = broker.Faults{Network: []broker.NetworkFault{{Peer: "clients", Direction: "both", Mode: "blackhole"}, {Peer: "replication", Direction: "both", Mode: "blackhole"}}}
)

// TestMitigateStorageDegradation: 300 ms on every fsync of broker 2 →
// demoted and leading nothing while the probe's produce requests keep
// succeeding and no acknowledged record is lost; the fault cleared → un-
// demoted and given leaderships back.
func TestMitigateStorageDegradation(t *testing.T) {
	d := startMitDev(t, 3)
	prod := startAckedProducer(t, d.seeds, "mit")
	d.mark()
	faultAt := d.inject(2, slowFsync)
	dem := d.await("broker 2 demoted for storage_degraded", mitigator.ActDemote, 2, mitigator.OutDone)
	if dem.Detector != "storage_degraded" {
		t.Errorf("demoted for %s, want storage_degraded", dem.Detector)
	}
	var mitigatedAt time.Time
	waitUntil(t, "broker 2 demoted, leading nothing, and the probes through the others healthy", 2*time.Minute, func() (bool, string) {
		b := d.describe(2)
		if !b.Demoted || b.Leaders != 0 {
			return false, fmt.Sprintf("broker 2: %+v", b)
		}
		// The probe of broker 2 writes to the partition broker 2
		// should lead: demoted, it answers NOT_LEADER.
		if !d.probesHealthy(2) {
			return false, "probe produce requests through brokers 0 and 1 failing"
		}
		mitigatedAt = time.Now()
		return true, ""
	})
	measure(t, "storage_degraded", faultAt, dem.At, mitigatedAt)
	for _, x := range d.decisions() {
		if !d.before[x.ID] && x.Outcome == mitigator.OutDone && x.Broker != 2 {
			t.Errorf("decision %s acted on broker %d; only broker 2 is sick", x.ID, x.Broker)
		}
	}

	d.mark()
	d.clear(2)
	d.await("broker 2 undemoted", mitigator.ActUndemote, 2, mitigator.OutDone)
	pollUntil(t, "broker 2 leading again", 2*time.Minute, func() bool {
		b := d.describe(2)
		return !b.Demoted && b.Leaders > 0
	})
	prod.verify(d.seeds)
}

// TestMitigateGrayFailure: broker 2's client and replication traffic
// blackholed, its controller link up → demoted, then fenced since its
// followers cannot fetch; its partitions get other leaders. Healed →
// unfenced and undemoted.
func TestMitigateGrayFailure(t *testing.T) {
	d := startMitDev(t, 3)
	prod := startAckedProducer(t, d.seeds, "mit")
	d.mark()
	faultAt := d.inject(2, grayNet)
	dem := d.await("broker 2 demoted", mitigator.ActDemote, 2, mitigator.OutDone)
	if dem.Detector != "unreachable" {
		t.Errorf("demoted for %s, want unreachable", dem.Detector)
	}
	d.await("broker 2 fenced", mitigator.ActFence, 2, mitigator.OutDone)
	var mitigatedAt time.Time
	waitUntil(t, "broker 2 fenced and leading nothing, every partition led, the probes healthy", 2*time.Minute, func() (bool, string) {
		b := d.describe(2)
		if !b.Demoted || !b.AdminFenced || b.Leaders != 0 {
			return false, fmt.Sprintf("broker 2: %+v", b)
		}
		for name, tp := range d.image().Topics {
			for i, p := range tp.Partitions {
				if p.Leader == controller.NoLeader || p.Leader == 2 {
					return false, fmt.Sprintf("%s-%d: leader %d, ISR %v", name, i, p.Leader, p.ISR)
				}
			}
		}
		if !d.probesHealthy(2) {
			return false, "probe produce requests through brokers 0 and 1 failing"
		}
		mitigatedAt = time.Now()
		return true, ""
	})
	measure(t, "unreachable", faultAt, dem.At, mitigatedAt)

	d.mark()
	d.clear(2)
	d.await("broker 2 unfenced", mitigator.ActUnfence, 2, mitigator.OutDone)
	d.await("broker 2 undemoted", mitigator.ActUndemote, 2, mitigator.OutDone)
	pollUntil(t, "broker 2 registered, not fenced, not demoted", 2*time.Minute, func() bool {
		b := d.describe(2)
		return b.State == controller.BrokerRegistered && !b.AdminFenced && !b.Demoted
	})
	prod.verify(d.seeds)
}

// TestMitigateStuckStorage: every write and fsync of broker 1 blocks →
// its leaderships move, it is restarted (a new incarnation; the restart
// clears the injected fault, as a replaced disk would), and it rejoins.
func TestMitigateStuckStorage(t *testing.T) {
	d := startMitDev(t, 3)
	prod := startAckedProducer(t, d.seeds, "mit")
	inc := d.describe(1).IncarnationID
	d.mark()
	faultAt := d.inject(1, stuckDisk)
	dem := d.await("broker 1 demoted", mitigator.ActDemote, 1, mitigator.OutDone)
	if dem.Detector != "storage_stuck" {
		t.Errorf("demoted for %s, want storage_stuck", dem.Detector)
	}
	d.await("broker 1 restarted", mitigator.ActRestart, 1, mitigator.OutDone)
	mitigatedAt := time.Now()
	d.clear(1) // nothing left to clear after the restart; harmless
	pollUntil(t, "broker 1 rejoined as a new incarnation", 2*time.Minute, func() bool {
		b := d.describe(1)
		return b.IncarnationID != inc && b.State == controller.BrokerRegistered && !b.AdminFenced
	})
	measure(t, "storage_stuck", faultAt, dem.At, mitigatedAt)
	d.await("broker 1 undemoted", mitigator.ActUndemote, 1, mitigator.OutDone)
	pollUntil(t, "broker 1 in every ISR of topic mit again", 2*time.Minute, func() bool {
		for _, p := range d.image().Topics["mit"].Partitions {
			if !slices.Contains(p.ISR, 1) {
				return false
			}
		}
		return true
	})
	prod.verify(d.seeds)
}

// TestMitigateReplacement: broker 2 stays degraded past the replacement
// limit → a new broker (3) is provisioned, takes broker 2's replicas,
// broker 2 is decommissioned and retired; no acknowledged record is lost.
func TestMitigateReplacement(t *testing.T) {
	d := startMitDev(t, 3, "--mitigation-replace-after", "15s")
	prod := startAckedProducer(t, d.seeds, "mit")
	d.mark()
	faultAt := d.inject(2, slowFsync)
	rep := d.await("broker 2 replaced", mitigator.ActReplace, 2, mitigator.OutDone)
	if rep.NewBroker != 3 {
		t.Errorf("replacement provisioned broker %d, want 3", rep.NewBroker)
	}
	pollUntil(t, "broker 3 holding broker 2's replicas, broker 2 decommissioned", 2*time.Minute, func() bool {
		img := d.image()
		for _, tp := range img.Topics {
			for _, p := range tp.Partitions {
				if slices.Contains(p.Replicas, 2) {
					return false
				}
			}
		}
		for _, p := range img.Topics["mit"].Partitions {
			if !slices.Contains(p.Replicas, 3) {
				return false
			}
		}
		b2, b3 := img.Brokers[2], img.Brokers[3]
		return (b2 == nil || b2.State == controller.BrokerDecommissioned) && b3 != nil && b3.State == controller.BrokerRegistered
	})
	measure(t, "replace", faultAt, rep.At, time.Now())
	resp, err := http.Get("http://" + d.p.http + "/brokers/2/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/brokers/2/readyz after the replacement: %d, want 404 (retired)", resp.StatusCode)
	}
	prod.verify(append(d.seeds, hostPort("127.0.0.1", d.kport+3)))
}

// TestMitigationPolicy: two brokers of a cell of five degraded at once →
// only one is mitigated, the other refused; every broker of a cell slow →
// mitigation_suppressed and nothing done; in approve mode a demotion waits
// for `vigil mitigations approve`; in dry-run mode, a degraded broker gets
// a decision and nothing is done.
func TestMitigationPolicy(t *testing.T) {
	t.Run("one-per-cell", func(t *testing.T) {
		d := startMitDev(t, 5)
		d.mark()
		d.inject(1, slowFsync)
		d.inject(3, slowFsync)
		pollUntil(t, "one of brokers 1 and 3 demoted, the other refused", 2*time.Minute, func() bool {
			for _, pair := range [][2]int32{{1, 3}, {3, 1}} {
				if d.find(mitigator.ActDemote, pair[0], mitigator.OutDone) != nil && d.find(mitigator.ActDemote, pair[1], mitigator.OutRefused) != nil {
					return true
				}
			}
			return false
		})
		demoted := 0
		for _, id := range []int32{0, 1, 2, 3, 4} {
			if d.describe(id).Demoted {
				demoted++
			}
		}
		if demoted != 1 {
			t.Fatalf("%d brokers demoted, want exactly 1", demoted)
		}
	})
	t.Run("all-slow", func(t *testing.T) {
		d := startMitDev(t, 3)
		d.mark()
		for _, id := range []int32{0, 1, 2} {
			d.inject(id, slowFsync)
		}
		d.await("mitigation_suppressed for cell a", mitigator.ActSuppress, -1, mitigator.OutSuppress)
		for _, id := range []int32{0, 1, 2} {
			if b := d.describe(id); b.Demoted {
				t.Fatalf("broker %d demoted while every broker of its cell was slow", id)
			}
		}
		for _, x := range d.decisions() {
			if !d.before[x.ID] && x.Outcome == mitigator.OutDone {
				t.Fatalf("decision %s (%s of broker %d) carried out while every broker was slow", x.ID, x.Action, x.Broker)
			}
		}
	})
	t.Run("approve", func(t *testing.T) {
		d := startMitDev(t, 3, "--mitigation-mode", "approve")
		d.mark()
		d.inject(2, slowFsync)
		pending := d.await("a demotion of broker 2 waiting for approval", mitigator.ActDemote, 2, mitigator.OutPending)
		if b := d.describe(2); b.Demoted {
			t.Fatal("broker 2 demoted before anyone approved")
		}
		var out bytes.Buffer
		if err := run([]string{"mitigations", "approve", pending.ID, "--url", "http://" + d.p.http}, &out, io.Discard); err != nil {
			t.Fatalf("vigil mitigations approve %s: %v\n%s", pending.ID, err, out.String())
		}
		pollUntil(t, "broker 2 demoted once approved", 2*time.Minute, func() bool {
			return d.describe(2).Demoted
		})
	})
	t.Run("dry-run", func(t *testing.T) {
		d := startMitDev(t, 3, "--mitigation-mode", "dry-run")
		d.mark()
		d.inject(2, slowFsync)
		d.await("a dry-run demotion of broker 2", mitigator.ActDemote, 2, mitigator.OutDryRun)
		if b := d.describe(2); b.Demoted || b.Leaders == 0 {
			t.Fatalf("dry-run mode changed broker 2: demoted %v, leads %d", b.Demoted, b.Leaders)
		}
		for _, x := range d.decisions() {
			if !d.before[x.ID] && x.Outcome == mitigator.OutDone {
				t.Fatalf("decision %s (%s) was carried out in dry-run mode", x.ID, x.Action)
			}
		}
	})
}

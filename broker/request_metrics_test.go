package broker

import (
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestBoundedLabels(t *testing.T) {
	var evicted []string
	l := newBoundedLabels(2, 3, func(v string) { evicted = append(evicted, v) })
	use := func(v string, n int) boundLabel {
		b := l.resolve(v)
		b.slot.count.Add(uint64(n))
		return b
	}
	if b := use("a", 1); b.label != "a" {
		t.Fatalf("first value: label %q", b.label)
	}
	use("b", 1)
	c := use("c", 100)
	if c.label != otherLabel {
		t.Fatalf("third value with a limit of 2: label %q, want other", c.label)
	}
	// c is the most active: ranking gives it a series, at the expense of
	// the least active holder (a and b tie; b goes by name).
	l.rank()
	if got := l.admittedValues(); fmt.Sprint(got) != "[a c]" {
		t.Fatalf("after ranking: %v, want [a c]", got)
	}
	if fmt.Sprint(evicted) != "[b]" {
		t.Fatalf("evicted %v, want [b]", evicted)
	}
	if l.valid(&c) {
		t.Fatal("a resolution from before the ranking that evicted a value is still valid")
	}
	if b := l.resolve("c"); b.label != "c" {
		t.Fatalf("c after ranking: %q", b.label)
	}
	if b := l.resolve("b"); b.label != otherLabel {
		t.Fatalf("b after ranking: %q", b.label)
	}

	// Idle values lose their series after idleWindows quiet windows.
	evicted = nil
	for i := 0; i < 3; i++ {
		use("a", 1)
		l.rank()
	}
	if fmt.Sprint(evicted) != "[c]" {
		t.Fatalf("after 3 windows with only a active: evicted %v, want [c]", evicted)
	}

	// The candidate table stays bounded whatever the number of values.
	for i := 0; i < 10000; i++ {
		use("x"+strconv.Itoa(i), 1)
	}
	l.mu.Lock()
	n := len(l.candidates)
	l.mu.Unlock()
	if n > 8 {
		t.Fatalf("%d candidates tracked with a limit of 2; want at most 8", n)
	}
	if got := len(l.admittedValues()); got > 2 {
		t.Fatalf("%d values admitted with a limit of 2", got)
	}
}

func TestSplitClientKey(t *testing.T) {
	for _, c := range [][3]string{{"kgo", "1.2", "app"}, {"", "", ""}, {"a", "", "id\x00with-nul"}} {
		sw, ver, id := splitClientKey(clientKey(c[0], c[1], c[2]))
		if [3]string{sw, ver, id} != c {
			t.Errorf("round trip of %q: %q %q %q", c, sw, ver, id)
		}
	}
	if sw, ver, id := splitClientKey(otherLabel); sw != otherLabel || ver != otherLabel || id != otherLabel {
		t.Errorf("other: %q %q %q", sw, ver, id)
	}
}

func TestCountRecords(t *testing.T) {
	batch := func(n int) []byte { return makeBatch(-1, -1, -1, n, []byte("x")) }
	b := append(batch(3), batch(5)...)
	if got := countRecords(b); got != 8 {
		t.Fatalf("countRecords of batches of 3 and 5: %d", got)
	}
	if got := countRecords(b[:len(b)-1]); got != 8 {
		t.Fatalf("with the last batch cut short: %d, want 8 (its header counts)", got)
	}
	if got := countRecords(b[:20]); got != 0 {
		t.Fatalf("a stub of a header: %d", got)
	}
}

// histograms returns the sample count and sum of every series of a
// histogram family, by the values of the given labels joined with "/".
func histograms(t *testing.T, b *Broker, name string, labels ...string) map[string][2]float64 {
	t.Helper()
	mfs, err := b.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name || mf.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			key := ""
			for i, l := range labels {
				if i > 0 {
					key += "/"
				}
				key += have[l]
			}
			h := m.GetHistogram()
			cur := out[key]
			out[key] = [2]float64{cur[0] + float64(h.GetSampleCount()), cur[1] + h.GetSampleSum()}
		}
	}
	return out
}

// stagesCaughtUp reports whether every API's stage histograms count as
// many requests as its total (a request is counted in both by the time its
// measuring is done).
func stagesCaughtUp(t *testing.T, b *Broker) bool {
	totals := histograms(t, b, "vigil_request_duration_seconds", "api", "version")
	stages := histograms(t, b, "vigil_request_stage_seconds", "api", "version", "stage")
	for key, total := range totals {
		for _, st := range stageNames {
			if s, ok := stages[key+"/"+st]; st != "send" && (!ok || s[0] != total[0]) {
				return false
			}
		}
	}
	return true
}

// TestRequestMetricsMove runs a franz-go workload and checks that the
// request, client and topic metrics count it: records produced and
// fetched, error codes, connections, and stages that add up to the total.
func TestRequestMetricsMove(t *testing.T) {
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	createTopic(t, adm, "rm", 1, nil)

	cl := newClient(t, b, kgo.ClientID("metrics-test"), kgo.DefaultProduceTopic("rm"), kgo.ProducerLinger(0))
	const n = 250
	for i := 0; i < n; i++ {
		if err := cl.ProduceSync(testCtx(t), &kgo.Record{Value: []byte("v" + strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	consumeN(t, b, "rm", n)

	if v := metricValue(t, b, "vigil_topic_produced_records_total", map[string]string{"topic": "rm"}); v != n {
		t.Errorf("vigil_topic_produced_records_total{topic=rm} = %v, want %d", v, n)
	}
	if v := metricValue(t, b, "vigil_topic_produced_bytes_total", map[string]string{"topic": "rm"}); v < n*10 {
		t.Errorf("vigil_topic_produced_bytes_total{topic=rm} = %v for %d batches", v, n)
	}
	if v := metricValue(t, b, "vigil_topic_fetched_records_total", map[string]string{"topic": "rm"}); v < n {
		t.Errorf("vigil_topic_fetched_records_total{topic=rm} = %v, want at least %d", v, n)
	}
	// A request is measured just after its response is written, so the
	// client can have the last answer a moment before the broker counted it:
	// poll until the duration, size, client and stage series all count
	// every produce request, the same number.
	var produces float64
	waitFor(t, "every produce request measured alike by the duration, size, client and stage series", 30*time.Second, func() bool {
		produces = metricValue(t, b, "vigil_request_duration_seconds", map[string]string{"api": "Produce"})
		return produces >= n && metricValue(t, b, "vigil_request_size_bytes", map[string]string{"api": "Produce"}) == produces &&
			metricValue(t, b, "vigil_client_request_duration_seconds", map[string]string{"api": "Produce", "client_id": "metrics-test", "client_software": "kgo"}) == produces &&
			stagesCaughtUp(t, b)
	})
	if v := metricValue(t, b, "vigil_client_received_bytes_total", map[string]string{"client_id": "metrics-test"}); v <= 0 {
		t.Errorf("vigil_client_received_bytes_total{client_id=metrics-test} = %v", v)
	}

	// Stages add up to the total, for every API and version.
	totals := histograms(t, b, "vigil_request_duration_seconds", "api", "version")
	stages := histograms(t, b, "vigil_request_stage_seconds", "api", "version", "stage")
	for key, total := range totals {
		var sum float64
		for _, st := range stageNames {
			s, ok := stages[key+"/"+st]
			if st != "send" && (!ok || s[0] != total[0]) {
				t.Errorf("%s: stage %s counted %v requests, total %v", key, st, s[0], total[0])
			}
			sum += s[1]
		}
		if math.Abs(sum-total[1]) > 1e-6*total[0]+0.01*total[1] {
			t.Errorf("%s: stages sum to %vs, the total is %vs", key, sum, total[1])
		}
	}
	// A long poll with nothing to read waits remotely.
	c := dialRaw(t, b)
	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(11)
	fetch.ReplicaID, fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = -1, 20, 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "rm"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset, fp.PartitionMaxBytes = n, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	fresp := fetch.ResponseKind()
	fresp.SetVersion(11)
	c.roundTrip(fetch, fresp)
	waitFor(t, "the long poll's remote stage", 10*time.Second, func() bool {
		return histograms(t, b, "vigil_request_stage_seconds", "api", "version", "stage")["Fetch/11/remote"][1] > 0
	})

	// Errors, by API and code, and for the client.
	if got := produceRaw(t, c, "rm", 7, makeBatch(-1, -1, -1, 1, []byte("x"))); got.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("produce to partition 7 of a one-partition topic: error %d", got.ErrorCode)
	}
	waitFor(t, "the error counted", 10*time.Second, func() bool {
		return metricValue(t, b, "vigil_request_errors_total", map[string]string{"api": "Produce", "error": "UNKNOWN_TOPIC_OR_PARTITION"}) == 1 &&
			metricValue(t, b, "vigil_client_request_errors_total", map[string]string{"api": "Produce", "client_id": "raw-test"}) == 1
	})

	// Connections.
	if v := metricValue(t, b, "vigil_connection_active_connections", map[string]string{"listener": listenerName}); v < 1 {
		t.Errorf("active connections: %v", v)
	}
	created := metricValue(t, b, "vigil_connection_created_total", nil)
	c.nc.Close()
	waitFor(t, "the closed connection counted", 10*time.Second, func() bool {
		return metricValue(t, b, "vigil_connection_closed_total", nil) >= 1
	})
	if created < 2 {
		t.Errorf("connections created: %v", created)
	}
}

// TestClientCardinalityBounded sends requests under 10,000 client ids and
// checks that the client series stay within --metrics-max-clients plus
// other, and that a busy client folded into other gets its own series at
// the next ranking.
func TestClientCardinalityBounded(t *testing.T) {
	const limit = 20
	b := startBroker(t, "", func(c *Config) { c.MetricsMaxClients = limit })
	c := dialRaw(t, b)
	send := func(clientID string) {
		t.Helper()
		req := kmsg.NewPtrMetadataRequest()
		req.SetVersion(1)
		req.Topics = []kmsg.MetadataRequestTopic{} // none
		f := kmsg.NewRequestFormatter(kmsg.FormatterClientID(clientID))
		if _, err := c.nc.Write(f.AppendRequest(nil, req, 1)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.recv(false); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10000; i++ {
		send("client-" + strconv.Itoa(i))
	}
	ids := func() map[string]float64 {
		out := map[string]float64{}
		for k, v := range histograms(t, b, "vigil_client_request_duration_seconds", "client_id") {
			out[k] = v[0]
		}
		return out
	}
	// A request is counted just after its answer is written: wait for the
	// last one.
	var got map[string]float64
	waitFor(t, "the last request counted", time.Minute, func() bool {
		got = ids()
		return got[otherLabel] >= 10000-limit
	})
	if len(got) > limit+1 {
		t.Fatalf("%d client ids have series; the limit is %d plus other", len(got), limit)
	}
	if got[otherLabel] != 10000-limit {
		t.Fatalf("other counted %v requests, want %d", got[otherLabel], 10000-limit)
	}
	for i := 0; i < 50; i++ {
		send("busy")
	}
	b.reqMetrics.rankLabels()
	send("busy")
	waitFor(t, "the busy client's request counted in its own series", time.Minute, func() bool {
		got = ids()
		return got["busy"] >= 1
	})
	if got["busy"] != 1 {
		t.Fatalf("after ranking, the busiest client has %v requests in its own series; series: %d", got["busy"], len(got))
	}
	if len(got) > limit+1 {
		t.Fatalf("%d client ids have series after ranking; the limit is %d plus other", len(got), limit)
	}
}

// BenchmarkRequestMetrics is the per-request cost of the request metrics:
// a metadata round trip with them on and off.
func BenchmarkRequestMetrics(bm *testing.B) {
	for _, on := range []bool{false, true} {
		bm.Run(fmt.Sprintf("metrics=%v", on), func(bm *testing.B) {
			b := startBroker(bm, "", func(c *Config) { c.RequestMetrics = on })
			c := dialRaw(bm, b)
			req := kmsg.NewPtrMetadataRequest()
			req.SetVersion(1)
			req.Topics = []kmsg.MetadataRequestTopic{}
			frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("bench")).AppendRequest(nil, req, 1)
			_ = c.nc.SetDeadline(time.Time{})
			bm.ResetTimer()
			for i := 0; i < bm.N; i++ {
				if _, err := c.nc.Write(frame); err != nil {
					bm.Fatal(err)
				}
				if _, _, err := c.recv(false); err != nil {
					bm.Fatal(err)
				}
			}
		})
	}
}

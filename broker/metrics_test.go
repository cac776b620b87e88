package broker

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// lagSeries returns vigil_group_lag_records by "group/topic/partition".
func lagSeries(t *testing.T, b *Broker) map[string]float64 {
	t.Helper()
	mfs, err := b.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "vigil_group_lag_records" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["broker"] != "0" {
				t.Fatalf("lag series without the broker label: %v", l)
			}
			out[l["group"]+"/"+l["topic"]+"/"+l["partition"]] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestConsumerLagMetric commits offsets for three groups and checks the
// lag series, with the smaller lags folded into group="other" by the top-N
// bound.
func TestConsumerLagMetric(t *testing.T) {
	b := startBroker(t, "", func(c *Config) {
		c.OffsetsTopicPartitions = 4
		c.GroupLagTopN = 1
	})
	adm := newAdmin(t, b)
	createTopic(t, adm, "lagged", 1, nil)
	produceValues(t, b, "lagged", 0, 100)
	commit := func(group string, at int64) {
		t.Helper()
		if err := adm.CommitAllOffsets(testCtx(t), group, kadm.OffsetsFromRecords(kgo.Record{Topic: "lagged", Partition: 0, Offset: at - 1})); err != nil {
			t.Fatal(err)
		}
	}
	commit("far-behind", 10) // lag 90
	commit("behind", 70)     // lag 30
	commit("caught-up", 100) // lag 0
	var got map[string]float64
	waitFor(t, "lag series", 30*time.Second, func() bool {
		got = lagSeries(t, b)
		return len(got) == 2
	})
	if got["far-behind/lagged/0"] != 90 || got["other/lagged/0"] != 30 {
		t.Fatalf("lag series: %v", got)
	}
}

// TestMetricsCatalogue fails if the broker exposes a vigil_ metric that
// docs/metrics.md does not list.
func TestMetricsCatalogue(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, "", func(c *Config) { c.OffsetsTopicPartitions = 2 })
	adm := newAdmin(t, b)
	createTopic(t, adm, "cat", 1, nil)
	if err := adm.CommitAllOffsets(testCtx(t), "g", kadm.OffsetsFromRecords(kgo.Record{Topic: "cat", Partition: 0, Offset: 0})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "group metrics", 30*time.Second, func() bool { return len(lagSeries(t, b)) > 0 })
	pushEveryKind(t, b) // a series in every client telemetry family
	mfs, err := b.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "vigil_") {
			continue
		}
		n++
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("metric %s is not in docs/metrics.md", name)
		}
	}
	if n == 0 {
		t.Fatal("no vigil_ metrics gathered")
	}
}

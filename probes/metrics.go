package probes

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/internal/catalogue"
)

// Probe metrics. Every series carries location=<Config.Location> (the
// probe's vantage point), cluster and cell; broker is the broker probed
// (for commits, the group coordinator), partition the probe partition.
// Label values are bounded by the cluster's size.
// Label sets: per broker, and per probe partition.
var (
	brokerLabels    = []string{"cluster", "cell", "broker"}
	partitionLabels = []string{"cluster", "cell", "broker", "partition"}
)

// declare declares a probe metric: exposed by a probe, labelled with its
// location.
func declare(name string, kind catalogue.Kind, labels []string, help string) *catalogue.Def {
	return catalogue.Declare("location", name, kind, help, labels...)
}

var (
	mProduce = declare("vigil_probe_produce_seconds", catalogue.Histogram, partitionLabels,
		"Produce acknowledgement latency of probe records (acks=all), sent straight to the broker that should lead the partition; successes only.")
	mE2E = declare("vigil_probe_e2e_seconds", catalogue.Histogram, partitionLabels,
		"End-to-end latency of probe records: from the produce call to the probe's consumer receiving the record (committed on every in-sync replica).")
	mMetadata = declare("vigil_probe_metadata_seconds", catalogue.Histogram, brokerLabels,
		"Latency of a Metadata request for the cell's probe topic, sent to each broker every interval; successes only.")
	mCommit = declare("vigil_probe_commit_seconds", catalogue.Histogram, brokerLabels,
		"Latency of an OffsetCommit of the probe's consumer group for the cell, sent to the group coordinator (broker) every interval; successes only.")
	mConnect = declare("vigil_probe_connect_seconds", catalogue.Histogram, brokerLabels,
		"Time to open a connection to a broker (TCP and, when configured, TLS and SASL); successes only.")
	mAttempts = declare("vigil_probe_attempts_total", catalogue.Counter, []string{"cluster", "cell", "broker", "op"},
		"Probe operations attempted, by operation (produce, metadata, commit, connect).")
	mFailures = declare("vigil_probe_failures_total", catalogue.Counter, []string{"cluster", "cell", "broker", "op", "class"},
		"Probe operations that failed, by operation and class (timeout, not_leader, connection_refused, other).")
	mLost = declare("vigil_probe_lost_records_total", catalogue.Counter, partitionLabels,
		"Probe records acknowledged but not consumed within the loss deadline (--loss-deadline, default 20s).")
	mDuplicated = declare("vigil_probe_duplicated_records_total", catalogue.Counter, partitionLabels,
		"Probe records found at a second offset of their partition.")
	mReordered = declare("vigil_probe_reordered_records_total", catalogue.Counter, partitionLabels,
		"Probe records consumed after a record that was sent only once they had been acknowledged.")
	mUp = declare("vigil_probe_up", catalogue.Gauge, brokerLabels,
		"1 when the last probe record produced through the broker was acknowledged, else 0.")
	mLastSuccess = declare("vigil_probe_last_success_timestamp_seconds", catalogue.Gauge, brokerLabels,
		"Unix time of the last acknowledged probe record produced through the broker.")
)

// Operations, the op label of the attempt and failure counters.
const (
	opProduce  = "produce"
	opMetadata = "metadata"
	opCommit   = "commit"
	opConnect  = "connect"
)

// latencyBuckets span 250 µs to 20 s: a produce on one host takes well
// under a millisecond, across zones a few, across regions a hundred; the
// slowest end-to-end latency worth a bucket is the loss deadline.
var latencyBuckets = []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20}

// metrics are one probe's metric families.
type metrics struct {
	produce, e2e, metadata, commit, connect *prometheus.HistogramVec
	attempts, failures                      *prometheus.CounterVec
	lost, duplicated, reordered             *prometheus.CounterVec
	up, lastSuccess                         *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	// A probe observes a few latencies a second: native buckets are free.
	latency := catalogue.Buckets{Classic: latencyBuckets, Native: true}
	m := &metrics{
		produce:     mProduce.HistogramVec(latency),
		e2e:         mE2E.HistogramVec(latency),
		metadata:    mMetadata.HistogramVec(latency),
		commit:      mCommit.HistogramVec(latency),
		connect:     mConnect.HistogramVec(latency),
		attempts:    mAttempts.CounterVec(),
		failures:    mFailures.CounterVec(),
		lost:        mLost.CounterVec(),
		duplicated:  mDuplicated.CounterVec(),
		reordered:   mReordered.CounterVec(),
		up:          mUp.GaugeVec(),
		lastSuccess: mLastSuccess.GaugeVec(),
	}
	reg.MustRegister(m.produce, m.e2e, m.metadata, m.commit, m.connect, m.attempts, m.failures,
		m.lost, m.duplicated, m.reordered, m.up, m.lastSuccess)
	return m
}

// forget deletes the series of a broker that is no longer probed.
func (m *metrics) forget(cell, broker string) {
	match := prometheus.Labels{"cell": cell, "broker": broker}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.produce, m.e2e, m.metadata, m.commit, m.connect, m.attempts, m.failures,
		m.lost, m.duplicated, m.reordered, m.up, m.lastSuccess,
	} {
		v.DeletePartialMatch(match)
	}
}

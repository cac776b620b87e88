package broker

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigilhq/vigil/broker/group"
)

// processRegistry holds the Go runtime and process collectors, once per
// process however many brokers it runs (process_cpu_seconds_total is what
// `vigil bench --broker-metrics` reads).
var processRegistry = func() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}()

// newRegistry returns the broker's Prometheus registry: its own metrics,
// each labelled with the broker id. Every vigil_ metric is listed in
// docs/metrics.md (checked by TestMetricsCatalogue).
func newRegistry(b *Broker) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	labeled := prometheus.WrapRegistererWith(prometheus.Labels{"broker": strconv.Itoa(int(b.cfg.NodeID))}, reg)
	labeled.MustRegister(&groupCollector{b: b})
	labeled.MustRegister(b.telemetry)
	return reg
}

// MetricsHandler serves the process metrics and the metrics of the given
// brokers in the Prometheus exposition format (one endpoint for all the
// brokers of a process, as in `vigil dev`).
func MetricsHandler(bs ...*Broker) http.Handler {
	gs := prometheus.Gatherers{processRegistry}
	for _, b := range bs {
		gs = append(gs, b.registry)
	}
	return promhttp.HandlerFor(gs, promhttp.HandlerOpts{})
}

var (
	groupLagDesc = prometheus.NewDesc("vigil_group_lag_records",
		"Records between a consumer group's committed offset and the partition's high watermark. "+
			"The top-N groups by total lag (--group-lag-top-n) are reported by name; the rest are summed under group=\"other\".",
		[]string{"group", "topic", "partition"}, nil)
	groupsDesc = prometheus.NewDesc("vigil_groups",
		"Consumer groups coordinated by this broker, by protocol type (classic, consumer) and state.",
		[]string{"type", "state"}, nil)
	groupsLoadingDesc = prometheus.NewDesc("vigil_group_coordinator_loading_partitions",
		"Partitions of __consumer_offsets this broker is still loading; their groups answer COORDINATOR_LOAD_IN_PROGRESS.",
		nil, nil)
)

// groupCollector computes consumer lag and group counts at scrape time
// from the coordinators' committed offsets and the partitions' high
// watermarks. Group names are bounded: only the top-N groups by lag get a
// series of their own.
type groupCollector struct{ b *Broker }

func (c *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- groupLagDesc
	ch <- groupsDesc
	ch <- groupsLoadingDesc
}

type lagKey struct {
	group, topic string
	partition    int32
}

func (c *groupCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	b.groups.mu.Lock()
	shards := b.groups.shards
	b.groups.mu.Unlock()
	type committed struct {
		key lagKey
		off int64
	}
	var offsets []committed
	states := map[[2]string]int{}
	loading := 0
	for _, s := range shards {
		select {
		case <-s.loaded:
		default:
			loading++
			continue
		}
		_ = s.do(func(core *group.Coordinator, _ time.Time) group.Output {
			core.EachOffset(func(g, t string, p int32, off int64) {
				offsets = append(offsets, committed{lagKey{g, t, p}, off})
			})
			core.EachGroup(func(typ, state string) { states[[2]string{typ, state}]++ })
			return group.Output{}
		})
	}
	ch <- prometheus.MustNewConstMetric(groupsLoadingDesc, prometheus.GaugeValue, float64(loading))
	for k, n := range states {
		ch <- prometheus.MustNewConstMetric(groupsDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}

	lag := map[lagKey]int64{}
	total := map[string]int64{}
	for _, o := range offsets {
		t := b.meta.lookup(o.key.topic)
		p := t.partition(o.key.partition)
		if p == nil || p.log == nil || p.log.Offline() != nil {
			// No replica here: the high watermark is its leader's.
			continue
		}
		l := max(p.log.HighWatermark()-o.off, 0)
		lag[o.key] = l
		total[o.key.group] += l
	}
	names := make([]string, 0, len(total))
	for g := range total {
		names = append(names, g)
	}
	sort.Slice(names, func(i, j int) bool {
		if total[names[i]] != total[names[j]] {
			return total[names[i]] > total[names[j]]
		}
		return names[i] < names[j]
	})
	top := map[string]bool{}
	for i, g := range names {
		if i < b.cfg.GroupLagTopN {
			top[g] = true
		}
	}
	out := map[lagKey]int64{}
	for k, l := range lag {
		if !top[k.group] {
			k.group = "other"
		}
		out[k] += l
	}
	for k, l := range out {
		ch <- prometheus.MustNewConstMetric(groupLagDesc, prometheus.GaugeValue, float64(l),
			k.group, k.topic, strconv.Itoa(int(k.partition)))
	}
}

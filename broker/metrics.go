package broker

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigilhq/vigil/internal/catalogue"
)

// processRegistry holds the Go runtime and process collectors, once per
// process however many brokers it runs (process_cpu_seconds_total is what
// `vigil bench --broker-metrics` reads).
var processRegistry = func() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}()

// newRegistry returns the broker's Prometheus registry, with the storage
// metrics (which the logs' file system feeds, so they exist before the
// logs do); Broker.registerCollectors adds the rest. Every vigil_ metric is
// declared in the catalogue (internal/catalogue) and listed in
// docs/metrics.md.
func newRegistry(nodeID int32, native bool) (*prometheus.Registry, prometheus.Registerer, *storageMetrics) {
	reg := prometheus.NewRegistry()
	labeled := prometheus.WrapRegistererWith(prometheus.Labels{"broker": strconv.Itoa(int(nodeID))}, reg)
	return reg, labeled, newStorageMetrics(labeled, native)
}

// registerCollectors adds the metrics computed from the broker's state at
// scrape time, and its event counters.
func (b *Broker) registerCollectors(reg prometheus.Registerer) {
	b.isrShrinks = mISRShrinks.Counter()
	b.isrExpands = mISRExpands.Counter()
	b.throttledBytes = mThrottledBytes.Counter()
	b.throttledReads = mThrottledReads.Counter()
	reg.MustRegister(&groupCollector{b: b}, &partitionCollector{b: b}, b.isrShrinks, b.isrExpands, b.throttledBytes, b.throttledReads, b.faults, b.telemetry)
	if b.cfg.RequestMetrics {
		b.reqMetrics = newRequestMetrics(reg, b.cfg.MetricsMaxClients, b.cfg.MetricsMaxTopics, b.cfg.MetricsNativeHistograms)
	}
}

// labelsWindow is how often the bounded labels (clients, topics) re-rank.
const labelsWindow = time.Minute

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
	mGroupLag = catalogue.Declare("broker", "vigil_group_lag_records", catalogue.Gauge,
		"Records between a consumer group's committed offset and the partition's high watermark, for the partitions the coordinator holds a replica of. "+
			"The --group-lag-top-n groups with the most lag are reported by name; the rest are summed under group=\"other\".",
		"group", "topic", "partition")
	mCoordGroups = catalogue.Declare("broker", "vigil_coordinator_groups", catalogue.Gauge,
		"Consumer groups this broker coordinates, by protocol type (classic, consumer) and state.", "type", "state")
	mCoordLoading = catalogue.Declare("broker", "vigil_coordinator_loading_partitions", catalogue.Gauge,
		"Partitions of __consumer_offsets this broker leads and is still loading; their groups answer COORDINATOR_LOAD_IN_PROGRESS.")

	mLeaders = catalogue.Declare("broker", "vigil_partition_leaders", catalogue.Gauge,
		"Partitions this broker leads.")
	mReplicas = catalogue.Declare("broker", "vigil_partition_replicas", catalogue.Gauge,
		"Partition replicas this broker holds (leaders and followers).")
	mUnderReplicated = catalogue.Declare("broker", "vigil_partition_under_replicated_partitions", catalogue.Gauge,
		"Partitions this broker leads whose ISR is smaller than their replica set.")
	mUnderMinISR = catalogue.Declare("broker", "vigil_partition_under_min_isr_partitions", catalogue.Gauge,
		"Partitions this broker leads with fewer in-sync replicas than min.insync.replicas (acks=all writes fail).")
	mOfflineReplicas = catalogue.Declare("broker", "vigil_partition_offline_partitions", catalogue.Gauge,
		"Replicas on this broker that a storage error took offline.")
	mISRShrinks = catalogue.Declare("broker", "vigil_partition_isr_shrinks_total", catalogue.Counter,
		"ISR changes this broker made as a leader that removed a follower.")
	mISRExpands = catalogue.Declare("broker", "vigil_partition_isr_expands_total", catalogue.Counter,
		"ISR changes this broker made as a leader that added a follower.")
	mHWAge = catalogue.Declare("broker", "vigil_partition_high_watermark_age_seconds", catalogue.Gauge,
		"Over the partitions this broker leads, the longest time records have waited above the high watermark (not yet on every in-sync replica); 0 when every partition is fully replicated.")
	mThrottledBytes = catalogue.Declare("broker", "vigil_replica_throttled_bytes_total", catalogue.Counter,
		"Record bytes this broker, as a leader, sent to replicas a partition reassignment is adding and that are not in the ISR yet: the replication --replica-reassignment-throttle-bytes-per-second limits (counted with or without a limit).")
	mThrottledReads = catalogue.Declare("broker", "vigil_replica_throttled_reads_total", catalogue.Counter,
		"Partitions of follower fetches answered without records because the reassignment throttle's budget was spent.")
	mFollowerLagRecords = catalogue.Declare("broker", "vigil_replica_follower_lag_records", catalogue.Gauge,
		"For each follower of partitions this broker leads, the most records it is behind the leader's log end over those partitions.", "follower")
	mFollowerLagSeconds = catalogue.Declare("broker", "vigil_replica_follower_lag_seconds", catalogue.Gauge,
		"For each follower of partitions this broker leads, the longest time since it was last caught up with the leader over those partitions (replica.lag.time.max.ms takes it out of the ISR).", "follower")
	mMetadataOffset = catalogue.Declare("broker", "vigil_broker_metadata_offset", catalogue.Gauge,
		"Index of the controller quorum's metadata this broker has applied.")
	mMetadataLag = catalogue.Declare("broker", "vigil_broker_metadata_lag_entries", catalogue.Gauge,
		"Metadata entries the quorum had applied at this broker's last heartbeat that this broker had not yet.")
	mFenced = catalogue.Declare("broker", "vigil_broker_fenced", catalogue.Gauge,
		"1 while the controller quorum fences this broker (it leads nothing and is out of the ISRs), else 0.")
)

// groupCollector computes consumer lag and group counts at scrape time
// from the coordinators' committed offsets and the partitions' high
// watermarks. Group names are bounded: only the top-N groups by lag get a
// series of their own.
type groupCollector struct{ b *Broker }

func (c *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- mGroupLag.Desc()
	ch <- mCoordGroups.Desc()
	ch <- mCoordLoading.Desc()
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
	var offsets []shardOffset
	states := map[[2]string]int{}
	loading := 0
	for _, s := range shards {
		select {
		case <-s.loaded:
		default:
			loading++
			continue
		}
		// A shard's lock is held while a group write waits for the
		// in-sync replicas (up to offsetsWriteTimeout): a follower that
		// does not fetch must not stall the scrape, so a busy shard
		// reports what it had at the last scrape that found it free.
		if s.mu.TryLock() {
			if !s.stopped && s.core != nil {
				snap := &shardMetrics{states: map[[2]string]int{}}
				s.core.EachOffset(func(g, t string, p int32, off int64) {
					snap.offsets = append(snap.offsets, shardOffset{lagKey{g, t, p}, off})
				})
				s.core.EachGroup(func(typ, state string) { snap.states[[2]string{typ, state}]++ })
				s.metrics.Store(snap)
			}
			s.mu.Unlock()
		}
		if snap := s.metrics.Load(); snap != nil {
			offsets = append(offsets, snap.offsets...)
			for k, n := range snap.states {
				states[k] += n
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(mCoordLoading.Desc(), prometheus.GaugeValue, float64(loading))
	for k, n := range states {
		ch <- prometheus.MustNewConstMetric(mCoordGroups.Desc(), prometheus.GaugeValue, float64(n), k[0], k[1])
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
		ch <- prometheus.MustNewConstMetric(mGroupLag.Desc(), prometheus.GaugeValue, float64(l),
			k.group, k.topic, strconv.Itoa(int(k.partition)))
	}
}

// partitionCollector reports the replication state of this broker's
// partitions, computed at scrape time.
type partitionCollector struct{ b *Broker }

func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*catalogue.Def{mLeaders, mReplicas, mUnderReplicated, mUnderMinISR, mOfflineReplicas, mHWAge,
		mFollowerLagRecords, mFollowerLagSeconds, mMetadataOffset, mMetadataLag, mFenced} {
		ch <- d.Desc()
	}
}

func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	now := time.Now()
	var leaders, replicas, under, underMin, offline int
	var hwAge time.Duration
	lagRecords := map[int32]int64{}
	lagSeconds := map[int32]time.Duration{}
	for _, t := range b.meta.sortedTopics() {
		for _, p := range t.partitions {
			if p.log == nil || p.deleted.Load() {
				continue
			}
			replicas++
			if p.log.Offline() != nil {
				offline++
				continue
			}
			st := p.state.Load()
			if !p.isLeader() || st == nil {
				continue
			}
			leaders++
			if len(st.ISR) < len(st.Replicas) {
				under++
			}
			if len(st.ISR) < minInsyncReplicas(t.configs, b.cfg.TopicDefaults) {
				underMin++
			}
			age, followers := p.replicationLag(now)
			hwAge = max(hwAge, age)
			for id, f := range followers {
				lagRecords[id] = max(lagRecords[id], f.records)
				lagSeconds[id] = max(lagSeconds[id], f.behind)
			}
		}
	}
	gauge := func(d *catalogue.Def, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.Desc(), prometheus.GaugeValue, v, labels...)
	}
	gauge(mLeaders, float64(leaders))
	gauge(mReplicas, float64(replicas))
	gauge(mUnderReplicated, float64(under))
	gauge(mUnderMinISR, float64(underMin))
	gauge(mOfflineReplicas, float64(offline))
	gauge(mHWAge, hwAge.Seconds())
	for id, n := range lagRecords {
		gauge(mFollowerLagRecords, float64(n), strconv.Itoa(int(id)))
	}
	for id, d := range lagSeconds {
		gauge(mFollowerLagSeconds, d.Seconds(), strconv.Itoa(int(id)))
	}
	offset := b.meta.topics.Load().offset
	gauge(mMetadataOffset, float64(offset))
	gauge(mMetadataLag, float64(max(b.link.quorumOffset.Load()-offset, 0)))
	fenced := 0.0
	if b.link.fenced.Load() {
		fenced = 1
	}
	gauge(mFenced, fenced)
}

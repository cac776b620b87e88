package controller

import (
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigilhq/vigil/internal/catalogue"
)

// Controller metrics, served at /metrics on the controller's API address
// (no token needed: they carry no secrets), each labelled with the
// controller id. Broker states and heartbeat ages come from the active
// controller only (the others report no brokers): the mitigator reads them
// through the quorum's leader.
var (
	mActive = catalogue.Declare("controller", "vigil_controller_active", catalogue.Gauge,
		"1 on the active controller (the Raft leader, caught up), 0 on the others.")
	mMetadataOffset = catalogue.Declare("controller", "vigil_controller_metadata_offset", catalogue.Gauge,
		"Index of the last metadata command this controller applied; a broker's vigil_broker_metadata_offset trails it by its lag.")
	mBrokers = catalogue.Declare("controller", "vigil_controller_brokers", catalogue.Gauge,
		"Registered brokers by state (registered, fenced, controlled_shutdown, decommissioned) and cell (active controller only).", "state", "cell")
	mDemoted = catalogue.Declare("controller", "vigil_controller_demoted_brokers", catalogue.Gauge,
		"Brokers kept from leading (demoted), by cell (active controller only).", "cell")
	mHeartbeatAge = catalogue.Declare("controller", "vigil_controller_broker_heartbeat_age_seconds", catalogue.Gauge,
		"Time since each broker's last heartbeat as the active controller saw it (active controller only).", "broker")
	mOffline = catalogue.Declare("controller", "vigil_controller_offline_partitions", catalogue.Gauge,
		"Partitions without a leader (active controller only).")
	mElections = catalogue.Declare("controller", "vigil_controller_leader_elections_total", catalogue.Counter,
		"Leader changes of existing partitions this controller applied since it started (each bumps a leader epoch).")
)

// electionCounter counts leader epoch increases seen in applied changes.
type electionCounter struct {
	epochs map[string]int32 // "topic-id/partition" → leader epoch
	total  atomic.Int64
}

// observe takes in one applied change.
func (e *electionCounter) observe(c *Change) {
	if e.epochs == nil {
		e.epochs = map[string]int32{}
	}
	for _, d := range c.DeletedTopics {
		for k := range e.epochs {
			if len(k) > len(d.ID.String()) && k[:len(d.ID.String())] == d.ID.String() {
				delete(e.epochs, k)
			}
		}
	}
	for _, pc := range c.Partitions {
		k := pc.TopicID.String() + "/" + strconv.Itoa(int(pc.Partition))
		if old, ok := e.epochs[k]; ok && pc.State.LeaderEpoch > old {
			e.total.Add(int64(pc.State.LeaderEpoch - old))
		}
		e.epochs[k] = pc.State.LeaderEpoch
	}
}

// metricsCollector reads the controller's state at scrape time.
type metricsCollector struct{ s *Server }

func (c metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*catalogue.Def{mActive, mMetadataOffset, mBrokers, mDemoted, mHeartbeatAge, mOffline, mElections} {
		ch <- d.Desc()
	}
}

func (c metricsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	active := s.active.Load()
	img, index := s.fsm.image()
	ch <- prometheus.MustNewConstMetric(mActive.Desc(), prometheus.GaugeValue, b2f(active))
	ch <- prometheus.MustNewConstMetric(mMetadataOffset.Desc(), prometheus.GaugeValue, float64(index))
	ch <- prometheus.MustNewConstMetric(mElections.Desc(), prometheus.CounterValue, float64(s.fsm.elections.total.Load()))
	if !active {
		return
	}
	states := map[[2]string]int{}
	demoted := map[string]int{}
	for _, b := range img.Brokers {
		states[[2]string{string(b.State), b.Cell}]++
		if b.Demoted {
			demoted[b.Cell]++
		}
	}
	for k, n := range states {
		ch <- prometheus.MustNewConstMetric(mBrokers.Desc(), prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	for cell, n := range demoted {
		ch <- prometheus.MustNewConstMetric(mDemoted.Desc(), prometheus.GaugeValue, float64(n), cell)
	}
	now := s.cfg.Now()
	s.propMu.Lock()
	for id := range img.Brokers {
		if age := s.live.Age(id, now); age >= 0 {
			ch <- prometheus.MustNewConstMetric(mHeartbeatAge.Desc(), prometheus.GaugeValue, age.Seconds(), strconv.Itoa(int(id)))
		}
	}
	s.propMu.Unlock()
	offline := 0
	for _, t := range img.Topics {
		for _, p := range t.Partitions {
			if p.Leader == NoLeader {
				offline++
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(mOffline.Desc(), prometheus.GaugeValue, float64(offline))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsHandler serves the controller's metrics.
func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	prometheus.WrapRegistererWith(prometheus.Labels{"controller": s.cfg.ID}, reg).MustRegister(metricsCollector{s})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

package probes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Prober probes every broker of a cluster; see the package documentation.
type Prober struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	id    uint64 // this run's probe id, in every record it writes
	admin *kgo.Client
	adm   *kadm.Client

	cluster  atomic.Pointer[string] // the cluster label
	consumer atomic.Pointer[kgo.Client]

	partsMu sync.RWMutex
	parts   map[topicPartition]*probePartition

	// Owned by the control loop (Run's goroutine), which alone writes
	// workers, under workersMu.
	known     map[int32]BrokerInfo // every broker seen, as last seen
	lastLive  []int32              // the brokers the last metadata listed
	cells     map[string]*cell
	workersMu sync.RWMutex
	workers   map[int32]*worker

	wg sync.WaitGroup // the consumer, the sweeper and commit probes
}

type topicPartition struct {
	topic     string
	partition int32
}

// cell is one cell's probe state.
type cell struct {
	name, topic, group string
	intent             map[int32]int32 // partition → broker
	lastChange         time.Time
	partitions         int // partitions the metadata reported last
	topicID            [16]byte
	commitBusy         atomic.Bool
	coordinator        atomic.Int32                      // the group's coordinator, -1 unknown
	ready              atomic.Pointer[[]*probePartition] // partitions the consumer reads, for commits
}

// probePartition is one probe partition: its tracker, and whether the
// consumer reads it yet (no record is produced to it before).
type probePartition struct {
	cell      string
	topic     string
	partition int32
	label     string
	tracker   *seqTracker
	ready     atomic.Bool
	readyErr  atomic.Pointer[error]
}

// New returns a Prober; Run runs it.
func New(cfg Config) (*Prober, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("probe config: %w", err)
	}
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"location": cfg.Location}, cfg.Registerer)
	p := &Prober{
		cfg: cfg, log: cfg.Logger, m: newMetrics(reg), id: rand.Uint64() | 1,
		parts: map[topicPartition]*probePartition{},
		known: map[int32]BrokerInfo{}, cells: map[string]*cell{}, workers: map[int32]*worker{},
	}
	p.admin, err = kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Bootstrap...), kgo.MetadataMinAge(cfg.Interval), kgo.DialTimeout(cfg.Timeout),
	}, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("probe client: %w", err)
	}
	p.adm = kadm.NewClient(p.admin)
	p.setCluster(cfg.Cluster)
	return p, nil
}

func (p *Prober) setCluster(c string) { p.cluster.Store(&c) }

// clusterLabel returns the cluster label.
func (p *Prober) clusterLabel() string { return *p.cluster.Load() }

// Run probes until ctx ends, then stops every probe and closes every client.
// It returns nil when ctx ends; failures to reach the cluster are metrics
// and log lines, never a reason to stop.
func (p *Prober) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer p.shutdown(cancel)
	p.log.Info("probing", "location", p.cfg.Location, "bootstrap", p.cfg.Bootstrap, "interval", p.cfg.Interval, "probe_id", strconv.FormatUint(p.id, 16))
	p.wg.Add(1)
	go p.sweepLoop(ctx)
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		p.refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (p *Prober) shutdown(cancel context.CancelFunc) {
	cancel()
	for id, w := range p.workers {
		w.stop()
		p.setWorker(id, nil)
	}
	p.wg.Wait()
	if c := p.consumer.Load(); c != nil {
		c.Close()
	}
	p.admin.Close()
}

// refresh is one pass of the control loop: learn the brokers and the probe
// topics, re-assert each cell's layout, start and stop per-broker probes,
// let the consumer read new partitions, and probe a commit per cell.
func (p *Prober) refresh(ctx context.Context) {
	md, err := p.metadata(ctx)
	if err != nil {
		p.log.Warn("probe: cannot read the cluster's metadata; probing the brokers already known", "err", err)
		return
	}
	if p.cfg.Cluster == "" && md.ClusterID != nil && *md.ClusterID != p.clusterLabel() {
		p.setCluster(*md.ClusterID)
	}
	live := map[string][]BrokerInfo{}
	liveIDs := map[int32]bool{}
	p.lastLive = p.lastLive[:0]
	for _, b := range md.Brokers {
		liveIDs[b.NodeID] = true
		p.lastLive = append(p.lastLive, b.NodeID)
		info := BrokerInfo{ID: b.NodeID, Host: b.Host, Port: b.Port}
		if b.Rack != nil {
			info.Rack = *b.Rack
		}
		p.known[b.NodeID] = info
		c := p.cellOf(info)
		live[c] = append(live[c], info)
	}
	topics := map[string]*kmsg.MetadataResponseTopic{}
	for i := range md.Topics {
		if t := md.Topics[i].Topic; t != nil {
			topics[*t] = &md.Topics[i]
		}
	}
	names := slices.Sorted(maps.Keys(p.cells))
	for _, name := range names {
		c := p.cells[name]
		bs := live[name]
		sort.Slice(bs, func(i, j int) bool { return bs[i].ID < bs[j].ID })
		p.reconcile(ctx, c, bs, topics[c.topic])
	}
	p.syncWorkers(ctx, liveIDs)
	p.positionConsumer(ctx)
	for _, name := range names {
		c := p.cells[name]
		if c.commitBusy.CompareAndSwap(false, true) {
			p.wg.Add(1)
			topicID := c.topicID
			go func() {
				defer p.wg.Done()
				defer c.commitBusy.Store(false)
				p.probeCommit(ctx, c, topicID)
			}()
		}
	}
}

// cellOf returns the cell of a broker.
func (p *Prober) cellOf(b BrokerInfo) string {
	if p.cfg.CellOf != nil {
		if c := p.cfg.CellOf(b); validName(c) {
			return c
		}
	}
	return p.cfg.Cell
}

// metadata returns the brokers and the probe topics of every cell, new
// cells included.
func (p *Prober) metadata(ctx context.Context) (*kmsg.MetadataResponse, error) {
	md, err := p.requestMetadata(ctx, p.cellTopics())
	if err != nil {
		return nil, err
	}
	var added []string
	for _, b := range md.Brokers {
		c := p.cellOf(BrokerInfo{ID: b.NodeID, Host: b.Host, Port: b.Port, Rack: derefOr(b.Rack, "")})
		if p.cells[c] == nil {
			p.cells[c] = &cell{name: c, topic: TopicName(c), group: groupName(p.cfg.Location, c), intent: map[int32]int32{}}
			p.cells[c].coordinator.Store(-1)
			added = append(added, TopicName(c))
		}
	}
	if len(added) > 0 {
		more, err := p.requestMetadata(ctx, added)
		if err != nil {
			return nil, err
		}
		md.Topics = append(md.Topics, more.Topics...)
	}
	return md, nil
}

func (p *Prober) cellTopics() []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(p.cells)) {
		out = append(out, p.cells[name].topic)
	}
	return out
}

// requestMetadata asks up to three of the brokers the last metadata
// listed at once (any seed broker the first time) and returns the first
// answer, so that a broker that hangs does not hold up the control loop.
// The other requests run to their end in the background: cancelling them
// would cost their connections.
func (p *Prober) requestMetadata(ctx context.Context, topics []string) (*kmsg.MetadataResponse, error) {
	ids := p.lastLive
	if len(ids) > 3 {
		ids = slices.Clone(ids)
		rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		ids = ids[:3]
	}
	requestors := []kmsg.Requestor{p.admin}
	if len(ids) > 0 {
		requestors = requestors[:0]
		for _, id := range ids {
			requestors = append(requestors, p.admin.Broker(int(id)))
		}
	}
	type answer struct {
		resp *kmsg.MetadataResponse
		err  error
	}
	answers := make(chan answer, len(requestors))
	for _, r := range requestors {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			rctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
			defer cancel()
			resp, err := metadataRequest(topics...).RequestWith(rctx, r)
			answers <- answer{resp, err}
		}()
	}
	var errs []error
	for range requestors {
		a := <-answers
		if a.err == nil {
			return a.resp, nil
		}
		errs = append(errs, a.err)
	}
	return nil, errors.Join(errs...)
}

// metadataRequest asks for the brokers and the given topics, never
// creating them.
func metadataRequest(topics ...string) *kmsg.MetadataRequest {
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{}
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	req.AllowAutoTopicCreation = false
	return req
}

func derefOr(s *string, def string) string {
	if s == nil {
		return def
	}
	return *s
}

// reconcile re-asserts a cell's layout and records its intent.
func (p *Prober) reconcile(ctx context.Context, c *cell, live []BrokerInfo, mt *kmsg.MetadataResponseTopic) {
	in := layoutInput{Live: live, Intent: c.intent}
	switch {
	case mt == nil:
		return
	case mt.ErrorCode == kerr.UnknownTopicOrPartition.Code:
	case mt.ErrorCode != 0:
		p.log.Debug("probe: metadata of the probe topic", "topic", c.topic, "err", kerr.ErrorForCode(mt.ErrorCode))
		return
	default:
		in.Exists = true
		c.topicID = mt.TopicID
		in.Partitions = make([]partitionState, len(mt.Partitions))
		for _, mp := range mt.Partitions {
			if mp.Partition >= 0 && int(mp.Partition) < len(in.Partitions) {
				in.Partitions[mp.Partition] = partitionState{Replicas: mp.Replicas, Leader: mp.Leader}
			}
		}
	}
	if !in.Exists && len(live) == 0 {
		return
	}
	plan := planLayout(in)
	if len(plan.Reassign) > 0 || len(plan.Elect) > 0 {
		// Before moving anything, leave alone what others are moving.
		if in.Reassigning = p.reassigning(ctx, c.topic, len(in.Partitions)); len(in.Reassigning) > 0 {
			plan = planLayout(in)
		}
	}
	c.partitions = len(in.Partitions)
	if plan.changes() && time.Since(c.lastChange) >= p.cfg.LayoutInterval {
		c.lastChange = time.Now()
		if err := p.applyLayout(ctx, c, plan, len(in.Partitions)); err != nil {
			p.log.Warn("probe: re-asserting the probe topic's layout", "topic", c.topic, "err", err)
		}
	}
	c.intent = plan.Intent
}

// workerOf returns broker id's probe, or nil; any goroutine may call it.
func (p *Prober) workerOf(id int32) *worker {
	p.workersMu.RLock()
	defer p.workersMu.RUnlock()
	return p.workers[id]
}

// setWorker sets (nil: deletes) broker id's probe.
func (p *Prober) setWorker(id int32, w *worker) {
	p.workersMu.Lock()
	defer p.workersMu.Unlock()
	if w == nil {
		delete(p.workers, id)
	} else {
		p.workers[id] = w
	}
}

// syncWorkers starts a probe for every broker that is live or owns a
// partition (a broker that is down keeps being probed while it owns one),
// aims each at its partition, and stops the others.
func (p *Prober) syncWorkers(ctx context.Context, live map[int32]bool) {
	type want struct {
		cell string
		part *probePartition
	}
	wanted := map[int32]*want{}
	for id := range live {
		wanted[id] = &want{cell: p.cellOf(p.known[id])}
	}
	for _, c := range p.cells {
		for part, b := range c.intent {
			w := wanted[b]
			if w == nil {
				w = &want{cell: c.name}
				wanted[b] = w
			}
			if int(part) < c.partitions {
				w.cell = c.name
				w.part = p.partition(c, part)
			}
		}
	}
	// A broker that neither the metadata lists nor any partition names
	// is gone for good; one whose address or cell changed starts afresh.
	for id, w := range p.workers {
		nw := wanted[id]
		if nw == nil || nw.cell != w.cell || w.addr != p.addrOf(id) {
			w.stop()
			p.setWorker(id, nil)
			if nw == nil || nw.cell != w.cell {
				p.m.forget(w.cell, w.label)
			}
		}
	}
	for id, nw := range wanted {
		w := p.workers[id]
		if w == nil {
			w = p.startWorker(ctx, id, nw.cell)
			p.setWorker(id, w)
		}
		cur := w.target.Load()
		if nw.part == nil {
			w.target.Store(nil)
		} else if cur == nil || cur.part != nw.part || cur.topicID != p.cells[nw.cell].topicID {
			w.target.Store(&target{part: nw.part, topicID: p.cells[nw.cell].topicID})
		}
	}
}

// addrOf returns the address of a broker, or "" if it was never seen.
func (p *Prober) addrOf(id int32) string {
	b, ok := p.known[id]
	if !ok {
		return ""
	}
	return net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
}

// partition returns the probePartition of a cell's partition, creating it.
func (p *Prober) partition(c *cell, part int32) *probePartition {
	k := topicPartition{c.topic, part}
	p.partsMu.Lock()
	defer p.partsMu.Unlock()
	pp := p.parts[k]
	if pp == nil {
		pp = &probePartition{
			cell: c.name, topic: c.topic, partition: part, label: strconv.Itoa(int(part)),
			tracker: newSeqTracker(p.cfg.LossDeadline, p.cfg.maxPending()),
		}
		p.parts[k] = pp
	}
	return pp
}

// lookup returns a probe partition, or nil.
func (p *Prober) lookup(topic string, part int32) *probePartition {
	p.partsMu.RLock()
	defer p.partsMu.RUnlock()
	return p.parts[topicPartition{topic, part}]
}

// allPartitions returns every probe partition.
func (p *Prober) allPartitions() []*probePartition {
	p.partsMu.RLock()
	defer p.partsMu.RUnlock()
	out := make([]*probePartition, 0, len(p.parts))
	for _, pp := range p.parts {
		out = append(out, pp)
	}
	return out
}

// positionConsumer has the consumer read every probe partition not read
// yet, from its current end, so that it sees every record produced to it
// from then on; only then are records produced to it.
func (p *Prober) positionConsumer(ctx context.Context) {
	byTopic := map[string][]*probePartition{}
	for _, pp := range p.allPartitions() {
		if !pp.ready.Load() {
			byTopic[pp.topic] = append(byTopic[pp.topic], pp)
		}
	}
	add := map[string]map[int32]kgo.Offset{}
	var added []*probePartition
	for topic, pps := range byTopic {
		lctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		ends, err := p.adm.ListEndOffsets(lctx, topic)
		cancel()
		for _, pp := range pps {
			o, ok := ends.Lookup(topic, pp.partition)
			switch {
			case err != nil:
				pp.readyErr.Store(&err)
			case !ok:
				e := fmt.Errorf("no end offset listed for %s-%d", topic, pp.partition)
				pp.readyErr.Store(&e)
			case o.Err != nil:
				pp.readyErr.Store(&o.Err)
			default:
				if add[topic] == nil {
					add[topic] = map[int32]kgo.Offset{}
				}
				add[topic][pp.partition] = kgo.NewOffset().At(o.Offset)
				added = append(added, pp)
			}
		}
	}
	if len(add) == 0 {
		return
	}
	if c := p.consumer.Load(); c != nil {
		c.AddConsumePartitions(add)
	} else {
		c, err := kgo.NewClient(append([]kgo.Opt{
			kgo.SeedBrokers(p.cfg.Bootstrap...), kgo.ConsumePartitions(add),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.MetadataMinAge(p.cfg.Interval), kgo.DialTimeout(p.cfg.Timeout),
		}, p.cfg.ClientOpts...)...)
		if err != nil {
			p.log.Error("probe: cannot create the consumer", "err", err)
			return
		}
		p.consumer.Store(c)
		p.wg.Add(1)
		go p.consume(ctx, c)
	}
	for _, pp := range added {
		pp.ready.Store(true)
	}
	for _, c := range p.cells {
		var ready []*probePartition
		for _, pp := range p.allPartitions() {
			if pp.cell == c.name && pp.ready.Load() {
				ready = append(ready, pp)
			}
		}
		sort.Slice(ready, func(i, j int) bool { return ready[i].partition < ready[j].partition })
		c.ready.Store(&ready)
	}
}

// consume reads every probe partition and hands this probe's records to
// their trackers.
func (p *Prober) consume(ctx context.Context, cl *kgo.Client) {
	defer p.wg.Done()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.Canceled) {
				p.log.Debug("probe: fetch error", "topic", t, "partition", part, "err", err)
			}
		})
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) { p.consumed(r, now) })
	}
}

// consumed takes in one consumed record.
func (p *Prober) consumed(r *kgo.Record, now time.Time) {
	pl, err := DecodePayload(r.Value)
	if err != nil || pl.ProbeID != p.id {
		return // another probe's (or not a probe record)
	}
	pp := p.lookup(r.Topic, r.Partition)
	if pp == nil {
		return
	}
	res := pp.tracker.consume(pl.Seq, r.Offset, pl.SentAt, now)
	labels := []string{p.clusterLabel(), pp.cell, strconv.Itoa(int(pl.Broker)), pp.label}
	switch res.kind {
	case deliveredFresh:
		p.m.e2e.WithLabelValues(labels...).Observe(res.e2e.Seconds())
		if res.reordered {
			p.m.reordered.WithLabelValues(labels...).Inc()
			p.log.Warn("probe: record consumed out of order", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "seq", pl.Seq)
		}
	case deliveredDuplicate:
		p.m.duplicated.WithLabelValues(labels...).Inc()
		p.log.Warn("probe: record stored twice", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "seq", pl.Seq)
	}
}

// sweepLoop counts, every interval, the records not consumed in time.
func (p *Prober) sweepLoop(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, pp := range p.allPartitions() {
				for _, b := range pp.tracker.sweep(now) {
					p.m.lost.WithLabelValues(p.clusterLabel(), pp.cell, strconv.Itoa(int(b)), pp.label).Inc()
					p.log.Warn("probe: acknowledged record not consumed in time", "topic", pp.topic, "partition", pp.partition, "broker", b, "deadline", p.cfg.LossDeadline)
				}
			}
		}
	}
}

// probeCommit commits the consumer's positions in the cell's probe group
// and times the round trip to the group coordinator. It runs in a
// goroutine of its own: of c, it reads only what does not change or is
// atomic.
func (p *Prober) probeCommit(ctx context.Context, c *cell, topicID [16]byte) {
	ready := c.ready.Load()
	if ready == nil || len(*ready) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	coord := c.coordinator.Load()
	if coord < 0 {
		r := p.adm.FindGroupCoordinators(ctx, c.group)[c.group]
		if r.Err != nil {
			if !errors.Is(ctx.Err(), context.Canceled) {
				p.count(c.name, "unknown", opCommit, r.Err)
			}
			return
		}
		coord = r.NodeID
		c.coordinator.Store(coord)
	}
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation = c.group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = c.topic, topicID
	for _, pp := range *ready {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = pp.partition, max(pp.tracker.committable(), 0)
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = []kmsg.OffsetCommitRequestTopic{rt}
	b := p.admin.Broker(int(coord))
	if w := p.workerOf(coord); w != nil && w.control != nil {
		b = w.control
	}
	start := time.Now()
	resp, err := b.Request(ctx, req)
	took := time.Since(start)
	if err == nil {
		err = adminError(resp)
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	label := strconv.Itoa(int(coord))
	p.count(c.name, label, opCommit, err)
	if err != nil {
		c.coordinator.Store(-1) // look it up again
		p.log.Debug("probe: commit failed", "group", c.group, "coordinator", coord, "err", err)
		return
	}
	p.m.commit.WithLabelValues(p.clusterLabel(), c.name, label).Observe(took.Seconds())
}

// count counts an attempted operation and, if err is not nil, its failure.
func (p *Prober) count(cell, broker, op string, err error) {
	cluster := p.clusterLabel()
	p.m.attempts.WithLabelValues(cluster, cell, broker, op).Inc()
	if err != nil {
		p.m.failures.WithLabelValues(cluster, cell, broker, op, classify(err)).Inc()
	}
}

// changes reports whether a plan asks the cluster for anything.
func (l layoutPlan) changes() bool {
	return len(l.Create) > 0 || len(l.Add) > 0 || len(l.Reassign) > 0 || len(l.Elect) > 0 || l.MinInsync > 0
}

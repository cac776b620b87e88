package probes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// worker probes one broker: every interval it produces a record straight to
// the broker (to the probe partition the broker should lead) and sends it
// a Metadata request. Its clients are its own, seeded with the broker's
// address alone, so a broker that hangs holds up its own probes and no
// others, and every operation has a deadline.
//
// Each record in flight has a connection of its own (a slot: a client used
// by one produce at a time, created when first needed), at most
// maxInFlight of them. On a shared connection, requests queue behind a
// slow one, and the deadline of one kills the connection and every request
// behind it: one slow answer would fail several probes.
type worker struct {
	p                      *Prober
	id                     int32
	label, cell, topic     string
	addr                   string
	controlClient          *kgo.Client // metadata and commit probes; nil when the address is unknown
	control                *kgo.Broker
	slots                  []slot
	target                 atomic.Pointer[target]
	metadataBusy           atomic.Bool
	cancel                 context.CancelFunc
	wg                     sync.WaitGroup
	errNoAddr, errInFlight error
}

// slot is a connection for one produce at a time.
type slot struct {
	busy   atomic.Bool
	client *kgo.Client // set by the goroutine holding busy
	broker *kgo.Broker
}

// target is the partition a worker produces to, with its topic's id
// (Produce v13 names topics by id).
type target struct {
	part    *probePartition
	topicID [16]byte
}

// startWorker starts probing broker id of cell.
func (p *Prober) startWorker(ctx context.Context, id int32, cell string) *worker {
	w := &worker{
		p: p, id: id, label: strconv.Itoa(int(id)), cell: cell, topic: TopicName(cell), addr: p.addrOf(id),
		slots:       make([]slot, p.cfg.maxInFlight()),
		errNoAddr:   fmt.Errorf("broker %d: address unknown (not in the metadata since the probe started)", id),
		errInFlight: fmt.Errorf("broker %d: %d probe records still unanswered: %w", id, p.cfg.maxInFlight(), context.DeadlineExceeded),
	}
	if w.addr != "" {
		cl, err := w.newClient()
		if err != nil {
			p.log.Error("probe: cannot create a client", "broker", id, "addr", w.addr, "err", err)
		} else {
			w.controlClient, w.control = cl, cl.SeedBrokers()[0]
		}
	}
	// Every series exists from the start, so that rates and ratios work
	// from the first failure on.
	cluster := p.clusterLabel()
	for _, op := range []string{opProduce, opMetadata, opConnect} {
		p.m.attempts.WithLabelValues(cluster, cell, w.label, op)
		for _, class := range Classes {
			p.m.failures.WithLabelValues(cluster, cell, w.label, op, class)
		}
	}
	p.m.up.WithLabelValues(cluster, cell, w.label)
	ctx, w.cancel = context.WithCancel(ctx)
	w.wg.Add(1)
	go w.run(ctx)
	return w
}

// newClient returns a client of the broker alone.
func (w *worker) newClient() (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(w.addr), kgo.DialTimeout(w.p.cfg.Timeout), kgo.WithHooks(connectHook{w}),
	}, w.p.cfg.ClientOpts...)...)
}

// stop stops the worker, waits for its operations to end and closes its
// clients.
func (w *worker) stop() {
	w.cancel()
	w.wg.Wait()
	if w.controlClient != nil {
		w.controlClient.Close()
	}
	for i := range w.slots {
		if cl := w.slots[i].client; cl != nil {
			cl.Close()
		}
	}
}

// acquire returns a free slot, marked busy, or nil.
func (w *worker) acquire() *slot {
	for i := range w.slots {
		if w.slots[i].busy.CompareAndSwap(false, true) {
			return &w.slots[i]
		}
	}
	return nil
}

func (w *worker) run(ctx context.Context) {
	defer w.wg.Done()
	t := time.NewTicker(w.p.cfg.Interval)
	defer t.Stop()
	for {
		w.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tick starts one round of probes, without waiting for their answers.
func (w *worker) tick(ctx context.Context) {
	if tg := w.target.Load(); tg != nil {
		w.startProduce(ctx, tg)
	}
	if w.control == nil {
		w.p.count(w.cell, w.label, opMetadata, w.errNoAddr)
		return
	}
	if w.metadataBusy.CompareAndSwap(false, true) {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer w.metadataBusy.Store(false)
			w.probeMetadata(ctx)
		}()
	}
}

// startProduce produces one probe record in the background.
func (w *worker) startProduce(ctx context.Context, tg *target) {
	part := tg.part
	switch {
	case w.control == nil:
		w.produced(part, 0, w.errNoAddr)
		return
	case !part.ready.Load():
		// The consumer cannot read the partition yet: a record produced
		// now could be missed and look lost. Fail the probe once the
		// consumer has tried.
		if err := part.readyErr.Load(); err != nil {
			w.produced(part, 0, fmt.Errorf("the probe's consumer cannot read %s-%d: %w", part.topic, part.partition, *err))
		}
		return
	}
	s := w.acquire()
	if s == nil {
		w.produced(part, 0, w.errInFlight)
		return
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer s.busy.Store(false)
		if s.client == nil {
			cl, err := w.newClient()
			if err != nil {
				w.produced(part, 0, err)
				return
			}
			s.client, s.broker = cl, cl.SeedBrokers()[0]
		}
		w.produce(ctx, s.broker, tg)
	}()
}

// produce produces one probe record through b and waits for its
// acknowledgement.
func (w *worker) produce(ctx context.Context, b *kgo.Broker, tg *target) {
	part, cfg := tg.part, w.p.cfg
	now := time.Now()
	seq, ok := part.tracker.send(now, w.id)
	if !ok {
		w.produced(part, 0, fmt.Errorf("%s-%d: too many probe records between send and consumption", part.topic, part.partition))
		return
	}
	value := Payload{ProbeID: w.p.id, Seq: seq, SentAt: now, Broker: w.id}.AppendTo(make([]byte, 0, payloadSize))
	headers := []kmsg.Header{{Key: TraceparentHeader, Value: []byte(newTraceContext().String())}}
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = int32(cfg.Timeout.Milliseconds() * 4 / 5) // the broker answers before our deadline
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic, rt.TopicID = part.topic, tg.topicID
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = part.partition, recordBatch(value, headers, now)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)

	octx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	resp, err := b.Request(octx, req)
	cancel()
	took := time.Since(now)
	if err == nil {
		err = produceError(resp.(*kmsg.ProduceResponse))
	}
	if ctx.Err() != nil { // stopping: no verdict
		part.tracker.fail(seq)
		return
	}
	if err != nil {
		part.tracker.fail(seq)
	} else {
		part.tracker.ack(seq, time.Now())
	}
	w.produced(part, took, err)
}

// produced records the outcome of a produce probe.
func (w *worker) produced(part *probePartition, took time.Duration, err error) {
	m, cluster := w.p.m, w.p.clusterLabel()
	w.p.count(w.cell, w.label, opProduce, err)
	if err != nil {
		m.up.WithLabelValues(cluster, w.cell, w.label).Set(0)
		w.p.log.Debug("probe: produce failed", "broker", w.id, "topic", part.topic, "partition", part.partition, "class", classify(err), "err", err)
		return
	}
	m.produce.WithLabelValues(cluster, w.cell, w.label, part.label).Observe(took.Seconds())
	m.up.WithLabelValues(cluster, w.cell, w.label).Set(1)
	m.lastSuccess.WithLabelValues(cluster, w.cell, w.label).Set(float64(time.Now().UnixNano()) / 1e9)
}

func produceError(resp *kmsg.ProduceResponse) error {
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return errors.New("produce response does not answer the one partition asked for")
	}
	pr := resp.Topics[0].Partitions[0]
	return withMessage(kerr.ErrorForCode(pr.ErrorCode), pr.ErrorMessage)
}

// probeMetadata times a Metadata request for the cell's probe topic.
func (w *worker) probeMetadata(ctx context.Context) {
	octx, cancel := context.WithTimeout(ctx, w.p.cfg.Timeout)
	start := time.Now()
	_, err := w.control.Request(octx, metadataRequest(w.topic))
	took := time.Since(start)
	cancel()
	if ctx.Err() != nil {
		return
	}
	w.p.count(w.cell, w.label, opMetadata, err)
	if err == nil {
		w.p.m.metadata.WithLabelValues(w.p.clusterLabel(), w.cell, w.label).Observe(took.Seconds())
	}
}

// connectHook times the worker client's connections.
type connectHook struct{ w *worker }

func (h connectHook) OnBrokerConnect(_ kgo.BrokerMetadata, took time.Duration, _ net.Conn, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
		return
	}
	w := h.w
	w.p.count(w.cell, w.label, opConnect, err)
	if err == nil {
		w.p.m.connect.WithLabelValues(w.p.clusterLabel(), w.cell, w.label).Observe(took.Seconds())
	}
}

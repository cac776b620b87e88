package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// producer is one producer client and the goroutine that feeds it.
//
// Fields are owned by one of two goroutines: the feeding goroutine (run)
// and the client's promise goroutine (franz-go calls a client's promises
// serially). Everything is read by the coordinator only after outstanding
// has been waited on. The two goroutines' fields are a cache line apart:
// the feed writing issued and the promise writing its counters on the
// same line, once per record each, moved the line between the cores
// twice per record.
type producer struct {
	// Set up before feeding starts, then only read.
	idx          int
	cl           *kgo.Client
	topic        string
	run          uint64
	stamped      bool      // e2e: each record owns a stamped value buffer
	templates    [][]byte  // produce: shared read-only values
	measureStart time.Time // set by producerSet.run before feeding starts
	quota        int64     // measured records to send; 0 = no limit
	rate         float64   // records/s for this producer; 0 = no limit
	pacer        *pacer
	pool         sync.Pool // *benchRecord
	promiseFn    func(*kgo.Record, error)

	_ cacheLinePad
	// Owned by the feeding goroutine.
	issued uint64 // sequence numbers handed out

	_ cacheLinePad
	// Done by the promise goroutine for every record, Add by the feeding
	// one for every chunk of records.
	outstanding sync.WaitGroup

	// Owned by the promise goroutine.
	hist      *histogram
	records   int64 // measured, acknowledged
	bytes     int64
	errors    int64 // failed records, warmup included
	firstErr  error
	failed    []uint64 // sequence numbers whose produce failed (e2e)
	maxOffset []int64  // by partition: highest acknowledged offset, -1 if none (nil with acks=0)
	lastAck   time.Time

	// Progress counters, written by the promise goroutine.
	progRecords, progBytes, progErrors atomic.Int64
}

// cacheLinePad keeps what is written by different goroutines on different
// cache lines (two of them: the prefetcher fetches lines in pairs).
type cacheLinePad [128]byte

func newProducer(cfg Config, idx int, run uint64, stamped bool, templates [][]byte, quota int64, rate float64, maxPartition int32) (*producer, error) {
	cl, err := kgo.NewClient(cfg.producerOpts(idx)...)
	if err != nil {
		return nil, fmt.Errorf("creating producer %d: %w", idx, err)
	}
	p := &producer{
		idx:       idx,
		cl:        cl,
		topic:     cfg.Topic,
		run:       run,
		stamped:   stamped,
		templates: templates,
		quota:     quota,
		rate:      rate,
		hist:      newHistogram(),
		maxOffset: make([]int64, maxPartition+1),
	}
	for i := range p.maxOffset {
		p.maxOffset[i] = -1
	}
	size := cfg.RecordSize
	tmpl := templates[idx%len(templates)]
	p.pool.New = func() any {
		br := &benchRecord{}
		br.meta.Context = context.Background()
		br.meta.owner = br
		if stamped {
			br.value = make([]byte, size)
			copy(br.value, tmpl)
		}
		return br
	}
	p.promiseFn = p.promise
	return p, nil
}

// feed produces until stopped, the quota is met, or ctx is done.
func (p *producer) feed(ctx context.Context, stopped *atomic.Bool, stopCh <-chan struct{}) {
	var timer *time.Timer
	var measured int64
	const chunk = 256
	for !stopped.Load() && ctx.Err() == nil {
		n := int64(chunk)
		if p.pacer != nil {
			var wait time.Duration
			n, wait = p.pacer.take(time.Now(), chunk)
			if n == 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-timer.C:
				case <-stopCh:
				case <-ctx.Done():
				}
				continue
			}
		}
		// One Add for the chunk, not one per record: with the promise
		// goroutine's Done, the counter's cache line moved between the two
		// cores twice per record, a tenth of the client's CPU at full speed.
		p.outstanding.Add(int(n))
		for i := range n {
			now := time.Now()
			if p.quota > 0 && !now.Before(p.measureStart) {
				if measured >= p.quota {
					p.outstanding.Add(-int(n - i)) // not sent
					return
				}
				measured++
			}
			p.produceOne(ctx, now)
		}
	}
}

// benchRecord is a pooled record with the state its promise needs. The
// record's Context field points at meta, which is how the promise finds its
// way back: franz-go truncates Record.Timestamp to milliseconds (dropping the
// monotonic clock), so the send time is kept here too.
type benchRecord struct {
	rec   kgo.Record
	meta  recordMeta
	value []byte // e2e: this record's own stamped value buffer
}

type recordMeta struct {
	context.Context // Background: never cancels the record
	sent            time.Time
	seq             uint64
	owner           *benchRecord
}

func (p *producer) produceOne(ctx context.Context, now time.Time) {
	br := p.pool.Get().(*benchRecord)
	r := &br.rec
	r.Topic = p.topic
	r.Context = &br.meta
	// The record's timestamp is its send time, which franz-go would
	// otherwise read from the clock again (a third clock read per record).
	r.Timestamp = now
	br.meta.sent = now
	br.meta.seq = p.issued
	if p.stamped {
		putStamp(br.value, stamp{run: p.run, producer: uint32(p.idx), seq: p.issued, sentNano: now.UnixNano()})
		r.Value = br.value
	} else {
		r.Value = p.templates[p.issued%uint64(len(p.templates))]
	}
	p.issued++
	p.cl.Produce(ctx, r, p.promiseFn) // feed counted it in outstanding
}

// promise runs on the client's promise goroutine, serially.
func (p *producer) promise(r *kgo.Record, err error) {
	done := time.Now()
	m := r.Context.(*recordMeta)
	if err != nil {
		p.errors++
		p.progErrors.Add(1)
		if p.firstErr == nil {
			p.firstErr = err
		}
		if p.stamped {
			p.failed = append(p.failed, m.seq)
		}
	} else {
		size := int64(len(r.Key) + len(r.Value))
		if !m.sent.Before(p.measureStart) {
			p.records++
			p.bytes += size
			p.hist.Record(int64(done.Sub(m.sent)))
			p.lastAck = done
		}
		if int(r.Partition) < len(p.maxOffset) && r.Offset > p.maxOffset[r.Partition] {
			p.maxOffset[r.Partition] = r.Offset
		}
		p.progRecords.Add(1)
		p.progBytes.Add(size)
	}
	// franz-go does not touch a record after its promise returns, so the
	// record (and its value buffer, in e2e) can be reused.
	br := m.owner
	br.rec = kgo.Record{}
	p.pool.Put(br)
	p.outstanding.Done()
}

// producerSet runs a set of producers to completion.
type producerSet struct {
	ps           []*producer
	measureStart time.Time
	closeOnce    sync.Once
}

// newProducers creates cfg.Producers producers. Quotas (cfg.Records) and
// the rate are split evenly between them.
func newProducers(cfg Config, run uint64, stamped bool, parts []int32, records int64) (*producerSet, error) {
	templates := makeTemplates(numTemplates, cfg.RecordSize, 1)
	maxPart := int32(0)
	for _, p := range parts {
		maxPart = max(maxPart, p)
	}
	set := &producerSet{}
	n := int64(cfg.Producers)
	for i := range cfg.Producers {
		var quota int64
		if records > 0 {
			quota = records / n
			if int64(i) < records%n {
				quota++
			}
			if quota == 0 {
				continue // more producers than records
			}
		}
		rate := cfg.Rate / float64(cfg.Producers)
		p, err := newProducer(cfg, i, run, stamped, templates, quota, rate, maxPart)
		if err != nil {
			set.close()
			return nil, err
		}
		set.ps = append(set.ps, p)
	}
	return set, nil
}

func (s *producerSet) close() {
	s.closeOnce.Do(func() {
		for _, p := range s.ps {
			p.cl.Close()
		}
	})
}

// ping connects every producer to the cluster, so that connection setup
// is not part of the first records' latency.
func (s *producerSet) ping(ctx context.Context) error {
	for _, p := range s.ps {
		if err := p.cl.Ping(ctx); err != nil {
			return fmt.Errorf("producer %d: %w", p.idx, err)
		}
	}
	return nil
}

// run feeds all producers until duration/quota/ctx ends them, then waits
// for every outstanding record's promise. Records sent before measureStart
// are warmup. It returns ctx's error if ctx ended the run.
func (s *producerSet) run(ctx context.Context, measureStart time.Time, duration time.Duration) error {
	s.measureStart = measureStart
	now := time.Now()
	for _, p := range s.ps {
		p.measureStart = measureStart
		if p.rate > 0 {
			p.pacer = newPacer(p.rate, now)
		}
	}
	var stopped atomic.Bool
	stopCh := make(chan struct{})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { stopped.Store(true); close(stopCh) }) }
	if duration > 0 {
		t := time.AfterFunc(time.Until(s.measureStart.Add(duration)), stop)
		defer t.Stop()
	}
	ctxStop := context.AfterFunc(ctx, stop)
	defer ctxStop()

	var feeders sync.WaitGroup
	for _, p := range s.ps {
		feeders.Go(func() { p.feed(ctx, &stopped, stopCh) })
	}
	feeders.Wait()

	for _, p := range s.ps {
		if err := p.cl.Flush(ctx); err != nil {
			// Cancelled: fail whatever is still buffered so that
			// every promise runs.
			p.cl.Close()
		}
		p.outstanding.Wait()
	}
	return ctx.Err()
}

// stage sums the producers' measured numbers into a Stage.
func (s *producerSet) stage() (*Stage, *histogram) {
	st := &Stage{}
	h := newHistogram()
	var last time.Time
	var firstErr error
	for _, p := range s.ps {
		st.Records += p.records
		st.Bytes += p.bytes
		st.Errors += p.errors
		h.Merge(p.hist)
		if p.lastAck.After(last) {
			last = p.lastAck
		}
		if firstErr == nil {
			firstErr = p.firstErr
		}
	}
	if firstErr != nil {
		st.FirstError = firstErr.Error()
	}
	elapsed := time.Duration(0)
	if !last.IsZero() {
		elapsed = last.Sub(s.measureStart)
	}
	st.finish(elapsed)
	st.Latency = latencyOf(h)
	return st, h
}

// allFailed returns an error if records were attempted and none succeeded.
func (s *producerSet) allFailed() error {
	var ok, failed int64
	var first error
	for _, p := range s.ps {
		ok += p.progRecords.Load()
		failed += p.errors
		if first == nil {
			first = p.firstErr
		}
	}
	if ok == 0 && failed > 0 && !errors.Is(first, context.Canceled) {
		return fmt.Errorf("all %d produced records failed; first error: %w", failed, first)
	}
	return nil
}

func (s *producerSet) progress() (records, bytes, errs int64) {
	for _, p := range s.ps {
		records += p.progRecords.Load()
		bytes += p.progBytes.Load()
		errs += p.progErrors.Load()
	}
	return
}

// Produce runs the produce benchmark: cfg.Producers clients write
// cfg.RecordSize-byte records to cfg.Topic (created if missing) for
// cfg.Duration or cfg.Records records, at cfg.Rate (0: as fast as
// possible). The Result has Produce (with latency) and, if asked for,
// BrokerCPU. If ctx ends the run early, the partial Result is returned with
// ctx's error.
func Produce(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults(modeProduce)
	if err != nil {
		return nil, err
	}
	adm, err := newAdmin(cfg)
	if err != nil {
		return nil, err
	}
	defer adm.close()
	parts, err := adm.ensureTopic(ctx)
	if err != nil {
		return nil, err
	}
	meters, err := startMeters(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ps, err := newProducers(cfg, newRunID(), false, parts, cfg.Records)
	if err != nil {
		return nil, err
	}
	defer ps.close()
	if err := ps.ping(ctx); err != nil {
		return nil, err
	}
	measureStart := time.Now().Add(cfg.Warmup)
	if cfg.Warmup > 0 {
		meters.rebaseAt(ctx, measureStart)
	}

	stopProgress := startProgress(cfg, "produce", ps.progress, nil)
	runErr := ps.run(ctx, measureStart, cfg.Duration)
	stopProgress()

	res := &Result{Mode: modeProduce, Settings: settingsOf(cfg, modeProduce, int32(len(parts)))}
	res.Produce, _ = ps.stage()
	meters.finish(context.WithoutCancel(ctx), res, res.Produce.Bytes)
	if runErr != nil {
		return res, runErr
	}
	return res, ps.allFailed()
}

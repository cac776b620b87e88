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

// consumer is one consumer client reading a fixed set of partitions from
// given offsets (no consumer group: no rebalances, nothing committed).
//
// Fields are owned by the consumer's goroutine and read by the coordinator
// after it has returned, except next and the progress counters (atomic).
type consumer struct {
	idx          int
	cl           *kgo.Client
	parts        []int32
	e2e          bool
	run          uint64
	measureStart time.Time
	measureNano  int64
	budget       *atomic.Int64 // measured records left to read; nil = no limit

	// next[p] is the next offset to read from partition p: the position
	// the coordinator compares with its targets.
	next []atomic.Int64

	// Owned by the consumer goroutine.
	hist       *histogram // e2e latency
	records    int64      // measured
	bytes      int64
	errors     int64
	firstErr   error
	lastRecord time.Time
	expect     []int64  // by partition: the offset the next record should have
	seen       []bitset // e2e, by producer: sequence numbers read
	dups       int64
	gaps       int64
	foreign    int64

	progRecords, progBytes atomic.Int64
}

// consumerSet is the consumers of a run plus the coordination around them.
type consumerSet struct {
	cs       []*consumer
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	budget   *atomic.Int64
	stopOnce sync.Once
}

// newConsumers creates up to cfg.Consumers consumers, splitting parts
// round-robin, each to start at start[p]. records bounds the number of
// measured records (0: no bound).
func newConsumers(cfg Config, parts []int32, start map[int32]int64, e2e bool, run uint64, records int64) (*consumerSet, error) {
	n := min(cfg.Consumers, len(parts))
	maxPart := int32(0)
	for _, p := range parts {
		maxPart = max(maxPart, p)
	}
	set := &consumerSet{cancel: func() {}}
	if records > 0 {
		set.budget = new(atomic.Int64)
		set.budget.Store(records)
	}
	for i := range n {
		c := &consumer{
			idx:    i,
			e2e:    e2e,
			run:    run,
			budget: set.budget,
			next:   make([]atomic.Int64, maxPart+1),
			expect: make([]int64, maxPart+1),
			hist:   newHistogram(),
		}
		offsets := make(map[int32]kgo.Offset)
		for j := i; j < len(parts); j += n {
			p := parts[j]
			c.parts = append(c.parts, p)
			offsets[p] = kgo.NewOffset().At(start[p])
			c.next[p].Store(start[p])
			c.expect[p] = start[p]
		}
		cl, err := kgo.NewClient(cfg.consumerOpts(i, offsets)...)
		if err != nil {
			set.closeAll()
			return nil, fmt.Errorf("creating consumer %d: %w", i, err)
		}
		c.cl = cl
		set.cs = append(set.cs, c)
	}
	return set, nil
}

// ping connects every consumer to the cluster.
func (s *consumerSet) ping(ctx context.Context) error {
	for _, c := range s.cs {
		if err := c.cl.Ping(ctx); err != nil {
			return fmt.Errorf("consumer %d: %w", c.idx, err)
		}
	}
	return nil
}

// start starts the consumers reading; records read before measureStart
// (by receive time, or for e2e by send time) are warmup.
func (s *consumerSet) start(ctx context.Context, measureStart time.Time) {
	ctx, s.cancel = context.WithCancel(ctx)
	for _, c := range s.cs {
		c.measureStart, c.measureNano = measureStart, measureStart.UnixNano()
		s.wg.Go(func() { c.consume(ctx) })
	}
}

func (s *consumerSet) closeAll() {
	for _, c := range s.cs {
		c.cl.Close()
	}
}

// stop ends the consumers, waits for them and closes their clients. It may
// be called more than once.
func (s *consumerSet) stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.closeAll()
	})
}

// reached reports whether every partition's next offset is at least
// targets[p].
func (s *consumerSet) reached(targets map[int32]int64) bool {
	for _, c := range s.cs {
		for _, p := range c.parts {
			if c.next[p].Load() < targets[p] {
				return false
			}
		}
	}
	return true
}

// budgetSpent reports whether a records bound was given and has been read.
func (s *consumerSet) budgetSpent() bool { return s.budget != nil && s.budget.Load() <= 0 }

func (s *consumerSet) progress() (records, bytes, errs int64) {
	for _, c := range s.cs {
		records += c.progRecords.Load()
		bytes += c.progBytes.Load()
	}
	return records, bytes, 0
}

func (c *consumer) consume(ctx context.Context) {
	for {
		fs := c.cl.PollFetches(ctx)
		now := time.Now()
		fs.EachError(func(_ string, p int32, err error) {
			if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed)) {
				return
			}
			c.errors++
			if c.firstErr == nil {
				c.firstErr = fmt.Errorf("partition %d: %w", p, err)
			}
		})
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) > 0 {
				c.partition(fp.Partition, fp.Records, now)
			}
		})
		if ctx.Err() != nil {
			return
		}
	}
}

func (c *consumer) partition(p int32, recs []*kgo.Record, now time.Time) {
	var n, size, total int64 // measured records and bytes; all bytes
	if c.e2e {
		nowNano := now.UnixNano()
		for _, r := range recs {
			sz := int64(len(r.Key) + len(r.Value))
			total += sz
			if r.Offset > c.expect[p] {
				c.gaps += r.Offset - c.expect[p]
			}
			c.expect[p] = r.Offset + 1
			s, ok := readStamp(r.Value)
			if !ok || s.run != c.run {
				c.foreign++
				continue
			}
			for int(s.producer) >= len(c.seen) {
				c.seen = append(c.seen, nil)
			}
			if c.seen[s.producer].set(s.seq) {
				c.dups++
			}
			if s.sentNano >= c.measureNano {
				c.hist.Record(nowNano - s.sentNano)
				n++
				size += sz
			}
		}
	} else {
		for _, r := range recs {
			total += int64(len(r.Key) + len(r.Value))
		}
		if !now.Before(c.measureStart) { // else warmup: count nothing
			n, size = int64(len(recs)), total
			if c.budget != nil {
				if left := c.budget.Add(-n); left < 0 {
					// Only part of this batch fits the bound.
					n = max(n+left, 0)
					size = 0
					for _, r := range recs[:n] {
						size += int64(len(r.Key) + len(r.Value))
					}
				}
			}
		}
	}
	if n > 0 {
		c.records += n
		c.bytes += size
		c.lastRecord = now
	}
	c.progRecords.Add(int64(len(recs)))
	c.progBytes.Add(total)
	c.next[p].Store(recs[len(recs)-1].Offset + 1)
}

// stage sums the consumers' measured numbers into a Stage, timed from
// measureStart to the last measured record read.
func (s *consumerSet) stage(measureStart time.Time) *Stage {
	st := &Stage{}
	var last time.Time
	var firstErr error
	for _, c := range s.cs {
		st.Records += c.records
		st.Bytes += c.bytes
		st.Errors += c.errors
		if c.lastRecord.After(last) {
			last = c.lastRecord
		}
		if firstErr == nil {
			firstErr = c.firstErr
		}
	}
	if firstErr != nil {
		st.FirstError = firstErr.Error()
	}
	var elapsed time.Duration
	if !last.IsZero() {
		elapsed = last.Sub(measureStart)
	}
	st.finish(elapsed)
	return st
}

// Consume runs the consume benchmark: cfg.Consumers clients read cfg.Topic
// from the start of every partition until the end offsets listed when the
// run began (or cfg.Records records, or cfg.Duration), and the Result has
// Consume and, if asked for, BrokerCPU. The topic should already hold data;
// cfg.ProduceFirst > 0 produces that many records first (not measured). If
// ctx ends the run early, the partial Result is returned with ctx's error.
func Consume(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults(modeConsume)
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
	res := &Result{Mode: modeConsume, Settings: settingsOf(cfg, modeConsume, int32(len(parts)))}

	if cfg.ProduceFirst > 0 {
		fill := cfg
		fill.Rate, fill.Duration, fill.Warmup, fill.Progress = 0, 0, 0, nil
		ps, err := newProducers(fill, newRunID(), false, parts, cfg.ProduceFirst)
		if err != nil {
			return nil, err
		}
		err = ps.run(ctx, time.Now(), 0)
		ps.close()
		if err != nil {
			return nil, err
		}
		if err := ps.allFailed(); err != nil {
			return nil, fmt.Errorf("--produce-first: %w", err)
		}
		if st, _ := ps.stage(); st.Errors > 0 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("--produce-first: %d of %d records failed: %s", st.Errors, cfg.ProduceFirst, st.FirstError))
		}
	}

	start, err := adm.offsetsRetry(ctx, false, parts)
	if err != nil {
		return nil, err
	}
	end, err := adm.offsetsRetry(ctx, true, parts)
	if err != nil {
		return nil, err
	}
	var available int64
	for _, p := range parts {
		available += max(end[p]-start[p], 0)
	}
	if available == 0 {
		return nil, fmt.Errorf("topic %s has no records to consume: fill it first with --produce-first N, or run 'vigil bench produce' against it", cfg.Topic)
	}

	meters, err := startMeters(ctx, cfg)
	if err != nil {
		return nil, err
	}
	cs, err := newConsumers(cfg, parts, start, false, 0, cfg.Records)
	if err != nil {
		return nil, err
	}
	defer cs.stop()
	if err := cs.ping(ctx); err != nil {
		return nil, err
	}
	measureStart := time.Now().Add(cfg.Warmup)
	if cfg.Warmup > 0 {
		meters.rebaseAt(ctx, measureStart)
	}
	cs.start(ctx, measureStart)
	stopProgress := startProgress(cfg, "consume", nil, cs.progress)

	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = measureStart.Add(cfg.Duration)
	}
	w := watcher{idle: cfg.DrainTimeout}
	reason := w.wait(ctx, deadline, cs.progress, func() bool {
		return cs.budgetSpent() || cs.reached(end)
	})
	cs.stop()
	stopProgress()

	res.Consume = cs.stage(measureStart)
	if reason == stopIdle {
		res.Warnings = append(res.Warnings, fmt.Sprintf("stopped after %v without records, before reaching the end offsets listed at the start", cfg.DrainTimeout))
	}
	meters.finish(context.WithoutCancel(ctx), res, res.Consume.Bytes)
	if reason == stopCanceled {
		return res, ctx.Err()
	}
	return res, nil
}

type stopReason int

const (
	stopDone stopReason = iota
	stopDeadline
	stopIdle
	stopCanceled
)

// watcher polls a done condition until it holds, a deadline passes, no
// progress is seen for idle, or ctx ends. Polling (every few milliseconds)
// keeps the consumers free of any coordination on their hot path.
type watcher struct {
	idle time.Duration // 0: no idle limit
}

const watchInterval = 5 * time.Millisecond

func (w watcher) wait(ctx context.Context, deadline time.Time, progress func() (int64, int64, int64), done func() bool) stopReason {
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	lastCount, _, _ := progress()
	lastChange := time.Now()
	for {
		if done() {
			return stopDone
		}
		select {
		case <-ctx.Done():
			return stopCanceled
		case now := <-tick.C:
			if !deadline.IsZero() && !now.Before(deadline) {
				return stopDeadline
			}
			if w.idle > 0 {
				if n, _, _ := progress(); n != lastCount {
					lastCount, lastChange = n, now
				} else if now.Sub(lastChange) >= w.idle {
					return stopIdle
				}
			}
		}
	}
}

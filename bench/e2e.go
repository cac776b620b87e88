package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"
)

const (
	modeProduce = "produce"
	modeConsume = "consume"
	modeE2E     = "e2e"
)

// newRunID returns a random id that tags this run's e2e records.
func newRunID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return binary.BigEndian.Uint64(b[:])
}

// E2E runs the end-to-end benchmark: consumers start at the current end of
// every partition of cfg.Topic, then producers send stamped records at
// cfg.Rate (required) for cfg.Duration or cfg.Records records. When the
// producers are done, the consumers read until they reach every partition's
// last acknowledged offset (bounded by cfg.DrainTimeout). The Result has
// Produce, Consume and E2E: latency from the Produce call to the consumer
// receiving the record, and the delivery check (missing, duplicates). If ctx
// ends the run early, the partial Result is returned with ctx's error.
func E2E(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults(modeE2E)
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
	start, err := adm.offsetsRetry(ctx, true, parts)
	if err != nil {
		return nil, err
	}
	meters, err := startMeters(ctx, cfg)
	if err != nil {
		return nil, err
	}

	run := newRunID()
	cs, err := newConsumers(cfg, parts, start, true, run, 0)
	if err != nil {
		return nil, err
	}
	defer cs.stop()
	ps, err := newProducers(cfg, run, true, parts, cfg.Records)
	if err != nil {
		return nil, err
	}
	defer ps.close()
	// Connect every client before the clock starts, and start the
	// consumers (at the end offsets listed above) before the first send.
	if err := cs.ping(ctx); err != nil {
		return nil, err
	}
	if err := ps.ping(ctx); err != nil {
		return nil, err
	}
	measureStart := time.Now().Add(cfg.Warmup)
	if cfg.Warmup > 0 {
		meters.rebaseAt(ctx, measureStart)
	}
	cs.start(ctx, measureStart)

	stopProgress := startProgress(cfg, "e2e", ps.progress, cs.progress)
	defer stopProgress()
	runErr := ps.run(ctx, measureStart, cfg.Duration)

	// Drain: read up to every partition's last acknowledged offset, or
	// the high watermark if it is further, re-checking the high
	// watermark once there in case it moved (acks=0 acknowledges before
	// the broker has written).
	drained := false
	deadline := time.Now().Add(cfg.DrainTimeout)
	targets := make(map[int32]int64, len(parts))
	for _, p := range ps.ps {
		for part, off := range p.maxOffset {
			targets[int32(part)] = max(targets[int32(part)], off+1)
		}
	}
	for runErr == nil {
		end, err := adm.offsetsRetry(ctx, true, parts)
		if err != nil {
			runErr = err
			break
		}
		moved := false
		for _, p := range parts {
			if end[p] > targets[p] {
				targets[p], moved = end[p], true
			}
		}
		if !moved && cs.reached(targets) {
			drained = true
			break
		}
		reason := watcher{}.wait(ctx, deadline, cs.progress, func() bool { return cs.reached(targets) })
		if reason == stopCanceled {
			runErr = ctx.Err()
		}
		if reason != stopDone {
			break
		}
	}
	cs.stop()
	stopProgress()

	res := &Result{Mode: modeE2E, Settings: settingsOf(cfg, modeE2E, int32(len(parts)))}
	res.Produce, _ = ps.stage()
	res.Consume = cs.stage(measureStart)
	e := &E2EStats{Drained: drained}
	lat := newHistogram()
	sent := make([]uint64, cfg.Producers)
	failed := make([][]uint64, cfg.Producers)
	for _, p := range ps.ps {
		sent[p.idx] = p.issued
		failed[p.idx] = p.failed
	}
	seen := make([][]bitset, 0, len(cs.cs))
	var dups int64
	for _, c := range cs.cs {
		lat.Merge(c.hist)
		seen = append(seen, c.seen)
		dups += c.dups
		e.OffsetGaps += c.gaps
		e.Foreign += c.foreign
	}
	e.Latency = latencyOf(lat)
	e.Expected, e.Received, e.Missing, e.Duplicates = deliveryCheck(sent, failed, seen, dups)
	res.E2E = e
	meters.finish(context.WithoutCancel(ctx), res, res.Produce.Bytes+res.Consume.Bytes)
	if !drained && runErr == nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("consumers did not reach the last acknowledged offsets within %v; unread records count as missing", cfg.DrainTimeout))
	}
	if runErr != nil {
		return res, runErr
	}
	return res, ps.allFailed()
}

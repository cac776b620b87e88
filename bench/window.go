package bench

import (
	"context"
	"fmt"
	"time"
)

// window samples something (a broker's CPU time, the host's counters) at
// the start and the end of a measured phase. The first sample is taken when
// the window is made and, with a warmup, taken again when it ends.
type window[T any] struct {
	sample  func(context.Context) (T, error)
	start   T
	rebased chan struct{} // closed when the warmup rebase is done
	err     error         // of the rebase; read after rebased is closed
}

// newWindow takes the first sample.
func newWindow[T any](ctx context.Context, sample func(context.Context) (T, error)) (*window[T], error) {
	v, err := sample(ctx)
	if err != nil {
		return nil, err
	}
	return &window[T]{sample: sample, start: v}, nil
}

// rebaseAt re-takes the first sample at t (the end of the warmup), in the
// background.
func (w *window[T]) rebaseAt(ctx context.Context, t time.Time) {
	w.rebased = make(chan struct{})
	go func() {
		defer close(w.rebased)
		timer := time.NewTimer(time.Until(t))
		defer timer.Stop()
		select {
		case <-ctx.Done():
			w.err = ctx.Err()
			return
		case <-timer.C:
		}
		v, err := w.sample(ctx)
		if err != nil {
			w.err = err
			return
		}
		w.start = v
	}()
}

// span waits for a rebase, takes the closing sample and returns both.
func (w *window[T]) span(ctx context.Context) (start, end T, err error) {
	if w.rebased != nil {
		<-w.rebased
		if w.err != nil {
			return start, end, fmt.Errorf("sampling at the end of the warmup: %w", w.err)
		}
	}
	end, err = w.sample(ctx)
	return w.start, end, err
}

// phaseMeters measure a phase: the broker's CPU (when asked for) and the
// host.
type phaseMeters struct {
	cpuSource string
	cpu       *window[float64]    // nil without --broker-pid or --broker-metrics
	host      *window[hostSample] // nil where /proc cannot be read
}

// startMeters takes the first samples; a broker CPU sample that fails stops
// the run (most likely a wrong --broker-pid or --broker-metrics).
func startMeters(ctx context.Context, c Config) (*phaseMeters, error) {
	m := &phaseMeters{}
	if s := newCPUSampler(c); s != nil {
		w, err := newWindow(ctx, s.sample)
		if err != nil {
			return nil, err
		}
		m.cpu, m.cpuSource = w, s.source()
	}
	m.host, _ = newWindow(ctx, sampleHost)
	return m, nil
}

// rebaseAt re-takes the first samples at t (the end of the warmup), in the
// background.
func (m *phaseMeters) rebaseAt(ctx context.Context, t time.Time) {
	if m.cpu != nil {
		m.cpu.rebaseAt(ctx, t)
	}
	if m.host != nil {
		m.host.rebaseAt(ctx, t)
	}
}

// finish takes the closing samples and fills r.BrokerCPU and r.Host, or
// adds warnings.
func (m *phaseMeters) finish(ctx context.Context, r *Result, bytesMoved int64) {
	if m.cpu != nil {
		if start, end, err := m.cpu.span(ctx); err != nil {
			r.Warnings = append(r.Warnings, "broker CPU not reported: "+err.Error())
		} else {
			cpu := &BrokerCPU{Source: m.cpuSource, CPUSeconds: end - start, BytesMoved: bytesMoved}
			if bytesMoved > 0 {
				cpu.CPUSecondsPerGB = cpu.CPUSeconds / (float64(bytesMoved) / 1e9)
			}
			r.BrokerCPU = cpu
		}
	}
	if m.host != nil {
		if a, b, err := m.host.span(ctx); err != nil {
			r.Warnings = append(r.Warnings, "host stats not reported: "+err.Error())
		} else {
			r.Host = hostStatsOf(a, b)
		}
	}
}

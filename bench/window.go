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

package bench

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

type progressFn func() (records, bytes, errs int64)

// startProgress prints, every cfg.ProgressInterval, the rates since the
// previous line to cfg.Progress. It returns a function that stops it (safe
// to call more than once).
func startProgress(cfg Config, mode string, produced, consumed progressFn) (stop func()) {
	if cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(cfg.ProgressInterval)
		defer t.Stop()
		var lastP, lastPB, lastC, lastCB int64
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				secs := now.Sub(last).Seconds()
				last = now
				var b strings.Builder
				fmt.Fprintf(&b, "%s:", mode)
				if produced != nil {
					r, by, e := produced()
					fmt.Fprintf(&b, " produced %s rec/s %.1f MB/s (errors %d)", num(float64(r-lastP)/secs), float64(by-lastPB)/1e6/secs, e)
					lastP, lastPB = r, by
				}
				if consumed != nil {
					r, by, _ := consumed()
					fmt.Fprintf(&b, " consumed %s rec/s %.1f MB/s", num(float64(r-lastC)/secs), float64(by-lastCB)/1e6/secs)
					lastC, lastCB = r, by
				}
				fmt.Fprintln(cfg.Progress, b.String())
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

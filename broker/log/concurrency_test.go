package log

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestConcurrentAppendReadRetention runs one appender, random readers, a
// tailing consumer, retention, DeleteRecordsBefore and the timestamp
// lookups at once (run it with -race). Every batch read must be valid and
// hold the records the appender wrote at that offset.
func TestConcurrentAppendReadRetention(t *testing.T) {
	const (
		perBatch = 4
		nBatches = 1500
	)
	cfg := smallConfig()
	cfg.RetentionMs = -1
	cfg.RetentionBytes = 64 << 10
	cfg.IndexIntervalBytes = 200
	l := openTest(t, cfg)

	// checkBatch verifies the first batch of records: batch i (base offset
	// i*perBatch) holds the values "i-0".."i-3".
	checkBatch := func(records []byte) error {
		h, err := ValidateBatch(records)
		if err != nil {
			return err
		}
		i := h.BaseOffset / perBatch
		j := 0
		return DecodeRecords(records[:h.Size()], func(r *Record) error {
			if want := fmt.Sprintf("%d-%d", i, j); string(r.Value) != want {
				return fmt.Errorf("offset %d holds %q, want %q", r.Offset, r.Value, want)
			}
			j++
			return nil
		})
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	outOfRange := func(err error) bool {
		var ke *kerr.Error
		return errors.As(err, &ke) && ke == kerr.OffsetOutOfRange
	}

	wg.Add(1)
	go func() { // the appender
		defer wg.Done()
		defer close(done)
		for i := range nBatches {
			b := buildBatch(t, plain(), values(fmt.Sprint(i), perBatch, t0+int64(i)))
			info, err := l.Append(b, int32(i/500))
			if err != nil {
				report(fmt.Errorf("append %d: %w", i, err))
				return
			}
			if info.BaseOffset != int64(i)*perBatch {
				report(fmt.Errorf("append %d at %d", i, info.BaseOffset))
				return
			}
		}
	}()

	for r := range 3 {
		wg.Add(1)
		go func() { // random readers
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 9))
			buf := make([]byte, 0, 8<<10)
			for {
				select {
				case <-done:
					return
				default:
				}
				start, end := l.StartOffset(), l.EndOffset()
				if end == start {
					continue
				}
				off := start + rng.Int64N(end-start)
				info, err := l.Read(buf[:0], off, 1+rng.IntN(4096), end)
				if outOfRange(err) {
					continue // retention moved the start
				}
				if err != nil {
					report(fmt.Errorf("read %d: %w", off, err))
					return
				}
				if len(info.Records) == 0 {
					report(fmt.Errorf("read %d in [%d, %d) returned nothing", off, start, end))
					return
				}
				if err := checkBatch(info.Records); err != nil {
					report(err)
					return
				}
				h := parseHeader(info.Records)
				if h.BaseOffset > off || h.LastOffset() < off {
					report(fmt.Errorf("read %d returned batch [%d, %d]", off, h.BaseOffset, h.LastOffset()))
					return
				}
			}
		}()
	}

	wg.Add(1)
	go func() { // a consumer following the log with Wait
		defer wg.Done()
		off := int64(0)
		for off < nBatches*perBatch {
			ch := l.Wait()
			info, err := l.Read(nil, off, 1<<20, l.EndOffset())
			if outOfRange(err) {
				off = l.StartOffset()
				continue
			}
			if err != nil {
				report(fmt.Errorf("tail read %d: %w", off, err))
				return
			}
			if len(info.Records) == 0 {
				select {
				case <-ch:
				case <-done:
					if l.EndOffset() == off {
						return
					}
				}
				continue
			}
			recs := info.Records
			for len(recs) > 0 {
				if err := checkBatch(recs); err != nil {
					report(err)
					return
				}
				h := parseHeader(recs)
				if h.LastOffset() < off || h.BaseOffset > off {
					report(fmt.Errorf("tail at %d got batch [%d, %d]", off, h.BaseOffset, h.LastOffset()))
					return
				}
				off = h.LastOffset() + 1
				recs = recs[h.Size():]
			}
		}
	}()

	wg.Add(1)
	go func() { // retention, DeleteRecords, lookups, flushes
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			switch i % 5 {
			case 0:
				if _, err := l.Maintain(); err != nil {
					report(err)
					return
				}
			case 1:
				if end := l.EndOffset(); end > 2000 && i%15 == 1 {
					if _, err := l.DeleteRecordsBefore(end - 1000); err != nil {
						report(err)
						return
					}
				}
			case 2:
				if _, _, _, err := l.OffsetForTimestamp(t0 + int64(i%nBatches)); err != nil {
					report(err)
					return
				}
			case 3:
				if _, _, err := l.MaxTimestamp(); err != nil {
					report(err)
					return
				}
				l.EndOffsetForEpoch(1)
				l.Producers()
				l.Size()
			case 4:
				if err := l.Flush(); err != nil {
					report(err)
					return
				}
			}
		}
	}()

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if l.EndOffset() != nBatches*perBatch {
		t.Fatalf("end %d", l.EndOffset())
	}
	if _, err := l.Maintain(); err != nil {
		t.Fatal(err)
	}
	if l.Size() > cfg.RetentionBytes+cfg.SegmentBytes {
		t.Fatalf("size %d after retention, limit %d", l.Size(), cfg.RetentionBytes)
	}
	readAll(t, l.Log)
}

// TestCloseWhileReading: Close and Delete while reads are running never
// break a read in progress (it completes or fails with ErrClosed).
func TestCloseWhileReading(t *testing.T) {
	l := openTest(t, smallConfig())
	for i := range 50 {
		l.mustAppend(sizedBatch(t, 2, 300, t0+int64(i)))
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				info, err := l.Read(nil, 0, 1<<20, l.EndOffset())
				if err == ErrClosed {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := ValidateBatch(info.Records); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	if err := l.Delete(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}

package log

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type codecCase struct {
	name   string
	codec  int
	xerial bool
}

var allCodecs = []codecCase{
	{"none", CompressionNone, false},
	{"gzip", CompressionGzip, false},
	{"snappy", CompressionSnappy, false},
	{"snappy-xerial", CompressionSnappy, true},
	{"lz4", CompressionLZ4, false},
	{"zstd", CompressionZstd, false},
}

type stampedRecord struct {
	offset, ts int64
}

func TestOffsetForTimestamp(t *testing.T) {
	for _, cc := range allCodecs {
		t.Run(cc.name, func(t *testing.T) {
			cfg := smallConfig()
			cfg.IndexIntervalBytes = 300
			l := openTest(t, cfg)
			r := rand.New(rand.NewPCG(3, 4))
			var all []stampedRecord
			base := int64(0)
			for b := range 80 {
				n := 1 + r.IntN(8)
				recs := make([]rec, n)
				for i := range recs {
					// Mostly increasing, with jitter inside batches (create
					// times are not monotonic).
					ts := t0 + int64(b)*100 + int64(r.IntN(150))
					recs[i] = rec{key: []byte(fmt.Sprint(i)), value: make([]byte, r.IntN(300)), ts: ts}
					all = append(all, stampedRecord{base + int64(i), ts})
				}
				s := plain()
				s.codec, s.xerial = cc.codec, cc.xerial
				info := l.mustAppend(buildBatch(t, s, recs))
				if info.BaseOffset != base {
					t.Fatalf("base %d", info.BaseOffset)
				}
				base += int64(n)
			}
			if len(l.segments()) < 3 {
				t.Fatalf("%d segments", len(l.segments()))
			}
			check := func(l *testLog, start int64) {
				t.Helper()
				for target := t0 - 50; target < t0+80*100+200; target += 37 {
					var want *stampedRecord
					for i := range all {
						if all[i].ts >= target && all[i].offset >= start {
							want = &all[i]
							break
						}
					}
					off, ts, found, err := l.OffsetForTimestamp(target)
					if err != nil {
						t.Fatal(err)
					}
					switch {
					case want == nil && found:
						t.Fatalf("ts %d: found offset %d (ts %d), want none", target, off, ts)
					case want != nil && (!found || off != want.offset || ts != want.ts):
						t.Fatalf("ts %d: (%d, %d, %v), want (%d, %d)", target, off, ts, found, want.offset, want.ts)
					}
				}
			}
			check(l, 0)
			check(l.reopen(true), 0)
			// Offsets below the start offset do not count.
			l2 := l.reopen(true)
			if _, err := l2.DeleteRecordsBefore(100); err != nil {
				t.Fatal(err)
			}
			check(l2, 100)

			// MaxTimestamp: the first record carrying the largest timestamp.
			var best stampedRecord
			best.ts = -1
			for _, sr := range all {
				if sr.ts > best.ts {
					best = sr
				}
			}
			ts, off, err := l2.MaxTimestamp()
			if err != nil || ts != best.ts || off != best.offset {
				t.Fatalf("MaxTimestamp = (%d, %d, %v), want (%d, %d)", ts, off, err, best.ts, best.offset)
			}
		})
	}
}

func TestMaxTimestampInsideCompressedBatch(t *testing.T) {
	for _, cc := range allCodecs {
		t.Run(cc.name, func(t *testing.T) {
			l := openTest(t, smallConfig())
			s := plain()
			s.codec, s.xerial = cc.codec, cc.xerial
			l.mustAppend(buildBatch(t, s, []rec{{ts: t0}, {ts: t0 + 5}}))
			// The max is the third record of the second batch; the fourth
			// carries it too but comes later.
			l.mustAppend(buildBatch(t, s, []rec{{ts: t0 + 1}, {ts: t0 + 3}, {ts: t0 + 90}, {ts: t0 + 90}, {ts: t0 + 2}}))
			l.mustAppend(buildBatch(t, s, []rec{{ts: t0 + 10}}))
			ts, off, err := l.MaxTimestamp()
			if err != nil || ts != t0+90 || off != 4 {
				t.Fatalf("MaxTimestamp = (%d, %d, %v), want (%d, 4)", ts, off, err, t0+90)
			}
		})
	}
}

func TestOffsetForTimestampLogAppendTime(t *testing.T) {
	cfg := smallConfig()
	cfg.LogAppendTime = true
	l := openTest(t, cfg)
	for i := range 10 {
		l.clock.AdvanceMs(1000)
		s := plain()
		s.codec = CompressionGzip
		l.mustAppend(buildBatch(t, s, values("x", 3, 5))) // create times ignored
		_ = i
	}
	for i := range 10 {
		at := t0 + int64(i+1)*1000
		off, ts, found, err := l.OffsetForTimestamp(at - 500)
		if err != nil || !found || off != int64(i)*3 || ts != at {
			t.Fatalf("batch %d: (%d, %d, %v, %v)", i, off, ts, found, err)
		}
	}
	if _, _, found, _ := l.OffsetForTimestamp(t0 + 20000); found {
		t.Fatal("found a record after the newest")
	}
	if ts, off, _ := l.MaxTimestamp(); ts != t0+10000 || off != 27 {
		t.Fatalf("MaxTimestamp %d %d", ts, off)
	}
}

// TestOffsetForTimestampUndecodableBatch: records are not decoded on
// append, so a producer can store a batch whose records do not decode. The
// lookup answers with that batch's first offset rather than failing.
func TestOffsetForTimestampUndecodableBatch(t *testing.T) {
	l := openTest(t, smallConfig())
	l.mustAppend(simple(t, 2, t0))
	s := plain()
	s.codec = CompressionGzip
	b := buildBatch(t, s, values("x", 3, t0+100))
	b[BatchHeaderSize+12] ^= 0xff // corrupt the gzip stream
	l.mustAppend(resign(b))
	off, ts, found, err := l.OffsetForTimestamp(t0 + 101)
	if err != nil || !found || off != 2 || ts != t0+102 {
		t.Fatalf("(%d, %d, %v, %v)", off, ts, found, err)
	}
}

func TestDecodeRecords(t *testing.T) {
	for _, cc := range allCodecs {
		t.Run(cc.name, func(t *testing.T) {
			s := plain()
			s.codec, s.xerial = cc.codec, cc.xerial
			recs := values("v", 50, t0)
			recs[3].key = []byte("k3")
			recs[4].key = []byte{}
			b := buildBatch(t, s, recs)
			putBase(b, 1000)
			i := 0
			err := DecodeRecords(b, func(r *Record) error {
				want := recs[i]
				if r.Offset != 1000+int64(i) || r.Timestamp != want.ts || string(r.Value) != string(want.value) ||
					(want.key == nil) != (r.Key == nil) || string(r.Key) != string(want.key) {
					return fmt.Errorf("record %d: %+v", i, r)
				}
				i++
				return nil
			})
			if err != nil || i != 50 {
				t.Fatalf("%v after %d records", err, i)
			}
		})
	}
}

func TestDecodeRecordsFields(t *testing.T) {
	recs := []rec{
		{key: nil, value: nil, ts: t0},
		{key: []byte("k"), value: []byte("v"), ts: t0 + 7, headers: []kmsg.Header{{Key: "h1", Value: []byte("x")}, {Key: "h2"}}},
	}
	b := buildBatch(t, plain(), recs)
	var got []Record
	err := DecodeRecords(b, func(r *Record) error {
		c := *r
		c.Headers = append([]RecordHeader(nil), r.Headers...)
		got = append(got, c)
		return nil
	})
	if err != nil || len(got) != 2 {
		t.Fatalf("%v, %d records", err, len(got))
	}
	if got[0].Key != nil || got[0].Value != nil || len(got[0].Headers) != 0 {
		t.Fatalf("null key and value: %+v", got[0])
	}
	if string(got[1].Key) != "k" || got[1].Timestamp != t0+7 || len(got[1].Headers) != 2 ||
		got[1].Headers[0].Key != "h1" || string(got[1].Headers[0].Value) != "x" || got[1].Headers[1].Value != nil {
		t.Fatalf("record 1: %+v", got[1])
	}
	stop := errors.New("stop")
	if err := DecodeRecords(b, func(*Record) error { return stop }); err != stop {
		t.Fatalf("fn error not returned: %v", err)
	}
	// Records that do not match their lengths are CORRUPT_MESSAGE.
	for i := BatchHeaderSize; i < len(b); i++ {
		c := append([]byte(nil), b...)
		c[i] ^= 0x7f
		resign(c)
		if err := DecodeRecords(c, func(*Record) error { return nil }); err != nil {
			wantKerr(t, err, kerr.CorruptMessage)
		}
	}
	_, err = ParseBatchHeader(b[:60])
	wantKerr(t, err, kerr.CorruptMessage)
	if h, err := ParseBatchHeader(b); err != nil || h.NumRecords != 2 || h.HasProducerID() {
		t.Fatalf("%+v %v", h, err)
	}
}

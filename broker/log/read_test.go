package log

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// fillRandom appends batches of pseudo-random record counts and sizes and
// returns their (base, last) offsets.
func fillRandom(t *testing.T, l *testLog, n int, seed uint64) [][2]int64 {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	var out [][2]int64
	for i := range n {
		b := sizedBatch(t, 1+r.IntN(20), r.IntN(200), t0+int64(i))
		info := l.mustAppend(b)
		out = append(out, [2]int64{info.BaseOffset, info.LastOffset})
	}
	return out
}

func TestReadEveryOffset(t *testing.T) {
	for _, interval := range []int{0, 100, 1000, 1 << 20} {
		t.Run(fmt.Sprintf("interval=%d", interval), func(t *testing.T) {
			cfg := smallConfig()
			cfg.SegmentBytes = 16 << 10
			cfg.IndexIntervalBytes = interval
			l := openTest(t, cfg)
			spans := fillRandom(t, l, 150, uint64(interval))
			check := func(l *testLog) {
				t.Helper()
				end := l.EndOffset()
				for _, sp := range spans {
					for o := sp[0]; o <= sp[1]; o++ {
						info, err := l.Read(nil, o, 1, end)
						if err != nil {
							t.Fatalf("Read(%d): %v", o, err)
						}
						hs := batches(t, info.Records)
						if len(hs) != 1 || hs[0].BaseOffset != sp[0] || hs[0].LastOffset() != sp[1] {
							t.Fatalf("Read(%d) with maxBytes 1 gave %+v, want the batch [%d, %d]", o, hs, sp[0], sp[1])
						}
						if info.EndOffset != end || info.LogStartOffset != 0 {
							t.Fatalf("Read(%d) info %+v", o, info)
						}
					}
				}
			}
			check(l)
			check(l.reopen(true))
		})
	}
}

func TestReadLimits(t *testing.T) {
	l := openTest(t, DefaultConfig())
	var sizes []int
	for i := range 10 {
		b := sizedBatch(t, 2, 100+10*i, t0)
		sizes = append(sizes, len(b))
		l.mustAppend(b) // batch i holds offsets 2i, 2i+1
	}
	end := l.EndOffset()
	cases := []struct {
		name      string
		offset    int64
		maxBytes  int
		maxOffset int64
		want      []int64 // base offsets
		err       *kerr.Error
	}{
		{"one batch when maxBytes is tiny", 3, 1, end, []int64{2}, nil},
		{"maxBytes zero still returns a batch", 0, 0, end, []int64{0}, nil},
		{"exactly two batches", 0, sizes[0] + sizes[1], end, []int64{0, 2}, nil},
		{"one byte short of three", 0, sizes[0] + sizes[1] + sizes[2] - 1, end, []int64{0, 2}, nil},
		{"all", 0, 1 << 20, end, []int64{0, 2, 4, 6, 8, 10, 12, 14, 16, 18}, nil},
		{"maxOffset excludes batches starting at or after it", 0, 1 << 20, 7, []int64{0, 2, 4, 6}, nil},
		{"maxOffset at a batch start", 0, 1 << 20, 6, []int64{0, 2, 4}, nil},
		{"offset at maxOffset", 6, 1 << 20, 6, nil, nil},
		{"offset at the end", end, 1 << 20, end, nil, nil},
		{"maxOffset beyond the end", 16, 1 << 20, end + 100, []int64{16, 18}, nil},
		{"past the end", end + 1, 1 << 20, end + 5, nil, kerr.OffsetOutOfRange},
		{"negative", -1, 1 << 20, end, nil, kerr.OffsetOutOfRange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("prefix")
			info, err := l.Read(append([]byte(nil), prefix...), tc.offset, tc.maxBytes, tc.maxOffset)
			if tc.err != nil {
				wantKerr(t, err, tc.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(info.Records, prefix) {
				t.Fatal("Read did not append to dst")
			}
			var got []int64
			for _, h := range batches(t, info.Records[len(prefix):]) {
				got = append(got, h.BaseOffset)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("batches %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReadWholeBatchesOnly: a read returns the longest run of whole
// batches that fits maxBytes (at least one) and reads little more than it
// returns: not the rest of maxBytes, which would end inside a batch that
// is not returned. ReadBounded does not read a first batch larger than
// maxFirst at all. Whatever the index interval, and so however few index
// entries there are to find batch boundaries by.
func TestReadWholeBatchesOnly(t *testing.T) {
	for _, interval := range []int{0, 4096, 1 << 20} {
		t.Run(fmt.Sprintf("interval=%d", interval), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.IndexIntervalBytes = interval
			fsys := newFaultFS()
			l := openAt(t, t.TempDir(), cfg, newClock(t0), fsys)
			r := rand.New(rand.NewPCG(uint64(interval), 2))
			var bases []int64
			var sizes []int
			for i := range 60 {
				b := sizedBatch(t, 1+r.IntN(8), 4000+r.IntN(8000), t0+int64(i))
				bases = append(bases, l.mustAppend(b).BaseOffset)
				sizes = append(sizes, len(b))
			}
			end := l.EndOffset()
			for range 300 {
				i := r.IntN(len(bases))
				maxBytes := r.IntN(400 << 10)
				want, total := 1, sizes[i] // batches, bytes
				for i+want < len(sizes) && total+sizes[i+want] <= maxBytes {
					total += sizes[i+want]
					want++
				}
				before := fsys.readBytes.Load()
				info, err := l.Read(nil, bases[i], maxBytes, end)
				if err != nil {
					t.Fatal(err)
				}
				hs := batches(t, info.Records)
				if len(hs) != want || hs[0].BaseOffset != bases[i] {
					t.Fatalf("Read(batch %d, maxBytes %d): %d batches from %d, want %d from %d", i, maxBytes, len(hs), hs[0].BaseOffset, want, bases[i])
				}
				// Besides the batches, the header reads (4 KiB each) that
				// find the first batch, from the last index entry before it
				// (with no entries, from the segment's start: a read per
				// batch), and the end of the last, from the last entry
				// before maxBytes.
				// An index too sparse to find the last batch's end by leaves
				// the read to go to maxBytes.
				slack, upTo := int64(4*4096), int64(total)
				if interval > 4096 {
					slack += int64(i+1) * 4096
					upTo = int64(max(total, maxBytes))
				}
				if read := fsys.readBytes.Load() - before; read > upTo+slack {
					t.Fatalf("Read(batch %d, maxBytes %d) read %d bytes to return %d", i, maxBytes, read, total)
				}
				before = fsys.readBytes.Load()
				info, err = l.ReadBounded(nil, bases[i], maxBytes, sizes[i]-1, end)
				if err != nil || len(info.Records) != 0 {
					t.Fatalf("ReadBounded(batch %d, maxFirst %d) = %d bytes, %v; want none", i, sizes[i]-1, len(info.Records), err)
				}
				if read := fsys.readBytes.Load() - before; read > slack {
					t.Fatalf("ReadBounded(batch %d) read %d bytes to return none", i, read)
				}
				info, err = l.ReadBounded(nil, bases[i], maxBytes, sizes[i], end)
				if err != nil || len(batches(t, info.Records)) != want {
					t.Fatalf("ReadBounded(batch %d, maxFirst %d) = %d bytes, %v; want %d batches", i, sizes[i], len(info.Records), err, want)
				}
			}
		})
	}
}

// TestReadTailOnce: a consumer at the end of the log, reading the few small
// batches appended since its last fetch, costs one read of the segment:
// the read of the first batch's header brings them in. (With every batch
// indexed, the header read starts at that batch; with a sparser index it
// starts at the entry before it, and a second read may be needed.)
func TestReadTailOnce(t *testing.T) {
	fsys := newFaultFS()
	cfg := DefaultConfig()
	cfg.IndexIntervalBytes = 0
	l := openAt(t, t.TempDir(), cfg, newClock(t0), fsys)
	for i := range 50 {
		l.mustAppend(sizedBatch(t, 1, 1000, t0+int64(i)))
	}
	for i := range 3 {
		next := l.EndOffset()
		l.mustAppend(sizedBatch(t, 1, 1000, t0+int64(i)))
		l.mustAppend(sizedBatch(t, 2, 500, t0+int64(i)))
		calls := fsys.readCalls.Load()
		info, err := l.Read(nil, next, 1<<20, l.EndOffset())
		if err != nil {
			t.Fatal(err)
		}
		if hs := batches(t, info.Records); len(hs) != 2 || hs[0].BaseOffset != next {
			t.Fatalf("read at %d: %+v", next, hs)
		}
		if n := fsys.readCalls.Load() - calls; n != 1 {
			t.Fatalf("reading the tail took %d reads, want 1", n)
		}
	}
}

func TestReadStopsAtSegmentEnd(t *testing.T) {
	cfg := smallConfig()
	l := openTest(t, cfg)
	for range 20 {
		l.mustAppend(sizedBatch(t, 1, 900, t0))
	}
	segs := l.segments()
	if len(segs) < 3 {
		t.Fatalf("%d segments", len(segs))
	}
	info, err := l.Read(nil, 0, 1<<20, l.EndOffset())
	if err != nil {
		t.Fatal(err)
	}
	hs := batches(t, info.Records)
	if last := hs[len(hs)-1].LastOffset(); last+1 != segs[1].base {
		t.Fatalf("read ended at %d, the second segment starts at %d", last, segs[1].base)
	}
	if got := readAll(t, l.Log); len(got) != 20 {
		t.Fatalf("%d batches", len(got))
	}
}

func TestIndexFullRolls(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IndexIntervalBytes = 0                    // an entry for every batch but the first
	cfg.SegmentIndexBytes = 4*offsetEntrySize + 4 // room for four offset entries, two time entries
	l := openTest(t, cfg)
	for i := range 12 {
		l.mustAppend(simple(t, 1, t0+int64(i)))
	}
	for _, s := range l.segments()[:len(l.segments())-1] {
		if n := s.offsets.count(); n > 4 {
			t.Fatalf("segment %d has %d offset entries", s.base, n)
		}
		if n := s.times.count(); n > 3 {
			t.Fatalf("segment %d has %d time entries", s.base, n)
		}
	}
	if len(l.segments()) < 4 {
		t.Fatalf("%d segments, want a roll whenever the index fills", len(l.segments()))
	}
	readAll(t, l.Log)
}

// TestRelativeOffsetOverflowRolls appends batches that claim a huge record
// count (records are never decoded on append) so that offsets would not
// fit a 32-bit relative offset in one segment.
func TestRelativeOffsetOverflowRolls(t *testing.T) {
	l := openTest(t, DefaultConfig())
	huge := func() []byte {
		b := simple(t, 1, t0)
		binary.BigEndian.PutUint32(b[offRecordCount:], 1<<30)
		binary.BigEndian.PutUint32(b[offLastDelta:], 1<<30-1)
		return resign(b)
	}
	for range 5 {
		l.mustAppend(huge())
	}
	if l.EndOffset() != 5<<30 {
		t.Fatalf("end offset %d", l.EndOffset())
	}
	segs := l.segments()
	if len(segs) != 3 {
		t.Fatalf("%d segments, want 3 (two batches of 2^30 offsets each fit)", len(segs))
	}
	for i := int64(0); i < 5; i++ {
		info, err := l.Read(nil, i<<30+12345, 1, l.EndOffset())
		if err != nil {
			t.Fatal(err)
		}
		if h := batches(t, info.Records)[0]; h.BaseOffset != i<<30 {
			t.Fatalf("batch %d at %d", i, h.BaseOffset)
		}
	}
	l.reopen(true)
	// A record span that cannot fit any segment is refused.
	b := append(huge(), huge()...)
	b = append(b, huge()...)
	_, err := l.Append(b, 0)
	wantKerr(t, err, kerr.RecordListTooLarge)
}

func TestSegmentFileNames(t *testing.T) {
	l := openTest(t, smallConfig())
	for range 10 {
		l.mustAppend(sizedBatch(t, 3, 900, t0))
	}
	for _, s := range l.segments() {
		if _, err := os.Stat(s.path(logSuffix)); err != nil {
			t.Fatal(err)
		}
		if len(offsetName(s.base)) != 20 {
			t.Fatal(offsetName(s.base))
		}
	}
	if want := l.dir + "/00000000000000000003.log"; segmentLogs(t, l.dir)[1] != want {
		t.Fatalf("second segment %s, want %s", segmentLogs(t, l.dir)[1], want)
	}
}

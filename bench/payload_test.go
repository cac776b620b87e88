package bench

import (
	"testing"
)

func TestStampRoundTrip(t *testing.T) {
	b := make([]byte, 64)
	want := stamp{run: 0xdeadbeefcafef00d, producer: 3, seq: 1<<40 + 5, sentNano: 1_700_000_000_123_456_789}
	putStamp(b, want)
	got, ok := readStamp(b)
	if !ok || got != want {
		t.Fatalf("readStamp = %+v, %v; want %+v, true", got, ok, want)
	}
	if _, ok := readStamp(b[:stampLen-1]); ok {
		t.Error("readStamp accepted a short value")
	}
	b[0] = 'X'
	if _, ok := readStamp(b); ok {
		t.Error("readStamp accepted a value without the magic")
	}
}

func TestTemplates(t *testing.T) {
	a := makeTemplates(4, 100, 1)
	b := makeTemplates(4, 100, 1)
	for i := range a {
		if len(a[i]) != 100 || string(a[i]) != string(b[i]) {
			t.Fatalf("templates are not deterministic or sized: %q vs %q", a[i], b[i])
		}
		for _, c := range a[i] {
			if c < 'A' || c > 'Z' {
				t.Fatalf("template byte %q is not an uppercase letter", c)
			}
		}
	}
	if string(a[0]) == string(a[1]) {
		t.Error("templates are identical")
	}
}

func TestBitset(t *testing.T) {
	var b bitset
	for _, i := range []uint64{0, 63, 64, 1000} {
		if b.set(i) {
			t.Errorf("set(%d) reported a duplicate on first insert", i)
		}
	}
	if !b.set(63) {
		t.Error("set(63) again did not report a duplicate")
	}
	if !b.has(1000) || b.has(999) || b.has(1<<20) {
		t.Error("has is wrong")
	}
	if got := b.count(64); got != 2 {
		t.Errorf("count(64) = %d, want 2 (0 and 63)", got)
	}
	if got := b.count(1001); got != 4 {
		t.Errorf("count(1001) = %d, want 4", got)
	}
	if got := b.count(1 << 20); got != 4 {
		t.Errorf("count beyond the set's length = %d, want 4", got)
	}
	var o bitset
	o.set(64)
	o.set(5000)
	if common := b.union(o); common != 1 {
		t.Errorf("union common = %d, want 1", common)
	}
	if !b.has(5000) || b.count(6000) != 5 {
		t.Errorf("after union: has(5000) %v count %d", b.has(5000), b.count(6000))
	}
}

func seqs(vals ...uint64) bitset {
	var b bitset
	for _, v := range vals {
		b.set(v)
	}
	return b
}

func TestDeliveryCheck(t *testing.T) {
	tests := []struct {
		name                                   string
		sent                                   []uint64
		failed                                 [][]uint64
		seen                                   [][]bitset // consumer -> producer -> seqs
		dupsWithin                             int64
		expected, received, missing, duplicate int64
	}{
		{
			name:     "all delivered across two consumers",
			sent:     []uint64{3, 2},
			failed:   [][]uint64{nil, nil},
			seen:     [][]bitset{{seqs(0, 2), seqs(1)}, {seqs(1), seqs(0)}},
			expected: 5, received: 5,
		},
		{
			name:     "one lost",
			sent:     []uint64{4},
			failed:   [][]uint64{nil},
			seen:     [][]bitset{{seqs(0, 1, 3)}},
			expected: 4, received: 3, missing: 1,
		},
		{
			name:     "failed records are not expected, even when they arrived",
			sent:     []uint64{4},
			failed:   [][]uint64{{1, 2}},
			seen:     [][]bitset{{seqs(0, 2, 3)}},
			expected: 2, received: 2,
		},
		{
			name:       "duplicates within and across consumers",
			sent:       []uint64{3},
			failed:     [][]uint64{nil},
			seen:       [][]bitset{{seqs(0, 1)}, {seqs(1, 2)}},
			dupsWithin: 2,
			expected:   3, received: 3, duplicate: 3,
		},
		{
			name:     "consumer saw nothing from a producer",
			sent:     []uint64{2, 2},
			failed:   [][]uint64{nil, nil},
			seen:     [][]bitset{{seqs(0, 1)}},
			expected: 4, received: 2, missing: 2,
		},
		{
			name:     "sequence numbers beyond what was sent are ignored",
			sent:     []uint64{2},
			failed:   [][]uint64{nil},
			seen:     [][]bitset{{seqs(0, 1, 7)}},
			expected: 2, received: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, r, m, d := deliveryCheck(tc.sent, tc.failed, tc.seen, tc.dupsWithin)
			if e != tc.expected || r != tc.received || m != tc.missing || d != tc.duplicate {
				t.Errorf("expected/received/missing/duplicates = %d/%d/%d/%d, want %d/%d/%d/%d",
					e, r, m, d, tc.expected, tc.received, tc.missing, tc.duplicate)
			}
		})
	}
}

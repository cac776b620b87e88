package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// The memory limit setting of vigil observer and vigil bench slo: sizes,
// off, and an explicit size applied to the runtime.
func TestSLOMemoryLimitSetting(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"5GiB", 5 << 30, true}, {"512MiB", 512 << 20, true}, {"1.5GiB", 3 << 29, true}, {"2GB", 2e9, true},
		{"4096", 4096, true}, {"3 kib", 3 << 10, true}, {"5XB", 0, false}, {"GiB", 0, false}, {"-1GiB", 0, false},
	} {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
	if n, _, err := applyMemoryLimit("3GiB"); err != nil || n != 3<<30 || debug.SetMemoryLimit(-1) != 3<<30 {
		t.Errorf("3GiB: %d, %v; runtime limit %d", n, err, debug.SetMemoryLimit(-1))
	}
	if n, _, err := applyMemoryLimit("off"); err != nil || n != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("off: %d, %v; runtime limit %d", n, err, debug.SetMemoryLimit(-1))
	}
	if _, _, err := applyMemoryLimit("lots"); err == nil {
		t.Error("a limit of lots was accepted")
	}
}

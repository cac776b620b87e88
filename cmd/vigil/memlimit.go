package main

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// applyMemoryLimit sets the Go runtime's soft memory limit of a process
// that runs the SLO engine (`vigil observer`, `vigil bench slo`) from the
// setting (docs/slo.md, "Memory"):
//
//   - "" or "auto": GOMEMLIMIT if it is set (the runtime applied it);
//     otherwise 90% of the memory limit of the process's cgroup, if it has
//     one (as Prometheus 3 does); otherwise none.
//   - "off" or "0": none.
//   - a size: 5GiB, 5120MiB, 512MB, 5368709120 (bytes).
//
// It returns the limit (0: none) and where it comes from.
func applyMemoryLimit(setting string) (int64, string, error) {
	switch strings.ToLower(strings.TrimSpace(setting)) {
	case "", "auto":
		if v := os.Getenv("GOMEMLIMIT"); v != "" {
			return currentMemoryLimit(), "GOMEMLIMIT=" + v, nil
		}
		if cg := cgroupMemoryLimit(); cg > 0 {
			limit := int64(float64(cg) * 0.9)
			debug.SetMemoryLimit(limit)
			return limit, "90% of the cgroup memory limit", nil
		}
		debug.SetMemoryLimit(math.MaxInt64)
		return 0, "none (no GOMEMLIMIT, no cgroup memory limit)", nil
	case "off", "0":
		debug.SetMemoryLimit(math.MaxInt64)
		return 0, "none (off)", nil
	}
	n, err := parseSize(setting)
	if err != nil {
		return 0, "", fmt.Errorf("memory limit %q: %w", setting, err)
	}
	debug.SetMemoryLimit(n)
	return n, "configured", nil
}

// currentMemoryLimit returns the runtime's memory limit, 0 for none.
func currentMemoryLimit() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l
	}
	return 0
}

// cgroupMemoryLimit returns the memory limit of the process's cgroup
// (v2 memory.max, or v1 memory.limit_in_bytes) in bytes, 0 if none.
func cgroupMemoryLimit() int64 {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		// "max" (v2) or a number near MaxInt64 (v1): no limit.
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0
		}
		return n
	}
	return 0
}

// parseSize parses a size in bytes with an optional unit: B, KB, MB, GB
// (powers of 1000) or KiB, MiB, GiB (powers of 1024).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("want a size such as 5GiB or 512MiB")
	}
	mult := map[string]float64{"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}[strings.ToLower(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit %q: want B, KB, MB, GB, KiB, MiB or GiB", unit)
	}
	return int64(v * mult), nil
}

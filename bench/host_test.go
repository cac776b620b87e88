package bench

import (
	"math"
	"os"
	"runtime"
	"testing"
)

// checkHost checks a run's host stats: present on Linux, shares that add
// up to one (or are all zero when no tick passed).
func checkHost(t *testing.T, res *Result) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	h := res.Host
	if h == nil {
		t.Fatalf("no host stats on Linux (warnings %v)", res.Warnings)
	}
	sum := h.Busy + h.IOWait + h.Steal + h.Idle
	if h.CPUs < 1 || h.DirtyMBStart < 0 || h.DirtyMBEnd < 0 || h.WrittenBackMB < 0 || (sum != 0 && math.Abs(sum-1) > 1e-9) {
		t.Fatalf("host stats: %+v", h)
	}
}

const statFixture = `cpu  1000 10 500 8000 200 5 15 300 0 0
cpu0 500 5 250 4000 100 2 8 150 0 0
cpu1 500 5 250 4000 100 3 7 150 0 0
intr 123456
ctxt 789
`

func TestParseStatCPU(t *testing.T) {
	ct, cpus, err := parseStatCPU(statFixture)
	if err != nil {
		t.Fatal(err)
	}
	want := cpuTimes{busy: 1000 + 10 + 500 + 5 + 15, iowait: 200, steal: 300, idle: 8000}
	if ct != want || cpus != 2 {
		t.Fatalf("parseStatCPU = %+v, %d CPUs; want %+v, 2", ct, cpus, want)
	}
	for _, bad := range []string{"", "intr 1\n", "cpu 1 2 3\n", "cpu 1 2 3 x 5 6 7 8\n"} {
		if _, _, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
	}
}

func TestProcField(t *testing.T) {
	meminfo := "MemTotal:       24000000 kB\nDirtyish:  7 kB\nDirty:             2048 kB\nWriteback:  0 kB\n"
	if v, err := procField(meminfo, "Dirty:"); err != nil || v != 2048 {
		t.Fatalf("Dirty: %d, %v", v, err)
	}
	vmstat := "nr_written_extra 9\nnr_written 123456\nnr_dirtied 5\n"
	if v, err := procField(vmstat, "nr_written"); err != nil || v != 123456 {
		t.Fatalf("nr_written: %d, %v", v, err)
	}
	if _, err := procField(vmstat, "nr_missing"); err == nil {
		t.Fatal("a missing field gave no error")
	}
}

func TestHostStatsOf(t *testing.T) {
	a := hostSample{cpus: 2, cpu: cpuTimes{busy: 100, iowait: 10, steal: 0, idle: 890}, dirtyKB: 1000, writtenPg: 100}
	b := hostSample{cpus: 2, cpu: cpuTimes{busy: 700, iowait: 110, steal: 100, idle: 1090}, dirtyKB: 3000000, writtenPg: 100 + 25600}
	h := hostStatsOf(a, b)
	if h.Busy != 0.6 || h.IOWait != 0.1 || h.Steal != 0.1 || h.Idle != 0.2 || h.CPUs != 2 {
		t.Fatalf("shares: %+v", h)
	}
	if h.DirtyMBStart != 1.024 || h.DirtyMBEnd != 3072 {
		t.Fatalf("dirty: %+v", h)
	}
	if want := 25600 * float64(os.Getpagesize()) / 1e6; h.WrittenBackMB != want {
		t.Fatalf("written back %v MB, want %v", h.WrittenBackMB, want)
	}
}

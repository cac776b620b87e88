package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// HostStats describe the machine during the measured phase, from Linux's
// /proc (omitted elsewhere): how its CPUs were spent and what the kernel's
// page cache write-back did. They say whether a run measured the broker or
// the machine: time stolen by the hypervisor, or gigabytes of write-back
// running under a throughput test, move results more than most code
// changes (docs/benchmarks.md, "Surprises").
type HostStats struct {
	// CPUs is the number of CPUs the kernel reports.
	CPUs int `json:"cpus"`
	// Busy, IOWait, Steal and Idle are shares (0-1) of the CPU time of all
	// CPUs over the phase: busy is user, nice, system, irq and softirq;
	// steal is time the hypervisor took.
	Busy   float64 `json:"busy"`
	IOWait float64 `json:"iowait"`
	Steal  float64 `json:"steal"`
	Idle   float64 `json:"idle"`
	// DirtyMBStart and DirtyMBEnd are the dirty page cache (MB) at the
	// start and the end; WrittenBackMB is what the kernel wrote out during
	// the phase.
	DirtyMBStart  float64 `json:"dirty_mb_start"`
	DirtyMBEnd    float64 `json:"dirty_mb_end"`
	WrittenBackMB float64 `json:"written_back_mb"`
}

// hostSample is one reading of the host's counters.
type hostSample struct {
	cpus      int
	cpu       cpuTimes
	dirtyKB   uint64
	writtenPg uint64 // pages written back since boot
}

// cpuTimes are the aggregate CPU times of /proc/stat, in clock ticks.
type cpuTimes struct{ busy, iowait, steal, idle uint64 }

func sampleHost(context.Context) (hostSample, error) {
	var s hostSample
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	if s.cpu, s.cpus, err = parseStatCPU(string(b)); err != nil {
		return s, fmt.Errorf("/proc/stat: %w", err)
	}
	if b, err = os.ReadFile("/proc/meminfo"); err != nil {
		return s, err
	}
	if s.dirtyKB, err = procField(string(b), "Dirty:"); err != nil {
		return s, fmt.Errorf("/proc/meminfo: %w", err)
	}
	if b, err = os.ReadFile("/proc/vmstat"); err != nil {
		return s, err
	}
	if s.writtenPg, err = procField(string(b), "nr_written"); err != nil {
		return s, fmt.Errorf("/proc/vmstat: %w", err)
	}
	return s, nil
}

// parseStatCPU reads the aggregate "cpu" line of /proc/stat (user nice
// system idle iowait irq softirq steal ...) and counts the cpuN lines.
func parseStatCPU(stat string) (cpuTimes, int, error) {
	var t cpuTimes
	found, cpus := false, 0
	for _, line := range strings.Split(stat, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			cpus++
			continue
		}
		if len(f) < 9 {
			return t, 0, fmt.Errorf("the cpu line has %d fields, want at least 9", len(f))
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return t, 0, fmt.Errorf("cpu line field %d: %w", i+1, err)
			}
			v[i] = n
		}
		const user, nice, system, idle, iowait, irq, softirq, steal = 0, 1, 2, 3, 4, 5, 6, 7
		t = cpuTimes{busy: v[user] + v[nice] + v[system] + v[irq] + v[softirq], iowait: v[iowait], steal: v[steal], idle: v[idle]}
		found = true
	}
	if !found {
		return t, 0, fmt.Errorf("no cpu line")
	}
	return t, cpus, nil
}

// procField returns the first number after key at the start of a line
// ("Dirty:   123 kB" in /proc/meminfo, "nr_written 456" in /proc/vmstat).
func procField(text, key string) (uint64, error) {
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, key)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		return strconv.ParseUint(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no %s line", strings.TrimSuffix(key, ":"))
}

// hostStatsOf is the difference of two samples.
func hostStatsOf(a, b hostSample) *HostStats {
	d := cpuTimes{busy: b.cpu.busy - a.cpu.busy, iowait: b.cpu.iowait - a.cpu.iowait, steal: b.cpu.steal - a.cpu.steal, idle: b.cpu.idle - a.cpu.idle}
	h := &HostStats{
		CPUs:          b.cpus,
		DirtyMBStart:  float64(a.dirtyKB) * 1024 / 1e6,
		DirtyMBEnd:    float64(b.dirtyKB) * 1024 / 1e6,
		WrittenBackMB: float64(b.writtenPg-a.writtenPg) * float64(os.Getpagesize()) / 1e6,
	}
	if total := float64(d.busy + d.iowait + d.steal + d.idle); total > 0 {
		h.Busy, h.IOWait, h.Steal, h.Idle = float64(d.busy)/total, float64(d.iowait)/total, float64(d.steal)/total, float64(d.idle)/total
	}
	return h
}

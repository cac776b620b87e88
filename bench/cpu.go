package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuSampler reads a process's cumulative CPU time in seconds.
type cpuSampler interface {
	sample(ctx context.Context) (float64, error)
	source() string
}

// newCPUSampler returns the sampler Config asks for, or nil for none.
func newCPUSampler(c Config) cpuSampler {
	switch {
	case c.BrokerPID > 0:
		return procSampler{pid: c.BrokerPID, clkTck: clockTicks()}
	case c.BrokerMetricsURL != "":
		return promSampler{url: c.BrokerMetricsURL, client: &http.Client{Timeout: 10 * time.Second}}
	}
	return nil
}

// procSampler reads utime+stime from /proc/PID/stat.
type procSampler struct {
	pid    int
	clkTck float64
}

func (s procSampler) source() string { return fmt.Sprintf("proc:%d", s.pid) }

func (s procSampler) sample(context.Context) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return 0, fmt.Errorf("reading broker CPU time: %w (is --broker-pid a running process on this host?)", err)
	}
	ticks, err := parseProcStat(string(b))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", s.pid, err)
	}
	return float64(ticks) / s.clkTck, nil
}

// parseProcStat returns utime+stime (fields 14 and 15, in clock ticks) of a
// /proc/PID/stat line. The command name (field 2) is in parentheses and may
// itself contain spaces and parentheses, so fields are counted from the last
// ')'.
func parseProcStat(line string) (uint64, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' after the command name")
	}
	f := strings.Fields(line[i+1:]) // f[0] is field 3 (state)
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("only %d fields after the command name", len(f))
	}
	u, err := strconv.ParseUint(f[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	st, err := strconv.ParseUint(f[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return u + st, nil
}

// clockTicks returns the kernel's USER_HZ (the unit of /proc/PID/stat CPU
// times) from the AT_CLKTCK entry of this process's auxiliary vector,
// falling back to 100, its value on every mainstream Linux architecture.
func clockTicks() float64 {
	const atClkTck = 17
	b, err := os.ReadFile("/proc/self/auxv")
	if err == nil {
		for ; len(b) >= 16; b = b[16:] {
			k, v := binary.NativeEndian.Uint64(b[0:8]), binary.NativeEndian.Uint64(b[8:16])
			if k == atClkTck && v > 0 {
				return float64(v)
			}
			if k == 0 {
				break
			}
		}
	}
	return 100
}

// promSampler reads process_cpu_seconds_total from a Prometheus text
// exposition endpoint (summing the samples if there are several).
type promSampler struct {
	url    string
	client *http.Client
}

func (s promSampler) source() string { return "prometheus:" + s.url }

func (s promSampler) sample(ctx context.Context) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return 0, fmt.Errorf("--broker-metrics: %w", err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scraping broker metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scraping broker metrics from %s: HTTP %s", s.url, resp.Status)
	}
	return parsePromCPU(resp.Body)
}

// parsePromCPU sums the process_cpu_seconds_total samples of a Prometheus
// text exposition.
func parsePromCPU(r io.Reader) (float64, error) {
	const name = "process_cpu_seconds_total"
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var sum float64
	found := false
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{' && rest[0] != '\t') {
			continue
		}
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		}
		f := strings.Fields(rest) // value [timestamp]
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: bad value %q", name, f[0])
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading broker metrics: %w", err)
	}
	if !found {
		return 0, fmt.Errorf("broker metrics have no %s sample", name)
	}
	return sum, nil
}

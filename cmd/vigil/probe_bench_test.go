package main

import (
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigilhq/vigil/internal/vigiltest"
	"github.com/vigilhq/vigil/probes"
)

// wireBytes counts the bytes a client writes to and reads from brokers.
type wireBytes struct{ written, read atomic.Int64 }

func (w *wireBytes) OnBrokerWrite(_ kgo.BrokerMetadata, _ int16, n int, _, _ time.Duration, _ error) {
	w.written.Add(int64(n))
}

func (w *wireBytes) OnBrokerRead(_ kgo.BrokerMetadata, _ int16, n int, _, _ time.Duration, _ error) {
	w.read.Add(int64(n))
}

// BenchmarkProbeOverhead measures what a probe at the default interval (1s)
// costs a 3-broker cell: the brokers' CPU (separate processes, from
// /proc/PID/stat) idle and while probed, the probe's own CPU (it runs in
// the benchmark process) and the bytes its clients write and read (Kafka
// requests and responses). Each phase lasts 30s, or
// $VIGIL_PROBE_BENCH_DURATION. Run it once:
//
//	go test ./cmd/vigil -run '^$' -bench ProbeOverhead -benchtime 1x
func BenchmarkProbeOverhead(b *testing.B) {
	d := 30 * time.Second
	if s := os.Getenv("VIGIL_PROBE_BENCH_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			b.Fatalf("VIGIL_PROBE_BENCH_DURATION: %v", err)
		}
	}
	procs, addrs, _ := startProcessCluster(b, 3)
	brokerCPU := func() float64 {
		var sum float64
		for _, p := range procs {
			fs, err := procfs.NewProc(p.cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			st, err := fs.Stat()
			if err != nil {
				b.Fatal(err)
			}
			sum += st.CPUTime()
		}
		return sum
	}
	selfCPU := func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	// run probes until stop is called, once every broker has been probed
	// end to end.
	run := func(wire *wireBytes) (reg *prometheus.Registry, stop func()) {
		reg = prometheus.NewRegistry()
		p, err := probes.New(probes.Config{
			Bootstrap: addrs, Location: "bench", CellOf: probes.CellFromRack, Registerer: reg,
			Logger: vigiltest.Logger(), ClientOpts: []kgo.Opt{kgo.WithHooks(wire)},
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = p.Run(ctx) }()
		vigiltest.WaitFor(b, "every broker probed", 2*time.Minute, func() bool {
			for i := range procs {
				if vigiltest.Sum(b, reg, "vigil_probe_e2e_seconds", map[string]string{"broker": strconv.Itoa(i)}) < 3 {
					return false
				}
			}
			return true
		})
		return reg, func() { cancel(); <-done }
	}

	// A first run creates the probe topic and group, so that the idle
	// phase measures the cluster as it is while probed, minus the probes.
	_, stop := run(new(wireBytes))
	stop()

	b.ResetTimer()
	start, c0 := time.Now(), brokerCPU()
	time.Sleep(d)
	idle := (brokerCPU() - c0) / time.Since(start).Seconds()

	wire := new(wireBytes)
	reg, stop := run(wire)
	defer stop()
	records := func() float64 { return vigiltest.Sum(b, reg, "vigil_probe_e2e_seconds", nil) }
	start, c0, s0, r0 := time.Now(), brokerCPU(), selfCPU(), records()
	w0, rd0 := wire.written.Load(), wire.read.Load()
	time.Sleep(d)
	el := time.Since(start).Seconds()
	probed := (brokerCPU() - c0) / el
	self := (selfCPU() - s0) / el
	written, read := float64(wire.written.Load()-w0)/el, float64(wire.read.Load()-rd0)/el
	b.StopTimer()

	b.ReportMetric(idle*1000, "broker-idle-cpu-ms/s")
	b.ReportMetric((probed-idle)*1000, "broker-overhead-cpu-ms/s")
	b.ReportMetric(self*1000, "probe-cpu-ms/s")
	b.ReportMetric(written, "probe-written-B/s")
	b.ReportMetric(read, "probe-read-B/s")
	b.ReportMetric((records()-r0)/el, "records/s")
	b.Logf("%v per phase; 3 brokers: %.1f ms/s of CPU idle, %.1f ms/s probed (+%.1f); probe: %.1f ms/s of CPU, %.0f B/s written, %.0f B/s read, %.1f records/s end to end",
		d, idle*1000, probed*1000, (probed-idle)*1000, self*1000, written, read, (records()-r0)/el)
}

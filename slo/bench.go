package slo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/vigilhq/vigil/internal/proc"
)

// BenchConfig sizes the synthetic fleet of BenchFleet.
type BenchConfig struct {
	Clusters          int // default 1000
	BrokersPerCluster int // default 12
	CellsPerCluster   int // default 4
	// Minutes of raw metrics written, one scrape every 15 s. Default 10.
	Minutes int
	// Dir holds the TSDB; default a temporary directory, removed after.
	Dir string
	// Progress, if set, receives progress lines.
	Progress io.Writer
	// CPUProfile, if set, is a file for a CPU profile of the cycles.
	CPUProfile string
	// RecordWindows, RecordAllWindows and RecordStepRates choose the
	// recorded series as Config's RecordWindows and RecordStepRates do
	// (RecordAllWindows: every window of every SLO, the engine's default
	// before it recorded only 1h).
	RecordWindows    []time.Duration
	RecordAllWindows bool
	RecordStepRates  bool
	// NoSharing evaluates every health rule as written (Config.NoSharing).
	NoSharing bool
	// MemProfile, if set, is the prefix of heap profiles written between
	// the phases (outside the timed parts, each after a GC):
	// PREFIX.history, PREFIX.ingest, PREFIX.first and PREFIX.last (after
	// the recorded history, the ingest, the first and the last cycle).
	MemProfile string
}

// BenchResult is what BenchFleet measured.
type BenchResult struct {
	Clusters, Brokers, Cells int
	ActiveSeries             int
	Samples                  int64
	IngestSeconds            float64
	IngestSamplesPerSecond   float64
	SLOs, HealthRules        int
	Groups                   int // SLO groups over all SLOs
	// FirstCycle is the cycle that loads the recorded state and catches up
	// from the recorded history; Cycles are the steady-state cycles (one
	// recording step each), the last of them with every window's lookup
	// hitting recorded samples (history written 28 days back).
	FirstCycle  time.Duration
	Cycles      []time.Duration
	MedianCycle time.Duration
	MaxCycle    time.Duration
	// FirstCycleCPU and CyclesCPU are the process's CPU time (user and
	// system, all threads: the engine, the GC, the TSDB) in each cycle;
	// on a shared machine steadier than wall time. On n idle cores a
	// cycle takes at least its CPU time / n.
	FirstCycleCPU  time.Duration
	CyclesCPU      []time.Duration
	MedianCycleCPU time.Duration
	HeapInuse      uint64 // bytes, after the last cycle
	PeakRSS        uint64 // bytes, the process's high-water mark (VmHWM)
	MemoryLimit    int64  // bytes, the Go runtime's soft memory limit (0: none)
	// HeadSeries is the TSDB head's series after the last cycle: the
	// fleet's and the engine's recorded series.
	HeadSeries    uint64
	GOMAXPROCS    int
	Signals       int
	SignalsByName map[string]int
}

// BenchSpec returns the 20 SLOs of the benchmark: the defaults and
// variants over the same metrics (other thresholds, per-broker groups,
// per-API request errors), plus the default health rules and roll-up.
func BenchSpec() *Spec {
	s := Defaults()
	add := func(name string, sli SLI, obj float64, by []string) {
		s.SLOs = append(s.SLOs, SLO{Name: name, SLI: sli, Objective: obj, Window: Duration(28 * 24 * time.Hour), GroupBy: by, Breakdown: breakdownFor(by)})
	}
	lat := func(m string, th float64) SLI { return SLI{Latency: &LatencySLI{Metric: m, Threshold: th}} }
	cell := []string{"cluster", "cell"}
	brk := []string{"cluster", "cell", "broker"}
	add("probe-produce-availability-broker", SLI{Ratio: &RatioSLI{Bad: `rate(vigil_probe_failures_total{op="produce"}[{{.window}}])`, Total: `rate(vigil_probe_attempts_total{op="produce"}[{{.window}}])`}}, 99.9, brk)
	for _, th := range []float64{0.1, 0.25, 1} {
		add("probe-e2e-latency-"+strconv.FormatFloat(th, 'g', -1, 64), lat("vigil_probe_e2e_seconds", th), 99, cell)
	}
	for _, th := range []float64{0.05, 0.1, 0.25} {
		add("probe-produce-latency-"+strconv.FormatFloat(th, 'g', -1, 64), lat("vigil_probe_produce_seconds", th), 99, cell)
	}
	add("probe-produce-latency-broker", lat("vigil_probe_produce_seconds", 0.1), 99, brk)
	for _, api := range []string{"produce", "fetch", "metadata"} {
		add("request-errors-"+api, SLI{Ratio: &RatioSLI{Bad: `rate(vigil_request_errors_total{api="` + api + `"}[{{.window}}])`, Total: `rate(vigil_request_duration_seconds_count{api="` + api + `"}[{{.window}}])`}}, 99.9, cell)
	}
	add("request-errors-cluster", SLI{Ratio: &RatioSLI{Bad: `rate(vigil_request_errors_total[{{.window}}])`, Total: `rate(vigil_request_duration_seconds_count[{{.window}}])`}}, 99.9, []string{"cluster"})
	add("storage-append-latency-0.01", lat("vigil_storage_append_seconds", 0.01), 99, cell)
	add("storage-canary-latency-0.01", lat("vigil_storage_canary_seconds", 0.01), 99, cell)
	add("storage-append-latency-broker", lat("vigil_storage_append_seconds", 0.1), 99.9, brk)
	return s
}

func breakdownFor(by []string) []string {
	for _, l := range by {
		if l == "broker" {
			return nil
		}
	}
	return []string{"broker"}
}

var benchBuckets = []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20}

type benchSeries struct {
	kind   byte // 'c' counter; 'h' histogram bucket i, ...
	bucket int  // bucket index for histograms; len(buckets) = +Inf; -1 _count
	hist   int  // which histogram of the broker
	rate   float64
	labels labels.Labels
	ref    storage.SeriesRef
	v      float64
}

// benchBroker is one broker's series.
type benchBroker struct {
	base   labels.Labels // cluster, cell, broker, job
	series []*benchSeries
	slow   bool // its latencies are 20x, its probe failures 5%
}

// BenchFleet builds the synthetic fleet in an embedded TSDB, measures the
// ingest rate, then runs the engine with BenchSpec for one cycle per
// recording step over the written span and reports the cycle times and
// memory.
func BenchFleet(ctx context.Context, cfg BenchConfig) (*BenchResult, error) {
	if cfg.Clusters <= 0 {
		cfg.Clusters = 1000
	}
	if cfg.BrokersPerCluster <= 0 {
		cfg.BrokersPerCluster = 12
	}
	if cfg.CellsPerCluster <= 0 {
		cfg.CellsPerCluster = 4
	}
	if cfg.Minutes <= 0 {
		cfg.Minutes = 10
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "vigil-slo-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	spec := BenchSpec()

	// The fleet: per broker one probe location, the probe produce and
	// e2e histograms, probe attempts and failures, requests and errors
	// for 5 APIs, and the storage append and canary histograms: 84
	// series.
	var brokers []*benchBroker
	hists := []string{"vigil_probe_e2e_seconds", "vigil_probe_produce_seconds", "vigil_storage_append_seconds", "vigil_storage_canary_seconds"}
	apis := []string{"produce", "fetch", "metadata", "offset_commit", "list_offsets"}
	perCell := max(1, cfg.BrokersPerCluster/cfg.CellsPerCluster)
	for c := 0; c < cfg.Clusters; c++ {
		cluster := fmt.Sprintf("c%04d", c)
		for b := 0; b < cfg.BrokersPerCluster; b++ {
			cell := string(rune('a' + min(b/perCell, cfg.CellsPerCluster-1)))
			base := labels.FromStrings("cluster", cluster, "cell", cell, "broker", strconv.Itoa(b), "job", "vigil")
			br := &benchBroker{base: base, slow: (c*cfg.BrokersPerCluster+b)%97 == 0}
			with := func(name string, kv ...string) labels.Labels {
				lb := labels.NewBuilder(base).Set(labels.MetricName, name)
				for i := 0; i+1 < len(kv); i += 2 {
					lb.Set(kv[i], kv[i+1])
				}
				return lb.Labels()
			}
			for hi, h := range hists {
				extra := []string{}
				if strings.HasPrefix(h, "vigil_probe_") {
					extra = []string{"location", "l1", "partition", strconv.Itoa(b)}
				}
				for i := 0; i <= len(benchBuckets); i++ {
					le := "+Inf"
					if i < len(benchBuckets) {
						le = strconv.FormatFloat(benchBuckets[i], 'g', -1, 64)
					}
					br.series = append(br.series, &benchSeries{kind: 'h', bucket: i, hist: hi, labels: with(h+"_bucket", append(extra, "le", le)...)})
				}
				br.series = append(br.series, &benchSeries{kind: 'h', bucket: -1, hist: hi, labels: with(h+"_count", extra...)})
			}
			fail := 0.0
			if br.slow {
				fail = 0.05
			}
			br.series = append(br.series,
				&benchSeries{kind: 'c', rate: 1, labels: with("vigil_probe_attempts_total", "op", "produce", "location", "l1")},
				&benchSeries{kind: 'c', rate: fail, labels: with("vigil_probe_failures_total", "op", "produce", "class", "timeout", "location", "l1")})
			for i, api := range apis {
				br.series = append(br.series,
					&benchSeries{kind: 'c', rate: float64(100 * (i + 1)), labels: with("vigil_request_duration_seconds_count", "api", api)},
					&benchSeries{kind: 'c', rate: float64(i) * 0.01, labels: with("vigil_request_errors_total", "api", api, "error", "not_leader_or_follower")})
			}
			brokers = append(brokers, br)
		}
	}
	nSeries := 0
	for _, b := range brokers {
		nSeries += len(b.series)
	}
	res := &BenchResult{Clusters: cfg.Clusters, Brokers: len(brokers), Cells: cfg.Clusters * cfg.CellsPerCluster, ActiveSeries: nSeries,
		SLOs: len(spec.SLOs), HealthRules: len(spec.HealthRules), GOMAXPROCS: runtime.GOMAXPROCS(0)}

	// Time: the run ends at end; raw metrics cover the last cfg.Minutes.
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-time.Duration(cfg.Minutes) * time.Minute)

	// Recorded history: the engine's cumulative counts at every step of
	// the 10 minutes before each window's start as seen from the last
	// cycle, and before the first cycle, so every lookup reads a real
	// sample (in a full deployment these are a month of dense samples).
	// It goes into a persisted block, where a month-old engine has it,
	// before the TSDB is opened.
	if err := writeBenchHistory(ctx, dir, spec, brokers, start, end, progress); err != nil {
		return nil, err
	}
	if err := writeHeapProfile(cfg.MemProfile, "history"); err != nil {
		return nil, err
	}
	db, err := OpenTSDB(dir, TSDBOptions{})
	if err != nil {
		return nil, err
	}
	defer db.Close()

	fmt.Fprintf(progress, "fleet: %d clusters, %d brokers, %d series; writing %d minutes of scrapes\n", cfg.Clusters, len(brokers), nSeries, cfg.Minutes)
	scrapes := cfg.Minutes*4 + 1
	t0 := time.Now()
	workers := runtime.GOMAXPROCS(0)
	for s := 0; s < scrapes; s++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ts := start.Add(time.Duration(s) * 15 * time.Second).UnixMilli()
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				app := db.Appender(ctx)
				for i := w; i < len(brokers); i += workers {
					if err := brokers[i].scrape(app, ts, s); err != nil {
						errs[w] = err
						_ = app.Rollback()
						return
					}
				}
				errs[w] = app.Commit()
			}(w)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		res.Samples += int64(nSeries)
	}
	res.IngestSeconds = time.Since(t0).Seconds()
	res.IngestSamplesPerSecond = float64(res.Samples) / res.IngestSeconds
	fmt.Fprintf(progress, "ingest: %d samples in %.1fs (%.0f samples/s); %s\n", res.Samples, res.IngestSeconds, res.IngestSamplesPerSecond, memLine())
	if err := writeHeapProfile(cfg.MemProfile, "ingest"); err != nil {
		return nil, err
	}

	clock := start
	record := cfg.RecordWindows
	if cfg.RecordAllWindows {
		for i := range spec.SLOs {
			c, err := compile(&spec.SLOs[i], time.Minute, DefaultWindows)
			if err != nil {
				return nil, err
			}
			record = append(record, c.windows...)
		}
	}
	eng, err := New(Config{Spec: spec, Raw: &LocalQuerier{Engine: NewPromQLEngine(nil), Store: db}, Store: db, Now: func() time.Time { return clock },
		RollupEvery: time.Minute, RecordWindows: record, RecordStepRates: cfg.RecordStepRates, NoSharing: cfg.NoSharing})
	if err != nil {
		return nil, err
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	first := true
	for clock = start.Add(time.Minute + 5*time.Second); !clock.After(end.Add(5 * time.Second)); clock = clock.Add(time.Minute) {
		c0, cpu0 := time.Now(), proc.CPU()
		if err := eng.Cycle(ctx); err != nil {
			return nil, fmt.Errorf("cycle at %s: %w", clock.Format(time.RFC3339), err)
		}
		d, cpu := time.Since(c0), proc.CPU()-cpu0
		fmt.Fprintf(progress, "cycle at %s: %v (CPU %v), %d signals; %s\n", clock.UTC().Format("15:04:05"), d.Round(time.Millisecond),
			cpu.Round(time.Millisecond), len(eng.Signals()), memLine())
		if first {
			res.FirstCycle, res.FirstCycleCPU = d, cpu
			first = false
			if err := writeHeapProfile(cfg.MemProfile, "first"); err != nil {
				return nil, err
			}
		} else {
			res.Cycles = append(res.Cycles, d)
			res.CyclesCPU = append(res.CyclesCPU, cpu)
		}
	}
	if err := writeHeapProfile(cfg.MemProfile, "last"); err != nil {
		return nil, err
	}
	if len(res.Cycles) > 0 {
		sorted := slices.Sorted(slices.Values(res.Cycles))
		res.MedianCycle, res.MaxCycle = sorted[len(sorted)/2], sorted[len(sorted)-1]
		res.MedianCycleCPU = slices.Sorted(slices.Values(res.CyclesCPU))[len(sorted)/2]
	}
	for _, st := range eng.Statuses() {
		res.Groups += len(st.Groups)
	}
	res.SignalsByName = map[string]int{}
	for _, s := range eng.Signals() {
		res.SignalsByName[s.Name]++
	}
	res.Signals = len(eng.Signals())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapInuse = ms.HeapInuse
	res.HeadSeries = db.Head().NumSeries()
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		res.MemoryLimit = l
	}
	res.PeakRSS = peakRSS()
	return res, nil
}

// scrape appends one scrape of the broker: counters grow by rate*15s,
// each histogram gets 100 observations per scrape, spread over buckets
// around 5 ms (20x slower on a slow broker).
func (b *benchBroker) scrape(app storage.Appender, ts int64, n int) error {
	if n > 0 {
		var obs [4][]float64
		for h := range obs {
			obs[h] = benchObservations(b.slow, h)
		}
		for _, s := range b.series {
			switch {
			case s.kind == 'c':
				s.v += s.rate * 15
			case s.bucket >= 0:
				s.v += obs[s.hist][s.bucket]
			default:
				s.v += 100
			}
		}
	}
	for _, s := range b.series {
		ref, err := app.Append(s.ref, s.labels, ts, s.v)
		if err != nil {
			return err
		}
		s.ref = ref
	}
	return nil
}

// benchObservations returns the cumulative count per bucket of 100
// observations: 60 at 2.5 ms, 30 at 10 ms, 9 at 50 ms, 1 at 250 ms, all
// 20x slower on a slow broker.
func benchObservations(slow bool, _ int) []float64 {
	vals := []struct {
		v float64
		n float64
	}{{0.0025, 60}, {0.01, 30}, {0.05, 9}, {0.25, 1}}
	out := make([]float64, len(benchBuckets)+1)
	for i := range out {
		le := 1e300
		if i < len(benchBuckets) {
			le = benchBuckets[i]
		}
		for _, x := range vals {
			v := x.v
			if slow {
				v *= 20
			}
			if v <= le {
				out[i] += x.n
			}
		}
	}
	return out
}

// writeBenchHistory writes, into a block in dir, recorded cumulative
// counts for every group of the fleet, at each step of the 10 minutes
// before start and before end-W for every window W ≥ 30m, as if the
// engine had run for 28 days. The groups are those the SLIs' queries
// return: every broker has every metric of the fleet, so they are the
// brokers' labels cut to each SLO's group_by.
func writeBenchHistory(ctx context.Context, dir string, spec *Spec, brokers []*benchBroker, start, end time.Time, progress io.Writer) error {
	t0 := time.Now()
	const step = time.Minute
	const span = 64 * 24 * time.Hour // the block's range: every sample of the month in one head
	w, err := tsdb.NewBlockWriter(slog.New(slog.DiscardHandler), dir, span.Milliseconds())
	if err != nil {
		return err
	}
	defer w.Close()
	n := 0
	for i := range spec.SLOs {
		c, err := compile(&spec.SLOs[i], step, DefaultWindows)
		if err != nil {
			return err
		}
		// Only steps before start: the engine records from start on, and
		// a block reaching start would put the first scrape behind the
		// head's minimum time (with --minutes 30 or more, where the 30m
		// window's steps fall inside the scraped span).
		seenAt := map[time.Time]bool{}
		var points []time.Time
		add := func(p time.Time) {
			if p.Before(start) && !seenAt[p] {
				seenAt[p] = true
				points = append(points, p)
			}
		}
		for _, w := range c.windows {
			if w < 30*time.Minute {
				continue
			}
			for k := 10; k >= 0; k-- {
				add(end.Add(-w - time.Duration(k)*step))
			}
		}
		for k := 10; k >= 1; k-- {
			add(start.Add(-time.Duration(k) * step))
		}
		sort.Slice(points, func(i, j int) bool { return points[i].Before(points[j]) })
		seen := map[string]bool{}
		app := w.Appender(ctx)
		for _, b := range brokers {
			gl := groupLabels(b.base, c.slo.GroupBy)
			if seen[groupKey(gl)] {
				continue
			}
			seen[groupKey(gl)] = true
			lg := seriesLabels(metricEvents, c.slo.Name, gl, "event", "good")
			lt := seriesLabels(metricEvents, c.slo.Name, gl, "event", "total")
			var rg, rt storage.SeriesRef
			for i, p := range points {
				// A month of about 60 events per second, 0.05% bad.
				total := float64(p.Unix()-points[0].Unix()+1) * 60
				if rg, err = app.Append(rg, lg, p.UnixMilli(), total*0.9995); err != nil {
					_ = app.Rollback()
					return fmt.Errorf("history sample %d of %s: %w", i, lg, err)
				}
				if rt, err = app.Append(rt, lt, p.UnixMilli(), total); err != nil {
					_ = app.Rollback()
					return err
				}
				n += 2
			}
		}
		if err := app.Commit(); err != nil {
			return err
		}
	}
	if _, err := w.Flush(ctx); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	// The block writer's head is garbage now; give its memory back so
	// the phases measured after start from the fleet alone.
	debug.FreeOSMemory()
	fmt.Fprintf(progress, "recorded history: %d samples in a block in %.1fs; %s\n", n, time.Since(t0).Seconds(), memLine())
	return nil
}

// peakRSS reads the process's resident set high-water mark (Linux).
func peakRSS() uint64 { return procStatus("VmHWM:") }

// procStatus reads a size in kB from /proc/self/status (Linux), in bytes.
func procStatus(key string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key) {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// memLine describes the process's memory now, for progress lines.
func memLine() string {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return fmt.Sprintf("heap in use %.2f GiB, RSS %.2f GiB, peak RSS %.2f GiB", float64(ms.HeapInuse)/(1<<30),
		float64(procStatus("VmRSS:"))/(1<<30), float64(peakRSS())/(1<<30))
}

// writeHeapProfile writes a heap profile to prefix.phase after a GC, if
// prefix is set.
func writeHeapProfile(prefix, phase string) error {
	if prefix == "" {
		return nil
	}
	runtime.GC()
	f, err := os.Create(prefix + "." + phase)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteText prints the result.
func (r *BenchResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "fleet            %d clusters, %d brokers, %d cells, %d active series\n", r.Clusters, r.Brokers, r.Cells, r.ActiveSeries)
	fmt.Fprintf(w, "ingest           %d samples in %.1f s: %.0f samples/s (GOMAXPROCS %d)\n", r.Samples, r.IngestSeconds, r.IngestSamplesPerSecond, r.GOMAXPROCS)
	fmt.Fprintf(w, "spec             %d SLOs (%d groups), %d health rules, 1 latency roll-up; %d series in the TSDB head\n", r.SLOs, r.Groups, r.HealthRules, r.HeadSeries)
	fmt.Fprintf(w, "first cycle      %v (loads the recorded state, catches up)\n", r.FirstCycle.Round(time.Millisecond))
	fmt.Fprintf(w, "first cycle CPU  %v\n", r.FirstCycleCPU.Round(time.Millisecond))
	fmt.Fprintf(w, "cycles           %d: median %v, max %v; median CPU %v\n", len(r.Cycles), r.MedianCycle.Round(time.Millisecond),
		r.MaxCycle.Round(time.Millisecond), r.MedianCycleCPU.Round(time.Millisecond))
	fmt.Fprintf(w, "memory           heap in use %.2f GiB, peak RSS %.2f GiB, Go memory limit %.2f GiB (0: none)\n", float64(r.HeapInuse)/(1<<30),
		float64(r.PeakRSS)/(1<<30), float64(r.MemoryLimit)/(1<<30))
	fmt.Fprintf(w, "signals          %d %v\n", r.Signals, r.SignalsByName)
}

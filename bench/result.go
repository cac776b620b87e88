package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Result is what a run measured. Its JSON form (see the package
// documentation) is what `vigil bench --json` prints.
type Result struct {
	// Mode is "produce", "consume" or "e2e".
	Mode string `json:"mode"`
	// Settings echoes the effective configuration.
	Settings Settings `json:"config"`
	// Produce is set for produce and e2e runs.
	Produce *Stage `json:"produce,omitempty"`
	// Consume is set for consume and e2e runs.
	Consume *Stage `json:"consume,omitempty"`
	// E2E is set for e2e runs.
	E2E *E2EStats `json:"e2e,omitempty"`
	// Group is set for group runs.
	Group *GroupStats `json:"group,omitempty"`
	// BrokerCPU is set when Config.BrokerPID or Config.BrokerMetricsURL
	// was given and both samples succeeded.
	BrokerCPU *BrokerCPU `json:"broker_cpu,omitempty"`
	// Host is the machine during the measured phase (Linux only).
	Host *HostStats `json:"host,omitempty"`
	// Warnings are problems that did not stop the run (e.g. the broker
	// CPU could not be sampled at the end).
	Warnings []string `json:"warnings,omitempty"`
}

// Settings is the part of the configuration that shapes the numbers,
// echoed in the result so a result file stands on its own.
type Settings struct {
	Brokers           []string `json:"brokers"`
	Topic             string   `json:"topic"`
	Partitions        int32    `json:"partitions"`
	ReplicationFactor int16    `json:"replication_factor"`
	Producers         int      `json:"producers"`
	Consumers         int      `json:"consumers"`
	RecordSize        int      `json:"record_size"`
	Acks              string   `json:"acks"`
	Idempotent        bool     `json:"idempotent"`
	Compression       string   `json:"compression"`
	LingerMs          float64  `json:"linger_ms"`
	BatchMaxBytes     int32    `json:"batch_max_bytes"`
	TargetRate        float64  `json:"target_rate"`
	DurationSeconds   float64  `json:"duration_seconds"`
	TargetRecords     int64    `json:"target_records"`
	WarmupSeconds     float64  `json:"warmup_seconds"`
	ClientTelemetry   bool     `json:"client_telemetry"`
	GOGC              int      `json:"gogc,omitempty"`
}

// settingsOf echoes c for a run in mode over a topic with the given number
// of partitions. Producers and Consumers are the clients actually used: 0
// for a side the mode does not run, and at most one consumer per partition.
func settingsOf(c Config, mode string, partitions int32) Settings {
	producers, consumers := c.Producers, min(c.Consumers, int(partitions))
	switch mode {
	case modeProduce:
		consumers = 0
	case modeConsume:
		if c.ProduceFirst == 0 {
			producers = 0
		}
	case modeGroup:
		producers, consumers = 0, c.Consumers
	}
	return Settings{
		Brokers:           c.Brokers,
		Topic:             c.Topic,
		Partitions:        partitions,
		ReplicationFactor: c.ReplicationFactor,
		Producers:         producers,
		Consumers:         consumers,
		RecordSize:        c.RecordSize,
		Acks:              c.Acks,
		Idempotent:        c.Acks == "all",
		Compression:       c.Compression,
		LingerMs:          ms(c.Linger),
		BatchMaxBytes:     c.BatchMaxBytes,
		TargetRate:        c.Rate,
		DurationSeconds:   c.Duration.Seconds(),
		TargetRecords:     c.Records,
		WarmupSeconds:     c.Warmup.Seconds(),
		ClientTelemetry:   c.ClientTelemetry,
		GOGC:              c.GOGC,
	}
}

// Stage is the throughput of one side (producing or consuming) during the
// measured phase.
type Stage struct {
	// Records and Bytes count measured records and their payload bytes
	// (key + value; no headers or protocol overhead). For Produce only
	// acknowledged records count.
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
	// Elapsed is the measured wall time: from the end of the warmup to
	// the last acknowledgement (produce) or the last record read
	// (consume).
	Elapsed        time.Duration `json:"-"`
	ElapsedSeconds float64       `json:"elapsed_seconds"`
	RecordsPerSec  float64       `json:"records_per_sec"`
	// MBPerSec is Bytes/Elapsed in megabytes (1 MB = 10^6 bytes).
	MBPerSec float64 `json:"mb_per_sec"`
	// Errors counts records whose produce failed, or fetch errors.
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// Latency is the produce latency (set for Produce only): from the
	// Produce call to the promise callback, for acknowledged records.
	Latency *Latency `json:"latency_ms,omitempty"`
}

func (s *Stage) finish(elapsed time.Duration) {
	s.Elapsed = elapsed
	s.ElapsedSeconds = elapsed.Seconds()
	if elapsed > 0 {
		s.RecordsPerSec = float64(s.Records) / elapsed.Seconds()
		s.MBPerSec = float64(s.Bytes) / 1e6 / elapsed.Seconds()
	}
}

// E2EStats is what the e2e consumers saw.
type E2EStats struct {
	// Latency is the end-to-end latency: from the producer's Produce
	// call (the time stamped in the value) to the consumer receiving the
	// record, for records sent after the warmup.
	Latency *Latency `json:"latency_ms"`
	// Expected is the number of records the producers sent and did not
	// see fail (warmup included); Received is how many distinct ones of
	// them the consumers read.
	Expected int64 `json:"expected"`
	Received int64 `json:"received"`
	// Missing = Expected - Received: acknowledged records never read.
	Missing int64 `json:"missing"`
	// Duplicates counts records read more than once.
	Duplicates int64 `json:"duplicates"`
	// OffsetGaps counts holes in the offsets read from a partition
	// (offsets skipped between consecutive records). Without
	// transactions or compaction a healthy broker shows 0.
	OffsetGaps int64 `json:"offset_gaps"`
	// Foreign counts records that were not written by this run (another
	// writer on the same topic); they are otherwise ignored.
	Foreign int64 `json:"foreign"`
	// Drained is false when DrainTimeout expired before the consumers
	// reached every partition's final acknowledged offset.
	Drained bool `json:"drained"`
}

// BrokerCPU is the broker's CPU time over the measured phase.
type BrokerCPU struct {
	// Source is "proc:PID" or "prometheus:URL".
	Source string `json:"source"`
	// CPUSeconds is user+system CPU time the broker used in the window.
	CPUSeconds float64 `json:"cpu_seconds"`
	// BytesMoved is produced plus consumed payload bytes in the window.
	BytesMoved int64 `json:"bytes_moved"`
	// CPUSecondsPerGB is CPUSeconds / (BytesMoved / 10^9).
	CPUSecondsPerGB float64 `json:"cpu_seconds_per_gb"`
}

// Latency summarises a latency distribution. In JSON every value is in
// milliseconds (float) except Count.
type Latency struct {
	Count                               uint64
	Min, Mean, P50, P90, P99, P999, Max time.Duration
}

func latencyOf(h *histogram) *Latency {
	return &Latency{
		Count: h.Count(),
		Min:   time.Duration(h.Min()),
		Mean:  time.Duration(h.Mean()),
		P50:   time.Duration(h.Quantile(0.50)),
		P90:   time.Duration(h.Quantile(0.90)),
		P99:   time.Duration(h.Quantile(0.99)),
		P999:  time.Duration(h.Quantile(0.999)),
		Max:   time.Duration(h.Max()),
	}
}

type latencyJSON struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

// MarshalJSON encodes the durations as float milliseconds.
func (l Latency) MarshalJSON() ([]byte, error) {
	return json.Marshal(latencyJSON{l.Count, ms(l.Min), ms(l.Mean), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max)})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (l *Latency) UnmarshalJSON(b []byte) error {
	var j latencyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	d := func(v float64) time.Duration { return time.Duration(math.Round(v * float64(time.Millisecond))) }
	*l = Latency{j.Count, d(j.Min), d(j.Mean), d(j.P50), d(j.P90), d(j.P99), d(j.P999), d(j.Max)}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// WriteText writes the human summary of r.
func (r *Result) WriteText(w io.Writer) {
	s := r.Settings
	fmt.Fprintf(w, "vigil bench %s: topic %s (%d partitions)", r.Mode, s.Topic, s.Partitions)
	if s.Producers > 0 {
		fmt.Fprintf(w, ", %d producers, %d-byte records, acks=%s, compression=%s", s.Producers, s.RecordSize, s.Acks, s.Compression)
		if s.TargetRate > 0 {
			fmt.Fprintf(w, ", rate %s rec/s", num(s.TargetRate))
		}
	}
	if s.Consumers > 0 {
		fmt.Fprintf(w, ", %d consumers", s.Consumers)
	}
	fmt.Fprintln(w)
	stage := func(name string, st *Stage) {
		fmt.Fprintf(w, "  %-8s %s records  %s MB in %.2fs  %s rec/s  %.1f MB/s  errors %d\n",
			name, num(float64(st.Records)), num(float64(st.Bytes)/1e6), st.ElapsedSeconds,
			num(st.RecordsPerSec), st.MBPerSec, st.Errors)
		if st.FirstError != "" {
			fmt.Fprintf(w, "           first error: %s\n", st.FirstError)
		}
	}
	if r.Produce != nil {
		stage("produce", r.Produce)
		if r.Produce.Latency != nil {
			writeLatency(w, "produce latency", r.Produce.Latency)
		}
	}
	if r.Consume != nil {
		stage("consume", r.Consume)
	}
	if e := r.E2E; e != nil {
		writeLatency(w, "e2e latency", e.Latency)
		fmt.Fprintf(w, "  delivery expected %d  received %d  missing %d  duplicates %d  offset gaps %d",
			e.Expected, e.Received, e.Missing, e.Duplicates, e.OffsetGaps)
		if e.Foreign > 0 {
			fmt.Fprintf(w, "  foreign %d", e.Foreign)
		}
		if !e.Drained {
			fmt.Fprint(w, "  (drain timed out)")
		}
		fmt.Fprintln(w)
	}
	if g := r.Group; g != nil {
		fmt.Fprintf(w, "  group %s: %d members, balancer %s: stable after %.3fs (%d assignments received)\n",
			g.Group, g.Members, g.Balancer, g.StableSeconds, g.Rebalances)
		if g.Commit != nil {
			writeLatency(w, "commit latency", g.Commit)
		}
		if g.Errors > 0 {
			fmt.Fprintf(w, "  commit errors %d, first: %s\n", g.Errors, g.FirstError)
		}
	}
	if c := r.BrokerCPU; c != nil && c.BytesMoved > 0 {
		fmt.Fprintf(w, "  broker CPU %.2fs for %s MB moved: %.2f CPU-seconds/GB (%s)\n",
			c.CPUSeconds, num(float64(c.BytesMoved)/1e6), c.CPUSecondsPerGB, c.Source)
	} else if c != nil {
		fmt.Fprintf(w, "  broker CPU %.2fs over the run (%s)\n", c.CPUSeconds, c.Source)
	}
	if h := r.Host; h != nil {
		fmt.Fprintf(w, "  host: %d CPUs %.0f%% busy, %.0f%% iowait, %.0f%% stolen, %.0f%% idle; dirty page cache %s -> %s MB, %s MB written back\n",
			h.CPUs, 100*h.Busy, 100*h.IOWait, 100*h.Steal, 100*h.Idle, num(h.DirtyMBStart), num(h.DirtyMBEnd), num(h.WrittenBackMB))
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
	fmt.Fprintln(w, "  (MB = 10^6 bytes, GB = 10^9 bytes; payload bytes only)")
}

func writeLatency(w io.Writer, name string, l *Latency) {
	if l == nil || l.Count == 0 {
		fmt.Fprintf(w, "  %s: no samples\n", name)
		return
	}
	fmt.Fprintf(w, "  %s ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (mean %.3f, n=%d)\n",
		name, ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max), ms(l.Mean), l.Count)
}

// num formats v with thousands separators and at most one decimal.
func num(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	if v < 100 && v != float64(int64(v)) {
		s = fmt.Sprintf("%.1f", v)
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name, line string
		want       uint64
		err        string
	}{
		{
			name: "plain",
			line: "4242 (vigil) S 1 4242 4242 0 -1 4194560 5000 0 0 0 1234 567 0 0 20 0 12 0 100 1000000 500 18446744073709551615",
			want: 1234 + 567,
		},
		{
			name: "command with spaces and parentheses",
			line: "7 (my (odd) broker) R 1 7 7 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 1 1 1",
			want: 30,
		},
		{name: "truncated", line: "7 (x) R 1 2 3", err: "only 4 fields"},
		{name: "no command", line: "garbage", err: "no ')'"},
		{name: "bad number", line: "7 (x) R 1 7 7 0 -1 0 0 0 0 0 ten 20 0", err: "utime"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat(tc.line)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseProcStat = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestProcSamplerSelf(t *testing.T) {
	s := procSampler{pid: os.Getpid(), clkTck: clockTicks()}
	v, err := s.sample(context.Background())
	if err != nil || v < 0 {
		t.Fatalf("sampling this process: %v, %v", v, err)
	}
	if tck := clockTicks(); tck <= 0 {
		t.Fatalf("clockTicks = %v", tck)
	}
	_, err = procSampler{pid: 1 << 30, clkTck: 100}.sample(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--broker-pid") {
		t.Fatalf("sampling a missing process: err = %v, want a hint about --broker-pid", err)
	}
}

func TestParsePromCPU(t *testing.T) {
	text := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_cpu_seconds_totally_not 99
process_cpu_seconds_total{instance="b2"} 0.5 1700000000000
vigil_broker_bytes_total 7
`
	got, err := parsePromCPU(strings.NewReader(text))
	if err != nil || got != 13 {
		t.Fatalf("parsePromCPU = %v, %v; want 13", got, err)
	}
	if _, err := parsePromCPU(strings.NewReader("up 1\n")); err == nil || !strings.Contains(err.Error(), "no process_cpu_seconds_total") {
		t.Fatalf("missing metric: err = %v", err)
	}
}

func TestPromSampler(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("process_cpu_seconds_total 3.25\n"))
	}))
	defer srv.Close()
	cfg := Config{BrokerMetricsURL: srv.URL + "/metrics"}
	w, err := startMeters(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	w.finish(context.Background(), &r, 2e9)
	if r.BrokerCPU == nil || r.BrokerCPU.CPUSeconds != 0 || r.BrokerCPU.CPUSecondsPerGB != 0 || r.BrokerCPU.Source != "prometheus:"+cfg.BrokerMetricsURL {
		t.Fatalf("BrokerCPU = %+v", r.BrokerCPU)
	}
	if _, err := startMeters(context.Background(), Config{BrokerMetricsURL: srv.URL + "/nope"}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("bad path: err = %v, want HTTP 404", err)
	}
}

func TestCPUPerGB(t *testing.T) {
	w := &phaseMeters{cpuSource: "test", cpu: &window[float64]{sample: fixedSampler{10}.sample, start: 4}}
	var r Result
	w.finish(context.Background(), &r, 3e9)
	if r.BrokerCPU.CPUSeconds != 6 || r.BrokerCPU.CPUSecondsPerGB != 2 {
		t.Fatalf("BrokerCPU = %+v, want 6 CPU-seconds, 2 per GB", r.BrokerCPU)
	}
}

type fixedSampler struct{ v float64 }

func (f fixedSampler) sample(context.Context) (float64, error) { return f.v, nil }

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/vigilhq/vigil/bench"
	"github.com/vigilhq/vigil/slo"
)

// runBench runs `vigil bench produce|consume|e2e|group`, and `vigil bench
// slo` (the SLO engine on a synthetic fleet).
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "slo" {
		return benchSLO(ctx, args[1:], stdout, stderr)
	}
	return bench.Run(ctx, args, stdout, stderr)
}

// benchSLO runs `vigil bench slo`: a synthetic fleet in the embedded TSDB,
// its ingest rate, the engine's evaluation cycles and memory.
func benchSLO(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench slo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg slo.BenchConfig
	fs.IntVar(&cfg.Clusters, "clusters", 1000, "clusters in the fleet")
	fs.IntVar(&cfg.BrokersPerCluster, "brokers", 12, "brokers per cluster")
	fs.IntVar(&cfg.CellsPerCluster, "cells", 4, "cells per cluster")
	fs.IntVar(&cfg.Minutes, "minutes", 10, "minutes of raw metrics (one scrape every 15 s); one cycle per minute")
	fs.StringVar(&cfg.Dir, "dir", "", "TSDB directory (default: a temporary one, removed after)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the evaluation cycles to this file")
	fs.StringVar(&cfg.MemProfile, "memprofile", "", "write heap profiles after the recorded history, the ingest, the first and the last cycle to this prefix (.history, .ingest, .first, .last)")
	recWindows := fs.String("record-windows", "", "windows whose burn rate the engine records per group, comma-separated, or all (default: the engine's, 1h)")
	fs.BoolVar(&cfg.RecordStepRates, "record-step-rates", false, "also record vigil_slo_events:rate per group")
	fs.BoolVar(&cfg.NoSharing, "no-sharing", false, "evaluate every health rule as written instead of their shared subexpressions once per cycle")
	memLimit := fs.String("memory-limit", "auto", "Go soft memory limit: auto (GOMEMLIMIT, else 90% of a cgroup memory limit, else none), off, or a size such as 5GiB (docs/slo.md)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *recWindows {
	case "":
	case "all":
		cfg.RecordAllWindows = true
	default:
		ws, err := parseWindows(strings.Split(*recWindows, ","))
		if err != nil {
			return fmt.Errorf("--record-windows: %w", err)
		}
		cfg.RecordWindows = ws
	}
	limit, how, err := applyMemoryLimit(*memLimit)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "memory limit: %.2f GiB, %s\n", float64(limit)/(1<<30), how)
	cfg.Progress = stderr
	r, err := slo.BenchFleet(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	r.WriteText(stdout)
	return nil
}

package bench

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestGroup runs the group benchmark against a Vigil broker with a classic
// and a KIP-848 balancer: the group becomes stable and every commit
// succeeds.
func TestGroup(t *testing.T) {
	addr := startTestCluster(t)
	for _, balancer := range []string{"cooperative-sticky", "uniform"} {
		t.Run(balancer, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// The broker runs in this process: --broker-pid is this one.
			res, err := Group(ctx, Config{Brokers: []string{addr}, Topic: "group-" + balancer, Partitions: 4,
				Consumers: 3, Balancer: balancer, Commits: 20, BrokerPID: os.Getpid()})
			if err != nil {
				t.Fatal(err)
			}
			g := res.Group
			if g == nil || g.Members != 3 || g.Stable <= 0 || g.Rebalances < 3 {
				t.Fatalf("group stats: %+v", g)
			}
			// With 4 partitions and 3 members every member owns one or
			// more at the stable point, so all 3 commit.
			if g.Errors != 0 || g.Commits != 3*20 {
				t.Fatalf("commits: %d (errors %d: %s)", g.Commits, g.Errors, g.FirstError)
			}
			var sb strings.Builder
			res.WriteText(&sb)
			if c := res.BrokerCPU; c == nil || c.CPUSeconds <= 0 || c.BytesMoved != 0 {
				t.Fatalf("broker CPU with --broker-pid: %+v (warnings %q)", c, res.Warnings)
			}
			checkHost(t, res)
			if !strings.Contains(sb.String(), "commit latency ms: p50") || !strings.Contains(sb.String(), "broker CPU") ||
				runtime.GOOS == "linux" && !strings.Contains(sb.String(), "host: ") {
				t.Fatalf("text output:\n%s", sb.String())
			}
		})
	}
}

func TestGroupFlags(t *testing.T) {
	_, _, _, err := parseArgs([]string{"group", "--balancer", "magic"}, nil)
	if err == nil || !strings.Contains(err.Error(), "balancer") {
		t.Fatalf("unknown balancer: %v", err)
	}
	mode, cfg, _, err := parseArgs([]string{"group", "--consumers", "5", "--balancer", "uniform", "--commits", "7", "--group", "g"}, nil)
	if err != nil || mode != "group" || cfg.Consumers != 5 || cfg.Balancer != "uniform" || cfg.Commits != 7 || cfg.GroupID != "g" {
		t.Fatalf("parse: %v %+v", err, cfg)
	}
}

package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigilhq/vigil/internal/vigiltest"
	"github.com/vigilhq/vigil/probes"
)

// freePortRange returns the first of n consecutive free loopback ports
// (vigil dev puts its brokers and controllers on consecutive ports).
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		base := freePort(t)
		if base+n > 65535 {
			continue
		}
		var lns []net.Listener
		ok := true
		for p := base; p < base+n; p++ {
			ln, err := net.Listen("tcp", hostPort("127.0.0.1", p))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("found no %d consecutive free ports", n)
	return 0
}

// devPorts returns the Kafka and HTTP ports for a `vigil dev` with up to
// brokers brokers, taken from one range of free ports so that none of
// the ports dev derives from them overlap: HTTP at http, controller APIs
// at http+1.., their Raft at http+11.. (up to 5 controllers), brokers at
// kafka, kafka+1, ...
func devPorts(t *testing.T, brokers int) (kafka, httpPort int) {
	t.Helper()
	base := freePortRange(t, 16+brokers)
	return base + 16, base
}

// TestDevRunsAThreeBrokerCluster runs `vigil dev --brokers 3` (with one
// controller and with a quorum of three): the health endpoints answer 200,
// a topic created through kadm with the default replication factor gets
// three replicas on three distinct brokers, acks=all writes are read back,
// and SIGINT stops everything cleanly.
func TestDevRunsAThreeBrokerCluster(t *testing.T) {
	for _, controllers := range []int{1, 3} {
		t.Run("controllers="+strconv.Itoa(controllers), func(t *testing.T) {
			kport, hport := devPorts(t, 3)
			p := startVigil(t, true, "dev", "--data-dir", t.TempDir(), "--brokers", "3", "--controllers", strconv.Itoa(controllers),
				"--kafka-port", strconv.Itoa(kport), "--http-port", strconv.Itoa(hport))
			get := func(path string) (int, string) {
				resp, err := http.Get("http://" + p.http + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(body)
			}
			if code, body := get("/healthz"); code != 200 {
				t.Fatalf("/healthz: status %d: %s", code, body)
			}
			// Ready once every broker has joined (the first one logging
			// that it serves is what startVigil waits for).
			pollUntil(t, "/readyz to answer 200", time.Minute, func() bool {
				code, _ := get("/readyz")
				return code == 200
			})
			var seeds []string
			for i := range 3 {
				seeds = append(seeds, hostPort("127.0.0.1", kport+i))
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic("rf3"),
				kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := adm.CreateTopic(ctx, 6, -1, nil, "rf3"); err != nil {
				t.Fatal(err)
			}
			md, err := adm.Metadata(ctx, "rf3")
			if err != nil {
				t.Fatal(err)
			}
			if len(md.Brokers) != 3 {
				t.Fatalf("metadata lists %d brokers, want 3: %v", len(md.Brokers), md.Brokers)
			}
			leaders := map[int32]int{}
			for _, pd := range md.Topics["rf3"].Partitions.Sorted() {
				r := slices.Clone(pd.Replicas)
				slices.Sort(r)
				if len(slices.Compact(r)) != 3 || len(pd.ISR) != 3 {
					t.Fatalf("partition %d: replicas %v, ISR %v; want 3 distinct brokers in both", pd.Partition, pd.Replicas, pd.ISR)
				}
				leaders[pd.Leader]++
			}
			if len(leaders) != 3 {
				t.Errorf("the 6 partitions are led by %v; want leaders spread over the 3 brokers", leaders)
			}
			for i := range 100 {
				if err := cl.ProduceSync(ctx, &kgo.Record{Partition: int32(i % 6), Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			// Every partition's leader has them all (a leader that
			// has not applied the topic yet answers
			// UNKNOWN_TOPIC_OR_PARTITION: ask again).
			var ends kadm.ListedOffsets
			pollUntil(t, "the end offsets of rf3 to sum to the 100 records acknowledged", time.Minute, func() bool {
				ends, err = adm.ListEndOffsets(ctx, "rf3")
				if err != nil || ends.Error() != nil {
					return false
				}
				total := int64(0)
				ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
				if total > 100 {
					t.Fatalf("end offsets sum to %d after 100 acknowledged records: %v", total, ends)
				}
				return total == 100
			})

			if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-p.done:
				if err != nil {
					t.Fatalf("vigil dev exited with %v after SIGINT\n%s", err, p.stderr)
				}
			case <-time.After(time.Minute):
				t.Fatalf("vigil dev did not exit after SIGINT\n%s", p.stderr)
			}
			if n := strings.Count(p.stderr.String(), `msg="broker stopped"`); n != 3 {
				t.Fatalf("%d brokers logged a clean stop, want 3\n%s", n, p.stderr)
			}
		})
	}
}

// TestDevRunsTwoCells runs `vigil dev --cells 2 --brokers 3`: six brokers,
// 0-2 in cell a and 3-5 in cell b, each cell on racks <cell>0..2. Health
// and readiness answer 200; every partition of the topics created (with
// the default replication factor, 3) lives in one cell on three distinct
// racks; the embedded probe makes one probe topic per cell, inside that
// cell, and probes all six brokers end to end without loss.
func TestDevRunsTwoCells(t *testing.T) {
	kport := freePortRange(t, 6)
	hport := freePortRange(t, 14)
	p := startVigil(t, true, "dev", "--data-dir", t.TempDir(), "--cells", "2", "--brokers", "3",
		"--kafka-port", strconv.Itoa(kport), "--http-port", strconv.Itoa(hport))
	status := func(path string) int {
		resp, err := http.Get("http://" + p.http + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	pollUntil(t, "/healthz and /readyz to answer 200", time.Minute, func() bool {
		return status("/healthz") == 200 && status("/readyz") == 200
	})
	var seeds []string
	for i := range 6 {
		seeds = append(seeds, hostPort("127.0.0.1", kport+i))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cellOf := func(id int32) string { return string(rune('a' + id/3)) }
	topics := []string{"cells0", "cells1", "cells2", "cells3"}
	for _, name := range topics {
		if _, err := adm.CreateTopic(ctx, 3, -1, nil, name); err != nil {
			t.Fatal(err)
		}
	}
	// placed checks that every partition of topic has three replicas in
	// one cell (want, if not empty) on distinct racks, and returns the
	// cell.
	placed := func(md kadm.Metadata, topic, want string) string {
		t.Helper()
		racks := map[int32]string{}
		for _, b := range md.Brokers {
			if b.Rack != nil {
				racks[b.NodeID] = *b.Rack
			}
		}
		td, ok := md.Topics[topic]
		if !ok || td.Err != nil || len(td.Partitions) == 0 {
			t.Fatalf("topic %s: %v", topic, td.Err)
		}
		cell := ""
		for _, pd := range td.Partitions.Sorted() {
			if len(pd.Replicas) != 3 {
				t.Fatalf("%s-%d has replicas %v, want 3", topic, pd.Partition, pd.Replicas)
			}
			seen := map[string]bool{}
			for _, r := range pd.Replicas {
				if cell == "" {
					cell = cellOf(r)
				}
				if cellOf(r) != cell {
					t.Fatalf("%s-%d has replicas %v in more than one cell", topic, pd.Partition, pd.Replicas)
				}
				rack := racks[r]
				if !strings.HasPrefix(rack, cell) || seen[rack] {
					t.Fatalf("%s-%d has replicas %v on racks %v; want three distinct racks of cell %s", topic, pd.Partition, pd.Replicas, racks, cell)
				}
				seen[rack] = true
			}
		}
		if want != "" && cell != want {
			t.Fatalf("%s is in cell %s, want %s", topic, cell, want)
		}
		return cell
	}
	// Metadata reaches each broker on its own schedule: wait until the
	// broker answering has every new topic.
	var md kadm.Metadata
	vigiltest.WaitFor(t, "metadata with the four topics", time.Minute, func() bool {
		var err error
		if md, err = adm.Metadata(ctx); err != nil {
			return false
		}
		for _, name := range topics {
			if td, ok := md.Topics[name]; !ok || td.Err != nil || len(td.Partitions) == 0 {
				return false
			}
		}
		return true
	})
	if len(md.Brokers) != 6 {
		t.Fatalf("metadata lists %d brokers, want 6: %v", len(md.Brokers), md.Brokers)
	}
	for _, name := range topics {
		placed(md, name, "")
	}

	// The probe: one topic per cell, in that cell, and every broker
	// probed end to end.
	url := "http://" + p.http + "/metrics"
	vigiltest.WaitFor(t, "end-to-end probes of all six brokers", time.Minute, func() bool {
		g := scrape(t, url)
		for b := range int32(6) {
			if vigiltest.Sum(t, g, "vigil_probe_e2e_seconds", map[string]string{"broker": strconv.Itoa(int(b)), "location": "dev", "cell": cellOf(b)}) < 3 {
				return false
			}
		}
		return true
	})
	if lost := vigiltest.Sum(t, scrape(t, url), "vigil_probe_lost_records_total", nil); lost != 0 {
		t.Errorf("%v probe records lost in a healthy run", lost)
	}
	md, err = adm.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var probeTopics []string
	for name := range md.Topics {
		if strings.HasPrefix(name, probes.TopicPrefix) {
			probeTopics = append(probeTopics, name)
		}
	}
	slices.Sort(probeTopics)
	if want := []string{probes.TopicName("a"), probes.TopicName("b")}; !slices.Equal(probeTopics, want) {
		t.Fatalf("probe topics %v, want %v", probeTopics, want)
	}
	for _, cell := range []string{"a", "b"} {
		placed(md, probes.TopicName(cell), cell)
	}
	p.interrupt(t)
}

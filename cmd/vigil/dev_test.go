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

package broker

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClientsKeepWorkingAcrossLeaderChanges runs kcat (librdkafka) and
// franz-go producers and consumers against a 3-broker cluster while the
// leader of their partition is stopped (a controlled shutdown: its
// leadership moves to another in-sync replica first), restarted, and then
// the new leader is stopped too. The producers write with acks=all
// (idempotent) before, during, between and after the changes; both consumers, which
// run throughout, must read every record, and the partition must hold each
// record exactly once.
func TestClientsKeepWorkingAcrossLeaderChanges(t *testing.T) {
	kcat := requireTool(t, "kcat")
	c := startCluster(t, 3)
	ctx := testCtx(t)
	const topic = "leader-change"
	adm := kadm.NewClient(c.client())
	if _, err := adm.CreateTopic(ctx, 1, 3, map[string]*string{"min.insync.replicas": kmsgStr("2")}, topic); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a leader of "+topic+"-0 with a full ISR", time.Minute, func() bool {
		st := c.partitionState(topic, 0)
		return st != nil && st.Leader >= 0 && len(st.ISR) == 3
	})
	// kcat's consumer gives up on a partition for good if the leader it
	// was told of answers its first ListOffsets with
	// UNKNOWN_TOPIC_OR_PARTITION, as a broker that has not applied the
	// topic yet does (Kafka's too).
	c.waitImages(topic)
	seeds := strings.Join(c.seeds(), ",")

	// The kcat consumer reads from the beginning for the whole test.
	kcons := exec.CommandContext(ctx, kcat, "-C", "-b", seeds, "-t", topic, "-o", "beginning", "-u", "-f", "%s\n",
		"-X", "topic.metadata.refresh.interval.ms=1000")
	var kconsErr bytes.Buffer
	kcons.Stderr = &kconsErr
	kout, err := kcons.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := kcons.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = kcons.Process.Kill(); _ = kcons.Wait() }()
	kcatSeen := make(chan string, 10000)
	go func() {
		sc := bufio.NewScanner(kout)
		for sc.Scan() {
			v, _, _ := strings.Cut(sc.Text(), ":")
			kcatSeen <- v
		}
		close(kcatSeen)
	}()

	// The kcat producer writes the lines given to it on stdin, as they
	// come (see kcatLine).
	kprod := exec.CommandContext(ctx, kcat, "-P", "-b", seeds, "-t", topic,
		"-X", "acks=all", "-X", "enable.idempotence=true", "-X", "linger.ms=5")
	var kprodOut bytes.Buffer
	kprod.Stdout, kprod.Stderr = &kprodOut, &kprodOut
	kin, err := kprod.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := kprod.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = kprod.Process.Kill() }()

	// The franz-go producer and consumer.
	prod := c.client(kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
	cons := c.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var (
		mu       sync.Mutex
		want     = map[string]bool{}
		kgoSeen  = map[string]int{}
		produced sync.WaitGroup
	)
	consDone := make(chan struct{})
	cctx, stopCons := context.WithCancel(ctx)
	defer stopCons()
	go func() {
		defer close(consDone)
		for cctx.Err() == nil {
			fs := cons.PollFetches(cctx)
			mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				v, _, _ := strings.Cut(string(r.Value), ":")
				kgoSeen[v]++
			})
			mu.Unlock()
		}
	}()

	n := 0
	batch := func(phase string) {
		t.Helper()
		for i := 0; i < 200; i++ {
			kv, gv := fmt.Sprintf("kcat-%s-%d", phase, i), fmt.Sprintf("kgo-%s-%d", phase, i)
			if _, err := io.WriteString(kin, kcatLine(kv)); err != nil {
				t.Fatalf("writing to kcat: %v\n%s", err, kprodOut.String())
			}
			produced.Add(1)
			prod.Produce(ctx, &kgo.Record{Value: []byte(gv)}, func(_ *kgo.Record, err error) {
				defer produced.Done()
				if err != nil {
					t.Errorf("franz-go produce of %s: %v", gv, err)
				}
			})
			mu.Lock()
			want[kv], want[gv] = true, true
			mu.Unlock()
			n += 2
			time.Sleep(2 * time.Millisecond) // spread the writes out
		}
	}
	// waitConsumed waits until both consumers have read everything
	// written so far, which also proves the producers got through.
	kcatGot := map[string]int{}
	waitConsumed := func(after string) {
		t.Helper()
		deadline := time.After(time.Minute)
		for {
			mu.Lock()
			missing := 0
			var example []string
			for v := range want {
				if kgoSeen[v] == 0 || strings.HasPrefix(v, "kcat-") && kcatGot[v] == 0 {
					missing++
					if len(example) < 5 {
						example = append(example, fmt.Sprintf("%s (franz-go %d, kcat %d)", v, kgoSeen[v], kcatGot[v]))
					}
				}
			}
			mu.Unlock()
			if missing == 0 {
				return
			}
			select {
			case v, ok := <-kcatSeen:
				if !ok {
					t.Fatalf("the kcat consumer exited after %s: %s", after, kconsErr.String())
				}
				mu.Lock()
				kcatGot[v]++
				mu.Unlock()
			case <-time.After(20 * time.Millisecond):
			case <-deadline:
				t.Fatalf("after %s: %d of %d records not read by both consumers within a minute (%s)\nkcat producer: %s\nkcat consumer: %s\n%s",
					after, missing, len(want), strings.Join(example, ", "), kprodOut.String(), kconsErr.String(), c.describe(topic))
			}
		}
	}

	batch("before")
	waitConsumed("writing with every broker up")
	for change := 1; change <= 2; change++ {
		// The leader stops while the producers write.
		leader := c.partitionState(topic, 0).Leader
		stopped := make(chan struct{})
		go func() { defer close(stopped); c.stop(int(leader)) }()
		batch(fmt.Sprintf("change%d", change))
		<-stopped
		st := c.partitionState(topic, 0)
		if st.Leader < 0 || st.Leader == leader {
			t.Fatalf("after the controlled shutdown of broker %d the partition is led by %d", leader, st.Leader)
		}
		t.Logf("leader change %d: broker %d stopped, broker %d leads", change, leader, st.Leader)
		batch(fmt.Sprintf("after%d", change))
		waitConsumed(fmt.Sprintf("stopping the leader, broker %d", leader))
		c.start(int(leader))
		waitFor(t, "the restarted broker back in the ISR", time.Minute, func() bool {
			return len(c.partitionState(topic, 0).ISR) == 3
		})
	}
	if err := kin.Close(); err != nil {
		t.Fatal(err)
	}
	if err := kprod.Wait(); err != nil || strings.Contains(kprodOut.String(), "Delivery failed") {
		t.Fatalf("kcat producer: %v\n%s", err, kprodOut.String())
	}
	produced.Wait()
	stopCons()
	<-consDone

	// Each record exactly once in the partition.
	for v, k := range kgoSeen {
		if k != 1 {
			t.Errorf("%s read %d times by franz-go", v, k)
		}
	}
	for v, k := range kcatGot {
		if k != 1 {
			t.Errorf("%s read %d times by kcat", v, k)
		}
	}
	t.Logf("%d records written by kcat and franz-go across 2 leader changes, each read once by both", n)
}

// kcatLine is v padded to a 4 KiB line: kcat -P reads its stdin in 4 KiB
// blocks, so a shorter line written to it waits for the next ones (or
// the end of the input) before it is produced.
func kcatLine(v string) string {
	return v + ":" + strings.Repeat("x", 4096-len(v)-2) + "\n"
}

package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The test binary doubles as the vigil binary: with VIGIL_RUN_MAIN=1 it runs
// main, so process tests start real, separate vigil processes.
func TestMain(m *testing.M) {
	if os.Getenv("VIGIL_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// vigilProc is a vigil process started by a test.
type vigilProc struct {
	cmd    *exec.Cmd
	kafka  string // Kafka listener address, parsed from the log
	http   string // HTTP address, if any
	stderr *logTail
	done   chan error // receives the exit status once
	// exitedCh is closed when the process has exited.
	exitedCh chan struct{}
}

// logTail keeps a process's log for failure messages and finds addresses.
type logTail struct {
	mu    sync.Mutex
	lines []string
	kafka chan string
	http  chan string
}

var (
	kafkaRE = regexp.MustCompile(`broker serving Kafka.* listen=(\S+)`)
	httpRE  = regexp.MustCompile(`HTTP serving.* addr=http://(\S+)`)
)

func (l *logTail) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		l.mu.Lock()
		l.lines = append(l.lines, line)
		l.mu.Unlock()
		if m := kafkaRE.FindStringSubmatch(line); m != nil {
			select {
			case l.kafka <- m[1]:
			default:
			}
		}
		if m := httpRE.FindStringSubmatch(line); m != nil {
			select {
			case l.http <- m[1]:
			default:
			}
		}
	}
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := ""
	for _, line := range l.lines {
		s += line + "\n"
	}
	return s
}

// interrupt stops p with SIGINT, as Ctrl-C would, and expects a clean exit
// within a minute.
func (p *vigilProc) interrupt(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("vigil %v exited with %v after SIGINT\n%s", p.cmd.Args[1:], err, p.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatalf("vigil %v did not exit after SIGINT\n%s", p.cmd.Args[1:], p.stderr)
	}
}

// startVigil starts `vigil args...` and waits until its Kafka listener is
// up (dev and broker; the others have none).
func startVigil(t testing.TB, wantHTTP bool, args ...string) *vigilProc {
	t.Helper()
	p := spawnVigil(t, args...)
	deadline := time.After(2 * time.Minute)
	wantKafka := args[0] == "dev" || args[0] == "broker"
	for wantKafka && p.kafka == "" || wantHTTP && p.http == "" {
		select {
		case p.kafka = <-p.stderr.kafka:
		case p.http = <-p.stderr.http:
		case err := <-p.done:
			t.Fatalf("vigil %v exited early: %v\n%s", args, err, p.stderr)
		case <-deadline:
			t.Fatalf("vigil %v did not start listening\n%s", args, p.stderr)
		}
	}
	return p
}

// spawnVigil starts `vigil args...` without waiting for anything; the
// process is killed at the end of the test if it still runs.
func spawnVigil(t testing.TB, args ...string) *vigilProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "VIGIL_RUN_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &vigilProc{cmd: cmd, stderr: &logTail{kafka: make(chan string, 1), http: make(chan string, 1)}, done: make(chan error, 1), exitedCh: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.stderr.consume(stderr)
	go func() {
		err := cmd.Wait()
		close(p.exitedCh)
		p.done <- err
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// exited reports whether the process has exited (and was waited for).
func (p *vigilProc) exited() bool {
	select {
	case <-p.exitedCh:
		return true
	default:
		return false
	}
}

// TestCrashLosesNoAcknowledgedWrite produces with acks=all under a
// flush-every-batch policy, kills the broker with SIGKILL mid-stream,
// restarts it, and reads back every acknowledged record, in order, with no
// duplicates and no corrupt batch.
func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	args := []string{"broker", "--listen", "127.0.0.1:0", "--data-dir", dir, "--topic-default", "flush.messages=1", "--log-level", "debug"}
	p := startVigil(t, false, args...)

	cl, err := kgo.NewClient(kgo.SeedBrokers(p.kafka), kgo.DefaultProduceTopic("crash"),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.AllowAutoTopicCreation(), kgo.ProducerLinger(0), kgo.RecordRetries(1), kgo.RequestRetries(1),
		kgo.ProduceRequestTimeout(5*time.Second), kgo.RecordDeliveryTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked = map[int]bool{}
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// An idempotent producer cannot fail a batch whose request may have
	// reached the broker, so a Flush in flight at the kill never returns on
	// its own: the kill cancels it.
	flushCtx, cancelFlush := context.WithCancel(ctx)
	defer cancelFlush()
	killed := make(chan struct{})
	go func() {
		// Kill once a good number of records are acknowledged.
		for {
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n >= 3000 || ctx.Err() != nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		close(killed)
		cancelFlush()
	}()
	sent := 0
produce:
	for ; ; sent++ {
		select {
		case <-killed:
			break produce
		default:
		}
		i := sent
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err == nil {
				mu.Lock()
				acked[i] = true
				mu.Unlock()
			}
		})
		if sent%64 == 63 {
			// Keep a bounded number in flight.
			if err := cl.Flush(flushCtx); err != nil {
				break
			}
		}
	}
	<-p.done
	cl.Close() // fails what is still buffered
	wg.Wait()
	mu.Lock()
	nAcked := len(acked)
	mu.Unlock()
	if nAcked < 3000 {
		t.Fatalf("only %d records acknowledged before the kill", nAcked)
	}

	if ctx.Err() != nil {
		t.Fatalf("producing timed out before the kill")
	}

	p2 := startVigil(t, false, args...)
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cons, err := kgo.NewClient(kgo.SeedBrokers(p2.kafka), kgo.ConsumeTopics("crash"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ends := endOffset(t, p2.kafka, "crash")
	seen := map[int]bool{}
	prev := -1
	var lastOffset int64 = -1
	for lastOffset+1 < ends {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("timed out reading back: at offset %d of %d\n%s", lastOffset, ends, p2.stderr)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch after restart: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			v, err := strconv.Atoi(string(r.Value))
			if err != nil {
				t.Fatalf("corrupt record at offset %d: %q", r.Offset, r.Value)
			}
			if seen[v] {
				t.Fatalf("record %d read twice (offset %d)", v, r.Offset)
			}
			if v <= prev {
				t.Fatalf("record %d after %d: out of order", v, prev)
			}
			seen[v], prev, lastOffset = true, v, r.Offset
		})
	}
	for i := range acked {
		if !seen[i] {
			t.Fatalf("acknowledged record %d lost after kill -9 (%d acked, %d read back)", i, nAcked, len(seen))
		}
	}
	t.Logf("%d acknowledged, %d read back after kill -9 and restart", nAcked, len(seen))
}

// endOffset returns the end offset of partition 0 of topic.
func endOffset(t *testing.T, addr, topic string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := ends.Lookup(topic, 0)
	if !ok || o.Err != nil {
		t.Fatalf("end offset of %s: %v", topic, o.Err)
	}
	return o.Offset
}

// TestDevServesAndShutsDownCleanly runs `vigil dev`, checks the HTTP health
// endpoints and the Kafka port, then interrupts it as Ctrl-C would and
// expects a clean exit, after which a restart on the same data dir reads
// back what was produced.
func TestDevServesAndShutsDownCleanly(t *testing.T) {
	dir := t.TempDir()
	kport, hport := devPorts(t, 3)
	p := startVigil(t, true, "dev", "--data-dir", dir, "--kafka-port", strconv.Itoa(kport), "--http-port", strconv.Itoa(hport))
	// startVigil returns once the first broker serves; /readyz is 200
	// once all of them do.
	pollUntil(t, "/readyz to answer 200", time.Minute, func() bool {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	for _, path := range []string{"/healthz", "/readyz", "/", "/debug/pprof/", "/metrics"} {
		resp, err := http.Get("http://" + p.http + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.kafka), kgo.DefaultProduceTopic("dev"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	p.interrupt(t)

	// The clean shutdown kept the record: a restart on the same data dir
	// reads it back.
	kport, hport = devPorts(t, 3)
	p2 := startVigil(t, true, "dev", "--data-dir", dir, "--kafka-port", strconv.Itoa(kport), "--http-port", strconv.Itoa(hport))
	cons, err := kgo.NewClient(kgo.SeedBrokers(p2.kafka), kgo.ConsumeTopics("dev"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("the record produced before the restart was not read back\n%s", p2.stderr)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch after restart: %v", err) })
		if recs := fs.Records(); len(recs) > 0 {
			if len(recs) != 1 || string(recs[0].Value) != "hello" || recs[0].Offset != 0 {
				t.Fatalf("after restart: %d records, first %q at offset %d; want \"hello\" at 0", len(recs), recs[0].Value, recs[0].Offset)
			}
			break
		}
	}
	p2.interrupt(t)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

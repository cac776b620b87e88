package broker

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigilhq/vigil/controller"
)

// testLogger discards logs unless VIGIL_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("VIGIL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startBroker runs a broker on a random loopback port with its data in dir
// (a new temp dir when empty) and stops it when the test ends.
func startBroker(t testing.TB, dir string, mutate ...func(*Config)) *Broker {
	t.Helper()
	return startBrokerLogger(t, dir, testLogger(), mutate...)
}

// startBrokerLogger is startBroker with the broker's logs going to logger.
func startBrokerLogger(t testing.TB, dir string, logger *slog.Logger, mutate ...func(*Config)) *Broker {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = dir
	for _, m := range mutate {
		m(&cfg)
	}
	b, err := New(cfg, logger)
	if err != nil {
		t.Fatalf("starting broker: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve() }()
	select {
	case <-b.Joined():
	case err := <-done:
		t.Fatalf("broker stopped while joining the cluster: %v", err)
	}
	t.Cleanup(func() {
		b.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return b
}

// logBuffer collects a broker's log lines (text format) for tests that
// check what is logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// logger returns a logger writing to l (and to stderr with VIGIL_TEST_LOG).
func (l *logBuffer) logger() *slog.Logger {
	var w io.Writer = l
	if os.Getenv("VIGIL_TEST_LOG") != "" {
		w = io.MultiWriter(l, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines returns the logged lines that contain every one of words.
func (l *logBuffer) lines(words ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, line := range strings.Split(l.buf.String(), "\n") {
		for _, w := range words {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// newClient returns a franz-go client for b, closed when the test ends.
func newClient(t testing.TB, b *Broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newAdmin(t testing.TB, b *Broker) *kadm.Client {
	return kadm.NewClient(newClient(t, b))
}

// testCtx returns a context that ends with the test or after a generous
// deadline, so a hung test fails instead of blocking CI.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// createTopic creates a topic and fails the test on error.
func createTopic(t testing.TB, adm *kadm.Client, name string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := adm.CreateTopics(testCtx(t), partitions, 1, configs, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp[name].Err; err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
}

// consumeN consumes exactly n records from the start of topic.
func consumeN(t testing.TB, b *Broker, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl := newClient(t, b, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	ctx := testCtx(t)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", len(out), n)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetch %s[%d]: %v", topic, p, err)
		})
		out = append(out, fs.Records()...)
	}
	if len(out) != n {
		t.Fatalf("consumed %d records, want %d", len(out), n)
	}
	return out
}

// brokerTopic creates a topic on b directly (through the quorum, as
// CreateTopics does) and fails the test on error.
func brokerTopic(t testing.TB, b *Broker, name string, partitions int32, configs map[string]string) *topic {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tp, err := b.createTopic(ctx, controller.CreateTopic{Name: name, Partitions: partitions, ReplicationFactor: 1, Configs: configs})
	if err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
	return tp
}

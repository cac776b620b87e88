package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigilhq/vigil/controller"
)

// procCluster is a cluster of real, separate vigil processes: a quorum of
// `vigil controller`s and `vigil broker`s that point at it, on loopback
// ports picked when it starts. Each process can be killed (SIGKILL or
// SIGTERM) and restarted on the same data directory and ports. Every
// process's log is kept, restarts included, and printed if the test fails.
type procCluster struct {
	t *testing.T

	ctrlAPI  []string // API address of controller i+1
	ctrlArgs [][]string
	ctrls    []*vigilProc // nil while down

	brokerAddr []string // Kafka address of broker i
	brokerArgs [][]string
	brokers    []*vigilProc // nil while down

	cc *controller.Client // all controllers

	logsMu sync.Mutex
	logs   []namedLog // every incarnation of every process
}

type namedLog struct {
	name string
	log  *logTail
}

// procClusterConfig says how to run the cluster.
type procClusterConfig struct {
	controllers, brokers int
	// sessionTimeout is the controllers' --session-timeout.
	sessionTimeout time.Duration
	// brokerFlags are added to every broker's command line.
	brokerFlags []string
}

// freePorts returns n distinct free loopback ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var out []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out
}

func startProcCluster(t *testing.T, cfg procClusterConfig) *procCluster {
	t.Helper()
	c := &procCluster{t: t}
	t.Cleanup(c.dumpLogsOnFailure)
	dir := t.TempDir()
	ports := freePorts(t, 2*cfg.controllers+cfg.brokers)
	var peers []string
	for i := range cfg.controllers {
		c.ctrlAPI = append(c.ctrlAPI, hostPort("127.0.0.1", ports[2*i]))
		peers = append(peers, strconv.Itoa(i+1)+"="+hostPort("127.0.0.1", ports[2*i+1]))
	}
	for i := range cfg.controllers {
		c.ctrlArgs = append(c.ctrlArgs, []string{"controller",
			"--id", strconv.Itoa(i + 1), "--data-dir", filepath.Join(dir, "controller-"+strconv.Itoa(i+1)),
			"--listen", c.ctrlAPI[i], "--raft-listen", hostPort("127.0.0.1", ports[2*i+1]),
			"--peers", strings.Join(peers, ","), "--session-timeout", cfg.sessionTimeout.String()})
		c.ctrls = append(c.ctrls, nil)
	}
	for i := range cfg.brokers {
		addr := hostPort("127.0.0.1", ports[2*cfg.controllers+i])
		c.brokerAddr = append(c.brokerAddr, addr)
		args := []string{"broker", "--node-id", strconv.Itoa(i), "--listen", addr,
			"--data-dir", filepath.Join(dir, "broker-"+strconv.Itoa(i)),
			"--controllers", strings.Join(c.ctrlAPI, ","), "--rack", "r" + strconv.Itoa(i)}
		c.brokerArgs = append(c.brokerArgs, append(args, cfg.brokerFlags...))
		c.brokers = append(c.brokers, nil)
	}
	cc, err := controller.NewClient(controller.ClientConfig{Addrs: c.ctrlAPI, AttemptTimeout: 3 * time.Second, RetryTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.cc = cc
	t.Cleanup(cc.Close)
	for i := range cfg.controllers {
		c.startController(i)
	}
	c.waitQuorumLeader(-1)
	// The brokers wait for each other's registration only through the
	// quorum, so they start in any order; start them together.
	for i := range cfg.brokers {
		c.spawnBroker(i)
	}
	for i := range cfg.brokers {
		c.awaitBroker(i)
	}
	return c
}

func (c *procCluster) record(name string, p *vigilProc) {
	c.logsMu.Lock()
	c.logs = append(c.logs, namedLog{name: name, log: p.stderr})
	c.logsMu.Unlock()
}

// dumpLogsOnFailure prints the end of every process's log if the test
// failed. With VIGIL_TEST_LOG_DIR set, every log is also written whole to
// a file there, failed or not.
func (c *procCluster) dumpLogsOnFailure() {
	c.logsMu.Lock()
	defer c.logsMu.Unlock()
	if dir := os.Getenv("VIGIL_TEST_LOG_DIR"); dir != "" {
		for _, l := range c.logs {
			name := strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(c.t.Name() + "-" + l.name + ".log")
			if err := os.WriteFile(filepath.Join(dir, name), []byte(l.log.String()), 0o644); err != nil {
				c.t.Logf("writing %s: %v", name, err)
			}
		}
	}
	if !c.t.Failed() {
		return
	}
	for _, l := range c.logs {
		lines := strings.Split(strings.TrimRight(l.log.String(), "\n"), "\n")
		if len(lines) > 300 {
			lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-300)}, lines[len(lines)-300:]...)
		}
		c.t.Logf("==== log of %s ====\n%s", l.name, strings.Join(lines, "\n"))
	}
}

// startController starts controller i (0-based; its id is i+1) and waits
// until its API answers.
func (c *procCluster) startController(i int) {
	c.t.Helper()
	p := spawnVigil(c.t, c.ctrlArgs[i]...)
	c.record(fmt.Sprintf("controller %d (start %d)", i+1, c.starts("controller", i)), p)
	c.ctrls[i] = p
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := quorumOf(c.ctrlAPI[i]); err == nil {
			return
		}
		if p.exited() {
			c.t.Fatalf("controller %d exited at start\n%s", i+1, p.stderr)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("controller %d's API did not answer within 2 minutes", i+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// starts counts the incarnations of a process recorded so far, this one
// included.
func (c *procCluster) starts(kind string, i int) int {
	c.logsMu.Lock()
	defer c.logsMu.Unlock()
	n := 1
	prefix := fmt.Sprintf("%s %d ", kind, i)
	if kind == "controller" {
		prefix = fmt.Sprintf("%s %d ", kind, i+1)
	}
	for _, l := range c.logs {
		if strings.HasPrefix(l.name, prefix) {
			n++
		}
	}
	return n
}

// spawnBroker starts broker i without waiting for it.
func (c *procCluster) spawnBroker(i int) {
	c.t.Helper()
	p := spawnVigil(c.t, c.brokerArgs[i]...)
	c.record(fmt.Sprintf("broker %d (start %d)", i, c.starts("broker", i)), p)
	c.brokers[i] = p
}

// awaitBroker waits until broker i serves Kafka (it has registered, is
// unfenced and has the metadata image).
func (c *procCluster) awaitBroker(i int) {
	c.t.Helper()
	p := c.brokers[i]
	select {
	case p.kafka = <-p.stderr.kafka:
	case err := <-p.done:
		c.t.Fatalf("broker %d exited at start: %v", i, err)
	case <-time.After(2 * time.Minute):
		c.t.Fatalf("broker %d did not serve Kafka within 2 minutes", i)
	}
}

// startBroker starts broker i and waits until it serves Kafka.
func (c *procCluster) startBroker(i int) {
	c.t.Helper()
	c.spawnBroker(i)
	c.awaitBroker(i)
}

// kill sends sig to p and waits for it to exit.
func (c *procCluster) kill(p *vigilProc, sig syscall.Signal) {
	c.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signalling pid %d: %v", p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		c.t.Fatalf("pid %d did not exit within a minute of %v", p.cmd.Process.Pid, sig)
	}
}

// killBroker stops broker i with sig (SIGKILL: a crash; SIGTERM: a clean
// shutdown, controlled shutdown included).
func (c *procCluster) killBroker(i int, sig syscall.Signal) {
	c.t.Helper()
	c.kill(c.brokers[i], sig)
	c.brokers[i] = nil
}

// killController stops controller i (0-based) with sig.
func (c *procCluster) killController(i int, sig syscall.Signal) {
	c.t.Helper()
	c.kill(c.ctrls[i], sig)
	c.ctrls[i] = nil
}

// quorumOf asks the controller at api how it sees the quorum.
func quorumOf(api string) (*controller.QuorumDescription, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+"/v1/quorum", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/quorum: %s", resp.Status)
	}
	var q controller.QuorumDescription
	if err := json.NewDecoder(resp.Body).Decode(&q); err != nil {
		return nil, err
	}
	return &q, nil
}

// activeController returns the index (0-based) of the active controller,
// as a majority of the running controllers see it, or -1.
func (c *procCluster) activeController() int {
	votes := map[string]int{}
	for i, p := range c.ctrls {
		if p == nil {
			continue
		}
		if q, err := quorumOf(c.ctrlAPI[i]); err == nil && q.LeaderID != "" {
			votes[q.LeaderID]++
		}
	}
	for id, n := range votes {
		if n > len(c.ctrls)/2 {
			i, _ := strconv.Atoi(id)
			if i >= 1 && i <= len(c.ctrls) && c.ctrls[i-1] != nil {
				return i - 1
			}
		}
	}
	return -1
}

// waitQuorumLeader waits until a majority agrees on a running leader other
// than not (-1: any) and returns it.
func (c *procCluster) waitQuorumLeader(not int) int {
	c.t.Helper()
	leader := -1
	pollUntil(c.t, "a controller quorum leader", 2*time.Minute, func() bool {
		leader = c.activeController()
		return leader >= 0 && leader != not
	})
	return leader
}

// metadata returns the active controller's image.
func (c *procCluster) metadata() (*controller.Image, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := c.cc.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	return d.Image, nil
}

// partitionState returns the active controller's state of topic's
// partition p, or nil when the controllers cannot answer right now.
func (c *procCluster) partitionState(topic string, p int) *controller.Partition {
	img, err := c.metadata()
	if err != nil || img.Topics[topic] == nil || p >= len(img.Topics[topic].Partitions) {
		return nil
	}
	return img.Topics[topic].Partitions[p]
}

// waitFullISR waits until every partition of topic has a leader and all
// its replicas in the ISR.
func (c *procCluster) waitFullISR(topic string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		img, err := c.metadata()
		last := ""
		switch {
		case err != nil:
			last = err.Error()
		case img.Topics[topic] == nil:
			last = "no topic " + topic
		default:
			ok := true
			for i, p := range img.Topics[topic].Partitions {
				last += fmt.Sprintf(" %d: leader %d, ISR %v;", i, p.Leader, p.ISR)
				if p.Leader < 0 || len(p.ISR) != len(p.Replicas) {
					ok = false
				}
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for every replica of %s in its ISR; last seen:%s", d, topic, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pollUntil polls cond until it holds, failing the test after d.
func pollUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createTopic creates a topic through the brokers (kadm).
func (c *procCluster) createTopic(name string, partitions int32, rf int16, configs map[string]string) {
	c.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokerAddr...))
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := map[string]*string{}
	for k, v := range configs {
		cfg[k] = &v
	}
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, rf, cfg, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		c.t.Fatalf("creating topic %s: %v", name, err)
	}
}

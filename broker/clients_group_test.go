package broker

import (
	"bytes"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lines returns the non-empty lines of out, sorted.
func lines(out string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ls = append(ls, l)
		}
	}
	sort.Strings(ls)
	return ls
}

// checkRange fails unless got holds exactly the values from..to-1.
func checkRange(t *testing.T, who string, got []string, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("%s read %d records, want %d", who, len(got), to-from)
	}
	seen := map[int]bool{}
	for _, v := range got {
		n, err := strconv.Atoi(v)
		if err != nil || n < from || n >= to || seen[n] {
			t.Fatalf("%s read %q: want each of %d..%d once", who, v, from, to-1)
		}
		seen[n] = true
	}
}

// TestKafkaPythonConsumerGroup consumes in a group with kafka-python 2.0,
// which speaks old JoinGroup/SyncGroup/OffsetCommit versions, commits, and
// a second run of the same group reads only what came after.
func TestKafkaPythonConsumerGroup(t *testing.T) {
	python := kafkaPython(t)
	b := groupBroker(t, "")
	createTopic(t, newAdmin(t, b), "kpy-group", 3, nil)
	run := func(count int) []string {
		t.Helper()
		cmd := exec.CommandContext(testCtx(t), python, "testdata/kafka_python_group.py", b.Addr(), "kpy-group", "kpy", strconv.Itoa(count))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("kafka-python: %v\n%s", err, errb.String())
		}
		return lines(out.String())
	}
	produceValues(t, b, "kpy-group", 0, 200)
	checkRange(t, "first run", run(200), 0, 200)
	if got := committedTotal(t, newAdmin(t, b), "kpy", "kpy-group"); got != 200 {
		t.Fatalf("committed offsets sum to %d after the first run, want 200", got)
	}
	produceValues(t, b, "kpy-group", 200, 260)
	checkRange(t, "second run", run(60), 200, 260)
}

// TestKcatBalancedConsumer consumes in a group with kcat -G (librdkafka's
// balanced consumer, auto-commit), and a second run resumes after the
// committed offsets.
func TestKcatBalancedConsumer(t *testing.T) {
	kcat := requireTool(t, "kcat")
	b := groupBroker(t, "")
	adm := newAdmin(t, b)
	createTopic(t, adm, "kcat-group", 3, nil)
	run := func(count int) []string {
		t.Helper()
		cmd := exec.CommandContext(testCtx(t), kcat, "-b", b.Addr(), "-G", "kcat", "-X", "auto.offset.reset=earliest",
			"-c", strconv.Itoa(count), "-f", "%s\n", "-q",
			"-X", "auto.commit.interval.ms=100", "-X", "session.timeout.ms=6000", "kcat-group")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("kcat -G: %v\n%s", err, errb.String())
		}
		return lines(out.String())
	}
	produceValues(t, b, "kcat-group", 0, 150)
	checkRange(t, "first run", run(150), 0, 150)
	// kcat commits on close; the offsets are there once it exits.
	waitFor(t, "kcat's commits", 30*time.Second, func() bool { return committedTotal(t, adm, "kcat", "kcat-group") == 150 })
	produceValues(t, b, "kcat-group", 150, 190)
	checkRange(t, "second run", run(40), 150, 190)
}

package broker

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestKafkaPythonRoundTrip runs kafka-python 2.0 (Debian's python3-kafka,
// an older client that negotiates old request versions) against the broker:
// CreateTopics, idempotence-free acks=all gzip produce with headers, and a
// fetch of everything back.
func TestKafkaPythonRoundTrip(t *testing.T) {
	python := kafkaPython(t)
	b := startBroker(t, "")
	const n = 300
	cmd := exec.CommandContext(testCtx(t), python, "testdata/kafka_python_roundtrip.py", b.Addr(), "kpy", strconv.Itoa(n))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kafka-python: %v\n%s", err, errb.String())
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m struct {
			Key     string      `json:"key"`
			Value   string      `json:"value"`
			Headers [][2]string `json:"headers"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("output %q: %v", line, err)
		}
		i, err := strconv.Atoi(strings.TrimPrefix(m.Key, "key-"))
		if err != nil {
			t.Fatalf("key %q", m.Key)
		}
		want := append([]byte(fmt.Sprintf("value-%d-", i)), make([]byte, i%256)...)
		for j := 0; j < i%256; j++ {
			want[len(want)-i%256+j] = byte(j)
		}
		if m.Value != hex.EncodeToString(want) {
			t.Fatalf("record %d: value differs", i)
		}
		if len(m.Headers) != 1 || m.Headers[0] != [2]string{"n", strconv.Itoa(i)} {
			t.Fatalf("record %d: headers %v", i, m.Headers)
		}
		seen[m.Key] = true
	}
	if len(seen) != n {
		t.Fatalf("kafka-python read back %d distinct records, want %d", len(seen), n)
	}
}

// kafkaPython returns a python3 that can import kafka (python3-kafka).
func kafkaPython(t *testing.T) string {
	t.Helper()
	python := requireTool(t, "python3")
	if err := exec.Command(python, "-c", "import kafka").Run(); err != nil {
		// A pyenv python may shadow Debian's; use Debian's if it has it.
		if err2 := exec.Command("/usr/bin/python3", "-c", "import kafka").Run(); err2 == nil {
			python = "/usr/bin/python3"
		} else {
			missing(t, "python3-kafka")
		}
	}
	return python
}

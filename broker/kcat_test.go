package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// requireTool returns the path of an external tool. Missing, the test is
// skipped on a developer machine but fails in CI, where .ci/run installs it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		missing(t, name)
	}
	return path
}

// missing fails (in CI) or skips (elsewhere) a test whose Debian package is
// not installed.
func missing(t *testing.T, pkg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; .ci/run must install it", pkg)
	}
	t.Skipf("%s is not installed (apt-get install %s)", pkg, pkg)
}

// TestKcatRoundTrip drives the broker with librdkafka through kcat:
// metadata, keyed records with headers in every codec, consumed back byte
// for byte.
func TestKcatRoundTrip(t *testing.T) {
	kcat := requireTool(t, "kcat")
	b := startBroker(t, "")
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(testCtx(t), kcat, append([]string{"-b", b.Addr()}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("kcat %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}

	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			topic := "kcat-" + codec
			createTopic(t, newAdmin(t, b), topic, 2, nil)
			var in strings.Builder
			want := map[string]string{}
			for i := 0; i < 200; i++ {
				k, v := fmt.Sprintf("key-%03d", i), fmt.Sprintf("value %d: %s", i, strings.Repeat("ü", i%40))
				fmt.Fprintf(&in, "%s\t%s\n", k, v)
				want[k] = v
			}
			run(in.String(), "-P", "-t", topic, "-K", "\t", "-z", codec, "-H", "trace=abc", "-H", "empty=", "-X", "acks=all")

			var md struct {
				Topics []struct {
					Topic      string `json:"topic"`
					Partitions []struct {
						Partition int `json:"partition"`
						Leader    int `json:"leader"`
					} `json:"partitions"`
				} `json:"topics"`
			}
			if err := json.Unmarshal([]byte(run("", "-L", "-J", "-t", topic)), &md); err != nil {
				t.Fatal(err)
			}
			if len(md.Topics) != 1 || len(md.Topics[0].Partitions) != 2 {
				t.Fatalf("kcat metadata: %+v", md)
			}

			out := run("", "-C", "-t", topic, "-o", "beginning", "-e", "-J")
			got := 0
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var m struct {
					Key     string   `json:"key"`
					Payload string   `json:"payload"`
					Headers []string `json:"headers"`
					Offset  int64    `json:"offset"`
				}
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("kcat output %q: %v", line, err)
				}
				if want[m.Key] != m.Payload {
					t.Fatalf("key %q: payload %q, want %q", m.Key, m.Payload, want[m.Key])
				}
				if strings.Join(m.Headers, ",") != "trace,abc,empty," {
					t.Fatalf("headers %q", m.Headers)
				}
				delete(want, m.Key)
				got++
			}
			if got != 200 || len(want) != 0 {
				t.Fatalf("consumed %d records; %d never came back", got, len(want))
			}
		})
	}
}

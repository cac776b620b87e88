package bench

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// startTestCluster starts a Kafka-protocol cluster on a loopback port for the
// duration of the test and returns its bootstrap address.
//
// For now it is franz-go's in-process kfake; it is the one place to switch to
// Vigil's own broker once that is ready. The tests create the topics they
// use through the benchmark itself (kadm CreateTopics), so the only
// requirement on the cluster is that it accepts topic creation; the seeded
// topic merely covers the "topic already exists" path.
func startTestCluster(t *testing.T) (addr string) {
	t.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(3, "vigil-bench-seeded"),
	)
	if err != nil {
		t.Fatalf("starting kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

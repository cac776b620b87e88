package broker

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/vigilhq/vigil/broker/group"
)

// TestBatchedFindCoordinatorAndMultiGroupOffsetFetch checks the batched
// forms of two group APIs in a three-broker cluster: FindCoordinator v4+
// with many keys answers each key with the leader of its
// __consumer_offsets partition (several brokers among them), and
// OffsetFetch v8+ with several groups answers each group with its own
// committed offsets — from a broker that coordinates them, and with
// NOT_COORDINATOR for a group it does not.
func TestBatchedFindCoordinatorAndMultiGroupOffsetFetch(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.client()
	adm := kadm.NewClient(cl)
	ctx := testCtx(t)
	if _, err := adm.CreateTopic(ctx, 3, 3, nil, "of"); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := range 12 {
		keys = append(keys, "grp-"+strconv.Itoa(i))
	}
	coordinator := map[string]int32{}

	// FindCoordinator with every key at once, to broker 0 (the first
	// call creates __consumer_offsets; its leaders take a moment).
	waitFor(t, "a batched FindCoordinator answered for every key", time.Minute, func() bool {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorType = coordinatorGroup
		req.CoordinatorKeys = keys
		kresp, err := cl.Broker(0).Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		resp := kresp.(*kmsg.FindCoordinatorResponse)
		if v := resp.GetVersion(); v < 4 {
			t.Fatalf("FindCoordinator went out as v%d; the batched form is v4+", v)
		}
		if len(resp.Coordinators) != len(keys) {
			t.Fatalf("%d coordinators answered for %d keys: %+v", len(resp.Coordinators), len(keys), resp.Coordinators)
		}
		for i, co := range resp.Coordinators {
			if co.Key != keys[i] {
				t.Fatalf("answer %d is for key %q, want %q", i, co.Key, keys[i])
			}
			if co.ErrorCode == kerr.CoordinatorNotAvailable.Code {
				return false
			}
			if co.ErrorCode != 0 {
				t.Fatalf("key %s: %v", co.Key, kerr.ErrorForCode(co.ErrorCode))
			}
			p := group.PartitionFor(co.Key, c.brokers[0].cfg.OffsetsTopicPartitions)
			if want := c.partitionState("__consumer_offsets", int(p)).Leader; co.NodeID != want {
				return false // leadership still settling
			}
			if got, want := net.JoinHostPort(co.Host, strconv.Itoa(int(co.Port))), c.brokers[co.NodeID].Addr(); got != want {
				t.Fatalf("key %s: coordinator %d at %s, want %s", co.Key, co.NodeID, got, want)
			}
			coordinator[co.Key] = co.NodeID
		}
		return true
	})
	distinct := map[int32][]string{}
	for _, k := range keys {
		distinct[coordinator[k]] = append(distinct[coordinator[k]], k)
	}
	if len(distinct) < 2 {
		t.Fatalf("all %d keys have one coordinator (%v): the batch checks nothing", len(keys), distinct)
	}
	// Keys of a type this broker does not coordinate are each answered
	// with an error.
	treq := kmsg.NewPtrFindCoordinatorRequest()
	treq.CoordinatorType = coordinatorTransaction
	treq.CoordinatorKeys = []string{"tx-1", "tx-2"}
	kresp, err := cl.Broker(1).Request(ctx, treq)
	if err != nil {
		t.Fatal(err)
	}
	if tr := kresp.(*kmsg.FindCoordinatorResponse); len(tr.Coordinators) != 2 || tr.Coordinators[0].Key != "tx-1" || tr.Coordinators[1].Key != "tx-2" ||
		tr.Coordinators[0].ErrorCode == 0 || tr.Coordinators[1].ErrorCode == 0 {
		t.Fatalf("transaction keys: %+v", tr.Coordinators)
	}

	// Two groups with one coordinator, a third with another.
	var gA, gB, gC string
	var x int32
	for id, ks := range distinct {
		if len(ks) >= 2 && gA == "" {
			x, gA, gB = id, ks[0], ks[1]
		}
	}
	for id, ks := range distinct {
		if id != x {
			gC = ks[0]
		}
	}
	if gA == "" || gC == "" {
		t.Fatalf("no two keys share a coordinator: %v", distinct)
	}
	commit := func(g string, os kadm.Offsets) {
		t.Helper()
		resp, err := adm.CommitOffsets(ctx, g, os)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatalf("committing for %s: %v", g, err)
		}
	}
	offs := func(parts map[int32]int64, meta string) kadm.Offsets {
		os := kadm.Offsets{}
		for p, at := range parts {
			os.Add(kadm.Offset{Topic: "of", Partition: p, At: at, LeaderEpoch: -1, Metadata: meta})
		}
		return os
	}
	commit(gA, offs(map[int32]int64{0: 5, 1: 7}, "meta-a"))
	commit(gB, offs(map[int32]int64{2: 9}, "meta-b"))
	commit(gC, offs(map[int32]int64{0: 11}, "meta-c"))

	multi := func() *kmsg.OffsetFetchRequest {
		req := kmsg.NewPtrOffsetFetchRequest()
		a := kmsg.NewOffsetFetchRequestGroup()
		a.Group = gA
		at := kmsg.NewOffsetFetchRequestGroupTopic()
		at.Topic, at.Partitions = "of", []int32{0, 1, 2}
		a.Topics = append(a.Topics, at)
		b := kmsg.NewOffsetFetchRequestGroup()
		b.Group = gB // Topics nil: every committed offset
		cg := kmsg.NewOffsetFetchRequestGroup()
		cg.Group = gC
		req.Groups = append(req.Groups, a, b, cg)
		return req
	}
	// check compares one group's answer with what was committed.
	check := func(rg kmsg.OffsetFetchResponseGroup, want map[int32]int64, meta string) {
		t.Helper()
		if rg.ErrorCode != 0 {
			t.Fatalf("group %s: %v", rg.Group, kerr.ErrorForCode(rg.ErrorCode))
		}
		got := map[int32]int64{}
		for _, rt := range rg.Topics {
			if rt.Topic != "of" {
				t.Fatalf("group %s: offsets of topic %s, which it never committed", rg.Group, rt.Topic)
			}
			for _, rp := range rt.Partitions {
				if rp.ErrorCode != 0 {
					t.Fatalf("group %s of-%d: %v", rg.Group, rp.Partition, kerr.ErrorForCode(rp.ErrorCode))
				}
				if rp.Offset >= 0 {
					got[rp.Partition] = rp.Offset
					if rp.Metadata == nil || *rp.Metadata != meta {
						t.Fatalf("group %s of-%d: metadata %v, want %q", rg.Group, rp.Partition, rp.Metadata, meta)
					}
				}
			}
		}
		if len(got) != len(want) {
			t.Fatalf("group %s: offsets %v, want %v", rg.Group, got, want)
		}
		for p, at := range want {
			if got[p] != at {
				t.Fatalf("group %s: offsets %v, want %v", rg.Group, got, want)
			}
		}
	}
	byGroup := func(resp *kmsg.OffsetFetchResponse) map[string]kmsg.OffsetFetchResponseGroup {
		t.Helper()
		if v := resp.GetVersion(); v < 8 {
			t.Fatalf("OffsetFetch went out as v%d; several groups need v8+", v)
		}
		out := map[string]kmsg.OffsetFetchResponseGroup{}
		for _, rg := range resp.Groups {
			out[rg.Group] = rg
		}
		if len(out) != 3 || len(resp.Groups) != 3 {
			t.Fatalf("answers for groups %v, want one each for %s, %s and %s", resp.Groups, gA, gB, gC)
		}
		return out
	}

	// Straight to the coordinator of gA and gB: both answered, gC
	// (coordinated elsewhere) refused alone.
	kresp, err = cl.Broker(int(x)).Request(ctx, multi())
	if err != nil {
		t.Fatal(err)
	}
	gs := byGroup(kresp.(*kmsg.OffsetFetchResponse))
	check(gs[gA], map[int32]int64{0: 5, 1: 7}, "meta-a")
	check(gs[gB], map[int32]int64{2: 9}, "meta-b")
	if code := gs[gC].ErrorCode; code != kerr.NotCoordinator.Code {
		t.Fatalf("group %s from broker %d, which does not coordinate it: %v, want NOT_COORDINATOR", gC, x, kerr.ErrorForCode(code))
	}

	// Through the client, which sends each coordinator its groups in one
	// request and merges the answers: all three answered.
	kresp, err = cl.Request(ctx, multi())
	if err != nil {
		t.Fatal(err)
	}
	gs = byGroup(kresp.(*kmsg.OffsetFetchResponse))
	check(gs[gA], map[int32]int64{0: 5, 1: 7}, "meta-a")
	check(gs[gB], map[int32]int64{2: 9}, "meta-b")
	check(gs[gC], map[int32]int64{0: 11}, "meta-c")
}

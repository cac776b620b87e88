package broker

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func plainDial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// TestReplicaConnFetches: the replica connection agrees on the newest
// Fetch version and decodes answers in place.
func TestReplicaConnFetches(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, newAdmin(t, b), "rc", 1, nil)
	cl := newClient(t, b)
	for i := 0; i < 3; i++ {
		if err := cl.ProduceSync(testCtx(t), &kgo.Record{Topic: "rc", Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := dialReplica(testCtx(t), plainDial, b.Addr(), "replica-conn-test", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.close()
	if want := apiVersions[kmsg.Fetch.Int16()].max; rc.version != want {
		t.Fatalf("agreed Fetch v%d, want v%d", rc.version, want)
	}
	tp := b.meta.lookup("rc")
	for round := 0; round < 2; round++ { // the connection is reused
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID, req.ReplicaState.ID = -1, -1
		req.MaxBytes, req.SessionEpoch = 1<<20, -1
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic, ft.TopicID = "rc", tp.id
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.PartitionMaxBytes, fp.CurrentLeaderEpoch = 1<<20, -1
		ft.Partitions = append(ft.Partitions, fp)
		req.Topics = append(req.Topics, ft)
		resp, buf, err := rc.fetch(testCtx(t), req, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.HighWatermark != 3 || countBatches(t, p.RecordBatches) != 3 {
			t.Fatalf("round %d: error %d, high watermark %d, %d bytes of batches", round, p.ErrorCode, p.HighWatermark, len(p.RecordBatches))
		}
		putBuf(buf)
	}
}

// fakeLeader accepts one connection and answers its first request with
// answer (nil: never answers).
func fakeLeader(t *testing.T, answer func(corr int32) []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		var size [4]byte
		if _, err := io.ReadFull(nc, size[:]); err != nil {
			return
		}
		frame := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(nc, frame); err != nil {
			return
		}
		if answer == nil {
			io.Copy(io.Discard, nc) // until the client gives up
			return
		}
		nc.Write(answer(int32(binary.BigEndian.Uint32(frame[4:]))))
	}()
	return ln.Addr().String()
}

// TestReplicaConnRefusesOldLeader: a leader without Fetch v12 (no last
// fetched epoch, so no divergence detection) is refused with the reason.
func TestReplicaConnRefusesOldLeader(t *testing.T) {
	addr := fakeLeader(t, func(corr int32) []byte {
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(3)
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MaxVersion = kmsg.Fetch.Int16(), 11
		resp.ApiKeys = append(resp.ApiKeys, k)
		body := resp.AppendTo(binary.BigEndian.AppendUint32(nil, uint32(corr)))
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	})
	_, err := dialReplica(testCtx(t), plainDial, addr, "replica-conn-test", 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "v11") {
		t.Fatalf("dial to a leader with Fetch v11: %v; want a refusal naming the version", err)
	}
}

// TestReplicaConnTimesOut: a leader that never answers fails the request
// after its timeout instead of hanging the fetcher.
func TestReplicaConnTimesOut(t *testing.T) {
	addr := fakeLeader(t, nil)
	_, err := dialReplica(testCtx(t), plainDial, addr, "replica-conn-test", 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("dial to a silent leader: %v; want a deadline error", err)
	}
}

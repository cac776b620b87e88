package broker

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestParseHeader: every implemented API and version parses with the
// header kmsg writes for it (v1, or v2 for flexible versions), and the
// client id is kept, changed and cleared as the requests say.
func TestParseHeader(t *testing.T) {
	var req request
	for key, r := range apiVersions {
		for v := r.min; v <= r.max; v++ {
			kreq := kmsg.RequestForKey(key)
			kreq.SetVersion(v)
			if got := v >= flexibleFrom[key]; got != kreq.IsFlexible() {
				t.Fatalf("%s v%d: flexible %v, kmsg says %v", kmsg.NameForKey(key), v, got, kreq.IsFlexible())
			}
			frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("id-1")).AppendRequest(nil, kreq, 42)[4:]
			if err := parseHeader(frame, &req); err != nil {
				t.Fatalf("%s v%d: %v", kmsg.NameForKey(key), v, err)
			}
			if req.key != key || req.version != v || req.corr != 42 || req.clientID != "id-1" {
				t.Fatalf("%s v%d: parsed %+v", kmsg.NameForKey(key), v, req)
			}
			body := kreq.AppendTo(nil)
			if string(req.body) != string(body) {
				t.Fatalf("%s v%d: body %x, want %x", kmsg.NameForKey(key), v, req.body, body)
			}
		}
	}
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("id-2")).AppendRequest(nil, kmsg.NewPtrMetadataRequest(), 1)[4:]
	if err := parseHeader(frame, &req); err != nil || req.clientID != "id-2" {
		t.Fatalf("changed client id: %q, %v", req.clientID, err)
	}
	frame = kmsg.NewRequestFormatter().AppendRequest(nil, kmsg.NewPtrMetadataRequest(), 1)[4:] // null client id
	if err := parseHeader(frame, &req); err != nil || req.clientID != "" {
		t.Fatalf("null client id: %q, %v", req.clientID, err)
	}
	if err := parseHeader(frame[:9], &req); err == nil {
		t.Fatal("truncated header parsed")
	}
}

// BenchmarkParseHeader parses a produce request header (v9, flexible) with
// the connection's request struct reused, as serve does.
func BenchmarkParseHeader(b *testing.B) {
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("bench-client")).
		AppendRequest(nil, produceReq("t", 0, makeBatch(-1, -1, -1, 1, []byte("v"))), 1)[4:]
	var req request
	b.ReportAllocs()
	for range b.N {
		if err := parseHeader(frame, &req); err != nil {
			b.Fatal(err)
		}
	}
}

package broker

import (
	"net"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzRequest feeds arbitrary request frames (header and body) through the
// broker's header parser, decoder and handlers, against a real broker with
// a topic. Whatever the bytes, the broker must not panic: it either answers
// or reports an error that closes the connection.
func FuzzRequest(f *testing.F) {
	seed := func(req kmsg.Request) {
		fm := kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz"))
		frame := fm.AppendRequest(nil, req, 1)
		f.Add(frame[4:]) // without the size prefix
	}
	for key := int16(0); key < 100; key++ {
		r, ok := apiVersions[key]
		if !ok {
			continue
		}
		for v := r.min; v <= r.max; v++ {
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			seed(req)
		}
	}
	for _, v := range []int16{3, 9, 13} {
		req := produceReq("fuzz", 0, makeBatch(-1, -1, -1, 2, []byte("seed")))
		req.SetVersion(v)
		seed(req)
	}
	md := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("fuzz")
	md.Topics = append(md.Topics, mt)
	seed(md)

	b := startBroker(f, "", func(c *Config) { c.AutoCreateTopics = false })
	brokerTopic(f, b, "fuzz", 2, nil)
	client, server := net.Pipe()
	defer client.Close()
	c := newConn(b, server)
	c.stop() // long-poll fetches return at once on a stopped connection
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 8 {
			return // the reader rejects these before parsing
		}
		var x exchange
		if err := parseHeader(frame, &x.req); err != nil {
			return
		}
		if err := c.handle(&x); err != nil {
			return
		}
		if x.await != nil {
			x.await()
		}
		if out := c.encode(&x); out != nil {
			out.done()
		}
	})
}

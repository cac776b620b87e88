package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// replicaConn is a replica fetcher's connection to its leader. A fetcher
// has one fetch in flight at a time, so the connection is driven by the
// fetcher's own goroutine: it writes a request and reads the answer, with
// no goroutines of its own. (A general client such as kgo hands each
// request to a writer goroutine and each answer back from a reader
// goroutine; on the replication path every such hop is latency that an
// acks=all produce waits through, twice per round trip.) The answer is
// read into a pooled buffer and decoded in place: its record batches
// alias the buffer until the fetcher has appended them.
type replicaConn struct {
	nc      net.Conn
	r       *bufio.Reader
	format  *kmsg.RequestFormatter
	corr    int32
	version int16 // of Fetch, agreed with the leader
	wbuf    []byte
}

// replicaFetchMinVersion is the oldest Fetch a leader must speak: v12
// carries the follower's last fetched epoch and the diverging epoch
// (KIP-320 in the fetch itself).
const replicaFetchMinVersion = 12

// dialReplica connects to a leader and agrees on the Fetch version with
// ApiVersions (the newest both speak).
func dialReplica(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), endpoint, clientID string, timeout time.Duration) (*replicaConn, error) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := dial(dctx, "tcp", endpoint)
	if err != nil {
		return nil, err
	}
	rc := &replicaConn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), format: kmsg.NewRequestFormatter(kmsg.FormatterClientID(clientID))}
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	req.ClientSoftwareName, req.ClientSoftwareVersion = "vigil-replica-fetcher", "1"
	resp := kmsg.NewPtrApiVersionsResponse()
	buf, err := rc.roundTrip(ctx, req, resp, timeout)
	putBuf(buf)
	if err == nil && resp.ErrorCode != 0 {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("ApiVersions with the leader at %s: %w", endpoint, err)
	}
	rc.version = -1
	for _, k := range resp.ApiKeys {
		if k.ApiKey == kmsg.Fetch.Int16() {
			rc.version = min(k.MaxVersion, apiVersions[kmsg.Fetch.Int16()].max)
		}
	}
	if rc.version < replicaFetchMinVersion {
		nc.Close()
		return nil, fmt.Errorf("the leader at %s speaks Fetch up to v%d; replication needs v%d or later", endpoint, rc.version, replicaFetchMinVersion)
	}
	return rc, nil
}

// fetch sends a replica fetch and returns its answer, whose record batches
// live in the returned buffer (give it back with putBuf once they are
// appended). An error leaves the connection unusable: close it.
func (rc *replicaConn) fetch(ctx context.Context, req *kmsg.FetchRequest, timeout time.Duration) (*kmsg.FetchResponse, *[]byte, error) {
	req.SetVersion(rc.version)
	resp := kmsg.NewPtrFetchResponse()
	buf, err := rc.roundTrip(ctx, req, resp, timeout)
	if err != nil {
		putBuf(buf)
		return nil, nil, err
	}
	return resp, buf, nil
}

// roundTrip writes req and decodes its answer into resp (in place, aliasing
// the returned buffer). The connection is closed when ctx ends or timeout
// passes first, which also ends an operation held by an injected network
// fault.
func (rc *replicaConn) roundTrip(ctx context.Context, req kmsg.Request, resp kmsg.Response, timeout time.Duration) (*[]byte, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := context.AfterFunc(rctx, func() { rc.nc.Close() })
	defer stop()

	rc.corr++
	rc.wbuf = rc.format.AppendRequest(rc.wbuf[:0], req, rc.corr)
	if _, err := rc.nc.Write(rc.wbuf); err != nil {
		return nil, rc.failed(rctx, err)
	}
	var size [4]byte
	if _, err := io.ReadFull(rc.r, size[:]); err != nil {
		return nil, rc.failed(rctx, err)
	}
	n := int(binary.BigEndian.Uint32(size[:]))
	if n < 4 || n > 1<<30 {
		return nil, fmt.Errorf("answer of %d bytes from the leader", n)
	}
	buf := getBuf(n)
	*buf = (*buf)[:n]
	if _, err := io.ReadFull(rc.r, *buf); err != nil {
		return buf, rc.failed(rctx, err)
	}
	body := *buf
	if corr := int32(binary.BigEndian.Uint32(body)); corr != rc.corr {
		return buf, fmt.Errorf("answer with correlation id %d to request %d", corr, rc.corr)
	}
	body = body[4:]
	resp.SetVersion(req.GetVersion())
	if resp.IsFlexible() && req.Key() != kmsg.ApiVersions.Int16() {
		// The response header's tagged fields.
		r := kbin.Reader{Src: body}
		kmsg.SkipTags(&r)
		if err := r.Complete(); err != nil {
			return buf, fmt.Errorf("answer header: %w", err)
		}
		body = r.Src
	}
	var err error
	if u, ok := resp.(interface{ UnsafeReadFrom([]byte) error }); ok {
		err = u.UnsafeReadFrom(body)
	} else {
		err = resp.ReadFrom(body)
	}
	if err != nil {
		return buf, fmt.Errorf("malformed %s answer: %w", kmsg.NameForKey(req.Key()), err)
	}
	return buf, nil
}

// failed names why an operation on the connection failed: the timeout or
// cancellation that closed it, or err.
func (rc *replicaConn) failed(ctx context.Context, err error) error {
	if cerr := context.Cause(ctx); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

func (rc *replicaConn) close() { rc.nc.Close() }

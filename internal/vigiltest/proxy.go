package vigiltest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a target address and can freeze them:
// a frozen proxy accepts connections and keeps them open but passes no
// byte either way until it is thawed — a broker that hangs without closing
// its connections, the gray failure that timeouts must catch. Advertise a
// broker through it (broker.Config.Advertise) to freeze everything that
// reaches the broker from outside.
type Proxy struct {
	t      testing.TB
	ln     net.Listener
	target chan string // receives the target once; then closed
	addr   string

	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
	closed bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

// NewProxy listens on a loopback port; SetTarget says where to forward.
// The proxy is closed when the test ends.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, ln: ln, target: make(chan string, 1)}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr returns the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget sets the address to forward to; connections accepted before
// wait for it.
func (p *Proxy) SetTarget(addr string) { p.target <- addr }

// Freeze stops every byte, in both directions, on every connection, old
// and new.
func (p *Proxy) Freeze() { p.setFrozen(true) }

// Thaw lets the bytes held back and every later one through.
func (p *Proxy) Thaw() { p.setFrozen(false) }

func (p *Proxy) setFrozen(f bool) {
	p.mu.Lock()
	p.frozen = f
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.addr == "" {
			addr, ok := <-p.target
			if !ok {
				c.Close()
				return
			}
			p.addr = addr
		}
		up, err := net.Dial("tcp", p.addr)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		p.wg.Add(2)
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

// track records the connections to close; false once the proxy is closed.
func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

// pipe copies src to dst, holding every chunk while the proxy is frozen.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.frozen && !p.closed {
			p.cond.Wait()
		}
		p.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				src.Close()
			}
			return
		}
	}
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.mu.Unlock()
	p.cond.Broadcast()
	p.ln.Close()
	close(p.target)
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

package pgtest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// Exchanges counts what clients ask of a PostgreSQL server through a CountingProxy: the sessions
// they open (each a backend the server starts) and the requests the server answers. A request is
// a simple query ('Q', a pgx ping among them) or the Sync ('S') that ends an extended-protocol
// statement or batch: the client then waits for the server, so each is one round trip.
// pg_stat_statements cannot count these: it leaves out pings, and a statement that failed.
type Exchanges struct {
	sessions, requests atomic.Int64
}

// Sessions is how many sessions were started through the proxy so far.
func (e *Exchanges) Sessions() int64 { return e.sessions.Load() }

// Requests is how many requests went through the proxy so far.
func (e *Exchanges) Requests() int64 { return e.requests.Load() }

// The codes of the untyped messages a client may send before its startup message, from the
// protocol's message formats: requests for encryption the server may refuse ('N') on the same
// connection, and a cancel request, which is a connection of its own and no session.
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
)

// CountingProxy forwards connections to the server of dbURL (a URL as Server.URL gives, without
// TLS) and counts them; it returns the URL to give clients instead. It stops, closing every
// connection, when the test ends.
//
// The framing is read by hand rather than through pgx's pgproto3: the proxy forwards each
// message's bytes as they came, and only needs a message's type and length, which a decoder
// would turn into values to encode again.
func CountingProxy(tb testing.TB, dbURL string) (*Exchanges, string) {
	tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &proxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.close)
	u.Host = ln.Addr().String()
	return &p.counts, u.String()
}

type proxy struct {
	target string
	ln     net.Listener
	counts Exchanges
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, s) {
			return
		}
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(c, s)
			p.drop(c, s)
		}()
		go func() {
			defer p.wg.Done()
			_ = p.forward(s, c)
			p.drop(c, s)
		}()
	}
}

// track registers a connection pair, or closes it when the proxy is closing.
func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// drop closes a pair once either side has ended: a client's Terminate or a server that went away
// ends both.
func (p *proxy) drop(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// forward copies what the client sends to the server, message by message, counting the session
// and its requests. What it has read is written on once nothing more is buffered, so messages
// the client sent together reach the server together.
func (p *proxy) forward(server io.Writer, client io.Reader) error {
	r, w := bufio.NewReader(client), bufio.NewWriter(server)
	msg := make([]byte, 0, 512)
	var hdr [8]byte
	startup := true
	for {
		// Before the startup message: a length and a code. After it: a type and a length.
		head := hdr[:5]
		if startup {
			head = hdr[:8]
		}
		if _, err := io.ReadFull(r, head); err != nil {
			return err
		}
		var n uint32
		if startup {
			n = binary.BigEndian.Uint32(head[:4])
		} else {
			n = binary.BigEndian.Uint32(head[1:5])
		}
		if n < 4 {
			return fmt.Errorf("a message of length %d", n)
		}
		body := int(n) - 4
		if startup {
			body -= 4 // the code read with the length
			if body < 0 {
				return errors.New("an untyped message shorter than its code")
			}
		}
		msg = slices.Grow(msg[:0], len(head)+body)[:len(head)+body]
		copy(msg, head)
		if _, err := io.ReadFull(r, msg[len(head):]); err != nil {
			return err
		}
		if startup {
			switch binary.BigEndian.Uint32(head[4:8]) {
			case sslRequestCode, gssEncRequestCode:
				// Refused on a server without TLS, and the client goes on in the clear.
			case cancelRequestCode:
			default:
				p.counts.sessions.Add(1)
				startup = false
			}
		} else if head[0] == 'Q' || head[0] == 'S' {
			p.counts.requests.Add(1)
		}
		if _, err := w.Write(msg); err != nil {
			return err
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
}

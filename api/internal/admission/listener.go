package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/openpassport/prover-fleet/api/protocol"
)

// Listener wraps ln: it holds at most MaxConns connections and
// MaxConnsPerSource from one peer (trusted proxies excepted: they carry
// many clients, whose WebSockets are counted per source when they are
// upgraded), answers a connection over a limit with an HTTP 503 whose body
// is a JSON-RPC -32000 error, and closes it. With ProxyProtocol, a trusted
// proxy's connections must start with a PROXY header (read by
// github.com/pires/go-proxyproto when the server first reads, never in
// Accept), whose source address then is the connection's RemoteAddr.
func (a *Admission) Listener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, a: a}
}

type listener struct {
	net.Listener
	a *Admission
}

// Accept returns the next connection within the limits; the others are
// answered and closed here without returning.
func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		conn, err := l.a.admit(c)
		if err != nil {
			refuseConn(c, err)
			continue
		}
		return conn, nil
	}
}

// admit counts c and wraps it; it returns the refusal otherwise.
func (a *Admission) admit(c net.Conn) (net.Conn, error) {
	ip, trusted := a.peer(c.RemoteAddr())
	if n := a.conns.Add(1); a.cfg.MaxConns > 0 && n > int64(a.cfg.MaxConns) {
		a.conns.Add(-1)
		return nil, a.refuse(ErrConns)
	}
	release := func() {}
	if !trusted {
		r, err := a.acquire(a.Key(ip), func(e *entry) *int32 { return &e.conns })
		if err != nil {
			a.conns.Add(-1)
			return nil, err
		}
		release = r
	}
	var out net.Conn = &conn{Conn: c, release: func() { release(); a.conns.Add(-1) }}
	if trusted && a.cfg.ProxyProtocol {
		out = proxyproto.NewConn(out,
			proxyproto.WithPolicy(proxyproto.REQUIRE),
			proxyproto.SetReadHeaderTimeout(a.cfg.ProxyHeaderTimeout))
	}
	return out, nil
}

// conn releases its place once, when it is closed.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Message is the JSON-RPC error message (code -32000, server busy) a
// refusal is answered with.
func Message(err error) string {
	switch {
	case errors.Is(err, ErrConns):
		return protocol.MsgConnsBusy
	case errors.Is(err, ErrSourceConns):
		return protocol.MsgSourceConnsBusy
	case errors.Is(err, ErrHelloRate):
		return protocol.MsgHelloRate
	case errors.Is(err, ErrSources):
		return protocol.MsgClientsBusy
	}
	return protocol.MsgServerBusy
}

// refuseConn answers a refused connection with an HTTP 503 (best effort:
// a fresh socket takes a small write at once, and the write is bounded)
// and closes it.
func refuseConn(c net.Conn, err error) {
	body, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": protocol.CodeServerBusy, "message": Message(err)},
	})
	resp := fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Write([]byte(resp))
	_ = c.Close()
}

// PeerKey is the source a listener would count a connection from addr
// under, and whether addr is a trusted proxy (for tests and logs).
func (a *Admission) PeerKey(addr net.Addr) (netip.Prefix, bool) {
	ip, trusted := a.peer(addr)
	return a.Key(ip), trusted
}

package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/api/server"
	"github.com/openpassport/prover-fleet/shared/store"
)

// events records what the frontend tells its Observer.
type events struct {
	mu      sync.Mutex
	refused map[string]int
	closed  map[string]int
	notify  chan string // closed WebSockets' reasons, as they happen
}

func newEvents() *events {
	return &events{refused: map[string]int{}, closed: map[string]int{}, notify: make(chan string, 1024)}
}

func (e *events) Call(string, int64, time.Duration) {}
func (e *events) Refused(reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.refused[reason]++
}

func (e *events) WebSocketClosed(reason string) {
	e.mu.Lock()
	e.closed[reason]++
	e.mu.Unlock()
	e.notify <- reason
}

func (e *events) refusals(reason string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.refused[reason]
}

// nextClose waits for the next closed WebSocket's reason.
func (e *events) nextClose(t *testing.T) string {
	t.Helper()
	select {
	case r := <-e.notify:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no WebSocket closed")
		return ""
	}
}

// loopback trusts the test's own address as a proxy, so that
// X-Forwarded-For names each test client's source.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// postFrom sends a POST with X-Forwarded-For: from.
func (e *env) postFrom(t *testing.T, from string, b []byte) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.HTTP.URL+"/", bytes.NewReader(b))
	must(t, err)
	req.Header.Set("X-Forwarded-For", from)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	must(t, err)
	var r reply
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("HTTP %d: %q: %v", resp.StatusCode, data, err)
	}
	return r
}

// dialFrom opens a WebSocket with X-Forwarded-For: from; a refused one
// returns the HTTP status and body.
func (e *env) dialFrom(t *testing.T, from string) (*websocket.Conn, int, string) {
	t.Helper()
	h := http.Header{}
	h.Set("X-Forwarded-For", from)
	c, resp, err := websocket.DefaultDialer.Dial(e.WSURL(), h)
	if err != nil {
		if resp == nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, resp.StatusCode, string(b)
	}
	resp.Body.Close()
	t.Cleanup(func() { c.Close() })
	return c, http.StatusSwitchingProtocols, ""
}

// TestFloodFromOneSource: one source's hellos stop at its share (the hello
// rate, then its sessions) while other sources are served, over both
// transports; the refusals are counted by reason and carry -32000.
func TestFloodFromOneSource(t *testing.T) {
	t.Parallel()
	ev := newEvents()
	e := setup(t, options{MaxSessions: 200, Observer: ev, Frontend: func(c *server.Config) {
		c.TrustedProxies = loopback
		c.MaxSessionsPerSource, c.SessionShare = 8, -1
		c.HelloRate, c.HelloBurst = 0.001, 12
	}})
	key := clientKey(t)
	hello := func(from string) reply {
		return e.postFrom(t, from, helloBody(t, key, uuid.NewString()))
	}
	// 8 sessions, then the session cap; 12 handshakes, then the rate.
	for range 8 {
		wantResult(t, hello("198.51.100.1"), nil)
	}
	for range 4 {
		wantError(t, hello("198.51.100.1"), -32000, protocol.MsgSourceBusy)
	}
	for range 5 {
		wantError(t, hello("198.51.100.1"), -32000, protocol.MsgHelloRate)
	}
	// Over a WebSocket from the same source: the same refusal.
	ws, code, _ := e.dialFrom(t, "198.51.100.1")
	if ws == nil {
		t.Fatalf("WebSocket refused with HTTP %d", code)
	}
	tr := &wsTransport{c: ws}
	wantError(t, tr.send(t, helloBody(t, key, uuid.NewString())), -32000, protocol.MsgHelloRate)
	// Other sources are served meanwhile, over both transports.
	for i := range 20 {
		wantResult(t, hello(fmt.Sprintf("203.0.113.%d", i+1)), nil)
	}
	other, _, _ := e.dialFrom(t, "2001:db8:1::7")
	s := e.hello(t, &wsTransport{c: other}, uuid.NewString())
	wantResult(t, (&wsTransport{c: other}).send(t, s.submitBody(t, request("register", "register_demo", `{"a":"1"}`, nil))), nil)
	if got := ev.refusals("source_sessions"); got != 4 {
		t.Errorf("source_sessions refusals = %d, want 4", got)
	}
	if got := ev.refusals("hello_rate"); got != 6 {
		t.Errorf("hello_rate refusals = %d, want 6", got)
	}
	if n := e.Server.Sessions(); n != 8+20 {
		t.Fatalf("%d sessions open, want %d", n, 8+20)
	}
}

// TestFloodFromManySources: many sources together cannot fill the session
// table: the share rule stops them with free slots left, and a new source
// is served.
func TestFloodFromManySources(t *testing.T) {
	t.Parallel()
	ev := newEvents()
	e := setup(t, options{MaxSessions: 300, Observer: ev, Frontend: func(c *server.Config) {
		c.TrustedProxies = loopback
		c.MaxSessionsPerSource, c.SessionShare = -1, 8
	}})
	key := clientKey(t)
	const sources = 40
	refused := map[int]bool{}
	for round := 0; len(refused) < sources && round < 100; round++ {
		for i := range sources {
			if refused[i] {
				continue
			}
			r := e.postFrom(t, fmt.Sprintf("198.51.100.%d", i+1), helloBody(t, key, uuid.NewString()))
			if r.Error != nil {
				if r.Error.Code != -32000 || r.Error.Message != protocol.MsgSourceBusy {
					t.Fatalf("source %d refused with %+v", i, r.Error)
				}
				refused[i] = true
			}
		}
	}
	if len(refused) != sources {
		t.Fatalf("%d of %d flooding sources were stopped", len(refused), sources)
	}
	free := 300 - e.Server.Sessions()
	// 40 sources at n each stop when n×8 ≥ 300 − 40n: n = 5, 100 free.
	if free < 300*8/(8+sources)-sources {
		t.Fatalf("the flood left %d free slots", free)
	}
	for i := range 20 {
		wantResult(t, e.postFrom(t, fmt.Sprintf("203.0.113.%d", i+1), helloBody(t, key, uuid.NewString())), nil)
	}
}

// TestWebSocketsPerSource: a source holds at most its WebSockets; the next
// is answered 503 with a JSON-RPC -32000 body; others still connect; a
// closed one frees its place.
func TestWebSocketsPerSource(t *testing.T) {
	t.Parallel()
	ev := newEvents()
	e := setup(t, options{Observer: ev, Frontend: func(c *server.Config) {
		c.TrustedProxies = loopback
		c.MaxConnectionsPerSource = 3
	}})
	var held []*websocket.Conn
	for range 3 {
		c, code, body := e.dialFrom(t, "198.51.100.1")
		if c == nil {
			t.Fatalf("WebSocket refused: %d %s", code, body)
		}
		held = append(held, c)
	}
	_, code, body := e.dialFrom(t, "198.51.100.1")
	var r reply
	if code != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &r) != nil || r.Error == nil ||
		r.Error.Code != -32000 || r.Error.Message != protocol.MsgSourceConnsBusy {
		t.Fatalf("fourth WebSocket: HTTP %d %s", code, body)
	}
	if c, code, _ := e.dialFrom(t, "198.51.100.2"); c == nil {
		t.Fatalf("another source refused: %d", code)
	}
	held[0].Close()
	if r := ev.nextClose(t); r != "client" {
		t.Fatalf("closed WebSocket's reason %q, want client", r)
	}
	if c, code, _ := e.dialFrom(t, "198.51.100.1"); c == nil {
		t.Fatalf("a freed place was not reused: %d", code)
	}
	if ev.refusals("source_connections") != 1 {
		t.Fatalf("refusals %v", ev.refused)
	}
}

// readClose reads until the socket ends and returns the close frame's code
// and text (0 and the error when none came).
func readClose(t *testing.T, c *websocket.Conn) (int, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		return 0, err.Error()
	}
}

// TestIdleWebSockets: an idle socket is closed after IdleTimeout; one that
// opened a session stays until the session's window ends, however long;
// one that holds a subscription stays while it answers pings; one whose
// client never answers a ping is closed after PongTimeout.
func TestIdleWebSockets(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	ev := newEvents()
	e := setup(t, options{SessionTTL: 3 * time.Second, Observer: ev, Frontend: func(c *server.Config) {
		c.IdleTimeout = idle
		c.PingInterval, c.PongTimeout = 100*time.Millisecond, 400*time.Millisecond
	}})

	t.Run("idle", func(t *testing.T) {
		// From before the dial: the server's idle clock starts when it
		// upgrades the socket, which can be a few ms before the dial
		// returns on a loaded machine (a failure in CI: closed "after"
		// 294 ms of a 300 ms timeout, timed from after the dial).
		start := time.Now()
		c := e.dialWS()
		code, text := readClose(t, c.c) // the client answers pings while it reads
		if code != websocket.CloseNormalClosure || text != "idle timeout" {
			t.Fatalf("idle socket ended with %d %q, want 1000 \"idle timeout\"", code, text)
		}
		if took := time.Since(start); took < idle {
			t.Fatalf("closed after %s, before the idle timeout", took)
		}
		if r := ev.nextClose(t); r != "idle" {
			t.Fatalf("reason %q, want idle", r)
		}
	})
	t.Run("a session keeps its socket", func(t *testing.T) {
		c := e.dialWS()
		s := e.hello(t, c, uuid.NewString())
		// Read (answering pings) for 5 idle timeouts: still open.
		_ = c.c.SetReadDeadline(time.Now().Add(5 * idle))
		if _, _, err := c.c.ReadMessage(); !isTimeout(err) {
			t.Fatalf("socket with an open session: %v, want it still open", err)
		}
		// The deadline broke this gorilla connection's reads: a new one
		// checks the same rule while a goroutine reads (and so answers
		// pings), then the submit ends the session and the socket is
		// idle again.
		c2 := e.dialWS()
		s2 := e.hello(t, c2, uuid.NewString())
		msgs := readAll(c2.c)
		select {
		case m := <-msgs:
			t.Fatalf("socket with an open session: %+v before its submit", m)
		case <-time.After(5 * idle):
		}
		c2.write(t, websocket.TextMessage, s2.submitBody(t, request("register", "register_demo", `{"a":"1"}`, nil)))
		if m := <-msgs; m.err != nil || !strings.Contains(string(m.data), s2.uuid) {
			t.Fatalf("submit answer %+v", m)
		}
		m := <-msgs
		var ce *websocket.CloseError
		if !errors.As(m.err, &ce) || ce.Code != websocket.CloseNormalClosure || ce.Text != "idle timeout" {
			t.Fatalf("socket after its submit ended with %v", m.err)
		}
		_ = s
		drainCloses(ev)
	})
	t.Run("a session's socket closes when the session expires", func(t *testing.T) {
		c := e.dialWS()
		start := time.Now()
		e.hello(t, c, uuid.NewString())
		code, text := readClose(t, c.c)
		if code != websocket.CloseNormalClosure || text != "idle timeout" || time.Since(start) < 3*time.Second {
			t.Fatalf("ended with %d %q after %s, want idle after the 3 s session window", code, text, time.Since(start))
		}
		drainCloses(ev)
	})
	t.Run("a subscription keeps its socket", func(t *testing.T) {
		c := e.dialWS()
		s := e.hello(t, c, uuid.NewString())
		wantResult(t, c.send(t, s.submitBody(t, request("register", "register_demo", `{"a":"1"}`, nil))), nil)
		wantResult(t, c.send(t, body(t, 2, protocol.MethodSubscribe, map[string]any{"uuid": s.uuid})), nil)
		_ = c.c.SetReadDeadline(time.Now().Add(4 * time.Second)) // past the session window too
		if _, _, err := c.c.ReadMessage(); !isTimeout(err) {
			t.Fatalf("subscribed socket: %v, want it still open", err)
		}
	})
	t.Run("no pong", func(t *testing.T) {
		drainCloses(ev)
		c := e.dialWS()
		e.hello(t, c, uuid.NewString()) // a session: the socket is not idle for 3 s
		// This client reads no more, so it answers no ping.
		if r := ev.nextClose(t); r != "pong_timeout" {
			t.Fatalf("reason %q, want pong_timeout", r)
		}
	})
}

type message struct {
	data []byte
	err  error
}

// readAll reads c until it fails, on a goroutine of its own.
func readAll(c *websocket.Conn) <-chan message {
	ch := make(chan message, 16)
	go func() {
		for {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, data, err := c.ReadMessage()
			ch <- message{data, err}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// drainCloses discards the close events already reported (of earlier
// subtests' sockets).
func drainCloses(ev *events) {
	for {
		select {
		case <-ev.notify:
		case <-time.After(200 * time.Millisecond):
			return
		}
	}
}

func storeRequest(id string) store.Request {
	return store.Request{ID: id, ProofType: "disclose", Circuit: "vc_and_disclose"}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestSlowReader: a client that sends requests but never reads the answers
// is disconnected once a write cannot finish within WriteTimeout, and the
// frontend carries on.
func TestSlowReader(t *testing.T) {
	t.Parallel()
	ev := newEvents()
	e := setup(t, options{Observer: ev, Frontend: func(c *server.Config) {
		c.WriteTimeout = 300 * time.Millisecond
	}})
	// A request whose status is large (a 1 MiB proof).
	id := uuid.NewString()
	must(t, e.Store.Insert(t.Context(), storeRequest(id)))
	big := `{"pi_a":["` + strings.Repeat("1", 1<<20) + `"]}`
	if _, err := e.Store.MarkProofGenerated(t.Context(), id, json.RawMessage(big), []string{"1"}); err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		return c, err
	}}
	c, resp, err := d.Dial(e.WSURL(), nil)
	must(t, err)
	resp.Body.Close()
	defer c.Close()
	req := body(t, 1, protocol.MethodStatus, map[string]any{"uuid": id})
	sent := 0
	for ; sent < 200; sent++ {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, req); err != nil {
			break // the server has given up on us
		}
		select {
		case r := <-ev.notify:
			if r != "write_failed" {
				t.Fatalf("reason %q, want write_failed", r)
			}
			if sent < 2 {
				t.Fatalf("closed after %d requests", sent)
			}
			// The frontend still serves others.
			wantResult(t, e.httpTransport().send(t, body(t, 1, protocol.MethodHealth, nil)), nil)
			return
		default:
		}
	}
	if r := ev.nextClose(t); r != "write_failed" {
		t.Fatalf("reason %q after %d requests, want write_failed", r, sent)
	}
}

// TestTrickledBody: a request whose body never arrives, on any path (net/
// http reads what a handler left of a body before it answers, with no
// deadline of its own), is cut off after ReadTimeout instead of holding
// its connection for ever.
func TestTrickledBody(t *testing.T) {
	t.Parallel()
	const readTimeout = 300 * time.Millisecond
	e := setup(t, options{Frontend: func(c *server.Config) {
		c.ReadTimeout = readTimeout
		c.WriteTimeout = 300 * time.Millisecond
	}})
	addr := strings.TrimPrefix(e.HTTP.URL, "http://")
	for _, head := range []string{
		"GET /v1/proofs/" + uuid.NewString() + " HTTP/1.1", // a path that never reads a body
		"GET /nowhere HTTP/1.1",                            // the mux's 404
		"POST / HTTP/1.1",                                  // JSON-RPC, which reads it
	} {
		c, err := net.Dial("tcp", addr)
		must(t, err)
		start := time.Now()
		fmt.Fprintf(c, "%s\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx", head)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadAll(c) // until the server closes the connection
		took := time.Since(start)
		c.Close()
		if err != nil {
			t.Fatalf("%s: the connection was not closed: %v after %s", head, err, took)
		}
		if took < readTimeout/2 {
			t.Fatalf("%s: closed after %s, before the body's deadline", head, took)
		}
	}

	// The frontend serves others.
	wantResult(t, e.httpTransport().send(t, body(t, 1, protocol.MethodHealth, nil)), nil)
}

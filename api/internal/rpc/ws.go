package rpc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sourcegraph/jsonrpc2"

	"github.com/openpassport/prover-fleet/api/internal/admission"
	"github.com/openpassport/prover-fleet/api/protocol"
)

// Why a WebSocket closed, as the prover_api_websockets_closed_total
// metric labels it.
const (
	closeClient      = "client"       // the client closed it, or the connection failed
	closeIdle        = "idle"         // nothing from the client for IdleTimeout (and no open session or subscription)
	closePongTimeout = "pong_timeout" // a ping went unanswered for PongTimeout
	closeReadTimeout = "read_timeout" // a message took longer than ReadTimeout to arrive
	closeWriteFailed = "write_failed" // a write did not finish within WriteTimeout (a client that does not read) or failed
	closeShutdown    = "shutdown"     // the server is shutting down
)

// wsConn is one WebSocket: requests are read and answered in order (the app
// sends hello and submit on one socket, both with id 1), while
// subscriptions write notifications from their own goroutines.
//
// An idle socket costs one goroutine (its reader, started afresh after the
// upgrade so that its stack is small), gorilla's connection with a small
// read buffer (write buffers come from a shared pool only while a message
// is written), a timer for pings and this struct: no goroutine of its own
// for pings, none for the HTTP server.
//
// Liveness: a ping every PingInterval, whose pong must come within
// PongTimeout. The socket is closed once the client has sent nothing for
// IdleTimeout, unless a session it opened is still open (then when that
// session expires, or IdleTimeout after its last message if later) or it
// holds a subscription (then as long as it answers pings). All of it is
// one read deadline, recomputed under mu whenever one of its inputs
// changes.
type wsConn struct {
	s       *Server
	conn    *websocket.Conn
	src     netip.Prefix
	release func() // the source's WebSocket slot
	ctx     context.Context
	cancel  context.CancelFunc

	writeMu sync.Mutex // one message at a time

	mu       sync.Mutex
	lastRead time.Time     // when the client's last message began
	pongDue  time.Time     // zero: no ping outstanding
	busy     bool          // a message is being read or answered
	sessions []openSession // sessions this socket opened and has not submitted
	subs     int
	reason   string // why it closed, once decided
	ping     *time.Timer
}

type openSession struct {
	id      string
	expires time.Time
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		writeJSON(w, http.StatusBadRequest, errorResponse(nil, rpcError(protocol.CodeInvalidRequest,
			"Invalid Request: open a WebSocket here, or POST a JSON-RPC request", "")))
		return
	}
	src := s.adm.Source(r)
	release, err := s.adm.AcquireWebSocket(src)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, errorResponse(nil, rpcError(protocol.CodeServerBusy, admission.Message(err), "")))
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		release()
		s.log.DebugContext(r.Context(), "websocket upgrade failed", "err", err)
		return // the upgrader has answered
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(s.base))
	c := &wsConn{s: s, conn: conn, src: src, release: release, ctx: ctx, cancel: cancel, lastRead: time.Now()}
	if !s.track(c) {
		c.reason = closeShutdown
		c.close(websocket.CloseGoingAway, "server shutting down")
		c.finish()
		return
	}
	// The HTTP server's goroutine ends here, with whatever stack it grew
	// parsing the request; the socket is read by a fresh one.
	go c.serve()
}

func (s *Server) track(c *wsConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *wsConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// WebSockets is the number of open WebSockets.
func (s *Server) WebSockets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// serve reads messages until the socket fails, closes or times out. A
// message that is not JSON, not a request, binary, or too large gets an
// error reply; the socket stays open.
func (c *wsConn) serve() {
	defer c.finish()
	c.conn.SetPongHandler(c.pong)
	c.mu.Lock()
	c.ping = time.AfterFunc(c.s.cfg.PingInterval, c.sendPing)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		c.busy = false
		_ = c.conn.SetReadDeadline(c.deadlineLocked(time.Now()))
		c.mu.Unlock()
		typ, r, err := c.conn.NextReader()
		if err != nil {
			c.readFailed(err)
			return
		}
		now := time.Now()
		c.mu.Lock()
		c.busy = true
		c.lastRead = now
		_ = c.conn.SetReadDeadline(now.Add(c.s.cfg.ReadTimeout))
		c.mu.Unlock()
		if !c.s.begin() {
			c.setReason(closeShutdown)
			return
		}
		ok := c.message(typ, r)
		c.s.inflight.Done()
		if !ok {
			return
		}
	}
}

// deadlineLocked is the read deadline: the earlier of the idle deadline and
// an outstanding ping's pong deadline (zero: none).
func (c *wsConn) deadlineLocked(now time.Time) time.Time {
	d := c.idleDeadlineLocked(now)
	if !c.pongDue.IsZero() && (d.IsZero() || c.pongDue.Before(d)) {
		d = c.pongDue
	}
	return d
}

// idleDeadlineLocked is when the socket counts as idle: IdleTimeout after
// the client's last message, or later while a session it opened is open;
// zero (never) while it holds a subscription.
func (c *wsConn) idleDeadlineLocked(now time.Time) time.Time {
	if c.subs > 0 {
		return time.Time{}
	}
	d := c.lastRead.Add(c.s.cfg.IdleTimeout)
	live := c.sessions[:0]
	for _, o := range c.sessions {
		if now.Before(o.expires) {
			live = append(live, o)
			if o.expires.After(d) {
				d = o.expires
			}
		}
	}
	clear(c.sessions[len(live):])
	c.sessions = live
	if len(c.sessions) == 0 {
		c.sessions = nil
	}
	return d
}

// rearmLocked applies a changed deadline unless a message is being read
// or answered (serve sets it again before the next read).
func (c *wsConn) rearmLocked(now time.Time) {
	if !c.busy {
		_ = c.conn.SetReadDeadline(c.deadlineLocked(now))
	}
}

// sendPing runs on the ping timer: it pings, and the pong must come within
// PongTimeout.
func (c *wsConn) sendPing() {
	now := time.Now()
	c.mu.Lock()
	if c.reason != "" {
		c.mu.Unlock()
		return
	}
	if c.pongDue.IsZero() {
		c.pongDue = now.Add(c.s.cfg.PongTimeout)
		c.rearmLocked(now)
	}
	c.ping.Reset(c.s.cfg.PingInterval)
	c.mu.Unlock()
	if err := c.conn.WriteControl(websocket.PingMessage, nil, now.Add(c.s.cfg.WriteTimeout)); err != nil {
		c.fail(closeWriteFailed)
	}
}

// pong is gorilla's pong handler; it runs on the reader's goroutine.
func (c *wsConn) pong(string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pongDue = time.Time{}
	c.rearmLocked(time.Now())
	return nil
}

// readFailed records why the read loop ends.
func (c *wsConn) readFailed(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		now := time.Now()
		c.mu.Lock()
		reason := closeIdle
		switch {
		case c.busy:
			reason = closeReadTimeout
		case !c.pongDue.IsZero() && !now.Before(c.pongDue):
			reason = closePongTimeout
		}
		c.mu.Unlock()
		c.setReason(reason)
		if reason == closeIdle {
			c.close(websocket.CloseNormalClosure, "idle timeout")
		}
		return
	}
	c.setReason(closeClient)
	if !websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) &&
		!errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.s.log.DebugContext(c.ctx, "websocket read ended", "err", err)
	}
}

// setReason records why the socket closes; the first reason wins.
func (c *wsConn) setReason(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason == "" {
		c.reason = reason
	}
}

// fail closes the socket at once (the reader then ends) for reason.
func (c *wsConn) fail(reason string) {
	c.setReason(reason)
	c.cancel()
	_ = c.conn.Close()
}

// finish runs once the reader has ended: it closes the socket, releases
// the source's slot, stops the ping timer and reports why it closed.
func (c *wsConn) finish() {
	c.mu.Lock()
	text := map[string]string{closePongTimeout: "no pong", closeReadTimeout: "read timeout"}[c.reason]
	c.mu.Unlock()
	c.close(websocket.CloseNormalClosure, text)
	c.mu.Lock()
	if c.ping != nil {
		c.ping.Stop()
	}
	reason := c.reason
	if reason == "" {
		reason = closeClient
	}
	c.sessions = nil
	c.mu.Unlock()
	c.release()
	c.s.untrack(c)
	c.s.closedObserved(reason)
}

// message reads and answers one message; false means the socket failed.
func (c *wsConn) message(typ int, r io.Reader) bool {
	// A message's bytes are not kept once it is answered (params, keys and
	// payloads are copied out of them), so the next message, on any
	// socket, may reuse its buffer. Buffers that grew past 64 KiB are not
	// kept.
	buf, _ := c.s.messageBuffers.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<10 {
			c.s.messageBuffers.Put(buf)
		}
	}()
	_, err := buf.ReadFrom(io.LimitReader(r, c.s.cfg.MaxBodyBytes+1))
	data := buf.Bytes()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.setReason(closeReadTimeout)
		}
		return false
	}
	var resp *response
	var after func()
	switch {
	case int64(len(data)) > c.s.cfg.MaxBodyBytes:
		// Drop the rest of the message; the socket stays usable.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return false
		}
		c.s.observe("", protocol.CodeInvalidRequest, time.Now())
		resp = errorResponse(nil, c.s.tooLarge())
	case typ == websocket.BinaryMessage:
		c.s.observe("", protocol.CodeParseError, time.Now())
		resp = errorResponse(nil, rpcError(protocol.CodeParseError,
			"Parse error: binary WebSocket messages are not supported, send JSON-RPC as text", ""))
	default:
		resp, after = c.s.handle(c.ctx, data, call{ws: c, src: c.src})
	}
	if resp != nil {
		err = c.write(resp)
	}
	if after != nil {
		// Also after a failed write: the subscription's goroutine then
		// sees the connection's context end and releases its watch.
		after()
	}
	return err == nil
}

// write sends one message within WriteTimeout. A write that fails (a
// client that does not read fills its buffers and the deadline passes)
// closes the socket.
func (c *wsConn) write(v any) error {
	data, release, err := encode(v)
	if err != nil {
		return err
	}
	defer release() // gorilla copies the message into its frame buffer
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.ctx.Err() != nil {
		return c.ctx.Err()
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	if err := c.conn.WriteMessage(websocket.TextMessage, data); err != nil {
		c.s.log.DebugContext(c.ctx, "websocket write failed", "err", err)
		c.fail(closeWriteFailed)
		return err
	}
	return nil
}

// notify sends a JSON-RPC notification.
func (c *wsConn) notify(method string, params any) error {
	req := &jsonrpc2.Request{Method: method, Notif: true}
	if err := req.SetParams(params); err != nil {
		return err
	}
	return c.write(req)
}

// opened records a session this socket opened: the socket stays open while
// it waits for its submit.
func (c *wsConn) opened(id string, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sessions = append(c.sessions, openSession{id: id, expires: expires})
}

// submitted forgets a session: any submit ends it.
func (c *wsConn) submitted(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, o := range c.sessions {
		if o.id == id {
			c.sessions = append(c.sessions[:i], c.sessions[i+1:]...)
			return
		}
	}
}

func (c *wsConn) addSubscription(limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs >= limit {
		return false
	}
	c.subs++
	return true
}

// doneSubscription ends a subscription; the idle time counts from now.
func (c *wsConn) doneSubscription() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subs--
	now := time.Now()
	if now.After(c.lastRead) {
		c.lastRead = now
	}
	c.rearmLocked(now)
}

// close sends a close frame (best effort, within a second) and closes the
// socket; the context of the connection's subscriptions is cancelled
// first, so no write starts after it.
func (c *wsConn) close(code int, text string) {
	if c.ctx.Err() == nil {
		c.cancel()
		msg := websocket.FormatCloseMessage(code, text)
		_ = c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	}
	_ = c.conn.Close()
}

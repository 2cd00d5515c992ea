package rpc

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sourcegraph/jsonrpc2"

	"github.com/openpassport/prover-fleet/api/protocol"
)

// wsConn is one WebSocket: requests are read and answered in order (the app
// sends hello and submit on one socket, both with id 1), while
// subscriptions write notifications from their own goroutines.
type wsConn struct {
	s      *Server
	conn   *websocket.Conn
	ctx    context.Context // done when the socket closes
	cancel context.CancelFunc

	writeMu sync.Mutex

	subMu sync.Mutex
	subs  int
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		writeJSON(w, http.StatusBadRequest, errorResponse(nil, rpcError(protocol.CodeInvalidRequest,
			"Invalid Request: open a WebSocket here, or POST a JSON-RPC request", "")))
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.log.DebugContext(r.Context(), "websocket upgrade failed", "err", err)
		return // the upgrader has answered
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	c := &wsConn{s: s, conn: conn, ctx: ctx, cancel: cancel}
	if !s.track(c) {
		c.close(websocket.CloseGoingAway, "server shutting down")
		return
	}
	defer s.untrack(c)
	c.serve()
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

// serve reads messages until the socket fails or closes. A message that is
// not JSON, not a request, binary, or too large gets an error reply; the
// socket stays open.
func (c *wsConn) serve() {
	defer c.close(websocket.CloseNormalClosure, "")
	idle := 2 * c.s.cfg.PingInterval
	_ = c.conn.SetReadDeadline(time.Now().Add(idle))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(idle))
	})
	go c.ping()
	for {
		typ, r, err := c.conn.NextReader()
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) &&
				!errors.Is(err, io.EOF) {
				c.s.log.DebugContext(c.ctx, "websocket read ended", "err", err)
			}
			return
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(idle))
		if !c.s.begin() {
			return
		}
		ok := c.message(typ, r)
		c.s.inflight.Done()
		if !ok {
			return
		}
	}
}

// message reads and answers one message; false means the socket failed.
func (c *wsConn) message(typ int, r io.Reader) bool {
	data, err := io.ReadAll(io.LimitReader(r, c.s.cfg.MaxBodyBytes+1))
	if err != nil {
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
		resp, after = c.s.handle(c.ctx, data, c)
	}
	if resp != nil {
		err = c.write(resp)
	}
	if after != nil {
		// Also after a failed write: the subscription's goroutine then
		// sees the connection's context end and releases its watch.
		after()
	}
	if err != nil {
		c.s.log.DebugContext(c.ctx, "websocket write failed", "err", err)
		return false
	}
	return true
}

// ping keeps the socket alive and detects dead peers.
func (c *wsConn) ping() {
	t := time.NewTicker(c.s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.s.cfg.WriteTimeout)); err != nil {
				c.close(websocket.CloseGoingAway, "")
				return
			}
		}
	}
}

func (c *wsConn) write(v any) error {
	data, err := marshal(v)
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.ctx.Err() != nil {
		return c.ctx.Err()
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	return c.conn.WriteMessage(websocket.TextMessage, data)
}

// notify sends a JSON-RPC notification.
func (c *wsConn) notify(method string, params any) error {
	req := &jsonrpc2.Request{Method: method, Notif: true}
	if err := req.SetParams(params); err != nil {
		return err
	}
	return c.write(req)
}

func (c *wsConn) addSubscription(limit int) bool {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if c.subs >= limit {
		return false
	}
	c.subs++
	return true
}

func (c *wsConn) doneSubscription() {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	c.subs--
}

// close sends a close frame (best effort) and closes the socket; the
// context of the connection's subscriptions is cancelled.
func (c *wsConn) close(code int, text string) {
	c.writeMu.Lock()
	if c.ctx.Err() == nil {
		msg := websocket.FormatCloseMessage(code, text)
		_ = c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	}
	c.cancel()
	c.writeMu.Unlock()
	_ = c.conn.Close()
}

package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/gorilla/websocket"
	"github.com/sourcegraph/jsonrpc2"
)

// wsConn is JSON-RPC 2.0 over one WebSocket: calls with numeric ids, and
// the server's notifications handed to notify. Each message is decoded
// once, into a struct whose result and params stay raw until the caller
// decodes them into their own types. (jsonrpc2.Conn decoded every answer
// twice, once into interface{} values: for a hello, whose attestation
// document arrives as a JSON array of a few thousand integers, that was
// most of the client's JSON work.)
type wsConn struct {
	ws     *websocket.Conn
	notify func(method string, params json.RawMessage)
	log    *slog.Logger

	wmu sync.Mutex // one writer at a time (gorilla/websocket's rule)

	mu      sync.Mutex
	seq     uint64
	pending map[uint64]chan inMessage
	err     error // why the connection closed; set once, with done closed

	done chan struct{}
}

func newWSConn(ws *websocket.Conn, notify func(string, json.RawMessage), log *slog.Logger) *wsConn {
	c := &wsConn{ws: ws, notify: notify, log: log, pending: map[uint64]chan inMessage{}, done: make(chan struct{})}
	go c.read()
	return c
}

// read dispatches the server's messages until the connection fails.
func (c *wsConn) read() {
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.fail(err)
			return
		}
		m, err := parseMessage(data)
		if err != nil {
			c.log.Debug("jsonrpc: undecodable message from the server", "err", err)
			continue
		}
		if m.Method != "" {
			if isNull(m.ID) && c.notify != nil {
				c.notify(m.Method, m.Params)
			}
			continue // a request from the server: this client serves none
		}
		id, err := strconv.ParseUint(string(m.ID), 10, 64)
		if err != nil {
			c.log.Debug("jsonrpc: answer without a call id", "id", string(m.ID))
			continue
		}
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- m // buffered: never blocks
		}
	}
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// fail records why the connection ended and wakes every waiting call.
func (c *wsConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	close(c.done)
	_ = c.ws.Close()
}

// Call sends method with params and decodes the answer's result into
// result (when not nil). A server error is a *jsonrpc2.Error; a closed
// connection is jsonrpc2.ErrClosed.
func (c *wsConn) Call(ctx context.Context, method string, params, result any) error {
	ch := make(chan inMessage, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return jsonrpc2.ErrClosed
	}
	c.seq++
	id := c.seq
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	data, err := encodeRequest(id, method, params)
	if err != nil {
		forget()
		return fmt.Errorf("client: %s params: %w", method, err)
	}
	c.wmu.Lock()
	err = c.ws.WriteMessage(websocket.TextMessage, data)
	c.wmu.Unlock()
	if err != nil {
		forget()
		c.fail(err)
		return jsonrpc2.ErrClosed
	}

	select {
	case m := <-ch:
		if m.Error != nil {
			return m.Error
		}
		if result == nil || isNull(m.Result) {
			return nil
		}
		if err := decodeResult(m.Result, result); err != nil {
			return fmt.Errorf("client: %s result: %w", method, err)
		}
		return nil
	case <-c.done:
		forget()
		return jsonrpc2.ErrClosed
	case <-ctx.Done():
		forget()
		return ctx.Err()
	}
}

// DisconnectNotify is closed when the connection has ended.
func (c *wsConn) DisconnectNotify() <-chan struct{} { return c.done }

// Close ends the connection; calls still waiting get jsonrpc2.ErrClosed.
// Closing twice returns jsonrpc2.ErrClosed.
func (c *wsConn) Close() error {
	c.mu.Lock()
	closed := c.err != nil
	c.mu.Unlock()
	if closed {
		return jsonrpc2.ErrClosed
	}
	c.fail(errors.New("client: connection closed by Close"))
	return nil
}

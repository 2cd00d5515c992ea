// Package relayclient follows requests on the status relay the way the app
// does: Socket.IO v4 to the relay's URL with path "/" and the websocket
// transport, "subscribe" with the uuid as a plain string, and "status"
// events ({uuid, status, error_code?, reason?}). It is for the demo and
// tests, on the Go Socket.IO client github.com/zishang520/socket.io
// (clients/socket/v3).
//
// That client has two races when left to connect by itself (v3.0.6): its
// Manager subscribes to its engine's "open" only after the engine started
// connecting, so it can miss the open and time out; and a Socket connecting
// while the engine opens can send its CONNECT twice, which the server
// answers by closing the connection. Dial therefore opens the Manager
// first, waits for it (retrying a missed open), and only then connects the
// Socket, once. A client does not reconnect: a lost connection ends it
// (Done), and its caller dials again.
package relayclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	sio "github.com/zishang520/socket.io/clients/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"

	"github.com/openpassport/prover-fleet/shared/status"
)

// Message is the payload of a status event (or of a subscribe_error).
type Message struct {
	UUID      string      `json:"uuid"`
	Status    status.Code `json:"status"`
	ErrorCode string      `json:"error_code,omitempty"`
	Reason    string      `json:"reason,omitempty"`
}

// Final reports whether the app stops at this status: 4 (success), 3 and
// 5 (failure).
func (m Message) Final() bool { return m.Status >= status.Failed }

// Event is one event the relay sent.
type Event struct {
	// Name is "status" or "subscribe_error".
	Name    string
	Message Message
	// Keys are the payload's keys as sent, to check its shape.
	Keys []string
	// At is when it arrived.
	At time.Time
}

// ErrMissedOpen means the Go client missed its engine's open event (see the
// package comment); Dial retries it.
var ErrMissedOpen = errors.New("relayclient: the client missed its engine's open")

// Options tune Dial. Zero fields take the defaults.
type Options struct {
	// Timeout bounds each connection attempt (default 10 s).
	Timeout time.Duration
	// Attempts bounds the attempts after a missed open (default 3).
	Attempts int
}

// Client is one Socket.IO connection to the relay.
type Client struct {
	sock   *sio.Socket
	events chan Event
	done   chan struct{}
	reason string

	mu     sync.Mutex
	closed bool
}

// Dial connects to the relay at url (http://host:port) as the app does.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 3
	}
	var err error
	for range opts.Attempts {
		var c *Client
		if c, err = dialOnce(ctx, url, opts.Timeout); !errors.Is(err, ErrMissedOpen) {
			return c, err
		}
	}
	return nil, err
}

func dialOnce(ctx context.Context, url string, timeout time.Duration) (*Client, error) {
	o := sio.DefaultOptions()
	o.SetPath("/")
	o.SetTransports(types.NewSet(sio.WebSocket))
	o.SetReconnection(false)
	o.SetAutoConnect(false)
	o.SetTimeout(timeout)
	manager := sio.NewManager(url, o)
	opened := make(chan error, 1)
	manager.Open(func(err error) {
		select {
		case opened <- err:
		default:
		}
	})
	select {
	case err := <-opened:
		if err != nil {
			if e := manager.Engine(); e != nil {
				e.Close()
			}
			if err.Error() == "timeout" {
				return nil, ErrMissedOpen
			}
			return nil, fmt.Errorf("relayclient: open %s: %w", url, err)
		}
	case <-ctx.Done():
		if e := manager.Engine(); e != nil {
			e.Close()
		}
		return nil, ctx.Err()
	}

	sock := manager.Socket("/", nil)
	c := &Client{sock: sock, events: make(chan Event, 64), done: make(chan struct{})}
	connected := make(chan error, 1)
	report := func(err error) {
		select {
		case connected <- err:
		default:
		}
	}
	sock.Once("connect", func(...any) { report(nil) })
	sock.Once("connect_error", func(args ...any) { report(fmt.Errorf("relayclient: connect: %v", args)) })
	for _, name := range []types.EventName{"status", "subscribe_error"} {
		sock.On(name, func(args ...any) { c.deliver(string(name), args) })
	}
	sock.On("disconnect", func(args ...any) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.closed {
			c.closed = true
			c.reason = fmt.Sprint(args...)
			close(c.done)
		}
	})
	sock.Connect()
	select {
	case err := <-connected:
		if err != nil {
			sock.Disconnect()
			return nil, err
		}
		return c, nil
	case <-time.After(timeout):
		sock.Disconnect()
		return nil, fmt.Errorf("relayclient: no connect from %s within %s", url, timeout)
	case <-ctx.Done():
		sock.Disconnect()
		return nil, ctx.Err()
	}
}

// deliver decodes an event's payload; it never blocks the client's loop
// (a full buffer drops the event, which a caller of Next then misses).
func (c *Client) deliver(name string, args []any) {
	ev := Event{Name: name, At: time.Now()}
	if len(args) == 1 {
		if raw, ok := args[0].(map[string]any); ok {
			for k := range raw {
				ev.Keys = append(ev.Keys, k)
			}
			if data, err := json.Marshal(raw); err == nil {
				_ = json.Unmarshal(data, &ev.Message)
			}
		}
	}
	select {
	case c.events <- ev:
	default:
	}
}

// Subscribe asks for the status of id (a uuid string, or anything else to
// see the relay's answer to it).
func (c *Client) Subscribe(id any) error { return c.sock.Emit("subscribe", id) }

// SubscribeAck subscribes asking for an acknowledgement: fn gets its
// arguments (the first status event's payload).
func (c *Client) SubscribeAck(id any, fn func(args []any)) error {
	return c.sock.Emit("subscribe", id, func(args []any, _ error) { fn(args) })
}

// Events delivers the relay's events in order.
func (c *Client) Events() <-chan Event { return c.events }

// Next returns the next event, or an error when ctx ends or the connection
// is lost first.
func (c *Client) Next(ctx context.Context) (Event, error) {
	select {
	case ev := <-c.events:
		return ev, nil
	default:
	}
	select {
	case ev := <-c.events:
		return ev, nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	case <-c.done:
		select {
		case ev := <-c.events:
			return ev, nil
		default:
		}
		return Event{}, fmt.Errorf("relayclient: connection lost: %s", c.reason)
	}
}

// Done is closed when the connection is lost or closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Reason is why the connection was lost ("" while it lives).
func (c *Client) Reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Close disconnects.
func (c *Client) Close() { c.sock.Disconnect() }

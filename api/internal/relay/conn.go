package relay

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/zishang520/socket.io/servers/socket/v3"

	"github.com/openpassport/prover-fleet/shared/status"
)

// conn is one client connection (a Socket.IO socket on namespace "/") and
// its subscriptions.
type conn struct {
	r    *Relay
	sock *socket.Socket
	ctx  context.Context
	stop context.CancelFunc

	emitMu sync.Mutex // one emit at a time on the socket

	mu     sync.Mutex
	subs   map[string]*sub // by uuid
	idle   *time.Timer     // runs while subs is empty
	closed bool
}

// sub is one live subscription.
type sub struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *Relay) onConnection(args ...any) {
	sock, ok := firstArg[*socket.Socket](args)
	if !ok {
		return
	}
	defer r.registered(sock)
	ctx, stop := context.WithCancel(r.base)
	c := &conn{r: r, sock: sock, ctx: ctx, stop: stop, subs: map[string]*sub{}}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		stop()
		sock.Disconnect(true)
		return
	}
	r.conns[c] = struct{}{}
	r.mu.Unlock()
	r.nconns.Add(1)
	r.obs.Connection(1)
	c.mu.Lock()
	c.idle = time.AfterFunc(r.cfg.IdleTimeout, c.onIdle)
	c.mu.Unlock()

	_ = sock.On(EventSubscribe, func(args ...any) { c.guard(EventSubscribe, func() { c.subscribe(args) }) })
	_ = sock.On(EventUnsubscribe, func(args ...any) { c.guard(EventUnsubscribe, func() { c.unsubscribe(args) }) })
	_ = sock.On("disconnect", func(...any) { c.close() })
}

// guard runs a handler, turning a panic into a log line.
func (c *conn) guard(event string, fn func()) {
	defer func() {
		if p := recover(); p != nil {
			c.r.log.Error("handler panicked", "event", event, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	fn()
}

// onIdle closes a connection that has had no subscription for IdleTimeout.
func (c *conn) onIdle() {
	c.mu.Lock()
	idle := len(c.subs) == 0 && !c.closed
	c.mu.Unlock()
	if idle {
		c.r.log.Debug("closing idle connection", "socket", string(c.sock.Id()))
		c.close()
	}
}

// close ends every subscription of the connection. It is safe to call more
// than once.
func (c *conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.idle != nil {
		c.idle.Stop()
	}
	c.mu.Unlock()
	c.stop()
	r := c.r
	r.mu.Lock()
	_, ok := r.conns[c]
	delete(r.conns, c)
	r.mu.Unlock()
	if ok {
		r.nconns.Add(-1)
		r.obs.Connection(-1)
	}
	if !c.sock.Disconnected() {
		c.sock.Disconnect(true)
	}
}

// emit sends one event on the socket.
func (c *conn) emit(event string, m Message) error {
	c.emitMu.Lock()
	defer c.emitMu.Unlock()
	if c.sock.Disconnected() {
		return fmt.Errorf("relay: socket %s disconnected", c.sock.Id())
	}
	return c.sock.Emit(event, m)
}

// ackOf splits a trailing acknowledgement off an event's arguments.
func ackOf(args []any) ([]any, socket.Ack) {
	if n := len(args); n > 0 {
		if ack, ok := args[n-1].(socket.Ack); ok {
			return args[:n-1], ack
		}
	}
	return args, nil
}

// uuidArg reads the subscribe argument: the uuid as a string (the app's
// form), or an object {"uuid": "..."}. raw is what to echo back, bounded.
func uuidArg(args []any) (id, raw string, ok bool) {
	if len(args) == 0 {
		return "", "", false
	}
	var s string
	switch v := args[0].(type) {
	case string:
		s = v
	case map[string]any:
		s, _ = v["uuid"].(string)
	}
	raw = s
	if len(raw) > 64 {
		raw = raw[:64]
	}
	u, err := uuid.Parse(strings.TrimSpace(s))
	if err != nil || s == "" {
		return "", raw, false
	}
	return u.String(), raw, true
}

func (c *conn) subscribe(args []any) {
	args, ack := ackOf(args)
	r := c.r
	answer := func(event string, m Message) {
		_ = c.emit(event, m)
		if ack != nil {
			ack([]any{m}, nil)
		}
	}
	id, raw, ok := uuidArg(args)
	if !ok {
		r.obs.SubscriptionEnded(OutcomeInvalid)
		r.obs.Sent(status.Failed)
		answer(EventStatus, Message{UUID: raw, Status: status.Failed, ErrorCode: CodeInvalidUUID, Reason: "uuid is not a UUID"})
		return
	}
	refuse := func(code, reason string) {
		r.obs.SubscriptionEnded(OutcomeRefused)
		answer(EventSubscribeError, Message{UUID: id, Status: -1, ErrorCode: code, Reason: reason})
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	old := c.subs[id]
	if old == nil && len(c.subs) >= r.cfg.MaxSubscriptions {
		c.mu.Unlock()
		refuse(CodeTooManySubscriptions, fmt.Sprintf("too many subscriptions on this connection (at most %d)", r.cfg.MaxSubscriptions))
		return
	}
	// A second subscribe for the same uuid replaces the first: the client
	// gets the current status again.
	ctx, cancel := context.WithCancel(c.ctx)
	s := &sub{cancel: cancel, done: make(chan struct{})}
	c.subs[id] = s
	c.idle.Stop()
	r.wg.Add(1)
	c.mu.Unlock()
	if old != nil {
		old.cancel()
		<-old.done
	}

	go func() {
		defer r.wg.Done()
		defer close(s.done)
		defer cancel()
		r.nsubs.Add(1)
		r.obs.Subscription(1)
		outcome := c.follow(ctx, id, ack)
		r.obs.SubscriptionEnded(outcome)
		c.mu.Lock()
		if c.subs[id] == s {
			delete(c.subs, id)
		}
		if len(c.subs) == 0 && !c.closed {
			c.idle.Reset(r.cfg.IdleTimeout)
		}
		c.mu.Unlock()
		r.obs.Subscription(-1)
		r.nsubs.Add(-1)
	}()
}

// follow subscribes to the sources of id, then runs a follower. It returns
// the subscription's outcome.
func (c *conn) follow(ctx context.Context, id string, ack socket.Ack) string {
	r := c.r
	f := newFollower(r, id)
	unsubEvents, err := r.d.Events.SubscribeStatus(id, f.onEvent)
	if err != nil {
		r.log.WarnContext(ctx, "could not subscribe to status events", "request_id", id, "err", err)
		m := Message{UUID: id, Status: -1, ErrorCode: CodeUnavailable, Reason: "could not follow the request, retry later"}
		_ = c.emit(EventSubscribeError, m)
		if ack != nil {
			ack([]any{m}, nil)
		}
		return OutcomeRefused
	}
	defer unsubEvents()
	defer r.d.Notices.Subscribe(id, f.onNotice)()
	outcome, err := f.run(ctx, func(m Message) error {
		if err := c.emit(EventStatus, m); err != nil {
			return err
		}
		r.obs.Sent(m.Status)
		if ack != nil {
			ack([]any{m}, nil)
			ack = nil
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		r.log.DebugContext(ctx, "subscription ended", "request_id", id, "err", err)
	}
	return outcome
}

func (c *conn) unsubscribe(args []any) {
	args, ack := ackOf(args)
	id, _, ok := uuidArg(args)
	if !ok {
		return
	}
	c.mu.Lock()
	s := c.subs[id]
	c.mu.Unlock()
	if s != nil {
		s.cancel()
	}
	if ack != nil {
		ack([]any{s != nil}, nil)
	}
}

// firstArg returns args[0] as a T.
func firstArg[T any](args []any) (T, bool) {
	var zero T
	if len(args) == 0 {
		return zero, false
	}
	v, ok := args[0].(T)
	return v, ok
}

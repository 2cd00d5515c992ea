// Package pgnotify follows the proofs table's status_update notifications
// (sql/00002_status_notify.sql: a JSON object of the row on every insert and
// every status change, cut to the row's identity and times when large) on
// one dedicated Postgres connection per process, and hands each to the
// subscribers of its request id.
//
// It is how the frontend learns of statuses nobody announces on NATS: 4
// (verified) and 5 (verification failed), written straight into the table
// by a downstream verifier. A notification is a hint like a NATS status
// event: Postgres sends it at commit, so it reflects a committed row, but
// one sent while the connection is down is lost. After every
// (re)connection, once LISTEN is in force, each subscriber is therefore
// told that notifications may have been missed (Notification.Missed) and
// re-reads its row; a subscriber that subscribes and then reads its row
// misses nothing.
//
// The connection is kept alive by a ping whenever no notification came for
// Config.Keepalive, and re-established with exponential backoff after any
// error (pg_terminate_backend, a restart, a network loss).
package pgnotify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/openpassport/prover-fleet/shared/status"
)

// Channel is the channel the proofs table's trigger notifies.
const Channel = "status_update"

// Notification is one status_update notification of a subscribed request,
// or the news that some may have been missed.
type Notification struct {
	// RequestID is the request's uuid, lowercase and hyphenated.
	RequestID string
	// Status is the row's status after the change (Missed: unset).
	Status status.Code
	// Reason is the row's reason, nil when it has none or when the payload
	// was truncated.
	Reason *string
	// Truncated: the trigger sent the reduced payload of a large row, which
	// lacks the reason (and the proof); read the row for them.
	Truncated bool
	// Missed: not a row change. The connection was (re)established, so
	// notifications sent while it was down are lost: read the row.
	Missed bool
}

// Connect opens the dedicated connection. The listener closes it.
type Connect func(ctx context.Context) (*pgx.Conn, error)

// Observer hears about the listener, for metrics. Calls may come from any
// goroutine.
type Observer interface {
	// ListenerUp reports whether LISTEN is in force.
	ListenerUp(up bool)
	// Notified counts a notification received: matched says whether a
	// subscriber wanted it, malformed that its payload was not a row
	// (payloads are only read while there is a subscription).
	Notified(matched, malformed bool)
}

// Config tunes a Listener. Zero fields take the defaults.
type Config struct {
	// Channel to LISTEN on (default Channel).
	Channel string
	// MinBackoff and MaxBackoff bound the wait before reconnecting; it
	// doubles after each failed attempt, with jitter (defaults 100 ms and
	// 10 s).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// ConnectTimeout bounds connecting and the LISTEN (default 10 s).
	ConnectTimeout time.Duration
	// Keepalive is how long the connection may stay silent before it is
	// pinged (default 30 s); PingTimeout bounds the ping (default 5 s). A
	// failed ping reconnects.
	Keepalive   time.Duration
	PingTimeout time.Duration
}

func (c *Config) withDefaults() error {
	if c.Channel == "" {
		c.Channel = Channel
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.MinBackoff, 100*time.Millisecond)
	def(&c.MaxBackoff, 10*time.Second)
	def(&c.ConnectTimeout, 10*time.Second)
	def(&c.Keepalive, 30*time.Second)
	def(&c.PingTimeout, 5*time.Second)
	switch {
	case c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("pgnotify: Config.MinBackoff %s and MaxBackoff %s must satisfy 0 < min <= max", c.MinBackoff, c.MaxBackoff)
	case c.ConnectTimeout < 0 || c.Keepalive < 0 || c.PingTimeout < 0:
		return errors.New("pgnotify: timeouts must not be negative")
	}
	return nil
}

// Listener is the dedicated LISTEN connection and its subscribers. Safe for
// concurrent use.
type Listener struct {
	connect Connect
	log     *slog.Logger
	obs     Observer
	cfg     Config
	up      atomic.Bool

	mu   sync.Mutex
	subs map[string]map[*subscriber]struct{}
}

type subscriber struct{ fn func(Notification) }

// New returns a Listener that connects with connect; Run starts it. obs may
// be nil.
func New(connect Connect, log *slog.Logger, obs Observer, cfg Config) (*Listener, error) {
	switch {
	case connect == nil:
		return nil, errors.New("pgnotify: connect is nil")
	case log == nil:
		return nil, errors.New("pgnotify: logger is nil")
	}
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return &Listener{connect: connect, log: log.With("component", "pgnotify"), obs: obs, cfg: cfg,
		subs: map[string]map[*subscriber]struct{}{}}, nil
}

// Subscribe calls fn with every notification of requestID (a uuid, any
// case) until unsubscribe is called. fn runs on the listener's goroutine:
// it must not block. Subscribing does not need the connection to be up.
func (l *Listener) Subscribe(requestID string, fn func(Notification)) (unsubscribe func()) {
	id := strings.ToLower(strings.TrimSpace(requestID))
	s := &subscriber{fn: fn}
	l.mu.Lock()
	set := l.subs[id]
	if set == nil {
		set = map[*subscriber]struct{}{}
		l.subs[id] = set
	}
	set[s] = struct{}{}
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			delete(l.subs[id], s)
			if len(l.subs[id]) == 0 {
				delete(l.subs, id)
			}
		})
	}
}

// Subscribers is the number of live subscriptions.
func (l *Listener) Subscribers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, set := range l.subs {
		n += len(set)
	}
	return n
}

// Up reports whether LISTEN is in force now.
func (l *Listener) Up() bool { return l.up.Load() }

// Run keeps the connection up and dispatches notifications until ctx is
// done; then it closes the connection and returns nil.
func (l *Listener) Run(ctx context.Context) error {
	backoff := l.cfg.MinBackoff
	for {
		listened, err := l.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if listened {
			backoff = l.cfg.MinBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		l.log.WarnContext(ctx, "status listener connection lost, reconnecting", "err", err, "retry_in_ms", wait.Milliseconds())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, l.cfg.MaxBackoff)
	}
}

// session connects, LISTENs and dispatches until an error or ctx is done.
// listened reports whether LISTEN took effect.
func (l *Listener) session(ctx context.Context) (listened bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, l.cfg.ConnectTimeout)
	conn, err := l.connect(cctx)
	if err != nil {
		cancel()
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	_, err = conn.Exec(cctx, "LISTEN "+pgx.Identifier{l.cfg.Channel}.Sanitize())
	cancel()
	if err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	l.setUp(true)
	defer l.setUp(false)
	l.log.InfoContext(ctx, "status listener up", "channel", l.cfg.Channel)
	// Anything sent before LISTEN took effect is lost to this process.
	l.broadcastMissed()
	for {
		wctx, cancel := context.WithTimeout(ctx, l.cfg.Keepalive)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			l.dispatch(n.Payload)
			continue
		case ctx.Err() != nil:
			return true, nil
		case pgconn.Timeout(err) && !conn.IsClosed():
			// Silence: make sure the connection still answers.
			pctx, cancel := context.WithTimeout(ctx, l.cfg.PingTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err == nil {
				continue
			}
			if ctx.Err() != nil {
				return true, nil
			}
			return true, fmt.Errorf("ping: %w", err)
		default:
			return true, fmt.Errorf("wait: %w", err)
		}
	}
}

func (l *Listener) setUp(up bool) {
	l.up.Store(up)
	if l.obs != nil {
		l.obs.ListenerUp(up)
	}
}

// payload is what dispatch reads of the trigger's JSON.
type payload struct {
	RequestID string       `json:"request_id"`
	Status    *status.Code `json:"status"`
	Reason    *string      `json:"reason"`
	Truncated bool         `json:"truncated"`
}

// Parse reads a status_update payload.
func Parse(data string) (Notification, error) {
	var p payload
	if err := json.Unmarshal([]byte(data), &p); err != nil {
		return Notification{}, fmt.Errorf("pgnotify: payload is not a JSON object: %w", err)
	}
	if p.RequestID == "" || p.Status == nil {
		return Notification{}, errors.New("pgnotify: payload lacks request_id or status")
	}
	n := Notification{RequestID: strings.ToLower(p.RequestID), Status: *p.Status, Truncated: p.Truncated}
	if !p.Truncated {
		n.Reason = p.Reason
	}
	return n, nil
}

func (l *Listener) dispatch(data string) {
	// Every row written notifies, most of them requests nobody follows
	// (each submit's own insert): with no subscription at all there is
	// nothing to match, and the payload is not read.
	l.mu.Lock()
	none := len(l.subs) == 0
	l.mu.Unlock()
	if none {
		if l.obs != nil {
			l.obs.Notified(false, false)
		}
		return
	}
	n, err := Parse(data)
	if err != nil {
		l.log.Warn("unreadable status notification", "err", err, "bytes", len(data))
		if l.obs != nil {
			l.obs.Notified(false, true)
		}
		return
	}
	l.mu.Lock()
	fns := make([]func(Notification), 0, len(l.subs[n.RequestID]))
	for s := range l.subs[n.RequestID] {
		fns = append(fns, s.fn)
	}
	l.mu.Unlock()
	if l.obs != nil {
		l.obs.Notified(len(fns) > 0, false)
	}
	for _, fn := range fns {
		fn(n)
	}
}

func (l *Listener) broadcastMissed() {
	l.mu.Lock()
	type target struct {
		id string
		fn func(Notification)
	}
	var all []target
	for id, set := range l.subs {
		for s := range set {
			all = append(all, target{id, s.fn})
		}
	}
	l.mu.Unlock()
	for _, t := range all {
		t.fn(Notification{RequestID: t.id, Missed: true})
	}
}

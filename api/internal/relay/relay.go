// Package relay is the frontend's status relay: the Socket.IO (v4, Engine.IO
// 4) server the app follows a proof on. The app opens Socket.IO to its
// relay URL with path "/" and the websocket transport, emits "subscribe"
// with the request's uuid (a plain string) and listens to "status" events
// ({status, error_code?, reason?}, see Message); it treats 4 as success, 3
// and 5 as failure and anything else as progress.
//
// A subscription sends the row's current status at once, then one status
// event per change, until a final status: 3, 4 or 5. Status 2 (proof
// generated) is not final for the app: the subscription stays open for the
// downstream verifier's 4 or 5 for Config.Linger, and no subscription
// stays open longer than Config.MaxWait. A status is sent only when it is
// further than the last one sent; changes faster than they are sent may be
// coalesced (0→2), the final one is always sent. An invalid uuid is
// answered at once, and one without a row after Config.UnknownGrace, by a
// status 3 event whose error_code says why (the app shows a failure rather
// than wait for ever). Each subscription's sources are subscribed before
// its row is read, so nothing between the two is missed.
//
// Statuses come from what feeds openpassport_subscribe, the workers' NATS
// status events (0..3), and from the proofs table's status_update
// notifications on the process's one LISTEN connection (package pgnotify),
// the only source of the 4 and 5 a downstream verifier writes; Postgres is
// the truth: a hint that does not carry what a status event needs, and
// every (re)connection of the listener, re-read the row, and so does each
// subscription every Config.Recheck as a safety net against lost hints.
//
// The relay runs on its own listener (prover-api --status-address). The
// library (github.com/zishang520/socket.io) gives the websocket and
// polling transports; connections are bounded (Config.MaxConnections,
// refused at the handshake), so are subscriptions per connection, message
// sizes and a connection's idle time without a live subscription. Nothing
// a client sends can panic the process: the handlers recover and the
// library's parser rejects malformed packets.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	engine "github.com/zishang520/socket.io/servers/engine/v3"
	"github.com/zishang520/socket.io/servers/engine/v3/transports"
	"github.com/zishang520/socket.io/servers/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"

	"github.com/openpassport/prover-fleet/api/internal/pgnotify"
	"github.com/openpassport/prover-fleet/internal/httpbound"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

// Rows reads proofs rows (*store.Store).
type Rows interface {
	Get(ctx context.Context, id string) (store.Proof, error)
}

// Events carries the workers' status events (*jobqueue.Events).
type Events interface {
	SubscribeStatus(requestID string, fn func(job.StatusEvent)) (unsubscribe func(), err error)
}

// Notices carries the proofs table's status notifications
// (*pgnotify.Listener).
type Notices interface {
	Subscribe(requestID string, fn func(pgnotify.Notification)) (unsubscribe func())
}

// Observer hears about connections, subscriptions and the events sent, for
// metrics. Calls come from many goroutines.
type Observer interface {
	// Connection reports a connection opened (+1) or closed (-1).
	Connection(delta int)
	// ConnectionRefused counts a handshake refused by MaxConnections.
	ConnectionRefused()
	// Subscription reports a subscription started (+1) or ended (-1).
	Subscription(delta int)
	// SubscriptionEnded counts an ended (or refused) subscription by
	// outcome (the Outcome constants).
	SubscriptionEnded(outcome string)
	// Sent counts a status event sent, by its status.
	Sent(s status.Code)
}

// Deps are the relay's collaborators; Observer is optional.
type Deps struct {
	Rows     Rows
	Events   Events
	Notices  Notices
	Logger   *slog.Logger
	Observer Observer
}

// Config tunes the relay. Zero fields take the defaults.
type Config struct {
	// MaxConnections bounds open connections (default 10000); a handshake
	// beyond is refused (HTTP 403). Concurrent handshakes may pass it by a
	// few.
	MaxConnections int
	// MaxSubscriptions bounds the live subscriptions of one connection
	// (default 16; the app uses one).
	MaxSubscriptions int
	// Linger is how long a subscription at status 2 waits for the
	// downstream verifier's 4 or 5 (default 10 min).
	Linger time.Duration
	// MaxWait is the longest a subscription stays open (default 1 h).
	MaxWait time.Duration
	// Recheck re-reads the row of every subscription this often, in case
	// hints were lost (default 1 min; negative: never).
	Recheck time.Duration
	// UnknownGrace is how long a subscription to a uuid without a row waits
	// for it to appear before answering UUID_NOT_FOUND (default 10 s).
	UnknownGrace time.Duration
	// IdleTimeout closes a connection that has had no live subscription
	// for this long (default 2 min).
	IdleTimeout time.Duration
	// ReadTimeout bounds one read of a row (default 5 s).
	ReadTimeout time.Duration
	// PingInterval and PingTimeout are Engine.IO's heartbeat (defaults 25 s
	// and 20 s, the protocol's).
	PingInterval time.Duration
	PingTimeout  time.Duration
	// ConnectTimeout bounds the time from the Engine.IO handshake to the
	// Socket.IO connect (default 10 s).
	ConnectTimeout time.Duration
	// MaxMessageBytes bounds one message from a client (default 16 KiB).
	MaxMessageBytes int64
	// ShutdownTimeout bounds the graceful part of Serve's shutdown
	// (default 10 s).
	ShutdownTimeout time.Duration
}

// Defaults of Config.
const (
	DefaultMaxConnections   = 10000
	DefaultMaxSubscriptions = 16
	DefaultLinger           = 10 * time.Minute
	DefaultMaxWait          = time.Hour
	DefaultRecheck          = time.Minute
	DefaultUnknownGrace     = 10 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
)

func (c *Config) withDefaults() error {
	if c.MaxConnections < 0 || c.MaxSubscriptions < 0 || c.MaxMessageBytes < 0 {
		return errors.New("relay: MaxConnections, MaxSubscriptions and MaxMessageBytes must not be negative")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Linger", c.Linger}, {"MaxWait", c.MaxWait}, {"UnknownGrace", c.UnknownGrace}, {"IdleTimeout", c.IdleTimeout},
		{"ReadTimeout", c.ReadTimeout}, {"PingInterval", c.PingInterval}, {"PingTimeout", c.PingTimeout},
		{"ConnectTimeout", c.ConnectTimeout}, {"ShutdownTimeout", c.ShutdownTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("relay: Config.%s must not be negative, got %s", d.name, d.v)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxSubscriptions == 0 {
		c.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 16 << 10
	}
	def(&c.Linger, DefaultLinger)
	def(&c.MaxWait, DefaultMaxWait)
	def(&c.Recheck, DefaultRecheck)
	def(&c.UnknownGrace, DefaultUnknownGrace)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.ReadTimeout, 5*time.Second)
	def(&c.PingInterval, 25*time.Second)
	def(&c.PingTimeout, 20*time.Second)
	def(&c.ConnectTimeout, 10*time.Second)
	def(&c.ShutdownTimeout, 10*time.Second)
	return nil
}

// Relay is the Socket.IO status relay.
type Relay struct {
	d   Deps
	cfg Config
	log *slog.Logger
	obs Observer

	sio     *socket.Server
	handler http.Handler

	// base is the parent of every connection's context; stop cancels it.
	base context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup // follower goroutines

	// joining holds, per socket in its namespace connect, a channel
	// closed once the socket is registered (holdUntilRegistered).
	joining sync.Map // *socket.Socket → chan struct{}

	mu      sync.Mutex
	conns   map[*conn]struct{}
	closed  bool
	nconns  atomic.Int64
	nsubs   atomic.Int64
	refused atomic.Int64
}

// New checks deps and cfg and builds the relay. Serve serves it, or mount
// Handler and call Close when done.
func New(d Deps, cfg Config) (*Relay, error) {
	switch {
	case d.Rows == nil:
		return nil, errors.New("relay: Deps.Rows is nil")
	case d.Events == nil:
		return nil, errors.New("relay: Deps.Events is nil")
	case d.Notices == nil:
		return nil, errors.New("relay: Deps.Notices is nil")
	case d.Logger == nil:
		return nil, errors.New("relay: Deps.Logger is nil")
	}
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	r := &Relay{d: d, cfg: cfg, log: d.Logger.With("component", "relay"), obs: d.Observer,
		conns: map[*conn]struct{}{}}
	if r.obs == nil {
		r.obs = nopObserver{}
	}
	r.base, r.stop = context.WithCancel(context.Background())

	opts := socket.DefaultServerOptions()
	opts.SetPath("/")
	opts.SetServeClient(false)
	opts.SetTransports(types.NewSet[transports.TransportCtor](engine.Polling, engine.WebSocket))
	opts.SetPingInterval(cfg.PingInterval)
	opts.SetPingTimeout(cfg.PingTimeout)
	opts.SetConnectTimeout(cfg.ConnectTimeout)
	opts.SetMaxHttpBufferSize(cfg.MaxMessageBytes)
	// Any origin: the app is not a browser, and statuses are read by uuid,
	// which only the requester knows. Without this the WebSocket upgrade
	// would insist on the same origin.
	opts.SetCors(&types.Cors{Origin: "*"})
	opts.SetAllowRequest(func(*types.HttpContext) error {
		if r.isClosed() {
			return errors.New("the relay is shutting down")
		}
		// Engine.IO clients: a connection counts from its handshake, before
		// it joins the namespace.
		if eio := r.sio.Engine(); eio != nil && eio.ClientsCount() >= uint64(r.cfg.MaxConnections) {
			r.refused.Add(1)
			r.obs.ConnectionRefused()
			return fmt.Errorf("too many connections (at most %d)", r.cfg.MaxConnections)
		}
		return nil
	})
	r.sio = socket.NewServer(nil, opts)
	r.sio.Use(r.holdUntilRegistered)
	if err := r.sio.On("connection", r.onConnection); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	eio := r.sio.ServeHandler(opts)
	mux := http.NewServeMux()
	mux.Handle("/{$}", eio)
	r.handler = httpbound.Handler(mux, bodyTimeout)
	return r, nil
}

// Handler serves Socket.IO on path "/" (anything else is 404).
func (r *Relay) Handler() http.Handler { return r.handler }

// Connections is the number of open connections (Socket.IO sockets).
func (r *Relay) Connections() int { return int(r.nconns.Load()) }

// Clients is the number of Engine.IO clients, what MaxConnections bounds:
// the connections and the handshakes not yet connected.
func (r *Relay) Clients() int {
	if eio := r.sio.Engine(); eio != nil {
		return int(eio.ClientsCount())
	}
	return 0
}

// Subscriptions is the number of live subscriptions.
func (r *Relay) Subscriptions() int { return int(r.nsubs.Load()) }

// Refused is the number of handshakes refused by MaxConnections.
func (r *Relay) Refused() int { return int(r.refused.Load()) }

func (r *Relay) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// bodyTimeout bounds the arrival of a request's body (a long poll's
// message, a handshake's): see httpbound.
const bodyTimeout = 30 * time.Second

// Serve serves the relay on ln until ctx is done, then refuses new
// connections, ends every subscription, closes the connections, stops the
// HTTP server and waits (up to ShutdownTimeout) for all of it. It returns nil after a shutdown caused by
// ctx, or the listener's error.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           r.handler,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    16 << 10,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	r.log.Info("serving", "address", ln.Addr().String(), "path", "/")
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
	defer cancel()
	// The relay first (it refuses new handshakes, ends the subscriptions
	// and closes the connections, which answers long polls in flight),
	// then the HTTP server, which then has nothing left to wait for.
	err := r.Close(sctx)
	if herr := hs.Shutdown(sctx); herr != nil {
		_ = hs.Close()
		err = errors.Join(err, herr)
	}
	if serveErr != nil {
		return fmt.Errorf("relay: %w", serveErr)
	}
	<-errc // http.ErrServerClosed
	if err != nil {
		return fmt.Errorf("relay: shutdown: %w", err)
	}
	return nil
}

// Close refuses new connections and subscriptions, ends every
// subscription, closes every connection and waits, until ctx is done, for
// the subscriptions' goroutines. It is safe to call more than once.
func (r *Relay) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	conns := make([]*conn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	r.stop()
	for _, c := range conns {
		c.close()
	}
	r.sio.Close(nil)
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("relay: subscriptions still ending: %w", ctx.Err())
	}
}

// registerWait bounds how long holdUntilRegistered holds a connect.
const registerWait = 2 * time.Second

// holdUntilRegistered works around a race in the library (v3.0.6): a
// namespace connect writes the CONNECT answer to the client before it
// registers the socket with its connection, on another goroutine than the
// one that decodes the client's next packets. A client that emits at once
// on "connect", as the app does with "subscribe", can have its event
// decoded before the registration; the library then closes the connection
// ("invalid state"). This middleware runs on the decoding goroutine: it
// lets the connect proceed and holds that goroutine until the socket's
// "connection" event (which follows the registration) has run, so the
// client's next packet is decoded after it. A connect that never completes
// (the client left) is released after registerWait.
func (r *Relay) holdUntilRegistered(s *socket.Socket, next func(*socket.ExtendedError)) {
	registered := make(chan struct{})
	r.joining.Store(s, registered)
	defer r.joining.Delete(s)
	next(nil)
	select {
	case <-registered:
	case <-time.After(registerWait):
	}
}

// registered releases holdUntilRegistered for s.
func (r *Relay) registered(s *socket.Socket) {
	if ch, ok := r.joining.LoadAndDelete(s); ok {
		close(ch.(chan struct{}))
	}
}

type nopObserver struct{}

func (nopObserver) Connection(int)           {}
func (nopObserver) ConnectionRefused()       {}
func (nopObserver) Subscription(int)         {}
func (nopObserver) SubscriptionEnded(string) {}
func (nopObserver) Sent(status.Code)         {}

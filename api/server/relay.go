package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openpassport/prover-fleet/api/internal/pgnotify"
	"github.com/openpassport/prover-fleet/api/internal/relay"
)

// The status relay's collaborators and configuration.
type (
	// RelayRows reads proofs rows (*store.Store).
	RelayRows = relay.Rows
	// RelayEvents carries the workers' status events (*jobqueue.Events).
	RelayEvents = relay.Events
	// RelayConfig tunes the relay (zero fields take the defaults: see
	// the Default constants of api/internal/relay, e.g. a 10 min linger at
	// status 2).
	RelayConfig = relay.Config
	// RelayObserver hears about the relay and its LISTEN connection, for
	// metrics (*metrics.Metrics).
	RelayObserver interface {
		relay.Observer
		pgnotify.Observer
	}
)

// ListenerApplicationName is the application_name of the relay's LISTEN
// connection, as pg_stat_activity shows it.
const ListenerApplicationName = "prover-api status listener"

// ListenerConnect returns the function that opens the relay's dedicated
// LISTEN connection: a connection configured as pool's (same server,
// credentials and dialer, vsock included), outside the pool, named
// ListenerApplicationName.
func ListenerConnect(pool *pgxpool.Pool) func(ctx context.Context) (*pgx.Conn, error) {
	return func(ctx context.Context) (*pgx.Conn, error) {
		cfg := pool.Config().ConnConfig.Copy()
		cfg.RuntimeParams["application_name"] = ListenerApplicationName
		return pgx.ConnectConfig(ctx, cfg)
	}
}

// RelayDeps are the relay's collaborators; Observer is optional.
type RelayDeps struct {
	Rows   RelayRows
	Events RelayEvents
	// Connect opens the one LISTEN connection on status_update (see
	// ListenerConnect); the relay reconnects with it when it drops.
	Connect  func(ctx context.Context) (*pgx.Conn, error)
	Logger   *slog.Logger
	Observer RelayObserver
}

// Relay is the status relay the app follows a proof on: a Socket.IO v4
// server on path "/" (api/internal/relay), fed by the workers' NATS status
// events and by the proofs table's status_update notifications on one
// LISTEN connection (api/internal/pgnotify), which alone carry the 4 and
// 5 a downstream verifier writes.
//
//	rl, err := server.NewRelay(server.RelayDeps{
//		Rows:    store.New(pool),
//		Events:  jobqueue.NewEvents(nc),
//		Connect: server.ListenerConnect(pool),
//		Logger:  logger,
//	}, server.RelayConfig{})
//	...
//	err = rl.Serve(ctx, listener) // returns once ctx is done and it has shut down
type Relay struct {
	listener *pgnotify.Listener
	relay    *relay.Relay
}

// NewRelay checks deps and cfg and builds the relay.
func NewRelay(d RelayDeps, cfg RelayConfig) (*Relay, error) {
	if d.Logger == nil {
		return nil, errors.New("server: RelayDeps.Logger is nil")
	}
	var (
		lobs pgnotify.Observer
		robs relay.Observer
	)
	if d.Observer != nil {
		lobs, robs = d.Observer, d.Observer
	}
	l, err := pgnotify.New(d.Connect, d.Logger, lobs, pgnotify.Config{})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	r, err := relay.New(relay.Deps{Rows: d.Rows, Events: d.Events, Notices: l, Logger: d.Logger, Observer: robs}, cfg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return &Relay{listener: l, relay: r}, nil
}

// Serve runs the LISTEN connection and serves the relay on ln until ctx is
// done, then shuts both down. It returns nil after a shutdown caused by
// ctx, or the listener's error.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.listener.Run(lctx) // returns nil once lctx is done
	}()
	err := r.relay.Serve(ctx, ln)
	stop()
	<-done
	return err
}

// Handler serves the relay on path "/". Whoever mounts it themselves must
// also run RunListener and call Close when done.
func (r *Relay) Handler() http.Handler { return r.relay.Handler() }

// RunListener keeps the LISTEN connection until ctx is done.
func (r *Relay) RunListener(ctx context.Context) error { return r.listener.Run(ctx) }

// Close ends every subscription and connection (see Serve).
func (r *Relay) Close(ctx context.Context) error { return r.relay.Close(ctx) }

// Connections is the number of open relay connections.
func (r *Relay) Connections() int { return r.relay.Connections() }

// Subscriptions is the number of live relay subscriptions.
func (r *Relay) Subscriptions() int { return r.relay.Subscriptions() }

// ListenerUp reports whether the LISTEN connection is up.
func (r *Relay) ListenerUp() bool { return r.listener.Up() }

// Package connect opens the two connections prover-api and prover-worker
// need, PostgreSQL and NATS, dialling through a fixed target when one is
// configured (vsock://3:PORT for a proxy on the parent instance inside a
// Nitro enclave; see shared/vsockdial). Errors name the server with its
// password redacted.
package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/vsockdial"
)

// Redacted is a server URL without its password, for logs and errors.
func Redacted(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// PostgresConfig locates a PostgreSQL server.
type PostgresConfig struct {
	// URL is the database URL (required).
	URL string
	// Target, when set, is where every connection is dialled instead of
	// the URL's host (--database-target).
	Target string
}

// Postgres returns a pool on cfg.URL. Like pgxpool.NewWithConfig it does
// not wait for the server: the first use (or a Ping) does. The pool is the
// caller's to close.
func Postgres(ctx context.Context, cfg PostgresConfig) (*pgxpool.Pool, error) {
	if cfg.URL == "" {
		return nil, errors.New("connect: PostgresConfig.URL is empty")
	}
	pgCfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %w", Redacted(cfg.URL), err)
	}
	d, err := vsockdial.NewDialer(vsockdial.Config{Target: cfg.Target})
	if err != nil {
		return nil, fmt.Errorf("--database-target: %w", err)
	}
	d.ConfigurePgx(pgCfg)
	pool, err := pgxpool.NewWithConfig(ctx, pgCfg)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %w", Redacted(cfg.URL), err)
	}
	return pool, nil
}

// NATSConfig locates a NATS server.
type NATSConfig struct {
	// URL is the server URL(s), comma separated (required).
	URL string
	// Target, when set, is where every connection is dialled instead of
	// the URL's host (--nats-target).
	Target string
	// Name is the connection's name as the server shows it.
	Name string
	// Logger records disconnects and reconnects (required).
	Logger *slog.Logger
}

// NATS connects to cfg.URL, reconnecting for ever after a loss, and
// returns the connection with its JetStream context. The connection is the
// caller's to Drain.
func NATS(cfg NATSConfig) (*nats.Conn, jetstream.JetStream, error) {
	switch {
	case cfg.URL == "":
		return nil, nil, errors.New("connect: NATSConfig.URL is empty")
	case cfg.Logger == nil:
		return nil, nil, errors.New("connect: NATSConfig.Logger is nil")
	}
	d, err := vsockdial.NewDialer(vsockdial.Config{Target: cfg.Target})
	if err != nil {
		return nil, nil, fmt.Errorf("--nats-target: %w", err)
	}
	log := cfg.Logger
	nc, err := nats.Connect(cfg.URL, append(d.NATSOptions(),
		nats.Name(cfg.Name), nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "err", err) }),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }))...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats %s: %w", Redacted(cfg.URL), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// Drain drains nc (pending messages are delivered and published, then it
// closes), logging a failure to log: the last step of a program's shutdown.
// nats.Conn.Drain only starts the drain, so Drain waits until the
// connection has closed (at most its DrainTimeout, then it closes it):
// the program must not exit with a Nak or a status event still buffered.
func Drain(nc *nats.Conn, log *slog.Logger) {
	if err := nc.Drain(); err != nil {
		log.Warn("nats drain", "err", err)
		nc.Close()
		return
	}
	limit := nc.Opts.DrainTimeout
	if limit <= 0 {
		limit = nats.DefaultDrainTimeout
	}
	deadline := time.Now().Add(limit + time.Second)
	for !nc.IsClosed() {
		if time.Now().After(deadline) {
			log.Warn("nats drain did not finish; closing", "after", limit)
			nc.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Package server is the frontend (program prover-api) as a library: the
// JSON-RPC wire of the phone app over WebSocket and HTTP POST, the
// handshake sessions, validation against the circuit folder, the proofs row
// and the job on JetStream. The program wires it to real connections; the
// dev and demo commands embed it in-process the same way:
//
//	srv, err := server.New(server.Deps{
//		Store:    store.New(pool),
//		Queue:    publisher,              // *jobqueue.Publisher
//		Events:   jobqueue.NewEvents(nc),
//		Attester: devAttester,            // *attest.DevGCP, *attest.GCP, *attest.Dev or *attest.NSM
//		Sealer:   sealer,                 // *job.Sealer with the fleet key
//		Logger:   logger,
//	}, server.Config{CircuitFolder: "circuits/build", ZkeyFolder: "zkeys"})
//	...
//	err = srv.Serve(ctx, listener) // returns once ctx is done and it has shut down
//
// Connections (pool, NATS) stay the caller's to close, after Serve returns.
package server

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/openpassport/prover-fleet/api/internal/admission"
	"github.com/openpassport/prover-fleet/api/internal/circuits"
	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/internal/intake"
	"github.com/openpassport/prover-fleet/api/internal/request"
	"github.com/openpassport/prover-fleet/api/internal/rpc"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/family"
)

// The collaborators, satisfied by the shared packages' types.
type (
	// Store is the proofs table (*store.Store).
	Store = intake.Store
	// Queue enqueues jobs (*jobqueue.Publisher).
	Queue = intake.Queue
	// Events carries status and cancel events (*jobqueue.Events).
	Events = intake.Events
	// Sealer seals circuit inputs with the fleet key (*job.Sealer).
	Sealer = intake.Sealer
	// Observer hears about every call, refusal and closed WebSocket, for
	// metrics.
	Observer = rpc.Observer
)

// Deps are the frontend's collaborators. All are required except Observer
// and GenerateKey.
type Deps struct {
	Store    Store
	Queue    Queue
	Events   Events
	Attester attest.Attester
	Sealer   Sealer
	Logger   *slog.Logger
	Observer Observer
	// GenerateKey replaces the random server key of each session. Tests
	// use it to replay recorded handshakes; never set it in production.
	GenerateKey func() (*ecdh.PrivateKey, error)
}

// Config is the frontend's configuration.
type Config struct {
	// Families served (default all). A request of another family is
	// refused with "This endpoint only allows {families} inputs".
	Families []family.Family
	// CircuitFolder holds the witness generators (required).
	CircuitFolder string
	// ZkeyFolder holds the proving keys; when set, a circuit is only known
	// if its zkey is there too.
	ZkeyFolder string
	// ZkeyNames maps circuit names to zkey file names in ZkeyFolder for
	// keys not named <name>.zkey (circuitdir.LoadZkeyMap).
	ZkeyNames map[string]string
	// CircuitRefresh is the least time between rescans of the folders on
	// an unknown name (default 10 s).
	CircuitRefresh time.Duration
	// SessionTTL is how long a hello waits for its submit (default 15 min,
	// handshake.DefaultTTL).
	SessionTTL time.Duration
	// MaxSessions bounds open sessions (default 10000).
	MaxSessions int

	// Per-source limits (a source is a client's network address, see
	// api/internal/admission): zero takes the default, -1 turns one off.
	// MaxSessionsPerSource bounds one source's open sessions (default 64)
	// and SessionShare keeps a few sources from filling the table (default
	// 32: a source holding n sessions gets another only while n ×
	// SessionShare is under the free slots).
	MaxSessionsPerSource int
	SessionShare         int
	// MaxConnections bounds the TCP connections of Serve's listener
	// (default 20000); MaxConnectionsPerSource one source's connections
	// and WebSockets (default 64).
	MaxConnections          int
	MaxConnectionsPerSource int
	// HelloRate (per second, default 5) and HelloBurst (default 20) bound
	// the handshakes (hello, attestation) one source may start.
	HelloRate  float64
	HelloBurst int
	// TrustedProxies may name the client in X-Forwarded-For and, with
	// ProxyProtocol, in a PROXY protocol header (Serve's listener).
	TrustedProxies []netip.Prefix
	ProxyProtocol  bool

	// WebSocket and HTTP bounds (rpc.Config): PingInterval (default 30 s),
	// PongTimeout (15 s), IdleTimeout (60 s, longer while a session the
	// socket opened is open), ReadTimeout (60 s, one message or body),
	// WriteTimeout (10 s, one write).
	PingInterval time.Duration
	PongTimeout  time.Duration
	IdleTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// MaxBodyBytes bounds one request (default 10 MiB).
	MaxBodyBytes int64
	// MaxInputsBytes bounds the circuit inputs of one request (default 8 MiB).
	MaxInputsBytes int
	// ShutdownTimeout bounds the graceful part of Serve's shutdown
	// (default 10 s).
	ShutdownTimeout time.Duration
	// RecordTimeout bounds recording and enqueueing one submit (default
	// 15 s). A publish not acknowledged within it has an unknown outcome:
	// the request is accepted and kept with its sealed job (see
	// api/internal/intake).
	RecordTimeout time.Duration
	// QueryTimeout bounds the database work of a hello, a status read and
	// a cancel (default 10 s): a stalled Postgres fails them with the
	// app's "retry later" errors instead of holding the socket.
	QueryTimeout time.Duration
}

// Server is one frontend.
type Server struct {
	cfg      Config
	log      *slog.Logger
	sessions *handshake.Sessions
	adm      *admission.Admission
	catalog  *circuits.Catalog
	svc      *intake.Service
	rpc      *rpc.Server
}

// New checks deps and cfg, scans the circuit folder and builds the frontend.
func New(deps Deps, cfg Config) (*Server, error) {
	if deps.Logger == nil {
		return nil, errors.New("server: Deps.Logger is nil")
	}
	if len(cfg.Families) == 0 {
		cfg.Families = family.All()
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	sessions, err := handshake.New(handshake.Config{
		TTL:          cfg.SessionTTL,
		MaxSessions:  cfg.MaxSessions,
		MaxPerSource: cfg.MaxSessionsPerSource,
		FreeShare:    cfg.SessionShare,
		GenerateKey:  deps.GenerateKey,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	var obs admission.Observer
	if deps.Observer != nil {
		obs = deps.Observer
	}
	adm, err := admission.New(admission.Config{
		MaxConns:          cfg.MaxConnections,
		MaxConnsPerSource: cfg.MaxConnectionsPerSource,
		HelloRate:         cfg.HelloRate,
		HelloBurst:        cfg.HelloBurst,
		TrustedProxies:    cfg.TrustedProxies,
		ProxyProtocol:     cfg.ProxyProtocol,
	}, obs)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	catalog, err := circuits.New(circuits.Config{
		Layout:  circuitdir.Layout{CircuitDir: cfg.CircuitFolder, ZkeyDir: cfg.ZkeyFolder, ZkeyNames: cfg.ZkeyNames},
		Refresh: cfg.CircuitRefresh,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	validator, err := request.NewValidator(request.Config{
		Families:       cfg.Families,
		Circuits:       catalog,
		MaxInputsBytes: cfg.MaxInputsBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	svc, err := intake.New(intake.Deps{
		Sessions:  sessions,
		Validator: validator,
		Attester:  deps.Attester,
		Store:     deps.Store,
		Queue:     deps.Queue,
		Events:    deps.Events,
		Sealer:    deps.Sealer,
		Logger:    deps.Logger,
	}, intake.Config{RecordTimeout: cfg.RecordTimeout, QueryTimeout: cfg.QueryTimeout})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	wire, err := rpc.New(svc, adm, deps.Logger, deps.Observer, rpc.Config{
		MaxBodyBytes: cfg.MaxBodyBytes,
		PingInterval: cfg.PingInterval,
		PongTimeout:  cfg.PongTimeout,
		IdleTimeout:  cfg.IdleTimeout,
		SessionTTL:   sessions.TTL(),
		ReadTimeout:  cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return &Server{
		cfg:      cfg,
		log:      deps.Logger.With("component", "server"),
		sessions: sessions,
		adm:      adm,
		catalog:  catalog,
		svc:      svc,
		rpc:      wire,
	}, nil
}

// Handler serves the frontend's paths: POST / and /ws (JSON-RPC), a
// WebSocket upgrade on GET / and /ws, and GET /v1/proofs/{uuid}. Whoever
// mounts it themselves must also run RunSessions, call CloseWebSockets
// after their http.Server's Shutdown, and should serve it on Listener(ln)
// (the connection limits and the PROXY protocol).
func (s *Server) Handler() http.Handler { return s.rpc }

// Listener wraps ln with the connection limits (MaxConnections,
// MaxConnectionsPerSource) and, with ProxyProtocol, reads trusted
// proxies' PROXY headers. Serve uses it.
func (s *Server) Listener(ln net.Listener) net.Listener { return s.adm.Listener(ln) }

// RunSessions sweeps expired handshake sessions and idle sources until
// ctx is done.
func (s *Server) RunSessions(ctx context.Context) {
	go s.adm.Run(ctx)
	s.sessions.Run(ctx)
}

// CloseWebSockets closes open WebSockets ("going away") and waits, until
// ctx is done, for the calls they were handling.
func (s *Server) CloseWebSockets(ctx context.Context) error { return s.rpc.Shutdown(ctx) }

// Sessions is the number of open handshake sessions (a metric).
func (s *Server) Sessions() int { return s.sessions.Len() }

// Connections is the number of TCP connections Listener holds (a metric).
func (s *Server) Connections() int { return s.adm.Conns() }

// WebSockets is the number of open WebSockets (a metric).
func (s *Server) WebSockets() int { return s.rpc.WebSockets() }

// Sources is the number of client sources tracked (a metric).
func (s *Server) Sources() int { return s.adm.Sources() }

// Circuits lists the circuits this frontend accepts.
func (s *Server) Circuits() []string { return s.catalog.Names() }

// Serve serves on ln until ctx is done, then stops accepting, lets calls
// in flight finish (up to ShutdownTimeout), and closes the WebSockets. It
// returns nil after a shutdown caused by ctx, or the listener's error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       s.rpc.Config().IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go s.RunSessions(sweepCtx)

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(s.Listener(ln)) }()
	s.log.Info("serving", "address", ln.Addr().String(), "families", request.FamilyList(s.cfg.Families),
		"circuits", len(s.catalog.Names()))
	select {
	case err := <-errc:
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
		defer cancel()
		_ = s.CloseWebSockets(closeCtx)
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := errors.Join(hs.Shutdown(shutdownCtx), s.CloseWebSockets(shutdownCtx))
	if err != nil {
		_ = hs.Close()
		return fmt.Errorf("server: shutdown: %w", err)
	}
	<-errc // http.ErrServerClosed
	return nil
}

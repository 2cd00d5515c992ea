// Package devfleet runs the whole prover fleet in one process, for
// `proverctl dev`, `proverctl demo`, end-to-end tests and benchmarks: an
// embedded NATS JetStream server, a PostgreSQL database (DATABASE_URL, or a
// throwaway server made from the system's binaries), the migrations, the job
// stream and consumers, a per-run fleet job key, a development attester
// (Nitro format by default, Confidential Space with Config.Attester),
// the frontend (api/server) on a listener, the app's Socket.IO status relay
// (server.Relay, with its LISTEN connection) on another, one worker pool per
// family (worker/service) and an admin listener with /metrics, /healthz and
// /readyz.
//
//	fleet, err := devfleet.Start(ctx, devfleet.Config{
//		CircuitDir: "circuits/build", ZkeyDir: "zkeys",
//		Logger: logger,
//	})
//	if err != nil { ... }
//	defer fleet.Stop(context.WithoutCancel(ctx))
//	opts, _ := fleet.ClientOptions() // the verifier of the fleet's format
//	c, _ := client.Dial(ctx, fleet.WSURL(), opts)
//
// Everything Start creates lives under one state directory: a temporary one
// (removed by Stop) unless Config.StateDir names one. A named state
// directory keeps only the development attestation root between runs (so a
// client can pin it); the per-run part (NATS store, Postgres data, worker
// temp dirs, fleet key) is a run-* directory inside it that Stop removes.
//
// Stop shuts down in the order CONTRIBUTING.md gives (Conventions): the frontend
// and the relay stop accepting and finish their calls, the worker pools stop fetching and settle
// their jobs, the admin listener closes, the NATS connections drain and the
// database pool closes, then the NATS server and the throwaway Postgres stop
// and the directories are removed.
//
// This package is for one machine; production runs prover-api and
// prover-worker against real NATS and Postgres servers (see README.md).
package devfleet

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/api/metrics"
	"github.com/openpassport/prover-fleet/api/server"
	"github.com/openpassport/prover-fleet/internal/devstack"
	"github.com/openpassport/prover-fleet/internal/migrate"
	"github.com/openpassport/prover-fleet/internal/snarkjs"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/store"
	"github.com/openpassport/prover-fleet/worker/service"
)

// Defaults of Config.
const (
	// DefaultListen is the frontend's default address: a free port on the
	// loopback interface (tests, benchmarks, the demo). `proverctl dev` uses
	// DevListen.
	DefaultListen = "127.0.0.1:0"
	// DevListen is the address `proverctl dev` serves on by default.
	DevListen = "127.0.0.1:8888"
	// DefaultAdminListen is the admin listener's default address.
	DefaultAdminListen = "127.0.0.1:0"
	// DefaultStatusListen is the status relay's default address (a free
	// port); `proverctl dev` uses DevStatusListen.
	DefaultStatusListen = "127.0.0.1:0"
	// DevStatusListen is the address of the relay of `proverctl dev`.
	DevStatusListen = "127.0.0.1:8889"
	// DefaultAttestMaxAge bounds the age of an attestation document for the
	// verifier NewVerifier returns.
	DefaultAttestMaxAge = 5 * time.Minute
	// ModuleID is the module_id of the development attestation documents.
	ModuleID = "prover-fleet-dev"
	// DatabaseName is the database created on a throwaway Postgres server.
	DatabaseName = "proofs"
	// DefaultFetchWait is how long a worker's pull waits for a job, unless
	// Config.Worker says otherwise (shorter than worker/service's default,
	// so that a stop is quick).
	DefaultFetchWait = time.Second
	// JobKeyFile is the name of the fleet job key file in the run directory.
	JobKeyFile = "fleet.key"
	// AttesterDevNitro and AttesterDevGCP are the values of Config.Attester.
	AttesterDevNitro = "dev-nitro"
	AttesterDevGCP   = "dev-gcp"
)

// Config configures a Fleet. CircuitDir and ZkeyDir are required.
type Config struct {
	// StateDir holds everything the fleet creates. Empty: a temporary
	// directory, removed by Stop. Named: created if missing and kept; only
	// its attest/ subdirectory (the development attestation root) survives
	// Stop.
	StateDir string
	// DatabaseURL names an existing PostgreSQL database to use (it is
	// migrated, never dropped). Empty: a throwaway server is started from
	// the system's PostgreSQL binaries and removed by Stop.
	DatabaseURL string
	// CircuitDir holds the witness generators (<name>_cpp/<name>) and
	// ZkeyDir the keys (<name>.zkey, <name>.vkey.json).
	CircuitDir string
	ZkeyDir    string
	// Listen is the frontend's address (DefaultListen when empty).
	Listen string
	// AdminListen is the address of /metrics, /healthz and /readyz
	// (DefaultAdminListen when empty).
	AdminListen string
	// StatusListen is the address of the Socket.IO status relay
	// (DefaultStatusListen when empty).
	StatusListen string
	// Relay tunes the status relay (server.RelayConfig; zero fields take
	// its defaults).
	Relay server.RelayConfig
	// NATSPort is the embedded NATS server's port on 127.0.0.1 (0: a free
	// port), so that programs outside this process can join the fleet.
	NATSPort int
	// Families served by the frontend and given worker pools (default all).
	Families []family.Family
	// NoWorkers starts no worker pools (benchmarks of the frontend alone,
	// tests that add pools themselves with AddWorkers).
	NoWorkers bool
	// Worker configures every worker pool (AddWorkers may change it per
	// pool): Family, CircuitDir,
	// ZkeyDir, JobKey and WorkDir are filled in by the fleet; zero fields
	// take worker/service's defaults (the native verifier, for one), except
	// FetchWait (DefaultFetchWait) and the prover: without ProverMode and
	// Prover, the native in-process prover; in command mode without Prover,
	// snarkjs from the circuits' node_modules (see FindSnarkjs).
	Worker service.Config
	// Frontend is the template of the frontend's configuration;
	// CircuitFolder, ZkeyFolder and Families are filled in by the fleet.
	// The per-source limits (MaxSessionsPerSource, SessionShare,
	// MaxConnectionsPerSource, HelloRate) are off unless set here: a dev
	// fleet's clients all share this machine's address.
	Frontend server.Config
	// Queue sizes the job stream and consumers (jobqueue.DefaultConfig
	// when zero).
	Queue jobqueue.Config
	// Logger receives every component's logs (discarded when nil).
	Logger *slog.Logger
	// Attester is the development attester's format: AttesterDevNitro
	// (the default: Nitro documents, attest.Dev) or AttesterDevGCP
	// (Confidential Space tokens, attest.DevGCP). Both keep their root in
	// AttestDir.
	Attester string
}

// Fleet is a running fleet. Its accessors are safe for concurrent use.
type Fleet struct {
	cfg    Config
	log    *slog.Logger
	tmp    bool   // stateDir was created by Start and is removed by Stop
	state  string // state directory
	run    string // per-run directory inside it
	keyRaw []byte

	natsSrv *devstack.NATS
	pg      *devstack.Postgres
	dbURL   string
	pool    *pgxpool.Pool
	nc      *nats.Conn
	js      jetstream.JetStream

	attester attest.Attester
	nitro    *attest.Dev      // set with AttesterDevNitro
	gcp      *attest.DevGCP   // set with AttesterDevGCP
	metrics  *metrics.Metrics // the frontend's, as prover-api defines them
	frontend *server.Server
	feAddr   string
	feStop   context.CancelFunc
	feDone   chan error

	relay     *server.Relay
	relayAddr string
	relayStop context.CancelFunc
	relayDone chan error

	admin     *http.Server
	adminAddr string
	adminDone chan error

	mu      sync.Mutex
	workers []*Workers
	seq     int
	stopped bool
}

// Start validates cfg and starts the fleet. On error, whatever it had
// started is stopped and removed again.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	f := &Fleet{cfg: cfg, log: cfg.Logger.With("component", "devfleet")}
	if err := f.start(ctx); err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if serr := f.Stop(stopCtx); serr != nil {
			err = errors.Join(err, fmt.Errorf("devfleet: clean up after failed start: %w", serr))
		}
		return nil, err
	}
	return f, nil
}

func (c *Config) withDefaults() error {
	switch {
	case c.CircuitDir == "":
		return errors.New("devfleet: Config.CircuitDir is required")
	case c.ZkeyDir == "":
		return errors.New("devfleet: Config.ZkeyDir is required")
	case c.NATSPort < 0 || c.NATSPort > 65535:
		return fmt.Errorf("devfleet: Config.NATSPort must be 0..65535, got %d", c.NATSPort)
	}
	for _, d := range []struct{ name, path string }{{"CircuitDir", c.CircuitDir}, {"ZkeyDir", c.ZkeyDir}} {
		st, err := os.Stat(d.path)
		if err != nil {
			return fmt.Errorf("devfleet: Config.%s: %w", d.name, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("devfleet: Config.%s %s is not a directory", d.name, d.path)
		}
	}
	var err error
	if c.CircuitDir, err = filepath.Abs(c.CircuitDir); err != nil {
		return fmt.Errorf("devfleet: %w", err)
	}
	if c.ZkeyDir, err = filepath.Abs(c.ZkeyDir); err != nil {
		return fmt.Errorf("devfleet: %w", err)
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.AdminListen == "" {
		c.AdminListen = DefaultAdminListen
	}
	if c.StatusListen == "" {
		c.StatusListen = DefaultStatusListen
	}
	if len(c.Families) == 0 {
		c.Families = family.All()
	}
	for _, fam := range c.Families {
		if _, err := family.Parse(string(fam)); err != nil || fam == "" {
			return fmt.Errorf("devfleet: Config.Families: unknown family %q", fam)
		}
	}
	if c.Queue.Stream == "" {
		c.Queue = jobqueue.DefaultConfig()
	}
	if err := c.Queue.Validate(); err != nil {
		return fmt.Errorf("devfleet: Config.Queue: %w", err)
	}
	if c.Worker.Stream != "" && c.Worker.Stream != c.Queue.Stream {
		return fmt.Errorf("devfleet: Config.Worker.Stream %q differs from Config.Queue.Stream %q", c.Worker.Stream, c.Queue.Stream)
	}
	c.Worker.Stream = c.Queue.Stream
	if c.Worker.FetchWait == 0 {
		// A stop waits for the pull in flight: keep it short on one machine.
		c.Worker.FetchWait = DefaultFetchWait
	}
	switch {
	case c.Worker.ProverMode == "" && c.Worker.Prover == "":
		// The project's own prover: nothing to install, keys kept warm.
		c.Worker.ProverMode = service.ProverNative
	case c.Worker.ProverMode == service.ProverCommand && c.Worker.Prover == "":
		if sj, err := snarkjs.Find(c.CircuitDir); err == nil {
			c.Worker.Prover = sj + " groth16 prove"
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch c.Attester {
	case "":
		c.Attester = AttesterDevNitro
	case AttesterDevNitro, AttesterDevGCP:
	default:
		return fmt.Errorf("devfleet: Config.Attester must be %s or %s, got %q", AttesterDevNitro, AttesterDevGCP, c.Attester)
	}
	return nil
}

func (f *Fleet) start(ctx context.Context) error {
	cfg := f.cfg
	// Directories.
	if cfg.StateDir == "" {
		dir, err := os.MkdirTemp("", "devfleet-")
		if err != nil {
			return fmt.Errorf("devfleet: state dir: %w", err)
		}
		f.state, f.tmp = dir, true
	} else {
		dir, err := filepath.Abs(cfg.StateDir)
		if err != nil {
			return fmt.Errorf("devfleet: state dir: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("devfleet: state dir: %w", err)
		}
		f.state = dir
	}
	run, err := os.MkdirTemp(f.state, "run-")
	if err != nil {
		return fmt.Errorf("devfleet: run dir: %w", err)
	}
	f.run = run

	// The fleet job key, fresh for this run.
	f.keyRaw = job.NewKey()
	if err := os.WriteFile(f.JobKeyFile(), []byte(hex.EncodeToString(f.keyRaw)+"\n"), 0o600); err != nil {
		return fmt.Errorf("devfleet: write job key: %w", err)
	}
	sealer, err := job.NewSealer(f.keyRaw)
	if err != nil {
		return fmt.Errorf("devfleet: %w", err)
	}

	// The development attester; its root stays in the state dir.
	if cfg.Attester == AttesterDevGCP {
		f.gcp, err = attest.NewDevGCP(attest.DevGCPConfig{Dir: f.AttestDir()})
		f.attester = f.gcp
	} else {
		f.nitro, err = attest.NewDev(attest.DevConfig{Dir: f.AttestDir(), ModuleID: ModuleID})
		f.attester = f.nitro
	}
	if err != nil {
		return fmt.Errorf("devfleet: %w", err)
	}

	// NATS.
	f.natsSrv, err = devstack.StartNATS(devstack.NATSConfig{StoreDir: filepath.Join(f.run, "nats"), Port: cfg.NATSPort})
	if err != nil {
		return fmt.Errorf("devfleet: %w", err)
	}
	if f.nc, err = f.connectNATS("devfleet"); err != nil {
		return err
	}
	if f.js, err = jetstream.New(f.nc); err != nil {
		return fmt.Errorf("devfleet: jetstream: %w", err)
	}

	// Postgres.
	f.dbURL = cfg.DatabaseURL
	if f.dbURL == "" {
		f.pg, err = devstack.StartPostgres(ctx, devstack.PostgresConfig{Dir: filepath.Join(f.run, "postgres")})
		if err != nil {
			return fmt.Errorf("devfleet: %w", err)
		}
		if f.dbURL, err = f.pg.CreateDatabase(ctx, DatabaseName); err != nil {
			return fmt.Errorf("devfleet: %w", err)
		}
	}
	if f.pool, err = pgxpool.New(ctx, f.dbURL); err != nil {
		return fmt.Errorf("devfleet: database: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = f.pool.Ping(pingCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("devfleet: database: %w", err)
	}
	applied, err := migrate.Up(ctx, f.pool)
	if err != nil {
		return fmt.Errorf("devfleet: %w", err)
	}
	f.log.Debug("migrations applied", "count", len(applied))

	// Stream and consumers.
	if err := jobqueue.Setup(ctx, f.js, cfg.Queue, cfg.Families); err != nil {
		return fmt.Errorf("devfleet: %w", err)
	}

	// Metrics (prover-api's own, with the Go and process collectors) and
	// the frontend.
	f.metrics = metrics.New()
	publisher, err := jobqueue.NewPublisher(f.js, cfg.Queue)
	if err != nil {
		return fmt.Errorf("devfleet: %w", err)
	}
	fcfg := cfg.Frontend
	fcfg.CircuitFolder, fcfg.ZkeyFolder, fcfg.Families = cfg.CircuitDir, cfg.ZkeyDir, cfg.Families
	// Every client of a dev fleet is on this machine, one source: the
	// per-source limits are off unless the template sets them.
	for _, v := range []*int{&fcfg.MaxSessionsPerSource, &fcfg.SessionShare, &fcfg.MaxConnectionsPerSource} {
		if *v == 0 {
			*v = -1
		}
	}
	if fcfg.HelloRate == 0 {
		fcfg.HelloRate = -1
	}
	events := jobqueue.NewEvents(f.nc)
	f.frontend, err = server.New(server.Deps{
		Store:    store.New(f.pool),
		Queue:    f.metrics.WrapQueue(publisher),
		Events:   events,
		Attester: f.attester,
		Sealer:   sealer,
		Logger:   cfg.Logger,
		Observer: f.metrics,
	}, fcfg)
	if err != nil {
		return fmt.Errorf("devfleet: %w", err)
	}
	f.metrics.Watch(f.frontend)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("devfleet: frontend listener: %w", err)
	}
	f.feAddr = ln.Addr().String()
	feCtx, feStop := context.WithCancel(context.WithoutCancel(ctx))
	f.feStop, f.feDone = feStop, make(chan error, 1)
	go func() { f.feDone <- f.frontend.Serve(feCtx, ln) }()

	// The status relay, as prover-api runs it.
	f.relay, err = server.NewRelay(server.RelayDeps{
		Rows:     store.New(f.pool),
		Events:   events,
		Connect:  server.ListenerConnect(f.pool),
		Logger:   cfg.Logger,
		Observer: f.metrics,
	}, cfg.Relay)
	if err != nil {
		return fmt.Errorf("devfleet: %w", err)
	}
	sln, err := net.Listen("tcp", cfg.StatusListen)
	if err != nil {
		return fmt.Errorf("devfleet: status relay listener: %w", err)
	}
	f.relayAddr = sln.Addr().String()
	relayCtx, relayStop := context.WithCancel(context.WithoutCancel(ctx))
	f.relayStop, f.relayDone = relayStop, make(chan error, 1)
	go func() { f.relayDone <- f.relay.Serve(relayCtx, sln) }()
	// Ready means the relay's LISTEN is in force: a status written straight
	// into the table from now on reaches its subscribers.
	for deadline := time.Now().Add(30 * time.Second); !f.relay.ListenerUp(); {
		if time.Now().After(deadline) {
			return errors.New("devfleet: the status relay's LISTEN connection did not come up within 30s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}

	// Admin.
	if err := f.startAdmin(); err != nil {
		return err
	}

	// Workers.
	if !cfg.NoWorkers {
		for _, fam := range cfg.Families {
			if _, err := f.AddWorkers(ctx, fam, nil); err != nil {
				return err
			}
		}
	}
	f.log.Info("fleet started", "frontend", f.feAddr, "status_relay", f.relayAddr, "admin", f.adminAddr, "nats", f.natsSrv.URL(),
		"state_dir", f.state, "throwaway_postgres", f.pg != nil, "workers", !cfg.NoWorkers)
	return nil
}

func (f *Fleet) connectNATS(name string) (*nats.Conn, error) {
	log := f.log
	nc, err := nats.Connect(f.natsSrv.URL(), nats.Name(name), nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "connection", name, "err", err)
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("devfleet: connect to nats: %w", err)
	}
	return nc, nil
}

// Stop shuts the fleet down in order (see the package comment) and removes
// what Start created. ctx bounds the wait for the frontend and the worker
// pools; the infrastructure is stopped and the directories removed even
// when it ends early. Stop is safe to call more than once.
func (f *Fleet) Stop(ctx context.Context) error {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return nil
	}
	f.stopped = true
	workers := append([]*Workers(nil), f.workers...)
	f.mu.Unlock()

	var errs []error
	// 1. Stop accepting: the frontend's HTTP Shutdown, then its WebSockets;
	// the relay's subscriptions and connections, and its LISTEN.
	if f.feStop != nil {
		f.feStop()
		select {
		case err := <-f.feDone:
			if err != nil {
				errs = append(errs, fmt.Errorf("devfleet: frontend: %w", err))
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("devfleet: frontend did not stop: %w", ctx.Err()))
		}
	}
	if f.relayStop != nil {
		f.relayStop()
		select {
		case err := <-f.relayDone:
			if err != nil {
				errs = append(errs, fmt.Errorf("devfleet: status relay: %w", err))
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("devfleet: status relay did not stop: %w", ctx.Err()))
		}
	}
	// 2. Stop fetching and settle jobs in flight (each pool's own grace).
	for _, w := range workers {
		w.cancel()
	}
	for _, w := range workers {
		if err := w.wait(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	// 3. The admin listener.
	if f.admin != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := f.admin.Shutdown(sctx); err != nil {
			_ = f.admin.Close()
		}
		cancel()
		<-f.adminDone
	}
	// 4. Drain NATS, close the pool.
	for _, w := range workers {
		w.closeConn()
	}
	if f.nc != nil {
		if err := f.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("devfleet: nats drain: %w", err))
		}
		waitClosed(f.nc, 5*time.Second)
	}
	if f.pool != nil {
		f.pool.Close()
	}
	// 5. The servers, then the files.
	if f.natsSrv != nil {
		f.natsSrv.Shutdown()
	}
	if f.pg != nil {
		if err := f.pg.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("devfleet: postgres: %w", err))
		}
	}
	clear(f.keyRaw)
	switch {
	case f.tmp:
		if err := os.RemoveAll(f.state); err != nil {
			errs = append(errs, fmt.Errorf("devfleet: remove state dir: %w", err))
		}
	case f.run != "":
		if err := os.RemoveAll(f.run); err != nil {
			errs = append(errs, fmt.Errorf("devfleet: remove run dir: %w", err))
		}
	}
	if len(errs) == 0 {
		f.log.Info("fleet stopped")
	}
	return errors.Join(errs...)
}

// waitClosed waits until a draining connection has closed.
func waitClosed(nc *nats.Conn, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for !nc.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !nc.IsClosed() {
		nc.Close()
	}
}

// hostURL makes a URL host of a listener address, using the loopback
// address when the listener is on all interfaces.
func hostURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// WSURL is the frontend's WebSocket URL (the app's endpoint).
func (f *Fleet) WSURL() string { return "ws://" + hostURL(f.feAddr) + "/" }

// HTTPURL is the frontend's HTTP URL (JSON-RPC over POST, GET /v1/proofs/{uuid}).
func (f *Fleet) HTTPURL() string { return "http://" + hostURL(f.feAddr) + "/" }

// StatusURL is the status relay's URL, as the app's socket.io-client is
// given it (with path "/").
func (f *Fleet) StatusURL() string { return "http://" + hostURL(f.relayAddr) }

// StatusAddr is the status relay listener's address.
func (f *Fleet) StatusAddr() string { return f.relayAddr }

// Relay is the embedded status relay.
func (f *Fleet) Relay() *server.Relay { return f.relay }

// FrontendAddr is the frontend listener's address.
func (f *Fleet) FrontendAddr() string { return f.feAddr }

// AdminURL is the admin listener's base URL (/healthz, /readyz, /metrics).
func (f *Fleet) AdminURL() string { return "http://" + hostURL(f.adminAddr) }

// MetricsURL is the Prometheus endpoint of the whole fleet.
func (f *Fleet) MetricsURL() string { return f.AdminURL() + "/metrics" }

// NATSURL is the embedded NATS server's client URL.
func (f *Fleet) NATSURL() string { return f.natsSrv.URL() }

// NATSServer is the embedded NATS server (tests stop and restart it to
// make an outage).
func (f *Fleet) NATSServer() *devstack.NATS { return f.natsSrv }

// PostgresServer is the throwaway PostgreSQL server, nil when
// Config.DatabaseURL named a database (tests stop and restart it).
func (f *Fleet) PostgresServer() *devstack.Postgres { return f.pg }

// DatabaseURL is the URL of the fleet's database.
func (f *Fleet) DatabaseURL() string { return f.dbURL }

// ThrowawayPostgres reports whether the database is on a server the fleet
// started (and removes on Stop).
func (f *Fleet) ThrowawayPostgres() bool { return f.pg != nil }

// StateDir is the fleet's state directory.
func (f *Fleet) StateDir() string { return f.state }

// RunDir is this run's directory inside the state directory (removed by Stop).
func (f *Fleet) RunDir() string { return f.run }

// WorkDir is the parent of the worker pools' private job directories.
func (f *Fleet) WorkDir() string { return filepath.Join(f.run, "work") }

// JobKeyFile is the file holding this run's fleet job key (hex, mode 0600),
// for prover-worker or prover-api processes joining the fleet.
func (f *Fleet) JobKeyFile() string { return filepath.Join(f.run, JobKeyFile) }

// AttestDir holds the development attestation roots (kept in a named state dir).
func (f *Fleet) AttestDir() string { return filepath.Join(f.state, "attest") }

// Attester is the development attester's format (Config.Attester).
func (f *Fleet) Attester() string { return f.cfg.Attester }

// RootPEMPath is the root certificate (PEM) of the attester in use, which
// clients pin.
func (f *Fleet) RootPEMPath() string {
	if f.gcp != nil {
		return filepath.Join(f.AttestDir(), attest.DevGCPRootCertFile)
	}
	return filepath.Join(f.AttestDir(), attest.DevRootCertFile)
}

// RootPEM is the root certificate of the attester in use, PEM-encoded.
func (f *Fleet) RootPEM() []byte {
	if f.gcp != nil {
		return f.gcp.RootPEM()
	}
	return f.nitro.RootPEM()
}

// RootCert is the root certificate of the attester in use.
func (f *Fleet) RootCert() *x509.Certificate {
	if f.gcp != nil {
		return f.gcp.RootCert()
	}
	return f.nitro.RootCert()
}

// PCR0 is the PCR0 of the fleet's Nitro documents (derived from the
// running binary), for a client's allow-list; nil with AttesterDevGCP.
func (f *Fleet) PCR0() []byte {
	if f.nitro == nil {
		return nil
	}
	return f.nitro.PCR0()
}

// ImageDigest is the image digest of the fleet's Confidential Space tokens
// (the SHA-256 of the running binary); empty with AttesterDevNitro.
func (f *Fleet) ImageDigest() string {
	if f.gcp == nil {
		return ""
	}
	return f.gcp.ImageDigest()
}

// ErrOtherFormat: a verifier of the format the fleet does not attest in
// was asked for.
var ErrOtherFormat = errors.New("devfleet: the fleet attests in the other format")

// VerifierConfig is the Nitro verifier configuration a client of this
// fleet uses: the development root, this PCR0, DefaultAttestMaxAge. With
// AttesterDevGCP it has no roots (NewVerifier fails).
func (f *Fleet) VerifierConfig() attest.VerifierConfig {
	if f.nitro == nil {
		return attest.VerifierConfig{MaxAge: DefaultAttestMaxAge}
	}
	return attest.VerifierConfig{
		Roots:       []*x509.Certificate{f.nitro.RootCert()},
		AllowedPCR0: [][]byte{f.nitro.PCR0()},
		MaxAge:      DefaultAttestMaxAge,
	}
}

// NewVerifier returns a Nitro verifier built from VerifierConfig
// (ErrOtherFormat with AttesterDevGCP).
func (f *Fleet) NewVerifier() (*attest.Verifier, error) {
	if f.nitro == nil {
		return nil, fmt.Errorf("%w: it signs Confidential Space tokens (use NewTokenVerifier)", ErrOtherFormat)
	}
	return attest.NewVerifier(f.VerifierConfig())
}

// NewTokenVerifier returns the Confidential Space verifier a client of
// this fleet uses: the development root, this image digest, debug allowed
// (development tokens say so), DefaultAttestMaxAge (ErrOtherFormat with
// AttesterDevNitro).
func (f *Fleet) NewTokenVerifier() (*attest.TokenVerifier, error) {
	if f.gcp == nil {
		return nil, fmt.Errorf("%w: it signs Nitro documents (use NewVerifier)", ErrOtherFormat)
	}
	return attest.NewTokenVerifier(attest.TokenVerifierConfig{
		Roots:               []*x509.Certificate{f.gcp.RootCert()},
		AllowedImageDigests: []string{f.gcp.ImageDigest()},
		AllowDebug:          true,
		MaxAge:              DefaultAttestMaxAge,
	})
}

// ClientOptions returns api/client options with the verifier of the
// fleet's format.
func (f *Fleet) ClientOptions() (client.Options, error) {
	if f.gcp != nil {
		v, err := f.NewTokenVerifier()
		return client.Options{TokenVerifier: v}, err
	}
	v, err := f.NewVerifier()
	return client.Options{Verifier: v}, err
}

// Pool is the fleet's database pool.
func (f *Fleet) Pool() *pgxpool.Pool { return f.pool }

// Store is the proofs table.
func (f *Fleet) Store() *store.Store { return store.New(f.pool) }

// NATS is the fleet's own NATS connection (the frontend's).
func (f *Fleet) NATS() *nats.Conn { return f.nc }

// JetStream is the fleet's JetStream context.
func (f *Fleet) JetStream() jetstream.JetStream { return f.js }

// Frontend is the embedded frontend.
func (f *Fleet) Frontend() *server.Server { return f.frontend }

// Families are the families the fleet serves.
func (f *Fleet) Families() []family.Family { return append([]family.Family(nil), f.cfg.Families...) }

// Config is the configuration in effect (defaults filled in).
func (f *Fleet) Config() Config { return f.cfg }

// Backlogs reads each family's queue backlog.
func (f *Fleet) Backlogs(ctx context.Context) ([]jobqueue.Backlog, error) {
	return jobqueue.Backlogs(ctx, f.js, f.cfg.Queue.Stream, f.cfg.Families)
}

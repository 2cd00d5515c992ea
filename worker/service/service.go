// Package service is one family's proof worker pool, embeddable: the
// prover-worker program runs one, and `proverctl dev`, the demo, end-to-end
// tests and benchmarks run one (or several) per family in their own process.
//
//	svc, err := service.New(service.Config{
//		Family: family.Register, Concurrency: 2,
//		CircuitDir: "circuits/build", ZkeyDir: "zkeys",
//		Prover: "circuits/node_modules/.bin/snarkjs groth16 prove",
//		JobKey: key,
//	}, service.Deps{Pool: pool, JS: js, NC: nc, Logger: logger})
//	...
//	err = svc.Run(ctx) // returns after a graceful shutdown once ctx ends
//
// A Service pulls jobs from its family's durable consumer (created
// beforehand by jobqueue.Setup), one per free slot, and proves each one with
// the circuit's witness generator, the configured prover and a verification
// of the proof, recording status in Postgres and announcing each status
// change on NATS. See worker/internal/outcome for how each result is
// acknowledged. A job whose last delivery was never acknowledged (its worker
// was lost) is marked failed by a rescuer that takes JetStream's
// max-deliveries advisories from the advisory stream (worker/internal/rescue);
// open requests whose job is no longer on the queue are published again or
// failed by a reconciler (worker/internal/reconcile); while Postgres does
// not answer, the Service takes no job and the jobs in hand wait for it
// (worker/internal/storegate). Handler serves /metrics, /healthz and /readyz.
//
// Several Services may run in one process, for different families or the
// same family; each keeps its own temporary directories and its own metrics
// registry (unless Deps.Registry is given: Services of different families
// may share one).
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openpassport/prover-fleet/internal/admin"
	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/store"
	"github.com/openpassport/prover-fleet/worker/internal/keycache"
	"github.com/openpassport/prover-fleet/worker/internal/metrics"
	"github.com/openpassport/prover-fleet/worker/internal/outcome"
	"github.com/openpassport/prover-fleet/worker/internal/pipeline"
	"github.com/openpassport/prover-fleet/worker/internal/pool"
	"github.com/openpassport/prover-fleet/worker/internal/proc"
	"github.com/openpassport/prover-fleet/worker/internal/prover"
	"github.com/openpassport/prover-fleet/worker/internal/reconcile"
	"github.com/openpassport/prover-fleet/worker/internal/rescue"
	"github.com/openpassport/prover-fleet/worker/internal/storegate"
	"github.com/openpassport/prover-fleet/worker/internal/verifier"
	"github.com/openpassport/prover-fleet/worker/internal/witness"
	"github.com/openpassport/prover-fleet/worker/internal/workdir"
)

// Prover modes.
const (
	// ProverCommand runs Config.Prover as a child process per proof.
	ProverCommand = "command"
	// ProverNative proves in process with shared/groth16, each circuit's
	// key loaded on first use and kept warm within the key cache's budget
	// (Config.KeyCacheBytes). Timeouts and cancels are honoured between the
	// prover's phases (it cannot be killed mid-phase like a child process).
	ProverNative = "native"
)

// VerifierNative names the in-process verifier for Config.Verifier.
const VerifierNative = "native"

// Defaults applied by New to zero fields.
const (
	DefaultConcurrency     = 1
	DefaultProver          = "rapidsnark"
	DefaultWitnessTimeout  = 10 * time.Minute
	DefaultProveTimeout    = 30 * time.Minute
	DefaultVerifyTimeout   = 2 * time.Minute
	DefaultShutdownGrace   = 30 * time.Second
	DefaultFetchWait       = 5 * time.Second
	DefaultRetryBase       = time.Second
	DefaultRetryMax        = time.Minute
	DefaultSettleTimeout   = 10 * time.Second
	DefaultBacklogInterval = 10 * time.Second
	// DefaultReconcileInterval and DefaultReconcileGrace: see
	// worker/internal/reconcile.
	DefaultReconcileInterval = reconcile.DefaultInterval
	DefaultReconcileGrace    = reconcile.DefaultGrace
	DefaultKeyCacheBytes     = 4 << 30
)

// JobKey is the fleet key that opens sealed circuit inputs. It never prints:
// fmt and slog show [REDACTED].
type JobKey []byte

func (JobKey) String() string               { return "[REDACTED]" }
func (JobKey) GoString() string             { return "[REDACTED]" }
func (JobKey) LogValue() slog.Value         { return slog.StringValue("[REDACTED]") }
func (JobKey) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte("[REDACTED]")) }
func (JobKey) MarshalText() ([]byte, error) { return []byte("[REDACTED]"), nil }
func (JobKey) MarshalJSON() ([]byte, error) { return []byte(`"[REDACTED]"`), nil }
func (k JobKey) bytes() []byte              { return []byte(k) }

// Config configures a Service. Zero fields take the defaults noted.
type Config struct {
	// Family served: register, dsc or disclose. Required.
	Family family.Family
	// Concurrency is the number of jobs run at once (default 1). Keep the
	// family's consumer MaxAckPending at the fleet's total.
	Concurrency int
	// CircuitDir holds <name>_cpp/<name> witness generators. Required.
	CircuitDir string
	// ZkeyDir holds <name>.zkey and <name>.vkey.json. Required.
	ZkeyDir string
	// ZkeyNames maps circuit names to key file names in ZkeyDir for keys
	// not named <name>.zkey (circuitdir.Layout.ZkeyNames,
	// --circuit-zkey-map).
	ZkeyNames map[string]string
	// ProverMode is ProverCommand (default) or ProverNative.
	ProverMode string
	// KeyCacheBytes is the key cache's budget (default
	// DefaultKeyCacheBytes). In native mode, the memory every proving key
	// and window table held in this process may take together: the least
	// recently used key no proof uses is evicted to make room; a key
	// larger than the budget proves alone. In command mode the child
	// provers hold the keys: it is the page cache the worker counts on for
	// the zkeys they read, which says what the worker holds warm.
	KeyCacheBytes int64
	// NativeTables builds, in native mode, window tables for a loaded key
	// in the background with what the key cache's budget leaves
	// (groth16's ProvingKey.Warm: a little less CPU per proof for some
	// memory; the idle keys' tables are the first to go when a key needs
	// room).
	NativeTables bool
	// NoAffinity takes jobs in the order they arrive, whatever the
	// circuit; by default a worker takes the jobs of the circuits whose
	// keys it holds warm first (see jobqueue.Taker), and others after
	// AffinityYield.
	NoAffinity bool
	// AffinityYield is how long a new job is left to the waiting workers
	// holding its key warm before this one takes it (default
	// jobqueue.DefaultYield; negative: never; with none waiting nobody
	// yields).
	AffinityYield time.Duration
	// Prover is the prover command prefix in command mode (default
	// "rapidsnark"): any program taking <zkey> <wtns> <proof.json>
	// <public.json> after it, e.g. "/opt/rapidsnark/prover",
	// "circuits/node_modules/.bin/snarkjs groth16 prove", "zkprove". Split on
	// white space; a bare name is looked up in PATH.
	Prover string
	// Verifier checks each proof before it is recorded: VerifierNative, or a
	// command prefix taking <vkey.json> <public.json> <proof.json> such as
	// "circuits/node_modules/.bin/snarkjs groth16 verify". Default: see
	// DefaultVerifier.
	Verifier string
	// WorkDir holds the private per-job directories (default os.TempDir()).
	WorkDir string
	// Per-stage timeouts; a stage that runs longer is killed and retried.
	WitnessTimeout time.Duration // default 10m
	ProveTimeout   time.Duration // default 30m
	VerifyTimeout  time.Duration // default 2m
	// ShutdownGrace is how long running jobs may finish once Run's context
	// ends before they are killed and handed back (default 30s; negative:
	// no grace).
	ShutdownGrace time.Duration
	// Heartbeat is the InProgress/row heartbeat period while a job runs
	// (default: a third of the consumer's AckWait, or of its shortest
	// BackOff step).
	Heartbeat time.Duration
	// JobKey opens sealed circuit inputs (32 bytes). Required.
	JobKey JobKey
	// WorkerID is recorded on claimed rows (default hostname-pid).
	WorkerID string
	// Stream is the jobs stream (default jobqueue.StreamName).
	Stream string
	// FetchWait is how long one pull waits for a job (default 5s); it also
	// bounds how long a stop waits for the last pull.
	FetchWait time.Duration
	// RetryBase and RetryMax space redeliveries after transient failures:
	// RetryBase·2^(attempt−1), at most RetryMax (defaults 1s, 1m).
	RetryBase time.Duration
	RetryMax  time.Duration
	// SettleTimeout bounds the final status write and ack (default 10s).
	SettleTimeout time.Duration
	// BacklogInterval is how often the consumer's backlog is read for
	// metrics (default 10s).
	BacklogInterval time.Duration
	// ReconcileInterval is how often one worker of the family looks for
	// open requests whose job is no longer on the queue (default 30s;
	// negative: never, for a worker that should leave it to others).
	ReconcileInterval time.Duration
	// ReconcileGrace is how old a request must be before the reconciler
	// looks at it (default 1m; keep it above the frontend's record timeout).
	ReconcileGrace time.Duration
	// ChildEnv is added to the environment of child processes, which
	// otherwise get only PATH, HOME, LANG, LC_ALL and TZ from this process
	// (so no secret in the worker's environment reaches a child).
	ChildEnv []string
}

// DefaultVerifier is the verifier used when Config.Verifier is empty: the
// in-process one (shared/groth16).
const DefaultVerifier = VerifierNative

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.ProverMode == "" {
		c.ProverMode = ProverCommand
	}
	if c.Prover == "" {
		c.Prover = DefaultProver
	}
	if c.Verifier == "" {
		c.Verifier = DefaultVerifier
	}
	if c.WorkDir == "" {
		c.WorkDir = os.TempDir()
	}
	setDur(&c.WitnessTimeout, DefaultWitnessTimeout)
	setDur(&c.ProveTimeout, DefaultProveTimeout)
	setDur(&c.VerifyTimeout, DefaultVerifyTimeout)
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	} else if c.ShutdownGrace < 0 {
		c.ShutdownGrace = 0
	}
	if c.WorkerID == "" {
		host, _ := os.Hostname()
		c.WorkerID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if c.Stream == "" {
		c.Stream = jobqueue.StreamName
	}
	setDur(&c.FetchWait, DefaultFetchWait)
	setDur(&c.RetryBase, DefaultRetryBase)
	setDur(&c.RetryMax, DefaultRetryMax)
	setDur(&c.SettleTimeout, DefaultSettleTimeout)
	setDur(&c.BacklogInterval, DefaultBacklogInterval)
	setDur(&c.ReconcileInterval, DefaultReconcileInterval)
	setDur(&c.ReconcileGrace, DefaultReconcileGrace)
	if c.KeyCacheBytes == 0 {
		c.KeyCacheBytes = DefaultKeyCacheBytes
	}
	return c
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// Validate checks a configuration (after defaults) with exact messages.
func (c Config) Validate() error {
	if _, err := family.Parse(string(c.Family)); err != nil || c.Family == "" {
		return fmt.Errorf("service: Config.Family must be register, dsc or disclose, got %q", c.Family)
	}
	switch {
	case c.Concurrency < 1:
		return fmt.Errorf("service: Config.Concurrency must be at least 1, got %d", c.Concurrency)
	case c.CircuitDir == "":
		return errors.New("service: Config.CircuitDir is required")
	case c.ZkeyDir == "":
		return errors.New("service: Config.ZkeyDir is required")
	case c.ProverMode != ProverCommand && c.ProverMode != ProverNative:
		return fmt.Errorf("service: Config.ProverMode must be %q or %q, got %q", ProverCommand, ProverNative, c.ProverMode)
	case len(c.JobKey) != job.KeySize:
		return fmt.Errorf("service: Config.JobKey must be %d bytes, got %d", job.KeySize, len(c.JobKey))
	case c.KeyCacheBytes < 0:
		return fmt.Errorf("service: Config.KeyCacheBytes must be positive, got %d", c.KeyCacheBytes)
	case c.WitnessTimeout < 0 || c.ProveTimeout < 0 || c.VerifyTimeout < 0:
		return errors.New("service: stage timeouts must be positive")
	case c.Heartbeat < 0:
		return fmt.Errorf("service: Config.Heartbeat must not be negative, got %s", c.Heartbeat)
	case c.FetchWait < 100*time.Millisecond || c.FetchWait > 30*time.Second:
		return fmt.Errorf("service: Config.FetchWait must be between 100ms and 30s, got %s", c.FetchWait)
	case c.RetryBase < 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("service: Config.RetryBase %s and RetryMax %s must satisfy 0 ≤ RetryBase ≤ RetryMax", c.RetryBase, c.RetryMax)
	case c.SettleTimeout < 0 || c.BacklogInterval < 0:
		return errors.New("service: Config.SettleTimeout and Config.BacklogInterval must be positive")
	case c.ReconcileGrace < 0:
		return fmt.Errorf("service: Config.ReconcileGrace must not be negative, got %s", c.ReconcileGrace)
	}
	for _, d := range []struct{ name, path string }{{"CircuitDir", c.CircuitDir}, {"ZkeyDir", c.ZkeyDir}} {
		st, err := os.Stat(d.path)
		if err != nil {
			return fmt.Errorf("service: Config.%s: %w", d.name, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("service: Config.%s %s is not a directory", d.name, d.path)
		}
	}
	return nil
}

// Deps are the connections a Service uses; it never dials or closes them.
type Deps struct {
	Pool   *pgxpool.Pool
	JS     jetstream.JetStream
	NC     *nats.Conn
	Logger *slog.Logger
	// Registry receives the metrics; optional. Without it the Service
	// keeps a registry of its own (see Gatherer).
	Registry prometheus.Registerer
}

// Service is one family's worker pool.
type Service struct {
	cfg      Config
	d        Deps
	log      *slog.Logger
	registry prometheus.Registerer
	gatherer prometheus.Gatherer
	metrics  *metrics.Metrics
	raw      *store.Store
	gate     *storegate.Gate
	store    *storegate.Store // the job path's: waits while Postgres is down
	events   *jobqueue.Events
	sealer   *job.Sealer
	witness  pipeline.Witness
	prover   pipeline.Prover
	verifier pipeline.Verifier
	native   *prover.Native  // in native mode: its table builds stop with Run
	keys     *keycache.Cache // what this worker holds warm
	runs     atomic.Bool
	ready    atomic.Bool
	pool     atomic.Pointer[pool.Pool]
	groups   groups
}

// groups hands the process groups of child processes to the instance
// directory that Run opens (workdir.Root, a proc.Tracker). No child runs
// outside Run.
type groups struct{ root atomic.Pointer[workdir.Root] }

func (g *groups) Track(grp proc.Group) (func(), error) {
	r := g.root.Load()
	if r == nil {
		return nil, errors.New("service: not running: no instance directory to record child processes in")
	}
	return r.Track(grp)
}

// New checks cfg and deps and builds the Service. It starts nothing.
func New(cfg Config, d Deps) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case d.Pool == nil:
		return nil, errors.New("service: Deps.Pool is nil")
	case d.JS == nil:
		return nil, errors.New("service: Deps.JS is nil")
	case d.NC == nil:
		return nil, errors.New("service: Deps.NC is nil")
	case d.Logger == nil:
		return nil, errors.New("service: Deps.Logger is nil")
	}
	s := &Service{cfg: cfg, d: d}
	s.log = d.Logger.With("component", "worker", "family", string(cfg.Family))

	s.registry = d.Registry
	if s.registry == nil {
		reg := prometheus.NewRegistry()
		s.registry, s.gatherer = reg, reg
	} else if g, ok := d.Registry.(prometheus.Gatherer); ok {
		s.gatherer = g
	}
	m, err := metrics.New(s.registry, cfg.Family, cfg.Concurrency)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	s.metrics = m
	s.raw = store.New(d.Pool)
	s.gate, err = storegate.New(s.raw, s.log, storegate.Config{CallTimeout: cfg.SettleTimeout, OnChange: m.StoreChanged})
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	s.store = s.gate.Store(m.Store(s.raw))
	s.events = jobqueue.NewEvents(d.NC)
	if s.sealer, err = job.NewSealer(cfg.JobKey.bytes()); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}

	env := childEnv(cfg.ChildEnv)
	layout := circuitdir.Layout{CircuitDir: cfg.CircuitDir, ZkeyDir: cfg.ZkeyDir, ZkeyNames: cfg.ZkeyNames}
	run := m.Runner(proc.Exec{Tracker: &s.groups})
	w, err := witness.New(run, witness.Config{Layout: layout, Timeout: cfg.WitnessTimeout, Env: env})
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	s.witness = m.Witness(w)

	keyObs := keycache.Observers(keyLog{s.log}, m.KeyObserver())
	switch cfg.ProverMode {
	case ProverCommand:
		p, err := prover.NewCommand(run, prover.CommandConfig{
			Command: cfg.Prover, Layout: layout, Timeout: cfg.ProveTimeout, Env: env,
			PageCacheBudget: cfg.KeyCacheBytes, Observer: keyObs})
		if err != nil {
			return nil, fmt.Errorf("service: Config.Prover: %w", err)
		}
		s.keys = p.Keys()
		s.prover = m.Prover(p)
	case ProverNative:
		p, err := prover.NewNative(prover.NativeConfig{
			Layout: layout, Timeout: cfg.ProveTimeout, Budget: cfg.KeyCacheBytes, Tables: cfg.NativeTables,
			Observer: keyObs})
		if err != nil {
			return nil, fmt.Errorf("service: %w", err)
		}
		s.native = p
		s.keys = p.Keys()
		s.prover = m.Prover(p)
	}
	m.WatchKeyCache(s.keys)

	if cfg.Verifier == VerifierNative {
		v, err := verifier.NewNative(layout)
		if err != nil {
			return nil, fmt.Errorf("service: %w", err)
		}
		s.verifier = m.Verifier(v)
		return s, nil
	}
	v, err := verifier.NewCommand(run, verifier.CommandConfig{
		Command: cfg.Verifier, Layout: layout, Timeout: cfg.VerifyTimeout, Env: env})
	if err != nil {
		return nil, fmt.Errorf("service: Config.Verifier: %w", err)
	}
	s.verifier = m.Verifier(v)
	return s, nil
}

// childEnv is the whole environment of child processes.
func childEnv(extra []string) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if _, ok := os.LookupEnv("PATH"); !ok {
		env = append(env, "PATH=/usr/local/bin:/usr/bin:/bin")
	}
	return append(env, extra...)
}

// Config is the configuration in effect (defaults filled; the key prints
// as [REDACTED]).
func (s *Service) Config() Config { return s.cfg }

// Gatherer serves the Service's metrics; nil when Deps.Registry was given
// and is not a Gatherer.
func (s *Service) Gatherer() prometheus.Gatherer { return s.gatherer }

// Handler serves /metrics (when the Service has a Gatherer), /healthz and
// /readyz (internal/admin: the ReadyChecks' results as JSON, 503 while one
// fails).
func (s *Service) Handler() http.Handler {
	var metrics http.Handler
	if s.gatherer != nil {
		metrics = promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})
	}
	return admin.Handler(admin.Config{
		Checks:  s.ReadyChecks,
		Metrics: metrics,
		Timeout: 3 * time.Second,
	})
}

// ReadyChecks are what must hold for the Service to take jobs: it runs and
// is not stopping ("worker"), NATS is connected ("nats"), Postgres answers
// and no job has found it down since it last answered a probe ("postgres":
// meanwhile the Service takes no job), and the streams and the family's
// consumers exist ("jetstream").
func (s *Service) ReadyChecks() []admin.Check {
	return []admin.Check{
		{Name: "worker", Probe: func(context.Context) error {
			if !s.ready.Load() {
				return errors.New("not running (starting or shutting down)")
			}
			return nil
		}},
		{Name: "nats", Probe: func(context.Context) error {
			if st := s.d.NC.Status(); st != nats.CONNECTED {
				return fmt.Errorf("connection %s", st)
			}
			return nil
		}},
		{Name: "postgres", Probe: func(ctx context.Context) error {
			if err := s.gate.Err(); err != nil {
				return err
			}
			return s.d.Pool.Ping(ctx)
		}},
		{Name: "jetstream", Probe: func(ctx context.Context) error {
			return jobqueue.Check(ctx, s.d.JS, s.cfg.Stream, []family.Family{s.cfg.Family})
		}},
	}
}

// Ready reports why the Service cannot take jobs now, or nil: the first
// failing ReadyCheck, as "name: reason" ("worker: not running …").
func (s *Service) Ready(ctx context.Context) error {
	for _, c := range s.ReadyChecks() {
		if err := c.Probe(ctx); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	return nil
}

// Keys is the key cache: the keys this worker holds warm (in command
// mode, its account of the zkeys in the page cache).
func (s *Service) Keys() *keycache.Cache { return s.keys }

// Running is the number of jobs running now.
func (s *Service) Running() int {
	if p := s.pool.Load(); p != nil {
		return p.Running()
	}
	return 0
}

// Run serves jobs until ctx ends, then shuts down gracefully: it stops
// fetching, lets running jobs finish for up to ShutdownGrace, kills and hands
// back the rest, and returns nil. It returns an error if it cannot start. A
// Service runs once.
func (s *Service) Run(ctx context.Context) error {
	if !s.runs.CompareAndSwap(false, true) {
		return errors.New("service: Run called twice")
	}
	log := s.log
	if s.native != nil {
		defer s.native.Close()
	}
	root, left, err := workdir.Open(s.cfg.WorkDir, workdir.Config{})
	for _, g := range left.Groups {
		log.Warn("killed processes left running by a dead worker", "pgid", g.ID)
	}
	for _, dir := range left.Dirs {
		log.Warn("removed temporary directory left by a dead worker", "dir", dir)
	}
	for _, p := range left.Problems {
		log.Error("cleaning up after a dead worker", "err", p)
	}
	if err != nil {
		return fmt.Errorf("service: work dir: %w", err)
	}
	s.groups.root.Store(root)
	defer func() {
		s.groups.root.Store(nil)
		if err := root.Close(); err != nil {
			log.Error("remove work dir", "err", err)
		}
	}()

	cons, err := s.waitConsumer(ctx, s.cfg.Stream, jobqueue.ConsumerName(s.cfg.Family))
	if err != nil {
		return err
	}
	if cons == nil {
		return nil // stopped before the consumer appeared
	}
	advisories, err := s.waitConsumer(ctx, jobqueue.AdvisoryStream(s.cfg.Stream), jobqueue.RescueConsumerName(s.cfg.Family))
	if err != nil {
		return err
	}
	if advisories == nil {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, s.cfg.SettleTimeout)
	stream, err := s.d.JS.Stream(sctx, s.cfg.Stream)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("service: stream %s: %w", s.cfg.Stream, err)
	}
	info := cons.CachedInfo()
	heartbeat := s.cfg.Heartbeat
	ackWait := info.Config.AckWait
	for _, b := range info.Config.BackOff {
		ackWait = min(ackWait, b)
	}
	if heartbeat == 0 {
		heartbeat = max(ackWait/3, 100*time.Millisecond)
	}
	if heartbeat >= ackWait {
		return fmt.Errorf("service: Config.Heartbeat %s is not below the consumer's AckWait %s", heartbeat, ackWait)
	}

	pl, err := pipeline.New(pipeline.Deps{
		Store: s.store, Events: s.events, Opener: s.sealer, Dirs: root,
		Witness: s.witness, Prover: s.prover, Verifier: s.verifier, Logger: log,
	}, pipeline.Config{WorkerID: s.cfg.WorkerID})
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	var warm func() []string
	if !s.cfg.NoAffinity {
		warm = s.keys.Warm
	}
	taker, err := jobqueue.NewTaker(s.d.JS, jobqueue.TakerConfig{
		Stream: s.cfg.Stream, Family: s.cfg.Family, Wait: s.cfg.FetchWait,
		Warm: warm, ID: s.cfg.WorkerID, Yield: s.cfg.AffinityYield, SettleTimeout: s.cfg.SettleTimeout,
	})
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := taker.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("service: %w", err)
	}
	defer taker.Stop() // after the pool has stopped fetching
	if warm != nil {
		// Evict first the keys other workers hold warm.
		s.keys.SetSpare(taker.HeldElsewhere)
		defer s.keys.SetSpare(nil)
	}
	p, err := pool.New(pool.Deps{
		Fetcher: taker, Job: pl, Store: s.store, Events: s.events, Gate: s.gate,
		Observer: s.metrics.Observer(), Logger: log,
	}, pool.Config{
		Family: s.cfg.Family, Concurrency: s.cfg.Concurrency, WorkerID: s.cfg.WorkerID,
		Heartbeat: heartbeat, FetchWait: s.cfg.FetchWait, ShutdownGrace: s.cfg.ShutdownGrace,
		MaxDeliver:    info.Config.MaxDeliver,
		Backoff:       outcome.Backoff{Base: s.cfg.RetryBase, Max: s.cfg.RetryMax},
		SettleTimeout: s.cfg.SettleTimeout,
	})
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	s.pool.Store(p)

	// The gate's prober outlives ctx: jobs that wait for Postgres during
	// the shutdown grace must see it come back.
	gateCtx, stopGate := context.WithCancel(context.WithoutCancel(ctx))
	gated := make(chan struct{})
	go func() { defer close(gated); s.gate.Run(gateCtx) }()
	defer func() { stopGate(); <-gated }()

	rescuer, err := rescue.New(rescue.Deps{
		Advisories: advisories, Stream: stream, Store: s.metrics.Store(s.raw), Events: s.events, Logger: s.d.Logger,
		Rescued: func(res rescue.Result) {
			if res.Failed {
				s.metrics.Rescued.Inc()
			}
		},
	}, rescue.Config{Family: s.cfg.Family, Stream: s.cfg.Stream, MaxDeliver: info.Config.MaxDeliver,
		Timeout: s.cfg.SettleTimeout, FetchWait: s.cfg.FetchWait, RetryDelay: s.cfg.RetryBase, RetryMax: s.cfg.RetryMax})
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	rescued := make(chan struct{})
	go func() { defer close(rescued); rescuer.Run(ctx) }()
	defer func() { <-rescued }()

	if s.cfg.ReconcileInterval > 0 {
		publisher, err := jobqueue.NewPublisher(s.d.JS, jobqueue.Config{Stream: s.cfg.Stream})
		if err != nil {
			return fmt.Errorf("service: %w", err)
		}
		rec, err := reconcile.New(reconcile.Deps{
			Store: s.raw, Stream: stream, Consumer: cons, Queue: publisher, Events: s.events, Logger: s.d.Logger,
			Deliveries: jobqueue.Deliveries{JS: s.d.JS, Stream: s.cfg.Stream, Family: s.cfg.Family},
			Acted:      func(action string) { s.metrics.Reconciled.WithLabelValues(action).Inc() },
		}, reconcile.Config{Family: s.cfg.Family, Interval: s.cfg.ReconcileInterval, Grace: s.cfg.ReconcileGrace,
			Timeout: s.cfg.SettleTimeout})
		if err != nil {
			return fmt.Errorf("service: %w", err)
		}
		reconciled := make(chan struct{})
		go func() { defer close(reconciled); rec.Run(ctx) }()
		defer func() { <-reconciled }()
	}

	unsubscribe, err := s.events.SubscribeCancels(func(id string) {
		if n := p.Cancel(id); n > 0 {
			log.Info("cancel: stopping running job", "request_id", id, "jobs", n)
		}
	})
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	defer unsubscribe()

	pollCtx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		s.metrics.PollBacklog(pollCtx, s.d.JS, s.cfg.Stream, s.cfg.Family, s.cfg.BacklogInterval, log)
	}()
	defer func() { stopPoll(); <-polled }()

	log.Info("worker started", "worker_id", s.cfg.WorkerID, "concurrency", s.cfg.Concurrency,
		"prover_mode", s.cfg.ProverMode, "prover", s.cfg.Prover, "verifier", s.cfg.Verifier,
		"key_cache_mib", s.cfg.KeyCacheBytes>>20, "affinity", !s.cfg.NoAffinity,
		"work_dir", root.Dir(), "ack_wait_ms", info.Config.AckWait.Milliseconds(),
		"heartbeat_ms", heartbeat.Milliseconds(), "max_deliver", info.Config.MaxDeliver)
	s.ready.Store(true)
	err = p.Run(ctx)
	s.ready.Store(false)
	log.Info("worker stopped")
	return err
}

// waitConsumer finds a durable consumer, waiting (with a log line) while it
// does not exist yet: it is created by jobqueue.Setup, never by workers. It
// returns nil, nil if ctx ends first.
func (s *Service) waitConsumer(ctx context.Context, stream, name string) (jetstream.Consumer, error) {
	for delay := 500 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err := s.d.JS.Consumer(cctx, stream, name)
		cancel()
		if err == nil {
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) &&
			!strings.Contains(err.Error(), "timeout") {
			s.log.Warn("consumer lookup failed", "stream", stream, "consumer", name, "err", err)
		} else {
			s.log.Warn("waiting for a consumer (run proverctl migrate / jobqueue.Setup)",
				"stream", stream, "consumer", name, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(delay):
		}
	}
}

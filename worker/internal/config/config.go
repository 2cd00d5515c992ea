// Package config reads prover-worker's configuration from command-line
// flags and environment variables, and builds its logger.
//
// Every flag can also be set with an environment variable named
// PROVER_WORKER_ and the flag's long name in upper case with '-' → '_'
// (--circuit-folder → PROVER_WORKER_CIRCUIT_FOLDER). A flag on the command
// line wins over the environment. DATABASE_URL and NATS_URL are read too,
// when their PROVER_WORKER_ forms are unset.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/openpassport/prover-fleet/internal/admin"
	"github.com/openpassport/prover-fleet/internal/envflag"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/worker/service"
)

// EnvPrefix prefixes every environment variable.
const EnvPrefix = "PROVER_WORKER_"

// DefaultKeyCacheMiB is --key-cache-mib's default.
const DefaultKeyCacheMiB = service.DefaultKeyCacheBytes >> 20

// Config is the whole program configuration.
type Config struct {
	// Service configures the worker pool; JobKey is loaded by the program
	// from JobKeyFile.
	Service service.Config
	// JobKeyFile holds the fleet key (64 hex characters or 32 bytes).
	JobKeyFile string
	// ZkeyMapFile is the circuit-zkey map (circuitdir.LoadZkeyMap) the
	// program loads into Service.ZkeyNames; empty: every key is <name>.zkey.
	ZkeyMapFile string
	// NATSURL and DatabaseURL locate the servers; NATSTarget and
	// DatabaseTarget optionally send the bytes elsewhere (vsock://3:4222
	// inside an enclave, see shared/vsockdial).
	NATSURL        string
	NATSTarget     string
	DatabaseURL    string
	DatabaseTarget string
	// AdminAddress serves /metrics, /healthz and /readyz; empty disables.
	AdminAddress string
	LogLevel     slog.Level
	LogFormat    string // "json" or "text"
}

// EnvName is the environment variable of a flag.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// fallbackEnv are variables read when a flag's own variable is unset.
var fallbackEnv = map[string]string{"database-url": "DATABASE_URL", "nats-url": "NATS_URL"}

// envVars are the variables of a flag: its own, then its fallback.
func envVars(flag string) []string {
	if fb, ok := fallbackEnv[flag]; ok {
		return []string{EnvName(flag), fb}
	}
	return []string{EnvName(flag)}
}

// Parse reads args (without the program name) and the environment through
// lookup (os.LookupEnv). It returns pflag.ErrHelp after printing the usage
// to out for -h/--help.
func Parse(args []string, lookup func(string) (string, bool), out io.Writer) (Config, error) {
	var (
		c        Config
		s        = &c.Service
		fam      string
		mode     string
		cacheMiB int64
		affinity bool
		level    string
		fs       = pflag.NewFlagSet("prover-worker", pflag.ContinueOnError)
	)
	fs.SetOutput(out)
	fs.SortFlags = false
	fs.StringVar(&fam, "family", "", "proof family this worker serves: register, dsc or disclose (required)")
	fs.IntVar(&s.Concurrency, "concurrency", service.DefaultConcurrency, "jobs run at once")
	fs.StringVarP(&s.CircuitDir, "circuit-folder", "c", "", "folder of witness generators <name>_cpp/<name> (required)")
	fs.StringVarP(&s.ZkeyDir, "zkey-folder", "k", "", "folder of <name>.zkey and <name>.vkey.json (required)")
	fs.StringVarP(&c.ZkeyMapFile, "circuit-zkey-map", "z", "", `JSON file mapping circuit names to zkey file names in the zkey folder, {"<circuit>": "<file>.zkey"} (default: <name>.zkey)`)
	fs.StringVarP(&s.Prover, "prover", "r", service.DefaultProver,
		`prover command taking <zkey> <wtns> <proof.json> <public.json>: a rapidsnark path, "snarkjs groth16 prove", zkprove`)
	fs.StringVar(&mode, "prover-mode", service.ProverCommand, "command (run --prover per proof) or native (in-process, warm keys)")
	fs.Int64Var(&cacheMiB, "key-cache-mib", DefaultKeyCacheMiB,
		"native mode: MiB all proving keys and window tables held in memory may take together (least recently used idle key evicted; a larger key proves alone); command mode: page cache counted on for the zkeys")
	fs.BoolVar(&s.NativeTables, "native-tables", true,
		"native mode: build window tables for loaded keys in the background with what --key-cache-mib leaves")
	fs.BoolVar(&affinity, "affinity", true,
		"take the jobs of circuits whose keys this worker holds warm first (false: in arrival order)")
	fs.DurationVar(&s.AffinityYield, "affinity-yield", jobqueue.DefaultYield,
		"how long a new job is left to the waiting workers holding its key warm before this one takes it (none waiting: no wait; 0: never)")
	fs.StringVar(&s.Verifier, "verifier", service.DefaultVerifier,
		`proof verifier: native, or a command taking <vkey.json> <public.json> <proof.json> ("snarkjs groth16 verify")`)
	fs.StringVar(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL")
	fs.StringVar(&c.NATSTarget, "nats-target", "", "dial NATS here instead (vsock://CID:PORT inside an enclave)")
	fs.StringVarP(&c.DatabaseURL, "database-url", "d", "", "Postgres URL (required)")
	fs.StringVar(&c.DatabaseTarget, "database-target", "", "dial Postgres here instead (vsock://CID:PORT inside an enclave)")
	fs.StringVar(&s.WorkDir, "work-dir", "", "parent of the private per-job directories (default the system temp dir)")
	fs.DurationVar(&s.WitnessTimeout, "witness-timeout", service.DefaultWitnessTimeout, "time limit of one witness generation")
	fs.DurationVar(&s.ProveTimeout, "prove-timeout", service.DefaultProveTimeout, "time limit of one proof")
	fs.DurationVar(&s.VerifyTimeout, "verify-timeout", service.DefaultVerifyTimeout, "time limit of one verification")
	fs.DurationVar(&s.ShutdownGrace, "shutdown-grace", service.DefaultShutdownGrace, "on SIGTERM, how long running jobs may finish before they are handed back")
	fs.DurationVar(&s.Heartbeat, "heartbeat", 0, "InProgress/row heartbeat period while a job runs (0: a third of the consumer's AckWait)")
	fs.StringVar(&c.JobKeyFile, "job-key-file", "", "file holding the fleet key that opens sealed circuit inputs (required)")
	fs.StringVar(&c.AdminAddress, "admin-address", admin.DefaultAddress, `address of /metrics, /healthz and /readyz (loopback by default: set 0.0.0.0:9090 for a scraper elsewhere; "" disables)`)
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or text")
	fs.StringVar(&s.WorkerID, "worker-id", "", "worker id recorded on claimed rows (default hostname-pid)")
	fs.StringVar(&s.Stream, "stream", jobqueue.StreamName, "JetStream stream of proof jobs")
	fs.DurationVar(&s.FetchWait, "fetch-wait", service.DefaultFetchWait, "how long one pull waits for a job")
	fs.DurationVar(&s.RetryBase, "retry-base", service.DefaultRetryBase, "first redelivery delay after a transient failure (doubles per attempt)")
	fs.DurationVar(&s.RetryMax, "retry-max", service.DefaultRetryMax, "longest redelivery delay")
	fs.StringSliceVar(&s.ChildEnv, "child-env", nil, "extra KEY=VALUE for child processes (repeatable)")
	fs.DurationVar(&s.ReconcileInterval, "reconcile-interval", service.DefaultReconcileInterval,
		"how often one worker of the family looks for open requests whose job left the queue (0: never)")
	fs.DurationVar(&s.ReconcileGrace, "reconcile-grace", service.DefaultReconcileGrace,
		"how old a request must be before the reconciler looks at it (above the frontend's 15s record timeout)")

	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	// The environment fills what the command line did not set.
	if err := envflag.Apply(fs, lookup, envVars); err != nil {
		return Config{}, err
	}

	var err error
	if s.Family, err = family.Parse(fam); err != nil || fam == "" {
		return Config{}, errors.New("--family is required: register, dsc or disclose")
	}
	s.ProverMode = mode
	if cacheMiB < 1 || cacheMiB > 1<<30 {
		return Config{}, fmt.Errorf("--key-cache-mib must be between 1 and %d, got %d", 1<<30, cacheMiB)
	}
	s.KeyCacheBytes = cacheMiB << 20
	s.NoAffinity = !affinity
	if s.AffinityYield < 0 {
		return Config{}, fmt.Errorf("--affinity-yield must not be negative, got %s", s.AffinityYield)
	}
	if s.AffinityYield == 0 {
		s.AffinityYield = -1 // explicitly none (zero means "default" to service.Config)
	}
	if s.ShutdownGrace == 0 {
		s.ShutdownGrace = -1 // explicitly none (zero means "default" to service.Config)
	}
	if s.ReconcileInterval == 0 {
		s.ReconcileInterval = -1 // explicitly never
	}
	if err := parseLevel(&c.LogLevel, level); err != nil {
		return Config{}, err
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		return Config{}, fmt.Errorf("--log-format must be json or text, got %q", c.LogFormat)
	}
	var missing []string
	for flag, v := range map[string]string{"--circuit-folder": s.CircuitDir, "--zkey-folder": s.ZkeyDir,
		"--database-url": c.DatabaseURL, "--job-key-file": c.JobKeyFile} {
		if v == "" {
			missing = append(missing, flag)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return Config{}, fmt.Errorf("missing required settings: %s", strings.Join(missing, ", "))
	}
	return c, nil
}

func parseLevel(l *slog.Level, s string) error {
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("--log-level must be debug, info, warn or error, got %q", s)
	}
	return nil
}

// Logger builds the program's logger writing to w.
func (c Config) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Usage is a one-line hint for errors.
func Usage() string {
	return "usage: prover-worker --family register|dsc|disclose -c CIRCUITS -k ZKEYS -d DATABASE_URL --job-key-file FILE [flags] (--help for all)"
}

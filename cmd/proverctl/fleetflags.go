package main

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/openpassport/prover-fleet/internal/devfleet"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/worker/service"
)

// fleetFlags are the flags dev and demo share: where the circuits are and
// how the embedded worker pools prove.
type fleetFlags struct {
	circuits, zkeys string
	databaseURL     string
	families        string
	concurrency     int
	proverMode      string
	prover          string
	verifier        string
	witnessTimeout  time.Duration
	proveTimeout    time.Duration
	verifyTimeout   time.Duration
	shutdownGrace   time.Duration
	keyCacheMiB     int64
	nativeTables    bool
	affinity        bool
	logLevel        string
	logFormat       string
	attester        string
	flags           *flags
}

func (ff *fleetFlags) register(f *flags, defaultLogLevel string) {
	ff.flags = f
	f.StringVarP(&ff.circuits, "circuit-folder", "c", "circuits/build", "folder of witness generators (<name>_cpp/<name>)")
	f.bind("circuit-folder", "PROVER_CIRCUITS")
	f.StringVarP(&ff.zkeys, "zkey-folder", "k", "zkeys", "folder of <name>.zkey and <name>.vkey.json")
	f.bind("zkey-folder", "PROVER_ZKEYS")
	f.StringVarP(&ff.databaseURL, "database-url", "d", "", "PostgreSQL database to use (migrated, kept); empty: a throwaway server from the system's PostgreSQL binaries")
	f.bind("database-url", "DATABASE_URL")
	f.StringVar(&ff.families, "families", "all", "families served: all, or a comma-separated list of register, dsc, disclose")
	f.bind("families", "PROVERCTL_FAMILIES")
	f.IntVar(&ff.concurrency, "concurrency", 1, "jobs each family's worker pool runs at once")
	f.bind("concurrency", "PROVERCTL_CONCURRENCY")
	f.StringVar(&ff.proverMode, "prover-mode", service.ProverNative, "native (in-process, warm keys) or command (run --prover per proof)")
	f.bind("prover-mode", "PROVERCTL_PROVER_MODE")
	f.StringVarP(&ff.prover, "prover", "r", "", `prover command taking <zkey> <wtns> <proof.json> <public.json> (implies --prover-mode command; default: "<circuits>/../node_modules/.bin/snarkjs groth16 prove")`)
	f.bind("prover", "PROVERCTL_PROVER")
	f.StringVar(&ff.verifier, "verifier", "", `verifier the workers check each proof with: native, or a command taking <vkey.json> <public.json> <proof.json> such as "circuits/node_modules/.bin/snarkjs groth16 verify" (default: native)`)
	f.bind("verifier", "PROVERCTL_VERIFIER")
	f.DurationVar(&ff.witnessTimeout, "witness-timeout", service.DefaultWitnessTimeout, "time limit of one witness generation")
	f.DurationVar(&ff.proveTimeout, "prove-timeout", service.DefaultProveTimeout, "time limit of one proof")
	f.DurationVar(&ff.verifyTimeout, "verify-timeout", service.DefaultVerifyTimeout, "time limit of one verification")
	f.DurationVar(&ff.shutdownGrace, "shutdown-grace", service.DefaultShutdownGrace, "on shutdown, how long running jobs may finish before they are handed back")
	f.Int64Var(&ff.keyCacheMiB, "key-cache-mib", service.DefaultKeyCacheBytes>>20,
		"each worker pool's key cache: MiB all proving keys and window tables may take together (native mode)")
	f.bind("key-cache-mib", "PROVERCTL_KEY_CACHE_MIB")
	f.BoolVar(&ff.nativeTables, "native-tables", false, "native mode: build window tables with what the key cache leaves (seconds of CPU per key)")
	f.bind("native-tables", "PROVERCTL_NATIVE_TABLES")
	f.BoolVar(&ff.affinity, "affinity", true, "workers take the jobs of circuits whose keys they hold warm first")
	f.bind("affinity", "PROVERCTL_AFFINITY")
	f.StringVar(&ff.logLevel, "log-level", defaultLogLevel, "debug, info, warn or error")
	f.bind("log-level", "PROVERCTL_LOG_LEVEL")
	f.StringVar(&ff.logFormat, "log-format", "text", "text or json")
	f.bind("log-format", "PROVERCTL_LOG_FORMAT")
	f.StringVar(&ff.attester, "attester", devfleet.AttesterDevGCP, "development attester: dev-gcp (Confidential Space tokens, as the current app expects) or dev-nitro (Nitro documents, as app versions before mid-2025 expect)")
	f.bind("attester", "PROVERCTL_ATTESTER")
}

// config builds the fleet configuration, with the logger writing to w.
func (ff *fleetFlags) config(w io.Writer) (devfleet.Config, error) {
	fams, err := family.ParseList(ff.families)
	if err != nil {
		return devfleet.Config{}, usagef("--families: %v", err)
	}
	if ff.concurrency < 1 {
		return devfleet.Config{}, usagef("--concurrency must be at least 1, got %d", ff.concurrency)
	}
	attester := ff.attester
	if attester == "dev" { // prover-api's alias
		attester = devfleet.AttesterDevNitro
	}
	if attester != devfleet.AttesterDevGCP && attester != devfleet.AttesterDevNitro {
		return devfleet.Config{}, usagef("--attester must be dev-gcp or dev-nitro, got %q", ff.attester)
	}
	logger, err := newLogger(ff.logLevel, ff.logFormat, w)
	if err != nil {
		return devfleet.Config{}, err
	}
	mode := ff.proverMode
	if ff.prover != "" && !ff.flags.Changed("prover-mode") {
		mode = service.ProverCommand // a prover command given: run it
	}
	if ff.keyCacheMiB < 1 || ff.keyCacheMiB > 1<<30 {
		return devfleet.Config{}, usagef("--key-cache-mib must be between 1 and %d, got %d", 1<<30, ff.keyCacheMiB)
	}
	grace := ff.shutdownGrace
	if grace == 0 {
		grace = -1 // none (zero means "default" to service.Config)
	}
	return devfleet.Config{
		DatabaseURL: ff.databaseURL,
		CircuitDir:  ff.circuits,
		ZkeyDir:     ff.zkeys,
		Families:    fams,
		Logger:      logger,
		Attester:    attester,
		Worker: service.Config{
			Concurrency:    ff.concurrency,
			ProverMode:     mode,
			Prover:         ff.prover,
			Verifier:       ff.verifier,
			WitnessTimeout: ff.witnessTimeout,
			ProveTimeout:   ff.proveTimeout,
			VerifyTimeout:  ff.verifyTimeout,
			ShutdownGrace:  grace,
			KeyCacheBytes:  ff.keyCacheMiB << 20,
			NativeTables:   ff.nativeTables,
			NoAffinity:     !ff.affinity,
		},
	}, nil
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level must be debug, info, warn or error, got %q", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format must be text or json, got %q", format)
}

// describeProver says how the fleet's workers prove, for the banners.
func describeProver(cfg devfleet.Config) string {
	w := cfg.Worker
	prover := w.Prover
	if w.ProverMode == service.ProverNative {
		prover = "native (in-process)"
	}
	verifier := w.Verifier
	if verifier == "" {
		verifier = service.DefaultVerifier
	}
	if verifier == service.VerifierNative {
		verifier = "native (in-process)"
	}
	return fmt.Sprintf("prover %s; verifier %s; %d job(s) at once per family", prover, verifier, w.Concurrency)
}

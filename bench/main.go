// Command bench measures the prover fleet against its baselines, in one run
// on one machine, and writes results.md and results.json:
//
//	go run ./bench -c circuits/build -k zkeys -out bench/results        (make bench)
//	go run ./bench -quick -c circuits/build -k zkeys -out /tmp/bench-quick (make bench-quick, CI)
//
// 1. fleet overhead against a bare witness+prove+verify loop, 2. the
// frontend against its crypto-only limit, 3. the queue and status path, 4.
// every prover against snarkjs, 5. the programs' memory, 6. placement (key
// cache and circuit affinity on a catalogue of circuits). See bench/README.md.
// It exits 1 when a benchmark fails (the others still run and are written),
// 2 on bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/openpassport/prover-fleet/bench/internal/report"
	"github.com/openpassport/prover-fleet/bench/internal/suite"
	"github.com/openpassport/prover-fleet/internal/snarkjs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg        suite.Config
		only       string
		verbose    bool
		timeout    time.Duration
		inputs     string
		snarkjsCmd string
		rapid      string
		cpuProf    string
		tablesX    float64
		proverCs   string
	)
	fs.StringVar(&cfg.CircuitDir, "c", "circuits/build", "compiled circuits (<name>_cpp/<name>, <name>.r1cs)")
	fs.StringVar(&cfg.ZkeyDir, "k", "zkeys", "proving keys (<name>.zkey, <name>.vkey.json)")
	fs.StringVar(&inputs, "inputs", "", "sample inputs <name>.json (default: inputs/ beside the -c folder, else circuits/inputs)")
	fs.StringVar(&cfg.OutDir, "out", "", "folder for results.md and results.json (default bench/results, or $TMPDIR/bench-quick with -quick)")
	fs.StringVar(&cfg.BinDir, "bin", "bin", "folder of the built programs (missing ones are built with go build)")
	fs.BoolVar(&cfg.Quick, "quick", false, "tiny sizes: every benchmark runs in seconds (CI)")
	fs.StringVar(&only, "only", "", "comma-separated benchmarks to run: "+strings.Join(suite.All(), ", ")+" (default all)")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "PostgreSQL database for the fleets (default: a throwaway server per fleet)")
	fs.StringVar(&snarkjsCmd, "snarkjs", "", "snarkjs command (default: $SNARKJS, circuits/node_modules/.bin/snarkjs, PATH)")
	fs.StringVar(&rapid, "rapidsnark", "", "rapidsnark prover binary (default: $RAPIDSNARK, else rapidsnark on PATH; none: not measured)")
	fs.StringVar(&cfg.FleetProver, "fleet-prover", "zkprove", "prover of the fleet-overhead and memory benchmarks: zkprove, native or snarkjs")
	fs.StringVar(&cfg.Verifier, "verifier", "native", "verifier of the workers and the bare loop: native (falls back to snarkjs if the worker refuses it) or snarkjs")
	fs.StringVar(&cfg.OverheadCircuit, "overhead-circuit", "disclose_demo", "circuit of the fleet-overhead benchmark (disclose_demo, dsc_demo or register_demo)")
	fs.Float64Var(&tablesX, "warm-tables-x", 2, "table budget of the warm prover with window tables in the provers benchmark, as a multiple of each zkey's size (0: leave it out)")
	fs.StringVar(&proverCs, "prover-circuits", "", "comma-separated circuits of the provers benchmark (default: the demo circuits and every other circuit with a key in -k, e.g. make circuits-large's)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 0, "jobs at once in the fleet-overhead and worker-memory benchmarks (default: the number of CPUs)")
	fs.DurationVar(&timeout, "timeout", 0, "give up after this long (default 40m, or 5m with -quick)")
	fs.BoolVar(&verbose, "v", false, "log the fleets' warnings and errors to stderr")
	fs.StringVar(&cpuProf, "cpuprofile", "", "write a CPU profile of this process (fleets, clients, loops; not the child programs) to this file")
	fs.StringVar(&cfg.FrontendProfileDir, "frontend-profile", "", "write prover-api's CPU and allocation profiles of each measured window of the frontend-as-its-own-process loops to this folder (prover-api-<transport>.prof, .allocs.prof)")
	fs.BoolVar(&cfg.FrontendUnpinned, "frontend-unpinned", false, "do not give prover-api a CPU of its own in the frontend-as-its-own-process loops (by default, with 2 CPUs or more, it runs alone on the last one)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if only != "" {
		cfg.Only = strings.Split(only, ",")
	}
	if tablesX < 0 || tablesX > 100 {
		return fmt.Errorf("%w: -warm-tables-x %g is not between 0 and 100", errUsage, tablesX)
	}
	cfg.TableRatio = tablesX
	if proverCs != "" {
		cfg.ProverCircuits = strings.Split(proverCs, ",")
	}
	if cfg.OutDir == "" {
		// A quick run never overwrites the committed full results.
		cfg.OutDir = filepath.Join("bench", "results")
		if cfg.Quick {
			cfg.OutDir = filepath.Join(os.TempDir(), "bench-quick")
		}
	}
	cfg.InputsDir = inputs
	if cfg.InputsDir == "" {
		abs, err := filepath.Abs(cfg.CircuitDir)
		if err != nil {
			return err
		}
		cfg.InputsDir = filepath.Join(filepath.Dir(abs), "inputs")
		if _, err := os.Stat(cfg.InputsDir); err != nil {
			cfg.InputsDir = filepath.Join("circuits", "inputs")
		}
	}
	cfg.Snarkjs = snarkjsCmd
	if cfg.Snarkjs == "" {
		if p, err := snarkjs.Find(cfg.CircuitDir); err == nil { // "" when missing: the benchmarks that need it say so
			cfg.Snarkjs, _ = filepath.Abs(p)
		}
	}
	cfg.Rapidsnark = rapid
	if cfg.Rapidsnark == "" {
		cfg.Rapidsnark = suite.FindRapidsnark()
	}
	cfg.Stderr = stderr
	level := slog.Level(100) // nothing
	if verbose {
		level = slog.LevelWarn
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if timeout == 0 {
		timeout = 40 * time.Minute
		if cfg.Quick {
			timeout = 5 * time.Minute
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if cpuProf != "" {
		f, err := os.Create(cpuProf)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, runErr := suite.Run(ctx, cfg)
	if res == nil {
		return runErr
	}
	if err := report.WriteFiles(cfg.OutDir, suite.Document(res), res); err != nil {
		return errors.Join(runErr, err)
	}
	fmt.Fprintf(stderr, "bench: wrote %s and %s\n", filepath.Join(cfg.OutDir, "results.md"), filepath.Join(cfg.OutDir, "results.json"))
	return runErr
}

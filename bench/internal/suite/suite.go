// Package suite runs the benchmarks in order (fleet overhead, frontend,
// queue path, provers, memory, placement) with full or quick sizes, and turns their
// results into results.md and results.json. A benchmark that fails is
// recorded as an error and the others still run.
package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/openpassport/prover-fleet/bench/internal/child"
	"github.com/openpassport/prover-fleet/bench/internal/circuits"
	"github.com/openpassport/prover-fleet/bench/internal/frontend"
	"github.com/openpassport/prover-fleet/bench/internal/machine"
	"github.com/openpassport/prover-fleet/bench/internal/memory"
	"github.com/openpassport/prover-fleet/bench/internal/overhead"
	"github.com/openpassport/prover-fleet/bench/internal/placement"
	"github.com/openpassport/prover-fleet/bench/internal/programs"
	"github.com/openpassport/prover-fleet/bench/internal/provers"
	"github.com/openpassport/prover-fleet/bench/internal/queuepath"
	"github.com/openpassport/prover-fleet/bench/internal/report"
	"github.com/openpassport/prover-fleet/shared/family"
)

// Benchmark names, for Config.Only.
const (
	Overhead  = "overhead"
	Frontend  = "frontend"
	Queue     = "queue"
	Provers   = "provers"
	Memory    = "memory"
	Placement = "placement"
)

// snarkjsMaxConstraints leaves snarkjs out of the provers benchmark on larger
// circuits: at 2^20 constraints it takes a quarter of an hour per proof.
const snarkjsMaxConstraints = 300_000

// All lists the benchmarks in the order they run.
func All() []string { return []string{Overhead, Frontend, Queue, Provers, Memory, Placement} }

// Config is the suite's configuration (the bench command's flags).
type Config struct {
	CircuitDir  string
	ZkeyDir     string
	InputsDir   string
	BinDir      string
	OutDir      string
	DatabaseURL string
	Quick       bool
	Only        []string
	// Snarkjs and Rapidsnark are program paths ("" when absent).
	Snarkjs    string
	Rapidsnark string
	// FleetProver is "zkprove", "native" or "snarkjs"; Verifier "native"
	// or "snarkjs".
	FleetProver string
	Verifier    string
	// Concurrency of the fleet-overhead benchmark and the memory
	// benchmark's worker (0: the number of CPUs).
	Concurrency int
	// OverheadCircuit is the fleet-overhead benchmark's circuit (default
	// the smallest, disclose_demo).
	OverheadCircuit string
	// TableRatio is the table memory budget of the warm prover with window
	// tables in the provers benchmark, as a multiple of each zkey's size
	// (0: not measured).
	TableRatio float64
	// ProverCircuits names the provers benchmark's circuits; nil: the demo
	// circuits and every other circuit with a key in ZkeyDir (make
	// circuits-large), or only disclose_demo with Quick.
	ProverCircuits []string
	// FrontendProfileDir, when set, receives prover-api's CPU profile of
	// each own-process frontend loop's measured window.
	FrontendProfileDir string
	// FrontendUnpinned runs the frontend-as-its-own-process loops without
	// giving prover-api a CPU of its own.
	FrontendUnpinned bool
	Logger           *slog.Logger
	Stderr           io.Writer
}

// Results is results.json.
type Results struct {
	Machine       machine.Info     `json:"machine"`
	Quick         bool             `json:"quick"`
	Settings      Settings         `json:"settings"`
	DurationS     float64          `json:"duration_s"`
	FleetOverhead *overhead.Result `json:"fleet_overhead,omitempty"`
	// FleetOverheadMore is the same benchmark on Settings.OverheadMore.
	FleetOverheadMore []*overhead.Result `json:"fleet_overhead_more,omitempty"`
	Frontend          *frontend.Result   `json:"frontend,omitempty"`
	// FrontendProcess is the frontend as its own process (prover-api)
	// with the load generator in another: its CPU per pair against the
	// server-side cryptography of a pair.
	FrontendProcess *frontend.ProcessResult `json:"frontend_process,omitempty"`
	Queue           *queuepath.Result       `json:"queue_path,omitempty"`
	Provers         *provers.Result         `json:"provers,omitempty"`
	// ProverVsRapidsnark is our provers against rapidsnark (issue 14), from
	// the provers benchmark when rapidsnark was given.
	ProverVsRapidsnark []provers.VsRapidsnark `json:"prover_vs_rapidsnark,omitempty"`
	Memory             *memory.Result         `json:"memory,omitempty"`
	Placement          *placement.Result      `json:"placement,omitempty"`
	Errors             []string               `json:"errors,omitempty"`
}

// Settings are the sizes used.
type Settings struct {
	OverheadJobs   int `json:"overhead_jobs"`
	OverheadRounds int `json:"overhead_rounds"`
	// OverheadMore are further circuits for the fleet-overhead benchmark,
	// with OverheadMoreJobs jobs per phase in OverheadMoreRounds rounds: a
	// longer proof shows the fleet's fixed cost per job shrinking.
	OverheadMore       []string `json:"overhead_more,omitempty"`
	OverheadMoreJobs   int      `json:"overhead_more_jobs,omitempty"`
	OverheadMoreRounds int      `json:"overhead_more_rounds,omitempty"`
	Concurrency        int      `json:"concurrency"`
	FrontendClients    int      `json:"frontend_clients"`
	FrontendSeconds    float64  `json:"frontend_seconds"`
	CryptoPairs        int      `json:"crypto_pairs"`
	QueueJobsPerFamily int      `json:"queue_jobs_per_family"`
	QueueSlots         int      `json:"queue_slots_per_family"`
	ProverCircuits     []string `json:"prover_circuits"`
	ProverReps         int      `json:"prover_reps"`
	ProverMinReps      int      `json:"prover_min_reps"`
	Sessions           int      `json:"sessions"`
	WorkerJobs         int      `json:"worker_jobs"`
	// Placement: worker pools (of one slot) and jobs per burst and rounds;
	// the catalogue is the 2^20 circuits when they are built (full runs),
	// else copies of PlacementCopiesOf.
	PlacementWorkers  int    `json:"placement_workers"`
	PlacementJobs     int    `json:"placement_jobs"`
	PlacementRounds   int    `json:"placement_rounds"`
	PlacementCopiesOf string `json:"placement_copies_of"`
	PlacementCopies   int    `json:"placement_copies"`
}

func sizes(quick bool, conc int) Settings {
	if quick {
		return Settings{
			OverheadJobs: 4, OverheadRounds: 2, Concurrency: conc,
			FrontendClients: 4, FrontendSeconds: 1, CryptoPairs: 100,
			QueueJobsPerFamily: 40, QueueSlots: 4,
			ProverCircuits: []string{circuits.Disclose}, ProverReps: 1,
			Sessions: 200, WorkerJobs: 2,
			PlacementWorkers: 2, PlacementJobs: 6, PlacementRounds: 1,
			PlacementCopiesOf: circuits.Disclose, PlacementCopies: 3,
		}
	}
	return Settings{
		OverheadJobs: 400, OverheadRounds: 40, Concurrency: conc,
		OverheadMore: []string{circuits.DSC}, OverheadMoreJobs: 200, OverheadMoreRounds: 20,
		FrontendClients: 64, FrontendSeconds: 8, CryptoPairs: 2000,
		QueueJobsPerFamily: 2000, QueueSlots: 16,
		ProverCircuits: circuits.Demos(), ProverReps: 7, ProverMinReps: 7,
		Sessions: 10000, WorkerJobs: 20,
		PlacementWorkers: 2, PlacementJobs: 12, PlacementRounds: 3,
		PlacementCopiesOf: circuits.DSC, PlacementCopies: 4,
	}
}

// Run runs the selected benchmarks. It returns the results even when some
// failed; the error says which.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Stderr, "bench %6.1fs: %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	raiseFileLimit()
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = runtime.NumCPU()
	}
	set := sizes(cfg.Quick, conc)
	only := cfg.Only
	if len(only) == 0 {
		only = All()
	}
	for _, o := range only {
		if !slices.Contains(All(), o) {
			return nil, fmt.Errorf("suite: unknown benchmark %q (want %s)", o, strings.Join(All(), ", "))
		}
	}
	tools := map[string][]string{"postgres": {"sh", "-c", "ls /usr/lib/postgresql/*/bin/postgres >/dev/null && /usr/lib/postgresql/*/bin/postgres --version"}}
	if cfg.Snarkjs != "" {
		tools["node"] = []string{"node", "--version"}
		tools["snarkjs"] = []string{"sed", "-n", `s/^  "version": "\(.*\)",$/\1/p`, filepath.Join(filepath.Dir(cfg.Snarkjs), "..", "snarkjs", "package.json")}
	}
	res := &Results{Machine: machine.Describe(ctx, tools), Quick: cfg.Quick, Settings: set}

	work, err := os.MkdirTemp("", "bench-")
	if err != nil {
		return nil, fmt.Errorf("suite: %w", err)
	}
	defer os.RemoveAll(work)
	moduleDir, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("suite: %w", err)
	}
	bins, err := programs.Find(ctx, cfg.BinDir, work, moduleDir)
	if err != nil {
		return nil, err
	}
	if len(bins.Built) > 0 {
		logf("built %s (not in %s)", strings.Join(bins.Built, ", "), cfg.BinDir)
	}
	dirs := circuits.Dirs{Circuits: cfg.CircuitDir, Zkeys: cfg.ZkeyDir, Inputs: cfg.InputsDir}
	smallest, err := circuits.Find(dirs, circuits.Disclose)
	if err != nil {
		return nil, err
	}

	// The prover and verifier that fleet and bare loop share.
	proverMode, prover := overhead.ProverCommand, bins.Zkprove
	switch cfg.FleetProver {
	case "zkprove":
	case "native":
		proverMode, prover = overhead.ProverNative, ""
	case "snarkjs":
		if cfg.Snarkjs == "" {
			return nil, errors.New("suite: -fleet-prover snarkjs but snarkjs was not found")
		}
		prover = cfg.Snarkjs + " groth16 prove"
	default:
		return nil, fmt.Errorf("suite: -fleet-prover must be zkprove, native or snarkjs, got %q", cfg.FleetProver)
	}
	fallback := ""
	if cfg.Snarkjs != "" {
		fallback = cfg.Snarkjs + " groth16 verify"
	}
	verifier := overhead.VerifierNative
	switch cfg.Verifier {
	case "native":
	case "snarkjs":
		if fallback == "" {
			return nil, errors.New("suite: -verifier snarkjs but snarkjs was not found")
		}
		verifier = fallback
	default:
		return nil, fmt.Errorf("suite: -verifier must be native or snarkjs, got %q", cfg.Verifier)
	}

	var errs []error
	fail := func(name string, err error) {
		logf("%s FAILED: %v", name, err)
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", name, err))
	}
	for _, name := range only {
		if ctx.Err() != nil {
			fail(name, ctx.Err())
			continue
		}
		t := time.Now()
		logf("%s: start", name)
		switch name {
		case Overhead:
			oc := smallest
			if cfg.OverheadCircuit != "" && cfg.OverheadCircuit != smallest.Name {
				if oc, err = circuits.Find(dirs, cfg.OverheadCircuit); err != nil {
					fail(name, err)
					continue
				}
			}
			measure := func(c circuits.Circuit, jobs, rounds int) (*overhead.Result, error) {
				return overhead.Measure(ctx, overhead.Config{
					Circuit: c, CircuitDir: cfg.CircuitDir, ZkeyDir: cfg.ZkeyDir, DatabaseURL: cfg.DatabaseURL,
					Jobs: jobs, Concurrency: conc, Rounds: rounds,
					ProverMode: proverMode, Prover: prover, Verifier: verifier, Fallback: fallback,
					WorkDir: work, Logger: cfg.Logger, Log: logf,
				})
			}
			r, err := measure(oc, set.OverheadJobs, set.OverheadRounds)
			res.FleetOverhead = r
			if err != nil {
				fail(name, err)
			}
			for _, n := range set.OverheadMore {
				if n == oc.Name || ctx.Err() != nil {
					continue
				}
				c, err := circuits.Find(dirs, n)
				if err != nil {
					fail(name, err)
					continue
				}
				r, err := measure(c, set.OverheadMoreJobs, set.OverheadMoreRounds)
				if r != nil {
					res.FleetOverheadMore = append(res.FleetOverheadMore, r)
				}
				if err != nil {
					fail(name, err)
				}
			}
		case Frontend:
			r, err := frontend.Measure(ctx, frontend.Config{
				Circuit: smallest, CircuitDir: cfg.CircuitDir, ZkeyDir: cfg.ZkeyDir, DatabaseURL: cfg.DatabaseURL,
				Concurrency: set.FrontendClients, Warmup: time.Duration(set.FrontendSeconds * float64(time.Second) / 4),
				Duration: time.Duration(set.FrontendSeconds * float64(time.Second)),
				Logger:   cfg.Logger, Log: logf,
			})
			res.Frontend = r
			if err != nil {
				fail(name, err)
			}
			pr, err := frontend.MeasureProcess(ctx, frontend.ProcessConfig{
				APIBinary: bins.API, LoadgenBinary: bins.Loadgen, BareBinary: bins.BareAPI,
				Circuit: smallest, CircuitDir: cfg.CircuitDir, ZkeyDir: cfg.ZkeyDir, DatabaseURL: cfg.DatabaseURL,
				Concurrency: set.FrontendClients, Warmup: time.Duration(set.FrontendSeconds * float64(time.Second) / 4),
				Duration:    time.Duration(set.FrontendSeconds * float64(time.Second)),
				CryptoPairs: set.CryptoPairs, WorkDir: work, ProfileDir: cfg.FrontendProfileDir, Unpinned: cfg.FrontendUnpinned, Logger: cfg.Logger, Log: logf,
			})
			res.FrontendProcess = pr
			if err != nil {
				fail(name, err)
			}
		case Queue:
			jobs := map[family.Family]circuits.Circuit{}
			for _, n := range []string{circuits.Register, circuits.DSC, circuits.Disclose} {
				c, err := circuits.Find(dirs, n)
				if err != nil {
					fail(name, err)
					break
				}
				jobs[c.Family] = c
			}
			if len(jobs) < 3 {
				continue
			}
			r, err := queuepath.Measure(ctx, queuepath.Config{
				CircuitDir: cfg.CircuitDir, ZkeyDir: cfg.ZkeyDir, DatabaseURL: cfg.DatabaseURL,
				Jobs: jobs, Smallest: smallest, JobsPerFamily: set.QueueJobsPerFamily,
				Slots: set.QueueSlots, Publishers: max(2, set.QueueSlots/2),
				WorkDir: work, Logger: cfg.Logger, Log: logf,
			})
			res.Queue = r
			if err != nil {
				fail(name, err)
			}
		case Provers:
			var cs []circuits.Circuit
			switch {
			case cfg.ProverCircuits != nil:
				set.ProverCircuits = cfg.ProverCircuits
			case !cfg.Quick:
				found, err := circuits.Discover(dirs)
				if err != nil {
					fail(name, err)
					continue
				}
				set.ProverCircuits = nil
				for _, c := range found {
					set.ProverCircuits = append(set.ProverCircuits, c.Name)
				}
			}
			res.Settings.ProverCircuits = set.ProverCircuits
			for _, n := range set.ProverCircuits {
				c, err := circuits.Find(dirs, n)
				if err != nil {
					fail(name, err)
					break
				}
				cs = append(cs, c)
			}
			if len(cs) < len(set.ProverCircuits) {
				continue
			}
			budget := 90 * time.Second
			if cfg.Quick {
				budget = 10 * time.Second
			}
			r, err := provers.Measure(ctx, provers.Config{
				Circuits: cs, Snarkjs: cfg.Snarkjs, Rapidsnark: cfg.Rapidsnark, Zkprove: bins.Zkprove,
				Meter: child.Meter{Helper: bins.Rusage}, WarmProve: bins.WarmProve, TableRatio: cfg.TableRatio,
				Reps: set.ProverReps, MinReps: set.ProverMinReps, Budget: budget, SnarkjsMaxConstraints: snarkjsMaxConstraints,
				WorkDir: work, Log: logf,
			})
			res.Provers = r
			if r != nil {
				res.ProverVsRapidsnark = r.VsRapidsnark()
			}
			if err != nil {
				fail(name, err)
			}
		case Memory:
			r, err := memory.Measure(ctx, memory.Config{
				APIBinary: bins.API, WorkerBinary: bins.Worker,
				CircuitDir: cfg.CircuitDir, ZkeyDir: cfg.ZkeyDir, DatabaseURL: cfg.DatabaseURL,
				Sessions: set.Sessions, Circuit: smallest, Jobs: set.WorkerJobs, Concurrency: conc,
				Prover: bins.Zkprove, Verifier: verifier, Fallback: fallback, NativeToo: true,
				WorkDir: work, Logger: cfg.Logger, Log: logf,
			})
			res.Memory = r
			if err != nil {
				fail(name, err)
			}
		case Placement:
			r, err := measurePlacement(ctx, cfg, set, dirs, work, logf)
			res.Placement = r
			if err != nil {
				fail(name, err)
			}
		}
		logf("%s: done in %.1fs", name, time.Since(t).Seconds())
	}
	res.DurationS = time.Since(start).Seconds()
	res.Machine.LoadAvgEnd = machine.LoadAvg()
	return res, errors.Join(errs...)
}

// raiseFileLimit lifts the soft open-file limit to the hard one: the
// memory benchmark holds thousands of WebSockets.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// FindRapidsnark is the rapidsnark binary named by $RAPIDSNARK, else
// rapidsnark on PATH, or "" (the benchmark then leaves it out).
func FindRapidsnark() string {
	if p := os.Getenv("RAPIDSNARK"); p != "" {
		if abs, err := exec.LookPath(p); err == nil {
			if a, err := filepath.Abs(abs); err == nil {
				return a
			}
			return abs
		}
		return ""
	}
	if p, err := exec.LookPath("rapidsnark"); err == nil {
		return p
	}
	return ""
}

// Document renders res as results.md.
func Document(res *Results) report.Document {
	m := res.Machine
	d := report.Document{
		Title: "prover-fleet benchmarks",
		Preamble: []string{
			"Produced by `go run ./bench` (`make bench`; `make bench-quick` runs the same code on tiny sizes). " +
				"Every figure that is judged is a ratio or a difference against a baseline measured in the same run on the same machine; absolute numbers are for this machine only. " +
				"See bench/README.md for the definitions.",
		},
		Meta: [][2]string{
			{"date (UTC)", m.Date},
			{"commit", m.Commit + dirty(m.Dirty)},
			{"Go", m.GoVersion},
			{"CPU", fmt.Sprintf("%s, %d cores", m.CPUModel, m.Cores)},
			{"memory", report.GiB(m.MemoryBytes)},
			{"kernel", m.Kernel},
			{"load average (1/5/15 min) at start, at end", m.LoadAvgStart + "; " + m.LoadAvgEnd + " (on " + fmt.Sprint(m.Cores) + " cores; above that, other work shared the machine)"},
			{"mode", mode(res.Quick)},
			{"run time", fmt.Sprintf("%.0f s", res.DurationS)},
		},
		Errors: res.Errors,
	}
	for _, k := range sortedKeys(m.Tools) {
		d.Meta = append(d.Meta, [2]string{k, m.Tools[k]})
	}
	if res.FleetOverhead != nil {
		d.Sections = append(d.Sections, res.FleetOverhead.Section())
	}
	for i, r := range res.FleetOverheadMore {
		sec := r.Section()
		sec.Title = fmt.Sprintf("1%c. Fleet overhead on %s (a longer proof)", 'b'+rune(i), r.Circuit)
		d.Sections = append(d.Sections, sec)
	}
	if res.Frontend != nil {
		d.Sections = append(d.Sections, res.Frontend.Section())
	}
	if res.FrontendProcess != nil {
		d.Sections = append(d.Sections, res.FrontendProcess.Section())
	}
	if res.Queue != nil {
		d.Sections = append(d.Sections, res.Queue.Section())
	}
	if res.Provers != nil {
		d.Sections = append(d.Sections, res.Provers.Section())
	}
	if res.Memory != nil {
		d.Sections = append(d.Sections, res.Memory.Section())
	}
	if res.Placement != nil {
		d.Sections = append(d.Sections, res.Placement.Section())
	}
	return d
}

func dirty(d bool) string {
	if d {
		return " (working tree had uncommitted changes)"
	}
	return ""
}

func mode(quick bool) string {
	if quick {
		return "-quick (tiny sizes: checks that every benchmark runs; the numbers mean little)"
	}
	return "full"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// largeSuffix ends the names of the 2^20 circuits the placement benchmark
// uses when they are built (`make circuits-large`).
const largeSuffix = "_20"

// measurePlacement runs the placement benchmark on the 2^20 circuits when
// they are built (a full run), else on copies of a demo circuit.
func measurePlacement(ctx context.Context, cfg Config, set Settings, dirs circuits.Dirs, work string, logf func(string, ...any)) (*placement.Result, error) {
	var cat []circuits.Circuit
	var notes []string
	circuitDir, zkeyDir := cfg.CircuitDir, cfg.ZkeyDir
	fam := family.Register
	if !cfg.Quick {
		keys, _ := filepath.Glob(filepath.Join(cfg.ZkeyDir, "*"+largeSuffix+".zkey"))
		large := circuits.Dirs{Circuits: cfg.CircuitDir, Zkeys: cfg.ZkeyDir, Inputs: filepath.Join(cfg.CircuitDir, "inputs")}
		for _, k := range keys {
			name := strings.TrimSuffix(filepath.Base(k), ".zkey")
			c, err := circuits.Find(large, name)
			if err != nil {
				c, err = circuits.Find(dirs, name)
			}
			if err != nil {
				notes = append(notes, fmt.Sprintf("%s left out: %v", name, err))
				continue
			}
			cat = append(cat, c)
		}
		if len(cat) >= 2 {
			notes = append(notes, fmt.Sprintf("The catalogue is every 2^20 circuit built (`make circuits-large`), served as one %s catalogue: the family of a request is its type, whatever the circuit.", fam))
		} else {
			cat = nil
			notes = append(notes, "Fewer than two 2^20 circuits are built (`make circuits-large`): the catalogue is copies of "+set.PlacementCopiesOf+" instead.")
		}
	}
	if cat == nil {
		var err error
		var d circuits.Dirs
		cat, d, err = placement.Catalogue(dirs, set.PlacementCopiesOf, set.PlacementCopies, filepath.Join(work, "placement"))
		if err != nil {
			return nil, err
		}
		circuitDir, zkeyDir, fam = d.Circuits, d.Zkeys, cat[0].Family
		notes = append(notes, fmt.Sprintf("The catalogue is %s and %d copies of it (same generator and input, separate key files).", set.PlacementCopiesOf, len(cat)-1))
	}
	keys := (len(cat) + set.PlacementWorkers - 1) / set.PlacementWorkers // the pools together can hold the catalogue
	keys = max(1, min(keys, len(cat)-1))
	jobs := max(set.PlacementJobs, len(cat))
	r, err := placement.Measure(ctx, placement.Config{
		Family: fam, Catalogue: cat, CircuitDir: circuitDir, ZkeyDir: zkeyDir, DatabaseURL: cfg.DatabaseURL,
		Workers: set.PlacementWorkers, Concurrency: 1, KeysPerWorker: keys, Jobs: jobs, Rounds: set.PlacementRounds,
		Seed: 1, Logger: cfg.Logger, Log: logf,
	})
	if r != nil {
		r.Notes = append(notes, r.Notes...)
	}
	return r, err
}

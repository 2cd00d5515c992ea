// Package provers runs the same circuit and witness through every prover the
// worker can use and measures wall time and peak memory: snarkjs (the
// baseline), rapidsnark when a binary is given, our native prover as a
// command (cmd/zkprove, cold: it reads the key on every proof) and the
// native prover in process with the key loaded once (warm). Every proof is
// checked with shared/groth16's verifier, and every prover must produce the
// same public signals.
package provers

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openpassport/prover-fleet/bench/internal/child"
	"github.com/openpassport/prover-fleet/bench/internal/circuits"
	"github.com/openpassport/prover-fleet/bench/internal/report"
	"github.com/openpassport/prover-fleet/bench/internal/stats"
	"github.com/openpassport/prover-fleet/bench/internal/warm"
	"github.com/openpassport/prover-fleet/shared/groth16"
)

// Prover names in the results.
const (
	Snarkjs    = "snarkjs"
	Rapidsnark = "rapidsnark"
	NativeCold = "native cold (zkprove command)"
	NativeWarm = "native warm (in process)"
	// NativeWarmTables is the warm prover after groth16's Warm built its
	// fixed-base window tables (the worker's native mode by default).
	NativeWarmTables = "native warm + window tables (in process)"
)

// Config configures a run.
type Config struct {
	Circuits []circuits.Circuit
	// Snarkjs, Rapidsnark and Zkprove are program paths; an empty one is
	// not measured (and said so in the notes).
	Snarkjs    string
	Rapidsnark string
	Zkprove    string
	// Meter measures every prover's run; WarmProve is the warm prover
	// program (bench/internal/cmd/warmprove).
	Meter     child.Meter
	WarmProve string
	// TableRatio sets the memory budget given to groth16's Warm in the
	// second warm prover, as a multiple of the circuit's zkey size (issue
	// 14: tables costing at most twice the zkey); 0 leaves that prover out.
	TableRatio float64
	// Reps is the number of rounds per circuit (at least 1); each round
	// runs every prover once, in turn.
	Reps int
	// Budget bounds one circuit's rounds: after the first, only as many
	// more run as fit, but at least MinReps.
	Budget  time.Duration
	MinReps int
	// SnarkjsMaxConstraints leaves snarkjs out on larger circuits (it takes
	// a quarter of an hour per proof at 2^20); 0: no limit.
	SnarkjsMaxConstraints int
	WorkDir               string
	Log                   func(format string, args ...any)
}

// Run is one prover on one circuit.
type Run struct {
	Prover string `json:"prover"`
	Mode   string `json:"mode"` // "command" or "in-process"
	// Wall is each proof's wall time (for the warm prover: the proof alone,
	// the key already loaded; it includes reading the witness and writing
	// the JSON files).
	Wall    stats.Summary `json:"wall"`
	CPUms   float64       `json:"cpu_ms_per_proof"`
	PeakRSS int64         `json:"peak_rss_bytes"`
	// PeakOverZkey is PeakRSS divided by the zkey file's size.
	PeakOverZkey float64 `json:"peak_rss_over_zkey"`
	// SpeedupVsSnarkjs is snarkjs's median wall time divided by this
	// prover's (0 when snarkjs was not measured).
	SpeedupVsSnarkjs float64 `json:"speedup_vs_snarkjs"`
	// CPUSpeedupVsSnarkjs is the same with CPU time per proof (user +
	// system) instead of wall time: less sensitive to other load on the
	// machine, blind to how well a prover uses the cores.
	CPUSpeedupVsSnarkjs float64 `json:"cpu_speedup_vs_snarkjs"`
	// LoadMS is the warm prover's one-time key load and FirstMS its first
	// proof after the load, which is not among the measured ones.
	LoadMS  float64 `json:"load_ms,omitempty"`
	FirstMS float64 `json:"first_proof_ms,omitempty"`
	// WarmMS, TableBytes and Tables: what groth16's Warm did after the
	// load (the tables prover only), with its budget.
	WarmMS      float64  `json:"warm_ms,omitempty"`
	TableBytes  int64    `json:"table_bytes,omitempty"`
	TableBudget int64    `json:"table_budget_bytes,omitempty"`
	Tables      []string `json:"tables,omitempty"`
	// walls and cpus are the rounds' samples, for the paired ratios.
	walls []time.Duration
}

// CircuitResult is every prover on one circuit.
type CircuitResult struct {
	Circuit   string        `json:"circuit"`
	Size      circuits.Size `json:"size"`
	ZkeyBytes int64         `json:"zkey_bytes"`
	WitnessMS float64       `json:"witness_ms"`
	Runs      []Run         `json:"runs"`
	// WarmOverCold is the warm prover's median over the zkprove command's
	// median (issue 7's target: ≤ 0.7), and WarmTablesOverCold the same for
	// the warm prover with window tables.
	WarmOverCold       float64 `json:"warm_over_cold,omitempty"`
	WarmTablesOverCold float64 `json:"warm_tables_over_cold,omitempty"`
	// SnarkjsSkipped says snarkjs was left out (too large a circuit).
	SnarkjsSkipped bool `json:"snarkjs_skipped,omitempty"`
}

// Result is the whole benchmark.
type Result struct {
	Circuits []CircuitResult `json:"circuits"`
	// MeterFloor is the peak RSS the meter reports for /bin/true: no
	// figure below it means anything.
	MeterFloor int64    `json:"meter_floor_rss_bytes"`
	Notes      []string `json:"notes,omitempty"`
}

// Measure runs the benchmark.
func Measure(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Reps < 1 {
		cfg.Reps = 1
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	res := &Result{}
	if cfg.Snarkjs == "" {
		res.Notes = append(res.Notes, "snarkjs not found: the baseline was not measured and no ratios are given")
	}
	if cfg.Rapidsnark == "" {
		res.Notes = append(res.Notes, "rapidsnark: no binary on PATH (or -rapidsnark), not measured")
	}
	if cfg.Zkprove == "" {
		res.Notes = append(res.Notes, "zkprove binary not found: the native cold prover was not measured")
	}
	if cfg.Meter.Helper == "" || cfg.WarmProve == "" {
		return nil, errors.New("provers: Config.Meter and Config.WarmProve are required")
	}
	floor, err := cfg.Meter.Floor(ctx)
	if err != nil {
		return nil, fmt.Errorf("provers: meter: %w", err)
	}
	res.MeterFloor = floor
	for _, c := range cfg.Circuits {
		cr, err := measureCircuit(ctx, cfg, c)
		if err != nil {
			return res, err
		}
		res.Circuits = append(res.Circuits, cr)
	}
	return res, nil
}

type prover struct {
	name string
	argv []string // command prefix; nil for the warm provers
	out  string   // its output directory

	// The warm provers: their process, table budget and first proof.
	warm   *warmProcess
	budget int64
	first  time.Duration

	walls   []time.Duration
	cpu     time.Duration
	peakRSS int64
}

func measureCircuit(ctx context.Context, cfg Config, c circuits.Circuit) (CircuitResult, error) {
	cr := CircuitResult{Circuit: c.Name, ZkeyBytes: c.ZkeyBytes}
	size, err := c.Size(ctx)
	if err != nil {
		return cr, err
	}
	cr.Size = size
	dir, err := os.MkdirTemp(cfg.WorkDir, "provers-"+c.Name+"-")
	if err != nil {
		return cr, fmt.Errorf("provers: %w", err)
	}
	defer os.RemoveAll(dir)
	wtnsPath, wres, err := c.Witness(ctx, dir)
	if err != nil {
		return cr, err
	}
	cr.WitnessMS = stats.MS(wres.Wall)
	vkJSON, err := os.ReadFile(c.VKey)
	if err != nil {
		return cr, fmt.Errorf("provers: %w", err)
	}
	vk, err := groth16.ParseVerifyingKey(vkJSON)
	if err != nil {
		return cr, fmt.Errorf("provers: %s: %w", c.VKey, err)
	}

	var ps []*prover
	if cfg.Snarkjs != "" {
		if cfg.SnarkjsMaxConstraints > 0 && size.Constraints > cfg.SnarkjsMaxConstraints {
			cr.SnarkjsSkipped = true
		} else {
			ps = append(ps, &prover{name: Snarkjs, argv: []string{cfg.Snarkjs, "groth16", "prove"}})
		}
	}
	if cfg.Rapidsnark != "" {
		ps = append(ps, &prover{name: Rapidsnark, argv: []string{cfg.Rapidsnark}})
	}
	if cfg.Zkprove != "" {
		ps = append(ps, &prover{name: NativeCold, argv: []string{cfg.Zkprove}})
	}
	ps = append(ps, &prover{name: NativeWarm, budget: 0})
	if cfg.TableRatio > 0 {
		ps = append(ps, &prover{name: NativeWarmTables, budget: int64(cfg.TableRatio * float64(c.ZkeyBytes))})
	}
	for i, p := range ps {
		p.out = filepath.Join(dir, fmt.Sprintf("out-%d", i))
		if err := os.Mkdir(p.out, 0o755); err != nil {
			return cr, fmt.Errorf("provers: %w", err)
		}
	}

	// The warm provers: load the key (and build the tables), prove once
	// unmeasured.
	for _, p := range ps {
		if p.argv != nil {
			continue
		}
		cfg.Log("provers: %s: loading %s", c.Name, p.name)
		w, err := startWarm(ctx, cfg, c, wtnsPath, p.out, p.budget)
		if err != nil {
			return cr, err
		}
		defer w.stop()
		p.warm = w
		if p.first, err = w.prove(ctx); err != nil {
			return cr, err
		}
	}

	// Rounds: every prover once per round, in turn, so that drift on the
	// machine hits all of them. The first round tells how many fit in the
	// budget.
	n := cfg.Reps
	for rep := 0; rep < n; rep++ {
		start := time.Now()
		for _, p := range ps {
			cfg.Log("provers: %s with %s (%d/%d)", c.Name, p.name, rep+1, n)
			if p.warm != nil {
				d, err := p.warm.prove(ctx)
				if err != nil {
					return cr, err
				}
				p.walls = append(p.walls, d)
				continue
			}
			args := append(slices.Clone(p.argv[1:]), c.Zkey, wtnsPath, filepath.Join(p.out, "proof.json"), filepath.Join(p.out, "public.json"))
			res, err := cfg.Meter.Run(ctx, child.Cmd{Path: p.argv[0], Args: args, Dir: p.out})
			if err != nil {
				return cr, fmt.Errorf("provers: %s on %s: %w", p.name, c.Name, err)
			}
			p.walls = append(p.walls, res.Wall)
			p.cpu += res.UserCPU + res.SysCPU
			p.peakRSS = max(p.peakRSS, res.MaxRSS)
		}
		if rep == 0 {
			n = max(reps(cfg, time.Since(start)), min(cfg.MinReps, cfg.Reps))
		}
	}
	for _, p := range ps {
		if p.warm == nil {
			continue
		}
		wres, err := p.warm.finish()
		if err != nil {
			return cr, err
		}
		p.peakRSS = wres.MaxRSS
		// The warm process's CPU time covers the load, the tables and
		// every proof. The load and the first proof are CPU-bound on all
		// cores like the proofs, so CPU per proof is shared out by wall
		// time; the tables' build is taken out first at the same rate.
		var proving time.Duration
		for _, d := range p.walls {
			proving += d
		}
		if whole := p.warm.load + p.warm.build + p.first + proving; whole > 0 {
			p.cpu = time.Duration(float64(wres.UserCPU+wres.SysCPU) * float64(proving) / float64(whole))
		}
	}

	var wantPublic []string
	var snarkjsMedian, coldMedian time.Duration
	var snarkjsCPU float64
	for _, p := range ps {
		public, err := checkOutput(vk, p.out)
		if err != nil {
			return cr, fmt.Errorf("provers: %s on %s: %w", p.name, c.Name, err)
		}
		if wantPublic == nil {
			wantPublic = public
		} else if !slices.Equal(public, wantPublic) {
			return cr, fmt.Errorf("provers: %s on %s: public signals %v differ from %s's %v", p.name, c.Name, public, ps[0].name, wantPublic)
		}
		run := Run{
			Prover: p.name, Mode: "command", Wall: stats.Summarize(p.walls), PeakRSS: p.peakRSS,
			CPUms: stats.Round(stats.MS(p.cpu)/float64(len(p.walls)), 1),
		}
		if p.warm != nil {
			run.Mode = "in-process"
			run.LoadMS = stats.Round(stats.MS(p.warm.load), 1)
			run.FirstMS = stats.Round(stats.MS(p.first), 1)
			run.WarmMS = stats.Round(stats.MS(p.warm.build), 1)
			run.TableBytes, run.Tables = p.warm.tableBytes, p.warm.tables
			if p.budget > 0 {
				run.TableBudget = p.budget
			}
		}
		run.walls = p.walls
		med := stats.Median(p.walls)
		switch p.name {
		case Snarkjs:
			snarkjsMedian, snarkjsCPU = med, run.CPUms
		case NativeCold:
			coldMedian = med
		}
		if snarkjsMedian > 0 {
			run.SpeedupVsSnarkjs = stats.Round(float64(snarkjsMedian)/float64(med), 2)
		}
		if snarkjsCPU > 0 && run.CPUms > 0 {
			run.CPUSpeedupVsSnarkjs = stats.Round(snarkjsCPU/run.CPUms, 2)
		}
		if coldMedian > 0 {
			switch p.name {
			case NativeWarm:
				cr.WarmOverCold = stats.Round(float64(med)/float64(coldMedian), 3)
			case NativeWarmTables:
				cr.WarmTablesOverCold = stats.Round(float64(med)/float64(coldMedian), 3)
			}
		}
		if c.ZkeyBytes > 0 {
			run.PeakOverZkey = stats.Round(float64(run.PeakRSS)/float64(c.ZkeyBytes), 2)
		}
		cr.Runs = append(cr.Runs, run)
	}
	return cr, nil
}

// reps is how many rounds fit: cfg.Reps, or fewer when the first round
// shows they would not fit in the budget (at least 1).
func reps(cfg Config, first time.Duration) int {
	if cfg.Budget <= 0 || first <= 0 {
		return cfg.Reps
	}
	return max(1, min(cfg.Reps, int(cfg.Budget/first)))
}

// warmProcess is the warm prover running under the meter, asked for one
// proof at a time.
type warmProcess struct {
	in     *io.PipeWriter
	lines  chan warm.Line
	done   chan struct{}
	res    child.Result
	err    error
	load   time.Duration
	cancel context.CancelFunc

	// What groth16's Warm did after the load, when given a budget.
	build      time.Duration
	tableBytes int64
	tables     []string
}

func startWarm(ctx context.Context, cfg Config, c circuits.Circuit, wtnsPath, out string, budget int64) (*warmProcess, error) {
	ctx, cancel := context.WithCancel(ctx)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	w := &warmProcess{in: inW, lines: make(chan warm.Line, 16), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(w.done)
		w.res, w.err = cfg.Meter.Run(ctx, child.Cmd{
			Path: cfg.WarmProve, Args: []string{c.Zkey, wtnsPath, out, strconv.FormatInt(budget, 10)}, Dir: out, Stdin: inR, Stdout: outW,
		})
		outW.Close()
		inR.Close()
	}()
	go func() {
		defer close(w.lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			var l warm.Line
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				w.lines <- l
			}
		}
		_, _ = io.Copy(io.Discard, outR)
	}()
	l, err := w.next(ctx)
	if err != nil {
		w.stop()
		return nil, err
	}
	if l.LoadNS == 0 {
		w.stop()
		return nil, fmt.Errorf("provers: warm prover on %s: no key load report", c.Name)
	}
	w.load = time.Duration(l.LoadNS)
	w.build, w.tableBytes, w.tables = time.Duration(l.WarmNS), l.TableBytes, l.Tables
	return w, nil
}

func (w *warmProcess) next(ctx context.Context) (warm.Line, error) {
	select {
	case l, ok := <-w.lines:
		if ok {
			return l, nil
		}
	case <-ctx.Done():
		return warm.Line{}, ctx.Err()
	}
	<-w.done
	if w.err != nil {
		return warm.Line{}, fmt.Errorf("provers: warm prover: %w", w.err)
	}
	return warm.Line{}, errors.New("provers: warm prover stopped answering")
}

// prove asks for one proof and returns its time.
func (w *warmProcess) prove(ctx context.Context) (time.Duration, error) {
	if _, err := io.WriteString(w.in, "prove\n"); err != nil {
		return 0, fmt.Errorf("provers: warm prover: %w", err)
	}
	l, err := w.next(ctx)
	if err != nil {
		return 0, err
	}
	if l.ProveNS == 0 {
		return 0, errors.New("provers: warm prover: answer without a proof time")
	}
	return time.Duration(l.ProveNS), nil
}

// finish closes the warm prover's input, waits for it to exit and returns
// its run (peak memory, CPU time).
func (w *warmProcess) finish() (child.Result, error) {
	w.in.Close()
	<-w.done
	if w.err != nil {
		return w.res, fmt.Errorf("provers: warm prover: %w", w.err)
	}
	return w.res, nil
}

// stop ends the warm prover however it is doing.
func (w *warmProcess) stop() {
	w.in.Close()
	w.cancel()
	<-w.done
}

// checkOutput verifies out/proof.json against out/public.json and returns
// the public signals.
func checkOutput(vk *groth16.VerifyingKey, out string) ([]string, error) {
	proof, err := os.ReadFile(filepath.Join(out, "proof.json"))
	if err != nil {
		return nil, err
	}
	public, err := os.ReadFile(filepath.Join(out, "public.json"))
	if err != nil {
		return nil, err
	}
	if err := vk.VerifyJSON(proof, public); err != nil {
		return nil, fmt.Errorf("proof does not verify: %w", err)
	}
	var signals []string
	if err := json.Unmarshal(public, &signals); err != nil {
		return nil, fmt.Errorf("public.json: %w", err)
	}
	if len(signals) == 0 {
		return nil, errors.New("public.json has no signals")
	}
	return signals, nil
}

// Section renders the result.
func (r *Result) Section() report.Section {
	s := report.Section{
		Title: "4. Provers",
		Intro: []string{
			"The same circuit and the same witness (made once by the circuit's C++ generator) through every prover the worker can use. " +
				"Command provers run with the worker's argument shape `<zkey> <wtns> <proof.json> <public.json>` and its minimal environment; " +
				"wall time is from start to exit, peak memory is the program's maximum resident set from wait4's rusage, taken by a small helper process that runs it as its own child " +
				"(a direct child of a Go process inherits the parent's peak RSS as its ru_maxrss, through vfork + exec; see child.Meter). " +
				"The provers take turns: each round runs every prover once, so drift on the machine hits all of them alike. " +
				"The warm prover is a separate process that loads the key once, proves once unmeasured, then proves once per round when asked; its time per proof covers reading the witness, proving and writing the two JSON files, " +
				"and its peak memory is that whole process's (key included). " +
				"It runs twice, as two processes: with the key alone, and after groth16's Warm built window tables (shifted copies of the MSMs' bases) within a budget of a multiple of the zkey's size (-warm-tables-x, default 2; the tables take memory, see peak RSS, and seconds to build, once per key). " +
				"Every prover's output is checked with shared/groth16's verifier, and all must give the same public signals. " +
				"Speedup (wall) = snarkjs's median wall time / the prover's median (issue 7: ≥ 5× on the largest circuit); speedup (CPU) = the same with CPU time per proof, a cross-check that other load on the machine cannot skew. " +
				"Warm/cold = warm median / zkprove median (issue 7: ≤ 0.7, judged on the warm prover as the worker runs it, with tables). Peak / zkey = peak RSS / the zkey file's size.",
		},
	}
	t := report.Table{Header: []string{"circuit", "constraints", "zkey", "prover", "n", "wall p50", "wall min", "CPU/proof", "peak RSS", "peak / zkey", "speedup vs snarkjs (wall)", "(CPU)"}}
	for _, c := range r.Circuits {
		for _, run := range c.Runs {
			speed, cpuSpeed := "—", "—"
			if run.SpeedupVsSnarkjs > 0 {
				speed = report.X(run.SpeedupVsSnarkjs)
			}
			if run.CPUSpeedupVsSnarkjs > 0 {
				cpuSpeed = report.X(run.CPUSpeedupVsSnarkjs)
			}
			name := run.Prover
			switch {
			case run.WarmMS > 0:
				name += fmt.Sprintf(" (key load %s ms, tables %s built in %s ms (%s), a first proof of %s ms before these)",
					report.F(run.LoadMS, 0), strings.Join(run.Tables, " "), report.F(run.WarmMS, 0), report.MiB(run.TableBytes), report.F(run.FirstMS, 0))
			case run.LoadMS > 0:
				name += fmt.Sprintf(" (key load %s ms and a first proof of %s ms before these)", report.F(run.LoadMS, 0), report.F(run.FirstMS, 0))
			}
			t.Row(c.Circuit, fmt.Sprint(c.Size.Constraints), report.MiB(c.ZkeyBytes), name, fmt.Sprint(run.Wall.N),
				report.F(run.Wall.P50MS, 0)+" ms", report.F(run.Wall.MinMS, 0)+" ms", report.F(run.CPUms, 0)+" ms",
				report.MiB(run.PeakRSS), report.F(run.PeakOverZkey, 2), speed, cpuSpeed)
		}
	}
	s.Tables = append(s.Tables, t)
	if rows := r.VsRapidsnark(); len(rows) > 0 {
		s.Tables = append(s.Tables, vsRapidsnarkTable(rows))
	}
	w := report.Table{Header: []string{"circuit", "witness (C++ generator)", "warm / cold (key only)", "warm + tables / cold", "issue 7 target (warm as the worker runs it: with tables)"}}
	for _, c := range r.Circuits {
		wc, wt, target := "—", "—", "—"
		if c.WarmOverCold > 0 {
			wc = report.F(c.WarmOverCold, 3)
		}
		if c.WarmTablesOverCold > 0 {
			wt = report.F(c.WarmTablesOverCold, 3)
			target = report.Target(c.WarmTablesOverCold <= 0.7, "≤ 0.7")
		}
		w.Row(c.Circuit, report.F(c.WitnessMS, 1)+" ms", wc, wt, target)
	}
	s.Tables = append(s.Tables, w)
	if n := len(r.Circuits); n > 0 {
		last := r.Circuits[n-1]
		for _, run := range last.Runs {
			if run.Prover == NativeCold && run.SpeedupVsSnarkjs > 0 {
				s.Notes = append(s.Notes, fmt.Sprintf("Largest circuit measured (%s, %d constraints): native cold is %s faster than snarkjs — %s.",
					last.Circuit, last.Size.Constraints, report.X(run.SpeedupVsSnarkjs), report.Target(run.SpeedupVsSnarkjs >= 5, "≥ 5×")))
			}
		}
	}
	if len(r.VsRapidsnark()) > 0 {
		s.Notes = append(s.Notes, "Against rapidsnark (results.json prover_vs_rapidsnark): time ratio = our median wall time / rapidsnark's median in the same rounds, "+
			"(paired) = the median of the rounds' own ratios; CPU ratio = CPU time per proof / rapidsnark's; RSS ratio = peak RSS / rapidsnark's. "+
			"Issue 14's targets: the command prover (zkprove) at most 0.8× rapidsnark's time and 1.2× its peak RSS; the warm prover with tables costing at most twice the zkey at most 0.5× its time.")
	}
	for _, c := range r.Circuits {
		if c.SnarkjsSkipped {
			s.Notes = append(s.Notes, fmt.Sprintf("%s (%d constraints): snarkjs left out (above the size it proves in reasonable time here); no speedup against it.", c.Circuit, c.Size.Constraints))
		}
	}
	s.Notes = append(s.Notes, fmt.Sprintf("Memory floor of the meter (peak RSS it reports for /bin/true): %s.", report.MiB(r.MeterFloor)))
	s.Notes = append(s.Notes, r.Notes...)
	return s
}

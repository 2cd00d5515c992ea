// Package placement measures circuit affinity and the key cache: the whole
// fleet (client → frontend → JetStream → workers → Postgres → status back)
// proving bursts of jobs spread over a family's catalogue of circuits, with
// worker pools whose key budget holds fewer keys than the catalogue has.
//
// Three modes, each on fresh worker pools of the same fleet, in rounds that
// rotate their order:
//
//   - ideal: every pool's budget holds the whole catalogue and every key is
//     loaded before the burst (all keys warm);
//   - affinity: the constrained budget, workers take the circuits they hold
//     warm first (the default);
//   - no affinity: the constrained budget, jobs taken in arrival order
//     whatever the circuit (--affinity=false).
//
// The two constrained modes run an unmeasured warm-up burst first, so that
// each is measured in its steady state rather than from empty caches. A
// mode's throughput is its jobs ÷ (last proof seen by its client − first
// submit); the ratios against the ideal are the result.
package placement

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/bench/internal/child"
	"github.com/openpassport/prover-fleet/bench/internal/circuits"
	"github.com/openpassport/prover-fleet/bench/internal/report"
	"github.com/openpassport/prover-fleet/bench/internal/stats"
	"github.com/openpassport/prover-fleet/internal/devfleet"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/worker/service"
)

// Config configures a run.
type Config struct {
	// Family serves the catalogue: every job is a request of this family's
	// proof type, whatever its circuit.
	Family family.Family
	// Catalogue is the family's circuits (at least 2); their files are in
	// CircuitDir and ZkeyDir.
	Catalogue  []circuits.Circuit
	CircuitDir string
	ZkeyDir    string
	// DatabaseURL is the fleet's database (empty: a throwaway server).
	DatabaseURL string
	// Workers is the number of worker pools, Concurrency each one's slots.
	Workers     int
	Concurrency int
	// KeysPerWorker is how many of the catalogue's largest keys the
	// constrained budget holds (fewer than the catalogue has).
	KeysPerWorker int
	// Jobs is the size of each measured burst (spread evenly over the
	// catalogue), Rounds how many bursts each mode runs.
	Jobs   int
	Rounds int
	// Seed orders each burst's circuits.
	Seed   uint64
	Logger *slog.Logger
	Log    func(format string, args ...any)
}

// Circuit is one catalogue entry.
type Circuit struct {
	Name        string  `json:"name"`
	Constraints int     `json:"constraints"`
	ZkeyMiB     float64 `json:"zkey_mib"`
}

// Mode is one mode's measurements, over all its rounds.
type Mode struct {
	Name          string        `json:"name"`
	KeyBudgetMiB  float64       `json:"key_budget_mib"`
	Affinity      bool          `json:"affinity"`
	Jobs          int           `json:"jobs"`
	WallS         float64       `json:"wall_s"`
	JobsPerSecond float64       `json:"jobs_per_second"`
	Latency       stats.Summary `json:"latency"`
	// From the workers' metrics during the measured bursts: key loads
	// (cold loads) and the seconds they took, evictions, and proofs whose
	// key was warm or cold.
	ColdLoads     int     `json:"cold_loads"`
	ColdLoadS     float64 `json:"cold_load_s"`
	Evictions     int     `json:"evictions"`
	WarmProofs    int     `json:"warm_proofs"`
	ColdProofs    int     `json:"cold_proofs"`
	ProveMeanMS   float64 `json:"prove_mean_ms"`
	WitnessMeanMS float64 `json:"witness_mean_ms"`
	// CPUPerJobMS is the CPU time of this process's tree (fleet, clients,
	// Postgres, witness generators) per job.
	CPUPerJobMS float64 `json:"cpu_per_job_ms"`
}

// Result is the benchmark's outcome.
type Result struct {
	Family        family.Family `json:"family"`
	Catalogue     []Circuit     `json:"catalogue"`
	CatalogueMiB  float64       `json:"catalogue_mib"`
	Workers       int           `json:"workers"`
	Concurrency   int           `json:"concurrency"`
	KeysPerWorker int           `json:"keys_per_worker"`
	JobsPerBurst  int           `json:"jobs_per_burst"`
	Rounds        int           `json:"rounds"`
	Prover        string        `json:"prover"`
	Ideal         Mode          `json:"ideal"`
	Affinity      Mode          `json:"affinity"`
	NoAffinity    Mode          `json:"no_affinity"`
	// AffinityVsIdeal is the affinity mode's jobs/s over the ideal's
	// (target ≥ 0.9); NoAffinityVsIdeal the same without affinity;
	// AffinityVsNoAffinity the gain of affinity.
	AffinityVsIdeal      float64 `json:"affinity_vs_ideal"`
	NoAffinityVsIdeal    float64 `json:"no_affinity_vs_ideal"`
	AffinityVsNoAffinity float64 `json:"affinity_vs_no_affinity"`
	// The same from CPU time per job (the ideal's ÷ the mode's): the
	// throughput ratios a machine saturated by this work alone would show,
	// which other load on a shared machine hardly moves.
	AffinityCPUVsIdeal   float64  `json:"affinity_cpu_vs_ideal"`
	NoAffinityCPUVsIdeal float64  `json:"no_affinity_cpu_vs_ideal"`
	Notes                []string `json:"notes,omitempty"`
}

// mode is what a run of one mode needs.
type mode struct {
	name     string
	budget   int64
	affinity bool
	prewarm  bool
	out      *Mode
	lat      []time.Duration
	wall     time.Duration
	cpu      child.CPU
	m        counts
}

// Measure runs the benchmark.
func Measure(ctx context.Context, cfg Config) (*Result, error) {
	switch {
	case len(cfg.Catalogue) < 2:
		return nil, errors.New("placement: the catalogue needs at least 2 circuits")
	case cfg.KeysPerWorker < 1 || cfg.KeysPerWorker >= len(cfg.Catalogue):
		return nil, fmt.Errorf("placement: KeysPerWorker must be 1..%d, got %d", len(cfg.Catalogue)-1, cfg.KeysPerWorker)
	case cfg.Workers < 1 || cfg.Concurrency < 1 || cfg.Jobs < len(cfg.Catalogue):
		return nil, errors.New("placement: Workers and Concurrency must be at least 1, Jobs at least the catalogue's size")
	}
	cfg.Rounds = max(cfg.Rounds, 1)
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	res := &Result{
		Family: cfg.Family, Workers: cfg.Workers, Concurrency: cfg.Concurrency, KeysPerWorker: cfg.KeysPerWorker,
		JobsPerBurst: cfg.Jobs, Rounds: cfg.Rounds, Prover: "native (in process), window tables off",
	}
	inputs := map[string][]byte{}
	var total, largest int64
	for _, c := range cfg.Catalogue {
		in, err := c.Inputs()
		if err != nil {
			return nil, err
		}
		inputs[c.Name] = in
		sz, err := c.Size(ctx)
		if err != nil {
			return nil, err
		}
		res.Catalogue = append(res.Catalogue, Circuit{Name: c.Name, Constraints: sz.Constraints, ZkeyMiB: mib(c.ZkeyBytes)})
		total += c.ZkeyBytes
		largest = max(largest, c.ZkeyBytes)
	}
	res.CatalogueMiB = mib(total)
	// A key holds its file's size and a little more (an index): 5% on top
	// keeps KeysPerWorker of the largest keys inside, one more outside.
	small := int64(float64(largest) * (float64(cfg.KeysPerWorker) + 0.05))
	if small >= total {
		return nil, fmt.Errorf("placement: %d keys of %s take the whole catalogue (%s)", cfg.KeysPerWorker, report.MiB(largest), report.MiB(total))
	}
	modes := []*mode{
		{name: "ideal (all keys warm)", budget: 2*total + 64<<20, affinity: true, prewarm: true, out: &res.Ideal},
		{name: "affinity", budget: small, affinity: true, out: &res.Affinity},
		{name: "no affinity", budget: small, affinity: false, out: &res.NoAffinity},
	}

	fleet, err := devfleet.Start(ctx, devfleet.Config{
		CircuitDir: cfg.CircuitDir, ZkeyDir: cfg.ZkeyDir, DatabaseURL: cfg.DatabaseURL,
		Families: []family.Family{cfg.Family}, NoWorkers: true, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("placement: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		_ = fleet.Stop(stopCtx)
	}()
	verifier, err := fleet.NewVerifier()
	if err != nil {
		return nil, fmt.Errorf("placement: %w", err)
	}
	submit := &submitter{url: fleet.WSURL(), opts: client.Options{Verifier: verifier}, family: cfg.Family, inputs: inputs}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))

	for r := range cfg.Rounds {
		for k := range modes {
			md := modes[(k+r)%len(modes)]
			if err := runMode(ctx, cfg, fleet, submit, md, rng, r); err != nil {
				return res, err
			}
		}
	}
	for _, md := range modes {
		o := md.out
		*o = Mode{
			Name: md.name, KeyBudgetMiB: mib(md.budget), Affinity: md.affinity,
			Jobs: len(md.lat), WallS: stats.Round(md.wall.Seconds(), 2),
			JobsPerSecond: stats.Round(float64(len(md.lat))/md.wall.Seconds(), 4),
			Latency:       stats.Summarize(md.lat),
			ColdLoads:     int(md.m.loads), ColdLoadS: stats.Round(md.m.loadSeconds, 2), Evictions: int(md.m.evictions),
			WarmProofs: int(md.m.warm), ColdProofs: int(md.m.cold),
			CPUPerJobMS: stats.Round(stats.MS(md.cpu.Total())/float64(len(md.lat)), 1),
		}
		if md.m.prove.count > 0 {
			o.ProveMeanMS = stats.Round(md.m.prove.sum/float64(md.m.prove.count)*1000, 1)
		}
		if md.m.witness.count > 0 {
			o.WitnessMeanMS = stats.Round(md.m.witness.sum/float64(md.m.witness.count)*1000, 1)
		}
	}
	res.AffinityVsIdeal = stats.Round(stats.Ratio(res.Affinity.JobsPerSecond, res.Ideal.JobsPerSecond), 4)
	res.NoAffinityVsIdeal = stats.Round(stats.Ratio(res.NoAffinity.JobsPerSecond, res.Ideal.JobsPerSecond), 4)
	res.AffinityVsNoAffinity = stats.Round(stats.Ratio(res.Affinity.JobsPerSecond, res.NoAffinity.JobsPerSecond), 4)
	res.AffinityCPUVsIdeal = stats.Round(stats.Ratio(res.Ideal.CPUPerJobMS, res.Affinity.CPUPerJobMS), 4)
	res.NoAffinityCPUVsIdeal = stats.Round(stats.Ratio(res.Ideal.CPUPerJobMS, res.NoAffinity.CPUPerJobMS), 4)
	return res, nil
}

// runMode starts the mode's worker pools, warms them, measures one burst
// and stops them.
func runMode(ctx context.Context, cfg Config, fleet *devfleet.Fleet, submit *submitter, md *mode, rng *rand.Rand, round int) error {
	cfg.Log("placement: round %d/%d, %s: %d worker pools, key budget %s each", round+1, cfg.Rounds, md.name, cfg.Workers, report.MiB(md.budget))
	var pools []*devfleet.Workers
	defer func() {
		for _, w := range pools {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			_ = w.Stop(stopCtx)
			cancel()
		}
	}()
	for range cfg.Workers {
		w, err := fleet.AddWorkers(ctx, cfg.Family, func(sc *service.Config) {
			sc.Concurrency = cfg.Concurrency
			sc.ProverMode = service.ProverNative
			sc.Verifier = service.VerifierNative
			sc.KeyCacheBytes = md.budget
			sc.NativeTables = false
			sc.NoAffinity = !md.affinity
			sc.ShutdownGrace = 5 * time.Second
		})
		if err != nil {
			return fmt.Errorf("placement: %w", err)
		}
		pools = append(pools, w)
	}
	if md.prewarm {
		for _, w := range pools {
			for _, c := range cfg.Catalogue {
				l, err := w.Service().Keys().Acquire(ctx, c.Name)
				if err != nil {
					return fmt.Errorf("placement: prewarm %s: %w", c.Name, err)
				}
				l.Release()
			}
			w.Service().Keys().WaitIdle()
		}
	} else {
		n := len(cfg.Catalogue) * cfg.Workers * cfg.Concurrency
		cfg.Log("placement: %s: warm-up burst of %d jobs (unmeasured)", md.name, n)
		if _, _, err := submit.burst(ctx, burst(cfg.Catalogue, n, rng)); err != nil {
			return err
		}
	}
	before, err := gather(pools)
	if err != nil {
		return err
	}
	cpu0, err := child.TreeCPU(os.Getpid())
	if err != nil {
		return err
	}
	lat, wall, err := submit.burst(ctx, burst(cfg.Catalogue, cfg.Jobs, rng))
	if err != nil {
		return err
	}
	cpu1, err := child.TreeCPU(os.Getpid())
	if err != nil {
		return err
	}
	after, err := gather(pools)
	if err != nil {
		return err
	}
	md.lat, md.wall = append(md.lat, lat...), md.wall+wall
	md.cpu = md.cpu.Add(cpu1.Sub(cpu0))
	md.m = md.m.add(after.sub(before))
	cfg.Log("placement: %s: %d jobs in %.1fs (%.3f jobs/s), %.0f cold loads", md.name, len(lat), wall.Seconds(),
		float64(len(lat))/wall.Seconds(), after.loads-before.loads)
	return nil
}

// burst lists n circuits, each of the catalogue's as often as the others
// (±1), in a random order.
func burst(cat []circuits.Circuit, n int, rng *rand.Rand) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = cat[i%len(cat)].Name
	}
	rng.Shuffle(n, func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// submitter sends jobs through the frontend as the app does.
type submitter struct {
	url    string
	opts   client.Options
	family family.Family
	inputs map[string][]byte
}

// burst submits one job per entry of circuitsInOrder at once (each on its
// own connection) and waits for every proof. It returns each job's latency
// (before its hello → its proof seen) and the burst's wall time (first
// hello → last proof).
func (s *submitter) burst(ctx context.Context, circuitsInOrder []string) ([]time.Duration, time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lat := make([]time.Duration, len(circuitsInOrder))
	var wg sync.WaitGroup
	start := time.Now()
	for i, name := range circuitsInOrder {
		wg.Go(func() {
			t := time.Now()
			if err := s.job(ctx, name); err != nil {
				cancel(err)
				return
			}
			lat[i] = time.Since(t)
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return nil, 0, err
	}
	return lat, wall, nil
}

func (s *submitter) job(ctx context.Context, circuit string) error {
	c, err := client.Dial(ctx, s.url, s.opts)
	if err != nil {
		return fmt.Errorf("placement: %w", err)
	}
	defer c.Close()
	req := client.Request{
		Type: family.ProofType(s.family), Circuit: circuit, Inputs: s.inputs[circuit], Onchain: true,
		EndpointType: "staging_https", Endpoint: "https://bench.example/verify",
	}
	id, err := c.Submit(ctx, req, nil)
	if err != nil {
		return fmt.Errorf("placement: submit %s: %w", circuit, err)
	}
	st, err := c.Wait(ctx, id, nil)
	if err != nil {
		return fmt.Errorf("placement: wait for %s: %w", id, err)
	}
	if st.Status != status.ProofGenerated {
		reason := ""
		if st.Reason != nil {
			reason = *st.Reason
		}
		return fmt.Errorf("placement: %s job %s ended with status %d: %s", circuit, id, st.Status, reason)
	}
	return nil
}

// counts are the workers' key cache and stage counters, summed.
type counts struct {
	loads, evictions, warm, cold float64
	loadSeconds                  float64
	prove, witness               sumCount
}

type sumCount struct{ sum, count float64 }

func (c counts) sub(o counts) counts {
	return counts{
		loads: c.loads - o.loads, evictions: c.evictions - o.evictions, warm: c.warm - o.warm, cold: c.cold - o.cold,
		loadSeconds: c.loadSeconds - o.loadSeconds,
		prove:       sumCount{c.prove.sum - o.prove.sum, c.prove.count - o.prove.count},
		witness:     sumCount{c.witness.sum - o.witness.sum, c.witness.count - o.witness.count},
	}
}

func (c counts) add(o counts) counts {
	return counts{
		loads: c.loads + o.loads, evictions: c.evictions + o.evictions, warm: c.warm + o.warm, cold: c.cold + o.cold,
		loadSeconds: c.loadSeconds + o.loadSeconds,
		prove:       sumCount{c.prove.sum + o.prove.sum, c.prove.count + o.prove.count},
		witness:     sumCount{c.witness.sum + o.witness.sum, c.witness.count + o.witness.count},
	}
}

// gather sums the pools' counters.
func gather(pools []*devfleet.Workers) (counts, error) {
	var c counts
	for _, w := range pools {
		mfs, err := w.Registry().Gather()
		if err != nil {
			return c, fmt.Errorf("placement: gather worker metrics: %w", err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				l := labels(m)
				switch mf.GetName() {
				case "prover_worker_key_cache_loads_total":
					if l["result"] == "ok" {
						c.loads += m.GetCounter().GetValue()
					}
				case "prover_worker_key_cache_evictions_total":
					c.evictions += m.GetCounter().GetValue()
				case "prover_worker_key_cache_proofs_total":
					if l["key"] == "warm" {
						c.warm += m.GetCounter().GetValue()
					} else {
						c.cold += m.GetCounter().GetValue()
					}
				case "prover_worker_key_cache_load_seconds":
					c.loadSeconds += m.GetHistogram().GetSampleSum()
				case "prover_worker_stage_seconds":
					if l["result"] != "ok" {
						continue
					}
					h := m.GetHistogram()
					sc := sumCount{h.GetSampleSum(), float64(h.GetSampleCount())}
					switch l["stage"] {
					case "prove":
						c.prove = sumCount{c.prove.sum + sc.sum, c.prove.count + sc.count}
					case "witness":
						c.witness = sumCount{c.witness.sum + sc.sum, c.witness.count + sc.count}
					}
				}
			}
		}
	}
	return c, nil
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func mib(b int64) float64 { return math.Round(float64(b)/(1<<20)*10) / 10 }

// Catalogue makes a catalogue of n circuits out of one real circuit, for
// when a family has too few: base itself and n−1 copies (base_2, ...)
// whose witness generator, constraints and sample input are links to
// base's and whose keys are copies of base's files (separate files: each is
// cached, and read from the page cache, on its own). It returns the
// catalogue and the folders that hold it, under dir.
func Catalogue(d circuits.Dirs, base string, n int, dir string) ([]circuits.Circuit, circuits.Dirs, error) {
	b, err := circuits.Find(d, base)
	if err != nil {
		return nil, circuits.Dirs{}, err
	}
	out := circuits.Dirs{Circuits: filepath.Join(dir, "circuits"), Zkeys: filepath.Join(dir, "zkeys"), Inputs: filepath.Join(dir, "inputs")}
	for _, p := range []string{out.Circuits, out.Zkeys, out.Inputs} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, circuits.Dirs{}, fmt.Errorf("placement: %w", err)
		}
	}
	var cat []circuits.Circuit
	for i := 1; i <= n; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s_%d", base, i)
		}
		gen := filepath.Join(out.Circuits, name+"_cpp", name)
		if err := os.MkdirAll(filepath.Dir(gen), 0o755); err != nil {
			return nil, circuits.Dirs{}, fmt.Errorf("placement: %w", err)
		}
		for _, l := range [][2]string{
			{b.Generator, gen}, {b.Generator + ".dat", gen + ".dat"},
			{b.R1CS, filepath.Join(out.Circuits, name+".r1cs")},
			{b.Input, filepath.Join(out.Inputs, name+".json")},
			{b.VKey, filepath.Join(out.Zkeys, name+".vkey.json")},
		} {
			if err := os.Symlink(l[0], l[1]); err != nil {
				return nil, circuits.Dirs{}, fmt.Errorf("placement: %w", err)
			}
		}
		if err := copyFile(b.Zkey, filepath.Join(out.Zkeys, name+".zkey")); err != nil {
			return nil, circuits.Dirs{}, err
		}
		c, err := circuits.Find(out, name)
		if err != nil {
			return nil, circuits.Dirs{}, err
		}
		cat = append(cat, c)
	}
	return cat, out, nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("placement: %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("placement: %w", err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("placement: copy %s: %w", from, err)
	}
	return dst.Close()
}

// Section renders the result.
func (r *Result) Section() report.Section {
	names := make([]string, len(r.Catalogue))
	for i, c := range r.Catalogue {
		names[i] = fmt.Sprintf("%s (%s constraints, zkey %s MiB)", c.Name, fmt.Sprint(c.Constraints), report.F(c.ZkeyMiB, 1))
	}
	s := report.Section{
		Title: "6. Placement: key cache and circuit affinity",
		Intro: []string{
			fmt.Sprintf("**What is measured: the whole fleet proving bursts of jobs spread evenly over a catalogue of %d circuits of the %s family**, "+
				"%s; %d worker pools of %d slot(s) each, prover %s. ", len(r.Catalogue), r.Family, strings.Join(names, ", "), r.Workers, r.Concurrency, r.Prover) +
				fmt.Sprintf("Each burst is %d jobs submitted at once through the frontend (hello, attestation, encrypted submit, then waiting for the proof), %d burst(s) per mode, the modes' order rotating between rounds. ", r.JobsPerBurst, r.Rounds) +
				fmt.Sprintf("**ideal**: every pool's key budget holds the whole catalogue (%s MiB) and every key is loaded before the burst. ", report.F(r.CatalogueMiB, 1)) +
				fmt.Sprintf("**affinity** and **no affinity**: a budget of %s MiB per pool, room for %d of the catalogue's keys, after an unmeasured warm-up burst; with and without `--affinity`. ", report.F(r.Affinity.KeyBudgetMiB, 1), r.KeysPerWorker),
			"**jobs/s** = jobs ÷ (last proof seen by its client − first hello) of the burst; **vs ideal** = jobs/s ÷ the ideal's. " +
				"Cold loads, evictions and warm/cold proofs are the workers' `prover_worker_key_cache_*` counters over the measured bursts; prove and witness are the workers' stage means. " +
				"**CPU per job** is the bench process tree's (fleet, clients, Postgres, witness generators) over the burst; **CPU vs ideal** = the ideal's CPU per job ÷ the mode's.",
		},
	}
	t := report.Table{Header: []string{"mode", "key budget", "jobs", "jobs/s", "vs ideal", "CPU per job", "CPU vs ideal", "latency p50 / max", "cold loads (s)", "evictions", "warm / cold proofs", "prove mean", "witness mean"}}
	for _, m := range []Mode{r.Ideal, r.Affinity, r.NoAffinity} {
		vs, cpu := "1", "1"
		switch m.Name {
		case r.Affinity.Name:
			vs, cpu = report.F(r.AffinityVsIdeal, 3), report.F(r.AffinityCPUVsIdeal, 3)
		case r.NoAffinity.Name:
			vs, cpu = report.F(r.NoAffinityVsIdeal, 3), report.F(r.NoAffinityCPUVsIdeal, 3)
		}
		t.Row(m.Name, report.F(m.KeyBudgetMiB, 0)+" MiB", fmt.Sprint(m.Jobs), report.F(m.JobsPerSecond, 3), vs,
			report.F(m.CPUPerJobMS, 0)+" ms", cpu,
			report.F(m.Latency.P50MS/1000, 2)+" / "+report.F(m.Latency.MaxMS/1000, 2)+" s",
			fmt.Sprintf("%d (%s)", m.ColdLoads, report.F(m.ColdLoadS, 2)), fmt.Sprint(m.Evictions),
			fmt.Sprintf("%d / %d", m.WarmProofs, m.ColdProofs),
			report.F(m.ProveMeanMS, 0)+" ms", report.F(m.WitnessMeanMS, 0)+" ms")
	}
	s.Tables = append(s.Tables, t)
	s.Notes = append(s.Notes, fmt.Sprintf("Throughput: affinity ÷ ideal = %s (target ≥ 0.9); no affinity ÷ ideal = %s; affinity ÷ no affinity = %s. "+
		"By CPU per job: affinity %s of the ideal, no affinity %s.",
		report.F(r.AffinityVsIdeal, 3), report.F(r.NoAffinityVsIdeal, 3), report.F(r.AffinityVsNoAffinity, 3),
		report.F(r.AffinityCPUVsIdeal, 3), report.F(r.NoAffinityCPUVsIdeal, 3)))
	s.Notes = append(s.Notes, r.Notes...)
	return s
}

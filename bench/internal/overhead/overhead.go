// Package overhead measures what the fleet adds to proving: N proofs of one
// circuit through the whole fleet (client → frontend → JetStream → worker →
// Postgres → status back to the client) against the same N witness + prove +
// verify runs done by a bare loop with the same concurrency, the same
// programs and the same child-process settings, in the same process on the
// same machine.
//
// Both sides run closed loops: C clients each submit one job and wait for
// its proof before submitting the next, against a worker pool with C slots;
// the bare loop runs C goroutines that each do one job after another. The
// two sides alternate in rounds so that drift on the machine hits both.
package overhead

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
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

// Prover and verifier modes.
const (
	ProverCommand  = service.ProverCommand
	ProverNative   = service.ProverNative
	VerifierNative = service.VerifierNative
)

// Config configures a run.
type Config struct {
	Circuit    circuits.Circuit
	CircuitDir string // for the fleet
	ZkeyDir    string
	// DatabaseURL is the fleet's database (empty: a throwaway server).
	DatabaseURL string
	// Jobs per side (fleet and bare), spread over Rounds.
	Jobs        int
	Concurrency int
	Rounds      int
	// ProverMode is ProverCommand (Prover is the command prefix) or
	// ProverNative.
	ProverMode string
	Prover     string
	// Verifier is VerifierNative or a command prefix; Fallback is the
	// command used when the worker does not support the native verifier.
	Verifier string
	Fallback string
	WorkDir  string
	Logger   *slog.Logger
	Log      func(format string, args ...any)
}

// Side is one side's measurements.
type Side struct {
	Jobs          int           `json:"jobs"`
	WallS         float64       `json:"wall_s"`
	JobsPerSecond float64       `json:"jobs_per_second"`
	Latency       stats.Summary `json:"latency"`
	// CPUPerJobMS is the CPU time of this process's whole tree (the bench
	// with the embedded fleet and clients, Postgres, every witness
	// generator and prover) during the phases, per job.
	CPUPerJobMS float64 `json:"cpu_per_job_ms"`
	// Of which: this process (embedded fleet, clients, the bench's own
	// goroutines), Postgres, and the child programs (witness generators,
	// provers, verifiers run as commands).
	ProcessCPUPerJobMS  float64 `json:"process_cpu_per_job_ms"`
	PostgresCPUPerJobMS float64 `json:"postgres_cpu_per_job_ms"`
	ProgramsCPUPerJobMS float64 `json:"programs_cpu_per_job_ms"`
}

// Result is the benchmark's outcome.
type Result struct {
	Circuit     string `json:"circuit"`
	Concurrency int    `json:"concurrency"`
	Rounds      int    `json:"rounds"`
	Prover      string `json:"prover"`
	Verifier    string `json:"verifier"`
	Postgres    string `json:"postgres"`
	// Fleet is the closed loop (C clients for C worker slots: no job ever
	// waits in the queue), Backlog the fleet with 2C clients (a job always
	// waits for each slot), Bare the bare loop with C goroutines.
	Fleet   Side `json:"fleet"`
	Backlog Side `json:"fleet_backlog"`
	Bare    Side `json:"bare"`
	// ThroughputRatio is the fleet's jobs/s with a backlog over the bare
	// loop's (target ≥ 0.98): capacity against capacity.
	// ClosedLoopRatio is the same for the closed loop, where each slot
	// also waits for its client's next submit.
	ThroughputRatio float64 `json:"throughput_ratio"`
	ClosedLoopRatio float64 `json:"closed_loop_throughput_ratio"`
	// CPURatio is the bare loop's CPU per job over the fleet's (with a
	// backlog): the throughput ratio a machine saturated by this work alone
	// would show, and one that other load on the machine hardly moves.
	CPURatio float64 `json:"cpu_ratio"`
	// Added latency: fleet quantile minus bare quantile (targets p50 ≤ 3 ms,
	// p99 ≤ 15 ms).
	AddedP50MS  float64 `json:"added_p50_ms"`
	AddedP99MS  float64 `json:"added_p99_ms"`
	AddedMeanMS float64 `json:"added_mean_ms"`
	// WorkerStagesMS is the mean time of each stage as the worker timed it
	// (its stage_seconds histogram) over the closed-loop fleet jobs.
	WorkerStagesMS map[string]float64 `json:"worker_stages_mean_ms"`
	// OutsideStagesMeanMS is the fleet's mean end-to-end latency minus the
	// sum of the worker's mean stage times: everything that is not
	// witness, prove or verify.
	OutsideStagesMeanMS float64 `json:"outside_stages_mean_ms"`
	// ClientSubmitMeanMS is the client's mean time from hello to the
	// submit's answer, and ClientAttestMeanMS the part of it spent checking
	// the attestation document (client-side work, on the same cores).
	ClientSubmitMeanMS float64 `json:"client_submit_mean_ms"`
	ClientAttestMeanMS float64 `json:"client_attest_mean_ms"`
	// ClientCryptoCPUMS is the CPU time of one job's client-side
	// cryptography (key, attestation check, ECDH, AES-GCM), measured alone
	// on one thread. Ceiling is the CPU ratio the fleet could reach if
	// everything but that and Postgres cost nothing: bare CPU per job ÷
	// (bare CPU per job + the fleet's extra Postgres CPU per job + the
	// client's cryptography). Both run on the provers' cores here, so when
	// Ceiling is below the target no change to the fleet's Go code can
	// meet it on this machine with this circuit.
	ClientCryptoCPUMS float64 `json:"client_crypto_cpu_ms"`
	Ceiling           float64 `json:"ceiling"`
	// Sequential is the per-job measurement: jobs one at a time through the
	// fleet, each one's end-to-end time minus its own witness + prove +
	// verify time as the worker recorded it.
	Sequential Sequential `json:"sequential"`
	Notes      []string   `json:"notes,omitempty"`
}

// Sequential is the per-job breakdown of jobs run one at a time.
type Sequential struct {
	Jobs int `json:"jobs"`
	// EndToEnd is the client-observed time; Stages the worker's witness +
	// prove + verify time for the same job; Outside the difference.
	EndToEnd stats.Summary `json:"end_to_end"`
	Stages   stats.Summary `json:"stages"`
	Outside  stats.Summary `json:"outside_stages"`
	// Outside splits into Submit (before the hello → the submit's answer)
	// and AfterSubmit (the rest: queue, worker around the stages, status
	// back to the client).
	Submit      stats.Summary `json:"submit"`
	AfterSubmit stats.Summary `json:"after_submit"`
	// The client's hello → submit answer and attestation check, means.
	ClientSubmitMeanMS float64 `json:"client_submit_mean_ms"`
	ClientAttestMeanMS float64 `json:"client_attest_mean_ms"`
}

// Measure runs the benchmark.
func Measure(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Concurrency < 1 || cfg.Jobs < 1 {
		return nil, errors.New("overhead: Jobs and Concurrency must be at least 1")
	}
	cfg.Rounds = max(1, min(cfg.Rounds, cfg.Jobs))
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	c := cfg.Circuit
	inputs, err := c.Inputs()
	if err != nil {
		return nil, err
	}
	res := &Result{Circuit: c.Name, Concurrency: cfg.Concurrency, Rounds: cfg.Rounds}

	fleet, err := devfleet.Start(ctx, devfleet.Config{
		CircuitDir: cfg.CircuitDir, ZkeyDir: cfg.ZkeyDir, DatabaseURL: cfg.DatabaseURL,
		Families: []family.Family{c.Family}, NoWorkers: true, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("overhead: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = fleet.Stop(stopCtx)
	}()
	configure := func(verifier string) func(*service.Config) {
		return func(sc *service.Config) {
			sc.Concurrency = cfg.Concurrency
			sc.ProverMode = cfg.ProverMode
			if cfg.ProverMode != ProverNative {
				sc.Prover = cfg.Prover
			}
			sc.Verifier = verifier
			sc.ShutdownGrace = 5 * time.Second
		}
	}
	workers, err := fleet.AddWorkers(ctx, c.Family, configure(cfg.Verifier))
	if err != nil && cfg.Verifier == VerifierNative && cfg.Fallback != "" {
		res.Notes = append(res.Notes, fmt.Sprintf("the worker refused the native verifier (%v); both sides verify with `%s` instead", err, shortCmd(cfg.Fallback)))
		cfg.Verifier = cfg.Fallback
		workers, err = fleet.AddWorkers(ctx, c.Family, configure(cfg.Verifier))
	}
	if err != nil {
		return nil, fmt.Errorf("overhead: %w", err)
	}
	res.Prover, res.Verifier = proverName(cfg), shortCmd(cfg.Verifier)
	res.Postgres = "the database of -database-url"
	if fleet.ThrowawayPostgres() {
		res.Postgres = "a throwaway Postgres (fsync off)"
	}

	b, err := newBare(ctx, c, inputs, cfg.ProverMode, cfg.Prover, cfg.Verifier, cfg.WorkDir)
	if err != nil {
		return nil, err
	}
	verifier, err := fleet.NewVerifier()
	if err != nil {
		return nil, fmt.Errorf("overhead: %w", err)
	}
	clients := make([]*client.Client, 2*cfg.Concurrency)
	for i := range clients {
		if clients[i], err = client.Dial(ctx, fleet.WSURL(), client.Options{Verifier: verifier}); err != nil {
			return nil, fmt.Errorf("overhead: %w", err)
		}
		defer clients[i].Close()
	}
	req := client.Request{
		Type: c.ProofType, Circuit: c.Name, Inputs: inputs, Onchain: true,
		EndpointType: "staging_https", Endpoint: "https://bench.example/verify",
	}
	f := &fleetSide{clients: clients, req: req}

	// Warm up both sides (page cache, every connection), unmeasured.
	cfg.Log("overhead: warm-up (%d jobs each side)", 2*cfg.Concurrency)
	if _, _, err := runPhase(ctx, 2*cfg.Concurrency, 2*cfg.Concurrency, f.job); err != nil {
		return nil, err
	}
	if _, _, err := runPhase(ctx, cfg.Concurrency, cfg.Concurrency, func(ctx context.Context, _ int) error { return b.run(ctx) }); err != nil {
		return nil, err
	}
	f.reset()

	// Rounds: the three phases in turn, in a rotating order, so that drift
	// on the machine hits all of them.
	bareJob := func(ctx context.Context, _ int) error { return b.run(ctx) }
	phases := []struct {
		name    string
		clients int
		job     func(context.Context, int) error
		lat     []time.Duration
		wall    time.Duration
		cpu     child.CPU
	}{
		{name: "bare", clients: cfg.Concurrency, job: bareJob},
		{name: "fleet", clients: cfg.Concurrency, job: f.job},
		{name: "fleet with a backlog", clients: 2 * cfg.Concurrency, job: f.job},
	}
	var backlogSub, backlogAtt time.Duration
	var backlogN int
	closedStages := map[string]sumCount{} // the worker's stages during the closed-loop phases
	for r := range cfg.Rounds {
		n := cfg.Jobs / cfg.Rounds
		if r < cfg.Jobs%cfg.Rounds {
			n++
		}
		for k := range phases {
			ph := &phases[(k+r)%len(phases)]
			cfg.Log("overhead: round %d/%d, %s, %d jobs", r+1, cfg.Rounds, ph.name, n)
			sub0, att0, n0 := f.clientTimes()
			st0, err := stageSums(workers)
			if err != nil {
				return nil, err
			}
			cpu0, err := child.TreeCPU(os.Getpid())
			if err != nil {
				return nil, err
			}
			lat, wall, err := runPhase(ctx, n, ph.clients, ph.job)
			if err != nil {
				return nil, err
			}
			cpu1, err := child.TreeCPU(os.Getpid())
			if err != nil {
				return nil, err
			}
			ph.cpu = ph.cpu.Add(cpu1.Sub(cpu0))
			if ph.name == "fleet" {
				st1, err := stageSums(workers)
				if err != nil {
					return nil, err
				}
				for k, v := range st1 {
					d := v.sub(st0[k])
					c := closedStages[k]
					closedStages[k] = sumCount{c.sum + d.sum, c.count + d.count}
				}
			}
			ph.lat, ph.wall = append(ph.lat, lat...), ph.wall+wall
			if ph.clients > cfg.Concurrency {
				// The closed loop's client times only.
				sub1, att1, n1 := f.clientTimes()
				backlogSub, backlogAtt, backlogN = backlogSub+sub1-sub0, backlogAtt+att1-att0, backlogN+n1-n0
			}
		}
	}
	bareLat, bareWall, bareCPU := phases[0].lat, phases[0].wall, phases[0].cpu
	fleetLat, fleetWall, fleetCPU := phases[1].lat, phases[1].wall, phases[1].cpu
	backlogLat, backlogWall, backlogCPU := phases[2].lat, phases[2].wall, phases[2].cpu
	sub, att, n := f.clientTimes()
	sub, att, n = sub-backlogSub, att-backlogAtt, n-backlogN
	if n > 0 {
		res.ClientSubmitMeanMS = stats.Round(stats.MS(sub)/float64(n), 2)
		res.ClientAttestMeanMS = stats.Round(stats.MS(att)/float64(n), 2)
	}
	f.reset()
	cfg.Log("overhead: the client's own cryptography, alone")
	cc, err := clientCrypto(ctx, clients[0], verifier, len(inputs)+512, max(20, cfg.Jobs/2))
	if err != nil {
		return nil, err
	}
	res.ClientCryptoCPUMS = stats.Round(stats.MS(cc), 3)
	seqJobs := max(1, cfg.Jobs/4)
	cfg.Log("overhead: %d jobs one at a time, each against its own stage times", seqJobs)
	if res.Sequential, err = sequential(ctx, f, workers, seqJobs); err != nil {
		return nil, err
	}
	if sub, att, n := f.clientTimes(); n > 0 {
		res.Sequential.ClientSubmitMeanMS = stats.Round(stats.MS(sub)/float64(n), 2)
		res.Sequential.ClientAttestMeanMS = stats.Round(stats.MS(att)/float64(n), 2)
	}

	res.Fleet = side(fleetLat, fleetWall, fleetCPU)
	res.Backlog = side(backlogLat, backlogWall, backlogCPU)
	res.Bare = side(bareLat, bareWall, bareCPU)
	res.CPURatio = stats.Round(stats.Ratio(res.Bare.CPUPerJobMS, res.Backlog.CPUPerJobMS), 4)
	pgExtra := max(res.Backlog.PostgresCPUPerJobMS-res.Bare.PostgresCPUPerJobMS, 0)
	res.Ceiling = stats.Round(stats.Ratio(res.Bare.CPUPerJobMS, res.Bare.CPUPerJobMS+pgExtra+res.ClientCryptoCPUMS), 4)
	res.ThroughputRatio = stats.Round(stats.Ratio(res.Backlog.JobsPerSecond, res.Bare.JobsPerSecond), 4)
	res.ClosedLoopRatio = stats.Round(stats.Ratio(res.Fleet.JobsPerSecond, res.Bare.JobsPerSecond), 4)
	res.AddedP50MS = stats.Round(res.Fleet.Latency.P50MS-res.Bare.Latency.P50MS, 2)
	res.AddedP99MS = stats.Round(res.Fleet.Latency.P99MS-res.Bare.Latency.P99MS, 2)
	res.AddedMeanMS = stats.Round(res.Fleet.Latency.MeanMS-res.Bare.Latency.MeanMS, 2)
	res.WorkerStagesMS = map[string]float64{}
	var stageSum float64
	for _, st := range []string{"witness", "prove", "verify"} {
		d := closedStages[st]
		if d.count != uint64(len(fleetLat)) {
			return nil, fmt.Errorf("overhead: the worker timed %d %s stages for %d closed-loop jobs", d.count, st, len(fleetLat))
		}
		if d.count > 0 {
			mean := d.sum / float64(d.count) * 1000
			res.WorkerStagesMS[st] = stats.Round(mean, 2)
			stageSum += mean
		}
	}
	res.OutsideStagesMeanMS = stats.Round(res.Fleet.Latency.MeanMS-stageSum, 2)
	return res, nil
}

func side(lat []time.Duration, wall time.Duration, cpu child.CPU) Side {
	perJob := func(d time.Duration) float64 { return stats.Round(stats.MS(d)/float64(len(lat)), 2) }
	return Side{
		Jobs: len(lat), WallS: stats.Round(wall.Seconds(), 3),
		JobsPerSecond:       stats.Round(float64(len(lat))/wall.Seconds(), 3),
		Latency:             stats.Summarize(lat),
		CPUPerJobMS:         perJob(cpu.Total()),
		ProcessCPUPerJobMS:  perJob(cpu.Self),
		PostgresCPUPerJobMS: perJob(cpu.Postgres),
		ProgramsCPUPerJobMS: perJob(cpu.Programs),
	}
}

func proverName(cfg Config) string {
	if cfg.ProverMode == ProverNative {
		return "native (in process, warm key)"
	}
	return shortCmd(cfg.Prover)
}

// shortCmd keeps the last path element of each word, for the report.
func shortCmd(cmd string) string {
	words := strings.Fields(cmd)
	for i, w := range words {
		if j := strings.LastIndexByte(w, '/'); j >= 0 {
			words[i] = w[j+1:]
		}
	}
	return strings.Join(words, " ")
}

// runPhase runs n jobs on c goroutines, each taking the next job when its
// last one is done, and returns each job's latency and the phase's wall
// time (first start to last finish).
func runPhase(ctx context.Context, n, c int, job func(ctx context.Context, worker int) error) ([]time.Duration, time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range min(c, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				t := time.Now()
				if err := job(ctx, w); err != nil {
					cancel(err)
					return
				}
				lat[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return nil, 0, err
	}
	return lat, wall, nil
}

// fleetSide submits jobs through the frontend and waits for their proofs.
type fleetSide struct {
	clients []*client.Client
	req     client.Request

	mu          sync.Mutex
	submit, att time.Duration
	submitted   int
}

func (f *fleetSide) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submit, f.att, f.submitted = 0, 0, 0
}

func (f *fleetSide) clientTimes() (submit, attest time.Duration, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.submit, f.att, f.submitted
}

func (f *fleetSide) job(ctx context.Context, worker int) error {
	_, err := f.run(ctx, worker)
	return err
}

// jobTimes are one fleet job's client-side times.
type jobTimes struct {
	total  time.Duration // before the hello → terminal status seen
	submit time.Duration // before the hello → submit answered
	attest time.Duration // the attestation check
}

func (f *fleetSide) run(ctx context.Context, worker int) (jobTimes, error) {
	c := f.clients[worker]
	start := time.Now()
	var hello, attested time.Time
	id, err := c.Submit(ctx, f.req, func(ev client.Event) {
		switch ev.Stage {
		case client.StageHello:
			hello = ev.At
		case client.StageAttested:
			attested = ev.At
		}
	})
	if err != nil {
		return jobTimes{}, fmt.Errorf("overhead: submit: %w", err)
	}
	submitted := time.Now()
	st, err := c.Wait(ctx, id, nil)
	if err != nil {
		return jobTimes{}, fmt.Errorf("overhead: wait for %s: %w", id, err)
	}
	t := jobTimes{total: time.Since(start), submit: submitted.Sub(start)}
	if st.Status != status.ProofGenerated {
		reason := ""
		if st.Reason != nil {
			reason = *st.Reason
		}
		return t, fmt.Errorf("overhead: job %s ended with status %d: %s", id, st.Status, reason)
	}
	if !hello.IsZero() && !attested.IsZero() {
		t.attest = attested.Sub(hello)
	}
	f.mu.Lock()
	f.submit += t.submit
	f.att += t.attest
	f.submitted++
	f.mu.Unlock()
	return t, nil
}

// sequential runs n jobs one after another on one client. With nothing
// else in flight, the growth of the worker's stage histograms across one
// job is that job's own stage time: its three stages are recorded before
// the proof is written, so before the client can see it.
func sequential(ctx context.Context, f *fleetSide, w *devfleet.Workers, n int) (Sequential, error) {
	var e2e, stages, outside, submit, after []time.Duration
	for range n {
		before, err := stageSums(w)
		if err != nil {
			return Sequential{}, err
		}
		jt, err := f.run(ctx, 0)
		if err != nil {
			return Sequential{}, err
		}
		d := jt.total
		afterSums, err := stageSums(w)
		if err != nil {
			return Sequential{}, err
		}
		var st float64
		for _, name := range []string{"witness", "prove", "verify"} {
			delta := afterSums[name].sub(before[name])
			if delta.count != 1 {
				return Sequential{}, fmt.Errorf("overhead: the worker recorded %d %s stages for one job", delta.count, name)
			}
			st += delta.sum
		}
		sd := time.Duration(st * float64(time.Second))
		e2e, stages, outside = append(e2e, d), append(stages, sd), append(outside, d-sd)
		submit, after = append(submit, jt.submit), append(after, d-jt.submit-sd)
	}
	return Sequential{
		Jobs: n, EndToEnd: stats.Summarize(e2e), Stages: stats.Summarize(stages), Outside: stats.Summarize(outside),
		Submit: stats.Summarize(submit), AfterSubmit: stats.Summarize(after),
	}, nil
}

type sumCount struct {
	sum   float64
	count uint64
}

func (a sumCount) sub(b sumCount) sumCount { return sumCount{a.sum - b.sum, a.count - b.count} }

// stageSums reads the worker pool's successful stage timings: the sum and
// count of its stage_seconds histogram per stage.
func stageSums(w *devfleet.Workers) (map[string]sumCount, error) {
	mfs, err := w.Registry().Gather()
	if err != nil {
		return nil, fmt.Errorf("overhead: gather worker metrics: %w", err)
	}
	out := map[string]sumCount{}
	for _, mf := range mfs {
		if !strings.HasSuffix(mf.GetName(), "_stage_seconds") || mf.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, m := range mf.GetMetric() {
			var stage string
			ok := false
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "stage":
					stage = l.GetValue()
				case "result":
					ok = l.GetValue() == "ok"
				}
			}
			if stage == "" || !ok {
				continue
			}
			h := m.GetHistogram()
			sc := out[stage]
			sc.sum += h.GetSampleSum()
			sc.count += h.GetSampleCount()
			out[stage] = sc
		}
	}
	return out, nil
}

// Section renders the result.
func (r *Result) Section() report.Section {
	s := report.Section{
		Title: "1. Fleet overhead",
		Intro: []string{
			fmt.Sprintf("%d proofs of %s in each of three phases, in %d rounds that rotate the phases' order, after an unmeasured warm-up. "+
				"**Bare**: %d goroutines each writing the input file and running the same witness generator, prover (%s) and verifier (%s) with the worker's child-process settings, no fleet, one job after another. "+
				"**Fleet**: Go clients (api/client over WebSocket: fresh P-256 key, hello, full attestation check, AES-GCM, submit, then follow the status by subscription) "+
				"against the whole fleet in this process (internal/devfleet: frontend, embedded NATS JetStream with file storage, %s, one worker pool with %d slots), each client submitting its next job when the last one has its proof: "+
				"%d clients (closed loop: a job never waits in the queue, and a slot waits for its client between jobs), and %d clients (**with a backlog**: a job always waits for each slot, as in production).",
				r.Bare.Jobs, r.Circuit, r.Rounds, r.Concurrency, r.Prover, r.Verifier, r.Postgres, r.Concurrency, r.Concurrency, 2*r.Concurrency),
			"**Throughput ratio** = the fleet's jobs/s with a backlog ÷ the bare loop's jobs/s, each = jobs ÷ the summed wall time of its phases: capacity against capacity (target ≥ 0.98). " +
				"The closed loop's ratio is shown too; it also loses the client's round trip between jobs. " +
				"**CPU per job** = CPU time (user + system) of this process's whole tree during a phase — the bench with the embedded fleet and clients, Postgres, every witness generator and prover — per job, from /proc; " +
				"split into **this process** (the embedded fleet's Go code and the clients; in the bare loop, starting the children and the native verifier), **Postgres**, and the **programs** (witness generator, prover and verifier processes); " +
				"**CPU ratio** = bare CPU per job ÷ fleet-with-backlog CPU per job: the throughput ratio a machine saturated by this work alone would show, and one that other load on a shared machine hardly moves. " +
				"**Latency** of a fleet job = client-observed time from before the hello to the terminal status (proof generated); of a bare job = from writing the input to the verifier's exit. " +
				"**Added latency** p50/p99 = closed-loop fleet quantile − bare quantile (target ≤ 3 ms / 15 ms): the shift of the per-job distribution at the same concurrency. " +
				"**Outside stages** = closed-loop fleet mean latency − the worker's own mean witness + prove + verify time over exactly those jobs (its stage_seconds histogram): " +
				"the mean time a job spends in the client, frontend, queue, database and status path rather than in the three stages. " +
				"The per-job table below measures the same thing job by job, with jobs run one at a time. " +
				"Both include the client's own work (key generation, attestation check, encryption), which a phone does on its own cores; with a backlog, that client work also competes with the provers for this machine's cores. " +
				"**Ceiling** = bare CPU per job ÷ (bare CPU per job + the fleet's extra Postgres CPU per job + the client's own cryptography, measured alone on one thread): the CPU ratio the fleet would show if its frontend, NATS and workers' Go code cost nothing. " +
				"Postgres and the clients share the provers' cores here, so a ceiling below the target means no change to the fleet's code can meet the target on this machine with this circuit.",
		},
	}
	t := report.Table{Header: []string{"phase", "jobs", "wall", "jobs/s", "latency p50", "p90", "p99", "mean", "CPU per job", "this process", "Postgres", "programs"}}
	for _, row := range []struct {
		name string
		s    Side
	}{
		{fmt.Sprintf("bare loop, %d goroutines", r.Concurrency), r.Bare},
		{fmt.Sprintf("fleet, %d clients (closed loop)", r.Concurrency), r.Fleet},
		{fmt.Sprintf("fleet, %d clients (backlog)", 2*r.Concurrency), r.Backlog},
	} {
		t.Row(row.name, fmt.Sprint(row.s.Jobs), report.F(row.s.WallS, 2)+" s", report.F(row.s.JobsPerSecond, 2),
			report.F(row.s.Latency.P50MS, 1)+" ms", report.F(row.s.Latency.P90MS, 1)+" ms",
			report.F(row.s.Latency.P99MS, 1)+" ms", report.F(row.s.Latency.MeanMS, 1)+" ms", report.F(row.s.CPUPerJobMS, 1)+" ms",
			report.F(row.s.ProcessCPUPerJobMS, 2)+" ms", report.F(row.s.PostgresCPUPerJobMS, 2)+" ms", report.F(row.s.ProgramsCPUPerJobMS, 1)+" ms")
	}
	s.Tables = append(s.Tables, t)
	m := report.Table{Header: []string{"measure", "value", "target"}}
	m.Row("throughput ratio (fleet with a backlog / bare)", report.F(r.ThroughputRatio, 3), report.Target(r.ThroughputRatio >= 0.98, "≥ 0.98"))
	m.Row("throughput ratio (closed loop / bare)", report.F(r.ClosedLoopRatio, 3), "")
	m.Row("CPU ratio (bare CPU per job / fleet-with-backlog CPU per job)", report.F(r.CPURatio, 3), "cross-check of the throughput ratio")
	m.Row("client's own cryptography, CPU per job (measured alone)", report.F(r.ClientCryptoCPUMS, 2)+" ms", "")
	m.Row("ceiling: bare CPU ÷ (bare CPU + the fleet's extra Postgres CPU + the client's cryptography)", report.F(r.Ceiling, 3),
		"the CPU ratio if all else in the fleet cost nothing")
	m.Row("added latency p50 (closed loop − bare)", report.F(r.AddedP50MS, 1)+" ms", report.Target(r.AddedP50MS <= 3, "≤ 3 ms"))
	m.Row("added latency p99 (closed loop − bare)", report.F(r.AddedP99MS, 1)+" ms", report.Target(r.AddedP99MS <= 15, "≤ 15 ms"))
	m.Row("added latency mean", report.F(r.AddedMeanMS, 1)+" ms", "")
	for _, st := range []string{"witness", "prove", "verify"} {
		m.Row("worker's mean "+st+" stage (closed loop)", report.F(r.WorkerStagesMS[st], 1)+" ms", "")
	}
	m.Row("closed-loop mean outside the three stages", report.F(r.OutsideStagesMeanMS, 1)+" ms", "")
	m.Row("of which client hello → submit answered (mean)", report.F(r.ClientSubmitMeanMS, 1)+" ms", "")
	m.Row("of which client attestation check (mean)", report.F(r.ClientAttestMeanMS, 1)+" ms", "")
	s.Tables = append(s.Tables, m)
	q := r.Sequential
	seq := report.Table{
		Caption: fmt.Sprintf("Per job, %d jobs one at a time (nothing else in flight, so the growth of the worker's stage histograms across a job is that job's own stage time): "+
			"**outside the stages** = the job's client-observed end-to-end time − its own witness + prove + verify time as the worker recorded it.", q.Jobs),
		Header: []string{"per job", "p50", "p90", "p99", "mean", "target"},
	}
	seq.Row("end to end (client)", report.F(q.EndToEnd.P50MS, 1)+" ms", report.F(q.EndToEnd.P90MS, 1)+" ms", report.F(q.EndToEnd.P99MS, 1)+" ms", report.F(q.EndToEnd.MeanMS, 1)+" ms", "")
	seq.Row("witness + prove + verify (worker)", report.F(q.Stages.P50MS, 1)+" ms", report.F(q.Stages.P90MS, 1)+" ms", report.F(q.Stages.P99MS, 1)+" ms", report.F(q.Stages.MeanMS, 1)+" ms", "")
	seq.Row("outside the stages", report.F(q.Outside.P50MS, 1)+" ms", report.F(q.Outside.P90MS, 1)+" ms", report.F(q.Outside.P99MS, 1)+" ms", report.F(q.Outside.MeanMS, 1)+" ms",
		report.Target(q.Outside.P50MS <= 3, "p50 ≤ 3 ms")+", "+report.Target(q.Outside.P99MS <= 15, "p99 ≤ 15 ms"))
	row := func(name string, x stats.Summary) {
		seq.Row(name, report.F(x.P50MS, 1)+" ms", report.F(x.P90MS, 1)+" ms", report.F(x.P99MS, 1)+" ms", report.F(x.MeanMS, 1)+" ms", "")
	}
	row("– of which hello → submit answered (client + frontend + enqueue)", q.Submit)
	row("– of which after the submit (queue → worker around the stages → status to the client)", q.AfterSubmit)
	seq.Row("client attestation check (inside hello → submit)", "", "", "", report.F(q.ClientAttestMeanMS, 1)+" ms", "")
	s.Tables = append(s.Tables, seq)
	s.Notes = append(s.Notes, r.Notes...)
	return s
}

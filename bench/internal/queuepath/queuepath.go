// Package queuepath measures the queue and status path alone: how many jobs
// per second JetStream and the Postgres status writes sustain when proving
// costs nothing. Producers do what the frontend does for an accepted submit
// (seal the inputs, insert the proofs row, publish the job); consumers do
// what a worker pool does around the proving stages (one job per free slot
// taken as workers take them, jobqueue.Taker, decode, claim the row, open the sealed inputs, mark the witness,
// announce, mark the proof with a real proof of the smallest circuit,
// announce, double-ack). No witness generator or prover runs: with any real
// circuit the stages, not this path, set the rate (see the fleet-overhead
// benchmark for the whole path with a real prover).
package queuepath

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/bench/internal/child"
	"github.com/openpassport/prover-fleet/bench/internal/circuits"
	"github.com/openpassport/prover-fleet/bench/internal/report"
	"github.com/openpassport/prover-fleet/bench/internal/stats"
	"github.com/openpassport/prover-fleet/internal/devfleet"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

// Config configures a run.
type Config struct {
	CircuitDir  string
	ZkeyDir     string
	DatabaseURL string // empty: devfleet's throwaway Postgres
	// Jobs gives each family the circuit whose sample input its jobs carry.
	Jobs map[family.Family]circuits.Circuit
	// Smallest is the circuit whose real proof is written to every row.
	Smallest      circuits.Circuit
	JobsPerFamily int
	// Slots is each family's consumer concurrency, Publishers its
	// producers'.
	Slots      int
	Publishers int
	WorkDir    string
	Logger     *slog.Logger
	Log        func(format string, args ...any)
}

// Scenario is one measured drain.
type Scenario struct {
	Families []family.Family `json:"families"`
	Jobs     int             `json:"jobs"`
	// JobsPerSecond: jobs ÷ (last acknowledgement − first publish), with
	// producers and consumers running at once.
	JobsPerSecond float64 `json:"jobs_per_second"`
	// EnqueuePerSecond: jobs ÷ the producers' time alone.
	EnqueuePerSecond float64 `json:"enqueue_per_second"`
	// Enqueue is one insert+publish; Handle is one job from its delivery to
	// its acknowledgement; EndToEnd from the insert to the acknowledgement.
	Enqueue   stats.Summary                   `json:"enqueue"`
	Handle    stats.Summary                   `json:"handle"`
	EndToEnd  stats.Summary                   `json:"end_to_end"`
	PerFamily map[family.Family]FamilyOutcome `json:"per_family,omitempty"`
	// CPUPerJobMS is the CPU time of the bench's whole process tree
	// (producers, consumers, embedded NATS, Postgres) per job.
	CPUPerJobMS float64 `json:"cpu_per_job_ms"`
}

// FamilyOutcome is one family's share of a scenario.
type FamilyOutcome struct {
	Jobs          int     `json:"jobs"`
	JobsPerSecond float64 `json:"jobs_per_second"`
	InputBytes    int     `json:"input_bytes"`
}

// Result is the benchmark's outcome.
type Result struct {
	Slots      int        `json:"slots_per_family"`
	Publishers int        `json:"publishers_per_family"`
	Postgres   string     `json:"postgres"`
	ProofOf    string     `json:"proof_of"`
	Scenarios  []Scenario `json:"scenarios"`
	Notes      []string   `json:"notes,omitempty"`
}

// Measure runs one scenario per family and one with all of them at once.
func Measure(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.JobsPerFamily < 1 || cfg.Slots < 1 || cfg.Publishers < 1 {
		return nil, errors.New("queuepath: JobsPerFamily, Slots and Publishers must be at least 1")
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	proof, public, err := realProof(ctx, cfg.Smallest, cfg.WorkDir)
	if err != nil {
		return nil, err
	}
	fams := make([]family.Family, 0, len(cfg.Jobs))
	for _, f := range family.All() {
		if _, ok := cfg.Jobs[f]; ok {
			fams = append(fams, f)
		}
	}
	q := jobqueue.DefaultConfig()
	q.MaxAckPending = cfg.Slots
	q.MaxMsgs = int64(10 * cfg.JobsPerFamily * len(fams))
	fleet, err := devfleet.Start(ctx, devfleet.Config{
		CircuitDir: cfg.CircuitDir, ZkeyDir: cfg.ZkeyDir, DatabaseURL: cfg.DatabaseURL,
		Families: fams, NoWorkers: true, Queue: q, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("queuepath: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = fleet.Stop(stopCtx)
	}()
	key, err := job.LoadKeyFile(fleet.JobKeyFile())
	if err != nil {
		return nil, fmt.Errorf("queuepath: %w", err)
	}
	sealer, err := job.NewSealer(key)
	if err != nil {
		return nil, fmt.Errorf("queuepath: %w", err)
	}
	publisher, err := jobqueue.NewPublisher(fleet.JetStream(), q)
	if err != nil {
		return nil, fmt.Errorf("queuepath: %w", err)
	}
	inputs := map[family.Family][]byte{}
	for f, c := range cfg.Jobs {
		if inputs[f], err = c.Inputs(); err != nil {
			return nil, err
		}
	}
	r := &runner{
		cfg: cfg, fleet: fleet, store: fleet.Store(), publisher: publisher,
		events: jobqueue.NewEvents(fleet.NATS()), sealer: sealer,
		inputs: inputs, proof: proof, public: public, stream: q.Stream,
	}
	res := &Result{Slots: cfg.Slots, Publishers: cfg.Publishers, ProofOf: cfg.Smallest.Name}
	if fleet.ThrowawayPostgres() {
		res.Postgres = "throwaway server (devstack: fsync off, synchronous_commit off)"
	} else {
		res.Postgres = "the database of -database-url"
	}
	// A short unmeasured warm-up (connections, prepared statements).
	if _, err := r.scenario(ctx, fams, min(cfg.JobsPerFamily, 2*cfg.Slots)); err != nil {
		return nil, err
	}
	var scenarios [][]family.Family
	for _, f := range fams {
		scenarios = append(scenarios, []family.Family{f})
	}
	if len(fams) > 1 {
		scenarios = append(scenarios, fams)
	}
	for _, s := range scenarios {
		cfg.Log("queuepath: %v, %d jobs per family", s, cfg.JobsPerFamily)
		sc, err := r.scenario(ctx, s, cfg.JobsPerFamily)
		if err != nil {
			return nil, err
		}
		res.Scenarios = append(res.Scenarios, sc)
	}
	return res, nil
}

// realProof proves the smallest circuit's sample input once, natively.
func realProof(ctx context.Context, c circuits.Circuit, workDir string) (json.RawMessage, []string, error) {
	dir, err := os.MkdirTemp(workDir, "queuepath-")
	if err != nil {
		return nil, nil, fmt.Errorf("queuepath: %w", err)
	}
	defer os.RemoveAll(dir)
	path, _, err := c.Witness(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	w, err := wtns.ReadFile(ctx, path)
	if err != nil {
		return nil, nil, fmt.Errorf("queuepath: %w", err)
	}
	pk, err := groth16.LoadProvingKey(ctx, c.Zkey)
	if err != nil {
		return nil, nil, fmt.Errorf("queuepath: %w", err)
	}
	p, pub, err := groth16.Prove(ctx, pk, w)
	if err != nil {
		return nil, nil, fmt.Errorf("queuepath: %w", err)
	}
	pj, err := p.MarshalJSON()
	if err != nil {
		return nil, nil, err
	}
	sj, err := pub.MarshalJSON()
	if err != nil {
		return nil, nil, err
	}
	var signals []string
	if err := json.Unmarshal(sj, &signals); err != nil {
		return nil, nil, err
	}
	return pj, signals, nil
}

type runner struct {
	cfg       Config
	fleet     *devfleet.Fleet
	store     *store.Store
	publisher *jobqueue.Publisher
	events    *jobqueue.Events
	sealer    *job.Sealer
	inputs    map[family.Family][]byte
	proof     json.RawMessage
	public    []string
	stream    string
}

type famTiming struct {
	first, last time.Time // first publish start, last ack
}

// scenario enqueues n jobs per family while consuming them, and waits until
// all are acknowledged.
func (r *runner) scenario(ctx context.Context, fams []family.Family, n int) (Scenario, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu       sync.Mutex
		started  = map[string]time.Time{}
		enqLat   []time.Duration
		handle   []time.Duration
		e2e      []time.Duration
		timing   = map[family.Family]*famTiming{}
		pubDone  time.Time
		producer sync.WaitGroup
		consumer sync.WaitGroup
	)
	for _, f := range fams {
		timing[f] = &famTiming{}
	}
	cpu0, err := child.TreeCPU(os.Getpid())
	if err != nil {
		return Scenario{}, err
	}
	start := time.Now()
	for _, f := range fams {
		cons, err := jobqueue.NewTaker(r.fleet.JetStream(), jobqueue.TakerConfig{
			Stream: r.stream, Family: f, Wait: 200 * time.Millisecond})
		if err != nil {
			return Scenario{}, fmt.Errorf("queuepath: taker %s: %w", f, err)
		}
		if err := cons.Start(ctx); err != nil {
			return Scenario{}, fmt.Errorf("queuepath: taker %s: %w", f, err)
		}
		defer cons.Stop()
		var acked atomic.Int64
		consumer.Add(1)
		go func() {
			defer consumer.Done()
			r.consume(ctx, cancel, cons, n, &acked, func(id string, delivered, done time.Time) {
				mu.Lock()
				defer mu.Unlock()
				handle = append(handle, done.Sub(delivered))
				if s, ok := started[id]; ok {
					e2e = append(e2e, done.Sub(s))
				}
				if done.After(timing[f].last) {
					timing[f].last = done
				}
			})
		}()
		var next atomic.Int64
		for range r.cfg.Publishers {
			producer.Add(1)
			go func() {
				defer producer.Done()
				for ctx.Err() == nil {
					if next.Add(1) > int64(n) {
						return
					}
					id := uuid.NewString()
					t := time.Now()
					mu.Lock()
					started[id] = t
					if timing[f].first.IsZero() || t.Before(timing[f].first) {
						timing[f].first = t
					}
					mu.Unlock()
					if err := r.enqueue(ctx, f, id); err != nil {
						cancel(err)
						return
					}
					d := time.Since(t)
					mu.Lock()
					enqLat = append(enqLat, d)
					if end := t.Add(d); end.After(pubDone) {
						pubDone = end
					}
					mu.Unlock()
				}
			}()
		}
	}
	producer.Wait()
	consumer.Wait()
	if err := context.Cause(ctx); err != nil {
		return Scenario{}, err
	}
	cpu1, err := child.TreeCPU(os.Getpid())
	if err != nil {
		return Scenario{}, err
	}
	var last time.Time
	sc := Scenario{Families: fams, Jobs: n * len(fams), PerFamily: map[family.Family]FamilyOutcome{}}
	for _, f := range fams {
		t := timing[f]
		if t.last.After(last) {
			last = t.last
		}
		sc.PerFamily[f] = FamilyOutcome{
			Jobs: n, InputBytes: len(r.inputs[f]),
			JobsPerSecond: stats.Round(float64(n)/t.last.Sub(t.first).Seconds(), 1),
		}
	}
	sc.JobsPerSecond = stats.Round(float64(sc.Jobs)/last.Sub(start).Seconds(), 1)
	sc.EnqueuePerSecond = stats.Round(float64(sc.Jobs)/pubDone.Sub(start).Seconds(), 1)
	sc.Enqueue, sc.Handle, sc.EndToEnd = stats.Summarize(enqLat), stats.Summarize(handle), stats.Summarize(e2e)
	sc.CPUPerJobMS = stats.Round(stats.MS(cpu1.Sub(cpu0).Total())/float64(sc.Jobs), 3)
	return sc, nil
}

// enqueue does what the frontend does for an accepted submit, after the
// decryption and checks: seal, insert the row, publish the job.
func (r *runner) enqueue(ctx context.Context, f family.Family, id string) error {
	c := r.cfg.Jobs[f]
	sealed, err := r.sealer.Seal(id, r.inputs[f])
	if err != nil {
		return fmt.Errorf("queuepath: %w", err)
	}
	if err := r.store.Insert(ctx, store.Request{ID: id, ProofType: c.ProofType, Circuit: c.Name, Onchain: true}); err != nil {
		return fmt.Errorf("queuepath: %w", err)
	}
	env := job.Envelope{RequestID: id, ProofType: c.ProofType, Circuit: c.Name, EnqueuedAt: time.Now().UTC(), Sealed: sealed}
	if err := r.publisher.Publish(ctx, env); err != nil {
		return fmt.Errorf("queuepath: %w", err)
	}
	return nil
}

// consume runs slots like worker/internal/pool: one Fetch(1) per free slot,
// each job in its own goroutine, until n jobs are acknowledged.
func (r *runner) consume(ctx context.Context, cancel context.CancelCauseFunc, cons *jobqueue.Taker, n int,
	acked *atomic.Int64, done func(id string, delivered, finished time.Time)) {
	slots := make(chan struct{}, r.cfg.Slots)
	var jobs sync.WaitGroup
	defer jobs.Wait()
	for ctx.Err() == nil && acked.Load() < int64(n) {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if acked.Load() >= int64(n) {
			<-slots
			return
		}
		batch, err := cons.Fetch(1)
		if err != nil {
			<-slots
			cancel(fmt.Errorf("queuepath: fetch: %w", err))
			return
		}
		got := false
		for msg := range batch.Messages() {
			got = true
			delivered := time.Now()
			jobs.Add(1)
			go func() {
				defer jobs.Done()
				defer func() { <-slots }()
				id, err := r.handle(ctx, msg)
				if err != nil {
					cancel(err)
					return
				}
				acked.Add(1)
				done(id, delivered, time.Now())
			}()
		}
		if !got {
			<-slots
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			cancel(fmt.Errorf("queuepath: fetch: %w", err))
			return
		}
	}
}

// handle is the worker's job path with the stages left out.
func (r *runner) handle(ctx context.Context, msg jetstream.Msg) (string, error) {
	attempt := 1
	if md, err := msg.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	env, err := job.Unmarshal(msg.Data())
	if err != nil {
		return "", fmt.Errorf("queuepath: %w", err)
	}
	row, err := r.store.Claim(ctx, env.RequestID, "bench-queuepath", attempt)
	if err != nil {
		return "", fmt.Errorf("queuepath: %w", err)
	}
	if row.Circuit != env.Circuit {
		return "", fmt.Errorf("queuepath: row circuit %q, job circuit %q", row.Circuit, env.Circuit)
	}
	inputs, err := r.sealer.Open(env.RequestID, env.Sealed)
	if err != nil {
		return "", fmt.Errorf("queuepath: %w", err)
	}
	clear(inputs)
	if ok, err := r.store.MarkWitnessGenerated(ctx, env.RequestID); err != nil || ok == nil {
		return "", fmt.Errorf("queuepath: mark witness %s: changed=%v err=%w", env.RequestID, ok, err)
	}
	if err := r.events.PublishStatus(ctx, job.StatusEvent{RequestID: env.RequestID, Status: status.WitnessGenerated}); err != nil {
		return "", fmt.Errorf("queuepath: %w", err)
	}
	if ok, err := r.store.MarkProofGenerated(ctx, env.RequestID, r.proof, r.public); err != nil || ok == nil {
		return "", fmt.Errorf("queuepath: mark proof %s: changed=%v err=%w", env.RequestID, ok, err)
	}
	if err := r.events.PublishStatus(ctx, job.StatusEvent{RequestID: env.RequestID, Status: status.ProofGenerated}); err != nil {
		return "", fmt.Errorf("queuepath: %w", err)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		return "", fmt.Errorf("queuepath: ack: %w", err)
	}
	return env.RequestID, nil
}

// Section renders the result.
func (r *Result) Section() report.Section {
	s := report.Section{
		Title: "3. Queue path",
		Intro: []string{
			"**What is measured: the queue and status path alone, no proving.** " +
				fmt.Sprintf("Per family, %d producers do what the frontend does for an accepted submit (seal the inputs with the fleet key, insert the proofs row, publish the job on JetStream and wait for the stream's ack), ", r.Publishers) +
				fmt.Sprintf("while a consumer with %d slots does what a worker pool does around the stages (one job per free slot, taken as workers take them, `jobqueue.Taker`; decode; claim the row; open the sealed inputs; mark witness generated; announce; ", r.Slots) +
				fmt.Sprintf("mark proof generated with a real %s proof and its public signals; announce; double-ack, which deletes the job from the stream). Each family's jobs carry its own demo circuit's sample input. ", r.ProofOf) +
				"No witness generator or prover runs: with any real circuit those stages set the rate (section 1 has the whole path with a real prover).",
			"**jobs/s** = jobs ÷ (last acknowledgement − first publish), producers and consumers running at once; **enqueue/s** = jobs ÷ the producers' time. " +
				"**CPU per job** = CPU time of the bench's whole process tree (producers, consumers, embedded NATS, Postgres) ÷ jobs: what the path costs the machine per job, which the proving stages must dwarf. " +
				"Latencies: enqueue = one insert + publish; handle = delivery → acknowledgement; end to end = insert → acknowledgement (it includes the time a job waits in the queue while producers run ahead). " +
				"Postgres: " + r.Postgres + "; NATS: embedded, JetStream file storage.",
		},
	}
	t := report.Table{Header: []string{"families", "jobs", "jobs/s", "enqueue/s", "CPU per job", "enqueue p50 / p99", "handle p50 / p99", "end to end p50 / p99", "per family jobs/s"}}
	for _, sc := range r.Scenarios {
		per := ""
		for _, f := range sc.Families {
			if per != "" {
				per += ", "
			}
			o := sc.PerFamily[f]
			per += fmt.Sprintf("%s %s (input %d B)", f, report.F(o.JobsPerSecond, 0), o.InputBytes)
		}
		names := ""
		for i, f := range sc.Families {
			if i > 0 {
				names += " + "
			}
			names += string(f)
		}
		t.Row(names, fmt.Sprint(sc.Jobs), report.F(sc.JobsPerSecond, 0), report.F(sc.EnqueuePerSecond, 0), report.F(sc.CPUPerJobMS, 2)+" ms",
			report.F(sc.Enqueue.P50MS, 2)+" / "+report.F(sc.Enqueue.P99MS, 2)+" ms",
			report.F(sc.Handle.P50MS, 2)+" / "+report.F(sc.Handle.P99MS, 2)+" ms",
			report.F(sc.EndToEnd.P50MS, 1)+" / "+report.F(sc.EndToEnd.P99MS, 1)+" ms", per)
	}
	s.Tables = append(s.Tables, t)
	s.Notes = append(s.Notes, r.Notes...)
	return s
}

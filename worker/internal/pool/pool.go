// Package pool runs one family's jobs with a fixed number of slots: it
// fetches a message only when a slot is free (Fetch(1), never a batch that
// would age in a local buffer while its AckWait runs), heartbeats the
// message and the status row while the job runs, acknowledges it as package
// outcome decides, kills running jobs whose request is cancelled, and stops
// in the order CONTRIBUTING.md gives (Conventions).
//
// Shutdown: when Run's context ends, the pool stops fetching (a pull still
// open is allowed to expire and whatever it brings is handed back with Nak),
// lets running jobs finish for up to ShutdownGrace, then cancels them with
// outcome.ErrShutdown (their children are killed) and hands them back with
// Nak, recording state with context.WithoutCancel and a short timeout. Run
// returns when every job is settled; draining NATS and closing the database
// pool are the caller's.
//
// Store outages: the pool waits at Deps.Gate before each fetch, so a worker
// whose status store does not answer takes no job (and burns no delivery);
// the store the pool and the job write through (worker/internal/storegate)
// makes a job already in hand wait for the store instead of failing. The
// message stays in progress meanwhile: the pool heartbeats it from the
// job's start until its failure, if any, is recorded, and acknowledges it
// only then.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/worker/internal/outcome"
)

// Fetcher pulls messages (a jetstream.Consumer).
type Fetcher interface {
	Fetch(batch int, opts ...jetstream.FetchOpt) (jetstream.MessageBatch, error)
}

// Job does one job (a *pipeline.Pipeline).
type Job interface {
	Run(ctx context.Context, env job.Envelope, attempt int) error
}

// Store is the part of the status store the pool writes.
type Store interface {
	Heartbeat(ctx context.Context, id, workerID string) error
	MarkFailed(ctx context.Context, id, reason string) (bool, error)
}

// Gate holds fetching while the status store does not answer
// (*storegate.Gate).
type Gate interface {
	// Wait returns nil once the store answers, an error if ctx ends first.
	Wait(ctx context.Context) error
}

// Events announces status changes.
type Events interface {
	PublishStatus(ctx context.Context, ev job.StatusEvent) error
}

// Observer is told about jobs (metrics implement it; nil-safe no-op by
// default).
type Observer interface {
	// Started: a job began on a slot; env is zero if it did not decode.
	Started(env job.Envelope, attempt int)
	// Finished: the job was settled as d after running for elapsed.
	Finished(env job.Envelope, d outcome.Decision, elapsed time.Duration)
}

// Config configures a Pool.
type Config struct {
	Family      family.Family
	Concurrency int
	WorkerID    string
	// Heartbeat is the period of InProgress and row heartbeats while a job
	// runs; well inside the consumer's AckWait.
	Heartbeat time.Duration
	// FetchWait is how long one pull waits for a message.
	FetchWait time.Duration
	// ShutdownGrace is how long running jobs may finish after Run's
	// context ends.
	ShutdownGrace time.Duration
	// MaxDeliver is the consumer's delivery limit (≤ 0: unlimited).
	MaxDeliver int
	// Backoff spaces redeliveries after transient failures.
	Backoff outcome.Backoff
	// SettleTimeout bounds the final status write and acknowledgement.
	SettleTimeout time.Duration
}

// Deps are what a Pool works with.
type Deps struct {
	Fetcher  Fetcher
	Job      Job
	Store    Store
	Events   Events
	Gate     Gate     // optional: without it the pool always fetches
	Observer Observer // optional
	Logger   *slog.Logger
}

// Pool runs jobs of one family.
type Pool struct {
	d   Deps
	cfg Config

	mu      sync.Mutex
	running map[string]map[*runningJob]struct{}
}

type runningJob struct{ cancel context.CancelCauseFunc }

// New checks deps and cfg.
func New(d Deps, cfg Config) (*Pool, error) {
	switch {
	case d.Fetcher == nil:
		return nil, errors.New("pool: Deps.Fetcher is nil")
	case d.Job == nil:
		return nil, errors.New("pool: Deps.Job is nil")
	case d.Store == nil:
		return nil, errors.New("pool: Deps.Store is nil")
	case d.Events == nil:
		return nil, errors.New("pool: Deps.Events is nil")
	case d.Logger == nil:
		return nil, errors.New("pool: Deps.Logger is nil")
	case cfg.Concurrency < 1:
		return nil, fmt.Errorf("pool: Config.Concurrency must be at least 1, got %d", cfg.Concurrency)
	case cfg.WorkerID == "":
		return nil, errors.New("pool: Config.WorkerID is empty")
	case cfg.Heartbeat <= 0:
		return nil, fmt.Errorf("pool: Config.Heartbeat must be positive, got %s", cfg.Heartbeat)
	case cfg.FetchWait < 100*time.Millisecond:
		return nil, fmt.Errorf("pool: Config.FetchWait must be at least 100ms, got %s", cfg.FetchWait)
	case cfg.ShutdownGrace < 0:
		return nil, fmt.Errorf("pool: Config.ShutdownGrace must not be negative, got %s", cfg.ShutdownGrace)
	case cfg.SettleTimeout <= 0:
		return nil, fmt.Errorf("pool: Config.SettleTimeout must be positive, got %s", cfg.SettleTimeout)
	}
	if d.Observer == nil {
		d.Observer = nopObserver{}
	}
	if d.Gate == nil {
		d.Gate = openGate{}
	}
	return &Pool{d: d, cfg: cfg, running: map[string]map[*runningJob]struct{}{}}, nil
}

// Cancel kills the running jobs of requestID (their context ends with
// outcome.ErrCancelled) and reports how many there were.
func (p *Pool) Cancel(requestID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	jobs := p.running[requestID]
	for j := range jobs {
		j.cancel(outcome.ErrCancelled)
	}
	return len(jobs)
}

// Running is the number of jobs running now.
func (p *Pool) Running() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, jobs := range p.running {
		n += len(jobs)
	}
	return n
}

func (p *Pool) track(id string, j *runningJob) (untrack func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running[id] == nil {
		p.running[id] = map[*runningJob]struct{}{}
	}
	p.running[id][j] = struct{}{}
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.running[id], j)
		if len(p.running[id]) == 0 {
			delete(p.running, id)
		}
	}
}

// Run fetches and runs jobs until ctx ends, then shuts down gracefully (see
// the package doc). It returns nil after a graceful stop.
func (p *Pool) Run(ctx context.Context) error {
	log := p.d.Logger
	// Jobs outlive ctx by up to ShutdownGrace: they run under hard, which
	// is cancelled with ErrShutdown only when the grace is over.
	hard, stopJobs := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopJobs(outcome.ErrShutdown)

	slots := make(chan struct{}, p.cfg.Concurrency)
	var jobs sync.WaitGroup
	failures := 0
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		// No job while the status store does not answer: it could only
		// wait in this slot, its delivery counting.
		if err := p.d.Gate.Wait(ctx); err != nil {
			<-slots
			break
		}
		// Not bound to ctx: a pull cancelled on the client stays open on
		// the server, and a job it delivers would wait out AckWait. It
		// expires after FetchWait; what it brings after ctx ended is
		// handed back at once (Nak).
		batch, err := p.d.Fetcher.Fetch(1, jetstream.FetchMaxWait(p.cfg.FetchWait))
		if err == nil {
			got := false
			for msg := range batch.Messages() {
				if ctx.Err() != nil && !p.lastDelivery(msg) {
					if err := msg.Nak(); err != nil {
						log.Warn("hand back message fetched during shutdown", "err", err)
					}
					continue
				}
				// (A job on its last delivery is not handed back: JetStream
				// would not deliver it again. It runs within the grace.)
				got = true
				jobs.Add(1)
				go func() {
					defer jobs.Done()
					defer func() { <-slots }()
					p.handle(hard, msg)
				}()
			}
			if !got {
				<-slots
			}
			err = batch.Error()
		} else {
			<-slots
		}
		if err == nil || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) {
			failures = 0
			continue
		}
		failures++
		wait := min(time.Duration(failures)*500*time.Millisecond, 5*time.Second)
		log.Warn("fetch failed", "err", err, "retry_in_ms", wait.Milliseconds())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}

	n := p.Running()
	log.Info("stopped fetching; waiting for running jobs", "running", n,
		"grace_ms", p.cfg.ShutdownGrace.Milliseconds())
	done := make(chan struct{})
	go func() { jobs.Wait(); close(done) }()
	grace := time.NewTimer(p.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		log.Warn("shutdown grace over; stopping running jobs", "running", p.Running())
		stopJobs(outcome.ErrShutdown)
		<-done
	}
	return nil
}

// lastDelivery reports whether msg is on its last allowed delivery.
func (p *Pool) lastDelivery(msg jetstream.Msg) bool {
	meta, err := msg.Metadata()
	return err == nil && p.cfg.MaxDeliver > 0 && int(meta.NumDelivered) >= p.cfg.MaxDeliver
}

// handle runs one delivered message to its acknowledgement.
func (p *Pool) handle(hard context.Context, msg jetstream.Msg) {
	start := time.Now()
	attempt := 1
	var seq uint64
	if meta, err := msg.Metadata(); err == nil {
		attempt, seq = int(meta.NumDelivered), meta.Sequence.Stream
	}
	log := p.d.Logger.With("attempt", attempt)
	log.Debug("job delivered", "stream_seq", seq)

	env, err := job.Unmarshal(msg.Data())
	if err != nil {
		p.d.Observer.Started(job.Envelope{}, attempt)
		d := outcome.Decide(outcome.Reject("undecodable job", err), nil, attempt, p.cfg.MaxDeliver, p.cfg.Backoff)
		d.Fail = false // no request id to record it under
		log.Warn("undecodable job", "err", err)
		p.acknowledge(hard, log, msg, d)
		p.d.Observer.Finished(env, d, time.Since(start))
		return
	}
	log = log.With("request_id", env.RequestID, "circuit", env.Circuit)
	p.d.Observer.Started(env, attempt)
	log.Info("job started", "queue_wait_ms", time.Since(env.EnqueuedAt).Milliseconds())

	ctx, cancel := context.WithCancelCause(hard)
	defer cancel(nil)
	untrack := p.track(env.RequestID, &runningJob{cancel: cancel})
	// The heartbeat lives on hard, not ctx: after a cancel or a failure the
	// message must stay ours until what happened is recorded.
	beatDone := p.heartbeat(hard, log, msg, env.RequestID)
	err = p.run(ctx, log, env, attempt)
	untrack()

	d := outcome.Decide(err, context.Cause(ctx), attempt, p.cfg.MaxDeliver, p.cfg.Backoff)
	d = p.record(hard, log, env, d, attempt)
	beatDone()
	p.acknowledge(hard, log, msg, d)
	elapsed := time.Since(start)
	args := []any{"outcome", d.Kind.String(), "action", d.Action.String(), "duration_ms", elapsed.Milliseconds()}
	switch d.Kind {
	case outcome.Proved, outcome.AlreadyDone, outcome.Cancelled, outcome.Interrupted:
		log.Info("job finished", args...)
	case outcome.Retried:
		log.Warn("job failed; will retry", append(args, "reason", d.Reason, "retry_in_ms", d.Delay.Milliseconds())...)
	case outcome.Unrecorded:
		log.Error("last delivery's failure not recorded; handed back, for the rescuer to record once the store answers",
			append(args, "reason", d.Reason)...)
	default:
		log.Warn("job failed", append(args, "reason", d.Reason)...)
	}
	if err != nil && d.Kind != outcome.Proved {
		log.Debug("job error", "err", err)
	}
	p.d.Observer.Finished(env, d, elapsed)
}

// run runs the job; a panic is logged and becomes a transient failure, so
// one poisonous job is retried and finally given up instead of crashing every
// worker that takes it.
func (p *Pool) run(ctx context.Context, log *slog.Logger, env job.Envelope, attempt int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("job panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = outcome.Retry("internal error in the worker", fmt.Errorf("panic: %v", r))
		}
	}()
	return p.d.Job.Run(ctx, env, attempt)
}

// heartbeat sends InProgress and refreshes the row's heartbeat every
// Heartbeat until the returned stop is called or ctx ends.
func (p *Pool) heartbeat(ctx context.Context, log *slog.Logger, msg jetstream.Msg, id string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(p.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := msg.InProgress(); err != nil {
				log.Warn("in-progress heartbeat not sent", "err", err)
			}
			hctx, cancel := context.WithTimeout(ctx, p.cfg.Heartbeat)
			if err := p.d.Store.Heartbeat(hctx, id, p.cfg.WorkerID); err != nil && ctx.Err() == nil {
				log.Debug("row heartbeat not written", "err", err)
			}
			cancel()
		}
	}()
	return func() { close(done); wg.Wait() }
}

// record writes the failure d asks for (a guarded status 3) and announces
// it, and returns the decision to act on: d, or outcome.Recovered's when
// the write failed. While the worker runs (hard not done) the write waits
// for a store that does not answer (the caller keeps the message in
// progress); once the worker is stopping it gets one try of SettleTimeout.
func (p *Pool) record(hard context.Context, log *slog.Logger, env job.Envelope, d outcome.Decision, attempt int) outcome.Decision {
	if !d.Fail {
		return d
	}
	ctx, cancel := context.WithCancel(hard)
	if hard.Err() != nil {
		cancel()
		ctx, cancel = context.WithTimeout(context.WithoutCancel(hard), p.cfg.SettleTimeout)
	}
	defer cancel()
	changed, err := p.d.Store.MarkFailed(ctx, env.RequestID, d.Reason)
	if err != nil {
		log.Error("failure not recorded", "reason", d.Reason, "err", err)
		return outcome.Recovered(d, err, attempt, p.cfg.MaxDeliver, p.cfg.Backoff)
	}
	if changed {
		if err := p.d.Events.PublishStatus(ctx, job.FailedEvent(env.RequestID, d.Reason, time.Now())); err != nil {
			log.Warn("status event not published", "status", int(status.Failed), "err", err)
		}
	}
	return d
}

// acknowledge does with the message what d says, bounded by SettleTimeout
// on a context that survives shutdown.
func (p *Pool) acknowledge(hard context.Context, log *slog.Logger, msg jetstream.Msg, d outcome.Decision) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(hard), p.cfg.SettleTimeout)
	defer cancel()
	var err error
	switch d.Action {
	case outcome.DoubleAck:
		err = msg.DoubleAck(ctx)
	case outcome.Term:
		err = msg.TermWithReason(d.Reason)
	case outcome.Nak:
		err = msg.Nak()
	case outcome.NakWithDelay:
		err = msg.NakWithDelay(d.Delay)
	}
	if err != nil {
		log.Warn("acknowledgement not sent", "action", d.Action.String(), "err", err)
	}
}

type openGate struct{}

func (openGate) Wait(context.Context) error { return nil }

type nopObserver struct{}

func (nopObserver) Started(job.Envelope, int)                              {}
func (nopObserver) Finished(job.Envelope, outcome.Decision, time.Duration) {}

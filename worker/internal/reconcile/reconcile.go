// Package reconcile finds open requests whose job is no longer on the queue,
// and publishes the job again or fails the request with a reason, so that no
// request the frontend accepted stays open for ever.
//
// A request is open (status 0 or 1) while its job is somewhere: waiting on
// the stream (behind a backlog, perhaps a long one), in a worker's hands, or
// handed back for a retry. Its job can also be nowhere: the frontend's
// publish was lost (its acknowledgement timed out during a NATS outage and
// the message never reached the stream, or the frontend died between
// recording the row and publishing), the message was deleted (an operator, a
// JetStream node lost with an unreplicated stream), or terminated by a
// worker that could not record why. Or it can be on the stream, given up by
// JetStream after MaxDeliver deliveries whose max-deliveries advisory was
// lost (worker/internal/rescue handles the ones that arrive).
//
// Every Interval one worker of the family (the holder of a Postgres advisory
// lock for the pass; any other skips it) looks at up to Batch open requests
// of the family, oldest first, resuming where its last pass stopped. Only
// requests recorded with their sealed inputs (proof_jobs, see sql/) are
// looked at, and only those created and last re-queued more than Grace ago
// (a submit may still be publishing). For each, the stream is asked for its
// job by its own subject (jobqueue.JobLookupSubject; GetLastMsgForSubject,
// read from the stream leader):
//
//   - the job is there: nothing to do, unless no consumer serves its
//     circuit (its first job was published while NATS did not answer the
//     consumer's creation, or an operator deleted the consumer): the
//     consumer is created, with its family consumer's settings, so that a
//     worker takes the job. A job waiting behind a backlog is never failed,
//     however long it waits. Only when the row says its last
//     delivery was claimed (attempts ≥ the consumer's MaxDeliver), the job
//     has been delivered (its sequence is at or below its circuit
//     consumer's delivered sequence), and the row's heartbeat has not moved for
//     StuckAfter and did not move between two passes at least AckWait
//     apart, is the job taken as given up by JetStream (no worker holds it:
//     one would heartbeat the row every AckWait/3): the request is failed as
//     the rescuer would ("gave up after N attempts: worker lost during the
//     last attempt") and the message deleted.
//   - the job is not there: the request's re-queue count is moved on with a
//     compare-and-set (so of several reconcilers one publishes) and the job
//     is published again from the row and its sealed inputs
//     (jobqueue.Publisher.Republish, under a message id of its own that the
//     duplicate window cannot swallow). A publish that certainly failed (a
//     full queue) takes the count back: the job waits for room, it is not
//     lost. After MaxRequeues re-queues the request is failed instead, with
//     a reason that says so: a job that keeps leaving the queue without a
//     result is not retried for ever.
//
// Every action is safe to repeat and to race: status writes are guarded,
// a second copy of a job finds its row terminal (or is proved once: the
// proof is recorded by a guarded write), and a stream error stops the pass
// without concluding anything.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

// Defaults applied by New to zero fields.
const (
	DefaultInterval    = 30 * time.Second
	DefaultGrace       = time.Minute
	DefaultMaxRequeues = 3
	DefaultBatch       = 500
	DefaultStuckAfter  = 10 * time.Minute
	DefaultTimeout     = 10 * time.Second
)

// Actions a pass takes, as reported to Deps.Acted.
const (
	Requeued    = "requeued"     // a lost job was published again
	FailedLost  = "failed_lost"  // a job lost more than MaxRequeues times: request failed
	FailedStuck = "failed_stuck" // a job JetStream gave up on, advisory lost: request failed
	// ConsumerCreated: a queued job's circuit had no consumer (its first
	// job was published while NATS did not answer the consumer's creation,
	// or an operator deleted it); it was created, so a worker takes the job.
	ConsumerCreated = "consumer_created"
)

// Store is the part of the status store a reconciler uses (*store.Store).
type Store interface {
	OpenJobs(ctx context.Context, types []family.ProofType, settled time.Time, after store.Cursor, limit int) ([]store.OpenJob, error)
	Requeue(ctx context.Context, id string, seen int) ([]byte, bool, error)
	Unrequeue(ctx context.Context, id string, round int) error
	MarkFailed(ctx context.Context, id, reason string) (bool, error)
	TryLock(ctx context.Context, name string) (release func(), ok bool, err error)
}

// Stream reads and deletes job messages (a jetstream.Stream of the job
// stream).
type Stream interface {
	GetLastMsgForSubject(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error)
	DeleteMsg(ctx context.Context, seq uint64) error
}

// Consumer is the family's consumer (a jetstream.Consumer): the settings
// of its circuit consumers (MaxDeliver, AckWait).
type Consumer interface {
	Info(ctx context.Context) (*jetstream.ConsumerInfo, error)
}

// Deliveries reads how far each circuit consumer of the family has
// delivered: the last stream sequence, by circuit
// (jobqueue.CircuitBacklogs), and creates a circuit's missing consumer
// (jobqueue.Deliveries).
type Deliveries interface {
	Delivered(ctx context.Context) (map[string]uint64, error)
	Ensure(ctx context.Context, circuit string) error
}

// Queue publishes a job again (*jobqueue.Publisher).
type Queue interface {
	Republish(ctx context.Context, env job.Envelope, round int) error
}

// Events announces status changes.
type Events interface {
	PublishStatus(ctx context.Context, ev job.StatusEvent) error
}

// Config configures a Reconciler. Zero fields take the defaults.
type Config struct {
	// Family whose open requests are reconciled. Required.
	Family family.Family
	// Interval between passes (each one delayed by up to a tenth at
	// random, so that workers started together do not pass together).
	Interval time.Duration
	// Grace: requests created or last re-queued less than Grace ago are
	// left alone (a submit may still be publishing). Keep it above the
	// frontend's record timeout (15s).
	Grace time.Duration
	// MaxRequeues is how often a lost job is published again before its
	// request is failed.
	MaxRequeues int
	// Batch is the number of requests one pass looks at.
	Batch int
	// StuckAfter is how long the row of a job on its last delivery must
	// have gone without a heartbeat before the job counts as given up.
	StuckAfter time.Duration
	// Timeout bounds each call to the store or the stream.
	Timeout time.Duration
}

// Deps are what a Reconciler works with.
type Deps struct {
	Store      Store
	Stream     Stream
	Consumer   Consumer
	Deliveries Deliveries
	Queue      Queue
	Events     Events
	Logger     *slog.Logger
	// Acted, when set, is told each action taken (metrics; must not block).
	Acted func(action string)
}

// Result is what one pass did.
type Result struct {
	// Skipped: another worker held the family's lock.
	Skipped bool
	// Checked requests; Queued of them had their job on the stream.
	Checked, Queued int
	// Requeued, FailedLost and FailedStuck count the actions taken.
	Requeued, FailedLost, FailedStuck int
	// ConsumersCreated counts the circuit consumers created for queued
	// jobs that had none.
	ConsumersCreated int
}

// Reconciler reconciles one family's open requests.
type Reconciler struct {
	d     Deps
	cfg   Config
	log   *slog.Logger
	types []family.ProofType

	// Touched by passes only, which never overlap.
	cursor   store.Cursor
	suspects map[string]suspect
}

// suspect is a job that looked given up: when, and the heartbeat it had.
type suspect struct {
	seen      time.Time
	heartbeat time.Time
}

// New checks deps and cfg.
func New(d Deps, cfg Config) (*Reconciler, error) {
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.MaxRequeues == 0 {
		cfg.MaxRequeues = DefaultMaxRequeues
	}
	if cfg.Batch == 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.StuckAfter == 0 {
		cfg.StuckAfter = DefaultStuckAfter
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	switch {
	case d.Store == nil:
		return nil, errors.New("reconcile: Deps.Store is nil")
	case d.Stream == nil:
		return nil, errors.New("reconcile: Deps.Stream is nil")
	case d.Consumer == nil:
		return nil, errors.New("reconcile: Deps.Consumer is nil")
	case d.Deliveries == nil:
		return nil, errors.New("reconcile: Deps.Deliveries is nil")
	case d.Queue == nil:
		return nil, errors.New("reconcile: Deps.Queue is nil")
	case d.Events == nil:
		return nil, errors.New("reconcile: Deps.Events is nil")
	case d.Logger == nil:
		return nil, errors.New("reconcile: Deps.Logger is nil")
	}
	if _, err := family.Parse(string(cfg.Family)); err != nil || cfg.Family == "" {
		return nil, fmt.Errorf("reconcile: Config.Family must be register, dsc or disclose, got %q", cfg.Family)
	}
	switch {
	case cfg.Interval < 0, cfg.Grace < 0, cfg.StuckAfter < 0, cfg.Timeout < 0:
		return nil, errors.New("reconcile: Config durations must not be negative")
	case cfg.MaxRequeues < 0:
		return nil, fmt.Errorf("reconcile: Config.MaxRequeues must not be negative, got %d", cfg.MaxRequeues)
	case cfg.Batch < 1:
		return nil, fmt.Errorf("reconcile: Config.Batch must be positive, got %d", cfg.Batch)
	}
	var types []family.ProofType
	for _, t := range family.ProofTypes() {
		if t.Family() == cfg.Family {
			types = append(types, t)
		}
	}
	return &Reconciler{
		d: d, cfg: cfg, types: types, suspects: map[string]suspect{},
		log: d.Logger.With("component", "reconcile", "family", string(cfg.Family)),
	}, nil
}

// Run passes every Interval until ctx ends; the pass in hand is cut short.
func (r *Reconciler) Run(ctx context.Context) {
	// A first pass soon after start (a restarted fleet has the most to
	// reconcile), at a random point so replicas spread out.
	wait := time.Duration(rand.Int64N(int64(r.cfg.Interval/4) + 1))
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		res, err := r.Pass(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Warn("reconcile pass stopped; trying again next time", "err", err, "checked", res.Checked)
		case res.Requeued+res.FailedLost+res.FailedStuck+res.ConsumersCreated > 0:
			r.log.Info("reconcile pass", "checked", res.Checked, "queued", res.Queued, "requeued", res.Requeued,
				"failed_lost", res.FailedLost, "failed_stuck", res.FailedStuck, "consumers_created", res.ConsumersCreated)
		default:
			r.log.Debug("reconcile pass", "checked", res.Checked, "queued", res.Queued, "skipped", res.Skipped)
		}
		wait = r.cfg.Interval + time.Duration(rand.Int64N(int64(r.cfg.Interval/10)+1))
	}
}

// Pass reconciles one batch of the family's open requests (see the package
// doc), if no other worker of the family is passing.
func (r *Reconciler) Pass(ctx context.Context) (Result, error) {
	var res Result
	lctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	release, ok, err := r.d.Store.TryLock(lctx, "reconcile-"+string(r.cfg.Family))
	cancel()
	if err != nil {
		return res, fmt.Errorf("reconcile: %w", err)
	}
	if !ok {
		res.Skipped = true
		return res, nil
	}
	defer release()

	// The consumer first: a job delivered after this read is not taken for
	// one given up.
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	info, err := r.d.Consumer.Info(cctx)
	cancel()
	if err != nil {
		return res, fmt.Errorf("reconcile: consumer info: %w", err)
	}
	cctx, cancel = context.WithTimeout(ctx, r.cfg.Timeout)
	delivered, err := r.d.Deliveries.Delivered(cctx)
	cancel()
	if err != nil {
		return res, fmt.Errorf("reconcile: circuit consumers: %w", err)
	}
	now := time.Now()
	sctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	rows, err := r.d.Store.OpenJobs(sctx, r.types, now.Add(-r.cfg.Grace), r.cursor, r.cfg.Batch)
	cancel()
	if err != nil {
		return res, fmt.Errorf("reconcile: %w", err)
	}
	if len(rows) < r.cfg.Batch {
		r.cursor = store.Cursor{} // the next pass starts again at the oldest
	} else {
		last := rows[len(rows)-1]
		r.cursor = store.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	seen := make(map[string]bool, len(rows))
	for _, row := range rows {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Checked++
		seen[row.ID] = true
		log := r.log.With("request_id", row.ID, "circuit", row.Circuit)
		gctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		msg, err := r.d.Stream.GetLastMsgForSubject(gctx, jobqueue.JobLookupSubject(r.cfg.Family, row.ID))
		cancel()
		switch {
		case err == nil:
			res.Queued++
			_, circuit, _, _ := jobqueue.ParseJobSubject(msg.Subject)
			if _, ok := delivered[circuit]; !ok {
				if err := r.ensure(ctx, log, circuit, &res); err != nil {
					return res, err
				}
				delivered[circuit] = 0 // a new consumer has delivered nothing
			}
			if err := r.checkStuck(ctx, log, row, msg.Sequence, delivered[circuit], info, now, &res); err != nil {
				return res, err
			}
		case errors.Is(err, jetstream.ErrMsgNotFound):
			delete(r.suspects, row.ID)
			if err := r.lost(ctx, log, row, &res); err != nil {
				return res, err
			}
		default:
			// Never conclude anything from a stream that does not answer.
			return res, fmt.Errorf("reconcile: look up the job of %s: %w", row.ID, err)
		}
	}
	// Forget suspects of old passes that this one did not meet again and
	// that are long past (finished, or beyond the batch).
	for id, s := range r.suspects {
		if !seen[id] && now.Sub(s.seen) > r.cfg.StuckAfter+time.Hour {
			delete(r.suspects, id)
		}
	}
	return res, nil
}

// ensure creates the consumer of circuit, which a queued job has and no
// consumer serves: no worker would ever take the job.
func (r *Reconciler) ensure(ctx context.Context, log *slog.Logger, circuit string, res *Result) error {
	ectx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	err := r.d.Deliveries.Ensure(ectx, circuit)
	cancel()
	if err != nil {
		return fmt.Errorf("reconcile: create the consumer of circuit %s: %w", circuit, err)
	}
	log.Warn("a queued job's circuit had no consumer; created it")
	res.ConsumersCreated++
	r.acted(ConsumerCreated)
	return nil
}

// checkStuck fails the request of a job on the stream that JetStream gave up
// on and whose advisory never reached a rescuer (see the package doc).
func (r *Reconciler) checkStuck(ctx context.Context, log *slog.Logger, row store.OpenJob, seq, delivered uint64,
	info *jetstream.ConsumerInfo, now time.Time, res *Result) error {
	maxDeliver := info.Config.MaxDeliver
	beat := row.CreatedAt
	if row.HeartbeatAt != nil {
		beat = *row.HeartbeatAt
	}
	if maxDeliver <= 0 || row.Attempts < maxDeliver || seq > delivered || now.Sub(beat) < r.cfg.StuckAfter {
		delete(r.suspects, row.ID)
		return nil
	}
	prev, ok := r.suspects[row.ID]
	if !ok || !prev.heartbeat.Equal(beat) {
		r.suspects[row.ID] = suspect{seen: now, heartbeat: beat}
		return nil
	}
	if now.Sub(prev.seen) < info.Config.AckWait {
		return nil // not yet seen still for a whole AckWait
	}
	delete(r.suspects, row.ID)
	reason := fmt.Sprintf("gave up after %d attempts: worker lost during the last attempt", maxDeliver)
	changed, err := r.fail(ctx, log, row.ID, reason)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	err = r.d.Stream.DeleteMsg(dctx, seq)
	cancel()
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		log.Warn("given-up job's message not deleted", "stream_seq", seq, "err", err)
	}
	if changed {
		res.FailedStuck++
		r.acted(FailedStuck)
		log.Warn("job given up by JetStream without a rescue (its advisory was lost); marked failed",
			"stream_seq", seq, "attempt", row.Attempts)
	}
	return nil
}

// lost publishes a job that is not on the stream again, or fails its
// request once it has been re-queued MaxRequeues times.
func (r *Reconciler) lost(ctx context.Context, log *slog.Logger, row store.OpenJob, res *Result) error {
	if row.Requeues >= r.cfg.MaxRequeues {
		reason := fmt.Sprintf("gave up: the job left the queue without a result %d times", row.Requeues+1)
		changed, err := r.fail(ctx, log, row.ID, reason)
		if err != nil {
			return err
		}
		if changed {
			res.FailedLost++
			r.acted(FailedLost)
			log.Warn("job lost from the queue again; request marked failed", "requeues", row.Requeues)
		}
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	sealed, ok, err := r.d.Store.Requeue(sctx, row.ID, row.Requeues)
	cancel()
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if !ok {
		return nil // finished meanwhile, or re-queued by another worker
	}
	round := row.Requeues + 1
	env := job.Envelope{RequestID: row.ID, ProofType: row.ProofType, Circuit: row.Circuit,
		EnqueuedAt: row.CreatedAt.UTC(), Sealed: sealed}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	err = r.d.Queue.Republish(pctx, env, round)
	cancel()
	clear(sealed)
	switch {
	case err == nil, errors.Is(err, jobqueue.ErrDuplicate):
		res.Requeued++
		r.acted(Requeued)
		log.Warn("open request had no job on the queue; published it again", "round", round)
		return nil
	case errors.Is(err, jobqueue.ErrNotQueued):
		// Not lost, only not queued yet (a full queue): give the round back.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
		uerr := r.d.Store.Unrequeue(uctx, row.ID, round)
		cancel()
		log.Warn("could not publish a lost job again; it waits for the next pass", "err", err, "unrequeue_err", uerr)
		return nil
	}
	// Unknown outcome: the job may be on the stream; the next pass sees.
	return fmt.Errorf("reconcile: publish the job of %s again: %w", row.ID, err)
}

// fail marks a request failed with reason and announces it.
func (r *Reconciler) fail(ctx context.Context, log *slog.Logger, id, reason string) (bool, error) {
	sctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	changed, err := r.d.Store.MarkFailed(sctx, id, reason)
	cancel()
	if err != nil {
		return false, fmt.Errorf("reconcile: mark %s failed: %w", id, err)
	}
	if changed {
		ectx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		if err := r.d.Events.PublishStatus(ectx, job.FailedEvent(id, reason, time.Now())); err != nil {
			log.Warn("status event not published", "status", int(status.Failed), "err", err)
		}
		cancel()
	}
	return changed, nil
}

func (r *Reconciler) acted(action string) {
	if r.d.Acted != nil {
		r.d.Acted(action)
	}
}

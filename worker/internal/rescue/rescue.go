// Package rescue fails the jobs JetStream has given up on without a result.
//
// A job's last allowed delivery (MaxDeliver) that is never acknowledged — its
// worker was SIGKILLed, OOM-killed or cut off during the last attempt, or
// handed it back because the outcome could not be recorded — is never
// delivered again: JetStream leaves the message in the stream and publishes
// an advisory on $JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>
// carrying its stream sequence. Nobody else would write the row's final
// status, so the request would stay pending or "witness generated" forever.
//
// The advisories are kept in a stream of their own (jobqueue.AdvisoryStream,
// created by jobqueue.Setup), so one published while no worker of the family
// runs is not lost: it waits there. The job consumers are the circuit
// consumers (<family>-<circuit>), and the stream files each advisory under
// its consumer's family (jobqueue.RescueSubject). A Rescuer takes its
// family's advisories from the durable consumer
// jobqueue.RescueConsumerName(family), one at a time, and for each one:
// reads the message by sequence (nothing to do when it is already gone),
// decodes the envelope, marks the row failed with "gave up after N
// attempts: worker lost during the last attempt" (a guarded write: a row
// that is already terminal — proved, failed, cancelled — is left alone),
// announces the status change, deletes the message from the stream,
// and acknowledges the advisory. Each step has a timeout; a rescue that fails
// part-way (the status store is down, say) hands the advisory back with a
// growing delay, and it comes back until a rescue succeeds: every step is
// safe to repeat. Several workers of a family share the consumer, so each
// advisory goes to one of them at a time. The worker marks the row itself
// before it terminates a job (TermWithReason), so terminated messages need
// no rescue.
//
// The server publishes the advisory when the last AckWait runs out if
// MaxDeliver is 1, and otherwise when it next looks for a message to deliver
// to the consumer: at the family's next pull, which may be a worker's that
// starts later. The reconciler (worker/internal/reconcile) is the backstop
// for an advisory lost all the same (a stream at its limits, storage lost).
package rescue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
)

// Defaults applied by New to zero fields.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultFetchWait  = 5 * time.Second
	DefaultRetryDelay = time.Second
	DefaultRetryMax   = time.Minute
)

// Fetcher pulls advisories: the family's rescue consumer on the advisory
// stream (a jetstream.Consumer).
type Fetcher interface {
	Fetch(batch int, opts ...jetstream.FetchOpt) (jetstream.MessageBatch, error)
}

// Stream is what a rescue reads and deletes job messages with (a
// jetstream.Stream of the job stream).
type Stream interface {
	GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error)
	DeleteMsg(ctx context.Context, seq uint64) error
}

// Store is the part of the status store a rescue writes.
type Store interface {
	MarkFailed(ctx context.Context, id, reason string) (bool, error)
}

// Events announces status changes.
type Events interface {
	PublishStatus(ctx context.Context, ev job.StatusEvent) error
}

// Result is what one rescue did.
type Result struct {
	// Seq is the message's stream sequence.
	Seq uint64
	// RequestID is the job's request id; empty if the envelope did not
	// decode (the message was deleted all the same).
	RequestID string
	// Attempts is the number of deliveries the job had.
	Attempts int
	// Failed: this rescue moved the row to status 3. False when the row was
	// already terminal (or missing).
	Failed bool
}

// Config configures a Rescuer.
type Config struct {
	// Family whose circuit consumers' (jobqueue.CircuitConsumerName)
	// advisories are handled. Required.
	Family family.Family
	// Stream is the job stream. Required.
	Stream string
	// MaxDeliver is the consumer's delivery limit, used to state the number
	// of attempts (the advisory's count can exceed it by one); ≤ 0: take the
	// advisory's count as it is.
	MaxDeliver int
	// Timeout bounds each step: reading the message, the status write, the
	// event, the delete (default 10s).
	Timeout time.Duration
	// FetchWait is how long one pull for an advisory waits (default 5s); it
	// also bounds how long a stop waits for the last pull.
	FetchWait time.Duration
	// RetryDelay·2^(n−1), at most RetryMax, is how long an advisory whose
	// rescue failed on its n-th delivery waits before it comes back
	// (defaults 1s, 1m).
	RetryDelay time.Duration
	RetryMax   time.Duration
}

// Deps are what a Rescuer works with; it dials and closes nothing.
type Deps struct {
	Advisories Fetcher
	Stream     Stream
	Store      Store
	Events     Events
	Logger     *slog.Logger
	// Rescued, when set, is called after each message the Rescuer removed
	// (metrics; it must not block).
	Rescued func(Result)
}

// Rescuer fails the jobs of one family that ran out of deliveries.
type Rescuer struct {
	d   Deps
	cfg Config
	log *slog.Logger
}

// New checks deps and cfg. It starts nothing (see Run).
func New(d Deps, cfg Config) (*Rescuer, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.FetchWait == 0 {
		cfg.FetchWait = DefaultFetchWait
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = DefaultRetryDelay
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	switch {
	case d.Advisories == nil:
		return nil, errors.New("rescue: Deps.Advisories is nil")
	case d.Stream == nil:
		return nil, errors.New("rescue: Deps.Stream is nil")
	case d.Store == nil:
		return nil, errors.New("rescue: Deps.Store is nil")
	case d.Events == nil:
		return nil, errors.New("rescue: Deps.Events is nil")
	case d.Logger == nil:
		return nil, errors.New("rescue: Deps.Logger is nil")
	}
	if _, err := family.Parse(string(cfg.Family)); err != nil || cfg.Family == "" {
		return nil, fmt.Errorf("rescue: Config.Family must be register, dsc or disclose, got %q", cfg.Family)
	}
	switch {
	case cfg.Stream == "":
		return nil, errors.New("rescue: Config.Stream is empty")
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("rescue: Config.Timeout must be positive, got %s", cfg.Timeout)
	case cfg.FetchWait < 100*time.Millisecond:
		return nil, fmt.Errorf("rescue: Config.FetchWait must be at least 100ms, got %s", cfg.FetchWait)
	case cfg.RetryDelay < 0 || cfg.RetryMax < cfg.RetryDelay:
		return nil, fmt.Errorf("rescue: Config.RetryDelay %s and RetryMax %s must satisfy 0 ≤ RetryDelay ≤ RetryMax", cfg.RetryDelay, cfg.RetryMax)
	}
	return &Rescuer{
		d: d, cfg: cfg,
		log: d.Logger.With("component", "rescue", "family", string(cfg.Family)),
	}, nil
}

// Run handles advisories one at a time until ctx ends; the rescue in hand
// then finishes (a half-done one would leave the message in the stream),
// and an advisory that a last pull brings after that is handed back at once.
func (r *Rescuer) Run(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		// Not bound to ctx, as the pool's pulls: a pull cancelled on the
		// client stays open on the server and what it delivers would wait
		// out the AckWait. It expires after FetchWait.
		batch, err := r.d.Advisories.Fetch(1, jetstream.FetchMaxWait(r.cfg.FetchWait))
		if err == nil {
			for msg := range batch.Messages() {
				if ctx.Err() != nil {
					_ = msg.Nak()
					continue
				}
				r.handle(ctx, msg)
			}
			err = batch.Error()
		}
		if err == nil || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) {
			failures = 0
			continue
		}
		failures++
		wait := min(time.Duration(failures)*500*time.Millisecond, 5*time.Second)
		r.log.Warn("advisory fetch failed", "err", err, "retry_in_ms", wait.Milliseconds())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

// advisory is the part of JetStream's io.nats.jetstream.advisory.v1.max_deliver
// event a rescue uses.
type advisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// handle rescues the message an advisory names and acknowledges the
// advisory, or hands it back with a delay when the rescue failed part-way.
// Once begun, a rescue is not cut short by ctx.
func (r *Rescuer) handle(ctx context.Context, msg jetstream.Msg) {
	work := context.WithoutCancel(ctx)
	done := func(log *slog.Logger) {
		actx, cancel := context.WithTimeout(work, r.cfg.Timeout)
		defer cancel()
		if err := msg.DoubleAck(actx); err != nil {
			log.Warn("advisory not acknowledged; it comes back and is handled again", "err", err)
		}
	}
	var adv advisory
	if err := json.Unmarshal(msg.Data(), &adv); err != nil || adv.StreamSeq == 0 {
		r.log.Warn("ignoring an advisory that does not decode", "subject", msg.Subject(), "err", err)
		done(r.log)
		return
	}
	if f, _, ok := jobqueue.ParseCircuitConsumer(adv.Consumer); adv.Stream != r.cfg.Stream || !ok || f != r.cfg.Family {
		r.log.Warn("ignoring an advisory of another consumer", "stream", adv.Stream, "consumer", adv.Consumer)
		done(r.log)
		return
	}
	attempts := int(max(1, min(adv.Deliveries, 1<<31-1)))
	if r.cfg.MaxDeliver > 0 {
		attempts = min(attempts, r.cfg.MaxDeliver)
	}
	log := r.log.With("stream_seq", adv.StreamSeq, "attempt", attempts)
	res, gone, err := r.rescue(work, log, adv.StreamSeq, attempts)
	if res.RequestID != "" {
		log = log.With("request_id", res.RequestID)
	}
	if err == nil {
		if !gone && r.d.Rescued != nil {
			r.d.Rescued(res)
		}
		done(log)
		return
	}
	n := 1
	if md, merr := msg.Metadata(); merr == nil {
		n = int(min(md.NumDelivered, 62))
	}
	delay := r.cfg.RetryDelay
	for i := 1; i < n && delay < r.cfg.RetryMax; i++ {
		delay *= 2
	}
	delay = min(delay, r.cfg.RetryMax)
	log.Warn("rescue failed; the advisory comes back", "try", n, "retry_in_ms", delay.Milliseconds(), "err", err)
	if err := msg.NakWithDelay(delay); err != nil {
		log.Warn("advisory not handed back; it comes back after its AckWait", "err", err)
	}
}

// rescue fails the job at seq and removes its message. gone reports that the
// message was not in the stream (acknowledged late, or already rescued).
// Every step is safe to repeat.
func (r *Rescuer) rescue(ctx context.Context, log *slog.Logger, seq uint64, attempts int) (res Result, gone bool, err error) {
	res = Result{Seq: seq, Attempts: attempts}
	sctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	raw, err := r.d.Stream.GetMsg(sctx, seq)
	cancel()
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		log.Debug("message already gone; nothing to rescue")
		return res, true, nil
	}
	if err != nil {
		return res, false, fmt.Errorf("rescue: read message %d: %w", seq, err)
	}
	if !jobqueue.OfFamily(r.cfg.Family, raw.Subject) {
		// Not this family's job: leave it to whoever owns it.
		log.Warn("advisory names a message of another subject; left alone", "subject", raw.Subject, "family", string(r.cfg.Family))
		return res, true, nil
	}

	env, err := job.Unmarshal(raw.Data)
	if err != nil {
		// No request id to record a failure under; the message can only go.
		log.Warn("undecodable job ran out of deliveries; deleting it", "err", err)
	} else {
		res.RequestID = env.RequestID
		log = log.With("request_id", env.RequestID, "circuit", env.Circuit)
		reason := "gave up after " + strconv.Itoa(attempts) + " attempts: worker lost during the last attempt"
		sctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		res.Failed, err = r.d.Store.MarkFailed(sctx, env.RequestID, reason)
		cancel()
		if err != nil {
			return res, false, fmt.Errorf("rescue: mark %s failed: %w", env.RequestID, err)
		}
		if res.Failed {
			sctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
			err := r.d.Events.PublishStatus(sctx, job.FailedEvent(env.RequestID, reason, time.Now()))
			cancel()
			if err != nil {
				// A hint only: readers fall back to the row.
				log.Warn("status event not published", "status", int(status.Failed), "err", err)
			}
		}
	}

	sctx, cancel = context.WithTimeout(ctx, r.cfg.Timeout)
	err = r.d.Stream.DeleteMsg(sctx, seq)
	cancel()
	if err != nil {
		// Deleted meanwhile (a late ack, another rescuer)? Then all is done.
		sctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		_, gerr := r.d.Stream.GetMsg(sctx, seq)
		cancel()
		if !errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return res, false, fmt.Errorf("rescue: delete message %d: %w", seq, err)
		}
	}
	if res.Failed {
		log.Warn("job ran out of deliveries without a result; marked failed")
	} else {
		log.Info("job ran out of deliveries; its row was already final; message deleted")
	}
	return res, false, nil
}

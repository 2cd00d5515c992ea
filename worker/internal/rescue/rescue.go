// Package rescue fails the jobs JetStream has given up on without a result.
//
// A job's last allowed delivery (MaxDeliver) that is never acknowledged — its
// worker was SIGKILLed, OOM-killed or cut off during the last attempt — is
// never delivered again: JetStream leaves the message in the stream and
// publishes an advisory on
// $JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer> carrying its
// stream sequence. Nobody else would write the row's final status, so the
// request would stay pending or "witness generated" forever.
//
// A Rescuer listens for those advisories of one family's consumer, in a queue
// group (rescue-<family>) so that one worker of the family handles each, and
// for each one: reads the message by sequence (nothing to do when it is
// already gone), decodes the envelope, marks the row failed with
// "gave up after N attempts: worker lost during the last attempt" (a guarded
// write: a row that is already terminal — proved, failed, cancelled — is
// left alone), announces the status change, and deletes the message from the
// stream. Each step has a timeout; a rescue that fails part-way is tried
// again a few times (every step is safe to repeat). The worker marks the row
// itself before it terminates a job (TermWithReason), so terminated messages
// need no rescue.
//
// The server publishes the advisory when the last AckWait runs out if
// MaxDeliver is 1, and otherwise when it next looks for a message to deliver
// to the consumer: at the family's next pull.
//
// Advisories are core NATS messages: one published while no worker of the
// family is listening is lost, and the job stays stuck as before. The
// rescuer narrows the gap; it does not close it.
package rescue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
)

// AdvisoryPrefix is the subject prefix of JetStream's max-deliveries
// advisories; Subject appends <stream>.<consumer>.
const AdvisoryPrefix = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"

// Subject is the advisory subject of a stream's consumer.
func Subject(stream, consumer string) string { return AdvisoryPrefix + "." + stream + "." + consumer }

// Defaults applied by New to zero fields.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultAttempts   = 3
	DefaultRetryDelay = time.Second
)

// Stream is what a rescue reads and deletes messages with (a
// jetstream.Stream).
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
	// Family whose consumer (jobqueue.ConsumerName) is watched. Required.
	Family family.Family
	// Stream is the jobs stream. Required.
	Stream string
	// MaxDeliver is the consumer's delivery limit, used to state the number
	// of attempts (the advisory's count can exceed it by one); ≤ 0: take the
	// advisory's count as it is.
	MaxDeliver int
	// Timeout bounds each step: reading the message, the status write, the
	// event, the delete (default 10s).
	Timeout time.Duration
	// Attempts is how many times a rescue that failed part-way is tried
	// (default 3), RetryDelay·2^(n−1) apart (default 1s).
	Attempts   int
	RetryDelay time.Duration
}

// Deps are what a Rescuer works with; it dials and closes nothing.
type Deps struct {
	NC     *nats.Conn
	Stream Stream
	Store  Store
	Events Events
	Logger *slog.Logger
	// Rescued, when set, is called after each message the Rescuer removed
	// (metrics; it must not block).
	Rescued func(Result)
}

// Rescuer fails the jobs of one family that ran out of deliveries.
type Rescuer struct {
	d       Deps
	cfg     Config
	log     *slog.Logger
	subject string
	queue   string
}

// New checks deps and cfg. It subscribes to nothing (see Listen).
func New(d Deps, cfg Config) (*Rescuer, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = DefaultRetryDelay
	}
	switch {
	case d.NC == nil:
		return nil, errors.New("rescue: Deps.NC is nil")
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
	case cfg.Attempts < 1:
		return nil, fmt.Errorf("rescue: Config.Attempts must be at least 1, got %d", cfg.Attempts)
	case cfg.RetryDelay < 0:
		return nil, fmt.Errorf("rescue: Config.RetryDelay must not be negative, got %s", cfg.RetryDelay)
	}
	consumer := jobqueue.ConsumerName(cfg.Family)
	return &Rescuer{
		d: d, cfg: cfg,
		log:     d.Logger.With("component", "rescue", "family", string(cfg.Family)),
		subject: Subject(cfg.Stream, consumer),
		queue:   "rescue-" + string(cfg.Family),
	}, nil
}

// Subject is the advisory subject this Rescuer listens on.
func (r *Rescuer) Subject() string { return r.subject }

// Queue is the queue group the Rescuers of a family share.
func (r *Rescuer) Queue() string { return r.queue }

// Listen subscribes and returns once the server has the subscription.
// Advisories are then handled one at a time in the background until ctx ends
// or stop is called: the subscription is drained (advisories already on
// their way are still handled) and stop returns when the rescue in hand is
// done.
func (r *Rescuer) Listen(ctx context.Context) (stop func(), err error) {
	sub, err := r.d.NC.QueueSubscribeSync(r.subject, r.queue)
	if err != nil {
		return nil, fmt.Errorf("rescue: subscribe %s: %w", r.subject, err)
	}
	fctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	err = r.d.NC.FlushWithContext(fctx)
	cancel()
	if err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("rescue: subscribe %s: %w", r.subject, err)
	}
	lctx, cancelListen := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.serve(lctx, sub)
	}()
	var once sync.Once
	return func() {
		once.Do(func() { cancelListen(); <-done })
	}, nil
}

// serve handles advisories until ctx ends, then drains the subscription.
func (r *Rescuer) serve(ctx context.Context, sub *nats.Subscription) {
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error("advisory subscription ended", "err", err)
				_ = sub.Unsubscribe()
				return
			}
			break
		}
		r.handle(ctx, msg)
	}
	// Stop accepting, then finish what the server had already sent.
	if err := sub.Drain(); err != nil {
		_ = sub.Unsubscribe()
		return
	}
	deadline := time.Now().Add(r.cfg.Timeout)
	for time.Now().Before(deadline) {
		msg, err := sub.NextMsg(100 * time.Millisecond)
		if errors.Is(err, nats.ErrTimeout) {
			if !sub.IsValid() {
				return
			}
			continue
		}
		if err != nil {
			return
		}
		r.handle(ctx, msg)
	}
	_ = sub.Unsubscribe()
}

// advisory is the part of JetStream's io.nats.jetstream.advisory.v1.max_deliver
// event a rescue uses.
type advisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// handle rescues the message an advisory names, trying again while a step
// fails. Once begun, a rescue is not cut short by ctx (a half-done one
// would leave the message in the stream); only the waits between tries are.
func (r *Rescuer) handle(ctx context.Context, msg *nats.Msg) {
	var adv advisory
	if err := json.Unmarshal(msg.Data, &adv); err != nil || adv.StreamSeq == 0 {
		r.log.Warn("ignoring an advisory that does not decode", "subject", msg.Subject, "err", err)
		return
	}
	if adv.Stream != r.cfg.Stream || adv.Consumer != jobqueue.ConsumerName(r.cfg.Family) {
		r.log.Warn("ignoring an advisory of another consumer", "stream", adv.Stream, "consumer", adv.Consumer)
		return
	}
	attempts := int(max(1, min(adv.Deliveries, 1<<31-1)))
	if r.cfg.MaxDeliver > 0 {
		attempts = min(attempts, r.cfg.MaxDeliver)
	}
	log := r.log.With("stream_seq", adv.StreamSeq, "attempt", attempts)
	work := context.WithoutCancel(ctx)
	delay := r.cfg.RetryDelay
	for try := 1; ; try++ {
		res, gone, err := r.rescue(work, log, adv.StreamSeq, attempts)
		if err == nil {
			if !gone && r.d.Rescued != nil {
				r.d.Rescued(res)
			}
			return
		}
		if res.RequestID != "" {
			log = log.With("request_id", res.RequestID)
		}
		if try >= r.cfg.Attempts {
			log.Error("job ran out of deliveries and could not be failed; its row stays open", "tries", try, "err", err)
			return
		}
		log.Warn("rescue failed; trying again", "try", try, "retry_in_ms", delay.Milliseconds(), "err", err)
		select {
		case <-time.After(delay):
			delay *= 2
		case <-ctx.Done():
			log.Error("stopping before the rescue succeeded; the job's row stays open", "err", err)
			return
		}
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
	if want := jobqueue.Subject(r.cfg.Family); raw.Subject != want {
		// Not this family's job: leave it to whoever owns it.
		log.Warn("advisory names a message of another subject; left alone", "subject", raw.Subject, "want", want)
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

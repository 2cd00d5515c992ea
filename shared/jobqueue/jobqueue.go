// Package jobqueue is the NATS JetStream side of the job path: the proof-job
// stream, its consumers, the publisher the frontend enqueues with, the Taker
// workers take jobs with, and the status and cancel events that flow
// between workers and frontends.
//
// Topology. One stream (subjects proof.jobs.>, file storage, DiscardNew with
// message and byte limits so a full queue refuses a publish instead of
// silently dropping old jobs, a duplicate window for uuid dedup). A job is
// published on proof.jobs.<family>.<circuit>.<request id> (JobSubject), so
// whether a request's job is still in the stream is one lookup (Queued,
// GetLastMsgForSubject on JobLookupSubject) and never a guess from the
// duplicate window; it stays in the stream until a worker settles it.
//
//   - A circuit consumer per circuit, <family>-<circuit>, filtered on
//     proof.jobs.<family>.<circuit>.*: workers take jobs from these, so a
//     worker can ask for the circuits whose keys it holds warm first (see
//     Taker). The publisher creates a circuit's consumer before its first
//     job, with the settings of its family consumer.
//   - A family consumer per family, <family>, filtered on
//     proof.jobs.<family>.>: never pulled. Its lag (pending, as KEDA reads
//     it) is the number of the family's jobs not yet settled, the
//     per-family autoscaling signal; its settings (AckWait, MaxDeliver,
//     BackOff, MaxAckPending, replicas) are the template of the family's
//     circuit consumers.
//
// The two overlap, which a work-queue stream forbids (error 10100, "filtered
// consumer not unique on workqueue stream"): the stream has limits
// retention instead, and a job's message is deleted when it is settled for
// good (Taker's messages delete themselves on Ack, DoubleAck and Term; the
// rescuer deletes what ran out of deliveries), which is what a work queue
// did on the acknowledgement.
//
// Beside it, a work-queue stream of advisories (AdvisoryStream) keeps
// JetStream's max-deliveries advisories of the circuit consumers, with a
// durable consumer per family (RescueConsumerName): an advisory published
// while no worker of the family runs waits there until one does (see
// worker/internal/rescue).
//
// Setup creates or updates all of them idempotently; it runs once from
// `proverctl migrate` (or the dev stack), never raced by replicas.
package jobqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
)

// Config sizes the stream and the consumers.
type Config struct {
	// Stream name; StreamName by default.
	Stream string
	// Replicas of the stream and consumers: 1 for dev, 3 in production.
	Replicas int
	// Memory storage instead of file storage (tests only).
	Memory bool
	// MaxMsgs and MaxBytes bound the queue; a publish beyond them is refused.
	MaxMsgs  int64
	MaxBytes int64
	// MaxMsgSize bounds one job (register inputs are large).
	MaxMsgSize int32
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped.
	Duplicates time.Duration
	// AckWait is how long a delivered job may go without an ack or an
	// InProgress heartbeat before it is redelivered.
	AckWait time.Duration
	// MaxDeliver caps deliveries of one job.
	MaxDeliver int
	// BackOff, when set, replaces AckWait for successive redeliveries of a
	// job whose worker went silent (len ≤ MaxDeliver).
	BackOff []time.Duration
	// MaxAckPending caps jobs in flight per family: the slots of its fleet.
	MaxAckPending int
}

// DefaultConfig is a development configuration.
func DefaultConfig() Config {
	return Config{
		Stream:        StreamName,
		Replicas:      1,
		MaxMsgs:       100_000,
		MaxBytes:      4 << 30,
		MaxMsgSize:    12 << 20,
		Duplicates:    10 * time.Minute,
		AckWait:       30 * time.Second,
		MaxDeliver:    5,
		MaxAckPending: 256,
	}
}

// Validate checks the configuration with exact messages.
func (c Config) Validate() error {
	switch {
	case c.Stream == "":
		return errors.New("jobqueue: Config.Stream is empty")
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("jobqueue: Config.Replicas must be 1..5, got %d", c.Replicas)
	case c.MaxMsgs <= 0 || c.MaxBytes <= 0:
		return errors.New("jobqueue: Config.MaxMsgs and Config.MaxBytes must be positive (the queue must push back)")
	case c.MaxMsgSize <= 0:
		return errors.New("jobqueue: Config.MaxMsgSize must be positive")
	case c.Duplicates <= 0:
		return errors.New("jobqueue: Config.Duplicates must be positive (uuid dedup)")
	case c.AckWait < time.Second:
		return fmt.Errorf("jobqueue: Config.AckWait must be at least 1s, got %s", c.AckWait)
	case c.MaxDeliver < 1:
		return fmt.Errorf("jobqueue: Config.MaxDeliver must be at least 1, got %d", c.MaxDeliver)
	case len(c.BackOff) > c.MaxDeliver:
		return fmt.Errorf("jobqueue: Config.BackOff has %d steps, more than MaxDeliver %d", len(c.BackOff), c.MaxDeliver)
	case c.MaxAckPending < 1:
		return fmt.Errorf("jobqueue: Config.MaxAckPending must be at least 1, got %d", c.MaxAckPending)
	}
	return nil
}

func (c Config) streamConfig() jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if c.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "Proof jobs: proof.jobs.<family>.<circuit>.<request id>, deleted once settled",
		Subjects:    []string{SubjectAll},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     c.MaxMsgs,
		MaxBytes:    c.MaxBytes,
		MaxMsgSize:  c.MaxMsgSize,
		Duplicates:  c.Duplicates,
		Storage:     storage,
		Replicas:    c.Replicas,
	}
}

// consumerConfig is the family consumer's: the backlog gauge and the
// template of the circuit consumers.
func (c Config) consumerConfig(f family.Family) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: ConsumerName(f),
		Description: "Backlog of the " + string(f) + " family (its lag: jobs not yet settled; never pulled) " +
			"and template of its circuit consumers",
		FilterSubject: FamilySubjects(f),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		BackOff:       c.BackOff,
		MaxAckPending: c.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      c.Replicas,
	}
}

// ErrOldStream means the stream exists with the work-queue retention of an
// earlier version, which cannot be changed in place.
var ErrOldStream = errors.New("jobqueue: the stream has work-queue retention (an earlier version's)")

// Setup creates or updates the job stream, the advisory stream and the
// family and rescue consumers of fams, and brings the circuit consumers of
// fams that exist to their family consumer's settings. It is idempotent.
// The advisory stream comes first, so that it already keeps the advisories
// of a consumer that starts delivering.
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config, fams []family.Family) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if s, err := js.Stream(ctx, cfg.Stream); err == nil {
		if s.CachedInfo().Config.Retention == jetstream.WorkQueuePolicy {
			return fmt.Errorf("%w: let the workers finish its jobs, delete it and its advisories (nats stream rm %s; nats stream rm %s) and run this again",
				ErrOldStream, cfg.Stream, AdvisoryStream(cfg.Stream))
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("jobqueue: stream %s: %w", cfg.Stream, err)
	}
	adv := AdvisoryStream(cfg.Stream)
	if _, err := js.CreateOrUpdateStream(ctx, cfg.advisoryStreamConfig()); err != nil {
		return fmt.Errorf("jobqueue: stream %s: %w", adv, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, cfg.streamConfig()); err != nil {
		return fmt.Errorf("jobqueue: stream %s: %w", cfg.Stream, err)
	}
	for _, f := range fams {
		if _, err := js.CreateOrUpdateConsumer(ctx, adv, cfg.rescueConsumerConfig(f)); err != nil {
			return fmt.Errorf("jobqueue: consumer %s of %s: %w", RescueConsumerName(f), adv, err)
		}
		tmpl := cfg.consumerConfig(f)
		if _, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, tmpl); err != nil {
			return fmt.Errorf("jobqueue: consumer %s: %w", ConsumerName(f), err)
		}
		circuits, err := circuitConsumers(ctx, js, cfg.Stream, f)
		if err != nil {
			return err
		}
		for _, info := range circuits {
			_, circuit, _ := ParseCircuitConsumer(info.Name)
			if _, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, circuitConsumerConfig(tmpl, f, circuit)); err != nil {
				return fmt.Errorf("jobqueue: consumer %s: %w", info.Name, err)
			}
		}
	}
	return nil
}

// Check reports whether the job stream, the advisory stream and the
// consumers of fams on both exist (for readiness probes).
func Check(ctx context.Context, js jetstream.JetStream, stream string, fams []family.Family) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("jobqueue: stream %s: %w", stream, err)
	}
	for _, f := range fams {
		if _, err := s.Consumer(ctx, ConsumerName(f)); err != nil {
			return fmt.Errorf("jobqueue: consumer %s: %w", ConsumerName(f), err)
		}
	}
	return CheckAdvisories(ctx, js, stream, fams)
}

// CheckAdvisories reports whether the advisory stream of the job stream and
// the rescue consumers of fams exist.
func CheckAdvisories(ctx context.Context, js jetstream.JetStream, stream string, fams []family.Family) error {
	adv := AdvisoryStream(stream)
	s, err := js.Stream(ctx, adv)
	if err != nil {
		return fmt.Errorf("jobqueue: stream %s (run proverctl migrate): %w", adv, err)
	}
	for _, f := range fams {
		if _, err := s.Consumer(ctx, RescueConsumerName(f)); err != nil {
			return fmt.Errorf("jobqueue: consumer %s of %s (run proverctl migrate): %w", RescueConsumerName(f), adv, err)
		}
	}
	return nil
}

// Backlog is a family's autoscaling signal: the sums over its circuit
// consumers. Pending + AckPending is its family consumer's lag.
type Backlog struct {
	Family      family.Family
	Pending     uint64 // jobs not yet delivered
	AckPending  int    // jobs delivered and not yet acknowledged
	Redelivered int
	// Circuits is the number of the family's circuit consumers.
	Circuits int
}

// Backlogs reads the backlog of each family from its circuit consumers' info
// (one listing of the stream's consumers).
func Backlogs(ctx context.Context, js jetstream.JetStream, stream string, fams []family.Family) ([]Backlog, error) {
	infos, err := listConsumers(ctx, js, stream)
	if err != nil {
		return nil, err
	}
	out := make([]Backlog, 0, len(fams))
	for _, f := range fams {
		b := Backlog{Family: f}
		for _, info := range infos {
			if cf, _, ok := ParseCircuitConsumer(info.Name); ok && cf == f {
				b.Pending += info.NumPending
				b.AckPending += info.NumAckPending
				b.Redelivered += info.NumRedelivered
				b.Circuits++
			}
		}
		out = append(out, b)
	}
	return out, nil
}

var (
	// ErrQueueFull means the stream refused the job: the queue is at its
	// message or byte limit. The frontend reports it to the client. It is
	// an ErrNotQueued.
	ErrQueueFull error = &kindOf{msg: "jobqueue: the proof queue is full", kind: ErrNotQueued}
	// ErrNotQueued means the job is certainly not on the stream: the stream
	// refused it, no stream answered, or it never left this process. A
	// publish error that is not ErrNotQueued leaves the outcome unknown: the
	// message may have been stored with its acknowledgement lost, or may
	// still sit in the connection's reconnect buffer and reach the stream
	// once NATS is back.
	ErrNotQueued = errors.New("jobqueue: job not queued")
	// ErrDuplicate means a job with this request id was already published
	// within the duplicate window. It says nothing about whether that job is
	// still on the stream: it may have been consumed since (see Queued).
	ErrDuplicate = errors.New("jobqueue: job already enqueued")
)

// kindOf is a sentinel error that is also a more general one.
type kindOf struct {
	msg  string
	kind error
}

func (e *kindOf) Error() string { return e.msg }
func (e *kindOf) Unwrap() error { return e.kind }

// Publisher enqueues jobs.
type Publisher struct {
	js       jetstream.JetStream
	stream   string
	circuits *circuitSet
}

// NewPublisher returns a Publisher on js for the configured stream.
func NewPublisher(js jetstream.JetStream, cfg Config) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("jobqueue: NewPublisher needs a JetStream")
	}
	if cfg.Stream == "" {
		return nil, errors.New("jobqueue: Config.Stream is empty")
	}
	return &Publisher{js: js, stream: cfg.Stream, circuits: newCircuitSet(js, cfg.Stream)}, nil
}

// Publish enqueues env on its request's subject (JobSubject) with
// Nats-Msg-Id = request id and waits for the stream's acknowledgement
// (bound it with ctx). The first job of a circuit this Publisher sees
// creates the circuit's consumer first (EnsureCircuitConsumer; see
// ensureConsumer for when NATS does not answer). Errors: ErrQueueFull,
// another ErrNotQueued (certainly not stored: JetStream refusing the
// consumer is one), ErrDuplicate (the id was published within the
// duplicate window), or an error of unknown outcome.
func (p *Publisher) Publish(ctx context.Context, env job.Envelope) error {
	return p.publish(ctx, env, env.RequestID)
}

// Republish publishes env again under a message id of its own (the request
// id and round), so the duplicate window, which may remember a job since
// consumed, cannot swallow it. Two Republish calls with the same round are
// one job. Errors are Publish's.
func (p *Publisher) Republish(ctx context.Context, env job.Envelope, round int) error {
	return p.publish(ctx, env, fmt.Sprintf("%s/requeue-%d", env.RequestID, round))
}

func (p *Publisher) publish(ctx context.Context, env job.Envelope, msgID string) error {
	if _, err := uuid.Parse(env.RequestID); err != nil {
		return fmt.Errorf("%w: request id %q is not a UUID", ErrNotQueued, env.RequestID)
	}
	data, err := env.Marshal()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotQueued, err)
	}
	if !circuitdir.ValidName(env.Circuit) {
		return fmt.Errorf("%w: circuit name %q is not valid", ErrNotQueued, env.Circuit)
	}
	if err := p.ensureConsumer(ctx, env.Family(), env.Circuit); err != nil {
		return err
	}
	ack, err := p.js.Publish(ctx, JobSubject(env.Family(), env.Circuit, env.RequestID), data,
		jetstream.WithMsgID(msgID), jetstream.WithExpectStream(p.stream))
	if err != nil {
		switch {
		case isFull(err):
			return fmt.Errorf("%w: %v", ErrQueueFull, err)
		case notSent(err):
			return fmt.Errorf("%w: publish %s: %w", ErrNotQueued, env.RequestID, err)
		}
		return fmt.Errorf("jobqueue: publish %s (outcome unknown): %w", env.RequestID, err)
	}
	if ack.Duplicate {
		return fmt.Errorf("%w: %s", ErrDuplicate, env.RequestID)
	}
	return nil
}

// ensureConsumer makes sure circuit's consumer exists before a job of the
// circuit is published, so that a worker takes it. A refusal from
// JetStream (no family consumer: migrate has not run; no room for another
// consumer) is ErrNotQueued: the job would wait on a subject no consumer
// serves. Without an answer (NATS unreachable, a timeout) the job is
// published all the same, as any job is during an outage (the connection
// keeps it for the server's return; the outcome is unknown and the request
// is kept): its consumer is then made by whichever comes first, this
// Publisher's next job of the circuit, a worker of the family that sees the
// job arrive (Taker), or the reconciler, which gives a queued job of a
// circuit without a consumer its consumer. The ensure takes at most half
// of what ctx leaves, so that the publish still has time.
func (p *Publisher) ensureConsumer(ctx context.Context, f family.Family, circuit string) error {
	if !p.js.Conn().IsConnected() {
		return nil
	}
	ectx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ectx, cancel = context.WithTimeout(ctx, time.Until(dl)/2)
		defer cancel()
	}
	_, err := p.circuits.consumer(ectx, f, circuit)
	var apiErr *jetstream.APIError
	if err != nil && errors.As(err, &apiErr) {
		return fmt.Errorf("%w: %w", ErrNotQueued, err)
	}
	return nil
}

// Queued reports whether the job of requestID (family f) is on the stream
// now: waiting, in a worker's hands, or out of deliveries. It reads the
// stream leader (no direct get, which a lagging replica could answer), so
// false means the stream has no such job.
func (p *Publisher) Queued(ctx context.Context, f family.Family, requestID string) (bool, error) {
	s, err := p.js.Stream(ctx, p.stream)
	if err != nil {
		return false, fmt.Errorf("jobqueue: stream %s: %w", p.stream, err)
	}
	return Queued(ctx, s, f, requestID)
}

// Queued reports whether stream s holds the job of requestID (family f)
// on its per-request subject, whatever its circuit (JobLookupSubject).
func Queued(ctx context.Context, s MsgGetter, f family.Family, requestID string) (bool, error) {
	_, err := s.GetLastMsgForSubject(ctx, JobLookupSubject(f, requestID))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	}
	return false, fmt.Errorf("jobqueue: look up the job of %s: %w", requestID, err)
}

// MsgGetter reads a stream's last message on a subject (a
// jetstream.Stream).
type MsgGetter interface {
	GetLastMsgForSubject(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error)
}

// isFull reports a refusal at the stream's limits.
func isFull(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		d := strings.ToLower(apiErr.Description)
		return strings.Contains(d, "maximum messages") || strings.Contains(d, "maximum bytes") ||
			strings.Contains(d, "resource limits")
	}
	return false
}

// notSent reports a publish error after which the job is certainly not on
// the stream: the stream answered with an error, no stream listened, or the
// message never left the connection. Anything else (a timeout above all)
// leaves the outcome unknown.
func notSent(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrInvalidConnection), errors.Is(err, nats.ErrConnectionDraining):
		return true
	}
	return false
}

// Events publishes and subscribes to status and cancel announcements on core
// NATS. They push updates; Postgres holds the truth, and an event can be
// lost (see job.StatusEvent).
type Events struct{ nc *nats.Conn }

// NewEvents returns Events on nc.
func NewEvents(nc *nats.Conn) *Events { return &Events{nc: nc} }

// PublishStatus announces a status change. It hands the event to the
// connection and returns without waiting for the server (the connection's
// flusher writes it out at once): workers publish on their job's critical
// path, an event is a hint whose loss readers survive, and events of one
// publisher still arrive in the order they were published. An event too
// large for the server's payload limit goes without its Row, so readers
// re-read the row.
func (e *Events) PublishStatus(ctx context.Context, ev job.StatusEvent) error {
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if max := e.nc.MaxPayload(); max > 0 && int64(len(data)) > max && ev.Row != nil {
		ev.Row = nil
		if data, err = json.Marshal(ev); err != nil {
			return err
		}
	}
	if err := e.nc.Publish(StatusSubject(ev.RequestID), data); err != nil {
		return fmt.Errorf("jobqueue: status event %s: %w", ev.RequestID, err)
	}
	return nil
}

// SubscribeStatus calls fn for each status event of requestID until
// unsubscribe is called.
func (e *Events) SubscribeStatus(requestID string, fn func(job.StatusEvent)) (unsubscribe func(), err error) {
	sub, err := e.nc.Subscribe(StatusSubject(requestID), func(m *nats.Msg) {
		var ev job.StatusEvent
		if json.Unmarshal(m.Data, &ev) == nil && ev.RequestID == requestID {
			fn(ev)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("jobqueue: subscribe status %s: %w", requestID, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// PublishCancel announces that requestID was cancelled, so the worker
// running it stops.
func (e *Events) PublishCancel(ctx context.Context, requestID string) error {
	if err := e.nc.Publish(CancelSubject(requestID), []byte(requestID)); err != nil {
		return fmt.Errorf("jobqueue: cancel event %s: %w", requestID, err)
	}
	return e.flush(ctx)
}

// flush waits until the server has the announcement, bounded by ctx or 5s.
func (e *Events) flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	if err := e.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("jobqueue: flush: %w", err)
	}
	return nil
}

// SubscribeCancels calls fn with the request id of every cancel announcement.
func (e *Events) SubscribeCancels(fn func(requestID string)) (unsubscribe func(), err error) {
	sub, err := e.nc.Subscribe(CancelSubjectAll, func(m *nats.Msg) {
		fn(strings.TrimPrefix(m.Subject, cancelPrefix))
	})
	if err != nil {
		return nil, fmt.Errorf("jobqueue: subscribe cancels: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

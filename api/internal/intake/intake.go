// Package intake is what the frontend does with the app's calls, apart from
// the wire: the handshake (a session per uuid and its attestation), the
// submit (decrypt once, parse, validate, record the proofs row, enqueue the
// sealed job), and reading, watching and cancelling recorded requests.
//
// Its one invariant: a uuid that Submit returns is recorded in Postgres with
// its sealed job (the proofs row and, in the same statement, the job's
// sealed inputs), and its job is on JetStream or will be. Submit records
// first and publishes second:
//
//   - the publish is acknowledged (or the stream is seen to hold the job):
//     the request is accepted;
//   - the publish certainly failed (the queue is full, no stream answered,
//     the message never left the connection): the row is removed again, the
//     client gets an *InternalError, and a new hello with the same uuid can
//     retry;
//   - the outcome is unknown (no acknowledgement in time: NATS is down or
//     slow, and the message may sit in the connection's reconnect buffer and
//     reach the stream minutes later): the row is kept and the request is
//     accepted. Removing it would leave a job that arrives later without its
//     row, and free the uuid for a retry whose publish the duplicate window
//     would then swallow. The job arrives with the reconnect, or the workers'
//     reconciler finds the open row without a job and publishes it again
//     from the sealed inputs kept with the row.
//
// A publish answered "duplicate" is not trusted: the duplicate window only
// says that a job with this id was published in the last minutes, not that
// it is still queued (it may have been consumed, or terminated because its
// row was missing). The stream is asked (jobqueue.Queued) and the job is
// published again under a fresh message id if it is not there.
//
// Errors are typed so the transport can map each to the app's code and
// message: ErrBadUUID, ErrExists, ErrNotFound, ErrNotSubmitter, the handshake and request
// packages' errors, *ParamError and *InternalError. No error text contains
// key material, plaintext or circuit inputs, and nothing here logs them.
package intake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/internal/request"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

// Store is the part of the proofs table the frontend uses (*store.Store).
type Store interface {
	Insert(ctx context.Context, r store.Request) error
	Exists(ctx context.Context, id string) (bool, error)
	Get(ctx context.Context, id string) (store.Proof, error)
	Delete(ctx context.Context, id string) error
	MarkFailed(ctx context.Context, id, reason string) (bool, error)
	CancelHash(ctx context.Context, id string) ([]byte, status.Code, error)
}

// BatchStore is the batched part of *store.Store. When Deps.Store has it,
// concurrent hellos look their uuids up, and concurrent submits record
// their rows, in shared round trips (a group commit without a timer: a lone
// call runs at once and alone; see group). Every call keeps its own
// outcome, and a submit is still answered only after its own row is
// committed and its own job is enqueued.
type BatchStore interface {
	InsertBatch(ctx context.Context, rs []store.Request) []error
	Recorded(ctx context.Context, ids []string) (map[string]bool, error)
}

// Queue enqueues jobs (*jobqueue.Publisher). Publish and Republish
// return jobqueue.ErrNotQueued (or ErrQueueFull) when the job is certainly
// not queued, jobqueue.ErrDuplicate, or another error when the outcome is
// unknown; Queued asks the stream whether it holds a request's job.
type Queue interface {
	Publish(ctx context.Context, env job.Envelope) error
	Republish(ctx context.Context, env job.Envelope, round int) error
	Queued(ctx context.Context, f family.Family, requestID string) (bool, error)
}

// Events carries status and cancel announcements (*jobqueue.Events).
type Events interface {
	PublishStatus(ctx context.Context, ev job.StatusEvent) error
	SubscribeStatus(requestID string, fn func(job.StatusEvent)) (unsubscribe func(), err error)
	PublishCancel(ctx context.Context, requestID string) error
}

// Sealer seals circuit inputs with the fleet key (*job.Sealer).
type Sealer interface {
	Seal(requestID string, inputs []byte) ([]byte, error)
}

// Deps are the service's collaborators; all are required.
type Deps struct {
	Sessions  *handshake.Sessions
	Validator *request.Validator
	Attester  attest.Attester
	Store     Store
	Queue     Queue
	Events    Events
	Sealer    Sealer
	Logger    *slog.Logger
}

// Config tunes the service.
type Config struct {
	// RecordTimeout bounds recording and enqueueing one submit; the steps
	// run detached from the caller's cancellation so a client that hangs up
	// mid-submit leaves either a recorded request with its sealed job or
	// nothing (default 15 s).
	RecordTimeout time.Duration
	// CompensateTimeout bounds the removal of a row whose job could not be
	// enqueued (default 5 s).
	CompensateTimeout time.Duration
	// QueryTimeout bounds the database work of a hello (the lookup of a
	// recorded uuid), a status read (and a subscription's first) and a
	// cancel (its reads, its write and its events), so that a stalled
	// Postgres fails them instead of holding the client's socket and a
	// pool connection (default 10 s).
	QueryTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// StoreBatches is how many batched round trips of one kind (lookups,
	// inserts) may run at once when the Store is a BatchStore (default 1,
	// as Postgres's own group commit: in the frontend bench's 64 clients
	// on a shared 2-core machine, one slot cut Postgres's CPU per pair by
	// a fifth to a half depending on the load, two slots (batches of about
	// 3) by less); MaxBatch bounds the calls in one (default 128). Calls
	// that arrive while all are running share the next one.
	StoreBatches int
	MaxBatch     int
	// MaxBatchBytes bounds the sealed inputs one batched insert carries
	// (default 16 MiB; a batch always takes at least one request).
	MaxBatchBytes int
	// NoBatching makes every lookup and insert its own round trip even
	// when the Store is a BatchStore.
	NoBatching bool
}

// Service implements the frontend's methods. Safe for concurrent use.
type Service struct {
	d   Deps
	cfg Config
	log *slog.Logger

	// inserts and lookups group the Store's round trips; nil when the
	// Store is not a BatchStore (or NoBatching).
	inserts *group[store.Request, struct{}]
	lookups *group[string, bool]
}

// New checks deps and cfg.
func New(d Deps, cfg Config) (*Service, error) {
	switch {
	case d.Sessions == nil:
		return nil, errors.New("intake: Deps.Sessions is nil")
	case d.Validator == nil:
		return nil, errors.New("intake: Deps.Validator is nil")
	case d.Attester == nil:
		return nil, errors.New("intake: Deps.Attester is nil")
	case d.Store == nil:
		return nil, errors.New("intake: Deps.Store is nil")
	case d.Queue == nil:
		return nil, errors.New("intake: Deps.Queue is nil")
	case d.Events == nil:
		return nil, errors.New("intake: Deps.Events is nil")
	case d.Sealer == nil:
		return nil, errors.New("intake: Deps.Sealer is nil")
	case d.Logger == nil:
		return nil, errors.New("intake: Deps.Logger is nil")
	case cfg.RecordTimeout < 0 || cfg.CompensateTimeout < 0 || cfg.QueryTimeout < 0:
		return nil, errors.New("intake: timeouts must not be negative")
	case cfg.StoreBatches < 0 || cfg.MaxBatch < 0 || cfg.MaxBatchBytes < 0:
		return nil, errors.New("intake: StoreBatches, MaxBatch and MaxBatchBytes must not be negative")
	}
	if cfg.StoreBatches == 0 {
		cfg.StoreBatches = 1
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 128
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = 16 << 20
	}
	if cfg.RecordTimeout == 0 {
		cfg.RecordTimeout = 15 * time.Second
	}
	if cfg.CompensateTimeout == 0 {
		cfg.CompensateTimeout = 5 * time.Second
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{d: d, cfg: cfg, log: d.Logger.With("component", "intake")}
	if bs, ok := d.Store.(BatchStore); ok && !cfg.NoBatching {
		s.inserts = newGroup(cfg.StoreBatches, cfg.MaxBatch, func(ctx context.Context, rs []store.Request) ([]struct{}, []error) {
			return make([]struct{}, len(rs)), bs.InsertBatch(ctx, rs)
		})
		// Each row carries its job's sealed inputs (up to megabytes): a
		// batch stops growing past MaxBatchBytes of them, far below what
		// one statement may carry.
		s.inserts.weigh = func(r store.Request) int { return len(r.Sealed) }
		s.inserts.maxWeight = cfg.MaxBatchBytes
		s.lookups = newGroup(cfg.StoreBatches, cfg.MaxBatch, func(ctx context.Context, ids []string) ([]bool, []error) {
			found, err := bs.Recorded(ctx, ids)
			out, errs := make([]bool, len(ids)), make([]error, len(ids))
			for i, id := range ids {
				var ok bool
				switch out[i], ok = found[id]; {
				case err != nil:
					errs[i] = err
				case !ok:
					errs[i] = fmt.Errorf("%w: %q", store.ErrBadID, id)
				}
			}
			return out, errs
		})
	}
	return s, nil
}

// insert records r, in a batch when the Store allows.
func (s *Service) insert(ctx context.Context, r store.Request) error {
	if s.inserts == nil {
		return s.d.Store.Insert(ctx, r)
	}
	_, err := s.inserts.do(ctx, r)
	return err
}

// pendingLookup is a lookup of whether a uuid is recorded: queued in a
// batch when the Store allows (wait runs it if no other caller's batch
// took it meanwhile), else one round trip when waited for.
type pendingLookup struct {
	s    *Service
	ctx  context.Context
	id   string
	call *groupCall[string, bool] // nil without batching
}

func (s *Service) lookup(ctx context.Context, id string) pendingLookup {
	p := pendingLookup{s: s, ctx: ctx, id: id}
	if s.lookups != nil {
		p.call = s.lookups.enqueue(ctx, id)
	}
	return p
}

// wait returns whether the uuid is recorded.
func (p pendingLookup) wait() (bool, error) {
	if p.call == nil {
		return p.s.d.Store.Exists(p.ctx, p.id)
	}
	return p.s.lookups.await(p.call)
}

// abandon drops a lookup that will not be waited for.
func (p pendingLookup) abandon() {
	if p.call != nil {
		p.s.lookups.abandon(p.call)
	}
}

// Errors the transport maps to the app's messages.
var (
	// ErrBadUUID: the uuid param is not a UUID.
	ErrBadUUID = errors.New("uuid is not a UUID")
	// ErrExists: the uuid has a live session or a recorded request.
	ErrExists = errors.New("uuid already exists")
	// ErrNotFound: the uuid has no session (submit) or no recorded request.
	ErrNotFound = errors.New("uuid not found")
	// ErrNotSubmitter: a cancel whose token is not the one the request's
	// submitter can derive (or the request was recorded without one).
	ErrNotSubmitter = errors.New("the cancel token is not the submitter's")
)

// ParamError is a param the method cannot use (for example an attestation
// field over the app's size limit).
type ParamError struct {
	Param  string
	Reason string
}

func (e *ParamError) Error() string { return fmt.Sprintf("param %q: %s", e.Param, e.Reason) }

// InternalError is a failure of this service or its infrastructure. Public
// is what the client is told; Err (logged, never sent) is the cause.
type InternalError struct {
	Public string
	Err    error
}

func (e *InternalError) Error() string { return e.Public + ": " + e.Err.Error() }
func (e *InternalError) Unwrap() error { return e.Err }

// Public messages of internal errors.
const (
	msgLookup   = "Could not look up the request, retry later"
	msgAttest   = "Could not produce an attestation document, retry later"
	msgRecord   = "Could not record the proof request, retry with a new hello"
	msgEnqueue  = "Could not queue the proof request, retry with a new hello"
	msgFull     = "The proof queue is full, retry later with a new hello"
	msgCancel   = "Could not cancel the request, retry later"
	msgInternal = "Internal error"
)

// ParseUUID checks a uuid param and returns it lowercase and hyphenated.
func ParseUUID(s string) (string, error) {
	u, err := uuid.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", ErrBadUUID
	}
	return u.String(), nil
}

// Hello opens a handshake session for id with the client's key and returns
// the normalized uuid and an attestation binding the client's key and the
// session's server key. A Nitro document binds the client's key as
// received (user_data) and the server key uncompressed (public_key, 65
// bytes); a Confidential Space token binds both keys compressed (eat_nonce
// [base64(client), base64(server)], 33 bytes each), whichever form the
// client sent. src is the client's source (api/internal/admission; the
// zero Prefix when unknown), whose share of the session table is checked
// before anything costly is done: handshake.ErrBusy,
// handshake.ErrSourceBusy.
func (s *Service) Hello(ctx context.Context, src netip.Prefix, id string, clientKey []byte) (protocol.HelloResult, error) {
	key, err := handshake.ParseClientKey(clientKey)
	if err != nil {
		return protocol.HelloResult{}, err
	}
	id, err = ParseUUID(id)
	if err != nil {
		return protocol.HelloResult{}, err
	}
	// A hello the table would refuse now costs no key, no ECDH and no
	// database round trip (Begin checks again).
	switch err := s.d.Sessions.Admit(id, src); {
	case errors.Is(err, handshake.ErrExists):
		return protocol.HelloResult{}, fmt.Errorf("%w: %w", ErrExists, err)
	case err != nil:
		return protocol.HelloResult{}, err
	}
	// The lookup of a recorded request is a database round trip and the
	// attestation a signature: the lookup is queued first, so that a batch
	// run by another caller can take it while this one signs, and a
	// session whose uuid turns out to be recorded is aborted before
	// anything about it is sent.
	lctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	found := s.lookup(lctx, id)
	serverKey, err := s.d.Sessions.Begin(id, src, key)
	switch {
	case errors.Is(err, handshake.ErrExists):
		found.abandon()
		return protocol.HelloResult{}, fmt.Errorf("%w: %w", ErrExists, err)
	case err != nil:
		found.abandon()
		return protocol.HelloResult{}, err
	}
	doc, attErr := s.d.Attester.Attest(ctx, helloRequest(s.d.Attester.Format(), clientKey, serverKey))
	recorded, lookErr := found.wait()
	switch {
	case lookErr != nil:
		s.d.Sessions.Abort(id)
		return protocol.HelloResult{}, &InternalError{Public: msgLookup, Err: lookErr}
	case recorded:
		s.d.Sessions.Abort(id)
		return protocol.HelloResult{}, fmt.Errorf("%w: request is recorded", ErrExists)
	case attErr != nil:
		s.d.Sessions.Abort(id)
		return protocol.HelloResult{}, &InternalError{Public: msgAttest, Err: attErr}
	}
	s.log.DebugContext(ctx, "session opened", "request_id", id)
	return protocol.HelloResult{UUID: id, Attestation: doc}, nil
}

// helloRequest is what a hello's attestation binds in each format.
func helloRequest(f attest.Format, clientKey, serverKey []byte) attest.Request {
	if f != attest.FormatGCP {
		return attest.Request{UserData: clientKey, PublicKey: serverKey}
	}
	// Both keys are P-256 points here (parsed, or made by Sessions).
	client, _ := attest.CompressP256(clientKey)
	server, _ := attest.CompressP256(serverKey)
	return attest.Request{UserData: client, PublicKey: server}
}

// Attestation returns an attestation over the given fields: a Nitro
// document, or a Confidential Space token whose eat_nonce holds the
// non-empty fields in base64 (each 7..54 bytes).
func (s *Service) Attestation(ctx context.Context, req attest.Request) ([]byte, error) {
	for _, f := range []struct {
		name string
		n    int
		max  int
	}{
		{"user_data", len(req.UserData), attest.MaxUserDataLen},
		{"nonce", len(req.Nonce), attest.MaxNonceLen},
		{"public_key", len(req.PublicKey), attest.MaxPublicKeyLen},
	} {
		if f.n > f.max {
			return nil, &ParamError{Param: f.name, Reason: fmt.Sprintf("is %d bytes, at most %d allowed", f.n, f.max)}
		}
	}
	doc, err := s.d.Attester.Attest(ctx, req)
	if errors.Is(err, attest.ErrNonceField) {
		return nil, &ParamError{Param: "user_data, public_key, nonce", Reason: strings.TrimPrefix(err.Error(), "attest: ")}
	}
	if err != nil {
		return nil, &InternalError{Public: msgAttest, Err: err}
	}
	return doc, nil
}

// Submit is the session's one submit: it decrypts the request, checks it,
// records the proofs row (status 0) and enqueues the sealed job. It returns
// the uuid once both are done.
func (s *Service) Submit(ctx context.Context, id string, nonce, ciphertext, tag []byte) (string, error) {
	id, err := ParseUUID(id)
	if err != nil {
		return "", err
	}
	plain, cancelHash, err := s.d.Sessions.Open(id, nonce, ciphertext, tag)
	switch {
	case errors.Is(err, handshake.ErrNotFound):
		return "", fmt.Errorf("%w: %w", ErrNotFound, err)
	case err != nil:
		return "", err
	}
	req, err := request.Parse(plain)
	clear(plain)
	if err != nil {
		return "", err
	}
	defer clear(req.Inputs)
	log := requestLog{l: s.log, id: id, family: req.Type.Family(), circuit: req.Circuit}
	if err := s.d.Validator.Validate(req); err != nil {
		log.log(ctx, slog.LevelInfo, "request refused", "reason", err.Error())
		return "", err
	}
	sealed, err := s.d.Sealer.Seal(id, req.Inputs)
	if err != nil {
		return "", &InternalError{Public: msgInternal, Err: err}
	}

	start := s.cfg.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RecordTimeout)
	defer cancel()
	env := job.Envelope{
		RequestID:  id,
		ProofType:  req.Type,
		Circuit:    req.Circuit,
		EnqueuedAt: start.UTC(),
		Sealed:     sealed,
	}
	err = s.insert(ctx, store.Request{
		ID:              id,
		ProofType:       req.Type,
		Circuit:         req.Circuit,
		Onchain:         req.Onchain,
		EndpointType:    req.EndpointType,
		Endpoint:        req.Endpoint,
		Version:         req.Version,
		UserDefinedData: req.UserDefinedData,
		SelfDefinedData: req.SelfDefinedData,
		Sealed:          sealed,
		CancelHash:      cancelHash,
	})
	switch {
	case errors.Is(err, store.ErrExists):
		return "", fmt.Errorf("%w: %w", ErrExists, err)
	case err != nil:
		log.log(ctx, slog.LevelError, "record failed", "err", err)
		return "", &InternalError{Public: msgRecord, Err: err}
	}
	err = s.enqueue(ctx, log, env)
	switch {
	case err == nil:
	case errors.Is(err, jobqueue.ErrNotQueued):
		log.log(ctx, slog.LevelError, "enqueue failed, removing the row", "err", err)
		s.compensate(ctx, log, id)
		public := msgEnqueue
		if errors.Is(err, jobqueue.ErrQueueFull) {
			public = msgFull
		}
		return "", &InternalError{Public: public, Err: err}
	default:
		// Unknown outcome: see the package doc. The row and its sealed job
		// stay; the job is on the stream, reaches it later, or is
		// published again by the reconciler.
		log.log(ctx, slog.LevelWarn, "enqueue not confirmed; the request is kept with its sealed job and is queued again if the job was lost", "err", err)
	}
	if log.l.Enabled(ctx, slog.LevelInfo) {
		log.log(ctx, slog.LevelInfo, "request accepted", "proof_type", string(req.Type),
			"duration_ms", s.cfg.Now().Sub(start).Milliseconds())
	}
	return id, nil
}

// enqueue publishes env. A "duplicate" answer is checked against the
// stream, and the job is published again under a fresh message id when the
// stream does not hold it. It returns nil once the stream holds the job, a
// jobqueue.ErrNotQueued when it certainly does not, and another error when
// that is unknown.
func (s *Service) enqueue(ctx context.Context, log requestLog, env job.Envelope) error {
	err := s.d.Queue.Publish(ctx, env)
	if !errors.Is(err, jobqueue.ErrDuplicate) {
		return err
	}
	queued, qerr := s.d.Queue.Queued(ctx, env.Family(), env.RequestID)
	switch {
	case qerr != nil:
		return fmt.Errorf("%w; and the stream could not be asked: %w", err, qerr)
	case queued:
		// An earlier publish of this very job whose acknowledgement was
		// lost: it is this request's.
		log.log(ctx, slog.LevelInfo, "job was already enqueued", "err", err)
		return nil
	}
	log.log(ctx, slog.LevelWarn, "a job with this id was published earlier and is no longer queued; publishing it again", "err", err)
	return s.d.Queue.Republish(ctx, env, 0)
}

// requestLog logs about one submitted request. Its attributes are added
// only when a record is written: slog's With formats them at once, which
// every submit paid for whatever the level.
type requestLog struct {
	l       *slog.Logger
	id      string
	family  family.Family
	circuit string
}

func (r requestLog) log(ctx context.Context, level slog.Level, msg string, args ...any) {
	if !r.l.Enabled(ctx, level) {
		return
	}
	r.l.With("request_id", r.id, "family", r.family, "circuit", r.circuit).Log(ctx, level, msg, args...)
}

// compensate removes the row of a request whose job is certainly not
// queued, so the uuid is free for a retry.
func (s *Service) compensate(ctx context.Context, log requestLog, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CompensateTimeout)
	defer cancel()
	if err := s.d.Store.Delete(ctx, id); err != nil {
		log.log(ctx, slog.LevelError, "could not remove the row of an unqueued request; it stays pending without a job", "err", err)
	}
}

// Status reads a recorded request.
func (s *Service) Status(ctx context.Context, id string) (protocol.Status, error) {
	id, err := ParseUUID(id)
	if err != nil {
		return protocol.Status{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	return s.get(ctx, id)
}

// get reads id's row; its callers bound it (QueryTimeout, or a Watch's
// reread timeout).
func (s *Service) get(ctx context.Context, id string) (protocol.Status, error) {
	p, err := s.d.Store.Get(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return protocol.Status{}, fmt.Errorf("%w: %w", ErrNotFound, err)
	case err != nil:
		return protocol.Status{}, &InternalError{Public: msgLookup, Err: err}
	}
	return StatusOf(p), nil
}

// StatusOf converts a row to its wire form.
func StatusOf(p store.Proof) protocol.Status {
	st := protocol.Status{
		UUID:               p.ID,
		Status:             p.Status,
		ProofType:          p.ProofType.Code(),
		CircuitName:        p.Circuit,
		CreatedAt:          p.CreatedAt.UTC(),
		WitnessGeneratedAt: utc(p.WitnessGeneratedAt),
		ProofGeneratedAt:   utc(p.ProofGeneratedAt),
	}
	if p.Reason != "" {
		r := p.Reason
		st.Reason = &r
	}
	if st.Terminal() && len(p.Proof) > 0 {
		st.Proof = p.Proof
		st.PublicInputs = p.PublicInputs
	}
	return st
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Cancel marks a request that is not terminal yet as failed with reason
// "cancelled" and announces it, so a worker running it stops. Only the
// submitter can: token must be the request's cancel token
// (handshake.CancelToken, derived from the session's shared key), else
// ErrNotSubmitter, whatever the request's status. Cancelling a terminal
// request changes nothing and reports Cancelled false.
func (s *Service) Cancel(ctx context.Context, id string, token []byte) (protocol.CancelResult, error) {
	id, err := ParseUUID(id)
	if err != nil {
		return protocol.CancelResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	hash, st, err := s.d.Store.CancelHash(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return protocol.CancelResult{}, fmt.Errorf("%w: %w", ErrNotFound, err)
	case err != nil:
		return protocol.CancelResult{}, &InternalError{Public: msgLookup, Err: err}
	}
	if !handshake.CheckCancelToken(hash, token) {
		s.log.InfoContext(ctx, "cancel refused: not the submitter", "request_id", id, "row_has_hash", len(hash) > 0)
		return protocol.CancelResult{}, ErrNotSubmitter
	}
	if st.Terminal() {
		return protocol.CancelResult{UUID: id, Cancelled: false, Status: st}, nil
	}
	changed, err := s.d.Store.MarkFailed(ctx, id, protocol.CancelReason)
	if err != nil {
		return protocol.CancelResult{}, &InternalError{Public: msgCancel, Err: err}
	}
	if !changed {
		st, err := s.get(ctx, id)
		if err != nil {
			return protocol.CancelResult{}, err
		}
		return protocol.CancelResult{UUID: id, Cancelled: false, Status: st.Status}, nil
	}
	log := s.log.With("request_id", id)
	log.InfoContext(ctx, "request cancelled")
	// The row is the truth and is already failed; the events only make a
	// running worker stop early and subscribers hear about it now.
	if err := s.d.Events.PublishCancel(ctx, id); err != nil {
		log.WarnContext(ctx, "cancel event not published", "err", err)
	}
	ev := job.FailedEvent(id, protocol.CancelReason, s.cfg.Now())
	if err := s.d.Events.PublishStatus(ctx, ev); err != nil {
		log.WarnContext(ctx, "status event not published", "err", err)
	}
	return protocol.CancelResult{UUID: id, Cancelled: true, Status: status.Failed}, nil
}

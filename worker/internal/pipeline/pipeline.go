// Package pipeline does one proof job: claim the status row, open the sealed
// circuit inputs into a private directory, compute the witness, prove,
// verify the proof against the circuit's verification key, and record the
// result. It returns typed errors (see package outcome); it never
// acknowledges a message itself.
//
// Status writes are guarded compare-and-sets, and each one that changes the
// row is announced with a status event that carries what the write left in
// the row (job.StatusRow), so the frontend passes it on without reading the
// row: 0 → 1 after the witness, with its time; 1 → 2 with the proof
// (exactly the bytes the prover wrote, as stored), its public signals and
// both times.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/store"
	"github.com/openpassport/prover-fleet/worker/internal/outcome"
	"github.com/openpassport/prover-fleet/worker/internal/prover"
	"github.com/openpassport/prover-fleet/worker/internal/verifier"
	"github.com/openpassport/prover-fleet/worker/internal/witness"
)

// Store is the part of the status store a job writes.
type Store interface {
	Claim(ctx context.Context, id, workerID string, attempt int) (store.Proof, error)
	MarkWitnessGenerated(ctx context.Context, id string) (*store.Stamps, error)
	MarkProofGenerated(ctx context.Context, id string, proof json.RawMessage, public []string) (*store.Stamps, error)
}

// Events announces status changes.
type Events interface {
	PublishStatus(ctx context.Context, ev job.StatusEvent) error
}

// Opener opens sealed circuit inputs (a *job.Sealer).
type Opener interface {
	Open(requestID string, sealed []byte) ([]byte, error)
}

// Dirs makes and removes private job directories (a *workdir.Root).
type Dirs interface {
	Job() (string, error)
	Remove(dir string) error
}

// Witness computes a witness: input and output are absolute paths in dir.
type Witness interface {
	Generate(ctx context.Context, circuit, dir, input, output string) error
}

// Prover proves a witness: all paths absolute, in dir.
type Prover interface {
	Prove(ctx context.Context, circuit, dir, wtns, proof, public string) error
}

// Verifier checks a proof file and a public signals file.
type Verifier interface {
	Verify(ctx context.Context, circuit, proof, public string) error
}

// Deps are what a Pipeline works with.
type Deps struct {
	Store    Store
	Events   Events
	Opener   Opener
	Dirs     Dirs
	Witness  Witness
	Prover   Prover
	Verifier Verifier
	Logger   *slog.Logger
}

// Config configures a Pipeline.
type Config struct {
	// WorkerID is recorded on the rows this worker claims.
	WorkerID string
}

// Pipeline runs jobs. It is safe for concurrent use.
type Pipeline struct {
	d   Deps
	cfg Config
}

// New checks deps and cfg.
func New(d Deps, cfg Config) (*Pipeline, error) {
	switch {
	case d.Store == nil:
		return nil, errors.New("pipeline: Deps.Store is nil")
	case d.Events == nil:
		return nil, errors.New("pipeline: Deps.Events is nil")
	case d.Opener == nil:
		return nil, errors.New("pipeline: Deps.Opener is nil")
	case d.Dirs == nil:
		return nil, errors.New("pipeline: Deps.Dirs is nil")
	case d.Witness == nil:
		return nil, errors.New("pipeline: Deps.Witness is nil")
	case d.Prover == nil:
		return nil, errors.New("pipeline: Deps.Prover is nil")
	case d.Verifier == nil:
		return nil, errors.New("pipeline: Deps.Verifier is nil")
	case d.Logger == nil:
		return nil, errors.New("pipeline: Deps.Logger is nil")
	case cfg.WorkerID == "":
		return nil, errors.New("pipeline: Config.WorkerID is empty")
	}
	return &Pipeline{d: d, cfg: cfg}, nil
}

// File names inside a job directory.
const (
	InputFile   = "input.json"
	WitnessFile = "witness.wtns"
	ProofFile   = "proof.json"
	PublicFile  = "public.json"
)

// Run does the job env on its delivery attempt. It returns nil once the
// verified proof is recorded (status 2), outcome.ErrAlreadyDone when the row
// is already terminal, an outcome.Reject error for a bad job, and any other
// error for trouble worth a retry. The private directory is removed before
// Run returns.
func (p *Pipeline) Run(ctx context.Context, env job.Envelope, attempt int) error {
	log := p.d.Logger.With("request_id", env.RequestID, "circuit", env.Circuit, "attempt", attempt)
	if !circuitdir.ValidName(env.Circuit) { // it becomes a path element
		return outcome.Reject("invalid circuit name", nil)
	}

	row, err := p.d.Store.Claim(ctx, env.RequestID, p.cfg.WorkerID, attempt)
	switch {
	case errors.Is(err, store.ErrBadID):
		return outcome.Reject("request id is not a UUID", err)
	case errors.Is(err, store.ErrNotFound):
		// A job without its row. The frontend records the row (with the
		// job's sealed inputs) before it publishes, and removes it again
		// only when the publish certainly failed, so this job should not
		// exist; it does when that certainty was wrong, when retention
		// removed the finished row of a job published twice, or when the
		// database lost a committed row (a failover to a replica that had
		// not received it, a restore). In the first and the last case the
		// row may still appear (a replica catching up), so the job is not
		// dropped at once: it is retried with backoff like any transient
		// trouble and given up only on its last delivery (there is no row
		// to record that in). Should the row appear after that, it is an
		// open row without a job, and the reconciler publishes the job
		// again from the sealed inputs stored with it. Nothing is lost by
		// waiting: no work is done for a job without its row.
		return outcome.Retry("no proof request is recorded under this id", err)
	case err != nil:
		// The store answered with an error: a store that does not answer is
		// waited for (worker/internal/storegate) and never gets here while
		// the job runs.
		return outcome.Retry("database error", err)
	case row.Status.Terminal():
		log.Debug("row already terminal", "status", row.Status.String())
		return outcome.ErrAlreadyDone
	case row.Circuit != "" && row.Circuit != env.Circuit:
		return outcome.Reject("job circuit does not match the recorded request", nil)
	}

	inputs, err := p.d.Opener.Open(env.RequestID, env.Sealed)
	if err != nil {
		// Not Reject: a worker holding a stale fleet key must hand the job
		// to one holding the right key. A tampered blob gives up after
		// MaxDeliver.
		return outcome.Retry("sealed circuit inputs do not open with this worker's fleet key", err)
	}
	defer clear(inputs)
	if !json.Valid(inputs) {
		return outcome.Reject("circuit inputs are not valid JSON", nil)
	}

	dir, err := p.d.Dirs.Job()
	if err != nil {
		return outcome.Retry("no private work directory", err)
	}
	defer func() {
		if err := p.d.Dirs.Remove(dir); err != nil {
			log.Error("remove job dir", "err", err)
		}
	}()
	var (
		input  = filepath.Join(dir, InputFile)
		wtns   = filepath.Join(dir, WitnessFile)
		proof  = filepath.Join(dir, ProofFile)
		public = filepath.Join(dir, PublicFile)
	)
	if err := writePrivate(input, inputs); err != nil {
		return outcome.Retry("could not write circuit inputs", err)
	}
	clear(inputs)

	t0 := time.Now()
	err = p.d.Witness.Generate(ctx, env.Circuit, dir, input, wtns)
	_ = os.Remove(input) // plaintext: gone as soon as it is consumed
	switch {
	case errors.Is(err, witness.ErrRejected):
		var rej *witness.RejectedError
		reason := "witness generation rejected the input"
		if errors.As(err, &rej) && rej.Said != "" {
			reason += ": " + rej.Said
		}
		return outcome.Reject(reason, err)
	case errors.Is(err, witness.ErrNoCircuit):
		return outcome.Retry("circuit not installed on this worker", err)
	case err != nil:
		return outcome.Retry("witness generation failed: "+err.Error(), err)
	}
	log.Debug("witness generated", "duration_ms", ms(time.Since(t0)))

	// The witness-generated write and its event go on while the prover
	// runs: neither needs the other, and the proof is only recorded once
	// the write has returned, so the row and the events still go 0 → 1 → 2
	// in that order.
	marked := make(chan error, 1)
	go func() { marked <- p.markWitnessGenerated(ctx, log, env.RequestID) }()

	t0 = time.Now()
	err = p.d.Prover.Prove(ctx, env.Circuit, dir, wtns, proof, public)
	_ = os.Remove(wtns)
	markErr := <-marked
	switch {
	case errors.Is(err, prover.ErrNoKey):
		return outcome.Retry("proving key not installed on this worker", err)
	case err != nil:
		return outcome.Retry("proving failed: "+err.Error(), err)
	case markErr != nil:
		return outcome.Retry("database error", markErr)
	}
	log.Debug("proof generated", "duration_ms", ms(time.Since(t0)))

	t0 = time.Now()
	err = p.d.Verifier.Verify(ctx, env.Circuit, proof, public)
	switch {
	case errors.Is(err, verifier.ErrInvalid):
		return outcome.Retry("proof does not verify", err)
	case err != nil:
		return outcome.Retry("proof verification could not run: "+err.Error(), err)
	}
	log.Debug("proof verified", "duration_ms", ms(time.Since(t0)))

	proofJSON, signals, err := readResult(proof, public)
	if err != nil {
		return outcome.Retry("prover output unreadable: "+err.Error(), err)
	}
	stamps, err := p.d.Store.MarkProofGenerated(ctx, env.RequestID, proofJSON, signals)
	if err != nil {
		return outcome.Retry("database error", err)
	}
	if stamps == nil {
		log.Info("proof discarded: row became terminal while proving")
		return outcome.ErrAlreadyDone
	}
	// The event carries the times exactly as the write left them in the
	// row, so a pushed status equals a polled one.
	p.announce(ctx, log, job.ProofGeneratedEvent(env.RequestID, &stamps.WitnessGeneratedAt, *stamps.ProofGeneratedAt, proofJSON, signals))
	return nil
}

// markWitnessGenerated moves the row to witness generated and announces it,
// with the witness time the write stored, when it changed.
func (p *Pipeline) markWitnessGenerated(ctx context.Context, log *slog.Logger, id string) error {
	stamps, err := p.d.Store.MarkWitnessGenerated(ctx, id)
	if err != nil || stamps == nil {
		return err
	}
	p.announce(ctx, log, job.WitnessGeneratedEvent(id, stamps.WitnessGeneratedAt))
	return nil
}

// announce publishes a status event; events are hints, so a failure is
// logged and the job goes on.
func (p *Pipeline) announce(ctx context.Context, log *slog.Logger, ev job.StatusEvent) {
	if err := p.d.Events.PublishStatus(ctx, ev); err != nil {
		log.Warn("status event not published", "status", int(ev.Status), "err", err)
	}
}

// writePrivate writes a new private file. It is not synced: the file is
// plaintext that lives only until the witness generator has read it, and
// after a crash the job directory is discarded and the job redelivered
// from the queue with its sealed inputs, so a flush to disk would buy
// nothing but a disk write of plaintext (and about a millisecond and a half
// per job on an ext4 virtual disk).
func writePrivate(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readResult reads the proof exactly as written and the public signals.
func readResult(proofPath, publicPath string) (json.RawMessage, []string, error) {
	proof, err := os.ReadFile(proofPath)
	if err != nil {
		return nil, nil, err
	}
	if !json.Valid(proof) {
		return nil, nil, fmt.Errorf("%s is not JSON", ProofFile)
	}
	raw, err := os.ReadFile(publicPath)
	if err != nil {
		return nil, nil, err
	}
	var signals []string
	if err := json.Unmarshal(raw, &signals); err != nil {
		return nil, nil, fmt.Errorf("%s is not a JSON array of strings: %w", PublicFile, err)
	}
	return json.RawMessage(proof), signals, nil
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

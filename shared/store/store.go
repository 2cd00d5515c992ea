// Package store is the Postgres record of proof requests: the proofs table
// the downstream services read, written by the frontend (insert) and the
// workers (status transitions).
//
// Every transition is a compare-and-set keyed by request id
// (UPDATE … WHERE request_id = $1 AND status IN (…)), so a redelivered or
// duplicate job can never move a row backwards or overwrite a result. The
// Mark methods report whether they changed the row.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/status"
)

var (
	// ErrNotFound means no row has this request id.
	ErrNotFound = errors.New("store: request not found")
	// ErrExists means a row with this request id is already recorded.
	ErrExists = errors.New("store: request already recorded")
	// ErrBadID means the request id is not a UUID.
	ErrBadID = errors.New("store: request id is not a UUID")
)

// Request is what the frontend records for an accepted submission.
type Request struct {
	ID              string
	ProofType       family.ProofType
	Circuit         string
	Onchain         bool
	EndpointType    string
	Endpoint        string
	Version         int
	UserDefinedData string
	SelfDefinedData string
	// Sealed is the job's sealed circuit inputs (job.Sealer's output:
	// ciphertext under the fleet key), kept in proof_jobs while the request
	// is open so that a reconciler can publish a lost job again. Empty: the
	// row is recorded without them (and cannot be re-published).
	Sealed []byte
	// CancelHash is the SHA-256 of the request's cancel token (see
	// api/internal/handshake.CancelToken); nil leaves the row
	// uncancellable through the frontend.
	CancelHash []byte
}

// Proof is one row of the proofs table.
type Proof struct {
	ID                 string
	ProofType          family.ProofType
	Status             status.Code
	Circuit            string
	Onchain            bool
	EndpointType       string
	Endpoint           string
	Version            int
	CreatedAt          time.Time
	WitnessGeneratedAt *time.Time
	ProofGeneratedAt   *time.Time
	UpdatedAt          time.Time
	Proof              json.RawMessage
	PublicInputs       []string
	Reason             string
	Attempts           int
	WorkerID           string
}

// Store reads and writes the proofs table.
type Store struct{ pool *pgxpool.Pool }

// New returns a Store on pool. The pool is the caller's to close.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

func parseID(id string) (uuid.UUID, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%w: %q", ErrBadID, id)
	}
	return u, nil
}

// Insert records an accepted request with status pending, and its sealed
// inputs (when r has them) in the same statement.
func (s *Store) Insert(ctx context.Context, r Request) error {
	id, err := parseID(r.ID)
	if err != nil {
		return err
	}
	if r.ProofType.Code() < 0 {
		return fmt.Errorf("store: unknown proof type %q", r.ProofType)
	}
	args := []any{id, r.ProofType.Code(), r.Circuit, r.Onchain, r.EndpointType, r.Endpoint, r.Version,
		r.UserDefinedData, r.SelfDefinedData, r.CancelHash}
	query := insertProof
	if len(r.Sealed) > 0 {
		query = `WITH p AS (` + insertProof + ` RETURNING request_id)
		INSERT INTO proof_jobs (request_id, sealed_inputs) SELECT request_id, $11 FROM p`
		args = append(args, r.Sealed)
	}
	_, err = s.pool.Exec(ctx, query, args...)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("%w: %s", ErrExists, r.ID)
	}
	if err != nil {
		return fmt.Errorf("store: insert %s: %w", r.ID, err)
	}
	return nil
}

const insertProof = `
		INSERT INTO proofs (request_id, proof_type, status, circuit_name, onchain, endpoint_type,
		                    endpoint, version, user_defined_data, self_defined_data, cancel_hash)
		VALUES ($1, $2, 0, $3, $4, $5, $6, $7, $8, $9, $10)`

// Delete removes a request that was recorded but could not be enqueued, so
// that the client can retry with the same uuid. It only removes pending rows
// (and their sealed inputs with them). Call it only when the job is known
// not to be on the queue: a job that reaches a worker without its row is
// retried and finally dropped.
func (s *Store) Delete(ctx context.Context, id string) error {
	u, err := parseID(id)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM proofs WHERE request_id = $1 AND status = 0`, u); err != nil {
		return fmt.Errorf("store: delete %s: %w", id, err)
	}
	return nil
}

// Exists reports whether a request id is recorded.
func (s *Store) Exists(ctx context.Context, id string) (bool, error) {
	u, err := parseID(id)
	if err != nil {
		return false, err
	}
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM proofs WHERE request_id = $1)`, u).Scan(&ok); err != nil {
		return false, fmt.Errorf("store: exists %s: %w", id, err)
	}
	return ok, nil
}

// CancelHash reads the hash of a request's cancel token (nil when it was
// recorded without one) and its status.
func (s *Store) CancelHash(ctx context.Context, id string) ([]byte, status.Code, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, 0, err
	}
	var (
		hash []byte
		st   status.Code
	)
	err = s.pool.QueryRow(ctx, `SELECT cancel_hash, status FROM proofs WHERE request_id = $1`, u).Scan(&hash, &st)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	case err != nil:
		return nil, 0, fmt.Errorf("store: cancel hash %s: %w", id, err)
	}
	return hash, st, nil
}

// proofColumns are the columns scanProof reads, in its order.
const proofColumns = `request_id::text, proof_type, status, coalesce(circuit_name, ''), coalesce(onchain, false),
	       coalesce(endpoint_type, ''), coalesce(endpoint, ''), coalesce(version, 0), created_at,
	       witness_generated_at, proof_generated_at, updated_at, proof, public_inputs,
	       coalesce(reason, ''), attempts, coalesce(worker_id, '')`

const selectProof = `SELECT ` + proofColumns + ` FROM proofs WHERE request_id = $1`

// Get reads one row.
func (s *Store) Get(ctx context.Context, id string) (Proof, error) {
	u, err := parseID(id)
	if err != nil {
		return Proof{}, err
	}
	return scanProof(s.pool.QueryRow(ctx, selectProof, u), id)
}

func scanProof(row pgx.Row, id string) (Proof, error) {
	var (
		p    Proof
		code int16
		raw  []byte
	)
	err := row.Scan(&p.ID, &code, &p.Status, &p.Circuit, &p.Onchain, &p.EndpointType, &p.Endpoint,
		&p.Version, &p.CreatedAt, &p.WitnessGeneratedAt, &p.ProofGeneratedAt, &p.UpdatedAt, &raw,
		&p.PublicInputs, &p.Reason, &p.Attempts, &p.WorkerID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Proof{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Proof{}, fmt.Errorf("store: read %s: %w", id, err)
	}
	if len(raw) > 0 {
		p.Proof = json.RawMessage(raw)
	}
	p.ProofType, _ = family.ProofTypeFromCode(int(code))
	return p, nil
}

// claimProof updates a non-terminal row and returns it as updated; a row
// the guard leaves alone (a terminal one) is returned as it is. One
// statement, one round trip: the second branch reads the statement's
// snapshot, which is the row before the update, so it is only taken when
// the update matched nothing.
const claimProof = `
	WITH claimed AS (
		UPDATE proofs SET attempts = greatest(attempts, $2), worker_id = $3, heartbeat_at = now(), updated_at = now()
		WHERE request_id = $1 AND status IN (0, 1)
		RETURNING ` + proofColumns + `
	)
	SELECT * FROM claimed
	UNION ALL
	SELECT ` + proofColumns + ` FROM proofs
	WHERE request_id = $1 AND NOT EXISTS (SELECT 1 FROM claimed)`

// Claim records that workerID starts delivery attempt of a job and returns
// the row as it is now. It changes nothing on a terminal row, so the caller
// can see that the job is already done (or cancelled) and acknowledge it.
func (s *Store) Claim(ctx context.Context, id, workerID string, attempt int) (Proof, error) {
	u, err := parseID(id)
	if err != nil {
		return Proof{}, err
	}
	p, err := scanProof(s.pool.QueryRow(ctx, claimProof, u, attempt, workerID), id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Proof{}, fmt.Errorf("store: claim %s: %w", id, err)
	}
	return p, err
}

// Heartbeat refreshes heartbeat_at of a job a worker still holds.
func (s *Store) Heartbeat(ctx context.Context, id, workerID string) error {
	u, err := parseID(id)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `
		UPDATE proofs SET heartbeat_at = now() WHERE request_id = $1 AND worker_id = $2 AND status IN (0, 1)`,
		u, workerID); err != nil {
		return fmt.Errorf("store: heartbeat %s: %w", id, err)
	}
	return nil
}

func (s *Store) mark(ctx context.Context, id, what, query string, args ...any) (bool, error) {
	u, err := parseID(id)
	if err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, query, append([]any{u}, args...)...)
	if err != nil {
		return false, fmt.Errorf("store: mark %s %s: %w", id, what, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Stamps are the times a status write left in its row, exactly as
// Postgres stored them, for status events that must match a later read.
type Stamps struct {
	WitnessGeneratedAt time.Time
	// ProofGeneratedAt is nil after MarkWitnessGenerated.
	ProofGeneratedAt *time.Time
}

// MarkWitnessGenerated moves a pending row to witness generated. It returns
// the row's new times, or nil when the row was not pending.
func (s *Store) MarkWitnessGenerated(ctx context.Context, id string) (*Stamps, error) {
	return s.stamp(ctx, id, "witness generated", `
		UPDATE proofs SET status = 1, witness_generated_at = now(), heartbeat_at = now(), updated_at = now()
		WHERE request_id = $1 AND status = 0
		RETURNING witness_generated_at, proof_generated_at`)
}

// MarkProofGenerated stores a verified proof and its public inputs on a row
// that is not terminal yet. It returns the row's new times, or nil when the
// row was terminal already.
func (s *Store) MarkProofGenerated(ctx context.Context, id string, proof json.RawMessage, public []string) (*Stamps, error) {
	if !json.Valid(proof) {
		return nil, fmt.Errorf("store: mark %s proof generated: proof is not JSON", id)
	}
	if public == nil {
		public = []string{}
	}
	return s.stamp(ctx, id, "proof generated", `
		UPDATE proofs SET status = 2, proof = $2, public_inputs = $3,
		       witness_generated_at = coalesce(witness_generated_at, now()),
		       proof_generated_at = now(), reason = NULL, updated_at = now()
		WHERE request_id = $1 AND status IN (0, 1)
		RETURNING witness_generated_at, proof_generated_at`, string(proof), public)
}

// stamp runs a guarded status write that returns the row's times.
func (s *Store) stamp(ctx context.Context, id, what, query string, args ...any) (*Stamps, error) {
	u, err := parseID(id)
	if err != nil {
		return nil, err
	}
	var st Stamps
	err = s.pool.QueryRow(ctx, query, append([]any{u}, args...)...).Scan(&st.WitnessGeneratedAt, &st.ProofGeneratedAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("store: mark %s %s: %w", id, what, err)
	}
	return &st, nil
}

// MarkFailed records a terminal failure with its reason on a row that is not
// terminal yet.
func (s *Store) MarkFailed(ctx context.Context, id, reason string) (bool, error) {
	return s.mark(ctx, id, "failed", `
		UPDATE proofs SET status = 3, reason = $2, updated_at = now()
		WHERE request_id = $1 AND status IN (0, 1)`, reason)
}

// CleanupMode says what retention does with an old terminal row.
type CleanupMode int

const (
	// DeleteRows removes old terminal rows.
	DeleteRows CleanupMode = iota
	// StripProofs keeps the rows but clears proof and public inputs.
	StripProofs
)

// Cleanup applies retention to terminal rows last updated before cutoff and
// returns how many rows it touched. It works in batches so a large backlog
// does not hold one long transaction.
func (s *Store) Cleanup(ctx context.Context, cutoff time.Time, mode CleanupMode) (int64, error) {
	query := `DELETE FROM proofs WHERE request_id IN (
		SELECT request_id FROM proofs WHERE status >= 2 AND updated_at < $1 LIMIT 1000)`
	if mode == StripProofs {
		query = `UPDATE proofs SET proof = NULL, public_inputs = NULL WHERE request_id IN (
			SELECT request_id FROM proofs WHERE status >= 2 AND updated_at < $1
			AND (proof IS NOT NULL OR public_inputs IS NOT NULL) LIMIT 1000)`
	}
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, query, cutoff)
		if err != nil {
			return total, fmt.Errorf("store: cleanup: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 1000 {
			return total, nil
		}
	}
}

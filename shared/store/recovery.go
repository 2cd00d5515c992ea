package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/status"
)

// This file holds what keeps accepted requests from being stranded: telling
// a database that does not answer from one that refuses a statement, the
// open requests a reconciler looks at, the guarded re-queueing of one of
// them, and the lock that elects one reconciler per family.

// Unavailable reports whether err says that the database did not answer
// (connection refused or lost, a server shutting down or starting up, out
// of connections, a timeout) rather than that it refused the statement.
// The same call can succeed once the database is back; a worker stops
// taking jobs meanwhile instead of failing them. A cancelled ctx, a missing
// row or a bad id is not unavailability.
func Unavailable(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled),
		errors.Is(err, ErrNotFound), errors.Is(err, ErrExists), errors.Is(err, ErrBadID):
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch c := pgErr.Code; {
		case strings.HasPrefix(c, "08"), // connection exception
			strings.HasPrefix(c, "53"),               // insufficient resources: connections, disk, memory
			c == "57P01", c == "57P02", c == "57P03", // shutting down, crashed, starting up
			c == "58000", c == "58030": // system or I/O error
			return true
		}
		return false // the server answered and refused: a bug, not an outage
	}
	return true // no answer at all: dial, I/O, timeout, closed pool
}

// OpenJob is an open request (status 0 or 1) whose sealed inputs are kept,
// as a reconciler sees it.
type OpenJob struct {
	ID          string
	ProofType   family.ProofType
	Status      status.Code
	Circuit     string
	CreatedAt   time.Time
	Attempts    int
	HeartbeatAt *time.Time
	// Requeues is how often a reconciler has published the job again.
	Requeues   int
	RequeuedAt *time.Time
}

// Cursor is where a scan of open jobs resumes: after the job created at
// CreatedAt with id ID. The zero Cursor starts at the oldest.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// OpenJobs lists up to limit open requests of the given proof types whose
// sealed inputs are kept, created (and last re-queued) before settled,
// after the cursor, oldest first. Requests recorded without sealed inputs
// (before migration 00003) are not listed.
func (s *Store) OpenJobs(ctx context.Context, types []family.ProofType, settled time.Time, after Cursor, limit int) ([]OpenJob, error) {
	codes := make([]int16, 0, len(types))
	for _, t := range types {
		if t.Code() < 0 {
			return nil, fmt.Errorf("store: unknown proof type %q", t)
		}
		codes = append(codes, int16(t.Code()))
	}
	afterAt, afterID := after.CreatedAt, "00000000-0000-0000-0000-000000000000"
	if after.ID != "" {
		u, err := parseID(after.ID)
		if err != nil {
			return nil, err
		}
		afterID = u.String()
	}
	if afterAt.IsZero() {
		afterAt = time.Unix(0, 0)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT p.request_id::text, p.proof_type, p.status, coalesce(p.circuit_name, ''), p.created_at,
		       p.attempts, p.heartbeat_at, j.requeues, j.requeued_at
		FROM proofs p JOIN proof_jobs j ON j.request_id = p.request_id
		WHERE p.status IN (0, 1) AND p.proof_type = ANY($1) AND p.created_at < $2
		  AND (j.requeued_at IS NULL OR j.requeued_at < $2)
		  AND (p.created_at, p.request_id) > ($3, $4::uuid)
		ORDER BY p.created_at, p.request_id
		LIMIT $5`, codes, settled, afterAt, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: open jobs: %w", err)
	}
	defer rows.Close()
	var out []OpenJob
	for rows.Next() {
		var (
			j    OpenJob
			code int16
		)
		if err := rows.Scan(&j.ID, &code, &j.Status, &j.Circuit, &j.CreatedAt, &j.Attempts, &j.HeartbeatAt,
			&j.Requeues, &j.RequeuedAt); err != nil {
			return nil, fmt.Errorf("store: open jobs: %w", err)
		}
		j.ProofType, _ = family.ProofTypeFromCode(int(code))
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: open jobs: %w", err)
	}
	return out, nil
}

// Requeue records that the job of an open request is published again and
// returns its sealed inputs. It is a compare-and-set on the re-queue count
// seen: of several reconcilers that saw the same count, one gets ok, so a
// lost job is published once per round. ok is false when the count moved
// or the request is no longer open.
func (s *Store) Requeue(ctx context.Context, id string, seen int) (sealed []byte, ok bool, err error) {
	u, err := parseID(id)
	if err != nil {
		return nil, false, err
	}
	rows, err := s.pool.Query(ctx, `
		UPDATE proof_jobs j SET requeues = j.requeues + 1, requeued_at = now()
		FROM proofs p
		WHERE j.request_id = $1 AND p.request_id = j.request_id AND p.status IN (0, 1) AND j.requeues = $2
		RETURNING j.sealed_inputs`, u, seen)
	if err != nil {
		return nil, false, fmt.Errorf("store: requeue %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&sealed); err != nil {
			return nil, false, fmt.Errorf("store: requeue %s: %w", id, err)
		}
		ok = true
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: requeue %s: %w", id, err)
	}
	return sealed, ok, nil
}

// lockClass is the first key of the fleet's advisory locks ("prof").
const lockClass = 0x70726f66

// TryLock takes the session-level advisory lock name on a connection of its
// own, if no other session holds it. release gives it back (and the
// connection with it); a session that dies releases it too, so a lock holder
// that crashes never blocks the others.
func (s *Store) TryLock(ctx context.Context, name string) (release func(), ok bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("store: lock %s: %w", name, err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockClass, name).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("store: lock %s: %w", name, err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, lockClass, name); err != nil {
			// Unsure whether the lock is still held: end the session.
			_ = conn.Hijack().Close(uctx)
			return
		}
		conn.Release()
	}, true, nil
}

// Unrequeue takes back a Requeue of round (the count it left) whose publish
// certainly failed (the queue was full, say), so that waiting for room
// does not use up the rounds a lost job gets.
func (s *Store) Unrequeue(ctx context.Context, id string, round int) error {
	u, err := parseID(id)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `
		UPDATE proof_jobs SET requeues = requeues - 1 WHERE request_id = $1 AND requeues = $2`, u, round); err != nil {
		return fmt.Errorf("store: unrequeue %s: %w", id, err)
	}
	return nil
}

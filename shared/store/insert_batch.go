package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// This file holds the batched forms of Insert and Exists, for a frontend
// that groups concurrent calls: one statement and one round trip for many
// requests costs Postgres far less than one each (parse, plan, execute and
// commit once), while every request still gets its own outcome.

// InsertBatch records several accepted requests with status pending in one
// statement and returns one error per request, in order: nil (recorded),
// ErrExists (a row with this id was already recorded, or the id appears
// earlier in rs), ErrBadID, an unknown proof type, or the database's error.
//
// The statement is atomic. When Postgres refuses it as a whole (a value
// the table does not take, say), nothing was written and each request is
// tried alone with Insert, so that only the bad one fails. Any other
// failure (connection, ctx) is every request's error, as for Insert.
func (s *Store) InsertBatch(ctx context.Context, rs []Request) []error {
	errs := make([]error, len(rs))
	var (
		idx                                   []int // rows sent, as indexes into rs
		ids, circuits, endpointTypes, endpnts []string
		userData, selfData                    []string
		sealed, cancelHashes                  [][]byte
		types                                 []int16
		onchain                               []bool
		versions                              []int32
	)
	for i, r := range rs {
		id, err := parseID(r.ID)
		if err != nil {
			errs[i] = err
			continue
		}
		if r.ProofType.Code() < 0 {
			errs[i] = fmt.Errorf("store: unknown proof type %q", r.ProofType)
			continue
		}
		idx = append(idx, i)
		ids = append(ids, id.String())
		types = append(types, int16(r.ProofType.Code()))
		circuits = append(circuits, r.Circuit)
		onchain = append(onchain, r.Onchain)
		endpointTypes = append(endpointTypes, r.EndpointType)
		endpnts = append(endpnts, r.Endpoint)
		versions = append(versions, int32(r.Version))
		userData = append(userData, r.UserDefinedData)
		selfData = append(selfData, r.SelfDefinedData)
		var si []byte // NULL: recorded without sealed inputs
		if len(r.Sealed) > 0 {
			si = r.Sealed
		}
		sealed = append(sealed, si)
		cancelHashes = append(cancelHashes, r.CancelHash)
	}
	if len(idx) == 0 {
		return errs
	}
	// ON CONFLICT DO NOTHING leaves out the rows whose id is recorded (or
	// repeated in this batch); p names the rows written, and each one's
	// sealed inputs (the first request's, for a repeated id) go to
	// proof_jobs in the same statement.
	rows, err := s.pool.Query(ctx, `
		WITH t AS (
			SELECT * FROM unnest($1::uuid[], $2::smallint[], $3::text[], $4::bool[], $5::text[], $6::text[],
			                     $7::int[], $8::text[], $9::text[], $10::bytea[], $11::bytea[])
			         WITH ORDINALITY AS t(id, pt, c, o, et, ep, v, ud, sd, si, ch, n)
		), p AS (
			INSERT INTO proofs (request_id, proof_type, status, circuit_name, onchain, endpoint_type,
			                    endpoint, version, user_defined_data, self_defined_data, cancel_hash)
			SELECT id, pt, 0, c, o, et, ep, v, ud, sd, ch FROM t ORDER BY n
			ON CONFLICT (request_id) DO NOTHING
			RETURNING request_id
		), j AS (
			INSERT INTO proof_jobs (request_id, sealed_inputs)
			SELECT DISTINCT ON (p.request_id) p.request_id, t.si
			FROM p JOIN t ON t.id = p.request_id
			WHERE t.si IS NOT NULL
			ORDER BY p.request_id, t.n
		)
		SELECT request_id::text FROM p`,
		ids, types, circuits, onchain, endpointTypes, endpnts, versions, userData, selfData, sealed, cancelHashes)
	written := make(map[string]bool, len(ids))
	if err == nil {
		for rows.Next() {
			var id string
			if err = rows.Scan(&id); err != nil {
				break
			}
			written[id] = true
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		// Refused as a whole, so nothing is written: one at a time.
		for _, i := range idx {
			errs[i] = s.Insert(ctx, rs[i])
		}
		return errs
	case err != nil:
		for _, i := range idx {
			errs[i] = fmt.Errorf("store: insert %s: %w", rs[i].ID, err)
		}
		return errs
	}
	for k, i := range idx {
		if !written[ids[k]] {
			errs[i] = fmt.Errorf("%w: %s", ErrExists, rs[i].ID)
			continue
		}
		// A repeated id is written once: the first request has it.
		delete(written, ids[k])
	}
	return errs
}

// Recorded reports which of ids are recorded, in one query: the result has
// an entry, true or false, for every id that is a UUID, keyed as given. An
// id that is not a UUID is left out (Exists would refuse it with ErrBadID).
func (s *Store) Recorded(ctx context.Context, ids []string) (map[string]bool, error) {
	out := make(map[string]bool, len(ids))
	byCanon := make(map[string][]string, len(ids))
	canon := make([]string, 0, len(ids))
	for _, id := range ids {
		u, err := parseID(id)
		if err != nil {
			continue
		}
		out[id] = false
		c := u.String()
		if _, ok := byCanon[c]; !ok {
			canon = append(canon, c)
		}
		byCanon[c] = append(byCanon[c], id)
	}
	if len(canon) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT request_id::text FROM proofs WHERE request_id = ANY($1::uuid[])`, canon)
	if err != nil {
		return nil, fmt.Errorf("store: recorded: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("store: recorded: %w", err)
		}
		for _, id := range byCanon[c] {
			out[id] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: recorded: %w", err)
	}
	return out, nil
}

// Package audit keeps the fault suite's own record of the proofs table and
// judges a run from it: a trigger of the suite's own (installed beside the
// fleet's, after the migrations) writes every insert, status change and
// delete of a proofs row into faults_audit, with the time it happened, so
// that what happened to each request survives the suite's connections
// being cut by the faults it injects. At the end, Judge compares what the
// app was told (load.Ledger) with what the table says.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openpassport/prover-fleet/e2e/faults/internal/load"
	"github.com/openpassport/prover-fleet/shared/groth16"
)

const installSQL = `
CREATE TABLE IF NOT EXISTS faults_audit (
    seq        bigserial PRIMARY KEY,
    request_id uuid NOT NULL,
    op         text NOT NULL,
    old_status smallint,
    new_status smallint,
    reason     text,
    at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION faults_audit_proofs() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO faults_audit (request_id, op, new_status) VALUES (NEW.request_id, 'insert', NEW.status);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO faults_audit (request_id, op, old_status) VALUES (OLD.request_id, 'delete', OLD.status);
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO faults_audit (request_id, op, old_status, new_status, reason)
            VALUES (NEW.request_id, 'update', OLD.status, NEW.status, NEW.reason);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS faults_audit_proofs ON proofs;
CREATE TRIGGER faults_audit_proofs AFTER INSERT OR UPDATE OR DELETE ON proofs
    FOR EACH ROW EXECUTE FUNCTION faults_audit_proofs();
`

// Install adds the audit table and trigger to a migrated database.
func Install(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, installSQL); err != nil {
		return fmt.Errorf("audit: install: %w", err)
	}
	return nil
}

// Row is a proofs row as the suite reads it.
type Row struct {
	ID       string
	Status   int
	Reason   string
	Proof    []byte
	Public   []string
	Attempts int
}

// Event is one audited change.
type Event struct {
	ID       string
	Op       string
	Old, New *int
	Reason   string
	At       time.Time
}

// Snapshot is the table and its history at one moment.
type Snapshot struct {
	Rows   map[string]Row
	Events []Event
}

// Read takes a snapshot (one connection, with a timeout).
func Read(ctx context.Context, url string) (*Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer conn.Close(ctx)
	s := &Snapshot{Rows: map[string]Row{}}
	rows, err := conn.Query(ctx, `SELECT request_id::text, status, coalesce(reason, ''), proof::text, public_inputs, attempts FROM proofs`)
	if err != nil {
		return nil, fmt.Errorf("audit: read proofs: %w", err)
	}
	for rows.Next() {
		var r Row
		var proof *string
		if err := rows.Scan(&r.ID, &r.Status, &r.Reason, &proof, &r.Public, &r.Attempts); err != nil {
			return nil, fmt.Errorf("audit: read proofs: %w", err)
		}
		if proof != nil {
			r.Proof = []byte(*proof)
		}
		s.Rows[r.ID] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: read proofs: %w", err)
	}
	evs, err := conn.Query(ctx, `SELECT request_id::text, op, old_status, new_status, coalesce(reason, ''), at FROM faults_audit ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("audit: read history: %w", err)
	}
	for evs.Next() {
		var e Event
		var oldS, newS *int16
		if err := evs.Scan(&e.ID, &e.Op, &oldS, &newS, &e.Reason, &e.At); err != nil {
			return nil, fmt.Errorf("audit: read history: %w", err)
		}
		if oldS != nil {
			v := int(*oldS)
			e.Old = &v
		}
		if newS != nil {
			v := int(*newS)
			e.New = &v
		}
		s.Events = append(s.Events, e)
	}
	return s, evs.Err()
}

// Open counts the requests in ids whose row is open (status 0 or 1) or
// missing.
func (s *Snapshot) Open(ids []string) int {
	n := 0
	for _, id := range ids {
		if r, ok := s.Rows[id]; !ok || r.Status < 2 {
			n++
		}
	}
	return n
}

// Result is the judgement of one run.
type Result struct {
	Sent     int            // requests the app sent
	Accepted int            // the frontend accepted (the app was told so)
	Refused  int            // never accepted, however often the app retried
	Proved   int            // status 2 with a proof the verifier accepts
	Invalid  []string       // status 2 with a proof it rejects
	Failed   map[string]int // status 3, by reason
	Stuck    []string       // still status 0 or 1 (accepted, or recorded for an app that gave up)
	Lost     []string       // accepted, no row
	Double   []string       // recorded terminal more than once (or 2 and 3)
	// Unasked are rows of requests the app gave up on (recorded, never
	// confirmed to it): they must end terminal like any other.
	Unasked int
	// Recovery is from the fault's end until every request recorded or
	// accepted before it was terminal (0: none was open then; negative:
	// never).
	Recovery time.Duration
	// FirstProofAfter is from the fault's end to the first proof
	// recorded after it (negative: none).
	FirstProofAfter time.Duration
	// Accepts counts how the app learned of acceptance ("submit",
	// "recorded"); Errors the attempts' errors, by kind.
	Accepts map[string]int
	Errors  map[string]int
}

// Verify checks a recorded proof and its public inputs (the suite passes
// the native Groth16 verifier with the circuit's key).
type Verify func(proof []byte, public []string) error

// VerifyWith is the Verify of a verifying key.
func VerifyWith(vk *groth16.VerifyingKey) Verify {
	return func(proof []byte, public []string) error {
		pub, err := json.Marshal(public)
		if err != nil {
			return err
		}
		return vk.VerifyJSON(proof, pub)
	}
}

// Judge compares the ledger with the snapshot. faultEnd is when the
// injected fault ended.
func Judge(reqs []load.Request, s *Snapshot, verify Verify, faultEnd time.Time) Result {
	res := Result{Sent: len(reqs), Failed: map[string]int{}, Accepts: map[string]int{}, Errors: map[string]int{}}
	terminal := map[string][]Event{}
	recordedBefore := map[string]bool{} // a row existed before the fault ended
	for _, e := range s.Events {
		if e.Op == "update" && e.New != nil && *e.New >= 2 {
			terminal[e.ID] = append(terminal[e.ID], e)
		}
		if e.Op == "insert" && e.At.Before(faultEnd) {
			recordedBefore[e.ID] = true
		}
	}
	asked := map[string]bool{}
	var before []string // recorded or accepted before the fault ended
	for _, r := range reqs {
		asked[r.UUID] = true
		if recordedBefore[r.UUID] && (r.Accepted.IsZero() || !r.Accepted.Before(faultEnd)) {
			before = append(before, r.UUID)
		}
		for _, e := range r.Errors {
			res.Errors[errorKind(e)]++
		}
		if r.Accepted.IsZero() {
			res.Refused++
			continue
		}
		res.Accepted++
		res.Accepts[r.Via]++
		if r.Accepted.Before(faultEnd) {
			before = append(before, r.UUID)
		}
		row, ok := s.Rows[r.UUID]
		switch {
		case !ok:
			res.Lost = append(res.Lost, r.UUID)
		case row.Status < 2:
			res.Stuck = append(res.Stuck, r.UUID)
		}
	}
	for id, row := range s.Rows {
		if !asked[id] {
			continue // not this run's
		}
		if len(terminal[id]) > 1 {
			res.Double = append(res.Double, id)
		}
		switch {
		case row.Status == 2:
			if err := verify(row.Proof, row.Public); err != nil {
				res.Invalid = append(res.Invalid, id)
			} else {
				res.Proved++
			}
		case row.Status == 3:
			res.Failed[reasonKind(row.Reason)]++
		}
	}
	for _, r := range reqs {
		if !r.Accepted.IsZero() {
			continue
		}
		if row, ok := s.Rows[r.UUID]; ok {
			res.Unasked++
			if row.Status < 2 {
				res.Stuck = append(res.Stuck, r.UUID) // open for ever all the same
			}
		}
	}
	res.Recovery = 0
	for _, id := range before {
		evs := terminal[id]
		if len(evs) == 0 {
			res.Recovery = -1
			break
		}
		if d := evs[0].At.Sub(faultEnd); d > res.Recovery {
			res.Recovery = d
		}
	}
	res.FirstProofAfter = -1
	for _, evs := range terminal {
		for _, e := range evs {
			if *e.New == 2 && e.At.After(faultEnd) {
				if d := e.At.Sub(faultEnd); res.FirstProofAfter < 0 || d < res.FirstProofAfter {
					res.FirstProofAfter = d
				}
			}
		}
	}
	sort.Strings(res.Stuck)
	sort.Strings(res.Lost)
	sort.Strings(res.Double)
	return res
}

var (
	uuidRe   = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	numberRe = regexp.MustCompile(`[0-9]+(\.[0-9]+)?(ms|s|m)?`)
	addrRe   = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)
)

// reasonKind groups failure reasons: numbers and ids replaced.
func reasonKind(reason string) string {
	s := uuidRe.ReplaceAllString(reason, "<uuid>")
	s = addrRe.ReplaceAllString(s, "<addr>")
	s = numberRe.ReplaceAllString(s, "N")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// errorKind groups the app's errors the same way, shorter.
func errorKind(e string) string {
	s := reasonKind(e)
	if i := strings.Index(s, " ("); i > 0 {
		s = s[:i]
	}
	if len(s) > 90 {
		s = s[:90] + "…"
	}
	return s
}

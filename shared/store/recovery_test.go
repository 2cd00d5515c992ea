package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openpassport/prover-fleet/internal/devstack"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/store"
)

// sealedOf reads a request's kept sealed inputs (nil: none kept).
func sealedOf(t *testing.T, pool *pgxpool.Pool, id string) []byte {
	t.Helper()
	var b []byte
	err := pool.QueryRow(t.Context(), `SELECT sealed_inputs FROM proof_jobs WHERE request_id = $1`, id).Scan(&b)
	if err != nil && err.Error() != "no rows in result set" {
		t.Fatal(err)
	}
	return b
}

func setupPool(t *testing.T) (*store.Store, *pgxpool.Pool) {
	t.Helper()
	_, url := setup(t)
	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return store.New(pool), pool
}

// The sealed inputs are recorded with the row, by Insert and InsertBatch
// alike, and go as soon as the request is terminal.
func TestSealedInputsKeptWhileOpen(t *testing.T) {
	t.Parallel()
	s, pool := setupPool(t)
	ctx := t.Context()
	one, bare := newRequest(), newRequest()
	bare.Sealed = nil
	if err := s.Insert(ctx, one); err != nil {
		t.Fatal(err)
	}
	if err := s.Insert(ctx, bare); err != nil {
		t.Fatal(err)
	}
	a, b := newRequest(), newRequest()
	second := a
	second.Sealed = []byte("another copy")
	if errs := s.InsertBatch(ctx, []store.Request{a, b, second}); errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], store.ErrExists) {
		t.Fatalf("InsertBatch = %v", errs)
	}
	for _, r := range []store.Request{one, a, b} {
		if got := sealedOf(t, pool, r.ID); string(got) != string(r.Sealed) {
			t.Errorf("%s: sealed inputs %q, want %q", r.ID, got, r.Sealed)
		}
	}
	if got := sealedOf(t, pool, bare.ID); got != nil {
		t.Errorf("request without sealed inputs has %q", got)
	}
	// Terminal: failed, proved, or removed with its row.
	if _, err := s.MarkFailed(ctx, one.ID, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkProofGenerated(ctx, a.ID, json.RawMessage(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{one.ID, a.ID, b.ID} {
		if got := sealedOf(t, pool, id); got != nil {
			t.Errorf("%s: sealed inputs kept after the request ended: %q", id, got)
		}
	}
	// The relayer's notification does not carry them.
	var payload string
	if err := pool.QueryRow(ctx, `SELECT row_to_json(p)::text FROM proofs p WHERE request_id = $1`, one.ID).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	var row map[string]any
	if err := json.Unmarshal([]byte(payload), &row); err != nil {
		t.Fatal(err)
	}
	if _, ok := row["sealed_inputs"]; ok {
		t.Error("the proofs row carries the sealed inputs")
	}
}

// OpenJobs lists open requests with kept inputs, oldest first, after a
// cursor, leaving out young ones; Requeue is a compare-and-set on the
// count; Unrequeue takes a round back.
func TestOpenJobsAndRequeue(t *testing.T) {
	t.Parallel()
	s, pool := setupPool(t)
	ctx := t.Context()
	var ids []string
	for i := range 4 {
		r := newRequest()
		r.ProofType = "register"
		if i == 3 {
			r.ProofType = "disclose"
		}
		if err := s.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
		// Spread the creation times.
		if _, err := pool.Exec(ctx, `UPDATE proofs SET created_at = now() - $2::interval WHERE request_id = $1`,
			r.ID, fmt.Sprintf("%d minutes", 10-i)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	bare := newRequest()
	bare.ProofType, bare.Sealed = "register", nil
	if err := s.Insert(ctx, bare); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE proofs SET created_at = now() - interval '1 hour' WHERE request_id = $1`, bare.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkFailed(ctx, ids[1], "x"); err != nil {
		t.Fatal(err)
	}
	regs := []family.ProofType{"register", "register_id"}
	got, err := s.OpenJobs(ctx, regs, time.Now().Add(-30*time.Second), store.Cursor{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[2] || got[0].ProofType != "register" || got[0].Requeues != 0 {
		t.Fatalf("open jobs = %+v, want %s and %s", got, ids[0], ids[2])
	}
	page, err := s.OpenJobs(ctx, regs, time.Now(), store.Cursor{CreatedAt: got[0].CreatedAt, ID: got[0].ID}, 1)
	if err != nil || len(page) != 1 || page[0].ID != ids[2] {
		t.Fatalf("after the cursor: %+v, %v", page, err)
	}
	young, err := s.OpenJobs(ctx, regs, time.Now().Add(-9*time.Minute-30*time.Second), store.Cursor{}, 10)
	if err != nil || len(young) != 1 || young[0].ID != ids[0] {
		t.Fatalf("settled before 9.5 minutes ago: %+v, %v", young, err)
	}

	sealed, ok, err := s.Requeue(ctx, ids[0], 0)
	if err != nil || !ok || string(sealed) != "sealed:"+ids[0] {
		t.Fatalf("Requeue = %q, %v, %v", sealed, ok, err)
	}
	if _, ok, err := s.Requeue(ctx, ids[0], 0); err != nil || ok {
		t.Fatalf("second Requeue of round 0 = %v, %v; want refused", ok, err)
	}
	if _, ok, err := s.Requeue(ctx, ids[1], 0); err != nil || ok {
		t.Fatalf("Requeue of a failed request = %v, %v; want refused", ok, err)
	}
	// Just re-queued: not settled yet.
	if got, _ := s.OpenJobs(ctx, regs, time.Now().Add(-30*time.Second), store.Cursor{}, 10); len(got) != 1 || got[0].ID != ids[2] {
		t.Fatalf("a request just re-queued is listed: %+v", got)
	}
	if err := s.Unrequeue(ctx, ids[0], 1); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Requeue(ctx, ids[0], 0); err != nil || !ok {
		t.Fatalf("Requeue after Unrequeue = %v, %v", ok, err)
	}
	all, err := s.OpenJobs(ctx, regs, time.Now().Add(time.Second), store.Cursor{}, 10)
	if err != nil || len(all) != 2 || all[0].Requeues != 1 || all[0].RequeuedAt == nil {
		t.Fatalf("after requeue: %+v, %v", all, err)
	}
}

// One session at a time holds a lock; a released lock is free again.
func TestTryLock(t *testing.T) {
	t.Parallel()
	s, _ := setupPool(t)
	ctx := t.Context()
	release, ok, err := s.TryLock(ctx, "reconcile-register")
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	if _, ok, err := s.TryLock(ctx, "reconcile-register"); err != nil || ok {
		t.Fatalf("second TryLock = %v, %v; want refused", ok, err)
	}
	other, ok, err := s.TryLock(ctx, "reconcile-dsc")
	if err != nil || !ok {
		t.Fatalf("TryLock of another name = %v, %v", ok, err)
	}
	other()
	release()
	again, ok, err := s.TryLock(ctx, "reconcile-register")
	if err != nil || !ok {
		t.Fatalf("TryLock after release = %v, %v", ok, err)
	}
	again()
}

// Unavailable tells a database that does not answer from one that refuses
// a statement, on a real server that is stopped and started again.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir, err := os.MkdirTemp("", "store-outage-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresConfig{Dir: dir})
	if err != nil {
		if testing.Short() {
			t.Skipf("postgres unavailable under -short: %v", err)
		}
		t.Fatalf("this test needs PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	pool, err := pgxpool.New(ctx, pg.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	_, dup := pool.Exec(ctx, `INSERT INTO t VALUES (1), (1)`)
	_, syntax := pool.Exec(ctx, `SELEC 1`)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	_, down := pool.Exec(ctx, `SELECT 1`)
	tctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
	<-tctx.Done()
	_, timedOut := pool.Exec(tctx, `SELECT 1`)
	cancel()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, cancelled := pool.Exec(cctx, `SELECT 1`)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"unique violation", dup, false},
		{"syntax error", syntax, false},
		{"server stopped", down, true},
		{"timed out", timedOut, true},
		{"cancelled by the caller", cancelled, false},
		{"not found", fmt.Errorf("x: %w", store.ErrNotFound), false},
		{"shutting down", &pgconn.PgError{Code: "57P01"}, true},
		{"starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"dial refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{"eof", io.ErrUnexpectedEOF, true},
	}
	for _, tc := range tests {
		if got := store.Unavailable(tc.err); got != tc.want {
			t.Errorf("%s: Unavailable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after restart: %d rows, %v", n, err)
	}
}

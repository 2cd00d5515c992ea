package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

func setup(t *testing.T) (*store.Store, string) {
	t.Helper()
	url := stacktest.PostgresURL(t)
	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return store.New(pool), url
}

func newRequest() store.Request {
	id := uuid.NewString()
	return store.Request{ID: id, ProofType: "disclose", Circuit: "disclose_demo", Onchain: true,
		EndpointType: "celo", Endpoint: "0xabc", Version: 1, UserDefinedData: "u", SelfDefinedData: "s",
		Sealed: []byte("sealed:" + id)}
}

func TestInsertGet(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	r := newRequest()
	if err := s.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.Insert(ctx, r); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second insert: %v, want ErrExists", err)
	}
	p, err := s.Get(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != status.Pending || p.ProofType != "disclose" || p.Circuit != "disclose_demo" || !p.Onchain ||
		p.EndpointType != "celo" || p.Endpoint != "0xabc" || p.Version != 1 || p.CreatedAt.IsZero() {
		t.Fatalf("row = %+v", p)
	}
	if ok, err := s.Exists(ctx, r.ID); !ok || err != nil {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
	if _, err := s.Get(ctx, uuid.NewString()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}
	if _, err := s.Get(ctx, "not-a-uuid"); !errors.Is(err, store.ErrBadID) {
		t.Fatalf("Get bad id: %v", err)
	}
}

func TestTransitionsAreGuarded(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	r := newRequest()
	if err := s.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	must := func(ok bool, err error, want bool, what string) {
		t.Helper()
		if err != nil || ok != want {
			t.Fatalf("%s = %v, %v; want %v", what, ok, err, want)
		}
	}
	p, err := s.Claim(ctx, r.ID, "w1", 1)
	if err != nil || p.Attempts != 1 || p.WorkerID != "w1" {
		t.Fatalf("Claim = %+v, %v", p, err)
	}
	st, err := s.MarkWitnessGenerated(ctx, r.ID)
	must(st != nil, err, true, "witness")
	if st.ProofGeneratedAt != nil || st.WitnessGeneratedAt.IsZero() {
		t.Fatalf("stamps after witness = %+v", st)
	}
	witnessAt := st.WitnessGeneratedAt
	st, err = s.MarkWitnessGenerated(ctx, r.ID)
	must(st != nil, err, false, "witness again")
	proof := json.RawMessage(`{"pi_a":["1","2","1"],"protocol":"groth16"}`)
	st, err = s.MarkProofGenerated(ctx, r.ID, proof, []string{"7", "8"})
	must(st != nil, err, true, "proof")
	proofStamps := *st
	// A late duplicate can neither fail nor overwrite the result.
	ok, err := s.MarkFailed(ctx, r.ID, "late failure")
	must(ok, err, false, "fail after proof")
	st, err = s.MarkProofGenerated(ctx, r.ID, json.RawMessage(`{"other":1}`), nil)
	must(st != nil, err, false, "second proof")
	st, err = s.MarkWitnessGenerated(ctx, r.ID)
	must(st != nil, err, false, "witness after proof")
	p, err = s.Claim(ctx, r.ID, "w2", 2)
	if err != nil || p.WorkerID != "w1" || p.Attempts != 1 {
		t.Fatalf("claim of a terminal row changed it: %+v, %v", p, err)
	}
	if p.Status != status.ProofGenerated || p.WitnessGeneratedAt == nil || p.ProofGeneratedAt == nil ||
		strings.Join(p.PublicInputs, ",") != "7,8" || !strings.Contains(string(p.Proof), "groth16") || p.Reason != "" {
		t.Fatalf("row after proof = %+v", p)
	}
	// The stamps are the row's times exactly: what a status event carries
	// must equal what a read returns.
	if !p.WitnessGeneratedAt.Equal(witnessAt) || !proofStamps.WitnessGeneratedAt.Equal(witnessAt) ||
		!p.ProofGeneratedAt.Equal(*proofStamps.ProofGeneratedAt) {
		t.Fatalf("row times %v / %v, stamps %v then %+v", p.WitnessGeneratedAt, p.ProofGeneratedAt, witnessAt, proofStamps)
	}
	if _, err := s.MarkProofGenerated(ctx, r.ID, json.RawMessage(`{`), nil); err == nil {
		t.Fatal("invalid proof JSON accepted")
	}

	r2 := newRequest()
	_ = s.Insert(ctx, r2)
	ok, err = s.MarkFailed(ctx, r2.ID, "witness generator rejected the input")
	must(ok, err, true, "fail")
	st, err = s.MarkProofGenerated(ctx, r2.ID, proof, nil)
	must(st != nil, err, false, "proof after fail")
	p, _ = s.Get(ctx, r2.ID)
	if p.Status != status.Failed || p.Reason != "witness generator rejected the input" || p.Proof != nil {
		t.Fatalf("failed row = %+v", p)
	}
	// Delete only removes pending rows.
	if err := s.Delete(ctx, r2.ID); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Exists(ctx, r2.ID); !ok {
		t.Fatal("Delete removed a terminal row")
	}
	r3 := newRequest()
	_ = s.Insert(ctx, r3)
	_ = s.Delete(ctx, r3.ID)
	if ok, _ := s.Exists(ctx, r3.ID); ok {
		t.Fatal("Delete left a pending row")
	}
}

func TestClaim(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	proof := json.RawMessage(`{"protocol":"groth16"}`)
	tests := []struct {
		name         string
		prepare      func(id string) // after the insert
		attempt      int
		wantStatus   status.Code
		wantWorker   string
		wantAttempts int
	}{
		{name: "pending row is claimed", prepare: func(string) {}, attempt: 1,
			wantStatus: status.Pending, wantWorker: "w-new", wantAttempts: 1},
		{name: "witness generated row is claimed", attempt: 2,
			prepare: func(id string) {
				_, _ = s.Claim(ctx, id, "w-old", 1)
				_, _ = s.MarkWitnessGenerated(ctx, id)
			},
			wantStatus: status.WitnessGenerated, wantWorker: "w-new", wantAttempts: 2},
		{name: "attempts never go down", attempt: 1,
			prepare:    func(id string) { _, _ = s.Claim(ctx, id, "w-old", 3) },
			wantStatus: status.Pending, wantWorker: "w-new", wantAttempts: 3},
		{name: "proved row is returned unchanged", attempt: 2,
			prepare: func(id string) {
				_, _ = s.Claim(ctx, id, "w-old", 1)
				_, _ = s.MarkProofGenerated(ctx, id, proof, []string{"1"})
			},
			wantStatus: status.ProofGenerated, wantWorker: "w-old", wantAttempts: 1},
		{name: "failed row is returned unchanged", attempt: 2,
			prepare: func(id string) {
				_, _ = s.Claim(ctx, id, "w-old", 1)
				_, _ = s.MarkFailed(ctx, id, "bad input")
			},
			wantStatus: status.Failed, wantWorker: "w-old", wantAttempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRequest()
			if err := s.Insert(ctx, r); err != nil {
				t.Fatal(err)
			}
			tt.prepare(r.ID)
			p, err := s.Claim(ctx, r.ID, "w-new", tt.attempt)
			if err != nil {
				t.Fatal(err)
			}
			if p.ID != r.ID || p.Status != tt.wantStatus || p.WorkerID != tt.wantWorker ||
				p.Attempts != tt.wantAttempts || p.Circuit != r.Circuit || p.ProofType != r.ProofType {
				t.Fatalf("Claim = %+v; want status %v, worker %q, attempts %d", p, tt.wantStatus, tt.wantWorker, tt.wantAttempts)
			}
			got, err := s.Get(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != p.Status || got.WorkerID != p.WorkerID || got.Attempts != p.Attempts || !got.UpdatedAt.Equal(p.UpdatedAt) {
				t.Fatalf("Claim returned %+v, the row is %+v", p, got)
			}
		})
	}
	if _, err := s.Claim(ctx, uuid.NewString(), "w", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Claim unknown: %v, want ErrNotFound", err)
	}
	if _, err := s.Claim(ctx, "not-a-uuid", "w", 1); !errors.Is(err, store.ErrBadID) {
		t.Fatalf("Claim bad id: %v, want ErrBadID", err)
	}
}

func TestNotifyOnInsertAndStatusChange(t *testing.T) {
	t.Parallel()
	s, url := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(ctx, "LISTEN status_update"); err != nil {
		t.Fatal(err)
	}
	r := newRequest()
	r.CancelHash = make([]byte, 32)
	if err := s.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	next := func() map[string]any {
		t.Helper()
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(n.Payload), &m); err != nil {
			t.Fatalf("payload is not JSON: %v", err)
		}
		if m["request_id"] != r.ID {
			t.Fatalf("payload for %v, want %s", m["request_id"], r.ID)
		}
		return m
	}
	if m := next(); m["status"] != float64(0) || m["circuit_name"] != "disclose_demo" {
		t.Fatalf("insert payload = %v", m)
	} else if v, ok := m["cancel_hash"]; !ok || v != nil {
		t.Fatalf("insert payload carries cancel_hash %v, want null", v)
	}
	_, _ = s.Claim(ctx, r.ID, "w", 1) // no status change: no notification
	_, _ = s.MarkWitnessGenerated(ctx, r.ID)
	if m := next(); m["status"] != float64(1) {
		t.Fatalf("witness payload = %v", m)
	}
	// A row far above pg_notify's 8000-byte limit must still update.
	big := make([]string, 400)
	for i := range big {
		big[i] = "21888242871839275222246405745257275088548364400416034343698204186575808495617"
	}
	st, err := s.MarkProofGenerated(ctx, r.ID, json.RawMessage(`{"protocol":"groth16"}`), big)
	if err != nil || st == nil {
		t.Fatalf("large update = %v, %v", st, err)
	}
	m := next()
	if m["status"] != float64(2) || m["truncated"] != true {
		t.Fatalf("large-row payload = %v", m)
	}
}

func TestCleanup(t *testing.T) {
	t.Parallel()
	s, url := setup(t)
	ctx := t.Context()
	var done, open []string
	for i := 0; i < 3; i++ {
		r := newRequest()
		_ = s.Insert(ctx, r)
		_, _ = s.MarkProofGenerated(ctx, r.ID, json.RawMessage(`{}`), []string{"1"})
		done = append(done, r.ID)
		r2 := newRequest()
		_ = s.Insert(ctx, r2)
		open = append(open, r2.ID)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE proofs SET updated_at = now() - interval '2 days', created_at = now() - interval '2 days'"); err != nil {
		t.Fatal(err)
	}
	n, err := s.Cleanup(ctx, time.Now().Add(-24*time.Hour), store.StripProofs)
	if err != nil || n != 3 {
		t.Fatalf("strip = %d, %v", n, err)
	}
	p, _ := s.Get(ctx, done[0])
	if p.Proof != nil || p.PublicInputs != nil || p.Status != status.ProofGenerated {
		t.Fatalf("stripped row = %+v", p)
	}
	n, err = s.Cleanup(ctx, time.Now().Add(-24*time.Hour), store.DeleteRows)
	if err != nil || n != 3 {
		t.Fatalf("delete = %d, %v", n, err)
	}
	for _, id := range open {
		if ok, _ := s.Exists(ctx, id); !ok {
			t.Fatal("cleanup removed a row still in progress")
		}
	}
	if ok, _ := s.Exists(ctx, done[1]); ok {
		t.Fatal("cleanup kept an old terminal row")
	}
}

package store_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

func TestInsertBatch(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	recorded := newRequest()
	if err := s.Insert(ctx, recorded); err != nil {
		t.Fatal(err)
	}
	a, b := newRequest(), newRequest()
	b.ID = strings.ToUpper(b.ID) // any UUID spelling is the same row
	badType := newRequest()
	badType.ProofType = "nope"
	tooLong := newRequest()
	tooLong.Endpoint = strings.Repeat("x", 200) // endpoint is varchar(128)

	tests := []struct {
		name string
		rs   []store.Request
		want []error // nil, or the sentinel errors.Is must match; errAny: some error
	}{
		{"empty", nil, nil},
		{"one", []store.Request{newRequest()}, []error{nil}},
		{"new, recorded, repeated, bad id, bad type",
			[]store.Request{a, recorded, a, {ID: "not-a-uuid", ProofType: "disclose"}, badType, b},
			[]error{nil, store.ErrExists, store.ErrExists, store.ErrBadID, errAny, nil}},
		{"a row the table refuses fails alone", []store.Request{newRequest(), tooLong, newRequest()},
			[]error{nil, errAny, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := s.InsertBatch(ctx, tt.rs)
			if len(errs) != len(tt.rs) {
				t.Fatalf("%d errors for %d requests", len(errs), len(tt.rs))
			}
			for i, err := range errs {
				switch want := tt.want[i]; {
				case want == nil && err != nil:
					t.Errorf("request %d: %v, want nil", i, err)
				case want == errAny && err == nil:
					t.Errorf("request %d: nil, want an error", i)
				case want != nil && want != errAny && !errors.Is(err, want):
					t.Errorf("request %d: %v, want %v", i, err, want)
				}
				ok, xerr := s.Exists(ctx, tt.rs[i].ID)
				if tt.rs[i].ID == "not-a-uuid" {
					continue
				}
				if xerr != nil {
					t.Fatal(xerr)
				}
				// A request with an error is recorded only when it was
				// already (ErrExists).
				if wantRow := err == nil || errors.Is(err, store.ErrExists); ok != wantRow {
					t.Errorf("request %d: recorded = %v, want %v (err %v)", i, ok, wantRow, err)
				}
			}
		})
	}

	// The rows are those Insert writes.
	p, err := s.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != status.Pending || p.ProofType != a.ProofType || p.Circuit != a.Circuit || p.Onchain != a.Onchain ||
		p.EndpointType != a.EndpointType || p.Endpoint != a.Endpoint || p.Version != a.Version || p.CreatedAt.IsZero() {
		t.Fatalf("row = %+v, request %+v", p, a)
	}
}

var errAny = errors.New("any error")

func TestInsertBatchCancelled(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rs := []store.Request{newRequest(), newRequest()}
	for i, err := range s.InsertBatch(ctx, rs) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("request %d: %v, want context.Canceled", i, err)
		}
	}
}

func TestRecorded(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	r := newRequest()
	if err := s.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	other := uuid.NewString()
	upper := strings.ToUpper(r.ID)
	got, err := s.Recorded(ctx, []string{r.ID, other, "not-a-uuid", upper, r.ID})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{r.ID: true, other: false, upper: true}
	if len(got) != len(want) {
		t.Fatalf("Recorded = %v, want %v", got, want)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("Recorded[%s] = %v, want %v", id, got[id], w)
		}
	}
	if got, err := s.Recorded(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("Recorded(nil) = %v, %v", got, err)
	}
}

// The hash of a request's cancel token is kept with its row, written by
// both Insert and InsertBatch; a row without one reads nil.
func TestCancelHash(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	hash := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	one, batched, none := newRequest(), newRequest(), newRequest()
	one.CancelHash, batched.CancelHash = hash(1), hash(2)
	if err := s.Insert(ctx, one); err != nil {
		t.Fatal(err)
	}
	if errs := s.InsertBatch(ctx, []store.Request{batched, none}); errs[0] != nil || errs[1] != nil {
		t.Fatalf("InsertBatch: %v", errs)
	}
	if _, err := s.MarkFailed(ctx, batched.ID, "cancelled"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		id     string
		want   []byte
		status status.Code
		err    error
	}{
		{"inserted alone", one.ID, hash(1), status.Pending, nil},
		{"inserted in a batch, then failed", batched.ID, hash(2), status.Failed, nil},
		{"recorded without one", none.ID, nil, status.Pending, nil},
		{"unknown", uuid.NewString(), nil, 0, store.ErrNotFound},
		{"not a uuid", "x", nil, 0, store.ErrBadID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, st, err := s.CancelHash(ctx, tt.id)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("CancelHash: %v, want %v", err, tt.err)
			}
			if !bytes.Equal(got, tt.want) || st != tt.status {
				t.Fatalf("CancelHash = %x, %v; want %x, %v", got, st, tt.want, tt.status)
			}
		})
	}
}

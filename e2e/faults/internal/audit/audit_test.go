package audit_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/e2e/faults/internal/audit"
	"github.com/openpassport/prover-fleet/e2e/faults/internal/load"
)

// verify accepts the proof "good" only.
func verify(proof []byte, _ []string) error {
	if string(proof) != "good" {
		return errors.New("rejected")
	}
	return nil
}

func status(n int) *int { return &n }

// The verdict on each kind of request, and the recovery time.
func TestJudge(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	faultEnd := t0.Add(30 * time.Second)
	accepted := func(id string, at time.Duration) load.Request {
		return load.Request{UUID: id, First: t0, Accepted: t0.Add(at), Via: "submit"}
	}
	terminal := func(id string, st int, at time.Duration) audit.Event {
		return audit.Event{ID: id, Op: "update", Old: status(1), New: status(st), At: t0.Add(at)}
	}
	tests := []struct {
		name  string
		reqs  []load.Request
		snap  audit.Snapshot
		check func(t *testing.T, r audit.Result)
	}{
		{
			name: "proved before and after the fault",
			reqs: []load.Request{accepted("a", time.Second), accepted("b", 40*time.Second)},
			snap: audit.Snapshot{
				Rows:   map[string]audit.Row{"a": {ID: "a", Status: 2, Proof: []byte("good")}, "b": {ID: "b", Status: 2, Proof: []byte("good")}},
				Events: []audit.Event{terminal("a", 2, 45*time.Second), terminal("b", 2, 50*time.Second)},
			},
			check: func(t *testing.T, r audit.Result) {
				if r.Accepted != 2 || r.Proved != 2 || len(r.Stuck)+len(r.Lost)+len(r.Double)+len(r.Invalid) != 0 {
					t.Fatalf("%+v", r)
				}
				if r.Recovery != 15*time.Second || r.FirstProofAfter != 15*time.Second {
					t.Fatalf("recovery %s, first proof after %s; want 15s and 15s", r.Recovery, r.FirstProofAfter)
				}
			},
		},
		{
			name: "stuck, lost, failed, invalid",
			reqs: []load.Request{accepted("stuck", time.Second), accepted("lost", time.Second), accepted("failed", time.Second), accepted("bad", time.Second)},
			snap: audit.Snapshot{
				Rows: map[string]audit.Row{
					"stuck":  {ID: "stuck", Status: 1},
					"failed": {ID: "failed", Status: 3, Reason: "gave up after 5 attempts: database unavailable"},
					"bad":    {ID: "bad", Status: 2, Proof: []byte("forged")},
				},
				Events: []audit.Event{terminal("failed", 3, 35*time.Second), terminal("bad", 2, 36*time.Second)},
			},
			check: func(t *testing.T, r audit.Result) {
				if !slices.Equal(r.Stuck, []string{"stuck"}) || !slices.Equal(r.Lost, []string{"lost"}) || !slices.Equal(r.Invalid, []string{"bad"}) {
					t.Fatalf("stuck %v lost %v invalid %v", r.Stuck, r.Lost, r.Invalid)
				}
				if r.Failed["gave up after N attempts: database unavailable"] != 1 || r.Proved != 0 {
					t.Fatalf("failed %v proved %d", r.Failed, r.Proved)
				}
				if r.Recovery >= 0 {
					t.Fatalf("recovery %s with requests never terminal, want never", r.Recovery)
				}
			},
		},
		{
			name: "recorded before the fault, accepted by a late retry after it, never ended",
			reqs: []load.Request{{UUID: "late", First: t0, Accepted: t0.Add(60 * time.Second), Via: "recorded"}},
			snap: audit.Snapshot{
				Rows:   map[string]audit.Row{"late": {ID: "late", Status: 0}},
				Events: []audit.Event{{ID: "late", Op: "insert", New: status(0), At: t0.Add(10 * time.Second)}},
			},
			check: func(t *testing.T, r audit.Result) {
				if !slices.Equal(r.Stuck, []string{"late"}) || r.Recovery >= 0 || r.Accepts["recorded"] != 1 {
					t.Fatalf("stuck %v recovery %s accepts %v; want it stuck and recovery never", r.Stuck, r.Recovery, r.Accepts)
				}
			},
		},
		{
			name: "recorded twice: proved, then failed",
			reqs: []load.Request{accepted("x", time.Second)},
			snap: audit.Snapshot{
				Rows:   map[string]audit.Row{"x": {ID: "x", Status: 3}},
				Events: []audit.Event{terminal("x", 2, 10*time.Second), {ID: "x", Op: "update", Old: status(2), New: status(3), At: t0.Add(11 * time.Second)}},
			},
			check: func(t *testing.T, r audit.Result) {
				if !slices.Equal(r.Double, []string{"x"}) {
					t.Fatalf("double %v", r.Double)
				}
			},
		},
		{
			name: "refused, and an open row the app never heard of is stuck all the same",
			reqs: []load.Request{{UUID: "r", First: t0, Errors: []string{"dial: connection refused"}}, {UUID: "u", First: t0}},
			snap: audit.Snapshot{Rows: map[string]audit.Row{"u": {ID: "u", Status: 0}, "other": {ID: "other", Status: 0}}},
			check: func(t *testing.T, r audit.Result) {
				if r.Refused != 2 || r.Accepted != 0 || r.Unasked != 1 || !slices.Equal(r.Stuck, []string{"u"}) {
					t.Fatalf("%+v", r)
				}
				if r.Errors["dial: connection refused"] != 1 {
					t.Fatalf("errors %v", r.Errors)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.check(t, audit.Judge(tc.reqs, &tc.snap, verify, faultEnd))
		})
	}
}

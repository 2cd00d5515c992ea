package outcome_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/worker/internal/outcome"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	b := outcome.Backoff{Base: time.Second, Max: 10 * time.Second}
	transient := outcome.Retry("proving failed: prove: timed out after 1s", errors.New("deadline"))
	tests := []struct {
		name       string
		err, cause error
		attempt    int
		maxDeliver int
		want       outcome.Decision
	}{
		{"success", nil, nil, 1, 5, outcome.Decision{Kind: outcome.Proved, Action: outcome.DoubleAck}},
		{"success even if cancelled late", nil, outcome.ErrCancelled, 1, 5, outcome.Decision{Kind: outcome.Proved, Action: outcome.DoubleAck}},
		{"already done", fmt.Errorf("claim: %w", outcome.ErrAlreadyDone), nil, 2, 5,
			outcome.Decision{Kind: outcome.AlreadyDone, Action: outcome.DoubleAck}},
		{"bad input terminates at once", outcome.Reject("witness generation rejected the input", errors.New("exit 1")), nil, 1, 5,
			outcome.Decision{Kind: outcome.Rejected, Action: outcome.Term, Reason: "witness generation rejected the input", Fail: true}},
		{"transient retries with backoff", transient, nil, 1, 5,
			outcome.Decision{Kind: outcome.Retried, Action: outcome.NakWithDelay, Delay: time.Second, Reason: "proving failed: prove: timed out after 1s"}},
		{"backoff doubles", transient, nil, 3, 5,
			outcome.Decision{Kind: outcome.Retried, Action: outcome.NakWithDelay, Delay: 4 * time.Second, Reason: "proving failed: prove: timed out after 1s"}},
		{"backoff capped", transient, nil, 9, 0,
			outcome.Decision{Kind: outcome.Retried, Action: outcome.NakWithDelay, Delay: 10 * time.Second, Reason: "proving failed: prove: timed out after 1s"}},
		{"plain error is transient", errors.New("connection refused"), nil, 1, 5,
			outcome.Decision{Kind: outcome.Retried, Action: outcome.NakWithDelay, Delay: time.Second, Reason: "connection refused"}},
		{"last delivery gives up", transient, nil, 5, 5,
			outcome.Decision{Kind: outcome.GaveUp, Action: outcome.Term, Fail: true,
				Reason: "gave up after 5 attempts: proving failed: prove: timed out after 1s"}},
		{"shutdown hands back at once", errors.New("prove: stopped"), outcome.ErrShutdown, 4, 5,
			outcome.Decision{Kind: outcome.Interrupted, Action: outcome.Nak, Reason: "worker shutting down"}},
		{"shutdown on the last delivery gives up (a Nak would strand it)", errors.New("prove: stopped"), outcome.ErrShutdown, 5, 5,
			outcome.Decision{Kind: outcome.GaveUp, Action: outcome.Term, Fail: true, Reason: "gave up after 5 attempts: interrupted by worker shutdown"}},
		{"shutdown beats rejection", outcome.Reject("x", nil), outcome.ErrShutdown, 1, 5,
			outcome.Decision{Kind: outcome.Interrupted, Action: outcome.Nak, Reason: "worker shutting down"}},
		{"cancel", errors.New("prove: stopped"), outcome.ErrCancelled, 1, 5,
			outcome.Decision{Kind: outcome.Cancelled, Action: outcome.DoubleAck, Reason: "cancelled", Fail: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := outcome.Decide(tc.err, tc.cause, tc.attempt, tc.maxDeliver, b); got != tc.want {
				t.Fatalf("Decide =\n %+v, want\n %+v", got, tc.want)
			}
		})
	}
}

func TestRecovered(t *testing.T) {
	t.Parallel()
	b := outcome.Backoff{Base: time.Second, Max: time.Minute}
	dbDown := errors.New("database down")
	rejected := outcome.Decide(outcome.Reject("bad input", nil), nil, 1, 3, b)
	gaveUp := outcome.Decide(errors.New("boom"), nil, 3, 3, b)
	cancelled := outcome.Decide(errors.New("stopped"), outcome.ErrCancelled, 1, 3, b)
	tests := []struct {
		name    string
		d       outcome.Decision
		err     error
		attempt int
		want    outcome.Decision
	}{
		{"recorded: unchanged", rejected, nil, 1, rejected},
		{"rejection not recorded: retry to record it", rejected, dbDown, 1,
			outcome.Decision{Kind: outcome.Retried, Action: outcome.NakWithDelay, Delay: time.Second, Reason: "could not record failure: bad input"}},
		{"rejection on last delivery: handed back for the rescuer, not terminated", rejected, dbDown, 3,
			outcome.Decision{Kind: outcome.Unrecorded, Action: outcome.Nak, Reason: "could not record failure: bad input"}},
		{"give-up not recorded: handed back for the rescuer, not terminated", gaveUp, dbDown, 3,
			outcome.Decision{Kind: outcome.Unrecorded, Action: outcome.Nak, Reason: "could not record failure: gave up after 3 attempts: boom"}},
		{"cancel not recorded: acknowledged (the frontend recorded it)", cancelled, dbDown, 1, cancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := outcome.Recovered(tc.d, tc.err, tc.attempt, 3, b); got != tc.want {
				t.Fatalf("Recovered = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReasonBounded(t *testing.T) {
	t.Parallel()
	d := outcome.Decide(outcome.Reject(strings.Repeat("é", 2000), nil), nil, 1, 1, outcome.Backoff{})
	if len(d.Reason) > outcome.MaxReasonBytes || !strings.HasSuffix(d.Reason, "…") || !strings.HasPrefix(d.Reason, "éé") {
		t.Fatalf("reason of %d bytes: %q…", len(d.Reason), d.Reason[:10])
	}
	for _, r := range d.Reason {
		if r == '\uFFFD' {
			t.Fatal("reason cut inside a rune")
		}
	}
}

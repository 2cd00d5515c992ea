// Package outcome decides, in one place, what a proof job's result means for
// its JetStream message and its status row.
//
// The job code returns typed errors; Decide turns an error (plus why the
// job's context ended, the delivery count and the consumer's MaxDeliver) into
// exactly one Decision:
//
//	result                                   kind         row                          message
//	nil (proof verified and recorded)        Proved       status 2 (already written)   DoubleAck
//	ErrAlreadyDone (row terminal)            AlreadyDone  untouched                    DoubleAck
//	Reject(...) (bad job, bad input)         Rejected     status 3, reason             TermWithReason
//	any other error, deliveries left         Retry        untouched                    NakWithDelay(backoff)
//	any other error, last delivery           GaveUp       status 3, "gave up after …"  TermWithReason
//	context ended by ErrShutdown             Interrupted  untouched                    Nak (at once)
//	  … on the last delivery                 GaveUp       status 3, "gave up after …"  TermWithReason
//	context ended by ErrCancelled            Cancelled    status 3 "cancelled" if open DoubleAck
//
// and, after a status 3 write that failed (Recovered):
//
//	rejected, deliveries left                Retried      untouched                    NakWithDelay(backoff)
//	anything on the last delivery            Unrecorded   untouched                    Nak
//
// "Any other error" includes a proof that does not verify: the witness
// generator has already checked the constraints, so a bad proof points at the
// prover or its key (provers have been seen to write such proofs), and
// another attempt, maybe on another machine, may succeed. It includes a
// sealed blob that does not open with this worker's fleet key, so a worker
// with a stale key hands the job on instead of failing it, and a circuit or
// key this worker does not have.
//
// Every status 3 write is guarded in SQL (only rows still 0 or 1), so a
// cancel written by the frontend, or a proof written by another worker, is
// never overwritten. A job is never terminated unrecorded: when a status 3
// write fails (the worker's store waits out an outage, so this is a
// shutdown during one, or a store that refuses the write), Recovered turns
// the decision into a retry, and on the last delivery into a Nak that
// JetStream does not follow with another delivery: it publishes a
// max-deliveries advisory instead, which waits in the advisory stream until
// a worker's rescuer records the failure (worker/internal/rescue), and the
// reconciler is the backstop. A terminated message is gone from the stream,
// and nothing would ever close its row.
package outcome

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	// ErrAlreadyDone: the status row is terminal (proved, failed or
	// cancelled), so there is nothing left to do for this message.
	ErrAlreadyDone = errors.New("job already finished")
	// ErrShutdown is the cause of a job context cancelled because the
	// worker is stopping.
	ErrShutdown = errors.New("worker shutting down")
	// ErrCancelled is the cause of a job context cancelled because the
	// request was cancelled.
	ErrCancelled = errors.New("cancelled")
)

// RejectError is a permanent failure: the job or its input is bad, and no
// retry can succeed.
type RejectError struct {
	Reason string
	Err    error
}

func (e *RejectError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *RejectError) Unwrap() error { return e.Err }

// Reject marks err as a permanent failure with a reason fit for the status
// row (no personal data, no internals).
func Reject(reason string, err error) error { return &RejectError{Reason: reason, Err: err} }

// RetryError is transient trouble with a reason fit for the status row. Any
// error that is not a RejectError is transient; wrapping it only chooses the
// reason that is recorded if the job finally gives up.
type RetryError struct {
	Reason string
	Err    error
}

func (e *RetryError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *RetryError) Unwrap() error { return e.Err }

// Retry marks err as transient with the given reason.
func Retry(reason string, err error) error { return &RetryError{Reason: reason, Err: err} }

// Kind is what happened to a job.
type Kind int

// The kinds of outcome.
const (
	Proved Kind = iota
	AlreadyDone
	Rejected
	Retried
	GaveUp
	Interrupted
	Cancelled
	Unrecorded
)

// String is the metric label of the kind.
func (k Kind) String() string {
	switch k {
	case Proved:
		return "proved"
	case AlreadyDone:
		return "already_done"
	case Rejected:
		return "rejected"
	case Retried:
		return "retried"
	case GaveUp:
		return "gave_up"
	case Interrupted:
		return "interrupted"
	case Cancelled:
		return "cancelled"
	case Unrecorded:
		return "unrecorded"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Kinds lists every kind (to pre-create metric series).
func Kinds() []Kind {
	return []Kind{Proved, AlreadyDone, Rejected, Retried, GaveUp, Interrupted, Cancelled, Unrecorded}
}

// Action is what is done with the JetStream message.
type Action int

// The acknowledgements.
const (
	DoubleAck Action = iota
	Term
	Nak
	NakWithDelay
)

func (a Action) String() string {
	switch a {
	case DoubleAck:
		return "ack"
	case Term:
		return "term"
	case Nak:
		return "nak"
	case NakWithDelay:
		return "nak_delay"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Decision is the one thing done about a job's result.
type Decision struct {
	Kind   Kind
	Action Action
	// Delay before redelivery (NakWithDelay).
	Delay time.Duration
	// Reason explains a failure: the status row's reason and the
	// TermWithReason text. Empty on success.
	Reason string
	// Fail asks for status 3 with Reason (a guarded write).
	Fail bool
}

// Backoff is the redelivery delay after a transient failure:
// Base·2^(attempt−1), at most Max.
type Backoff struct {
	Base, Max time.Duration
}

// Delay is the wait before delivery attempt+1.
func (b Backoff) Delay(attempt int) time.Duration {
	if b.Base <= 0 {
		return 0
	}
	d := b.Base
	for i := 1; i < attempt && (b.Max <= 0 || d < b.Max); i++ {
		d *= 2
	}
	if b.Max > 0 && d > b.Max {
		d = b.Max
	}
	return d
}

// MaxReasonBytes bounds a recorded reason.
const MaxReasonBytes = 1024

// Decide maps a job's result to its Decision. err is what the job returned,
// cause is context.Cause of the job's context (nil if it did not end),
// attempt is the delivery count (1 for the first delivery) and maxDeliver
// the consumer's limit (≤ 0: unlimited).
func Decide(err, cause error, attempt, maxDeliver int, b Backoff) Decision {
	switch {
	case err == nil:
		return Decision{Kind: Proved, Action: DoubleAck}
	case errors.Is(cause, ErrCancelled):
		return Decision{Kind: Cancelled, Action: DoubleAck, Reason: "cancelled", Fail: true}
	case errors.Is(cause, ErrShutdown):
		if maxDeliver > 0 && attempt >= maxDeliver {
			// JetStream would not deliver it again: a Nak would leave the
			// job stuck in the stream and its row open forever.
			return Decision{Kind: GaveUp, Action: Term, Fail: true,
				Reason: fmt.Sprintf("gave up after %d attempts: interrupted by worker shutdown", attempt)}
		}
		return Decision{Kind: Interrupted, Action: Nak, Reason: ErrShutdown.Error()}
	case errors.Is(err, ErrAlreadyDone):
		return Decision{Kind: AlreadyDone, Action: DoubleAck}
	}
	var rej *RejectError
	if errors.As(err, &rej) {
		return Decision{Kind: Rejected, Action: Term, Reason: clip(rej.Reason), Fail: true}
	}
	reason := err.Error()
	var re *RetryError
	if errors.As(err, &re) {
		reason = re.Reason
	}
	if maxDeliver > 0 && attempt >= maxDeliver {
		return Decision{Kind: GaveUp, Action: Term, Fail: true,
			Reason: clip(fmt.Sprintf("gave up after %d attempts: %s", attempt, reason))}
	}
	return Decision{Kind: Retried, Action: NakWithDelay, Delay: b.Delay(attempt), Reason: clip(reason)}
}

// Recovered is the decision to take instead of d when d's status 3 write
// failed with recordErr. The message is never terminated unrecorded (a
// terminated job is deleted from the stream, and nothing would close the
// row): on the last delivery it is handed back with Nak, which JetStream
// answers with a max-deliveries advisory that the rescuer acts on once the
// store answers (Unrecorded); before it, a rejection is retried so that a
// later delivery records it. A cancel is acknowledged anyway, since the
// frontend records cancels itself before it announces them.
func Recovered(d Decision, recordErr error, attempt, maxDeliver int, b Backoff) Decision {
	if !d.Fail || recordErr == nil || d.Kind == Cancelled {
		return d
	}
	if maxDeliver > 0 && attempt >= maxDeliver {
		return Decision{Kind: Unrecorded, Action: Nak, Reason: clip("could not record failure: " + d.Reason)}
	}
	return Decision{Kind: Retried, Action: NakWithDelay, Delay: b.Delay(attempt),
		Reason: clip("could not record failure: " + d.Reason)}
}

// clip bounds a reason to MaxReasonBytes on a UTF-8 boundary.
func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) <= MaxReasonBytes {
		return s
	}
	cut := MaxReasonBytes - len("…")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

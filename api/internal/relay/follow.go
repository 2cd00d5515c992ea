package relay

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/openpassport/prover-fleet/api/internal/pgnotify"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

// Outcomes of a subscription (Observer.SubscriptionEnded).
const (
	// OutcomeFinal: a final status (3, 4, 5) was sent.
	OutcomeFinal = "final"
	// OutcomeNotFound: no row appeared within Config.UnknownGrace.
	OutcomeNotFound = "not_found"
	// OutcomeInvalid: the argument was not a UUID.
	OutcomeInvalid = "invalid"
	// OutcomeRefused: too many subscriptions on the connection, or the
	// relay could not subscribe to status events.
	OutcomeRefused = "refused"
	// OutcomeLingerExpired: the row stayed at 2 for Config.Linger.
	OutcomeLingerExpired = "linger_expired"
	// OutcomeMaxWait: no final status within Config.MaxWait.
	OutcomeMaxWait = "max_wait"
	// OutcomeClosed: the client unsubscribed or disconnected, or the relay
	// shut down.
	OutcomeClosed = "closed"
)

// follower follows one request for one subscription. Hints come from two
// sources, a NATS status event or a status_update notification, on their
// own goroutines; they are noted without blocking and coalesced to the
// furthest, and run takes them from there. A hint that carries what a
// Message needs is sent as it is; any other hint (a notification of a
// large row, a failure event without its reason, a (re)connection of the
// listener) re-reads the row.
type follower struct {
	r    *Relay
	id   string
	wake chan struct{}

	mu     sync.Mutex
	hint   *Message // the furthest usable hint not yet looked at
	reread bool     // a hint came that only a read can answer
}

func newFollower(r *Relay, id string) *follower {
	return &follower{r: r, id: id, wake: make(chan struct{}, 1)}
}

// note records a hint: m when usable, else a re-read.
func (f *follower) note(m Message, usable bool) {
	f.mu.Lock()
	if usable {
		if f.hint == nil || rank(m.Status) > rank(f.hint.Status) {
			f.hint = &m
		}
	} else {
		f.reread = true
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default: // a wake-up is pending; it sees this hint too
	}
}

// onEvent takes a worker's NATS status event. Events of 0..2 need no
// reason (those rows have none); a failure event carries its reason in
// its Row; anything else is re-read.
func (f *follower) onEvent(ev job.StatusEvent) {
	switch {
	case ev.Status >= status.Pending && ev.Status <= status.ProofGenerated:
		f.note(newMessage(f.id, ev.Status, ""), true)
	case ev.Status == status.Failed && ev.Row != nil:
		f.note(newMessage(f.id, ev.Status, ev.Row.Reason), true)
	default:
		f.note(Message{}, false)
	}
}

// onNotice takes a status_update notification.
func (f *follower) onNotice(n pgnotify.Notification) {
	if n.Missed || n.Truncated {
		f.note(Message{}, false)
		return
	}
	reason := ""
	if n.Reason != nil {
		reason = *n.Reason
	}
	f.note(newMessage(f.id, n.Status, reason), true)
}

// take returns the pending hint and whether a re-read is wanted.
func (f *follower) take() (*Message, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, rr := f.hint, f.reread
	f.hint, f.reread = nil, false
	return h, rr
}

// errNotFound is read's answer for a request without a row.
var errNotFound = errors.New("relay: no such request")

// read reads the row, retrying a failing database a few times.
func (f *follower) read(ctx context.Context) (Message, error) {
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return Message{}, ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		rctx, cancel := context.WithTimeout(ctx, f.r.cfg.ReadTimeout)
		var p store.Proof
		p, err = f.r.d.Rows.Get(rctx, f.id)
		cancel()
		switch {
		case err == nil:
			return messageOf(p), nil
		case errors.Is(err, store.ErrNotFound):
			return Message{}, errNotFound
		case ctx.Err() != nil:
			return Message{}, ctx.Err()
		}
	}
	return Message{}, err
}

// run sends the row's current status, then every further status, until a
// final one, and returns the subscription's outcome. It gives up on the
// request after Config.UnknownGrace without a row (sending a not-found
// Message), Config.Linger at status 2, or Config.MaxWait in all; ctx ends
// it quietly (OutcomeClosed). send failing ends it too.
//
// The sources were subscribed before run is called, so a change between
// them and the first read is not missed.
func (f *follower) run(ctx context.Context, send func(Message) error) (string, error) {
	cfg := f.r.cfg
	last := -1 // rank of the last status sent
	maxWait := time.NewTimer(cfg.MaxWait)
	defer maxWait.Stop()
	var (
		linger, unknown <-chan time.Time
		recheck         <-chan time.Time
	)
	if cfg.Recheck > 0 {
		t := time.NewTicker(cfg.Recheck)
		defer t.Stop()
		recheck = t.C
	}
	// pass sends m when it is further than the last status sent and reports
	// whether the subscription is over.
	pass := func(m Message) (bool, error) {
		if rank(m.Status) <= last {
			return false, nil
		}
		if err := send(m); err != nil {
			return true, err
		}
		last = rank(m.Status)
		if m.Status == status.ProofGenerated && linger == nil {
			linger = time.After(cfg.Linger)
		}
		unknown = nil
		return final(m.Status), nil
	}
	// look reads the row and passes it on. Without a row, and nothing sent
	// yet, the grace period for it to appear starts.
	look := func() (bool, error) {
		m, err := f.read(ctx)
		switch {
		case errors.Is(err, errNotFound):
			if last < 0 && unknown == nil {
				unknown = time.After(cfg.UnknownGrace)
			}
			return false, nil
		case err != nil:
			if ctx.Err() == nil {
				f.r.log.WarnContext(ctx, "status read failed; waiting for the next hint", "request_id", f.id, "err", err)
			}
			return false, nil
		}
		return pass(m)
	}
	done, err := look()
	for !done && err == nil {
		select {
		case <-ctx.Done():
			return OutcomeClosed, nil
		case <-f.wake:
			h, reread := f.take()
			if h != nil {
				done, err = pass(*h)
			}
			if reread && !done && err == nil {
				done, err = look()
			}
		case <-recheck:
			done, err = look()
		case <-unknown:
			done, err = look()
			if !done && err == nil && last < 0 {
				err = send(Message{UUID: f.id, Status: status.Failed, ErrorCode: CodeUUIDNotFound, Reason: "UUID not found"})
				return OutcomeNotFound, err
			}
		case <-linger:
			if done, err = look(); !done && err == nil {
				return OutcomeLingerExpired, nil
			}
		case <-maxWait.C:
			if done, err = look(); !done && err == nil {
				return OutcomeMaxWait, nil
			}
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return OutcomeClosed, nil
		}
		return OutcomeClosed, err
	}
	return OutcomeFinal, nil
}

package intake

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/status"
)

// Watch follows one request's status. A status event that carries what its
// write left in the row (job.StatusEvent.Complete) is passed on as it is,
// without reading the row; any other event (an older publisher's, or one
// this watch cannot complete) only says "look again", and the row is
// re-read.
//
// A status is passed on only when it is further than the last one passed
// on: pending, then witness generated, then a terminal status. An event for
// an earlier or the same status (a late or redelivered job's announcement)
// is dropped, as the row's guarded writes drop such a write. Events that
// arrive faster than they are passed on are coalesced to the furthest one,
// so a quick 0→1→2 may be seen as 0→2; the terminal status is always
// delivered and ends the watch. Nothing polls Postgres: without events, a
// Watch waits.
type Watch struct {
	s       *Service
	id      string
	current protocol.Status
	wake    chan struct{}
	stop    func()

	mu      sync.Mutex
	pending *job.StatusEvent // the furthest complete event not yet looked at
	reread  bool             // an event came that can only be answered by a read
}

// Subscribe starts watching id: it subscribes to id's status events first
// and reads the row after, so no change between the two is missed. The
// caller sends Current to the client, then runs Forward (or Close).
func (s *Service) Subscribe(ctx context.Context, id string) (*Watch, error) {
	id, err := ParseUUID(id)
	if err != nil {
		return nil, err
	}
	w := &Watch{s: s, id: id, wake: make(chan struct{}, 1)}
	unsub, err := s.d.Events.SubscribeStatus(id, w.note)
	if err != nil {
		return nil, &InternalError{Public: "Could not subscribe, retry later", Err: err}
	}
	w.stop = unsub
	rctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	w.current, err = s.get(rctx, id)
	if err != nil {
		unsub()
		return nil, err
	}
	return w, nil
}

// note takes an event in (on the subscription's goroutine, so it never
// blocks) and wakes Forward.
func (w *Watch) note(ev job.StatusEvent) {
	w.mu.Lock()
	if ev.Complete() {
		if w.pending == nil || stage(ev.Status) > stage(w.pending.Status) {
			w.pending = &ev
		}
	} else {
		w.reread = true
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is already pending; it will see this event too
	}
}

// stage orders statuses as a row moves through them: pending, witness
// generated, then one terminal status (the prover's, or a downstream
// verifier's after it) that ends a watch.
func stage(c status.Code) status.Code { return min(c, status.ProofGenerated) }

// Current is the status read when the watch started.
func (w *Watch) Current() protocol.Status { return w.current }

// Close stops the watch. It is safe to call more than once.
func (w *Watch) Close() {
	if w.stop != nil {
		w.stop()
		w.stop = nil
	}
}

// readRetries bounds the re-reads of a row after one event when Postgres
// fails; the next event tries again.
const readRetries = 3

// Forward calls send with every status change after Current until a
// terminal status has been sent, ctx is done or send fails. It closes the
// watch when it returns.
func (w *Watch) Forward(ctx context.Context, send func(protocol.Status) error) error {
	defer w.Close()
	last := w.current
	if last.Terminal() {
		return nil
	}
	// pass sends st if it is further than the last status sent and reports
	// whether the watch is over.
	pass := func(st protocol.Status) (bool, error) {
		if stage(st.Status) <= stage(last.Status) {
			return false, nil
		}
		if err := send(st); err != nil {
			return true, fmt.Errorf("intake: send status of %s: %w", w.id, err)
		}
		last = st
		return st.Terminal(), nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.wake:
		}
		w.mu.Lock()
		ev, reread := w.pending, w.reread
		w.pending, w.reread = nil, false
		w.mu.Unlock()

		if ev != nil && stage(ev.Status) > stage(last.Status) {
			if st, ok := fromEvent(last, *ev); ok {
				if done, err := pass(st); done || err != nil {
					return err
				}
			} else {
				reread = true
			}
		}
		if !reread {
			continue
		}
		st, err := w.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.s.log.WarnContext(ctx, "status re-read failed", "request_id", w.id, "err", err)
			continue
		}
		if done, err := pass(st); done || err != nil {
			return err
		}
	}
}

// fromEvent is the status a re-read would give after the complete event ev,
// built from last (the status last sent, which holds the fields no status
// change touches) the way StatusOf builds it from the row. It is not ok
// when last does not hold what ev leaves out: a failed write keeps the
// row's witness time, which last knows only once it is witness generated
// (before that, the row may have moved to 1 without this watch seeing it).
func fromEvent(last protocol.Status, ev job.StatusEvent) (protocol.Status, bool) {
	st := last
	st.Status = ev.Status
	st.Proof, st.PublicInputs, st.Reason = nil, nil, nil
	r := ev.Row
	switch ev.Status {
	case status.WitnessGenerated:
		st.WitnessGeneratedAt = utc(r.WitnessGeneratedAt)
	case status.ProofGenerated:
		st.WitnessGeneratedAt, st.ProofGeneratedAt = utc(r.WitnessGeneratedAt), utc(r.ProofGeneratedAt)
		st.Proof, st.PublicInputs = r.Proof, r.PublicInputs
		if st.PublicInputs == nil {
			st.PublicInputs = []string{} // as the store writes none
		}
	case status.Failed:
		if last.Status != status.WitnessGenerated {
			return protocol.Status{}, false
		}
	default:
		return protocol.Status{}, false
	}
	if r.Reason != "" {
		reason := r.Reason
		st.Reason = &reason
	}
	return st, true
}

func (w *Watch) read(ctx context.Context) (protocol.Status, error) {
	var err error
	for attempt := range readRetries {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return protocol.Status{}, ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var st protocol.Status
		st, err = w.s.get(rctx, w.id)
		cancel()
		if err == nil || errors.Is(err, ErrNotFound) {
			return st, err
		}
	}
	return protocol.Status{}, err
}

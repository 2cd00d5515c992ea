package intake

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/shared/job"
)

// Watch follows one request's status. Status events from NATS only say
// "look again": for each one the row is re-read, and a status is passed on
// when it differs from the last one passed on. Events that arrive faster
// than rows are read are coalesced, so a quick 0→1→2 may be seen as 0→2;
// the terminal status is always delivered. Nothing polls Postgres: without
// events, a Watch waits.
type Watch struct {
	s       *Service
	id      string
	current protocol.Status
	wake    chan struct{}
	stop    func()
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
	unsub, err := s.d.Events.SubscribeStatus(id, func(job.StatusEvent) {
		select {
		case w.wake <- struct{}{}:
		default: // a wake-up is already pending; the re-read will see this change too
		}
	})
	if err != nil {
		return nil, &InternalError{Public: "Could not subscribe, retry later", Err: err}
	}
	w.stop = unsub
	w.current, err = s.get(ctx, id)
	if err != nil {
		unsub()
		return nil, err
	}
	return w, nil
}

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
	last := w.current.Status
	if w.current.Terminal() {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.wake:
		}
		st, err := w.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.s.log.WarnContext(ctx, "status re-read failed", "request_id", w.id, "err", err)
			continue
		}
		if st.Status == last {
			continue
		}
		if err := send(st); err != nil {
			return fmt.Errorf("intake: send status of %s: %w", w.id, err)
		}
		last = st.Status
		if st.Terminal() {
			return nil
		}
	}
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

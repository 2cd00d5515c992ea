package intake

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// group runs concurrent calls of one kind (recording a request, looking
// one up) in shared round trips, a small group commit without a timer.
//
// A call joins the group's queue and then competes for one of its slots;
// whichever waiting caller gets a slot runs everything queued (up to max)
// as one batch. With a slot free, a lone call runs at once and alone, so a
// single request waits no longer than before; batches form only from the
// calls that arrive while the slots are busy. There is no goroutine of its
// own: every queued call's caller is in do, so nothing is left behind when
// the callers return (a server's shutdown, which waits for its calls,
// drains it).
//
// Each call gets its own result. A call whose ctx ends while it is still
// queued leaves the queue and returns ctx.Err(): nothing was done for it.
// Once in a batch it waits for the batch's outcome, so that the caller
// always knows whether its write happened. A batch runs under a context
// that ends when every call in it has given up (deadline or cancel).
type group[In, Out any] struct {
	run   func(ctx context.Context, in []In) ([]Out, []error)
	max   int
	slots chan struct{}
	// weigh and maxWeight, when set, also bound a batch by the sum of its
	// calls' weights (a batch always takes its first call).
	weigh     func(In) int
	maxWeight int

	mu    sync.Mutex
	queue []*groupCall[In, Out]
}

type groupCall[In, Out any] struct {
	ctx  context.Context
	in   In
	out  Out
	err  error
	done chan struct{} // closed once out and err are set
}

// newGroup returns a group that runs at most slots batches at once, of at
// most max calls each. run must return one Out and one error per In.
func newGroup[In, Out any](slots, max int, run func(ctx context.Context, in []In) ([]Out, []error)) *group[In, Out] {
	return &group[In, Out]{run: run, max: max, slots: make(chan struct{}, slots)}
}

// do runs in as part of a batch and returns its result.
func (g *group[In, Out]) do(ctx context.Context, in In) (Out, error) {
	return g.await(g.enqueue(ctx, in))
}

// enqueue queues in and returns at once: a batch that another caller runs
// meanwhile may take it. The caller must then await the call, or abandon
// it.
func (g *group[In, Out]) enqueue(ctx context.Context, in In) *groupCall[In, Out] {
	c := &groupCall[In, Out]{ctx: ctx, in: in, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	g.mu.Unlock()
	return c
}

// abandon gives up a call that will not be awaited: it leaves the queue,
// or, if a batch already took it, that batch finishes it for nobody.
func (g *group[In, Out]) abandon(c *groupCall[In, Out]) { g.remove(c) }

// await waits for c's result, running a batch itself when it gets a slot
// while c is still queued.
func (g *group[In, Out]) await(c *groupCall[In, Out]) (Out, error) {
	ctx := c.ctx
	for {
		select {
		case <-c.done:
			return c.out, c.err
		case <-ctx.Done():
			if g.remove(c) {
				var zero Out
				return zero, ctx.Err()
			}
			<-c.done // in a batch already: its outcome decides
			return c.out, c.err
		case g.slots <- struct{}{}:
			// Run a batch only while this call is still queued; if another
			// caller took it, that caller's batch answers it.
			if batch := g.take(c); batch != nil {
				g.flush(batch)
			}
			<-g.slots
		}
	}
}

// take removes up to max calls from the front of the queue if c is still
// queued, and returns nil otherwise.
func (g *group[In, Out]) take(c *groupCall[In, Out]) []*groupCall[In, Out] {
	g.mu.Lock()
	defer g.mu.Unlock()
	queued := false
	for _, q := range g.queue {
		if q == c {
			queued = true
			break
		}
	}
	if !queued {
		return nil
	}
	n := min(len(g.queue), g.max)
	if g.weigh != nil {
		w := 0
		for i := 0; i < n; i++ {
			w += g.weigh(g.queue[i].in)
			if i > 0 && w > g.maxWeight {
				n = i
				break
			}
		}
	}
	batch := make([]*groupCall[In, Out], n)
	copy(batch, g.queue)
	rest := copy(g.queue, g.queue[n:])
	clear(g.queue[rest:])
	g.queue = g.queue[:rest]
	return batch
}

// remove takes c out of the queue; false if it was not there (taken).
func (g *group[In, Out]) remove(c *groupCall[In, Out]) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, q := range g.queue {
		if q == c {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			return true
		}
	}
	return false
}

// flush runs one batch and hands each call its result. If run panics, the
// other calls of the batch get an error and the panic goes on in this
// caller (the transport recovers it), so no caller waits forever.
func (g *group[In, Out]) flush(batch []*groupCall[In, Out]) {
	answered := false
	defer func() {
		if !answered {
			for _, c := range batch {
				c.err = errBatchPanicked
				close(c.done)
			}
		}
	}()
	ctx, stop := batchContext(batch)
	defer stop()
	in := make([]In, len(batch))
	for i, c := range batch {
		in[i] = c.in
	}
	outs, errs := g.run(ctx, in)
	var mismatch error
	if len(outs) != len(in) || len(errs) != len(in) {
		mismatch = fmt.Errorf("intake: a batch of %d gave %d results and %d errors", len(in), len(outs), len(errs))
	}
	answered = true
	for i, c := range batch {
		if mismatch != nil {
			c.err = mismatch
		} else {
			c.out, c.err = outs[i], errs[i]
		}
		close(c.done)
	}
}

var errBatchPanicked = errors.New("intake: the batch this call was in panicked")

// batchContext keeps the values of the first call's context and ends when
// every call's context has ended.
func batchContext[In, Out any](batch []*groupCall[In, Out]) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(batch[0].ctx))
	var left atomic.Int64
	left.Store(int64(len(batch)))
	stops := make([]func() bool, len(batch))
	for i, c := range batch {
		stops[i] = context.AfterFunc(c.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

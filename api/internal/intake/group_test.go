package intake

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
)

// recorder is a group's run function that records its batches, can be held
// at a gate, and fails odd inputs.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	gate    chan struct{} // nil: run at once
	started chan []int    // told each batch as it starts, if not nil
	ctxs    chan context.Context
}

var errOdd = errors.New("odd input")

func (r *recorder) run(ctx context.Context, in []int) ([]int, []error) {
	r.mu.Lock()
	r.batches = append(r.batches, slices.Clone(in))
	r.mu.Unlock()
	if r.started != nil {
		r.started <- slices.Clone(in)
	}
	if r.ctxs != nil {
		r.ctxs <- ctx
	}
	if r.gate != nil {
		<-r.gate
	}
	outs, errs := make([]int, len(in)), make([]error, len(in))
	for i, v := range in {
		outs[i] = v * 10
		if v%2 == 1 {
			errs[i] = fmt.Errorf("%w: %d", errOdd, v)
		}
	}
	return outs, errs
}

func (r *recorder) all() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

// waitQueued waits until n calls are queued in g.
func waitQueued[In, Out any](t *testing.T, g *group[In, Out], n int) {
	t.Helper()
	for {
		g.mu.Lock()
		l := len(g.queue)
		g.mu.Unlock()
		if l == n {
			return
		}
		if l > n {
			t.Fatalf("%d calls queued, want %d", l, n)
		}
		runtime.Gosched()
	}
}

type result struct {
	in, out int
	err     error
}

func TestGroupLoneCallRunsAlone(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	g := newGroup(2, 8, r.run)
	for _, v := range []int{2, 3} {
		out, err := g.do(t.Context(), v)
		if out != v*10 || (v%2 == 1) != errors.Is(err, errOdd) {
			t.Fatalf("do(%d) = %d, %v", v, out, err)
		}
	}
	if got, want := r.all(), [][]int{{2}, {3}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("batches = %v, want %v", got, want)
	}
}

// While the one slot is busy, the calls that arrive share the next batch,
// and each gets its own result and error.
func TestGroupBatchesWhileBusy(t *testing.T) {
	t.Parallel()
	r := &recorder{gate: make(chan struct{}), started: make(chan []int, 10)}
	g := newGroup(1, 8, r.run)
	results := make(chan result, 10)
	call := func(v int) {
		out, err := g.do(t.Context(), v)
		results <- result{v, out, err}
	}
	go call(100)
	<-r.started // the first batch holds the slot
	for v := range 5 {
		go call(v)
	}
	waitQueued(t, g, 5)
	close(r.gate)
	second := <-r.started
	slices.Sort(second)
	if !slices.Equal(second, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("second batch = %v, want all five waiting calls", second)
	}
	for range 6 {
		res := <-results
		if res.out != res.in*10 || (res.in%2 == 1) != errors.Is(res.err, errOdd) {
			t.Errorf("do(%d) = %d, %v", res.in, res.out, res.err)
		}
	}
}

func TestGroupMaxBoundsBatches(t *testing.T) {
	t.Parallel()
	r := &recorder{gate: make(chan struct{}), started: make(chan []int, 10)}
	g := newGroup(1, 3, r.run)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = g.do(t.Context(), 100) })
	<-r.started
	for v := range 7 {
		wg.Go(func() { _, _ = g.do(t.Context(), v) })
	}
	waitQueued(t, g, 7)
	close(r.gate)
	wg.Wait()
	seen := 0
	for _, b := range r.all() {
		if len(b) > 3 {
			t.Errorf("batch %v is over the maximum of 3", b)
		}
		seen += len(b)
	}
	if seen != 8 {
		t.Fatalf("%d calls ran, want 8: %v", seen, r.all())
	}
}

// With weights, a batch stops before it passes the maximum weight, but
// always takes one call, however heavy.
func TestGroupWeightBoundsBatches(t *testing.T) {
	t.Parallel()
	r := &recorder{gate: make(chan struct{}), started: make(chan []int, 10)}
	g := newGroup(1, 100, r.run)
	g.weigh = func(v int) int { return v }
	g.maxWeight = 10
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = g.do(t.Context(), 0) })
	<-r.started
	for _, v := range []int{4, 4, 4, 30, 2} {
		wg.Go(func() { _, _ = g.do(t.Context(), v) })
	}
	waitQueued(t, g, 5)
	close(r.gate)
	wg.Wait()
	seen := 0
	for _, b := range r.all() {
		w := 0
		for _, v := range b {
			w += v
		}
		if len(b) > 1 && w > 10 {
			t.Errorf("batch %v weighs %d, over the maximum of 10", b, w)
		}
		seen += len(b)
	}
	if seen != 6 {
		t.Fatalf("%d calls ran, want 6: %v", seen, r.all())
	}
}

// A call cancelled while queued leaves the queue and never runs.
func TestGroupCancelWhileQueued(t *testing.T) {
	t.Parallel()
	r := &recorder{gate: make(chan struct{}), started: make(chan []int, 10)}
	g := newGroup(1, 8, r.run)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := g.do(t.Context(), 100); err != nil {
			t.Errorf("first call: %v", err)
		}
	}()
	<-r.started
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := g.do(ctx, 7)
		errc <- err
	}()
	waitQueued(t, g, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", err)
	}
	waitQueued(t, g, 0)
	close(r.gate)
	<-done
	for _, b := range r.all() {
		if slices.Contains(b, 7) {
			t.Fatalf("the cancelled call ran: %v", r.all())
		}
	}
}

// A call cancelled while its batch runs waits for the batch's outcome; the
// batch's context ends only once every call in it has given up.
func TestGroupCancelInFlight(t *testing.T) {
	t.Parallel()
	r := &recorder{gate: make(chan struct{}), started: make(chan []int, 10), ctxs: make(chan context.Context, 10)}
	g := newGroup(1, 8, r.run)
	// Hold the slot so that the next two calls share a batch.
	go func() { _, _ = g.do(t.Context(), 100) }()
	<-r.started
	<-r.ctxs
	ctxA, cancelA := context.WithCancel(t.Context())
	ctxB, cancelB := context.WithCancel(t.Context())
	type res struct {
		out int
		err error
	}
	a, b := make(chan res, 1), make(chan res, 1)
	go func() { out, err := g.do(ctxA, 2); a <- res{out, err} }()
	waitQueued(t, g, 1)
	go func() { out, err := g.do(ctxB, 4); b <- res{out, err} }()
	waitQueued(t, g, 2)
	r.gate <- struct{}{} // the first batch ends
	if got := <-r.started; len(got) != 2 {
		t.Fatalf("batch = %v, want the two calls", got)
	}
	batchCtx := <-r.ctxs
	cancelA()
	select {
	case <-batchCtx.Done():
		t.Fatal("the batch's context ended while a call in it still waits")
	default:
	}
	cancelB()
	<-batchCtx.Done()
	close(r.gate)
	for _, c := range []struct {
		ch   chan res
		want int
	}{{a, 20}, {b, 40}} {
		got := <-c.ch
		if got.err != nil || got.out != c.want {
			t.Errorf("in-flight call = %d, %v, want its batch's result %d", got.out, got.err, c.want)
		}
	}
}

// A panic in a batch reaches the caller that ran it; the others get an
// error instead of waiting forever.
func TestGroupPanic(t *testing.T) {
	t.Parallel()
	gate, started := make(chan struct{}), make(chan struct{}, 10)
	g := newGroup(1, 8, func(_ context.Context, in []int) ([]int, []error) {
		started <- struct{}{}
		<-gate
		if slices.Contains(in, 1) {
			panic("boom")
		}
		return make([]int, len(in)), make([]error, len(in))
	})
	call := func(v int) (err error, panicked bool) {
		defer func() {
			if recover() != nil {
				panicked = true
			}
		}()
		_, err = g.do(t.Context(), v)
		return err, false
	}
	first := make(chan error, 1)
	go func() { err, _ := call(0); first <- err }()
	<-started
	type outcome struct {
		err      error
		panicked bool
	}
	outs := make(chan outcome, 2)
	for _, v := range []int{1, 2} {
		go func() { err, p := call(v); outs <- outcome{err, p} }()
	}
	waitQueued(t, g, 2)
	close(gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	panics, failed := 0, 0
	for range 2 {
		o := <-outs
		switch {
		case o.panicked:
			panics++
		case errors.Is(o.err, errBatchPanicked):
			failed++
		}
	}
	if panics != 1 || failed != 1 {
		t.Fatalf("%d callers panicked and %d got errBatchPanicked, want 1 and 1", panics, failed)
	}
}

// Many callers at once: every call runs exactly once and gets its own
// result, and nothing is left queued when they have all returned.
func TestGroupManyCallers(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	g := newGroup(2, 16, r.run)
	const n = 500
	var wg sync.WaitGroup
	for v := range n {
		wg.Go(func() {
			out, err := g.do(t.Context(), v)
			if out != v*10 || (v%2 == 1) != errors.Is(err, errOdd) {
				t.Errorf("do(%d) = %d, %v", v, out, err)
			}
		})
	}
	wg.Wait()
	waitQueued(t, g, 0)
	count := make(map[int]int)
	for _, b := range r.all() {
		for _, v := range b {
			count[v]++
		}
	}
	for v := range n {
		if count[v] != 1 {
			t.Fatalf("input %d ran %d times", v, count[v])
		}
	}
}

// A queued call that is not awaited yet is answered by the batch another
// caller runs; an abandoned one leaves the queue and is never run.
func TestGroupEnqueueThenAwait(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	g := newGroup(1, 8, r.run)
	early := g.enqueue(t.Context(), 2)
	dropped := g.enqueue(t.Context(), 6)
	g.abandon(dropped)
	if out, err := g.do(t.Context(), 4); out != 40 || err != nil {
		t.Fatalf("do(4) = %d, %v", out, err)
	}
	select {
	case <-early.done:
	default:
		t.Fatal("the batch run by do(4) did not answer the queued call")
	}
	if out, err := g.await(early); out != 20 || err != nil {
		t.Fatalf("await = %d, %v", out, err)
	}
	if got, want := r.all(), [][]int{{2, 4}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("batches = %v, want %v (the abandoned call must not run)", got, want)
	}
	waitQueued(t, g, 0)
}

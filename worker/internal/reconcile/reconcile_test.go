package reconcile_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
	"github.com/openpassport/prover-fleet/worker/internal/reconcile"
	wt "github.com/openpassport/prover-fleet/worker/internal/workertest"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

type env struct {
	*wt.Stack
	stream jetstream.Stream
	cons   jetstream.Consumer // the family consumer (settings)
	worker *jobqueue.Taker    // takes jobs as a worker does
	acted  []string
}

// setup starts the stack with q (defaults when zero) and returns a
// reconciler of fam with no grace and edit applied to its config.
func setup(t *testing.T, q jobqueue.Config, fam family.Family, edit func(*reconcile.Config)) (*env, *reconcile.Reconciler) {
	t.Helper()
	s := wt.Setup(t, q)
	ctx := t.Context()
	stream, err := s.JS.Stream(ctx, s.Queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.JS.Consumer(ctx, s.Queue.Stream, jobqueue.ConsumerName(fam))
	if err != nil {
		t.Fatal(err)
	}
	worker, err := jobqueue.NewTaker(s.JS, jobqueue.TakerConfig{Stream: s.Queue.Stream, Family: fam, Wait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(worker.Stop)
	e := &env{Stack: s, stream: stream, cons: cons, worker: worker}
	return e, e.reconciler(t, fam, edit)
}

func (e *env) reconciler(t *testing.T, fam family.Family, edit func(*reconcile.Config)) *reconcile.Reconciler {
	t.Helper()
	cfg := reconcile.Config{Family: fam, Grace: time.Nanosecond, StuckAfter: time.Nanosecond}
	if edit != nil {
		edit(&cfg)
	}
	r, err := reconcile.New(reconcile.Deps{
		Store: e.Store, Stream: e.stream, Consumer: e.cons, Queue: e.Pub, Events: e.Events, Logger: wt.Discard(),
		Deliveries: jobqueue.Deliveries{JS: e.JS, Stream: e.Queue.Stream, Family: fam},
		Acted:      func(a string) { e.acted = append(e.acted, a) },
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func pass(t *testing.T, r *reconcile.Reconciler) reconcile.Result {
	t.Helper()
	res, err := r.Pass(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (e *env) queued(t *testing.T, fam family.Family, id string) bool {
	t.Helper()
	ok, err := jobqueue.Queued(t.Context(), e.stream, fam, id)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// Requests whose jobs wait behind a backlog, however old, are left alone;
// so is one whose job a worker holds.
func TestBacklogIsNotFailed(t *testing.T) {
	t.Parallel()
	e, r := setup(t, jobqueue.Config{}, family.Register, nil)
	ctx := t.Context()
	var ids []string
	for i := range 20 {
		ids = append(ids, e.Submit("register", "fake_ok", wt.FakeInputs(string(rune('a'+i)))))
	}
	// Hours old, as a long backlog's would be.
	if _, err := e.Pool.Exec(ctx, `UPDATE proofs SET created_at = now() - interval '6 hours'`); err != nil {
		t.Fatal(err)
	}
	// A worker holds the oldest.
	batch, err := e.worker.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		_ = m.InProgress()
	}
	for range 3 {
		res := pass(t, r)
		if res.Checked != 20 || res.Queued != 20 || res.Requeued+res.FailedLost+res.FailedStuck != 0 {
			t.Fatalf("pass over a backlog: %+v", res)
		}
	}
	for _, id := range ids {
		if p, err := e.Store.Get(ctx, id); err != nil || p.Status != status.Pending {
			t.Fatalf("%s: %+v, %v", id, p, err)
		}
	}
	if len(e.acted) != 0 {
		t.Fatalf("actions over a backlog: %v", e.acted)
	}
}

// A job on the stream whose circuit has no consumer (published while NATS
// did not answer the consumer's creation, or the consumer deleted) would
// never be taken: a pass creates the consumer, once, and a worker then
// takes the job.
func TestQueuedJobWithoutConsumerGetsOne(t *testing.T) {
	t.Parallel()
	e, r := setup(t, jobqueue.Config{}, family.Register, nil)
	ctx := t.Context()
	id := e.Submit("register", "orphan_ok", wt.FakeInputs("1"))
	name := jobqueue.CircuitConsumerName(family.Register, "orphan_ok")
	if err := e.JS.DeleteConsumer(ctx, e.Queue.Stream, name); err != nil {
		t.Fatal(err)
	}
	if res := pass(t, r); res.Queued != 1 || res.ConsumersCreated != 1 || res.Requeued+res.FailedLost+res.FailedStuck != 0 {
		t.Fatalf("pass over a job without a consumer: %+v", res)
	}
	c, err := e.JS.Consumer(ctx, e.Queue.Stream, name)
	if err != nil {
		t.Fatalf("no consumer after the pass: %v", err)
	}
	if info, err := c.Info(ctx); err != nil || info.NumPending != 1 {
		t.Fatalf("the new consumer does not serve the job: %+v, %v", info, err)
	}
	if res := pass(t, r); res.Queued != 1 || res.ConsumersCreated != 0 {
		t.Fatalf("second pass: %+v", res)
	}
	if len(e.acted) != 1 || e.acted[0] != reconcile.ConsumerCreated {
		t.Fatalf("actions %v, want one %s", e.acted, reconcile.ConsumerCreated)
	}
	batch, err := e.worker.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for m := range batch.Messages() {
		_, _, got, _ = jobqueue.ParseJobSubject(m.Subject())
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got != id {
		t.Fatalf("the worker took %q, want the job %s", got, id)
	}
}

// A request whose job is not on the stream is published again, once per
// round however many reconcilers pass; after MaxRequeues rounds it is
// failed with a reason. Young requests are left to their submit.
func TestLostJobRequeuedThenFailed(t *testing.T) {
	t.Parallel()
	e, r := setup(t, jobqueue.Config{}, family.DSC, func(c *reconcile.Config) { c.MaxRequeues = 2 })
	ctx := t.Context()
	env := e.Envelope("dsc", "fake_ok", wt.FakeInputs("1")) // recorded, never published
	young := e.reconciler(t, family.DSC, func(c *reconcile.Config) { c.Grace = time.Hour })
	if res := pass(t, young); res.Checked != 0 {
		t.Fatalf("a young request was looked at: %+v", res)
	}
	for round := 1; round <= 2; round++ {
		res := pass(t, r)
		if res.Requeued != 1 {
			t.Fatalf("round %d: %+v", round, res)
		}
		if !e.queued(t, family.DSC, env.RequestID) {
			t.Fatalf("round %d: job not on the stream", round)
		}
		if res := pass(t, r); res.Queued != 1 || res.Requeued != 0 {
			t.Fatalf("round %d, second pass with the job queued: %+v", round, res)
		}
		// The job is lost again: taken and acknowledged without a result.
		batch, err := e.worker.Fetch(1)
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			got, err := job.Unmarshal(m.Data())
			if err != nil || got.RequestID != env.RequestID || string(got.Sealed) != string(env.Sealed) || got.Circuit != "fake_ok" {
				t.Fatalf("republished job %+v, %v", got, err)
			}
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	res := pass(t, r)
	if res.FailedLost != 1 {
		t.Fatalf("after %d rounds: %+v", 2, res)
	}
	p, err := e.Store.Get(ctx, env.RequestID)
	if err != nil {
		t.Fatal(err)
	}
	if want := "gave up: the job left the queue without a result 3 times"; p.Status != status.Failed || p.Reason != want {
		t.Fatalf("row %s %q, want failed %q", p.Status, p.Reason, want)
	}
	if want := []string{reconcile.Requeued, reconcile.Requeued, reconcile.FailedLost}; len(e.acted) != 3 ||
		e.acted[0] != want[0] || e.acted[2] != want[2] {
		t.Fatalf("actions %v, want %v", e.acted, want)
	}
	if res := pass(t, r); res.Checked != 0 {
		t.Fatalf("a failed request was looked at: %+v", res)
	}
}

// Two reconcilers of a family: a round is published by one of them only;
// while one holds the family's lock the other skips its pass.
func TestOnePublisherPerRound(t *testing.T) {
	t.Parallel()
	e, a := setup(t, jobqueue.Config{}, family.Disclose, nil)
	b := e.reconciler(t, family.Disclose, nil)
	env := e.Envelope("disclose", "fake_ok", wt.FakeInputs("1"))
	release, ok, err := e.Store.TryLock(t.Context(), "reconcile-disclose")
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	if res := pass(t, a); !res.Skipped {
		t.Fatalf("pass while another holds the lock: %+v", res)
	}
	release()
	ra, rb := pass(t, a), pass(t, b)
	if ra.Requeued+rb.Requeued != 1 {
		t.Fatalf("passes %+v and %+v: want one publish", ra, rb)
	}
	info, err := e.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || !e.queued(t, family.Disclose, env.RequestID) {
		t.Fatalf("stream holds %d messages", info.State.Msgs)
	}
}

// A lost job that cannot be published again because the queue is full is
// not lost: its round is given back, and it is never failed for it.
func TestFullQueueIsWaitedFor(t *testing.T) {
	t.Parallel()
	q := jobqueue.DefaultConfig()
	q.MaxMsgs = 1
	e, r := setup(t, q, family.Register, func(c *reconcile.Config) { c.MaxRequeues = 1 })
	lost := e.Envelope("register", "fake_ok", wt.FakeInputs("1"))
	e.Submit("register", "fake_ok", wt.FakeInputs("2")) // fills the queue
	for range 4 {
		if res := pass(t, r); res.Requeued+res.FailedLost != 0 {
			t.Fatalf("pass with a full queue: %+v", res)
		}
	}
	p, err := e.Store.Get(t.Context(), lost.RequestID)
	if err != nil || p.Status != status.Pending {
		t.Fatalf("row %+v, %v", p, err)
	}
	open, err := e.Store.OpenJobs(t.Context(), []family.ProofType{"register"}, time.Now().Add(time.Hour), store.Cursor{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range open {
		if j.Requeues != 0 {
			t.Fatalf("%s has %d rounds after failed publishes", j.ID, j.Requeues)
		}
	}
}

// A job JetStream gave up on (its last delivery unacknowledged) whose
// advisory never reached a rescuer: once its row's heartbeat has stood
// still for StuckAfter and across two passes an AckWait apart, the request
// is failed as the rescuer would and the message deleted. A job on its
// last delivery whose worker heartbeats the row is left alone.
func TestGivenUpJobFailedWithoutAdvisory(t *testing.T) {
	t.Parallel()
	q := jobqueue.DefaultConfig()
	q.AckWait, q.MaxDeliver = time.Second, 1
	e, r := setup(t, q, family.DSC, nil)
	ctx := t.Context()
	lost := e.Submit("dsc", "fake_ok", wt.FakeInputs("1"))
	alive := e.Submit("dsc", "fake_ok", wt.FakeInputs("2"))
	// The advisory stream is gone: its advisories are lost.
	if err := e.JS.DeleteStream(ctx, jobqueue.AdvisoryStream(q.Stream)); err != nil {
		t.Fatal(err)
	}
	var aliveMsg jetstream.Msg
	for range 2 {
		batch, err := e.worker.Fetch(1)
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			env, _ := job.Unmarshal(m.Data())
			if _, err := e.Store.Claim(ctx, env.RequestID, "w", 1); err != nil {
				t.Fatal(err)
			}
			if env.RequestID == alive {
				aliveMsg = m
			}
		}
	}
	if aliveMsg == nil {
		t.Fatal("the live job was not fetched")
	}
	// The live worker heartbeats its message and its row; the lost one's
	// AckWait runs out and a pull makes JetStream give it up.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				_ = aliveMsg.InProgress()
				_ = e.Store.Heartbeat(ctx, alive, "w")
			}
		}
	}()
	time.Sleep(2 * q.AckWait)
	if b, err := e.worker.Fetch(1); err == nil {
		for m := range b.Messages() {
			t.Fatalf("message %s delivered again", m.Subject())
		}
	}
	slow := e.reconciler(t, family.DSC, func(c *reconcile.Config) { c.StuckAfter = time.Hour })
	if res := pass(t, slow); res.FailedStuck != 0 || res.Queued != 2 {
		t.Fatalf("pass with a long StuckAfter: %+v", res)
	}
	if res := pass(t, r); res.FailedStuck != 0 {
		t.Fatalf("first sighting failed a job: %+v", res)
	}
	time.Sleep(q.AckWait + 200*time.Millisecond)
	res := pass(t, r)
	if res.FailedStuck != 1 {
		t.Fatalf("second sighting: %+v", res)
	}
	p, err := e.Store.Get(ctx, lost)
	if err != nil {
		t.Fatal(err)
	}
	if want := "gave up after 1 attempts: worker lost during the last attempt"; p.Status != status.Failed || p.Reason != want {
		t.Fatalf("given-up row: %s %q", p.Status, p.Reason)
	}
	if e.queued(t, family.DSC, lost) {
		t.Error("the given-up message is still on the stream")
	}
	if a, err := e.Store.Get(ctx, alive); err != nil || a.Status != status.Pending {
		t.Fatalf("live job's row: %+v, %v", a, err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := reconcile.New(reconcile.Deps{}, reconcile.Config{Family: family.DSC})
	if err == nil || err.Error() != "reconcile: Deps.Store is nil" {
		t.Fatalf("err = %v", err)
	}
	if !errors.Is(jobqueue.ErrQueueFull, jobqueue.ErrNotQueued) {
		t.Fatal("a full queue is not a job certainly not queued")
	}
}

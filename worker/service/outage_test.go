package service_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	wt "github.com/openpassport/prover-fleet/worker/internal/workertest"
)

// The tests of this file make real outages: the test's own PostgreSQL
// server is stopped and started again, the embedded NATS server shut down
// and restarted, and check that every recorded request ends terminal, once.

// waitNotReady waits until the Service reports not ready with want in the
// reason.
func waitNotReady(t *testing.T, r *wt.Running, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := r.Svc.Ready(ctx)
		cancel()
		if err != nil && strings.Contains(err.Error(), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness after %s: %v, want an error with %q", timeout, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A Postgres outage far longer than every retry the jobs have: the worker
// stops taking jobs and reports not ready, the jobs it holds wait in
// progress, no delivery is spent on the outage, and once Postgres is back
// every request is proved, once, on its first delivery.
func TestPostgresOutageStrandsNothing(t *testing.T) {
	t.Parallel()
	q := jobqueue.DefaultConfig()
	q.AckWait, q.MaxDeliver = 2*time.Second, 2
	s := wt.SetupOwnPostgres(t, q)
	f := wt.NewFakes(t)
	cfg := s.Config(f, family.DSC)
	cfg.ReconcileInterval = -1
	r := s.Start(cfg)

	const n = 6
	envs := make([]job.Envelope, n)
	for i := range envs {
		envs[i] = s.Envelope("dsc", "fake_ok", wt.FakeInputs("1"))
	}
	ctx := t.Context()
	if err := s.PG.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, env := range envs {
		if err := s.Pub.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	r.WaitLog(t, "status store unavailable", 15*time.Second)
	waitNotReady(t, r, "postgres", 10*time.Second)
	// Three AckWaits: before, two deliveries at a 100ms backoff were gone
	// within a second and the requests stranded.
	time.Sleep(3 * q.AckWait)
	info := s.ConsumerInfo(family.DSC)
	if info.Delivered.Consumer > uint64(cfg.Concurrency) || info.NumRedelivered != 0 {
		t.Fatalf("during the outage: %d deliveries (%d slots), %d redelivered", info.Delivered.Consumer, cfg.Concurrency, info.NumRedelivered)
	}
	if err := s.PG.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	for _, env := range envs {
		p := s.WaitStatus(env.RequestID, status.ProofGenerated, 60*time.Second)
		if p.Attempts != 1 {
			t.Errorf("%s: proved on attempt %d, want 1", env.RequestID, p.Attempts)
		}
	}
	s.WaitDelivered(family.DSC, n, 10*time.Second)
	if info := s.ConsumerInfo(family.DSC); info.Delivered.Consumer != n {
		t.Errorf("%d deliveries for %d jobs", info.Delivered.Consumer, n)
	}
	if c := f.Calls(t, "prove"); c != n {
		t.Errorf("prover ran %d times for %d jobs", c, n)
	}
	wt.WaitReady(t, r.Svc)
}

// A job that gives up on its last delivery while Postgres is down (the
// worker stops meanwhile) is not terminated unrecorded: it is handed back,
// JetStream's max-deliveries advisory waits in the advisory stream, and a
// worker's rescuer records the failure once Postgres is back.
func TestUnrecordedGiveUpIsRescued(t *testing.T) {
	t.Parallel()
	q := jobqueue.DefaultConfig()
	q.AckWait, q.MaxDeliver = 2*time.Second, 1
	s := wt.SetupOwnPostgres(t, q)
	f := wt.NewFakes(t)
	cfg := s.Config(f, family.Register)
	cfg.ReconcileInterval = -1
	cfg.ShutdownGrace = -1
	cfg.SettleTimeout = time.Second
	cfg.ChildEnv = append(cfg.ChildEnv, "FAKE_SLEEP=30")
	a := s.Start(cfg)
	id := s.Submit("register", "fake_slow", wt.FakeInputs("1"))
	prover := f.WaitPID(t, "prover.pid", 10*time.Second)
	if err := s.PG.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.StopAndWait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	wt.WaitGone(t, prover, 5*time.Second)
	a.WaitLog(t, "last delivery's failure not recorded", time.Second)
	if strings.Contains(a.Logs.String(), `"action":"term"`) {
		t.Fatal("a job whose failure was not recorded was terminated")
	}
	ctx := t.Context()
	stream, err := s.JS.Stream(ctx, q.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := jobqueue.Queued(ctx, stream, family.Register, id); err != nil || !ok {
		t.Fatalf("the handed-back job is not on the stream: %v, %v", ok, err)
	}
	if err := s.PG.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	b := s.Start(cfg) // its pull makes JetStream give the job up and advise so
	p := s.WaitStatus(id, status.Failed, 30*time.Second)
	if want := "gave up after 1 attempts: worker lost during the last attempt"; p.Reason != want {
		t.Errorf("reason %q, want %q", p.Reason, want)
	}
	b.WaitLog(t, "marked failed", 5*time.Second)
	if ok, err := jobqueue.Queued(ctx, stream, family.Register, id); err != nil || ok {
		t.Errorf("the job is still on the stream: %v, %v", ok, err)
	}
}

// A max-deliveries advisory published while no worker of the family runs
// waits in the advisory stream and is handled by the first worker that
// starts.
func TestAdvisoryWaitsForAWorker(t *testing.T) {
	t.Parallel()
	q := jobqueue.DefaultConfig()
	q.AckWait, q.MaxDeliver = time.Second, 1
	s := wt.Setup(t, q)
	f := wt.NewFakes(t)
	ctx := t.Context()
	id := s.Submit("disclose", "fake_ok", wt.FakeInputs("1"))
	cons, err := s.JS.Consumer(ctx, q.Stream, jobqueue.CircuitConsumerName(family.Disclose, "fake_ok"))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := false
	for range batch.Messages() { // its worker is SIGKILLed: no ack
		got = true
	}
	if !got {
		t.Fatalf("nothing fetched: %v", batch.Error())
	}
	if _, err := s.Store.Claim(ctx, id, "killed-worker", 1); err != nil {
		t.Fatal(err)
	}
	rescueCons, err := s.JS.Consumer(ctx, jobqueue.AdvisoryStream(q.Stream), jobqueue.RescueConsumerName(family.Disclose))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, err := rescueCons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no advisory kept while no worker listened")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Long after the advisory, a worker of the family starts.
	time.Sleep(time.Second)
	cfg := s.Config(f, family.Disclose)
	cfg.ReconcileInterval = -1
	r := s.Start(cfg)
	p := s.WaitStatus(id, status.Failed, 20*time.Second)
	if want := "gave up after 1 attempts: worker lost during the last attempt"; p.Reason != want {
		t.Errorf("reason %q, want %q", p.Reason, want)
	}
	r.WaitLog(t, "job ran out of deliveries without a result; marked failed", 5*time.Second)
	deadline = time.Now().Add(10 * time.Second)
	for {
		info, err := rescueCons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("advisory not acknowledged: pending %d ack pending %d", info.NumPending, info.NumAckPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := f.Calls(t, "witness"); n != 0 {
		t.Errorf("the given-up job ran %d times", n)
	}
}

// A publish made while NATS is down gets no answer; the row stays (the
// frontend keeps it), the buffered job reaches the stream when NATS is
// back and is proved. A late retry of the same uuid, answered "duplicate"
// by the window, is published again since the stream no longer holds the
// job, and changes nothing: the request is recorded once.
//
// It is the first job of its circuit: the circuit's consumer, which the
// publisher could not create during the outage, is created by the worker
// that sees the job arrive.
func TestUnconfirmedPublishThenRetry(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	cfg := s.Config(f, family.DSC)
	cfg.ReconcileInterval = -1
	s.Start(cfg)
	ctx := t.Context()
	env := s.Envelope("dsc_id", "fake_ok", wt.FakeInputs("1"))
	srv := s.NATSServer.Server()
	srv.Shutdown()
	srv.WaitForShutdown()
	for s.NC.IsConnected() {
		time.Sleep(10 * time.Millisecond)
	}
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := s.Pub.Publish(pctx, env)
	cancel()
	if err == nil || errors.Is(err, jobqueue.ErrNotQueued) {
		t.Fatalf("publish with NATS down: %v, want an unknown outcome", err)
	}
	time.Sleep(time.Second) // the outage goes on past the submit's timeout
	if err := s.NATSServer.Restart(); err != nil {
		t.Fatal(err)
	}
	p := s.WaitStatus(env.RequestID, status.ProofGenerated, 30*time.Second)
	if p.Attempts != 1 {
		t.Errorf("proved on attempt %d", p.Attempts)
	}
	// The row is written before the message is acknowledged: wait for the
	// ack to reach the stream before asking whether the job is queued.
	s.WaitQueueEmpty(family.DSC, 10*time.Second)
	// The app's late retry of the same request.
	if err := s.Pub.Publish(ctx, env); !errors.Is(err, jobqueue.ErrDuplicate) {
		t.Fatalf("retry within the window: %v, want ErrDuplicate", err)
	}
	if ok, err := s.Pub.Queued(ctx, family.DSC, env.RequestID); err != nil || ok {
		t.Fatalf("Queued after the job was proved = %v, %v", ok, err)
	}
	if err := s.Pub.Republish(ctx, env, 0); err != nil {
		t.Fatal(err)
	}
	s.WaitDelivered(family.DSC, 2, 20*time.Second)
	after, err := s.Store.Get(ctx, env.RequestID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != status.ProofGenerated || !after.UpdatedAt.Equal(p.UpdatedAt) {
		t.Errorf("the second copy changed the row: %+v", after)
	}
	if n := f.Calls(t, "prove"); n != 1 {
		t.Errorf("prover ran %d times", n)
	}
}

// A request recorded whose job never reached the stream (the frontend died
// between the two, or the buffered publish died with it), and one whose
// message was deleted: the reconciler publishes both again and they are
// proved.
func TestLostJobsAreRequeued(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	ctx := t.Context()
	never := s.Envelope("register", "fake_ok", wt.FakeInputs("1"))
	deleted := s.Envelope("register", "fake_ok", wt.FakeInputs("2"))
	if err := s.Pub.Publish(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	stream, err := s.JS.Stream(ctx, s.Queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, jobqueue.JobSubject(family.Register, deleted.Circuit, deleted.RequestID))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, msg.Sequence); err != nil {
		t.Fatal(err)
	}
	cfg := s.Config(f, family.Register)
	cfg.ReconcileInterval, cfg.ReconcileGrace = 300*time.Millisecond, 500*time.Millisecond
	r := s.Start(cfg)
	for _, env := range []job.Envelope{never, deleted} {
		s.WaitStatus(env.RequestID, status.ProofGenerated, 30*time.Second)
	}
	r.WaitLog(t, "open request had no job on the queue; published it again", time.Second)
	mfs, err := r.Svc.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	requeued := -1.0
	for _, mf := range mfs {
		if mf.GetName() != "prover_worker_reconciled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "action" && l.GetValue() == "requeued" {
					requeued = m.GetCounter().GetValue()
				}
			}
		}
	}
	if requeued != 2 {
		t.Errorf(`prover_worker_reconciled_total{action="requeued"} = %v, want 2`, requeued)
	}
}

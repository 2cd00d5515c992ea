package rescue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	wt "github.com/openpassport/prover-fleet/worker/internal/workertest"
)

// Through the worker service: a job lost on its only delivery by another
// worker is failed by the service's rescuer, counted in its metrics, and the
// service goes on proving.
func TestServiceRescues(t *testing.T) {
	t.Parallel()
	q := jobqueue.DefaultConfig()
	q.AckWait, q.MaxDeliver = 5*time.Second, 1
	s := wt.Setup(t, q)
	f := wt.NewFakes(t)
	ctx := t.Context()
	id := s.Submit("register", "fake_ok", wt.FakeInputs("1"))

	// The worker that takes it is SIGKILLed: no ack, no status.
	cons, err := s.JS.Consumer(ctx, q.Stream, jobqueue.CircuitConsumerName(family.Register, "fake_ok"))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	for msg := range batch.Messages() {
		md, _ := msg.Metadata()
		seq = md.Sequence.Stream
	}
	if seq == 0 {
		t.Fatalf("no message fetched: %v", batch.Error())
	}
	if _, err := s.Store.Claim(ctx, id, "killed-worker", 1); err != nil {
		t.Fatal(err)
	}

	// A surviving worker of the family (started within AckWait).
	r := s.Start(s.Config(f, family.Register))
	row := s.WaitStatus(id, status.Failed, 20*time.Second)
	if want := "gave up after 1 attempts: worker lost during the last attempt"; row.Reason != want {
		t.Errorf("reason %q, want %q", row.Reason, want)
	}
	stream, err := s.JS.Stream(ctx, q.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetMsg(ctx, seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("message %d still in the stream (GetMsg err %v)", seq, err)
	}
	r.WaitLog(t, `"request_id":"`+id+`"`, 5*time.Second)

	mfs, err := r.Svc.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var rescued float64 = -1
	for _, mf := range mfs {
		if mf.GetName() == "prover_worker_rescued_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "family" && l.GetValue() == "register" {
						rescued = m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if rescued != 1 {
		t.Errorf(`prover_worker_rescued_total{family="register"} = %v, want 1`, rescued)
	}

	next := s.Submit("register", "fake_ok", wt.FakeInputs("2"))
	s.WaitStatus(next, status.ProofGenerated, 20*time.Second)
}

package intake

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/internal/request"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// countingStore is the real store, counting the row reads a Watch makes.
type countingStore struct {
	*store.Store
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, id string) (store.Proof, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, id)
}

type anyCircuit struct{}

func (anyCircuit) Known(string) bool { return true }

// watchEnv is a Service over a real NATS and Postgres, and one recorded
// request.
type watchEnv struct {
	svc    *Service
	store  *countingStore
	nc     *nats.Conn
	events *jobqueue.Events
	id     string
}

func setupWatch(t *testing.T) *watchEnv {
	t.Helper()
	e := &watchEnv{store: &countingStore{Store: store.New(stacktest.Postgres(t))}, id: uuid.NewString()}
	e.svc, e.nc, e.events = newService(t, e.store, Config{})
	must(t, e.store.Insert(t.Context(), store.Request{ID: e.id, ProofType: "disclose_id", Circuit: "vc_and_disclose_id", Version: 1}))
	return e
}

// newService is a Service over st, a real NATS (JetStream in memory) and
// a development attester.
func newService(t *testing.T, st Store, cfg Config) (*Service, *nats.Conn, *jobqueue.Events) {
	t.Helper()
	nc, js, _ := stacktest.NATS(t)
	qcfg := jobqueue.DefaultConfig()
	qcfg.Memory = true
	must(t, jobqueue.Setup(t.Context(), js, qcfg, family.All()))
	pub, err := jobqueue.NewPublisher(js, qcfg)
	must(t, err)
	sessions, err := handshake.New(handshake.Config{})
	must(t, err)
	validator, err := request.NewValidator(request.Config{Families: family.All(), Circuits: anyCircuit{}})
	must(t, err)
	dev, err := attest.NewDev(attest.DevConfig{Dir: t.TempDir(), ModuleID: "intake-test"})
	must(t, err)
	sealer, err := job.NewSealer(job.NewKey())
	must(t, err)
	events := jobqueue.NewEvents(nc)
	svc, err := New(Deps{
		Sessions: sessions, Validator: validator, Attester: dev, Store: st, Queue: pub,
		Events: events, Sealer: sealer, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, cfg)
	must(t, err)
	return svc, nc, events
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// forwarding is a Watch running Forward.
type forwarding struct {
	w    *Watch
	sent chan protocol.Status
	done chan error
}

func (e *watchEnv) subscribe(t *testing.T) *Watch {
	t.Helper()
	w, err := e.svc.Subscribe(t.Context(), e.id)
	must(t, err)
	t.Cleanup(w.Close)
	return w
}

func forward(t *testing.T, w *Watch) *forwarding {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	f := &forwarding{w: w, sent: make(chan protocol.Status, 8), done: make(chan error, 1)}
	go func() {
		f.done <- w.Forward(ctx, func(st protocol.Status) error { f.sent <- st; return nil })
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

func (f *forwarding) next(t *testing.T) protocol.Status {
	t.Helper()
	select {
	case st := <-f.sent:
		return st
	case <-time.After(5 * time.Second):
		t.Fatal("no status forwarded")
	}
	return protocol.Status{}
}

// nothing checks that no status was forwarded for a while.
func (f *forwarding) nothing(t *testing.T) {
	t.Helper()
	select {
	case st := <-f.sent:
		t.Fatalf("forwarded %+v, want nothing", st)
	case <-time.After(200 * time.Millisecond):
	}
}

// ended checks that Forward returned nil after the terminal status.
func (f *forwarding) ended(t *testing.T) {
	t.Helper()
	select {
	case err := <-f.done:
		if err != nil {
			t.Fatalf("Forward: %v", err)
		}
		f.done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Forward did not return after the terminal status")
	}
}

func (e *watchEnv) publish(t *testing.T, ev job.StatusEvent) {
	t.Helper()
	must(t, e.events.PublishStatus(t.Context(), ev))
}

// publishOld publishes an event as publishers before status rows in events
// wrote it.
func (e *watchEnv) publishOld(t *testing.T, code status.Code) {
	t.Helper()
	must(t, e.nc.Publish(jobqueue.StatusSubject(e.id),
		[]byte(`{"request_id":"`+e.id+`","status":`+string(rune('0'+code))+`,"at":"2025-03-01T11:00:00Z"}`)))
}

func (e *watchEnv) waitGets(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.store.gets.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d row reads, want %d", e.store.gets.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *watchEnv) wantGets(t *testing.T, n int64) {
	t.Helper()
	if got := e.store.gets.Load(); got != n {
		t.Fatalf("%d row reads, want %d", got, n)
	}
}

func sameTime(a *time.Time, b time.Time) bool {
	return a != nil && a.Equal(b) && a.Location() == time.UTC
}

// Complete events are forwarded as they are: the row is never written
// here, so a re-read would have found it pending and forwarded nothing.
func TestWatchForwardsCompleteEvents(t *testing.T) {
	t.Parallel()
	e := setupWatch(t)
	w := e.subscribe(t)
	if w.Current().Status != status.Pending {
		t.Fatalf("current %+v", w.Current())
	}
	f := forward(t, w)

	witnessAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	e.publish(t, job.WitnessGeneratedEvent(e.id, witnessAt))
	st := f.next(t)
	if st.Status != status.WitnessGenerated || !sameTime(st.WitnessGeneratedAt, witnessAt) ||
		st.ProofGeneratedAt != nil || st.HasProof() || st.Reason != nil || st.UUID != e.id ||
		st.CircuitName != "vc_and_disclose_id" || st.ProofType != family.ProofType("disclose_id").Code() {
		t.Fatalf("status 1 forwarded as %+v", st)
	}

	provedAt := witnessAt.Add(time.Second)
	e.publish(t, job.ProofGeneratedEvent(e.id, &witnessAt, provedAt, json.RawMessage(`{"protocol":"groth16"}`), []string{"42"}))
	st = f.next(t)
	if st.Status != status.ProofGenerated || !sameTime(st.WitnessGeneratedAt, witnessAt) ||
		!sameTime(st.ProofGeneratedAt, provedAt) || string(st.Proof) != `{"protocol":"groth16"}` ||
		len(st.PublicInputs) != 1 || st.PublicInputs[0] != "42" || st.Reason != nil {
		t.Fatalf("status 2 forwarded as %+v", st)
	}
	f.ended(t)
	e.wantGets(t, 1) // the subscribe's own read only
}

// An older publisher's event (request_id, status, at) makes the watch
// re-read the row, and forwards what the row holds.
func TestWatchRereadsOnOldEvents(t *testing.T) {
	t.Parallel()
	e := setupWatch(t)
	ctx := t.Context()
	f := forward(t, e.subscribe(t))

	_, err := e.store.MarkWitnessGenerated(ctx, e.id)
	must(t, err)
	e.publishOld(t, status.WitnessGenerated)
	row, err := e.store.Store.Get(ctx, e.id)
	must(t, err)
	if st := f.next(t); st.Status != status.WitnessGenerated || !sameTime(st.WitnessGeneratedAt, row.WitnessGeneratedAt.UTC()) {
		t.Fatalf("status 1 forwarded as %+v, row %+v", st, row)
	}
	e.wantGets(t, 2)

	_, err = e.store.MarkProofGenerated(ctx, e.id, json.RawMessage(`{"protocol":"groth16"}`), []string{"7"})
	must(t, err)
	e.publishOld(t, status.ProofGenerated)
	if st := f.next(t); st.Status != status.ProofGenerated || string(st.Proof) != `{"protocol":"groth16"}` || st.ProofGeneratedAt == nil {
		t.Fatalf("status 2 forwarded as %+v", st)
	}
	f.ended(t)
	e.wantGets(t, 3)
}

// A failure keeps the row's witness time, which the event does not carry:
// after status 1 the watch knows it and forwards the event as it is;
// before, the row may have moved to 1 unseen, so it re-reads.
func TestWatchFailedEvents(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t.Run("after witness generated: forwarded as it is", func(t *testing.T) {
		t.Parallel()
		e := setupWatch(t)
		_, err := e.store.MarkWitnessGenerated(ctx, e.id)
		must(t, err)
		w := e.subscribe(t)
		f := forward(t, w)
		// The row stays at 1: only the event says failed.
		e.publish(t, job.FailedEvent(e.id, "witness generation rejected the input", time.Now()))
		st := f.next(t)
		if st.Status != status.Failed || st.Reason == nil || *st.Reason != "witness generation rejected the input" ||
			st.WitnessGeneratedAt == nil || !st.WitnessGeneratedAt.Equal(*w.Current().WitnessGeneratedAt) || st.HasProof() {
			t.Fatalf("failure forwarded as %+v", st)
		}
		f.ended(t)
		e.wantGets(t, 1)
	})
	t.Run("from pending: re-read", func(t *testing.T) {
		t.Parallel()
		e := setupWatch(t)
		f := forward(t, e.subscribe(t))
		_, err := e.store.MarkFailed(ctx, e.id, protocol.CancelReason)
		must(t, err)
		e.publish(t, job.FailedEvent(e.id, protocol.CancelReason, time.Now()))
		if st := f.next(t); st.Status != status.Failed || st.Reason == nil || *st.Reason != protocol.CancelReason {
			t.Fatalf("failure forwarded as %+v", st)
		}
		f.ended(t)
		e.wantGets(t, 2)
	})
}

// Events for a status no further than the last one sent are dropped, even
// when they carry the row (a second worker of a redelivered job announcing
// its own status 1); a re-read that finds no further status sends nothing.
func TestWatchIgnoresBackwardEvents(t *testing.T) {
	t.Parallel()
	e := setupWatch(t)
	ctx := t.Context()
	_, err := e.store.MarkWitnessGenerated(ctx, e.id)
	must(t, err)
	w := e.subscribe(t)
	if w.Current().Status != status.WitnessGenerated {
		t.Fatalf("current %+v", w.Current())
	}
	f := forward(t, w)

	e.publish(t, job.WitnessGeneratedEvent(e.id, time.Now().Add(time.Hour)))
	e.publish(t, job.StatusEvent{RequestID: e.id, Status: status.Pending, Row: &job.StatusRow{}})
	e.waitGets(t, 2) // the pending event cannot stand in for a read
	f.nothing(t)
	e.wantGets(t, 2) // the complete status-1 event made no read

	at := time.Now()
	e.publish(t, job.ProofGeneratedEvent(e.id, w.Current().WitnessGeneratedAt, at, json.RawMessage(`{}`), []string{"1"}))
	if st := f.next(t); st.Status != status.ProofGenerated || !st.WitnessGeneratedAt.Equal(*w.Current().WitnessGeneratedAt) {
		t.Fatalf("status 2 forwarded as %+v", st)
	}
	f.ended(t)
}

// Events that pile up before Forward looks at them coalesce to the
// furthest, the first terminal one winning (the row's guards let only one
// terminal write through): a late status 1 does not replace it, and the
// terminal status is sent once, without a read.
func TestWatchCoalescesToTheFurthest(t *testing.T) {
	t.Parallel()
	e := setupWatch(t)
	_, err := e.store.MarkWitnessGenerated(t.Context(), e.id)
	must(t, err)
	w := e.subscribe(t)
	at := time.Now()
	w.note(job.WitnessGeneratedEvent(e.id, at))
	w.note(job.FailedEvent(e.id, "cancelled", at))
	w.note(job.ProofGeneratedEvent(e.id, &at, at, json.RawMessage(`{}`), nil)) // lost the race to the failure
	w.note(job.WitnessGeneratedEvent(e.id, at.Add(time.Second)))               // a second worker, late
	f := forward(t, w)
	st := f.next(t)
	if st.Status != status.Failed || st.Reason == nil || *st.Reason != "cancelled" {
		t.Fatalf("forwarded %+v, want the failure", st)
	}
	f.ended(t)
	f.nothing(t)
	e.wantGets(t, 1)
}

// A status forwarded from a publisher's event is what a read of the row it
// wrote gives, but for the times (the publisher's clock, not Postgres's).
func TestWatchEventMatchesTheRow(t *testing.T) {
	t.Parallel()
	e := setupWatch(t)
	ctx := t.Context()
	f := forward(t, e.subscribe(t))

	proof := json.RawMessage(`{"pi_a":["1","2","1"],"protocol":"groth16","curve":"bn128"}` + "\n")
	signals := []string{"42", "7"}
	_, err := e.store.MarkWitnessGenerated(ctx, e.id)
	must(t, err)
	witnessAt := time.Now()
	_, err = e.store.MarkProofGenerated(ctx, e.id, proof, signals)
	must(t, err)
	e.publish(t, job.ProofGeneratedEvent(e.id, &witnessAt, time.Now(), proof, signals))
	got := f.next(t)
	f.ended(t)
	e.wantGets(t, 1)

	want, err := e.svc.Status(ctx, e.id)
	must(t, err)
	for _, p := range []struct {
		name      string
		got, want *time.Time
	}{{"witness_generated_at", got.WitnessGeneratedAt, want.WitnessGeneratedAt}, {"proof_generated_at", got.ProofGeneratedAt, want.ProofGeneratedAt}} {
		if p.got == nil || p.want == nil || p.got.Sub(*p.want).Abs() > 5*time.Second {
			t.Fatalf("%s: forwarded %v, row %v", p.name, p.got, p.want)
		}
	}
	got.WitnessGeneratedAt, got.ProofGeneratedAt = want.WitnessGeneratedAt, want.ProofGeneratedAt
	gotJSON, err := json.Marshal(got)
	must(t, err)
	wantJSON, err := json.Marshal(want)
	must(t, err)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("forwarded\n%s\nrow\n%s", gotJSON, wantJSON)
	}
}

package rescue_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/worker/internal/rescue"
	wt "github.com/openpassport/prover-fleet/worker/internal/workertest"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// env is one test's infrastructure and a listening Rescuer.
type env struct {
	*wt.Stack
	stream  jetstream.Stream
	cons    jetstream.Consumer
	rescued chan rescue.Result
	logs    *wt.SyncBuffer
	stop    func()
}

// setup starts NATS and Postgres with the family consumers at maxDeliver and
// a one-second AckWait, and a Rescuer for fam listening.
func setup(t *testing.T, fam family.Family, maxDeliver int) *env {
	t.Helper()
	q := jobqueue.DefaultConfig()
	q.AckWait, q.MaxDeliver = time.Second, maxDeliver
	s := wt.Setup(t, q)
	ctx := t.Context()
	stream, err := s.JS.Stream(ctx, q.Stream)
	if err != nil {
		t.Fatal(err)
	}
	// The tests' jobs are of circuit fake_ok: its consumer is where a worker
	// takes them.
	cons, err := jobqueue.EnsureCircuitConsumer(ctx, s.JS, q.Stream, fam, "fake_ok")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{Stack: s, stream: stream, cons: cons, rescued: make(chan rescue.Result, 16), logs: &wt.SyncBuffer{}}
	advisories, err := s.JS.Consumer(ctx, jobqueue.AdvisoryStream(q.Stream), jobqueue.RescueConsumerName(fam))
	if err != nil {
		t.Fatal(err)
	}
	r, err := rescue.New(rescue.Deps{
		Advisories: advisories, Stream: stream, Store: s.Store, Events: s.Events,
		Logger:  slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Rescued: func(res rescue.Result) { e.rescued <- res },
	}, rescue.Config{Family: fam, Stream: q.Stream, MaxDeliver: maxDeliver, Timeout: 5 * time.Second,
		FetchWait: 200 * time.Millisecond, RetryDelay: 100 * time.Millisecond, RetryMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(rctx) }()
	var once sync.Once
	e.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("rescuer logs:\n%s", e.logs.String())
		}
	})
	return e
}

// takeAndLose fetches the family's next message, as a worker would, and
// never acknowledges it (the worker is SIGKILLed). It returns the message's
// stream sequence.
func (e *env) takeAndLose(t *testing.T) uint64 {
	t.Helper()
	batch, err := e.cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	for msg := range batch.Messages() {
		meta, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		seq = meta.Sequence.Stream
	}
	if seq == 0 {
		t.Fatalf("no message fetched: %v", batch.Error())
	}
	return seq
}

func (e *env) waitRescued(t *testing.T, timeout time.Duration) rescue.Result {
	t.Helper()
	select {
	case res := <-e.rescued:
		return res
	case <-time.After(timeout):
		t.Fatalf("no rescue within %s", timeout)
		return rescue.Result{}
	}
}

func (e *env) messageGone(t *testing.T, seq uint64) {
	t.Helper()
	if _, err := e.stream.GetMsg(t.Context(), seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("message %d still in the stream (GetMsg err %v)", seq, err)
	}
	info, err := e.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("stream holds %d messages, want 0", info.State.Msgs)
	}
}

// statusEvents collects the status events of id.
func (e *env) statusEvents(t *testing.T, id string) <-chan job.StatusEvent {
	t.Helper()
	ch := make(chan job.StatusEvent, 16)
	unsub, err := e.Events.SubscribeStatus(id, func(ev job.StatusEvent) { ch <- ev })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unsub)
	if err := e.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

func noMore[T any](t *testing.T, ch <-chan T, wait time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Errorf("unexpected %s: %+v", what, v)
	case <-time.After(wait):
	}
}

// A worker lost during a job's only delivery: the advisory fails the row
// with the reason, announces it and deletes the message; the same advisory
// again changes nothing.
func TestWorkerLostOnLastDelivery(t *testing.T) {
	t.Parallel()
	e := setup(t, family.Register, 1)
	ctx := t.Context()
	inputs := wt.FakeInputs("7364915820")
	id := e.Submit("register", "fake_ok", inputs)
	events := e.statusEvents(t, id)

	seq := e.takeAndLose(t)
	// The lost worker had claimed the row and made the witness.
	if _, err := e.Store.Claim(ctx, id, "lost-worker", 1); err != nil {
		t.Fatal(err)
	}
	if ok, err := e.Store.MarkWitnessGenerated(ctx, id); err != nil || ok == nil {
		t.Fatalf("MarkWitnessGenerated: %v %v", ok, err)
	}

	res := e.waitRescued(t, 15*time.Second)
	want := rescue.Result{Seq: seq, RequestID: id, Attempts: 1, Failed: true}
	if res != want {
		t.Errorf("rescue result %+v, want %+v", res, want)
	}
	row := e.WaitStatus(id, status.Failed, 5*time.Second)
	const reason = "gave up after 1 attempts: worker lost during the last attempt"
	if row.Reason != reason {
		t.Errorf("reason %q, want %q", row.Reason, reason)
	}
	e.messageGone(t, seq)
	select {
	case ev := <-events:
		if ev.Status != status.Failed || !ev.Complete() || ev.Row.Reason != reason {
			t.Errorf("status event %+v, want status 3 carrying the reason written, %q", ev, reason)
		}
	case <-time.After(5 * time.Second):
		t.Error("no status event for the rescued job")
	}

	// The same advisory a second time (a redelivered or replayed one).
	adv, _ := json.Marshal(map[string]any{
		"type": "io.nats.jetstream.advisory.v1.max_deliver", "stream": e.Queue.Stream,
		"consumer": jobqueue.CircuitConsumerName(family.Register, "fake_ok"), "stream_seq": seq, "deliveries": 1,
	})
	if err := e.NC.Publish(jobqueue.AdvisorySubject(e.Queue.Stream, "register-fake_ok"), adv); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(e.logs.String(), "message already gone") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the second advisory was not handled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	noMore(t, e.rescued, 200*time.Millisecond, "second rescue")
	noMore(t, events, 200*time.Millisecond, "second status event")
	after, err := e.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != status.Failed || after.Reason != reason || !after.UpdatedAt.Equal(row.UpdatedAt) {
		t.Errorf("second advisory touched the row: %+v", after)
	}

	for _, v := range wt.InputValues(t, inputs, 6) {
		if strings.Contains(e.logs.String(), v) {
			t.Errorf("logs hold the input value %q", v)
		}
	}
	var sawID bool
	for _, l := range wt.LogLines(t, e.logs.String()) {
		if l["msg"] == "job ran out of deliveries without a result; marked failed" {
			sawID = l["request_id"] == id && l["family"] == "register" && l["component"] == "rescue"
		}
	}
	if !sawID {
		t.Errorf("no rescue log line with the request id:\n%s", e.logs.String())
	}
}

// With MaxDeliver above 1 the server publishes the advisory when it next
// looks for a message to deliver (a live worker's pull), not when the last
// AckWait runs out; the reason states the deliveries there were.
func TestAttemptsAfterRedeliveries(t *testing.T) {
	t.Parallel()
	e := setup(t, family.DSC, 2)
	id := e.Submit("dsc", "fake_ok", wt.FakeInputs("1"))
	seq := e.takeAndLose(t)
	if again := e.takeAndLose(t); again != seq { // redelivered after AckWait
		t.Fatalf("second delivery is message %d, want %d", again, seq)
	}
	// Another worker of the family pulls: nothing is delivered again.
	batch, err := e.cons.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		md, _ := msg.Metadata()
		t.Fatalf("message %d delivered a third time (MaxDeliver 2)", md.Sequence.Stream)
	}
	res := e.waitRescued(t, 15*time.Second)
	if res.Attempts != 2 || !res.Failed || res.RequestID != id {
		t.Errorf("rescue result %+v, want 2 attempts, failed, request %s", res, id)
	}
	row := e.WaitStatus(id, status.Failed, 5*time.Second)
	if want := "gave up after 2 attempts: worker lost during the last attempt"; row.Reason != want {
		t.Errorf("reason %q, want %q", row.Reason, want)
	}
	e.messageGone(t, seq)
}

// A worker that recorded the proof and was lost before its ack: the row
// keeps its proof, no event is sent, the message goes.
func TestProvedRowNotOverwritten(t *testing.T) {
	t.Parallel()
	e := setup(t, family.Disclose, 1)
	ctx := t.Context()
	id := e.Submit("disclose_id", "fake_ok", wt.FakeInputs("1"))
	events := e.statusEvents(t, id)
	seq := e.takeAndLose(t)
	proof := json.RawMessage(`{"pi_a":["1","2","1"],"protocol":"groth16"}`)
	if ok, err := e.Store.MarkProofGenerated(ctx, id, proof, []string{"42"}); err != nil || ok == nil {
		t.Fatalf("MarkProofGenerated: %v %v", ok, err)
	}

	res := e.waitRescued(t, 15*time.Second)
	if want := (rescue.Result{Seq: seq, RequestID: id, Attempts: 1, Failed: false}); res != want {
		t.Errorf("rescue result %+v, want %+v", res, want)
	}
	row, err := e.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if row.Status != status.ProofGenerated || row.Reason != "" || len(row.PublicInputs) != 1 {
		t.Errorf("proved row changed: status %s reason %q public %v", row.Status, row.Reason, row.PublicInputs)
	}
	e.messageGone(t, seq)
	noMore(t, events, 300*time.Millisecond, "status event")
}

// A message that is not an envelope has no row to fail; it is deleted.
func TestUndecodableMessageDeleted(t *testing.T) {
	t.Parallel()
	e := setup(t, family.Register, 1)
	if _, err := e.JS.Publish(t.Context(), jobqueue.JobSubject(family.Register, "fake_ok", "garbage"), []byte("not a job")); err != nil {
		t.Fatal(err)
	}
	seq := e.takeAndLose(t)
	res := e.waitRescued(t, 15*time.Second)
	if want := (rescue.Result{Seq: seq, Attempts: 1}); res != want {
		t.Errorf("rescue result %+v, want %+v", res, want)
	}
	e.messageGone(t, seq)
}

// Advisories of other consumers, and malformed ones, are ignored.
func TestForeignAdvisoriesIgnored(t *testing.T) {
	t.Parallel()
	e := setup(t, family.Register, 1)
	id := e.Submit("register", "fake_ok", wt.FakeInputs("1"))
	seq := uint64(1)
	for name, body := range map[string]map[string]any{
		"other family":       {"stream": e.Queue.Stream, "consumer": "dsc-fake_ok", "stream_seq": seq, "deliveries": 1},
		"not a job consumer": {"stream": e.Queue.Stream, "consumer": "register", "stream_seq": seq, "deliveries": 1},
		"other stream":       {"stream": "ELSEWHERE", "consumer": "register-fake_ok", "stream_seq": seq, "deliveries": 1},
		"no sequence":        {"stream": e.Queue.Stream, "consumer": "register-fake_ok", "deliveries": 1},
	} {
		b, _ := json.Marshal(body)
		if err := e.NC.Publish(jobqueue.AdvisorySubject(e.Queue.Stream, "register-fake_ok"), b); err != nil {
			t.Fatal(name, err)
		}
	}
	if err := e.NC.Publish(jobqueue.AdvisorySubject(e.Queue.Stream, "register-fake_ok"), []byte("{")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(e.logs.String(), "ignoring an advisory") < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("advisories not all seen:\n%s", e.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	noMore(t, e.rescued, 200*time.Millisecond, "rescue")
	row, err := e.Store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if row.Status != status.Pending {
		t.Errorf("row status %s, want pending", row.Status)
	}
	if _, err := e.stream.GetMsg(t.Context(), seq); err != nil {
		t.Errorf("the job's message is gone: %v", err)
	}
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	stream, err := s.JS.Stream(t.Context(), s.Queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	advisories, err := s.JS.Consumer(t.Context(), jobqueue.AdvisoryStream(s.Queue.Stream), jobqueue.RescueConsumerName(family.DSC))
	if err != nil {
		t.Fatal(err)
	}
	good := rescue.Deps{Advisories: advisories, Stream: stream, Store: s.Store, Events: s.Events, Logger: wt.Discard()}
	cfg := rescue.Config{Family: family.DSC, Stream: s.Queue.Stream}
	tests := []struct {
		name   string
		mutate func(*rescue.Deps, *rescue.Config)
		want   string
	}{
		{"no advisories", func(d *rescue.Deps, _ *rescue.Config) { d.Advisories = nil }, "rescue: Deps.Advisories is nil"},
		{"no stream", func(d *rescue.Deps, _ *rescue.Config) { d.Stream = nil }, "rescue: Deps.Stream is nil"},
		{"no store", func(d *rescue.Deps, _ *rescue.Config) { d.Store = nil }, "rescue: Deps.Store is nil"},
		{"no events", func(d *rescue.Deps, _ *rescue.Config) { d.Events = nil }, "rescue: Deps.Events is nil"},
		{"no logger", func(d *rescue.Deps, _ *rescue.Config) { d.Logger = nil }, "rescue: Deps.Logger is nil"},
		{"no family", func(_ *rescue.Deps, c *rescue.Config) { c.Family = "" }, `rescue: Config.Family must be register, dsc or disclose, got ""`},
		{"bad family", func(_ *rescue.Deps, c *rescue.Config) { c.Family = "kyc" }, `rescue: Config.Family must be register, dsc or disclose, got "kyc"`},
		{"no stream name", func(_ *rescue.Deps, c *rescue.Config) { c.Stream = "" }, "rescue: Config.Stream is empty"},
		{"negative timeout", func(_ *rescue.Deps, c *rescue.Config) { c.Timeout = -time.Second }, "rescue: Config.Timeout must be positive, got -1s"},
		{"short fetch wait", func(_ *rescue.Deps, c *rescue.Config) { c.FetchWait = time.Millisecond }, "rescue: Config.FetchWait must be at least 100ms, got 1ms"},
		{"negative delay", func(_ *rescue.Deps, c *rescue.Config) { c.RetryDelay = -time.Second },
			"rescue: Config.RetryDelay -1s and RetryMax 1m0s must satisfy 0 ≤ RetryDelay ≤ RetryMax"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, c := good, cfg
			tc.mutate(&d, &c)
			if _, err := rescue.New(d, c); err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v\nwant   %s", err, tc.want)
			}
		})
	}
	if _, err := rescue.New(good, cfg); err != nil {
		t.Fatal(err)
	}
}

// Stop returns within a pull's wait; a second stop is harmless.
func TestStop(t *testing.T) {
	t.Parallel()
	e := setup(t, family.DSC, 1)
	start := time.Now()
	e.stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stop took %s", d)
	}
	e.stop()
}

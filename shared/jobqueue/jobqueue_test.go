package jobqueue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
)

func envelope(t *testing.T, pt family.ProofType) job.Envelope {
	t.Helper()
	s, _ := job.NewSealer(job.NewKey())
	id := uuid.NewString()
	sealed, err := s.Seal(id, []byte(`{"a":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	return job.Envelope{RequestID: id, ProofType: pt, Circuit: "c", EnqueuedAt: time.Now(), Sealed: sealed}
}

func setup(t *testing.T, mut func(*jobqueue.Config)) (jetstream.JetStream, *jobqueue.Publisher, *jobqueue.Events, jobqueue.Config) {
	t.Helper()
	nc, js, _ := stacktest.NATS(t)
	cfg := jobqueue.DefaultConfig()
	if mut != nil {
		mut(&cfg)
	}
	ctx := context.Background()
	if err := jobqueue.Setup(ctx, js, cfg, family.All()); err != nil {
		t.Fatal(err)
	}
	// Idempotent: a second setup (another replica, a redeploy) changes nothing.
	if err := jobqueue.Setup(ctx, js, cfg, family.All()); err != nil {
		t.Fatalf("second setup: %v", err)
	}
	pub, err := jobqueue.NewPublisher(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return js, pub, jobqueue.NewEvents(nc), cfg
}

func TestTopology(t *testing.T) {
	t.Parallel()
	js, _, _, cfg := setup(t, nil)
	ctx := context.Background()
	s, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	if info.Config.Retention != jetstream.WorkQueuePolicy || info.Config.Discard != jetstream.DiscardNew ||
		info.Config.Storage != jetstream.FileStorage || info.Config.Duplicates != cfg.Duplicates {
		t.Fatalf("stream config = %+v", info.Config)
	}
	for _, f := range family.All() {
		c, err := s.Consumer(ctx, jobqueue.ConsumerName(f))
		if err != nil {
			t.Fatal(err)
		}
		ci, _ := c.Info(ctx)
		if ci.Config.FilterSubject != jobqueue.Subject(f) || ci.Config.AckPolicy != jetstream.AckExplicitPolicy ||
			ci.Config.MaxDeliver != cfg.MaxDeliver || ci.Config.AckWait != cfg.AckWait {
			t.Fatalf("consumer %s config = %+v", f, ci.Config)
		}
	}
	if err := jobqueue.Check(ctx, js, cfg.Stream, family.All()); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, cfg.Stream, "dsc"); err != nil {
		t.Fatal(err)
	}
	if err := jobqueue.Check(ctx, js, cfg.Stream, family.All()); err == nil {
		t.Fatal("Check passed with a consumer missing")
	}
}

func TestPublishRoutesByFamilyAndDedups(t *testing.T) {
	t.Parallel()
	js, pub, _, cfg := setup(t, nil)
	ctx := context.Background()
	env := envelope(t, "disclose_aadhaar")
	if err := pub.Publish(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, env); !errors.Is(err, jobqueue.ErrDuplicate) {
		t.Fatalf("second publish of the same uuid: %v, want ErrDuplicate", err)
	}
	backlogs, err := jobqueue.Backlogs(ctx, js, cfg.Stream, family.All())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range backlogs {
		want := uint64(0)
		if b.Family == family.Disclose {
			want = 1
		}
		if b.Pending != want {
			t.Fatalf("%s pending = %d, want %d", b.Family, b.Pending, want)
		}
	}
	c, _ := js.Consumer(ctx, cfg.Stream, "disclose")
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if m.Headers().Get("Nats-Msg-Id") != env.RequestID || m.Subject() != "proof.jobs.disclose" {
			t.Fatalf("message %s headers %v", m.Subject(), m.Headers())
		}
		got, err := job.Unmarshal(m.Data())
		if err != nil || got.RequestID != env.RequestID {
			t.Fatalf("envelope = %+v, %v", got, err)
		}
		_ = m.Ack()
	}
}

func TestFullQueuePushesBack(t *testing.T) {
	t.Parallel()
	_, pub, _, _ := setup(t, func(c *jobqueue.Config) { c.MaxMsgs = 2 })
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := pub.Publish(ctx, envelope(t, "register")); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, envelope(t, "register")); !errors.Is(err, jobqueue.ErrQueueFull) {
		t.Fatalf("publish to a full queue: %v, want ErrQueueFull", err)
	}
}

func TestConfigValidation(t *testing.T) {
	cases := map[string]func(*jobqueue.Config){
		"no stream":     func(c *jobqueue.Config) { c.Stream = "" },
		"replicas":      func(c *jobqueue.Config) { c.Replicas = 0 },
		"unbounded":     func(c *jobqueue.Config) { c.MaxMsgs = 0 },
		"ack wait":      func(c *jobqueue.Config) { c.AckWait = time.Millisecond },
		"backoff steps": func(c *jobqueue.Config) { c.MaxDeliver = 1; c.BackOff = []time.Duration{time.Second, time.Second} },
		"ack pending":   func(c *jobqueue.Config) { c.MaxAckPending = 0 },
	}
	for name, mut := range cases {
		t.Run(name, func(t *testing.T) {
			c := jobqueue.DefaultConfig()
			mut(&c)
			if err := c.Validate(); err == nil {
				t.Fatal("Validate accepted a bad config")
			}
		})
	}
}

func TestStatusAndCancelEvents(t *testing.T) {
	t.Parallel()
	_, _, ev, _ := setup(t, nil)
	ctx := context.Background()
	id := uuid.NewString()
	var mu sync.Mutex
	var got []int
	done := make(chan struct{})
	unsub, err := ev.SubscribeStatus(id, func(e job.StatusEvent) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, int(e.Status))
		if e.Status == status.ProofGenerated {
			close(done)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	cancels := make(chan string, 1)
	unsubC, err := ev.SubscribeCancels(func(rid string) { cancels <- rid })
	if err != nil {
		t.Fatal(err)
	}
	defer unsubC()
	_ = ev.PublishStatus(ctx, job.StatusEvent{RequestID: uuid.NewString(), Status: 3}) // another request
	for _, s := range []status.Code{1, 2} {
		if err := ev.PublishStatus(ctx, job.StatusEvent{RequestID: id, Status: s}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("status events did not arrive")
	}
	mu.Lock()
	if len(got) != 2 || got[0] != 1 {
		t.Fatalf("events = %v", got)
	}
	mu.Unlock()
	if err := ev.PublishCancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	select {
	case rid := <-cancels:
		if rid != id {
			t.Fatalf("cancel for %s, want %s", rid, id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel event did not arrive")
	}
}

// Status events carry the row's fields to subscribers; one too large for
// the server goes without them, so readers fall back to the row.
func TestStatusEventsCarryTheRow(t *testing.T) {
	t.Parallel()
	_, _, ev, _ := setup(t, nil)
	ctx := context.Background()
	id := uuid.NewString()
	got := make(chan job.StatusEvent, 4)
	unsub, err := ev.SubscribeStatus(id, func(e job.StatusEvent) { got <- e })
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	next := func() job.StatusEvent {
		t.Helper()
		select {
		case e := <-got:
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("status event did not arrive")
		}
		return job.StatusEvent{}
	}

	at := time.Now()
	proof := json.RawMessage(`{"pi_a":["1","2","1"],"protocol":"groth16"}` + "\n")
	sent := []job.StatusEvent{
		job.WitnessGeneratedEvent(id, at),
		job.ProofGeneratedEvent(id, &at, at.Add(time.Second), proof, []string{"42", "7"}),
	}
	for _, s := range sent {
		if err := ev.PublishStatus(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var compact bytes.Buffer // JSON encoding compacts a raw proof, here and on the way to the client alike
	if err := json.Compact(&compact, proof); err != nil {
		t.Fatal(err)
	}
	for _, s := range sent { // in the order published
		e := next()
		if e.Status != s.Status || !e.Complete() || !e.Row.WitnessGeneratedAt.Equal(*s.Row.WitnessGeneratedAt) {
			t.Fatalf("got %+v, want %+v", e, s)
		}
		if s.Status == status.ProofGenerated && (string(e.Row.Proof) != compact.String() ||
			!e.Row.ProofGeneratedAt.Equal(*s.Row.ProofGeneratedAt) || strings.Join(e.Row.PublicInputs, ",") != "42,7") {
			t.Fatalf("proof generated event %+v", e.Row)
		}
	}

	huge := json.RawMessage(`{"x":"` + strings.Repeat("a", 17<<20) + `"}`) // over devstack's 16 MiB payload limit
	if err := ev.PublishStatus(ctx, job.ProofGeneratedEvent(id, &at, at, huge, nil)); err != nil {
		t.Fatal(err)
	}
	if e := next(); e.Status != status.ProofGenerated || e.Row != nil || e.At.IsZero() {
		t.Fatalf("oversized event arrived as status %d, row %v, at %v; want status 2 without a row", e.Status, e.Row != nil, e.At)
	}
}

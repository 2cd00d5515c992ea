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
	"github.com/nats-io/nats.go"
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
	return job.Envelope{RequestID: id, ProofType: pt, Circuit: "c_demo", EnqueuedAt: time.Now(), Sealed: sealed}
}

func setup(t *testing.T, mut func(*jobqueue.Config)) (jetstream.JetStream, *jobqueue.Publisher, *jobqueue.Events, jobqueue.Config) {
	t.Helper()
	nc, js, _ := stacktest.NATS(t)
	cfg := jobqueue.DefaultConfig()
	if mut != nil {
		mut(&cfg)
	}
	ctx := t.Context()
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
	ctx := t.Context()
	s, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	if info.Config.Retention != jetstream.LimitsPolicy || info.Config.Discard != jetstream.DiscardNew ||
		info.Config.Storage != jetstream.FileStorage || info.Config.Duplicates != cfg.Duplicates {
		t.Fatalf("stream config = %+v", info.Config)
	}
	for _, f := range family.All() {
		c, err := s.Consumer(ctx, jobqueue.ConsumerName(f))
		if err != nil {
			t.Fatal(err)
		}
		ci, _ := c.Info(ctx)
		if ci.Config.FilterSubject != jobqueue.FamilySubjects(f) || ci.Config.AckPolicy != jetstream.AckExplicitPolicy ||
			ci.Config.MaxDeliver != cfg.MaxDeliver || ci.Config.AckWait != cfg.AckWait {
			t.Fatalf("consumer %s config = %+v", f, ci.Config)
		}
	}
	// The advisory stream keeps the max-deliveries advisories of the job
	// consumers, one durable consumer per family that never gives up.
	adv, err := js.Stream(ctx, cfg.Stream+"_ADVISORIES")
	if err != nil {
		t.Fatal(err)
	}
	ainfo, _ := adv.Info(ctx)
	if ainfo.Config.Retention != jetstream.WorkQueuePolicy || len(ainfo.Config.Subjects) != 1 ||
		ainfo.Config.Subjects[0] != "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."+cfg.Stream+".*" ||
		ainfo.Config.SubjectTransform == nil {
		t.Fatalf("advisory stream config = %+v", ainfo.Config)
	}
	for _, f := range family.All() {
		c, err := adv.Consumer(ctx, "rescue-"+string(f))
		if err != nil {
			t.Fatal(err)
		}
		ci, _ := c.Info(ctx)
		if ci.Config.FilterSubject != jobqueue.AdvisorySubject(cfg.Stream, string(f))+".>" || ci.Config.MaxDeliver != -1 ||
			ci.Config.AckPolicy != jetstream.AckExplicitPolicy {
			t.Fatalf("rescue consumer %s config = %+v", f, ci.Config)
		}
	}
	if err := jobqueue.Check(ctx, js, cfg.Stream, family.All()); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, cfg.Stream+"_ADVISORIES", "rescue-register"); err != nil {
		t.Fatal(err)
	}
	if err := jobqueue.Check(ctx, js, cfg.Stream, family.All()); err == nil {
		t.Fatal("Check passed with a rescue consumer missing")
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
	ctx := t.Context()
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
	// The job is on its circuit's subject, served by the circuit's consumer
	// that the publisher created.
	c, err := js.Consumer(ctx, cfg.Stream, jobqueue.CircuitConsumerName(family.Disclose, env.Circuit))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		want := jobqueue.JobSubject(family.Disclose, env.Circuit, env.RequestID)
		if m.Headers().Get("Nats-Msg-Id") != env.RequestID || m.Subject() != want {
			t.Fatalf("message %s headers %v, want subject %s", m.Subject(), m.Headers(), want)
		}
		got, err := job.Unmarshal(m.Data())
		if err != nil || got.RequestID != env.RequestID {
			t.Fatalf("envelope = %+v, %v", got, err)
		}
		_ = m.Ack()
	}
	if n != 1 {
		t.Fatalf("fetched %d jobs, want 1", n)
	}
}

func TestPublishRejectsBadSubjectTokens(t *testing.T) {
	t.Parallel()
	_, pub, _, _ := setup(t, nil)
	for name, mut := range map[string]func(*job.Envelope){
		"circuit with a dot":    func(e *job.Envelope) { e.Circuit = "a.b" },
		"circuit wildcard":      func(e *job.Envelope) { e.Circuit = "*" },
		"request id with a dot": func(e *job.Envelope) { e.RequestID = "x.y" },
	} {
		t.Run(name, func(t *testing.T) {
			env := envelope(t, "dsc")
			mut(&env)
			if err := pub.Publish(t.Context(), env); err == nil {
				t.Fatal("published")
			}
		})
	}
}

func TestFullQueuePushesBack(t *testing.T) {
	t.Parallel()
	_, pub, _, _ := setup(t, func(c *jobqueue.Config) { c.MaxMsgs = 2 })
	ctx := t.Context()
	for i := 0; i < 2; i++ {
		if err := pub.Publish(ctx, envelope(t, "register")); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, envelope(t, "register")); !errors.Is(err, jobqueue.ErrQueueFull) {
		t.Fatalf("publish to a full queue: %v, want ErrQueueFull", err)
	}
}

// Whether a request's job is on the stream is one lookup of its subject
// (whatever its circuit), and a job consumed within the duplicate window can
// be published again under a fresh message id, which the window does not
// swallow.
func TestQueuedAndRepublish(t *testing.T) {
	t.Parallel()
	js, pub, _, cfg := setup(t, nil)
	ctx := t.Context()
	env := envelope(t, "dsc_id")
	queued := func(want bool) {
		t.Helper()
		got, err := pub.Queued(ctx, family.DSC, env.RequestID)
		if err != nil || got != want {
			t.Fatalf("Queued = %v, %v; want %v", got, err, want)
		}
	}
	queued(false)
	if err := pub.Publish(ctx, env); err != nil {
		t.Fatal(err)
	}
	queued(true)
	if got, err := pub.Queued(ctx, family.Register, env.RequestID); err != nil || got {
		t.Fatalf("Queued under another family = %v, %v", got, err)
	}
	// Taken as a worker takes it: its final ack deletes it.
	c, err := jobqueue.NewTaker(js, jobqueue.TakerConfig{Stream: cfg.Stream, Family: family.DSC, Wait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	take := func() jetstream.Msg {
		t.Helper()
		batch, err := c.Fetch(1)
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
			return m
		}
		t.Fatalf("nothing delivered: %v", batch.Error())
		return nil
	}
	take()
	queued(false)
	// The duplicate window remembers the consumed job.
	if err := pub.Publish(ctx, env); !errors.Is(err, jobqueue.ErrDuplicate) {
		t.Fatalf("publish of a consumed job within the window: %v, want ErrDuplicate", err)
	}
	queued(false)
	if err := pub.Republish(ctx, env, 1); err != nil {
		t.Fatal(err)
	}
	queued(true)
	if err := pub.Republish(ctx, env, 1); !errors.Is(err, jobqueue.ErrDuplicate) {
		t.Fatalf("the same round twice: %v, want ErrDuplicate", err)
	}
	if m := take(); m.Headers().Get("Nats-Msg-Id") != env.RequestID+"/requeue-1" {
		t.Fatalf("republished message id %q", m.Headers().Get("Nats-Msg-Id"))
	}
	for _, tc := range []struct {
		subject string
		want    bool
	}{
		{jobqueue.JobSubject(family.DSC, "c_demo", env.RequestID), true},
		{"proof.jobs.dsc", false}, {"proof.jobs.dsc." + env.RequestID, false}, {"proof.jobs.dsc.c.d.e", false},
		{"proof.jobs.dscx.c." + env.RequestID, false}, {jobqueue.JobSubject(family.Register, "c_demo", env.RequestID), false},
	} {
		if got := jobqueue.OfFamily(family.DSC, tc.subject); got != tc.want {
			t.Errorf("OfFamily(dsc, %q) = %v", tc.subject, got)
		}
	}
}

// A publish that gets no answer (NATS down) is of unknown outcome, not
// ErrNotQueued: the message waits in the connection's reconnect buffer and
// reaches the stream once the server is back. One that cannot leave the
// connection (closed) certainly failed.
func TestPublishOutcomes(t *testing.T) {
	t.Parallel()
	srv := stacktest.NATSServer(t)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cfg := jobqueue.DefaultConfig()
	if err := jobqueue.Setup(ctx, js, cfg, family.All()); err != nil {
		t.Fatal(err)
	}
	pub, err := jobqueue.NewPublisher(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, envelope(t, "register")); err != nil { // the circuit's consumer exists
		t.Fatal(err)
	}
	srv.Server().Shutdown()
	srv.Server().WaitForShutdown()
	for nc.IsConnected() { // a message written before the client sees the loss goes with the socket
		time.Sleep(10 * time.Millisecond)
	}
	env := envelope(t, "register")
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err = pub.Publish(pctx, env)
	cancel()
	if err == nil || errors.Is(err, jobqueue.ErrNotQueued) {
		t.Fatalf("publish while NATS is down: %v, want an error of unknown outcome", err)
	}
	// A circuit met for the first time: its consumer cannot be made now,
	// and its job is published all the same (kept by the connection), with
	// an unknown outcome like any other; its consumer comes later.
	first := envelope(t, "register")
	first.Circuit = "other_demo"
	pctx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
	err = pub.Publish(pctx, first)
	cancel()
	if err == nil || errors.Is(err, jobqueue.ErrNotQueued) {
		t.Fatalf("publish of a new circuit's job while NATS is down: %v, want an error of unknown outcome", err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, e := range []job.Envelope{env, first} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			ok, err := pub.Queued(ctx, family.Register, e.RequestID)
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the buffered job of %s never reached the stream (last lookup error %v)", e.Circuit, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The next job of the circuit makes its consumer, which serves both.
	if err := pub.Publish(ctx, sameCircuit(t, first)); err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(ctx, cfg.Stream, jobqueue.CircuitConsumerName(family.Register, "other_demo"))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(ctx); err != nil || info.NumPending != 2 {
		t.Fatalf("the circuit's consumer: %v pending, %v; want both jobs", info.NumPending, err)
	}
	// JetStream refusing the consumer (here: no family consumer) is
	// certainly not queued.
	if err := js.DeleteConsumer(ctx, cfg.Stream, jobqueue.ConsumerName(family.DSC)); err != nil {
		t.Fatal(err)
	}
	orphan := envelope(t, "dsc")
	if err := pub.Publish(ctx, orphan); !errors.Is(err, jobqueue.ErrNotQueued) {
		t.Fatalf("publish without the family consumer: %v, want ErrNotQueued", err)
	}
	if ok, err := pub.Queued(ctx, family.DSC, orphan.RequestID); err != nil || ok {
		t.Fatalf("the refused job is on the stream: %v, %v", ok, err)
	}
	nc.Close()
	if err := pub.Publish(ctx, envelope(t, "register")); !errors.Is(err, jobqueue.ErrNotQueued) {
		t.Fatalf("publish on a closed connection: %v, want ErrNotQueued", err)
	}
	bad := envelope(t, "register")
	bad.RequestID = "not.a.uuid"
	if err := pub.Publish(ctx, bad); !errors.Is(err, jobqueue.ErrNotQueued) {
		t.Fatalf("publish with a bad id: %v, want ErrNotQueued", err)
	}
}

// sameCircuit is another job of e's circuit.
func sameCircuit(t *testing.T, e job.Envelope) job.Envelope {
	t.Helper()
	n := envelope(t, e.ProofType)
	n.Circuit = e.Circuit
	return n
}

// A max-deliveries advisory is kept in the advisory stream while nobody
// listens, and handed out by the family's rescue consumer.
func TestAdvisoriesAreKept(t *testing.T) {
	t.Parallel()
	js, pub, _, cfg := setup(t, func(c *jobqueue.Config) { c.AckWait, c.MaxDeliver = time.Second, 1 })
	ctx := t.Context()
	env := envelope(t, "disclose")
	if err := pub.Publish(ctx, env); err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(ctx, cfg.Stream, jobqueue.CircuitConsumerName(family.Disclose, env.Circuit))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	for m := range batch.Messages() { // and never acknowledged: its worker is lost
		md, _ := m.Metadata()
		seq = md.Sequence.Stream
	}
	if seq == 0 {
		t.Fatalf("nothing delivered: %v", batch.Error())
	}
	rescue, err := js.Consumer(ctx, jobqueue.AdvisoryStream(cfg.Stream), jobqueue.RescueConsumerName(family.Disclose))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, err := rescue.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("advisory not kept: rescue consumer pending %d", info.NumPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ab, err := rescue.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range ab.Messages() {
		var adv struct {
			Stream    string `json:"stream"`
			Consumer  string `json:"consumer"`
			StreamSeq uint64 `json:"stream_seq"`
		}
		if err := json.Unmarshal(m.Data(), &adv); err != nil || adv.Stream != cfg.Stream || adv.Consumer != "disclose-"+env.Circuit || adv.StreamSeq != seq {
			t.Fatalf("advisory %s: %+v, %v", m.Data(), adv, err)
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("rescue consumer delivered nothing: %v", ab.Error())
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
	ctx := t.Context()
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
	ctx := t.Context()
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

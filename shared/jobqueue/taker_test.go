package jobqueue_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
)

// fleet is one embedded JetStream server with the topology set up and a
// publisher; each taker gets its own connection, as each worker has.
type fleet struct {
	url    string
	js     jetstream.JetStream
	pub    *jobqueue.Publisher
	cfg    jobqueue.Config
	takers int
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	return newFleetWith(t, nil)
}

// newFleetWith is newFleet with the queue's configuration edited by mut.
func newFleetWith(t *testing.T, mut func(*jobqueue.Config)) *fleet {
	t.Helper()
	_, js, url := stacktest.NATS(t)
	cfg := jobqueue.DefaultConfig()
	cfg.Memory = true
	if mut != nil {
		mut(&cfg)
	}
	if err := jobqueue.Setup(t.Context(), js, cfg, family.All()); err != nil {
		t.Fatal(err)
	}
	pub, err := jobqueue.NewPublisher(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fleet{url: url, js: js, pub: pub, cfg: cfg}
}

// taker starts a Taker of the dsc family on its own connection.
func (f *fleet) taker(t *testing.T, mut func(*jobqueue.TakerConfig)) *jobqueue.Taker {
	t.Helper()
	nc, err := nats.Connect(f.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	f.takers++
	cfg := jobqueue.TakerConfig{Stream: f.cfg.Stream, Family: family.DSC, Wait: 3 * time.Second, ID: fmt.Sprintf("worker-%d", f.takers)}
	if mut != nil {
		mut(&cfg)
	}
	tk, err := jobqueue.NewTaker(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tk.Stop)
	return tk
}

func (f *fleet) publish(t *testing.T, circuit string) job.Envelope {
	t.Helper()
	env := envelope(t, "dsc")
	env.Circuit = circuit
	if err := f.pub.Publish(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	return env
}

// lag is the family consumer's lag as KEDA reads it.
func (f *fleet) lag(t *testing.T) uint64 {
	t.Helper()
	c, err := f.js.Consumer(t.Context(), f.cfg.Stream, jobqueue.ConsumerName(family.DSC))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumPending + uint64(info.NumAckPending)
}

// waitLag waits until the family consumer's lag is want. The server updates
// a consumer's pending count as it learns of stored and deleted messages,
// a moment after the publish or delete has been acknowledged; a lag that
// has not reached want within 10 s fails the test.
func (f *fleet) waitLag(t *testing.T, want uint64, when string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lag := f.lag(t)
		if lag == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("family lag %d %s, want %d", lag, when, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// take fetches once and returns the job's envelope and message (nil when
// the fetch came back empty).
func take(t *testing.T, tk *jobqueue.Taker) (job.Envelope, jetstream.Msg) {
	t.Helper()
	b, err := tk.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	var msg jetstream.Msg
	for m := range b.Messages() {
		msg = m
	}
	if msg == nil {
		return job.Envelope{}, nil
	}
	env, err := job.Unmarshal(msg.Data())
	if err != nil {
		t.Fatal(err)
	}
	return env, msg
}

type taken struct {
	who string
	env job.Envelope
	msg jetstream.Msg
}

// fetchAll has each named taker fetch once, concurrently, and returns what
// each got, after every fetch came back.
func fetchAll(t *testing.T, takers map[string]*jobqueue.Taker, publish func()) []taken {
	t.Helper()
	out := make(chan taken, len(takers))
	for name, tk := range takers {
		go func() {
			b, err := tk.Fetch(1)
			if err != nil {
				t.Error(err)
				out <- taken{who: name}
				return
			}
			r := taken{who: name}
			for m := range b.Messages() {
				r.msg = m
				r.env, _ = job.Unmarshal(m.Data())
			}
			out <- r
		}()
	}
	time.Sleep(100 * time.Millisecond) // both are waiting (a head start, not an assertion)
	publish()
	var got []taken
	for range takers {
		if r := <-out; r.msg != nil {
			got = append(got, r)
		}
	}
	return got
}

func TestTakerGivesAJobToTheWorkerHoldingItsKeyWarm(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	// A generous yield: the test is about who takes the job, not how fast.
	warm := func(circuit string) func(*jobqueue.TakerConfig) {
		return func(c *jobqueue.TakerConfig) {
			c.Warm = func() []string { return []string{circuit} }
			c.Yield = 2 * time.Second
			c.Wait = 2500 * time.Millisecond
		}
	}
	takers := map[string]*jobqueue.Taker{"x-warm": f.taker(t, warm("dsc_x")), "y-warm": f.taker(t, warm("dsc_y"))}
	for round, circuit := range []string{"dsc_x", "dsc_y", "dsc_y", "dsc_x", "dsc_x", "dsc_y"} {
		var env job.Envelope
		got := fetchAll(t, takers, func() { env = f.publish(t, circuit) })
		if len(got) != 1 {
			t.Fatalf("round %d: %d takers got a job, want 1", round, len(got))
		}
		want := circuit[len("dsc_"):] + "-warm"
		if got[0].who != want || got[0].env.RequestID != env.RequestID {
			t.Fatalf("round %d: the job of %s went to %s, want %s", round, circuit, got[0].who, want)
		}
		if err := got[0].msg.DoubleAck(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	f.waitLag(t, 0, "after every job settled")
}

func TestTakerTakesAJobWhoseWarmWorkerIsBusy(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	// A yield far longer than a fetch's wait: a worker that yielded would
	// come back empty. It must not yield to a busy worker, nor to none.
	cold := f.taker(t, func(c *jobqueue.TakerConfig) {
		c.Warm = func() []string { return nil }
		c.Yield = time.Hour
	})
	alone := f.publish(t, "dsc_x")
	got, msg := take(t, cold)
	if msg == nil || got.RequestID != alone.RequestID {
		t.Fatalf("with no worker holding dsc_x warm the cold worker got %+v, want the job at once", got)
	}
	_ = msg.DoubleAck(t.Context())

	// x-warm holds dsc_x warm, takes a job and keeps it (busy): the next
	// dsc_x job goes to the cold worker rather than wait for it.
	warm := f.taker(t, func(c *jobqueue.TakerConfig) { c.Warm = func() []string { return []string{"dsc_x"} } })
	first := f.publish(t, "dsc_x")
	got, busy := take(t, warm)
	if busy == nil || got.RequestID != first.RequestID {
		t.Fatalf("the warm worker got %+v", got)
	}
	time.Sleep(200 * time.Millisecond) // its "busy" reaches the cold worker (not an assertion)
	second := f.publish(t, "dsc_x")
	got, msg = take(t, cold)
	if msg == nil || got.RequestID != second.RequestID {
		t.Fatalf("the cold worker got %+v, want the job of the busy warm worker's circuit at once", got)
	}
	_ = msg.DoubleAck(t.Context())
	_ = busy.DoubleAck(t.Context())
}

// A worker that holds no key a job needs takes first the circuits no
// other worker holds warm or works on, and goes on knowing the others
// while their proofs run.
func TestTakerSpreadsColdLoadsOverCircuitsNobodyHolds(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	sweep := func(warm ...string) func(*jobqueue.TakerConfig) {
		return func(c *jobqueue.TakerConfig) {
			c.Warm = func() []string { return warm }
			c.Sweep = 100 * time.Millisecond
		}
	}
	// a holds dsc_x warm and is busy with one of its jobs; b holds nothing
	// warm and is busy with a job of dsc_y.
	a := f.taker(t, sweep("dsc_x"))
	f.publish(t, "dsc_x")
	if _, msg := take(t, a); msg == nil {
		t.Fatal("a took nothing")
	} else {
		defer msg.DoubleAck(t.Context())
	}
	b := f.taker(t, sweep())
	f.publish(t, "dsc_y")
	_, yJob := take(t, b)
	if yJob == nil {
		t.Fatal("b took nothing")
	}
	// Queued, oldest first: x, y, z.
	for _, c := range []string{"dsc_x", "dsc_y", "dsc_z"} {
		f.publish(t, c)
	}
	c := f.taker(t, sweep())
	// Longer than three sweeps and a second, after which a worker that
	// said nothing would be taken for gone: a and b are mid-proof.
	time.Sleep(1600 * time.Millisecond)
	if env, msg := take(t, c); msg == nil || env.Circuit != "dsc_z" {
		t.Fatalf("c took %q, want dsc_z, which nobody else holds or works on", env.Circuit)
	} else {
		_ = msg.DoubleAck(t.Context())
	}
	// b settles its job: dsc_y is nobody's now, dsc_x still a's.
	if err := yJob.DoubleAck(t.Context()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // b's next heartbeat (not an assertion)
	if env, msg := take(t, c); msg == nil || env.Circuit != "dsc_y" {
		t.Fatalf("c took %q, want dsc_y (its worker settled it), not dsc_x (held warm by a)", env.Circuit)
	} else {
		_ = msg.DoubleAck(t.Context())
	}
	if env, msg := take(t, c); msg == nil || env.Circuit != "dsc_x" {
		t.Fatalf("c took %q, want dsc_x: a busy warm worker's job is still taken", env.Circuit)
	} else {
		_ = msg.DoubleAck(t.Context())
	}
}

// A job that rang no bell (a redelivery after a failure) is found by the
// sweep; settling deletes it, and the family consumer's lag counts every
// job until then.
func TestTakerSettlesJobsAndSweepsRedeliveries(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	tk := f.taker(t, func(c *jobqueue.TakerConfig) { c.Sweep = 200 * time.Millisecond })
	for _, c := range []string{"dsc_a", "dsc_b", "dsc_a"} {
		f.publish(t, c)
	}
	f.waitLag(t, 3, "with 3 jobs queued")
	settle := []struct {
		name string
		do   func(jetstream.Msg) error
		lag  uint64
	}{
		{"double ack", func(m jetstream.Msg) error { return m.DoubleAck(t.Context()) }, 2},
		{"term", func(m jetstream.Msg) error { return m.TermWithReason("bad input") }, 1},
		{"nak with delay (retry)", func(m jetstream.Msg) error { return m.NakWithDelay(300 * time.Millisecond) }, 1},
		{"ack of the redelivery", func(m jetstream.Msg) error { return m.Ack() }, 0},
	}
	seen := map[string]int{}
	for _, s := range settle {
		env, msg := take(t, tk)
		for msg == nil { // the redelivery waits out its delay
			env, msg = take(t, tk)
		}
		seen[env.RequestID]++
		if err := s.do(msg); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		f.waitLag(t, s.lag, "after "+s.name)
	}
	if len(seen) != 3 {
		t.Fatalf("jobs taken %v, want 3 distinct, one twice", seen)
	}
	s, err := f.js.Stream(t.Context(), f.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("%d messages left in the stream after every job settled", info.State.Msgs)
	}
	if _, msg := take(t, tk); msg != nil {
		t.Fatal("took a job after every job settled")
	}
}

// A job whose message cannot be deleted is not acknowledged: Ack,
// DoubleAck and Term return the delete's error and settle nothing, so the
// job stays in the stream, counted in the family's lag, and is delivered
// again once AckWait has passed. The stream refuses the deletes for real
// (DenyDelete, as a server refuses a worker without the permission).
func TestTakerDoesNotAcknowledgeAJobItCannotDelete(t *testing.T) {
	t.Parallel()
	f := newFleetWith(t, func(c *jobqueue.Config) { c.AckWait = time.Second })
	tk := f.taker(t, func(c *jobqueue.TakerConfig) { c.Sweep = 200 * time.Millisecond })
	want := f.publish(t, "dsc_a")
	s, err := f.js.Stream(t.Context(), f.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	sc.DenyDelete = true
	if _, err := f.js.UpdateStream(t.Context(), sc); err != nil {
		t.Fatal(err)
	}
	settle := []struct {
		name string
		do   func(jetstream.Msg) error
	}{
		{"ack", func(m jetstream.Msg) error { return m.Ack() }},
		{"double ack", func(m jetstream.Msg) error { return m.DoubleAck(t.Context()) }},
		{"term", func(m jetstream.Msg) error { return m.TermWithReason("bad input") }},
	}
	for i, st := range settle {
		ok := t.Run(st.name, func(t *testing.T) {
			deadline := time.Now().Add(time.Minute)
			env, msg := take(t, tk)
			for msg == nil { // the redelivery waits out AckWait
				if time.Now().After(deadline) {
					t.Fatal("the job was not delivered again")
				}
				env, msg = take(t, tk)
			}
			meta, err := msg.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if env.RequestID != want.RequestID || meta.NumDelivered != uint64(i+1) {
				t.Fatalf("took %s (delivery %d), want %s (delivery %d)", env.RequestID, meta.NumDelivered, want.RequestID, i+1)
			}
			err = st.do(msg)
			if err == nil || !strings.Contains(err.Error(), "delete settled job") {
				t.Fatalf("%s with the delete refused: err = %v, want the delete's error", st.name, err)
			}
			if _, err := s.GetMsg(t.Context(), meta.Sequence.Stream); err != nil {
				t.Fatalf("the job's message is gone after a refused delete: %v", err)
			}
			if lag := f.lag(t); lag != 1 {
				t.Fatalf("lag %d after a refused delete, want 1", lag)
			}
		})
		if !ok {
			break // the next ones would wait for a job already settled
		}
	}
}

// A circuit nobody takes (no worker holds it warm, and they are all busy
// with their warm ones) goes ahead once its jobs have waited Patience.
func TestTakerDoesNotStarveACircuitNobodyHoldsWarm(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	tk := f.taker(t, func(c *jobqueue.TakerConfig) {
		c.Warm = func() []string { return []string{"dsc_x"} }
		c.Patience = 300 * time.Millisecond
		c.Sweep = time.Hour // bells only
	})
	z := f.publish(t, "dsc_z")
	time.Sleep(500 * time.Millisecond) // z waits past Patience with nobody taking it
	f.publish(t, "dsc_x")
	got, msg := take(t, tk)
	if msg == nil || got.RequestID != z.RequestID {
		t.Fatalf("took %s, want the starving dsc_z job first", got.Circuit)
	}
	_ = msg.DoubleAck(t.Context())
	got, msg = take(t, tk)
	if msg == nil || got.Circuit != "dsc_x" {
		t.Fatalf("then took %q, want the dsc_x job", got.Circuit)
	}
	_ = msg.DoubleAck(t.Context())
}

func TestNewTakerRejects(t *testing.T) {
	f := newFleet(t)
	ok := jobqueue.TakerConfig{Stream: f.cfg.Stream, Family: family.DSC, Wait: time.Second}
	for name, mut := range map[string]func(*jobqueue.TakerConfig){
		"no stream":      func(c *jobqueue.TakerConfig) { c.Stream = "" },
		"bad family":     func(c *jobqueue.TakerConfig) { c.Family = "Register" },
		"short wait":     func(c *jobqueue.TakerConfig) { c.Wait = time.Millisecond },
		"negative sweep": func(c *jobqueue.TakerConfig) { c.Sweep = -time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			c := ok
			mut(&c)
			if _, err := jobqueue.NewTaker(f.js, c); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	tk, err := jobqueue.NewTaker(f.js, ok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Fetch(1); err == nil {
		t.Fatal("Fetch before Start succeeded")
	}
	if err := tk.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer tk.Stop()
	if _, err := tk.Fetch(2); err == nil {
		t.Fatal("Fetch(2) succeeded")
	}
}

// An old work-queue stream cannot become the new one in place: Setup says
// what to do instead of failing obscurely.
func TestSetupRefusesAnOldWorkQueueStream(t *testing.T) {
	t.Parallel()
	_, js, _ := stacktest.NATS(t)
	cfg := jobqueue.DefaultConfig()
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: cfg.Stream, Subjects: []string{jobqueue.SubjectAll}, Retention: jetstream.WorkQueuePolicy,
	}); err != nil {
		t.Fatal(err)
	}
	if err := jobqueue.Setup(t.Context(), js, cfg, family.All()); err == nil {
		t.Fatal("Setup accepted a work-queue stream")
	} else if !strings.Contains(err.Error(), "nats stream rm") {
		t.Fatalf("error %q does not say how to proceed", err)
	}
}

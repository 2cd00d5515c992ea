package service_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
	wt "github.com/openpassport/prover-fleet/worker/internal/workertest"
	"github.com/openpassport/prover-fleet/worker/service"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := service.Config{Family: family.DSC, CircuitDir: dir, ZkeyDir: dir, Prover: "/bin/true", Verifier: "/bin/true", JobKey: job.NewKey()}
	tests := []struct {
		name   string
		mutate func(*service.Config)
		want   string
	}{
		{"no family", func(c *service.Config) { c.Family = "" }, `service: Config.Family must be register, dsc or disclose, got ""`},
		{"bad family", func(c *service.Config) { c.Family = "kyc" }, `service: Config.Family must be register, dsc or disclose, got "kyc"`},
		{"negative concurrency", func(c *service.Config) { c.Concurrency = -1 }, "service: Config.Concurrency must be at least 1, got -1"},
		{"no circuits", func(c *service.Config) { c.CircuitDir = "" }, "service: Config.CircuitDir is required"},
		{"no zkeys", func(c *service.Config) { c.ZkeyDir = "" }, "service: Config.ZkeyDir is required"},
		{"missing circuits", func(c *service.Config) { c.CircuitDir = dir + "/nope" }, "service: Config.CircuitDir: stat " + dir + "/nope: no such file or directory"},
		{"bad mode", func(c *service.Config) { c.ProverMode = "gpu" }, `service: Config.ProverMode must be "command" or "native", got "gpu"`},
		{"short key", func(c *service.Config) { c.JobKey = []byte("short") }, "service: Config.JobKey must be 32 bytes, got 5"},
		{"retry", func(c *service.Config) { c.RetryBase, c.RetryMax = time.Minute, time.Second }, "service: Config.RetryBase 1m0s and RetryMax 1s must satisfy 0 ≤ RetryBase ≤ RetryMax"},
		{"prover missing", func(c *service.Config) { c.Prover = "/nonexistent/rapidsnark" }, "service: Config.Prover: prover: program /nonexistent/rapidsnark: stat /nonexistent/rapidsnark: no such file or directory"},
	}
	s := wt.Setup(t, jobqueue.Config{})
	deps := service.Deps{Pool: s.Pool, JS: s.JS, NC: s.NC, Logger: wt.Discard()}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mutate(&cfg)
			_, err := service.New(cfg, deps)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v\nwant   %s", err, tc.want)
			}
		})
	}
	if _, err := service.New(good, service.Deps{JS: s.JS, NC: s.NC, Logger: wt.Discard()}); err == nil || err.Error() != "service: Deps.Pool is nil" {
		t.Fatalf("nil pool: %v", err)
	}
	svc, err := service.New(good, deps)
	if err != nil {
		t.Fatal(err)
	}
	c := svc.Config()
	if c.Concurrency != 1 || c.Stream != jobqueue.StreamName || c.ShutdownGrace != service.DefaultShutdownGrace || c.WorkerID == "" {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

// Services of different families can share a registry; a second Service
// of the same family there is refused with a clear message.
func TestSharedRegistry(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	reg := prometheus.NewRegistry()
	deps := service.Deps{Pool: s.Pool, JS: s.JS, NC: s.NC, Logger: wt.Discard(), Registry: reg}
	for _, fam := range family.All() {
		if _, err := service.New(s.Config(f, fam), deps); err != nil {
			t.Fatalf("%s: %v", fam, err)
		}
	}
	_, err := service.New(s.Config(f, family.DSC), deps)
	if err == nil || !strings.Contains(err.Error(), "the dsc family's worker metrics are already registered here") {
		t.Fatalf("second dsc Service on one registry: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "prover_worker_slots" && len(mf.GetMetric()) != 3 {
			t.Fatalf("prover_worker_slots has %d series, want one per family", len(mf.GetMetric()))
		}
	}
}

// The fleet key never prints.
func TestJobKeyRedacted(t *testing.T) {
	t.Parallel()
	key := service.JobKey(job.NewKey())
	var sb strings.Builder
	logger := slogTo(&sb)
	logger.Info("config", "key", key, "cfg", service.Config{JobKey: key})
	for _, s := range []string{sb.String(), sprint(key), sprintf("%x", key), sprintf("%+v", service.Config{JobKey: key})} {
		if strings.Contains(s, sprintf("%x", []byte(key))) || !strings.Contains(s, "[REDACTED]") {
			t.Fatalf("key not redacted in %q", s)
		}
	}
}

// A job is proved, recorded and acknowledged; its directory is gone; the
// status events came in order; metrics and probes tell about it.
func TestProveOneJob(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	cfg := s.Config(f, family.Disclose)
	r := s.Start(cfg)

	var events []int
	got := make(chan job.StatusEvent, 10)
	env := s.Envelope("disclose_id", "fake_ok", wt.FakeInputs("1"))
	unsub, err := s.Events.SubscribeStatus(env.RequestID, func(ev job.StatusEvent) { got <- ev })
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	if err := s.Pub.Publish(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	p := s.WaitStatus(env.RequestID, status.ProofGenerated, 20*time.Second)
	if want := `{"pi_a":["1","2","1"],"pi_b":[["1","2"],["3","4"],["1","0"]],"pi_c":["5","6","1"],"protocol":"groth16","curve":"bn128"}` + "\n"; string(p.Proof) != want {
		t.Fatalf("proof not stored as written:\n%q\n%q", p.Proof, want)
	}
	if strings.Join(p.PublicInputs, ",") != "42,fake_ok" || p.Attempts != 1 || p.WorkerID != r.Svc.Config().WorkerID ||
		p.WitnessGeneratedAt == nil || p.ProofGeneratedAt == nil {
		t.Fatalf("row %+v", p)
	}
	for len(events) < 2 {
		select {
		case ev := <-got:
			events = append(events, int(ev.Status))
		case <-time.After(5 * time.Second):
			t.Fatalf("status events %v, want [1 2]", events)
		}
	}
	if events[0] != int(status.WitnessGenerated) || events[1] != int(status.ProofGenerated) {
		t.Fatalf("status events %v, want [1 2]", events)
	}
	info := s.WaitQueueEmpty(family.Disclose, 5*time.Second)
	if info.Delivered.Consumer != 1 {
		t.Fatalf("delivered %d times", info.Delivered.Consumer)
	}
	if left := wt.WorkDirJobs(t, cfg.WorkDir); len(left) != 0 {
		t.Fatalf("job dirs left: %v", left)
	}

	srv := httptest.NewServer(r.Svc.Handler())
	defer srv.Close()
	// The job's last metrics are recorded after its acknowledgement, which
	// may still be in flight when the queue reads empty: read until they
	// are all there, or report what is missing.
	wantMetrics := []string{
		`prover_worker_jobs_total{family="disclose",outcome="proved"} 1`,
		`prover_worker_stage_seconds_count{family="disclose",result="ok",stage="witness"} 1`,
		`prover_worker_stage_seconds_count{family="disclose",result="ok",stage="prove"} 1`,
		`prover_worker_stage_seconds_count{family="disclose",result="ok",stage="verify"} 1`,
		`prover_worker_child_max_rss_bytes_count{family="disclose",stage="prove"} 1`,
		`prover_worker_queue_wait_seconds_count{family="disclose"} 1`,
		`prover_worker_end_to_end_seconds_count{family="disclose",outcome="proved"} 1`,
		`prover_worker_busy_slots{family="disclose"} 0`,
		`prover_worker_slots{family="disclose"} 2`,
		`prover_worker_queue_pending{family="disclose"}`,
		`prover_worker_store_seconds_count{family="disclose",op="claim",result="ok"} 1`,
	}
	var missing []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		body := get(t, srv.URL+"/metrics", 200)
		missing = missing[:0]
		for _, want := range wantMetrics {
			if !strings.Contains(body, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range missing {
		t.Errorf("metrics lack %s", want)
	}
	get(t, srv.URL+"/healthz", 200)
	get(t, srv.URL+"/readyz", 200)
	if _, err := r.StopAndWait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	get(t, srv.URL+"/readyz", 503)
	if entries, _ := os.ReadDir(cfg.WorkDir); len(entries) != 0 {
		t.Fatalf("work dir not empty after stop: %v", entries)
	}
}

// The backlog gauges follow the consumer: jobs of a family nobody serves
// are pending.
func TestBacklogMetrics(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	cfg := s.Config(f, family.Register)
	cfg.BacklogInterval = 100 * time.Millisecond
	// A register worker whose prover is slow holds one job; two more wait.
	cfg.Concurrency = 1
	cfg.ChildEnv = append(cfg.ChildEnv, "FAKE_SLEEP=30")
	r := s.Start(cfg)
	for range 3 {
		s.Submit("register", "fake_slow", wt.FakeInputs("1"))
	}
	srv := httptest.NewServer(r.Svc.Handler())
	defer srv.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		body := get(t, srv.URL+"/metrics", 200)
		if strings.Contains(body, `prover_worker_queue_pending{family="register"} 2`) &&
			strings.Contains(body, `prover_worker_queue_ack_pending{family="register"} 1`) &&
			strings.Contains(body, `prover_worker_busy_slots{family="register"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog metrics never showed 2 pending, 1 ack pending, 1 busy:\n%s", grep(body, "queue_|busy"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A witness generator that rejects the input fails the job at once: status
// 3 with the reason, one delivery, the prover never runs.
func TestWitnessRejectsInput(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	cfg := s.Config(f, family.DSC)
	s.Start(cfg)
	id := s.Submit("dsc", "fake_ok", wt.FakeInputs("reject"))
	p := s.WaitStatus(id, status.Failed, 20*time.Second)
	if !strings.HasPrefix(p.Reason, "witness generation rejected the input") || !strings.Contains(p.Reason, "Error in template Demo_1 line: 7") {
		t.Fatalf("reason %q", p.Reason)
	}
	info := s.WaitQueueEmpty(family.DSC, 5*time.Second)
	time.Sleep(500 * time.Millisecond) // a redelivery would show up by now
	info = s.ConsumerInfo(family.DSC)
	if info.Delivered.Consumer != 1 || info.NumRedelivered != 0 || info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("consumer after a rejection: delivered %d redelivered %d pending %d ack pending %d",
			info.Delivered.Consumer, info.NumRedelivered, info.NumPending, info.NumAckPending)
	}
	if p := s.WaitStatus(id, status.Failed, time.Second); p.Attempts != 1 {
		t.Fatalf("attempts %d", p.Attempts)
	}
	if n := f.Calls(t, "prove"); n != 0 {
		t.Fatalf("prover ran %d times", n)
	}
	if left := wt.WorkDirJobs(t, cfg.WorkDir); len(left) != 0 {
		t.Fatalf("job dirs left after a failure: %v", left)
	}
}

// Jobs that are bad before any child runs are terminated with a reason.
func TestBadJobs(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	s.Start(s.Config(f, family.Register))
	ctx := t.Context()

	// Undecodable: terminated, nothing to record.
	if _, err := jobqueue.EnsureCircuitConsumer(ctx, s.JS, s.Queue.Stream, family.Register, "fake_ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.JS.Publish(ctx, jobqueue.JobSubject(family.Register, "fake_ok", "x"), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	// Circuit name that would escape the circuits folder (published raw:
	// the publisher refuses it).
	bad := s.Envelope("register", "fake_ok", wt.FakeInputs("1"))
	bad.Circuit = "../fake_ok"
	data, _ := bad.Marshal()
	if _, err := s.JS.Publish(ctx, jobqueue.JobSubject(family.Register, "fake_ok", bad.RequestID), data); err != nil {
		t.Fatal(err)
	}
	// Inputs that are not JSON.
	notJSON := s.Envelope("register", "fake_ok", "")
	notJSON.Sealed, _ = s.Sealer.Seal(notJSON.RequestID, []byte("{not json"))
	if err := s.Pub.Publish(ctx, notJSON); err != nil {
		t.Fatal(err)
	}
	// No row recorded under the id (deleted by retention, or lost by the
	// database): nothing to prove or record; retried in case the row
	// appears, then given up on its last delivery.
	orphan := s.Envelope("register", "fake_ok", wt.FakeInputs("1"))
	if _, err := s.Pool.Exec(ctx, "DELETE FROM proofs WHERE request_id = $1", orphan.RequestID); err != nil {
		t.Fatal(err)
	}
	if err := s.Pub.Publish(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	if p := s.WaitStatus(bad.RequestID, status.Failed, 10*time.Second); p.Reason != "invalid circuit name" {
		t.Fatalf("reason %q", p.Reason)
	}
	if p := s.WaitStatus(notJSON.RequestID, status.Failed, 10*time.Second); p.Reason != "circuit inputs are not valid JSON" {
		t.Fatalf("reason %q", p.Reason)
	}
	// 1 each for the three bad jobs, MaxDeliver (3) for the orphan.
	s.WaitDelivered(family.Register, 6, 15*time.Second)
	time.Sleep(500 * time.Millisecond) // a redelivery would show by now
	if info := s.ConsumerInfo(family.Register); info.Delivered.Consumer != 6 || info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("delivered %d, want 6; pending %d ack pending %d", info.Delivered.Consumer, info.NumPending, info.NumAckPending)
	}
	if _, err := s.Store.Get(ctx, orphan.RequestID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("orphan job made a row: %v", err)
	}
	if n := f.Calls(t, "witness"); n != 0 {
		t.Fatalf("witness generator ran %d times", n)
	}
}

// A prover that hangs is killed with its whole process group at the
// timeout, retried, and finally failed with the reason.
func TestProverHangs(t *testing.T) {
	t.Parallel()
	q := jobqueue.DefaultConfig()
	q.AckWait, q.MaxDeliver = 3*time.Second, 2
	s := wt.Setup(t, q)
	f := wt.NewFakes(t)
	cfg := s.Config(f, family.Disclose)
	cfg.ProveTimeout = time.Second
	s.Start(cfg)
	id := s.Submit("disclose", "fake_hang", wt.FakeInputs("1"))

	first := f.WaitPID(t, "grandchild.pid", 10*time.Second)
	prover := f.WaitPID(t, "prover.pid", time.Second)
	wt.WaitGone(t, first, 5*time.Second)
	wt.WaitGone(t, prover, time.Second)

	p := s.WaitStatus(id, status.Failed, 20*time.Second)
	want := "gave up after 2 attempts: proving failed: prove: timed out after 1s"
	if p.Reason != want || p.Attempts != 2 {
		t.Fatalf("reason %q attempts %d, want %q after 2", p.Reason, p.Attempts, want)
	}
	if n := f.Calls(t, "prove fake_hang"); n != 2 {
		t.Fatalf("prover ran %d times, want 2", n)
	}
	wt.WaitGone(t, f.WaitPID(t, "grandchild.pid", time.Second), 5*time.Second)
	info := s.WaitQueueEmpty(family.Disclose, 5*time.Second)
	if info.Delivered.Consumer != 2 {
		t.Fatalf("delivered %d, want 2", info.Delivered.Consumer)
	}
	if left := wt.WorkDirJobs(t, cfg.WorkDir); len(left) != 0 {
		t.Fatalf("job dirs left: %v", left)
	}
}

// A proof that does not verify is not recorded: it is retried and fails.
func TestProofDoesNotVerify(t *testing.T) {
	t.Parallel()
	q := jobqueue.DefaultConfig()
	q.AckWait, q.MaxDeliver = 3*time.Second, 2
	s := wt.Setup(t, q)
	f := wt.NewFakes(t)
	s.Start(s.Config(f, family.DSC))
	id := s.Submit("dsc_id", "fake_badproof", wt.FakeInputs("1"))
	p := s.WaitStatus(id, status.Failed, 20*time.Second)
	if p.Reason != "gave up after 2 attempts: proof does not verify" || p.Proof != nil {
		t.Fatalf("row %+v", p)
	}
}

// A duplicate publish of one uuid is dropped by the stream; a later
// redelivery of a proved job is acknowledged without proving again; the
// result is never overwritten.
func TestDuplicatesProveOnce(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	s.Start(s.Config(f, family.Register))
	ctx := t.Context()
	env := s.Envelope("register_id", "fake_ok", wt.FakeInputs("1"))
	if err := s.Pub.Publish(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := s.Pub.Publish(ctx, env); !errors.Is(err, jobqueue.ErrDuplicate) {
		t.Fatalf("second publish: %v, want ErrDuplicate", err)
	}
	first := s.WaitStatus(env.RequestID, status.ProofGenerated, 20*time.Second)
	s.WaitQueueEmpty(family.Register, 5*time.Second)

	// The same job again, past the duplicate window (another message id):
	// as after a crash between the status write and the ack.
	data, _ := env.Marshal()
	if _, err := s.JS.Publish(ctx, jobqueue.JobSubject(family.Register, env.Circuit, env.RequestID), data, jetstream.WithMsgID(env.RequestID+"-again")); err != nil {
		t.Fatal(err)
	}
	s.WaitDelivered(family.Register, 2, 10*time.Second)
	again := s.WaitStatus(env.RequestID, status.ProofGenerated, time.Second)
	if n := f.Calls(t, "prove"); n != 1 {
		t.Fatalf("prover ran %d times, want 1", n)
	}
	if string(again.Proof) != string(first.Proof) || !again.ProofGeneratedAt.Equal(*first.ProofGeneratedAt) || !again.UpdatedAt.Equal(first.UpdatedAt) {
		t.Fatalf("row changed by the redelivery:\n%+v\n%+v", first, again)
	}
}

// Cancelling a running job kills its children; the row keeps the
// frontend's "cancelled"; the message is acknowledged, not retried.
func TestCancelRunningJob(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	s.Start(s.Config(f, family.Disclose))
	id := s.Submit("disclose", "fake_hang", wt.FakeInputs("1"))
	grandchild := f.WaitPID(t, "grandchild.pid", 10*time.Second)
	prover := f.WaitPID(t, "prover.pid", time.Second)
	s.WaitStatus(id, status.WitnessGenerated, 5*time.Second)

	// The frontend records the cancel, then announces it.
	ctx := t.Context()
	if changed, err := s.Store.MarkFailed(ctx, id, "cancelled"); err != nil || !changed {
		t.Fatalf("frontend cancel: %v %v", changed, err)
	}
	start := time.Now()
	if err := s.Events.PublishCancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	wt.WaitGone(t, prover, 5*time.Second)
	wt.WaitGone(t, grandchild, time.Second)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("children killed %s after the cancel", took)
	}
	info := s.WaitQueueEmpty(family.Disclose, 5*time.Second)
	time.Sleep(time.Second)
	if p := s.WaitStatus(id, status.Failed, time.Second); p.Reason != "cancelled" {
		t.Fatalf("reason %q", p.Reason)
	}
	if info = s.ConsumerInfo(family.Disclose); info.Delivered.Consumer != 1 {
		t.Fatalf("delivered %d times", info.Delivered.Consumer)
	}
}

// A cancel announced before the frontend's write lands still ends the job
// as cancelled (the worker writes it, guarded).
func TestCancelBeforeRowWrite(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	s.Start(s.Config(f, family.Disclose))
	id := s.Submit("disclose", "fake_hang", wt.FakeInputs("1"))
	prover := f.WaitPID(t, "prover.pid", 10*time.Second)
	if err := s.Events.PublishCancel(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	wt.WaitGone(t, prover, 5*time.Second)
	if p := s.WaitStatus(id, status.Failed, 5*time.Second); p.Reason != "cancelled" {
		t.Fatalf("reason %q", p.Reason)
	}
}

// Shutdown with a job that outlives the grace: it is killed and handed
// back (not failed), and another worker completes it.
func TestShutdownHandsBackJob(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	cfg := s.Config(f, family.Register)
	cfg.ShutdownGrace = 500 * time.Millisecond
	cfg.ChildEnv = append(cfg.ChildEnv, "FAKE_SLEEP=30")
	cfg.WorkerID = "worker-a"
	a := s.Start(cfg)
	id := s.Submit("register", "fake_slow", wt.FakeInputs("1"))
	prover := f.WaitPID(t, "prover.pid", 10*time.Second)

	took, err := a.StopAndWait(t, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if took > 4*time.Second {
		t.Fatalf("stop took %s with a 500ms grace", took)
	}
	wt.WaitGone(t, prover, time.Second)
	p, _ := s.Store.Get(t.Context(), id)
	if p.Status.Terminal() {
		t.Fatalf("row after shutdown: status %s reason %q", p.Status, p.Reason)
	}
	if left := wt.WorkDirJobs(t, cfg.WorkDir); len(left) != 0 {
		t.Fatalf("job dirs left: %v", left)
	}

	// The job was handed back at once (Nak, no delay): a second worker
	// with a fast prover takes it well before AckWait.
	cfg.ChildEnv = []string{"FAKE_LOG=" + f.Log, "FAKE_SLEEP=0"}
	cfg.WorkerID = "worker-b"
	handedBack := time.Now()
	s.Start(cfg)
	p = s.WaitStatus(id, status.ProofGenerated, 20*time.Second)
	if p.WorkerID != "worker-b" || p.Attempts != 2 {
		t.Fatalf("row %+v", p)
	}
	if d := time.Since(handedBack); d > s.Queue.AckWait+2*time.Second {
		t.Logf("second worker finished %s after the hand-back", d)
	}
}

// Shutdown with a job that finishes within the grace: it completes.
func TestShutdownFinishesJobWithinGrace(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	cfg := s.Config(f, family.DSC)
	cfg.ShutdownGrace = 10 * time.Second
	cfg.ChildEnv = append(cfg.ChildEnv, "FAKE_SLEEP=1")
	a := s.Start(cfg)
	id := s.Submit("dsc", "fake_slow", wt.FakeInputs("1"))
	f.WaitPID(t, "prover.pid", 10*time.Second)
	took, err := a.StopAndWait(t, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if took < 500*time.Millisecond {
		t.Fatalf("stop took %s: the job did not get its grace", took)
	}
	p := s.WaitStatus(id, status.ProofGenerated, time.Second)
	if p.Attempts != 1 {
		t.Fatalf("attempts %d", p.Attempts)
	}
	s.WaitQueueEmpty(family.DSC, 5*time.Second)
}

// Two Services of one family share the queue; each job is proved once.
func TestTwoWorkersOneFamily(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	cfg := s.Config(f, family.DSC)
	cfg.WorkerID = "a"
	s.Start(cfg)
	cfg.WorkerID = "b"
	s.Start(cfg)
	var ids []string
	for range 8 {
		ids = append(ids, s.Submit("dsc", "fake_ok", wt.FakeInputs("1")))
	}
	for _, id := range ids {
		s.WaitStatus(id, status.ProofGenerated, 30*time.Second)
	}
	s.WaitQueueEmpty(family.DSC, 5*time.Second) // acked after the dir is removed
	if n := f.Calls(t, "prove"); n != len(ids) {
		t.Fatalf("prover ran %d times for %d jobs", n, len(ids))
	}
	if left := wt.WorkDirJobs(t, cfg.WorkDir); len(left) != 0 {
		t.Fatalf("job dirs left: %v", left)
	}
}

// Debug logs carry the required fields and never a circuit input, the
// sealed blob or the key.
func TestLogsCarryNoInputs(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	r := s.Start(s.Config(f, family.Register))
	const marker = "7712093847561029384756102938475610293847"
	env := s.Envelope("register", "fake_ok", wt.FakeInputs(marker))
	if err := s.Pub.Publish(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	rejected := s.Submit("register", "fake_ok", wt.FakeInputs("reject-"+marker))
	s.WaitStatus(env.RequestID, status.ProofGenerated, 20*time.Second)
	s.WaitStatus(rejected, status.Failed, 20*time.Second)
	r.WaitLog(t, `"msg":"job finished"`, 5*time.Second)
	r.WaitLog(t, `"msg":"job failed"`, 5*time.Second)
	logs := r.Logs.String()
	wt.AssertNoSecrets(t, logs, []string{marker, string(env.Sealed), sprintf("%x", s.Key)})
	seen := false
	for _, l := range wt.LogLines(t, logs) {
		if l["msg"] == "job finished" {
			seen = true
			for _, k := range []string{"component", "request_id", "family", "circuit", "attempt", "duration_ms"} {
				if _, ok := l[k]; !ok {
					t.Errorf("log line %v lacks %s", l, k)
				}
			}
		}
	}
	if !seen {
		t.Fatal(`no "job finished" line`)
	}
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

func sprint(v any) string { return fmt.Sprint(v) }

func sprintf(format string, v ...any) string { return fmt.Sprintf(format, v...) }

func get(t *testing.T, url string, want int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, b, want)
	}
	return string(b)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range strings.Split(sub, "|") {
			if strings.Contains(l, p) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

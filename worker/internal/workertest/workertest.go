// Package workertest gives the worker's tests real infrastructure and fake
// proving tools: a Stack (embedded JetStream with the fleet's stream and
// consumers, a fresh migrated Postgres database, a fleet key, a publisher)
// and Fakes (shell scripts standing in for witness generators, a prover and
// a verifier, whose behaviour follows the circuit name), plus helpers to run
// and stop Services and to watch rows, queues and processes.
//
// Use it from tests only; the package's TestMain must call stacktest.Main.
package workertest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/internal/devstack"
	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
	"github.com/openpassport/prover-fleet/worker/service"
)

// stack is the real infrastructure one test runs against.
type Stack struct {
	T       *testing.T
	NC      *nats.Conn
	JS      jetstream.JetStream
	NATSURL string
	PGURL   string
	Pool    *pgxpool.Pool
	Store   *store.Store
	Key     []byte
	Sealer  *job.Sealer
	Pub     *jobqueue.Publisher
	Events  *jobqueue.Events
	Queue   jobqueue.Config
	// NATSServer is the embedded server (Restart makes an outage); PG is
	// the test's own Postgres server, set by SetupOwnPostgres only.
	NATSServer *devstack.NATS
	PG         *devstack.Postgres
}

// Setup starts NATS and Postgres, creates the stream and consumers with q
// (the defaults with a short AckWait when q is zero).
func Setup(t *testing.T, q jobqueue.Config) *Stack {
	t.Helper()
	return setup(t, q, nil, stacktest.PostgresURL(t))
}

// SetupOwnPostgres is Setup on a Postgres server of the test's own
// (Stack.PG), which the test may stop and restart.
func SetupOwnPostgres(t *testing.T, q jobqueue.Config) *Stack {
	t.Helper()
	pg, url := stacktest.PrivatePostgres(t)
	return setup(t, q, pg, url)
}

func setup(t *testing.T, q jobqueue.Config, pg *devstack.Postgres, pgURL string) *Stack {
	t.Helper()
	if q.Stream == "" {
		q = jobqueue.DefaultConfig()
		q.AckWait = 3 * time.Second
		q.MaxDeliver = 3
	}
	srv := stacktest.NATSServer(t)
	// The connection outlives server restarts, as the programs' do.
	nc, err := nats.Connect(srv.URL(), nats.Name(t.Name()), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := jobqueue.Setup(ctx, js, q, family.All()); err != nil {
		t.Fatal(err)
	}
	key := job.NewKey()
	sealer, err := job.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := jobqueue.NewPublisher(js, q)
	if err != nil {
		t.Fatal(err)
	}
	return &Stack{T: t, NC: nc, JS: js, NATSURL: srv.URL(), PGURL: pgURL, Pool: pool, Store: store.New(pool),
		Key: key, Sealer: sealer, Pub: pub, Events: jobqueue.NewEvents(nc), Queue: q, NATSServer: srv, PG: pg}
}

// Envelope records a request as the frontend does (the row and its sealed
// job) and returns its job.
func (s *Stack) Envelope(pt family.ProofType, circuit, inputs string) job.Envelope {
	s.T.Helper()
	id := uuid.NewString()
	ctx := context.Background()
	sealed, err := s.Sealer.Seal(id, []byte(inputs))
	if err != nil {
		s.T.Fatal(err)
	}
	if err := s.Store.Insert(ctx, store.Request{ID: id, ProofType: pt, Circuit: circuit, Version: 1, Sealed: sealed}); err != nil {
		s.T.Fatal(err)
	}
	return job.Envelope{RequestID: id, ProofType: pt, Circuit: circuit, EnqueuedAt: time.Now().UTC(), Sealed: sealed}
}

// Submit records and enqueues a request and returns its id.
func (s *Stack) Submit(pt family.ProofType, circuit, inputs string) string {
	s.T.Helper()
	env := s.Envelope(pt, circuit, inputs)
	if err := s.Pub.Publish(context.Background(), env); err != nil {
		s.T.Fatal(err)
	}
	return env.RequestID
}

// WaitRow polls the row until ok accepts it.
func (s *Stack) WaitRow(id string, timeout time.Duration, what string, ok func(store.Proof) bool) store.Proof {
	s.T.Helper()
	deadline := time.Now().Add(timeout)
	var last store.Proof
	for {
		p, err := s.Store.Get(context.Background(), id)
		if err != nil {
			s.T.Fatal(err)
		}
		if ok(p) {
			return p
		}
		last = p
		if time.Now().After(deadline) {
			s.T.Fatalf("row %s: waited %s for %s; last status %s reason %q attempts %d",
				id, timeout, what, last.Status, last.Reason, last.Attempts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Stack) WaitStatus(id string, want status.Code, timeout time.Duration) store.Proof {
	s.T.Helper()
	return s.WaitRow(id, timeout, "status "+want.String(), func(p store.Proof) bool { return p.Status == want })
}

// ConsumerInfo sums the state of a family's circuit consumers, from which
// workers take its jobs: deliveries (Delivered.Consumer), NumPending,
// NumAckPending and NumRedelivered.
func (s *Stack) ConsumerInfo(f family.Family) *jetstream.ConsumerInfo {
	s.T.Helper()
	st, err := s.JS.Stream(context.Background(), s.Queue.Stream)
	if err != nil {
		s.T.Fatal(err)
	}
	sum := &jetstream.ConsumerInfo{Stream: s.Queue.Stream, Name: "circuits of " + string(f)}
	l := st.ListConsumers(context.Background())
	for info := range l.Info() {
		if cf, _, ok := jobqueue.ParseCircuitConsumer(info.Name); ok && cf == f {
			sum.Delivered.Consumer += info.Delivered.Consumer
			sum.NumPending += info.NumPending
			sum.NumAckPending += info.NumAckPending
			sum.NumRedelivered += info.NumRedelivered
		}
	}
	if err := l.Err(); err != nil {
		s.T.Fatal(err)
	}
	return sum
}

// FamilyLag is the family consumer's lag (pending + ack pending, as KEDA
// reads it): the family's jobs not yet settled and deleted.
func (s *Stack) FamilyLag(f family.Family) uint64 {
	s.T.Helper()
	c, err := s.JS.Consumer(context.Background(), s.Queue.Stream, jobqueue.ConsumerName(f))
	if err != nil {
		s.T.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		s.T.Fatal(err)
	}
	return info.NumPending + uint64(info.NumAckPending)
}

// WaitQueueEmpty waits until the family has nothing pending or unacked,
// and every job is settled (deleted: the family consumer's lag is 0).
func (s *Stack) WaitQueueEmpty(f family.Family, timeout time.Duration) *jetstream.ConsumerInfo {
	s.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		info := s.ConsumerInfo(f)
		lag := s.FamilyLag(f)
		if info.NumPending == 0 && info.NumAckPending == 0 && lag == 0 {
			return info
		}
		if time.Now().After(deadline) {
			s.T.Fatalf("queue %s not empty after %s: pending %d ack pending %d, family lag %d", f, timeout, info.NumPending, info.NumAckPending, lag)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitDelivered waits until the family's consumer has made at least n
// deliveries and has nothing pending or unacknowledged, then returns its
// info.
func (s *Stack) WaitDelivered(f family.Family, n uint64, timeout time.Duration) *jetstream.ConsumerInfo {
	s.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		info := s.ConsumerInfo(f)
		if info.Delivered.Consumer >= n && info.NumPending == 0 && info.NumAckPending == 0 {
			return info
		}
		if time.Now().After(deadline) {
			s.T.Fatalf("queue %s after %s: %d deliveries (want %d), pending %d, ack pending %d",
				f, timeout, info.Delivered.Consumer, n, info.NumPending, info.NumAckPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Fakes is a circuits folder and a zkeys folder with shell-script stand-ins
// for the witness generator, the prover and the verifier. Their behaviour
// depends on the circuit name, so one set serves every case:
//
//	*_ok      prove at once
//	*_slow    the prover sleeps $FAKE_SLEEP seconds (default 30), then proves
//	*_hang    the prover starts a background sleep, records both pids, waits forever
//	*_badproof  the verifier says "Invalid proof"
//
// A witness input holding "reject" is refused like a failed constraint
// (circom's generators abort). Every run appends a line to $FAKE_LOG/calls.
type Fakes struct {
	// Circuits and Zkeys are the folders to configure; Log holds the calls
	// file and the pid files; Prover and Verifier are the commands.
	Circuits, Zkeys, Log string
	Prover, Verifier     string
}

// fakeCircuits: fake_*, and fakex_* and fakey_* for tests of two circuits
// of one family (affinity).
var fakeCircuits = []string{"fake_ok", "fake_slow", "fake_hang", "fake_badproof", "fakex_ok", "fakex_slow", "fakey_ok"}

const witnessScript = `#!/bin/sh
echo "witness $(basename "$0") $$" >> "$FAKE_LOG/calls"
if grep -q reject "$1"; then
  echo "Error in template Demo_1 line: 7" >&2
  kill -ABRT $$
fi
cp "$1" "$2"
`

const proverScript = `#!/bin/sh
zkey=$1; wtns=$2; proof=$3; public=$4
name=$(basename "$zkey" .zkey)
echo "prove $name $$" >> "$FAKE_LOG/calls"
echo $$ > "$FAKE_LOG/prover.pid"
test -s "$wtns" || { echo "no witness" >&2; exit 2; }
case "$name" in
  *_slow) sleep "${FAKE_SLEEP:-30}" ;;
  *_hang)
    sleep 1000 &
    echo $! > "$FAKE_LOG/grandchild.pid"
    wait ;;
esac
printf '{"pi_a":["1","2","1"],"pi_b":[["1","2"],["3","4"],["1","0"]],"pi_c":["5","6","1"],"protocol":"groth16","curve":"bn128"}\n' > "$proof"
printf '["42","%s"]\n' "$name" > "$public"
`

const verifierScript = `#!/bin/sh
name=$(basename "$1" .vkey.json)
echo "verify $name $$" >> "$FAKE_LOG/calls"
case "$name" in
  *_badproof) echo "[ERROR] snarkJS: Invalid proof"; exit 1 ;;
esac
echo "[INFO]  snarkJS: OK!"
`

func NewFakes(t *testing.T) *Fakes {
	t.Helper()
	root := t.TempDir()
	f := &Fakes{Circuits: filepath.Join(root, "circuits"), Zkeys: filepath.Join(root, "zkeys"),
		Log: filepath.Join(root, "log")}
	for _, d := range []string{f.Circuits, f.Zkeys, f.Log, filepath.Join(root, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, body string, mode os.FileMode) {
		if err := os.WriteFile(path, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	l := circuitdir.Layout{CircuitDir: f.Circuits, ZkeyDir: f.Zkeys}
	for _, c := range fakeCircuits {
		if err := os.MkdirAll(filepath.Dir(l.Generator(c)), 0o755); err != nil {
			t.Fatal(err)
		}
		write(l.Generator(c), witnessScript, 0o755)
		write(l.Zkey(c), "fake key", 0o644)
		write(l.VKey(c), "{}", 0o644)
	}
	f.Prover = filepath.Join(root, "bin", "prover")
	write(f.Prover, proverScript, 0o755)
	f.Verifier = filepath.Join(root, "bin", "verifier")
	write(f.Verifier, verifierScript, 0o755)
	write(filepath.Join(f.Log, "calls"), "", 0o644)
	return f
}

// Calls counts logged runs whose line starts with prefix.
func (f *Fakes) Calls(t *testing.T, prefix string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.Log, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// WaitPID waits for a pid file written by a fake and returns the pid.
func (f *Fakes) WaitPID(t *testing.T, name string, timeout time.Duration) int {
	t.Helper()
	path := filepath.Join(f.Log, name)
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s", name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Alive reports whether pid is a live (not zombie) process.
func Alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

func WaitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for Alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %s: orphan left behind", pid, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Config is a Service configuration on the fakes with short test timings.
func (s *Stack) Config(f *Fakes, fam family.Family) service.Config {
	return service.Config{
		Family:        fam,
		Concurrency:   2,
		CircuitDir:    f.Circuits,
		ZkeyDir:       f.Zkeys,
		Prover:        f.Prover,
		Verifier:      f.Verifier,
		WorkDir:       filepath.Join(filepath.Dir(f.Log), "work"),
		ProveTimeout:  20 * time.Second,
		ShutdownGrace: 5 * time.Second,
		JobKey:        s.Key,
		FetchWait:     500 * time.Millisecond,
		RetryBase:     100 * time.Millisecond,
		RetryMax:      time.Second,
		ChildEnv:      []string{"FAKE_LOG=" + f.Log},
	}
}

// Running is a Service running in this process.
type Running struct {
	Svc  *service.Service
	Logs *SyncBuffer
	stop context.CancelFunc
	done chan error
}

// Start runs a Service until the test ends (or stop is called); its logs
// (debug level) are kept in logs and shown if the test fails.
func (s *Stack) Start(cfg service.Config) *Running {
	s.T.Helper()
	logs := &SyncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := service.New(cfg, service.Deps{Pool: s.Pool, JS: s.JS, NC: s.NC, Logger: logger})
	if err != nil {
		s.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Svc: svc, stop: cancel, done: make(chan error, 1), Logs: logs}
	go func() { r.done <- svc.Run(ctx) }()
	s.T.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			s.T.Error("service did not stop within 30s")
		}
		if s.T.Failed() {
			s.T.Logf("logs of %s worker:\n%s", cfg.Family, logs.String())
		}
	})
	WaitReady(s.T, svc)
	return r
}

// StopAndWait stops the Service and returns how long the stop took and
// Run's error.
func (r *Running) StopAndWait(t *testing.T, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	r.stop()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return time.Since(start), err
	case <-time.After(timeout):
		t.Fatalf("Run did not return within %s of the stop", timeout)
		return 0, nil
	}
}

// WaitLog waits until the Service has logged a line containing sub.
func (r *Running) WaitLog(t *testing.T, sub string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(r.Logs.String(), sub) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %s after %s", sub, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func WaitReady(t *testing.T, svc *service.Service) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := svc.Ready(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("service not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SyncBuffer is a log sink safe for concurrent writers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// LogLines decodes JSON log lines.
func LogLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

// WorkDirJobs lists job directories left anywhere under a work dir.
func WorkDirJobs(t *testing.T, workDir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(workDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), "job-") {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func FakeInputs(marker string) string {
	return fmt.Sprintf(`{"a":"%s","b":["1","2"]}`, marker)
}

func Discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// AssertNoSecrets fails if any secret (or its JSON-escaped or base64 form)
// appears in logs.
func AssertNoSecrets(t *testing.T, logs string, secrets []string) {
	t.Helper()
	if strings.TrimSpace(logs) == "" {
		t.Fatal("no logs captured")
	}
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		forms := []string{sec, base64.StdEncoding.EncodeToString([]byte(sec))}
		if b, err := json.Marshal(sec); err == nil {
			forms = append(forms, strings.Trim(string(b), `"`))
		}
		for _, form := range forms {
			if len(form) >= 8 && strings.Contains(logs, form) {
				t.Errorf("a secret appears in the logs: %.24q…", form)
			}
		}
	}
}

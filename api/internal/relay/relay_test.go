package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openpassport/prover-fleet/api/internal/pgnotify"
	"github.com/openpassport/prover-fleet/api/internal/relay"
	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/internal/relayclient"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// wait bounds every wait of these tests: long enough for a loaded
// machine, short enough that a hang fails instead of stalling the suite.
const wait = 30 * time.Second

// outcomes records the relay's observer calls.
type outcomes struct {
	mu    sync.Mutex
	ended map[string]int
	sent  map[status.Code]int
	conns atomic.Int64
	subs  atomic.Int64
	ref   atomic.Int64
}

func newOutcomes() *outcomes { return &outcomes{ended: map[string]int{}, sent: map[status.Code]int{}} }

func (o *outcomes) Connection(d int)   { o.conns.Add(int64(d)) }
func (o *outcomes) ConnectionRefused() { o.ref.Add(1) }
func (o *outcomes) Subscription(d int) { o.subs.Add(int64(d)) }
func (o *outcomes) Sent(s status.Code) { o.mu.Lock(); o.sent[s]++; o.mu.Unlock() }
func (o *outcomes) SubscriptionEnded(s string) {
	o.mu.Lock()
	o.ended[s]++
	o.mu.Unlock()
}

func (o *outcomes) count(outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ended[outcome]
}

// env is a relay over a real Postgres (its own database), a real LISTEN
// connection and an embedded NATS server, serving on a loopback port.
type env struct {
	pool     *pgxpool.Pool
	store    *store.Store
	events   *jobqueue.Events
	listener *pgnotify.Listener
	relay    *relay.Relay
	obs      *outcomes
	url      string
	appName  string // application_name of the LISTEN connection
	gate     *gate
}

// gate lets a test hold the listener's reconnection: while closed, its
// connect waits.
type gate struct {
	mu   sync.Mutex
	open chan struct{}
}

func newGate() *gate {
	g := &gate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gate) close() { g.mu.Lock(); g.open = make(chan struct{}); g.mu.Unlock() }
func (g *gate) reopen() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}
func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var appSeq atomic.Int64

func setup(t *testing.T, cfg relay.Config) *env {
	t.Helper()
	return setupLogged(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func setupLogged(t *testing.T, cfg relay.Config, log *slog.Logger) *env {
	t.Helper()
	ctx := t.Context()
	pool := stacktest.Postgres(t)
	nc, _, _ := stacktest.NATS(t)
	e := &env{pool: pool, store: store.New(pool), events: jobqueue.NewEvents(nc), obs: newOutcomes(), gate: newGate(),
		appName: fmt.Sprintf("relay-test-%d-%d", os.Getpid(), appSeq.Add(1))}
	var err error
	e.listener, err = pgnotify.New(func(ctx context.Context) (*pgx.Conn, error) {
		if err := e.gate.wait(ctx); err != nil {
			return nil, err
		}
		c := pool.Config().ConnConfig.Copy()
		c.RuntimeParams["application_name"] = e.appName
		return pgx.ConnectConfig(ctx, c)
	}, log, nil, pgnotify.Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	must(t, err)
	lctx, stopListener := context.WithCancel(ctx)
	ldone := make(chan struct{})
	go func() { defer close(ldone); _ = e.listener.Run(lctx) }()
	t.Cleanup(func() { stopListener(); <-ldone })
	waitFor(t, "the listener to come up", e.listener.Up)

	e.relay, err = relay.New(relay.Deps{Rows: e.store, Events: e.events, Notices: e.listener, Logger: log, Observer: e.obs}, cfg)
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	e.url = "http://" + ln.Addr().String()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.relay.Serve(sctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("relay Serve: %v", err)
		}
	})
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing the test after wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// insert records a request, as the frontend's submit does.
func (e *env) insert(t *testing.T) string {
	t.Helper()
	id := uuid.NewString()
	must(t, e.store.Insert(t.Context(), store.Request{ID: id, ProofType: "register", Circuit: "register_demo", Version: 1}))
	return id
}

// witness and proof move a row as a worker does: the guarded write, then
// its status event.
func (e *env) witness(t *testing.T, id string) {
	t.Helper()
	st, err := e.store.MarkWitnessGenerated(t.Context(), id)
	must(t, err)
	must(t, e.events.PublishStatus(t.Context(), job.WitnessGeneratedEvent(id, st.WitnessGeneratedAt)))
}

func (e *env) proof(t *testing.T, id string) {
	t.Helper()
	proof := json.RawMessage(`{"pi_a":["1","2","1"],"pi_b":[["1","2"],["3","4"],["1","0"]],"pi_c":["5","6","1"],"protocol":"groth16","curve":"bn128"}`)
	st, err := e.store.MarkProofGenerated(t.Context(), id, proof, []string{"7"})
	must(t, err)
	must(t, e.events.PublishStatus(t.Context(), job.ProofGeneratedEvent(id, &st.WitnessGeneratedAt, *st.ProofGeneratedAt, proof, []string{"7"})))
}

func (e *env) fail(t *testing.T, id, reason string) {
	t.Helper()
	ok, err := e.store.MarkFailed(t.Context(), id, reason)
	must(t, err)
	if !ok {
		t.Fatalf("MarkFailed %s changed nothing", id)
	}
	must(t, e.events.PublishStatus(t.Context(), job.FailedEvent(id, reason, time.Now())))
}

// verdict writes status 4 or 5 straight into the table, as the downstream
// verifier does: no event, only the table's notification.
func (e *env) verdict(t *testing.T, id string, st status.Code, reason *string) {
	t.Helper()
	tag, err := e.pool.Exec(t.Context(), `UPDATE proofs SET status = $2, reason = $3 WHERE request_id = $1`, id, int16(st), reason)
	must(t, err)
	if tag.RowsAffected() != 1 {
		t.Fatalf("no row %s", id)
	}
}

// client is the relay client the demo uses (internal/relayclient): the Go
// Socket.IO client, set up as the app sets up socket.io-client (path "/",
// the websocket transport).
type client struct{ *relayclient.Client }

func dial(t *testing.T, url string) *client {
	t.Helper()
	c, err := relayclient.Dial(t.Context(), url, relayclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &client{c}
}

func (c *client) subscribe(id any) { _ = c.Subscribe(id) }

// event returns the next event, which must be named name.
func (c *client) event(t *testing.T, name string) relayclient.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	ev, err := c.Next(ctx)
	if err != nil {
		t.Fatalf("no %s event: %v", name, err)
	}
	if ev.Name != name {
		t.Fatalf("got a %s event %+v, want %s", ev.Name, ev.Message, name)
	}
	return ev
}

func (c *client) next(t *testing.T) relay.Message {
	t.Helper()
	return relay.Message(c.event(t, relay.EventStatus).Message)
}

func (c *client) expect(t *testing.T, id string, st status.Code) relay.Message {
	t.Helper()
	m := c.next(t)
	if m.UUID != id || m.Status != st {
		t.Fatalf("got %+v, want uuid %s status %d", m, id, st)
	}
	return m
}

func ptr(s string) *string { return &s }

// The whole life of a request as the app sees it: the current status at
// once, one event per worker step, then the downstream verifier's 4, which
// only Postgres announces; status 2 does not end the subscription.
func TestFollowsWorkerStepsThenVerdict(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{})
	id := e.insert(t)
	c := dial(t, e.url)
	c.subscribe(id)
	c.expect(t, id, 0)
	e.witness(t, id)
	c.expect(t, id, 1)
	e.proof(t, id)
	c.expect(t, id, 2)
	if n := e.relay.Subscriptions(); n != 1 {
		t.Fatalf("%d live subscriptions after status 2, want 1 (it waits for the verifier)", n)
	}
	e.verdict(t, id, 4, nil)
	c.expect(t, id, 4)
	waitFor(t, "the subscription to end", func() bool { return e.relay.Subscriptions() == 0 })
	if n := e.obs.count(relay.OutcomeFinal); n != 1 {
		t.Errorf("%d final outcomes, want 1", n)
	}
}

func TestVerdicts(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{})
	for _, tc := range []struct {
		name   string
		status status.Code
		reason *string
		want   relay.Message
	}{
		{"verified", 4, nil, relay.Message{Status: 4}},
		{"already registered", 5, ptr("REGISTERED_COMMITMENT"),
			relay.Message{Status: 5, ErrorCode: "REGISTERED_COMMITMENT", Reason: "REGISTERED_COMMITMENT"}},
		{"code and text", 5, ptr("INVALID_PROOF: the verifier contract reverted"),
			relay.Message{Status: 5, ErrorCode: "INVALID_PROOF", Reason: "INVALID_PROOF: the verifier contract reverted"}},
		{"free text", 5, ptr("verifier unreachable"), relay.Message{Status: 5, Reason: "verifier unreachable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.insert(t)
			e.witness(t, id)
			e.proof(t, id)
			c := dial(t, e.url)
			c.subscribe(id)
			c.expect(t, id, 2)
			e.verdict(t, id, tc.status, tc.reason)
			got := c.next(t)
			tc.want.UUID = id
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestWorkerFailure(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{})
	id := e.insert(t)
	c := dial(t, e.url)
	c.subscribe(id)
	c.expect(t, id, 0)
	e.fail(t, id, "witness generation failed: the input does not satisfy the circuit")
	got := c.expect(t, id, 3)
	if got.Reason != "witness generation failed: the input does not satisfy the circuit" || got.ErrorCode != "" {
		t.Errorf("got %+v", got)
	}
}

// A subscriber that comes after the final status gets it at once, and its
// subscription ends.
func TestLateSubscriber(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{})
	for _, tc := range []struct {
		name   string
		status status.Code
	}{{"verified", 4}, {"verification failed", 5}, {"failed", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.insert(t)
			if tc.status == 3 {
				e.fail(t, id, "cancelled")
			} else {
				e.witness(t, id)
				e.proof(t, id)
				e.verdict(t, id, tc.status, nil)
			}
			c := dial(t, e.url)
			c.subscribe(id)
			c.expect(t, id, tc.status)
		})
	}
	waitFor(t, "every subscription to end", func() bool { return e.relay.Subscriptions() == 0 })
	if n := e.obs.count(relay.OutcomeFinal); n != 3 {
		t.Errorf("%d final outcomes, want 3", n)
	}
}

func TestUnknownAndInvalidUUIDs(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{UnknownGrace: 50 * time.Millisecond})
	c := dial(t, e.url)
	unknown := uuid.NewString()
	c.subscribe(unknown)
	got := c.next(t)
	if want := (relay.Message{UUID: unknown, Status: 3, ErrorCode: relay.CodeUUIDNotFound, Reason: "UUID not found"}); got != want {
		t.Errorf("unknown uuid: got %+v, want %+v", got, want)
	}
	for _, tc := range []struct {
		name string
		arg  any
		echo string
	}{
		{"not a uuid", "not-a-uuid", "not-a-uuid"},
		{"empty", "", ""},
		{"number", 42, ""},
		{"null", nil, ""},
		{"array", []any{"x"}, ""},
		{"object without uuid", map[string]any{"id": unknown}, ""},
		{"long", strings.Repeat("a", 10000), strings.Repeat("a", 64)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.subscribe(tc.arg)
			got := c.next(t)
			want := relay.Message{UUID: tc.echo, Status: 3, ErrorCode: relay.CodeInvalidUUID, Reason: "uuid is not a UUID"}
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
	// The connection still works, and an object {"uuid"} is taken too.
	id := e.insert(t)
	c.subscribe(map[string]any{"uuid": strings.ToUpper(id)})
	c.expect(t, id, 0)
}

// A subscription may come before the row exists (a client quicker than
// the submit's commit): the row's insert notification reaches it.
func TestRowAppearsAfterSubscribe(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{UnknownGrace: time.Hour, Recheck: -1})
	id := uuid.NewString()
	c := dial(t, e.url)
	c.subscribe(id)
	waitFor(t, "the subscription", func() bool { return e.relay.Subscriptions() == 1 })
	must(t, e.store.Insert(t.Context(), store.Request{ID: id, ProofType: "dsc", Circuit: "dsc_demo", Version: 1}))
	c.expect(t, id, 0)
}

// pids returns the backend pids of the listener's connection.
func (e *env) listenerPIDs(t *testing.T) []int {
	t.Helper()
	rows, err := e.pool.Query(t.Context(), `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, e.appName)
	must(t, err)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	must(t, err)
	return pids
}

func (e *env) terminateListener(t *testing.T) {
	t.Helper()
	pids := e.listenerPIDs(t)
	if len(pids) != 1 {
		t.Fatalf("%d listener backends, want 1", len(pids))
	}
	var ok bool
	must(t, e.pool.QueryRow(t.Context(), `SELECT pg_terminate_backend($1)`, pids[0]).Scan(&ok))
	if !ok {
		t.Fatal("pg_terminate_backend returned false")
	}
}

// The LISTEN connection is killed and the verdict is written while it is
// down (its reconnection held back): the notification is lost, and the
// re-read after the reconnection delivers the 4. The periodic recheck is
// off, so nothing else could.
func TestListenerLossLosesNoVerdict(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{Recheck: -1})
	id := e.insert(t)
	e.witness(t, id)
	e.proof(t, id)
	c := dial(t, e.url)
	c.subscribe(id)
	c.expect(t, id, 2)

	e.gate.close()
	e.terminateListener(t)
	waitFor(t, "the listener to notice", func() bool { return !e.listener.Up() })
	e.verdict(t, id, 4, nil)
	e.gate.reopen()
	c.expect(t, id, 4)
	if pids := e.listenerPIDs(t); len(pids) != 1 {
		t.Errorf("%d listener backends after the reconnection, want 1", len(pids))
	}
}

// The same without holding the reconnection back: the verdict comes right
// after the kill, and arrives whichever way (a notification to the new
// connection, or the re-read).
func TestListenerKilledThenVerdict(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{Recheck: -1})
	id := e.insert(t)
	e.witness(t, id)
	e.proof(t, id)
	c := dial(t, e.url)
	c.subscribe(id)
	c.expect(t, id, 2)
	e.terminateListener(t)
	e.verdict(t, id, 5, ptr("REGISTERED_COMMITMENT"))
	got := c.expect(t, id, 5)
	if got.ErrorCode != "REGISTERED_COMMITMENT" {
		t.Errorf("got %+v", got)
	}
}

// Postgres's notifications alone carry the worker's statuses too: with no
// NATS event at all, a subscriber still sees 1 and 2.
func TestNotificationsWithoutEvents(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{Recheck: -1})
	id := e.insert(t)
	c := dial(t, e.url)
	c.subscribe(id)
	c.expect(t, id, 0)
	_, err := e.store.MarkWitnessGenerated(t.Context(), id)
	must(t, err)
	c.expect(t, id, 1)
	_, err = e.store.MarkProofGenerated(t.Context(), id, json.RawMessage(`{"protocol":"groth16"}`), nil)
	must(t, err)
	c.expect(t, id, 2)
}

// A large row's notification is cut to its identity (no reason): the
// relay re-reads the row and sends the reason.
func TestTruncatedNotification(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{Recheck: -1})
	id := e.insert(t)
	big := make([]string, 2000)
	for i := range big {
		big[i] = "123456789"
	}
	_, err := e.store.MarkProofGenerated(t.Context(), id, json.RawMessage(`{"protocol":"groth16"}`), big)
	must(t, err)
	c := dial(t, e.url)
	c.subscribe(id)
	c.expect(t, id, 2)
	e.verdict(t, id, 5, ptr("REGISTERED_COMMITMENT"))
	got := c.expect(t, id, 5)
	if got.Reason != "REGISTERED_COMMITMENT" || got.ErrorCode != "REGISTERED_COMMITMENT" {
		t.Errorf("got %+v, want the reason read from the row", got)
	}
}

// The recheck is the safety net for hints lost on both paths: a status
// written with no event and no notification (the trigger disabled for
// this one statement) still arrives.
func TestRecheck(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{Recheck: 20 * time.Millisecond})
	id := e.insert(t)
	c := dial(t, e.url)
	c.subscribe(id)
	c.expect(t, id, 0)
	tx, err := e.pool.Begin(t.Context())
	must(t, err)
	_, err = tx.Exec(t.Context(), `SET LOCAL session_replication_role = replica`) // triggers off
	must(t, err)
	_, err = tx.Exec(t.Context(), `UPDATE proofs SET status = 3, reason = 'lost' WHERE request_id = $1`, id)
	must(t, err)
	must(t, tx.Commit(t.Context()))
	got := c.expect(t, id, 3)
	if got.Reason != "lost" {
		t.Errorf("got %+v", got)
	}
}

func TestBounds(t *testing.T) {
	t.Parallel()
	t.Run("subscriptions per connection", func(t *testing.T) {
		t.Parallel()
		e := setup(t, relay.Config{MaxSubscriptions: 2})
		c := dial(t, e.url)
		a, b, third := e.insert(t), e.insert(t), e.insert(t)
		c.subscribe(a)
		c.expect(t, a, 0)
		c.subscribe(b)
		c.expect(t, b, 0)
		c.subscribe(third)
		if m := c.event(t, relay.EventSubscribeError).Message; m.UUID != third || m.ErrorCode != relay.CodeTooManySubscriptions {
			t.Errorf("got %+v", m)
		}
		// The same uuid again replaces its subscription (current status
		// again) rather than counting twice.
		c.subscribe(a)
		c.expect(t, a, 0)
		// An ended subscription frees its slot.
		e.fail(t, a, "cancelled")
		c.expect(t, a, 3)
		waitFor(t, "a free slot", func() bool { return e.relay.Subscriptions() == 1 })
		c.subscribe(third)
		c.expect(t, third, 0)
	})
	t.Run("connections", func(t *testing.T) {
		t.Parallel()
		e := setup(t, relay.Config{MaxConnections: 1})
		first := dial(t, e.url)
		// The handshake beyond the bound is refused, on either transport
		// (the library answers a refused upgrade with 400, a refused
		// polling handshake with 403).
		wsURL := strings.Replace(e.url, "http://", "ws://", 1) + "/?EIO=4&transport=websocket"
		_, resp, err := websocket.DefaultDialer.DialContext(t.Context(), wsURL, nil)
		if err == nil || resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
			t.Fatalf("second websocket: %v %v, want a refusal", err, resp)
		}
		resp, err = http.Get(e.url + "/?EIO=4&transport=polling")
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("second polling handshake: %d, want 403", resp.StatusCode)
		}
		if n := e.obs.ref.Load(); n != 2 {
			t.Errorf("%d refusals counted, want 2", n)
		}
		// A freed slot takes a new connection.
		first.Close()
		waitFor(t, "the first connection to close", func() bool { return e.relay.Clients() == 0 })
		dial(t, e.url)
	})
	t.Run("idle connection", func(t *testing.T) {
		t.Parallel()
		e := setup(t, relay.Config{IdleTimeout: 50 * time.Millisecond})
		c := dial(t, e.url)
		select {
		case <-c.Done():
			// "io server disconnect", or "transport close" when the
			// library closes the transport before its DISCONNECT packet
			// is out.
		case <-time.After(wait):
			t.Fatal("an idle connection was kept")
		}
		waitFor(t, "the connection count", func() bool { return e.relay.Connections() == 0 })
	})
	t.Run("linger after proof", func(t *testing.T) {
		t.Parallel()
		e := setup(t, relay.Config{Linger: 50 * time.Millisecond})
		id := e.insert(t)
		e.witness(t, id)
		e.proof(t, id)
		c := dial(t, e.url)
		c.subscribe(id)
		c.expect(t, id, 2)
		waitFor(t, "the linger to end", func() bool { return e.obs.count(relay.OutcomeLingerExpired) == 1 })
		if n := e.relay.Subscriptions(); n != 0 {
			t.Errorf("%d live subscriptions after the linger", n)
		}
	})
	t.Run("max wait", func(t *testing.T) {
		t.Parallel()
		e := setup(t, relay.Config{MaxWait: 50 * time.Millisecond})
		id := e.insert(t)
		c := dial(t, e.url)
		c.subscribe(id)
		c.expect(t, id, 0)
		waitFor(t, "the wait to end", func() bool { return e.obs.count(relay.OutcomeMaxWait) == 1 })
	})
}

// An acknowledgement, when the client asks for one, carries the first
// status event's payload.
func TestAck(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{})
	id := e.insert(t)
	c := dial(t, e.url)
	acked := make(chan []any, 1)
	must(t, c.SubscribeAck(id, func(args []any) { acked <- args }))
	select {
	case args := <-acked:
		if len(args) != 1 {
			t.Fatalf("ack %v", args)
		}
		m, _ := args[0].(map[string]any)
		if m["uuid"] != id || m["status"] != float64(0) {
			t.Errorf("ack %v", args)
		}
	case <-time.After(wait):
		t.Fatal("no ack")
	}
	c.expect(t, id, 0)
}

func TestShutdownWithClients(t *testing.T) {
	t.Parallel()
	pool := stacktest.Postgres(t)
	nc, _, _ := stacktest.NATS(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := pgnotify.New(func(ctx context.Context) (*pgx.Conn, error) {
		return pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	}, log, nil, pgnotify.Config{})
	must(t, err)
	r, err := relay.New(relay.Deps{Rows: store.New(pool), Events: jobqueue.NewEvents(nc), Notices: l, Logger: log}, relay.Config{})
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	id := uuid.NewString()
	must(t, store.New(pool).Insert(t.Context(), store.Request{ID: id, ProofType: "register", Circuit: "x", Version: 1}))
	c := dial(t, "http://"+ln.Addr().String())
	c.subscribe(id)
	c.expect(t, id, 0)
	// And a long-polling client with a GET in flight: the shutdown answers
	// it, and Serve still returns nil.
	base := "http://" + ln.Addr().String() + "/?EIO=4&transport=polling"
	resp, err := http.Get(base)
	must(t, err)
	open, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var hs struct {
		Sid string `json:"sid"`
	}
	if len(open) < 2 || json.Unmarshal(open[1:], &hs) != nil {
		t.Fatalf("polling handshake %q", open)
	}
	polled := make(chan error, 1)
	go func() {
		resp, err := http.Get(base + "&sid=" + hs.Sid)
		if err == nil {
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		polled <- err
	}()
	waitFor(t, "the poll's client", func() bool { return r.Clients() == 2 })
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Serve did not return")
	}
	if r.Subscriptions() != 0 || r.Connections() != 0 {
		t.Errorf("after shutdown: %d subscriptions, %d connections", r.Subscriptions(), r.Connections())
	}
	select {
	case <-polled:
	case <-time.After(wait):
		t.Error("the long poll was not answered")
	}
	select {
	case <-c.Done():
	case <-time.After(wait):
		t.Error("the client was not disconnected")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name string
		deps relay.Deps
		cfg  relay.Config
		want string
	}{
		{"no rows", relay.Deps{Logger: log}, relay.Config{}, "Deps.Rows is nil"},
		{"negative linger", relay.Deps{Rows: &store.Store{}, Events: &jobqueue.Events{}, Notices: &pgnotify.Listener{}, Logger: log},
			relay.Config{Linger: -time.Second}, "Config.Linger must not be negative"},
		{"negative bound", relay.Deps{Rows: &store.Store{}, Events: &jobqueue.Events{}, Notices: &pgnotify.Listener{}, Logger: log},
			relay.Config{MaxConnections: -1}, "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := relay.New(tc.deps, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestErrorCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status status.Code
		reason string
		want   string
	}{
		{5, "REGISTERED_COMMITMENT", "REGISTERED_COMMITMENT"},
		{5, "INVALID_PROOF: reverted", "INVALID_PROOF"},
		{3, "INVALID_ROOT_CA", "INVALID_ROOT_CA"},
		{5, "verifier unreachable", ""},
		{3, "cancelled", ""},
		{5, "", ""},
		{5, "A", ""},
		{5, "1ABC", ""},
		{5, "ABC-DEF", ""},
		{5, strings.Repeat("A", 65), ""},
		{4, "REGISTERED_COMMITMENT", ""},
		{2, "REGISTERED_COMMITMENT", ""},
	} {
		if got := relay.ErrorCode(tc.status, tc.reason); got != tc.want {
			t.Errorf("ErrorCode(%d, %q) = %q, want %q", tc.status, tc.reason, got, tc.want)
		}
	}
}

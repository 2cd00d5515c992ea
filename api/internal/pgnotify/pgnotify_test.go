package pgnotify_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openpassport/prover-fleet/api/internal/pgnotify"
	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/store"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

const wait = 30 * time.Second

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ptr(s string) *string { return &s }

func TestParse(t *testing.T) {
	t.Parallel()
	id := "0b8d3a52-7c1e-4f0e-9d3b-2f6f0f6f1a11"
	for _, tc := range []struct {
		name    string
		payload string
		want    pgnotify.Notification
		err     string
	}{
		{"a whole row", `{"request_id":"` + strings.ToUpper(id) + `","proof_type":0,"status":5,"reason":"REGISTERED_COMMITMENT","proof":{"protocol":"groth16"},"public_inputs":["1"]}`,
			pgnotify.Notification{RequestID: id, Status: 5, Reason: ptr("REGISTERED_COMMITMENT")}, ""},
		{"no reason", `{"request_id":"` + id + `","status":2,"reason":null}`, pgnotify.Notification{RequestID: id, Status: 2}, ""},
		{"truncated", `{"request_id":"` + id + `","status":4,"truncated":true}`, pgnotify.Notification{RequestID: id, Status: 4, Truncated: true}, ""},
		{"not JSON", `garbage`, pgnotify.Notification{}, "not a JSON object"},
		{"no status", `{"request_id":"` + id + `"}`, pgnotify.Notification{}, "lacks request_id or status"},
		{"no id", `{"status":1}`, pgnotify.Notification{}, "lacks request_id or status"},
		{"status of the wrong type", `{"request_id":"` + id + `","status":"1"}`, pgnotify.Notification{}, "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pgnotify.Parse(tc.payload)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse: %v, want %q", err, tc.err)
				}
				return
			}
			must(t, err)
			if got.RequestID != tc.want.RequestID || got.Status != tc.want.Status || got.Truncated != tc.want.Truncated ||
				fmt.Sprint(deref(got.Reason)) != fmt.Sprint(deref(tc.want.Reason)) || (got.Reason == nil) != (tc.want.Reason == nil) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// recorder is an Observer.
type recorder struct {
	up        atomic.Int64 // times up
	down      atomic.Int64
	matched   atomic.Int64
	unmatched atomic.Int64
	malformed atomic.Int64
}

func (r *recorder) ListenerUp(up bool) {
	if up {
		r.up.Add(1)
	} else {
		r.down.Add(1)
	}
}

func (r *recorder) Notified(matched, malformed bool) {
	switch {
	case malformed:
		r.malformed.Add(1)
	case matched:
		r.matched.Add(1)
	default:
		r.unmatched.Add(1)
	}
}

var appSeq atomic.Int64

type env struct {
	pool    *pgxpool.Pool
	l       *pgnotify.Listener
	obs     *recorder
	appName string
}

func setup(t *testing.T) *env {
	t.Helper()
	pool := stacktest.Postgres(t)
	e := &env{pool: pool, obs: &recorder{}, appName: fmt.Sprintf("pgnotify-test-%d-%d", os.Getpid(), appSeq.Add(1))}
	var err error
	e.l, err = pgnotify.New(func(ctx context.Context) (*pgx.Conn, error) {
		c := pool.Config().ConnConfig.Copy()
		c.RuntimeParams["application_name"] = e.appName
		return pgx.ConnectConfig(ctx, c)
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), e.obs,
		pgnotify.Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Keepalive: 50 * time.Millisecond})
	must(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the listener", e.l.Up)
	return e
}

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

// inbox collects one subscriber's notifications.
type inbox struct{ ch chan pgnotify.Notification }

func newInbox() *inbox { return &inbox{ch: make(chan pgnotify.Notification, 64)} }

func (b *inbox) put(n pgnotify.Notification) { b.ch <- n }

func (b *inbox) next(t *testing.T) pgnotify.Notification {
	t.Helper()
	select {
	case n := <-b.ch:
		return n
	case <-time.After(wait):
		t.Fatal("no notification")
	}
	return pgnotify.Notification{}
}

// Notifications reach the subscribers of their request only, across the
// keepalive pings (the test's keepalive is 50 ms); a garbage payload on
// the channel is counted and skipped.
func TestListener(t *testing.T) {
	t.Parallel()
	e := setup(t)
	st := store.New(e.pool)
	id, other := uuid.NewString(), uuid.NewString()
	mine := newInbox()
	unsub := e.l.Subscribe(strings.ToUpper(id), mine.put)
	must(t, st.Insert(t.Context(), store.Request{ID: id, ProofType: "register", Circuit: "c", Version: 1}))
	if n := mine.next(t); n.RequestID != id || n.Status != 0 || n.Missed {
		t.Fatalf("insert: %+v", n)
	}
	must(t, st.Insert(t.Context(), store.Request{ID: other, ProofType: "register", Circuit: "c", Version: 1}))
	time.Sleep(120 * time.Millisecond) // past a keepalive ping
	_, err := e.pool.Exec(t.Context(), `SELECT pg_notify('status_update', 'garbage')`)
	must(t, err)
	_, err = st.MarkWitnessGenerated(t.Context(), id)
	must(t, err)
	if n := mine.next(t); n.Status != 1 {
		t.Fatalf("witness: %+v", n)
	}
	_, err = e.pool.Exec(t.Context(), `UPDATE proofs SET status = 5, reason = 'REGISTERED_COMMITMENT' WHERE request_id = $1`, id)
	must(t, err)
	if n := mine.next(t); n.Status != 5 || deref(n.Reason) != "REGISTERED_COMMITMENT" {
		t.Fatalf("verdict: %+v", n)
	}
	if e.obs.malformed.Load() != 1 || e.obs.unmatched.Load() != 1 || e.obs.matched.Load() != 3 {
		t.Errorf("observed malformed %d unmatched %d matched %d, want 1 1 3",
			e.obs.malformed.Load(), e.obs.unmatched.Load(), e.obs.matched.Load())
	}
	unsub()
	unsub() // twice is fine
	if n := e.l.Subscribers(); n != 0 {
		t.Errorf("%d subscribers after unsubscribe", n)
	}
}

// A killed connection comes back, and every subscriber is told that
// notifications may have been missed.
func TestReconnect(t *testing.T) {
	t.Parallel()
	e := setup(t)
	id := uuid.NewString()
	mine := newInbox()
	defer e.l.Subscribe(id, mine.put)()
	for round := range 2 {
		var pid int
		must(t, e.pool.QueryRow(t.Context(), `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, e.appName).Scan(&pid))
		var ok bool
		must(t, e.pool.QueryRow(t.Context(), `SELECT pg_terminate_backend($1)`, pid).Scan(&ok))
		if n := mine.next(t); !n.Missed || n.RequestID != id {
			t.Fatalf("round %d: %+v, want Missed", round, n)
		}
		waitFor(t, "the listener", e.l.Up)
	}
	if e.obs.down.Load() < 2 || e.obs.up.Load() < 3 {
		t.Errorf("up %d down %d", e.obs.up.Load(), e.obs.down.Load())
	}
	// And it still listens.
	must(t, store.New(e.pool).Insert(t.Context(), store.Request{ID: id, ProofType: "dsc", Circuit: "c", Version: 1}))
	for {
		n := mine.next(t)
		if n.Missed {
			continue
		}
		if n.Status != 0 {
			t.Fatalf("%+v", n)
		}
		break
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	connect := func(context.Context) (*pgx.Conn, error) { return nil, nil }
	for _, tc := range []struct {
		name    string
		connect pgnotify.Connect
		log     *slog.Logger
		cfg     pgnotify.Config
		want    string
	}{
		{"no connect", nil, log, pgnotify.Config{}, "connect is nil"},
		{"no logger", connect, nil, pgnotify.Config{}, "logger is nil"},
		{"backoff", connect, log, pgnotify.Config{MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MinBackoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := pgnotify.New(tc.connect, tc.log, nil, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want %q", err, tc.want)
			}
		})
	}
}

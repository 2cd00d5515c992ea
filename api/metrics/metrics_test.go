package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
)

type queueFunc func(context.Context, job.Envelope) error

func (f queueFunc) Publish(ctx context.Context, env job.Envelope) error { return f(ctx, env) }
func (f queueFunc) Republish(ctx context.Context, env job.Envelope, _ int) error {
	return f(ctx, env)
}
func (f queueFunc) Queued(context.Context, family.Family, string) (bool, error) { return false, nil }

type frontend struct{}

func (frontend) Sessions() int    { return 3 }
func (frontend) Connections() int { return 5 }
func (frontend) WebSockets() int  { return 4 }
func (frontend) Sources() int     { return 2 }

func TestMetrics(t *testing.T) {
	t.Parallel()
	m := New()
	m.Watch(frontend{})
	m.Refused("hello_rate")
	m.Refused("hello_rate")
	m.WebSocketClosed("idle")
	m.Call("openpassport_hello", 0, 5*time.Millisecond)
	m.Call("openpassport_submit_request", -32600, time.Millisecond)
	m.Call("eth_call", -32601, time.Millisecond)
	m.Call("", -32700, time.Millisecond)
	results := []error{nil, fmt.Errorf("x: %w", jobqueue.ErrQueueFull), fmt.Errorf("x: %w", jobqueue.ErrNotQueued),
		errors.New("nats: timeout"), jobqueue.ErrDuplicate}
	q := m.WrapQueue(queueFunc(func(context.Context, job.Envelope) error {
		err := results[0]
		results = results[1:]
		return err
	}))
	for range 4 {
		q.Publish(t.Context(), job.Envelope{ProofType: "register_id"})
	}
	q.Republish(t.Context(), job.Envelope{ProofType: "register_id"}, 1)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, line := range []string{
		`prover_api_requests_total{method="openpassport_hello",outcome="ok"} 1`,
		`prover_api_requests_total{method="openpassport_submit_request",outcome="-32600"} 1`,
		`prover_api_requests_total{method="unknown",outcome="-32601"} 1`,
		`prover_api_requests_total{method="invalid",outcome="-32700"} 1`,
		`prover_api_request_duration_seconds_count{method="openpassport_hello"} 1`,
		`prover_api_sessions_open 3`,
		`prover_api_connections_open 5`,
		`prover_api_websockets_open 4`,
		`prover_api_sources_tracked 2`,
		`prover_api_refused_total{reason="hello_rate"} 2`,
		`prover_api_refused_total{reason="source_sessions"} 0`,
		`prover_api_websockets_closed_total{reason="idle"} 1`,
		`prover_api_enqueue_duration_seconds_count{family="register"} 5`,
		`prover_api_enqueue_failures_total{family="register",reason="queue_full"} 1`,
		`prover_api_enqueue_failures_total{family="register",reason="error"} 1`,
		`prover_api_enqueue_failures_total{family="register",reason="unconfirmed"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	if strings.Contains(string(body), "eth_call") {
		t.Error("a client-chosen method name became a label value")
	}
}

func TestRelayMetrics(t *testing.T) {
	t.Parallel()
	m := New()
	m.Connection(1)
	m.Connection(1)
	m.Connection(-1)
	m.ConnectionRefused()
	m.Subscription(1)
	m.SubscriptionEnded("final")
	m.SubscriptionEnded("something a bug made up")
	m.Sent(0)
	m.Sent(4)
	m.Sent(4)
	m.Sent(-1)
	m.ListenerUp(true)
	m.Notified(true, false)
	m.Notified(false, false)
	m.Notified(false, true)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, line := range []string{
		`prover_api_relay_connections 1`,
		`prover_api_relay_connections_refused_total 1`,
		`prover_api_relay_subscriptions 1`,
		`prover_api_relay_subscriptions_total{outcome="final"} 1`,
		`prover_api_relay_subscriptions_total{outcome="other"} 1`,
		`prover_api_relay_events_sent_total{status="0"} 1`,
		`prover_api_relay_events_sent_total{status="4"} 2`,
		`prover_api_relay_events_sent_total{status="other"} 1`,
		`prover_api_status_listener_up 1`,
		`prover_api_status_notifications_total{outcome="matched"} 1`,
		`prover_api_status_notifications_total{outcome="unmatched"} 1`,
		`prover_api_status_notifications_total{outcome="malformed"} 1`,
	} {
		if !strings.Contains(string(body), line) {
			t.Errorf("metrics lack %q", line)
		}
	}
}

// Package metrics defines every Prometheus metric of prover-api, in this
// one file. They are recorded by wrappers (the server's Observer, a Queue
// wrapper) so the core packages do not import Prometheus.
//
// It sits outside api/internal so that whatever embeds the frontend
// (api/server) records the same metrics prover-api does, with one
// definition: internal/devfleet (proverctl dev, the demo, benchmarks)
// gathers it beside its worker pools' registries, so the dashboards read a
// dev fleet like a production one.
//
//	prover_api_requests_total{method,outcome}         calls; outcome "ok" or the JSON-RPC error code
//	prover_api_request_duration_seconds{method}       call latency (hello = handshake, submit = decrypt+record+enqueue)
//	prover_api_sessions_open                          open handshake sessions
//	prover_api_refused_total{reason}                  refusals: sessions, source_sessions, hello_rate, connections, source_connections, sources
//	prover_api_connections_open                       TCP connections the listener holds
//	prover_api_websockets_open                        open WebSockets
//	prover_api_sources_tracked                        client sources (addresses) with state
//	prover_api_websockets_closed_total{reason}        closed WebSockets: client, idle, pong_timeout, read_timeout, write_failed, shutdown
//	prover_api_enqueue_duration_seconds{family}       JetStream publish latency
//	prover_api_enqueue_failures_total{family,reason}  failed publishes; reason "queue_full", "error" (certainly
//	                                                  not queued) or "unconfirmed" (no answer: the request is
//	                                                  kept and queued again by the reconciler if need be)
//	prover_api_relay_connections                      open Socket.IO connections of the status relay
//	prover_api_relay_connections_refused_total        relay handshakes refused by --status-max-connections
//	prover_api_relay_subscriptions                    live relay subscriptions
//	prover_api_relay_subscriptions_total{outcome}     ended (or refused) relay subscriptions: final, not_found,
//	                                                  invalid, refused, linger_expired, max_wait, closed
//	prover_api_relay_events_sent_total{status}        status events the relay sent, by status (0..5)
//	prover_api_status_listener_up                     1 while the LISTEN connection on status_update is up
//	prover_api_status_notifications_total{outcome}    status_update notifications received: matched (a
//	                                                  subscriber wanted it), unmatched, malformed (payloads
//	                                                  are read only while there is a subscription)
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openpassport/prover-fleet/api/internal/admission"
	"github.com/openpassport/prover-fleet/api/internal/relay"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
)

// Metrics holds the program's registry and metrics.
type Metrics struct {
	reg             *prometheus.Registry
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	enqueue         *prometheus.HistogramVec
	enqueueFailures *prometheus.CounterVec
	refused         *prometheus.CounterVec
	wsClosed        *prometheus.CounterVec

	relayConns    prometheus.Gauge
	relayRefused  prometheus.Counter
	relaySubs     prometheus.Gauge
	relayEnded    *prometheus.CounterVec
	relaySent     *prometheus.CounterVec
	listenerUp    prometheus.Gauge
	notifications *prometheus.CounterVec
}

// New registers the metrics (and the Go and process collectors) on a
// registry of its own.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prover_api_requests_total",
			Help: "JSON-RPC calls by method and outcome (ok, or the error code).",
		}, []string{"method", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "prover_api_request_duration_seconds",
			Help:    "JSON-RPC call latency by method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method"}),
		enqueue: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "prover_api_enqueue_duration_seconds",
			Help:    "Latency of publishing a job on JetStream, by family.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"family"}),
		enqueueFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prover_api_enqueue_failures_total",
			Help: "Job publishes that failed, by family and reason (queue_full, error: certainly not queued; unconfirmed: outcome unknown).",
		}, []string{"family", "reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prover_api_refused_total",
			Help: "Refused connections, WebSockets and hellos, by reason (sessions, source_sessions, hello_rate, connections, source_connections, sources).",
		}, []string{"reason"}),
		wsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prover_api_websockets_closed_total",
			Help: "Closed WebSockets, by reason (client, idle, pong_timeout, read_timeout, write_failed, shutdown).",
		}, []string{"reason"}),
	}
	m.relayConns = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "prover_api_relay_connections",
		Help: "Open Socket.IO connections of the status relay.",
	})
	m.relayRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "prover_api_relay_connections_refused_total",
		Help: "Status relay handshakes refused because --status-max-connections were open.",
	})
	m.relaySubs = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "prover_api_relay_subscriptions",
		Help: "Live status relay subscriptions.",
	})
	m.relayEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "prover_api_relay_subscriptions_total",
		Help: "Ended or refused status relay subscriptions, by outcome (final, not_found, invalid, refused, linger_expired, max_wait, closed).",
	}, []string{"outcome"})
	m.relaySent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "prover_api_relay_events_sent_total",
		Help: "Status events sent by the status relay, by status.",
	}, []string{"status"})
	m.listenerUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "prover_api_status_listener_up",
		Help: "1 while the frontend's LISTEN connection on status_update is up.",
	})
	m.notifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "prover_api_status_notifications_total",
		Help: "status_update notifications received, by outcome (matched, unmatched, malformed).",
	}, []string{"outcome"})
	for _, r := range []string{admission.ReasonSessions, admission.ReasonSourceSessions, admission.ReasonHelloRate,
		admission.ReasonConns, admission.ReasonSourceConns, admission.ReasonSources} {
		m.refused.WithLabelValues(r) // every reason shows, at 0
	}
	m.reg.MustRegister(m.requests, m.duration, m.enqueue, m.enqueueFailures, m.refused, m.wsClosed,
		m.relayConns, m.relayRefused, m.relaySubs, m.relayEnded, m.relaySent, m.listenerUp, m.notifications,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Connection records a relay connection opened (+1) or closed (-1) (it
// implements the relay's Observer).
func (m *Metrics) Connection(delta int) { m.relayConns.Add(float64(delta)) }

// ConnectionRefused counts a relay handshake refused by the bound.
func (m *Metrics) ConnectionRefused() { m.relayRefused.Inc() }

// Subscription records a relay subscription started (+1) or ended (-1).
func (m *Metrics) Subscription(delta int) { m.relaySubs.Add(float64(delta)) }

// SubscriptionEnded counts an ended relay subscription by outcome.
func (m *Metrics) SubscriptionEnded(outcome string) {
	m.relayEnded.WithLabelValues(outcomeLabel(outcome)).Inc()
}

// Sent counts a status event the relay sent.
func (m *Metrics) Sent(s status.Code) {
	label := "other"
	if s >= status.Pending && s <= status.VerificationFailed {
		label = strconv.Itoa(int(s))
	}
	m.relaySent.WithLabelValues(label).Inc()
}

// ListenerUp records whether the status_update LISTEN is in force (it
// implements the listener's Observer).
func (m *Metrics) ListenerUp(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.listenerUp.Set(v)
}

// Notified counts a status_update notification.
func (m *Metrics) Notified(matched, malformed bool) {
	outcome := "unmatched"
	switch {
	case malformed:
		outcome = "malformed"
	case matched:
		outcome = "matched"
	}
	m.notifications.WithLabelValues(outcome).Inc()
}

var knownOutcomes = map[string]bool{
	relay.OutcomeFinal: true, relay.OutcomeNotFound: true, relay.OutcomeInvalid: true, relay.OutcomeRefused: true,
	relay.OutcomeLingerExpired: true, relay.OutcomeMaxWait: true, relay.OutcomeClosed: true,
}

// outcomeLabel bounds the label's values.
func outcomeLabel(outcome string) string {
	if knownOutcomes[outcome] {
		return outcome
	}
	return "other"
}

// Handler serves the registry (for the admin listener's /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Gatherer is the registry, for a program that serves it together with
// other registries (prometheus.Gatherers).
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// WatchSessions exports the number of open handshake sessions.
func (m *Metrics) WatchSessions(open func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "prover_api_sessions_open",
		Help: "Open handshake sessions (hello answered, submit not yet).",
	}, read(open)))
}

// Frontend is what Watch reads (*server.Server).
type Frontend interface {
	Sessions() int
	Connections() int
	WebSockets() int
	Sources() int
}

// Watch exports a frontend's gauges: open sessions, connections,
// WebSockets and tracked sources.
func (m *Metrics) Watch(f Frontend) {
	m.WatchSessions(f.Sessions)
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "prover_api_connections_open",
			Help: "TCP connections the frontend's listener holds.",
		}, read(f.Connections)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "prover_api_websockets_open",
			Help: "Open WebSockets.",
		}, read(f.WebSockets)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "prover_api_sources_tracked",
			Help: "Client sources (network addresses) the frontend keeps state for.",
		}, read(f.Sources)))
}

func read(f func() int) func() float64 { return func() float64 { return float64(f()) } }

// Refused records a refusal (it implements the server's Observer).
func (m *Metrics) Refused(reason string) {
	m.refused.WithLabelValues(reason).Inc()
}

// WebSocketClosed records why a WebSocket closed (it implements the
// server's Observer).
func (m *Metrics) WebSocketClosed(reason string) {
	m.wsClosed.WithLabelValues(reason).Inc()
}

var knownMethods = map[string]bool{
	protocol.MethodHello: true, protocol.MethodSubmit: true, protocol.MethodAttestation: true,
	protocol.MethodHealth: true, protocol.MethodStatus: true, protocol.MethodSubscribe: true,
	protocol.MethodCancel: true,
}

// methodLabel bounds the label's values: clients choose method names.
func methodLabel(method string) string {
	switch {
	case method == "":
		return "invalid"
	case knownMethods[method]:
		return method
	}
	return "unknown"
}

// Call records one call (it implements the wire's Observer).
func (m *Metrics) Call(method string, code int64, d time.Duration) {
	label := methodLabel(method)
	outcome := "ok"
	if code != 0 {
		outcome = strconv.FormatInt(code, 10)
	}
	m.requests.WithLabelValues(label, outcome).Inc()
	m.duration.WithLabelValues(label).Observe(d.Seconds())
}

// Queue is what the frontend publishes jobs with (intake.Queue).
type Queue interface {
	Publish(ctx context.Context, env job.Envelope) error
	Republish(ctx context.Context, env job.Envelope, round int) error
	Queued(ctx context.Context, f family.Family, requestID string) (bool, error)
}

// WrapQueue records the latency and failures of q's publishes.
func (m *Metrics) WrapQueue(q Queue) Queue { return &queue{q: q, m: m} }

type queue struct {
	q Queue
	m *Metrics
}

func (q *queue) Publish(ctx context.Context, env job.Envelope) error {
	start := time.Now()
	err := q.q.Publish(ctx, env)
	q.observe(env, start, err)
	return err
}

func (q *queue) Republish(ctx context.Context, env job.Envelope, round int) error {
	start := time.Now()
	err := q.q.Republish(ctx, env, round)
	q.observe(env, start, err)
	return err
}

func (q *queue) Queued(ctx context.Context, f family.Family, requestID string) (bool, error) {
	return q.q.Queued(ctx, f, requestID)
}

func (q *queue) observe(env job.Envelope, start time.Time, err error) {
	fam := string(env.Family())
	q.m.enqueue.WithLabelValues(fam).Observe(time.Since(start).Seconds())
	switch {
	case err == nil || errors.Is(err, jobqueue.ErrDuplicate):
	case errors.Is(err, jobqueue.ErrQueueFull):
		q.m.enqueueFailures.WithLabelValues(fam, "queue_full").Inc()
	case errors.Is(err, jobqueue.ErrNotQueued):
		q.m.enqueueFailures.WithLabelValues(fam, "error").Inc()
	default:
		q.m.enqueueFailures.WithLabelValues(fam, "unconfirmed").Inc()
	}
}

package devfleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/api/server"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
)

// This file defines every metric the fleet adds itself: those of the
// embedded frontend, with the names, labels and meaning prover-api gives
// them (api/internal/metrics, which the dev fleet cannot import), so the
// dashboards read a dev fleet like a production one; and the Go runtime and
// process collectors. The worker pools bring their own (worker/service).
//
//	prover_api_requests_total{method,outcome}         calls; outcome "ok" or the JSON-RPC error code
//	prover_api_request_duration_seconds{method}       call latency
//	prover_api_sessions_open                          open handshake sessions
//	prover_api_enqueue_duration_seconds{family}       JetStream publish latency
//	prover_api_enqueue_failures_total{family,reason}  refused publishes; reason "queue_full" or "error"

// frontendMetrics observes the embedded frontend (server.Observer).
type frontendMetrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	enqueue         *prometheus.HistogramVec
	enqueueFailures *prometheus.CounterVec
}

func newFrontendMetrics(reg prometheus.Registerer) (*frontendMetrics, error) {
	m := &frontendMetrics{
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
			Help: "Jobs JetStream did not accept, by family and reason (queue_full, error).",
		}, []string{"family", "reason"}),
	}
	for _, c := range []prometheus.Collector{
		m.requests, m.duration, m.enqueue, m.enqueueFailures,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("devfleet: register metrics: %w", err)
		}
	}
	return m, nil
}

// watchSessions exports the frontend's open handshake sessions.
func (m *frontendMetrics) watchSessions(reg prometheus.Registerer, sessions func() int) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "prover_api_sessions_open",
		Help: "Open handshake sessions (hello answered, submit not yet).",
	}, func() float64 { return float64(sessions()) })
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("devfleet: register metrics: %w", err)
	}
	return nil
}

// methodLabel bounds the method label: clients choose method names.
func methodLabel(method string) string {
	switch method {
	case "":
		return "invalid"
	case protocol.MethodHello, protocol.MethodSubmit, protocol.MethodAttestation, protocol.MethodHealth,
		protocol.MethodStatus, protocol.MethodSubscribe, protocol.MethodCancel:
		return method
	}
	return "unknown"
}

// Call implements server.Observer.
func (m *frontendMetrics) Call(method string, code int64, d time.Duration) {
	label := methodLabel(method)
	outcome := "ok"
	if code != 0 {
		outcome = strconv.FormatInt(code, 10)
	}
	m.requests.WithLabelValues(label, outcome).Inc()
	m.duration.WithLabelValues(label).Observe(d.Seconds())
}

// wrapQueue records the latency and failures of q's publishes.
func (m *frontendMetrics) wrapQueue(q server.Queue) server.Queue { return &meteredQueue{q: q, m: m} }

type meteredQueue struct {
	q server.Queue
	m *frontendMetrics
}

func (q *meteredQueue) Publish(ctx context.Context, env job.Envelope) error {
	start := time.Now()
	err := q.q.Publish(ctx, env)
	fam := string(env.Family())
	q.m.enqueue.WithLabelValues(fam).Observe(time.Since(start).Seconds())
	switch {
	case err == nil || errors.Is(err, jobqueue.ErrDuplicate):
	case errors.Is(err, jobqueue.ErrQueueFull):
		q.m.enqueueFailures.WithLabelValues(fam, "queue_full").Inc()
	default:
		q.m.enqueueFailures.WithLabelValues(fam, "error").Inc()
	}
	return err
}

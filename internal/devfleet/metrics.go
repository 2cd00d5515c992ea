package devfleet

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// This file defines every metric the fleet adds itself: the embedded
// frontend's calls and sessions (the worker pools bring their own, see
// worker/service), and the Go runtime and process collectors.

// frontendMetrics observes the embedded frontend's calls (server.Observer).
type frontendMetrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newFrontendMetrics(reg prometheus.Registerer) (*frontendMetrics, error) {
	m := &frontendMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "prover_api", Name: "requests_total",
			Help: "JSON-RPC calls by method and outcome (the JSON-RPC error code, 0 for success).",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "prover_api", Name: "request_seconds",
			Help:    "Time to answer a JSON-RPC call, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method"}),
	}
	for _, c := range []prometheus.Collector{
		m.calls, m.duration,
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
		Namespace: "prover_api", Name: "sessions",
		Help: "Open handshake sessions (hello answered, submit not yet).",
	}, func() float64 { return float64(sessions()) })
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("devfleet: register metrics: %w", err)
	}
	return nil
}

// Call implements server.Observer.
func (m *frontendMetrics) Call(method string, code int64, d time.Duration) {
	if method == "" {
		method = "invalid"
	}
	m.calls.WithLabelValues(method, strconv.FormatInt(code, 10)).Inc()
	m.duration.WithLabelValues(method).Observe(d.Seconds())
}

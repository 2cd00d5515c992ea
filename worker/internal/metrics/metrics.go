// Package metrics defines every Prometheus metric of prover-worker (this
// file) and records them with wrappers around the store, the stages and the
// process runner, and an observer of the pool (wrap.go), so the core
// packages never import Prometheus.
//
// Each worker Service registers its own set, with the family as a constant
// label; Services of different families can share one registry.
package metrics

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/worker/internal/keycache"
	"github.com/openpassport/prover-fleet/worker/internal/outcome"
)

// Namespace prefixes every metric name.
const Namespace = "prover_worker"

// Metrics holds one family's worker metrics.
type Metrics struct {
	// Jobs counts settled jobs by outcome (proved, already_done, rejected,
	// retried, gave_up, interrupted, cancelled).
	Jobs *prometheus.CounterVec
	// QueueWait is the time from enqueue to the start of a delivery.
	QueueWait prometheus.Histogram
	// Stage is the duration of witness, prove and verify, by result.
	Stage *prometheus.HistogramVec
	// EndToEnd is the time from enqueue to a final outcome.
	EndToEnd *prometheus.HistogramVec
	// Redeliveries counts deliveries after the first.
	Redeliveries prometheus.Counter
	// ChildMaxRSS is the peak resident memory of child processes by stage.
	ChildMaxRSS *prometheus.HistogramVec
	// BusySlots and Slots: jobs running now, and the pool's capacity.
	BusySlots prometheus.Gauge
	Slots     prometheus.Gauge
	// Pending and AckPending come from the family consumer's info: the
	// autoscaling signal. BacklogErrors counts failed polls.
	Pending       prometheus.Gauge
	AckPending    prometheus.Gauge
	BacklogErrors prometheus.Counter
	// StoreOps is the latency of status store calls by operation and result.
	StoreOps *prometheus.HistogramVec
	// Rescued counts jobs that ran out of deliveries without a result
	// (worker lost on the last attempt) and were marked failed by the
	// rescuer (worker/internal/rescue; recorded by worker/service).
	Rescued prometheus.Counter
	// Reconciled counts what the reconciler did to open requests whose job
	// was not on the queue or was given up (worker/internal/reconcile), by
	// action: requeued, failed_lost, failed_stuck.
	Reconciled *prometheus.CounterVec
	// StoreDown is 1 while the worker finds the status store unavailable
	// and takes no job (worker/internal/storegate); StoreOutages counts
	// such periods.
	StoreDown    prometheus.Gauge
	StoreOutages prometheus.Counter

	// The key cache (native mode: proving keys and window tables held in
	// memory within --key-cache-mib; command mode: the account of the
	// zkeys in the page cache). KeysWarm, KeyBytes (kind key|tables) and
	// KeyBudget read the cache at scrape time (see KeyCache).
	KeysWarm  prometheus.GaugeFunc
	KeyBytes  []prometheus.GaugeFunc
	KeyBudget prometheus.GaugeFunc
	// KeyLoads counts key loads by result; KeyLoadSeconds is the cold-load
	// time of the successful ones.
	KeyLoads       *prometheus.CounterVec
	KeyLoadSeconds prometheus.Histogram
	// KeyEvictions counts keys that left the cache, by reason (room,
	// stale, closed).
	KeyEvictions *prometheus.CounterVec
	// KeyOversize counts loads of a key larger than the whole budget (it
	// proves alone).
	KeyOversize prometheus.Counter
	// KeyProofs counts proofs by whether their key was warm or had to be
	// loaded (key="warm"|"cold").
	KeyProofs *prometheus.CounterVec
	// TableBuilds is the time of window table builds, by result.
	TableBuilds *prometheus.HistogramVec

	keyHeld atomic.Pointer[keyCacheView]
}

// keyCacheView is what the gauges read: the cache set by KeyCache.
type keyCacheView struct {
	held   func() keycache.Held
	budget int64
}

// New creates one family's metrics and registers them on reg.
func New(reg prometheus.Registerer, f family.Family, slots int) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: New needs a prometheus.Registerer")
	}
	if f == "" {
		return nil, errors.New("metrics: family is empty")
	}
	fam := prometheus.Labels{"family": string(f)}
	m := &Metrics{
		Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "jobs_total", ConstLabels: fam,
			Help: "Proof jobs settled, by outcome.",
		}, []string{"outcome"}),
		QueueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "queue_wait_seconds", ConstLabels: fam,
			Help:    "Time from enqueue to the start of a delivery.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16),
		}),
		Stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "stage_seconds", ConstLabels: fam,
			Help:    "Duration of the witness, prove and verify stages.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 18),
		}, []string{"stage", "result"}),
		EndToEnd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "end_to_end_seconds", ConstLabels: fam,
			Help:    "Time from enqueue to a final outcome (proved, rejected, gave_up, cancelled).",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 16),
		}, []string{"outcome"}),
		Redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "redeliveries_total", ConstLabels: fam,
			Help: "Job deliveries after the first (retries, crashed or silent workers).",
		}),
		ChildMaxRSS: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "child_max_rss_bytes", ConstLabels: fam,
			Help:    "Peak resident memory of witness, prover and verifier processes.",
			Buckets: prometheus.ExponentialBuckets(16<<20, 2, 10),
		}, []string{"stage"}),
		BusySlots: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "busy_slots", ConstLabels: fam,
			Help: "Jobs running now.",
		}),
		Slots: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "slots", ConstLabels: fam,
			Help: "Concurrent jobs this worker runs at most.",
		}),
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "queue_pending", ConstLabels: fam,
			Help: "Jobs of the family not yet delivered (its circuit consumers' info).",
		}),
		AckPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "queue_ack_pending", ConstLabels: fam,
			Help: "Jobs of the family delivered and not yet acknowledged (its circuit consumers' info).",
		}),
		BacklogErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "backlog_poll_errors_total", ConstLabels: fam,
			Help: "Failed reads of the family consumer's info.",
		}),
		StoreOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "store_seconds", ConstLabels: fam,
			Help:    "Latency of status store calls.",
			Buckets: prometheus.DefBuckets,
		}, []string{"op", "result"}),
		Rescued: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "rescued_total", ConstLabels: fam,
			Help: "Jobs whose last delivery went unacknowledged (worker lost), marked failed by the rescuer.",
		}),
		Reconciled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "reconciled_total", ConstLabels: fam,
			Help: "Open requests the reconciler acted on: requeued (job lost, published again), failed_lost, failed_stuck, consumer_created (a queued job's circuit had no consumer).",
		}, []string{"action"}),
		StoreDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "store_down", ConstLabels: fam,
			Help: "1 while the status store does not answer and the worker takes no job.",
		}),
		StoreOutages: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "store_outages_total", ConstLabels: fam,
			Help: "Periods in which the status store did not answer.",
		}),
	}
	held := func(get func(keycache.Held) int64) func() float64 {
		return func() float64 {
			if v := m.keyHeld.Load(); v != nil {
				return float64(get(v.held()))
			}
			return 0
		}
	}
	m.KeysWarm = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "key_cache_keys", ConstLabels: fam,
		Help: "Proving keys held warm (command mode: zkeys counted in the page cache).",
	}, held(func(h keycache.Held) int64 { return int64(h.Keys) }))
	for _, kind := range []string{"key", "tables"} {
		labels := prometheus.Labels{"family": string(f), "kind": kind}
		m.KeyBytes = append(m.KeyBytes, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "key_cache_bytes", ConstLabels: labels,
			Help: "Memory the key cache holds: keys, and their window tables.",
		}, held(func(h keycache.Held) int64 {
			if kind == "key" {
				return h.KeyBytes
			}
			return h.TableBytes
		})))
	}
	m.KeyBudget = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "key_cache_budget_bytes", ConstLabels: fam,
		Help: "The key cache's budget for keys and tables (--key-cache-mib).",
	}, func() float64 {
		if v := m.keyHeld.Load(); v != nil {
			return float64(v.budget)
		}
		return 0
	})
	m.KeyLoads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "key_cache_loads_total", ConstLabels: fam,
		Help: "Proving key loads (cold loads), by result.",
	}, []string{"result"})
	m.KeyLoadSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "key_cache_load_seconds", ConstLabels: fam,
		Help:    "Time of a cold proving key load.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
	})
	m.KeyEvictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "key_cache_evictions_total", ConstLabels: fam,
		Help: "Proving keys evicted, by reason: room (another key needed it), stale (its file changed), closed.",
	}, []string{"reason"})
	m.KeyOversize = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "key_cache_oversize_total", ConstLabels: fam,
		Help: "Loads of a proving key larger than the whole budget (it proves alone).",
	})
	m.KeyProofs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "key_cache_proofs_total", ConstLabels: fam,
		Help: "Proofs by whether their key was warm or had to be loaded (key=warm|cold).",
	}, []string{"key"})
	m.TableBuilds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "key_cache_table_build_seconds", ConstLabels: fam,
		Help:    "Time of window table builds, by result.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
	}, []string{"result"})

	collectors := []prometheus.Collector{m.Jobs, m.QueueWait, m.Stage, m.EndToEnd, m.Redeliveries,
		m.ChildMaxRSS, m.BusySlots, m.Slots, m.Pending, m.AckPending, m.BacklogErrors, m.StoreOps, m.Rescued,
		m.Reconciled, m.StoreDown, m.StoreOutages,
		m.KeysWarm, m.KeyBudget, m.KeyLoads, m.KeyLoadSeconds, m.KeyEvictions, m.KeyOversize, m.KeyProofs, m.TableBuilds}
	for _, g := range m.KeyBytes {
		collectors = append(collectors, g)
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if errors.As(err, &dup) {
				return nil, fmt.Errorf("metrics: the %s family's worker metrics are already registered here (give each Service of one family its own registry): %w", f, err)
			}
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	m.Slots.Set(float64(slots))
	for _, k := range outcome.Kinds() {
		m.Jobs.WithLabelValues(k.String())
	}
	for _, a := range []string{"requeued", "failed_lost", "failed_stuck", "consumer_created"} {
		m.Reconciled.WithLabelValues(a)
	}
	for _, r := range []string{"ok", "error"} {
		m.KeyLoads.WithLabelValues(r)
	}
	for _, r := range []string{"room", "stale", "closed"} {
		m.KeyEvictions.WithLabelValues(r)
	}
	for _, k := range []string{"warm", "cold"} {
		m.KeyProofs.WithLabelValues(k)
	}
	return m, nil
}

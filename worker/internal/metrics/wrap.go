package metrics

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/store"
	"github.com/openpassport/prover-fleet/worker/internal/keycache"
	"github.com/openpassport/prover-fleet/worker/internal/outcome"
	"github.com/openpassport/prover-fleet/worker/internal/pipeline"
	"github.com/openpassport/prover-fleet/worker/internal/proc"
)

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// Runner records the peak memory of every child run by r.
func (m *Metrics) Runner(r proc.Runner) proc.Runner { return runner{r, m} }

type runner struct {
	next proc.Runner
	m    *Metrics
}

func (r runner) Run(ctx context.Context, c proc.Cmd) (proc.Result, error) {
	res, err := r.next.Run(ctx, c)
	if res.MaxRSS > 0 {
		r.m.ChildMaxRSS.WithLabelValues(c.Stage).Observe(float64(res.MaxRSS))
	}
	return res, err
}

func (m *Metrics) observeStage(stage string, start time.Time, err error) {
	m.Stage.WithLabelValues(stage, result(err)).Observe(time.Since(start).Seconds())
}

// Witness times w.
func (m *Metrics) Witness(w pipeline.Witness) pipeline.Witness { return witnessStage{w, m} }

type witnessStage struct {
	next pipeline.Witness
	m    *Metrics
}

func (w witnessStage) Generate(ctx context.Context, circuit, dir, input, output string) error {
	start := time.Now()
	err := w.next.Generate(ctx, circuit, dir, input, output)
	w.m.observeStage("witness", start, err)
	return err
}

// Prover times p.
func (m *Metrics) Prover(p pipeline.Prover) pipeline.Prover { return proverStage{p, m} }

type proverStage struct {
	next pipeline.Prover
	m    *Metrics
}

func (p proverStage) Prove(ctx context.Context, circuit, dir, wtns, proof, public string) error {
	start := time.Now()
	err := p.next.Prove(ctx, circuit, dir, wtns, proof, public)
	p.m.observeStage("prove", start, err)
	return err
}

// Verifier times v.
func (m *Metrics) Verifier(v pipeline.Verifier) pipeline.Verifier { return verifierStage{v, m} }

type verifierStage struct {
	next pipeline.Verifier
	m    *Metrics
}

func (v verifierStage) Verify(ctx context.Context, circuit, proof, public string) error {
	start := time.Now()
	err := v.next.Verify(ctx, circuit, proof, public)
	v.m.observeStage("verify", start, err)
	return err
}

// Store times the status store calls the worker makes.
type Store struct {
	next *store.Store
	m    *Metrics
}

// Store wraps s.
func (m *Metrics) Store(s *store.Store) *Store { return &Store{next: s, m: m} }

func (s *Store) observe(op string, start time.Time, err error) {
	s.m.StoreOps.WithLabelValues(op, result(err)).Observe(time.Since(start).Seconds())
}

// Claim wraps store.Store.Claim.
func (s *Store) Claim(ctx context.Context, id, workerID string, attempt int) (store.Proof, error) {
	start := time.Now()
	p, err := s.next.Claim(ctx, id, workerID, attempt)
	s.observe("claim", start, err)
	return p, err
}

// Heartbeat wraps store.Store.Heartbeat.
func (s *Store) Heartbeat(ctx context.Context, id, workerID string) error {
	start := time.Now()
	err := s.next.Heartbeat(ctx, id, workerID)
	s.observe("heartbeat", start, err)
	return err
}

// MarkWitnessGenerated wraps store.Store.MarkWitnessGenerated.
func (s *Store) MarkWitnessGenerated(ctx context.Context, id string) (*store.Stamps, error) {
	start := time.Now()
	st, err := s.next.MarkWitnessGenerated(ctx, id)
	s.observe("mark_witness_generated", start, err)
	return st, err
}

// MarkProofGenerated wraps store.Store.MarkProofGenerated.
func (s *Store) MarkProofGenerated(ctx context.Context, id string, proof json.RawMessage, public []string) (*store.Stamps, error) {
	start := time.Now()
	st, err := s.next.MarkProofGenerated(ctx, id, proof, public)
	s.observe("mark_proof_generated", start, err)
	return st, err
}

// MarkFailed wraps store.Store.MarkFailed.
func (s *Store) MarkFailed(ctx context.Context, id, reason string) (bool, error) {
	start := time.Now()
	ok, err := s.next.MarkFailed(ctx, id, reason)
	s.observe("mark_failed", start, err)
	return ok, err
}

// Observer returns the pool observer that records jobs, queue wait,
// redeliveries, end-to-end time and busy slots.
func (m *Metrics) Observer() Observer { return Observer{m} }

// Observer implements pool.Observer.
type Observer struct{ m *Metrics }

// Started records the start of a delivery.
func (o Observer) Started(env job.Envelope, attempt int) {
	o.m.BusySlots.Inc()
	if attempt > 1 {
		o.m.Redeliveries.Inc()
	}
	if !env.EnqueuedAt.IsZero() {
		o.m.QueueWait.Observe(max(time.Since(env.EnqueuedAt), 0).Seconds())
	}
}

// Finished records a settled job.
func (o Observer) Finished(env job.Envelope, d outcome.Decision, _ time.Duration) {
	o.m.BusySlots.Dec()
	o.m.Jobs.WithLabelValues(d.Kind.String()).Inc()
	switch d.Kind {
	case outcome.Proved, outcome.Rejected, outcome.GaveUp, outcome.Cancelled:
		if !env.EnqueuedAt.IsZero() {
			o.m.EndToEnd.WithLabelValues(d.Kind.String()).Observe(max(time.Since(env.EnqueuedAt), 0).Seconds())
		}
	}
}

// PollBacklog reads the family consumer's pending and ack-pending counts
// every interval until ctx ends.
func (m *Metrics) PollBacklog(ctx context.Context, js jetstream.JetStream, stream string, f family.Family, interval time.Duration, log *slog.Logger) {
	poll := func() {
		pctx, cancel := context.WithTimeout(ctx, min(interval, 5*time.Second))
		defer cancel()
		b, err := jobqueue.Backlogs(pctx, js, stream, []family.Family{f})
		if err != nil || len(b) != 1 {
			m.BacklogErrors.Inc()
			if ctx.Err() == nil {
				log.Debug("backlog poll failed", "err", err)
			}
			return
		}
		m.Pending.Set(float64(b[0].Pending))
		m.AckPending.Set(float64(b[0].AckPending))
	}
	poll()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			poll()
		}
	}
}

// StoreChanged records the status store going down (true) or answering
// again (false) (a storegate.Config.OnChange).
func (m *Metrics) StoreChanged(down bool) {
	if down {
		m.StoreDown.Set(1)
		m.StoreOutages.Inc()
		return
	}
	m.StoreDown.Set(0)
}

// KeyObserver is the key cache observer that records its loads,
// evictions, oversize keys, table builds and proofs.
func (m *Metrics) KeyObserver() keycache.Observer { return keyObserver{m} }

// WatchKeyCache makes the key cache gauges (keys, bytes, budget) read c.
func (m *Metrics) WatchKeyCache(c *keycache.Cache) {
	m.keyHeld.Store(&keyCacheView{held: c.Held, budget: c.Budget()})
}

// keyObserver implements keycache.Observer. It is called with the cache's
// lock held: it only counts.
type keyObserver struct{ m *Metrics }

func (o keyObserver) Acquired(_ string, warm bool) {
	if warm {
		o.m.KeyProofs.WithLabelValues("warm").Inc()
	} else {
		o.m.KeyProofs.WithLabelValues("cold").Inc()
	}
}

func (o keyObserver) Loaded(_ string, _ int64, took time.Duration, err error) {
	o.m.KeyLoads.WithLabelValues(result(err)).Inc()
	if err == nil {
		o.m.KeyLoadSeconds.Observe(took.Seconds())
	}
}

func (o keyObserver) Evicted(_ string, _ int64, reason string) {
	o.m.KeyEvictions.WithLabelValues(reason).Inc()
}

func (o keyObserver) Oversize(string, int64, int64) { o.m.KeyOversize.Inc() }

func (o keyObserver) TablesBuilt(_ string, _ int64, took time.Duration, err error) {
	o.m.TableBuilds.WithLabelValues(result(err)).Observe(took.Seconds())
}

func (o keyObserver) TablesDropped(string, int64) {}

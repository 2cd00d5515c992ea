// Package storegate keeps a worker from burning its jobs' deliveries while
// the status store (Postgres) is down.
//
// Without it, every job fetched during an outage fails its claim, is handed
// back with a delay and comes back: MaxDeliver deliveries are gone within
// seconds, and on the last one the failure cannot be recorded either, so
// the request would be stranded. Instead:
//
//   - a Gate knows whether the store answers. A call that finds it down
//     (store.Unavailable) closes the gate; Run then probes the store with
//     backoff (ProbeMin doubling to ProbeMax) and opens the gate once a probe
//     answers. The pool waits at the gate before each fetch, so a worker
//     that cannot reach the store takes no new job, and /readyz reports why.
//   - a Store wraps the store calls of the job path. A call that finds the
//     store down waits at the gate and is made again once the store answers,
//     for as long as its context lives: a job already in hand keeps its
//     delivery (its message stays in progress, heartbeated by the pool) and
//     resumes where it was, instead of counting a failed attempt. Every
//     write it repeats is a guarded compare-and-set, so a write that
//     committed but whose answer was lost changes nothing the second time.
//     Each try is bounded by CallTimeout, so a store that hangs (a network
//     partition) counts as down instead of blocking the job for ever.
//     Heartbeats do not wait: a missed one is only a hint.
package storegate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/openpassport/prover-fleet/shared/store"
)

// Defaults applied by New to zero fields.
const (
	DefaultProbeMin    = 200 * time.Millisecond
	DefaultProbeMax    = 5 * time.Second
	DefaultCallTimeout = 15 * time.Second
)

// Pinger checks that the store answers (*store.Store).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Config tunes a Gate. Zero fields take the defaults.
type Config struct {
	// ProbeMin and ProbeMax space the probes of a store that is down.
	ProbeMin, ProbeMax time.Duration
	// CallTimeout bounds one try of a store call made through Store, and
	// one probe.
	CallTimeout time.Duration
	// OnChange, when set, is told when the store goes down (true) and
	// answers again (false), e.g. for a metric. It must not block.
	OnChange func(down bool)
}

// Gate knows whether the status store answers. Safe for concurrent use.
type Gate struct {
	ping Pinger
	cfg  Config
	log  *slog.Logger
	wake chan struct{}

	mu    sync.Mutex
	up    chan struct{} // closed while the store answers
	since time.Time     // when it went down
	cause error
}

// New returns an open Gate (the store is presumed up until a call finds
// otherwise). Run must run for a closed gate to open again.
func New(p Pinger, log *slog.Logger, cfg Config) (*Gate, error) {
	if p == nil {
		return nil, errors.New("storegate: Pinger is nil")
	}
	if log == nil {
		return nil, errors.New("storegate: Logger is nil")
	}
	if cfg.ProbeMin == 0 {
		cfg.ProbeMin = DefaultProbeMin
	}
	if cfg.ProbeMax == 0 {
		cfg.ProbeMax = DefaultProbeMax
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.ProbeMin < 0 || cfg.ProbeMax < cfg.ProbeMin || cfg.CallTimeout < 0 {
		return nil, fmt.Errorf("storegate: need 0 < ProbeMin %s ≤ ProbeMax %s and a positive CallTimeout %s",
			cfg.ProbeMin, cfg.ProbeMax, cfg.CallTimeout)
	}
	up := make(chan struct{})
	close(up)
	return &Gate{ping: p, cfg: cfg, log: log, wake: make(chan struct{}, 1), up: up}, nil
}

// Down closes the gate because a call found the store unavailable (err).
func (g *Gate) Down(err error) {
	g.mu.Lock()
	wasUp := g.since.IsZero()
	if wasUp {
		g.up = make(chan struct{})
		g.since = time.Now()
		g.cause = err
	}
	g.mu.Unlock()
	if wasUp {
		g.log.Warn("status store unavailable: no new jobs until it answers; jobs in hand wait", "err", err)
		if g.cfg.OnChange != nil {
			g.cfg.OnChange(true)
		}
	}
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// Err is nil while the gate is open, and otherwise says since when and why
// the store is unavailable.
func (g *Gate) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.since.IsZero() {
		return nil
	}
	return fmt.Errorf("unavailable for %s (not taking jobs until it answers): %w",
		time.Since(g.since).Round(time.Millisecond), g.cause)
}

// Wait returns nil once the gate is open, or an error when ctx ends first.
func (g *Gate) Wait(ctx context.Context) error {
	g.mu.Lock()
	up, cause := g.up, g.cause
	g.mu.Unlock()
	select {
	case <-up:
		return nil
	default:
	}
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("storegate: stopped waiting for the status store (%v): %w", cause, context.Cause(ctx))
	}
}

// Run probes a closed gate's store until it answers, and opens the gate,
// until ctx ends.
func (g *Gate) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.wake:
		}
		delay := g.cfg.ProbeMin
		for g.Err() != nil {
			pctx, cancel := context.WithTimeout(ctx, g.cfg.CallTimeout)
			err := g.ping.Ping(pctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				g.open()
				break
			}
			g.log.Debug("status store still unavailable", "retry_in_ms", delay.Milliseconds(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, g.cfg.ProbeMax)
		}
	}
}

func (g *Gate) open() {
	g.mu.Lock()
	since := g.since
	if !since.IsZero() {
		close(g.up)
		g.since, g.cause = time.Time{}, nil
	}
	g.mu.Unlock()
	if !since.IsZero() {
		g.log.Info("status store answers again; taking jobs", "outage_ms", time.Since(since).Milliseconds())
		if g.cfg.OnChange != nil {
			g.cfg.OnChange(false)
		}
	}
}

// Backend is the status store the job path uses (*store.Store, or a
// metrics wrapper of it).
type Backend interface {
	Claim(ctx context.Context, id, workerID string, attempt int) (store.Proof, error)
	Heartbeat(ctx context.Context, id, workerID string) error
	MarkWitnessGenerated(ctx context.Context, id string) (*store.Stamps, error)
	MarkProofGenerated(ctx context.Context, id string, proof json.RawMessage, public []string) (*store.Stamps, error)
	MarkFailed(ctx context.Context, id, reason string) (bool, error)
}

// Store is Backend whose calls wait for an unavailable store (see the
// package doc).
type Store struct {
	next Backend
	g    *Gate
}

// Store wraps b.
func (g *Gate) Store(b Backend) *Store { return &Store{next: b, g: g} }

// do makes fn until it gets an answer from the store, waiting at the gate
// while the store is down, for as long as ctx lives.
func do[T any](ctx context.Context, g *Gate, fn func(context.Context) (T, error)) (T, error) {
	for {
		if err := g.Wait(ctx); err != nil {
			var zero T
			return zero, err
		}
		cctx, cancel := context.WithTimeout(ctx, g.cfg.CallTimeout)
		v, err := fn(cctx)
		cancel()
		if err == nil || ctx.Err() != nil || !store.Unavailable(err) {
			return v, err
		}
		g.Down(err)
	}
}

// Claim waits while the store is down.
func (s *Store) Claim(ctx context.Context, id, workerID string, attempt int) (store.Proof, error) {
	return do(ctx, s.g, func(ctx context.Context) (store.Proof, error) { return s.next.Claim(ctx, id, workerID, attempt) })
}

// MarkWitnessGenerated waits while the store is down.
func (s *Store) MarkWitnessGenerated(ctx context.Context, id string) (*store.Stamps, error) {
	return do(ctx, s.g, func(ctx context.Context) (*store.Stamps, error) { return s.next.MarkWitnessGenerated(ctx, id) })
}

// MarkProofGenerated waits while the store is down.
func (s *Store) MarkProofGenerated(ctx context.Context, id string, proof json.RawMessage, public []string) (*store.Stamps, error) {
	return do(ctx, s.g, func(ctx context.Context) (*store.Stamps, error) {
		return s.next.MarkProofGenerated(ctx, id, proof, public)
	})
}

// MarkFailed waits while the store is down.
func (s *Store) MarkFailed(ctx context.Context, id, reason string) (bool, error) {
	return do(ctx, s.g, func(ctx context.Context) (bool, error) { return s.next.MarkFailed(ctx, id, reason) })
}

// Heartbeat does not wait: a missed heartbeat is a hint; a store found
// down closes the gate.
func (s *Store) Heartbeat(ctx context.Context, id, workerID string) error {
	cctx, cancel := context.WithTimeout(ctx, s.g.cfg.CallTimeout)
	defer cancel()
	err := s.next.Heartbeat(cctx, id, workerID)
	if err != nil && ctx.Err() == nil && store.Unavailable(err) {
		s.g.Down(err)
	}
	return err
}

package devfleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/worker/service"
)

// Workers is one worker pool running inside the fleet, as one prover-worker
// process would: it has its own NATS connection and its own metrics
// (labelled pool=<Name>), and shares the fleet's database pool.
type Workers struct {
	name     string
	family   family.Family
	svc      *service.Service
	nc       *nats.Conn
	registry *prometheus.Registry
	cancel   context.CancelFunc
	done     chan struct{}
	err      error // Run's result, set before done closes
}

// readyTimeout bounds how long AddWorkers waits for a new pool to be ready.
const readyTimeout = 30 * time.Second

// AddWorkers starts a worker pool for fam and waits until it takes jobs.
// Its configuration is Config.Worker, changed by configure when it is not
// nil; Family, CircuitDir, ZkeyDir, JobKey, WorkDir and Stream are the
// fleet's. The pool runs until Stop or Kill, or until the fleet stops.
//
//	w, err := fleet.AddWorkers(ctx, family.Register, func(c *service.Config) {
//		c.Concurrency = 4
//		c.ShutdownGrace = -1 // Kill leaves nothing running
//	})
func (f *Fleet) AddWorkers(ctx context.Context, fam family.Family, configure func(*service.Config)) (*Workers, error) {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return nil, errors.New("devfleet: the fleet is stopped")
	}
	f.seq++
	name := fmt.Sprintf("%s-%d", fam, f.seq)
	f.mu.Unlock()

	cfg := f.cfg.Worker
	cfg.ChildEnv = append([]string(nil), cfg.ChildEnv...)
	if configure != nil {
		configure(&cfg)
	}
	cfg.Family = fam
	cfg.CircuitDir, cfg.ZkeyDir = f.cfg.CircuitDir, f.cfg.ZkeyDir
	cfg.JobKey = service.JobKey(append([]byte(nil), f.keyRaw...))
	cfg.WorkDir = f.WorkDir()
	cfg.Stream = f.cfg.Queue.Stream
	if cfg.WorkerID == "" {
		cfg.WorkerID = "devfleet-" + name
	}

	nc, err := f.connectNATS("devfleet worker " + name)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("devfleet: jetstream: %w", err)
	}
	reg := prometheus.NewRegistry()
	svc, err := service.New(cfg, service.Deps{
		Pool:     f.pool,
		JS:       js,
		NC:       nc,
		Logger:   f.cfg.Logger.With("pool", name),
		Registry: prometheus.WrapRegistererWith(prometheus.Labels{"pool": name}, reg),
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("devfleet: worker pool %s: %w", name, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &Workers{name: name, family: fam, svc: svc, nc: nc, registry: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.err = svc.Run(runCtx)
	}()

	f.mu.Lock()
	stopped := f.stopped
	if !stopped {
		f.workers = append(f.workers, w)
	}
	f.mu.Unlock()
	if stopped {
		w.cancel()
		<-w.done
		nc.Close()
		return nil, errors.New("devfleet: the fleet is stopped")
	}

	if err := w.waitReady(ctx); err != nil {
		stopCtx, c := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer c()
		_ = w.Stop(stopCtx)
		return nil, err
	}
	return w, nil
}

func (w *Workers) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := w.svc.Ready(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-w.done:
			if w.err != nil {
				return fmt.Errorf("devfleet: worker pool %s: %w", w.name, w.err)
			}
			return fmt.Errorf("devfleet: worker pool %s stopped during start-up", w.name)
		case <-ctx.Done():
			return fmt.Errorf("devfleet: worker pool %s not ready: %w", w.name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("devfleet: worker pool %s not ready after %s: %w", w.name, readyTimeout, err)
		}
	}
}

// Workers lists the pools started so far (stopped ones included).
func (f *Fleet) Workers() []*Workers {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Workers(nil), f.workers...)
}

// Name is the pool's name (<family>-<n>), its metrics' pool label.
func (w *Workers) Name() string { return w.name }

// Family is the family the pool serves.
func (w *Workers) Family() family.Family { return w.family }

// Service is the pool's worker service.
func (w *Workers) Service() *service.Service { return w.svc }

// Registry holds the pool's metrics.
func (w *Workers) Registry() *prometheus.Registry { return w.registry }

// Done is closed once the pool has stopped.
func (w *Workers) Done() <-chan struct{} { return w.done }

// Stop stops the pool gracefully (worker/service's shutdown: stop
// fetching, let running jobs finish within the pool's ShutdownGrace, hand
// the rest back), then drains its NATS connection. It returns the pool's
// Run error, or ctx's error if ctx ends first.
func (w *Workers) Stop(ctx context.Context) error {
	w.cancel()
	err := w.wait(ctx)
	w.closeConn()
	return err
}

// Kill stops the pool the way a crash would: its NATS connection is closed
// at once, so nothing it had in flight is acknowledged or handed back, and
// JetStream redelivers those jobs after the consumer's AckWait. Running
// child processes are killed when the pool's ShutdownGrace runs out (set it
// negative for none). Kill returns once the pool has stopped.
func (w *Workers) Kill() {
	w.nc.Close()
	w.cancel()
	<-w.done
}

func (w *Workers) wait(ctx context.Context) error {
	select {
	case <-w.done:
		if w.err != nil {
			return fmt.Errorf("devfleet: worker pool %s: %w", w.name, w.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("devfleet: worker pool %s did not stop: %w", w.name, ctx.Err())
	}
}

func (w *Workers) closeConn() {
	if w.nc.IsClosed() {
		return
	}
	if err := w.nc.Drain(); err != nil {
		w.nc.Close()
		return
	}
	waitClosed(w.nc, 5*time.Second)
}

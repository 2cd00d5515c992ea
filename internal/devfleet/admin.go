package devfleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/openpassport/prover-fleet/internal/admin"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
)

// startAdmin serves /healthz, /readyz and /metrics for the whole fleet.
func (f *Fleet) startAdmin() error {
	ln, err := net.Listen("tcp", f.cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("devfleet: admin listener: %w", err)
	}
	f.adminAddr = ln.Addr().String()
	h := admin.Handler(admin.Config{
		Checks:  f.readyChecks,
		Metrics: promhttp.HandlerFor(f.Gatherer(), promhttp.HandlerOpts{}),
		Timeout: 3 * time.Second,
	})
	f.admin = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	f.adminDone = make(chan error, 1)
	go func() {
		err := f.admin.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		f.adminDone <- err
	}()
	return nil
}

// Gatherer collects the metrics of the frontend and of every worker pool
// started so far.
func (f *Fleet) Gatherer() prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		gs := prometheus.Gatherers{f.metrics.Gatherer()}
		for _, w := range f.Workers() {
			gs = append(gs, w.registry)
		}
		return gs.Gather()
	})
}

// readyChecks are the fleet's readiness checks: Postgres, NATS, the stream
// and its consumers, the status relay's LISTEN connection, and each worker
// pool still running ("workers NAME";
// a pool stopped on purpose is left out).
func (f *Fleet) readyChecks() []admin.Check {
	checks := []admin.Check{
		{Name: "postgres", Probe: f.pool.Ping},
		{Name: "nats", Probe: func(context.Context) error {
			if st := f.nc.Status(); st != nats.CONNECTED {
				return fmt.Errorf("connection %s", st)
			}
			return nil
		}},
		{Name: "jetstream", Probe: func(ctx context.Context) error {
			return jobqueue.Check(ctx, f.js, f.cfg.Queue.Stream, f.cfg.Families)
		}},
	}
	if f.relay != nil {
		checks = append(checks, admin.Check{Name: "status_listener", Probe: func(context.Context) error {
			if !f.relay.ListenerUp() {
				return errors.New("the status relay's LISTEN connection is down")
			}
			return nil
		}})
	}
	for _, w := range f.Workers() {
		select {
		case <-w.done:
			continue // stopped on purpose
		default:
		}
		checks = append(checks, admin.Check{Name: "workers " + w.name, Probe: w.svc.Ready})
	}
	return checks
}

// Ready reports what keeps the fleet from serving, by check name; an empty
// map means ready.
func (f *Fleet) Ready(ctx context.Context) map[string]error {
	return admin.Run(ctx, f.readyChecks())
}

package devfleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/openpassport/prover-fleet/shared/jobqueue"
)

// startAdmin serves /healthz, /readyz and /metrics for the whole fleet.
func (f *Fleet) startAdmin() error {
	ln, err := net.Listen("tcp", f.cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("devfleet: admin listener: %w", err)
	}
	f.adminAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", f.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(f.Gatherer(), promhttp.HandlerOpts{}))
	f.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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

// Ready reports what keeps the fleet from serving, by check name; an empty
// map means ready.
func (f *Fleet) Ready(ctx context.Context) map[string]error {
	bad := map[string]error{}
	if err := f.pool.Ping(ctx); err != nil {
		bad["postgres"] = err
	}
	if st := f.nc.Status(); st != nats.CONNECTED {
		bad["nats"] = fmt.Errorf("connection %s", st)
	}
	if err := jobqueue.Check(ctx, f.js, f.cfg.Queue.Stream, f.cfg.Families); err != nil {
		bad["jetstream"] = err
	}
	for _, w := range f.Workers() {
		select {
		case <-w.done:
			continue // stopped on purpose
		default:
		}
		if err := w.svc.Ready(ctx); err != nil {
			bad["workers "+w.name] = err
		}
	}
	return bad
}

func (f *Fleet) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	bad := f.Ready(ctx)
	out := map[string]string{"postgres": "ok", "nats": "ok", "jetstream": "ok"}
	for _, wp := range f.Workers() {
		out["workers "+wp.name] = "ok"
		select {
		case <-wp.done:
			out["workers "+wp.name] = "stopped"
		default:
		}
	}
	for k, err := range bad {
		out[k] = err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	if len(bad) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(out)
}

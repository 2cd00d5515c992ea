// Package admin is the operator listener of prover-api and prover-worker
// (and of proverctl dev's fleet): /healthz answers while the process lives,
// /readyz answers 200 when every readiness check passes and 503 otherwise,
// with each check's result as a JSON object ({"postgres":"ok","nats":"not
// connected",…}), /metrics serves Prometheus metrics when given, and
// /debug/pprof/ Go's profiler when asked for.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/openpassport/prover-fleet/internal/httpbound"
)

// Check is one readiness check: a name (the key in /readyz's answer) and a
// probe that returns why it fails, or nil.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// DefaultAddress is where both programs serve the admin listener unless
// told otherwise: the loopback interface, so that metrics and readiness
// are not offered to the world by default. Deployments give the address a
// scraper or a kubelet reaches (deploy/k8s and the images set
// 0.0.0.0:9090; inside an enclave vsock://:9090).
const DefaultAddress = "127.0.0.1:9090"

// DefaultTimeout bounds one /readyz answer when Config.Timeout is zero.
const DefaultTimeout = 3 * time.Second

// Config configures the admin handler.
type Config struct {
	// Checks returns the readiness checks; it is called on every /readyz,
	// so the set may change while the program runs. Nil: always ready.
	Checks func() []Check
	// Metrics serves /metrics; nil leaves the path out.
	Metrics http.Handler
	// Timeout bounds the checks of one /readyz (DefaultTimeout when zero
	// or negative).
	Timeout time.Duration
	// Profiling serves Go's profiler under /debug/pprof/ (off by default:
	// a heap profile shows what the process holds).
	Profiling bool
}

// Handler serves /healthz, /readyz and /metrics. Every Config is valid.
func Handler(cfg Config) http.Handler {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), cfg.Timeout)
		defer cancel()
		var checks []Check
		if cfg.Checks != nil {
			checks = cfg.Checks()
		}
		failed := Run(ctx, checks)
		results := make(map[string]string, len(checks))
		for _, c := range checks {
			results[c.Name] = "ok"
		}
		for name, err := range failed {
			results[name] = err.Error()
		}
		w.Header().Set("Content-Type", "application/json")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(results)
	})
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	if cfg.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Run runs every check and returns the failing ones by name (empty when
// all pass).
func Run(ctx context.Context, checks []Check) map[string]error {
	failed := map[string]error{}
	for _, c := range checks {
		if err := c.Probe(ctx); err != nil {
			failed[c.Name] = err
		}
	}
	return failed
}

// ShutdownTimeout bounds how long Serve waits for requests in flight once
// its context ends.
const ShutdownTimeout = 5 * time.Second

// Serve serves h on ln until ctx ends, then shuts the server down (requests
// in flight get ShutdownTimeout). It returns nil after a shutdown, or the
// error that stopped serving.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	// No ReadTimeout or WriteTimeout, which would cut a CPU profile's
	// answer; a body must arrive within 10 s (httpbound), and a kept-alive
	// connection is closed after a minute idle.
	hs := &http.Server{Handler: httpbound.Handler(h, 10*time.Second), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}

// Package admin is prover-api's operator listener: /healthz (the process
// answers), /readyz (its dependencies answer) and, when given, /metrics.
package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Check is one readiness check: a name and a probe.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// Handler serves the admin paths. metrics may be nil.
func Handler(checks []Check, metrics http.Handler, timeout time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		results := make(map[string]string, len(checks))
		status := http.StatusOK
		for _, c := range checks {
			if err := c.Probe(ctx); err != nil {
				results[c.Name] = err.Error()
				status = http.StatusServiceUnavailable
			} else {
				results[c.Name] = "ok"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(results)
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}

package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	var dbDown bool
	h := Handler(Config{
		Checks: func() []Check {
			return []Check{
				{Name: "postgres", Probe: func(context.Context) error {
					if dbDown {
						return errors.New("connection refused")
					}
					return nil
				}},
				{Name: "nats", Probe: func(context.Context) error { return nil }},
			}
		},
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("metric 1\n")) }),
		Timeout: time.Second,
	})

	get := func(path string) (int, string, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String(), rec.Header().Get("Content-Type")
	}
	if code, body, _ := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	code, body, ctype := get("/readyz")
	var m map[string]string
	if err := json.Unmarshal([]byte(body), &m); err != nil || code != 200 || m["postgres"] != "ok" || m["nats"] != "ok" || ctype != "application/json" {
		t.Fatalf("/readyz = %d %q (%s)", code, body, ctype)
	}
	dbDown = true
	code, body, _ = get("/readyz")
	if err := json.Unmarshal([]byte(body), &m); err != nil || code != 503 || m["postgres"] != "connection refused" || m["nats"] != "ok" {
		t.Fatalf("/readyz with the database down = %d %q", code, body)
	}
	if code, body, _ := get("/metrics"); code != 200 || body != "metric 1\n" {
		t.Fatalf("/metrics = %d %q", code, body)
	}
}

func TestHandlerWithoutChecksOrMetrics(t *testing.T) {
	t.Parallel()
	h := Handler(Config{Timeout: -time.Second}) // the default timeout
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != 200 || rec.Body.String() != "{}\n" {
		t.Fatalf("/readyz without checks = %d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 404 {
		t.Fatalf("/metrics without a handler = %d, want 404", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/goroutine", nil))
	if rec.Code != 404 {
		t.Fatalf("/debug/pprof/ without Profiling = %d, want 404", rec.Code)
	}
}

func TestHandlerProfiling(t *testing.T) {
	t.Parallel()
	h := Handler(Config{Profiling: true})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/goroutine?debug=1", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "goroutine profile:") {
		t.Fatalf("/debug/pprof/goroutine = %d %.80q", rec.Code, rec.Body.String())
	}
}

func TestServeStopsWithContext(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(Config{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after its context ended: %v", err)
	}
}

package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	var dbDown bool
	h := Handler([]Check{
		{Name: "postgres", Probe: func(context.Context) error {
			if dbDown {
				return errors.New("connection refused")
			}
			return nil
		}},
		{Name: "nats", Probe: func(context.Context) error { return nil }},
	}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("metric 1\n")) }), time.Second)

	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	code, body := get("/readyz")
	var m map[string]string
	if err := json.Unmarshal([]byte(body), &m); err != nil || code != 200 || m["postgres"] != "ok" || m["nats"] != "ok" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	dbDown = true
	code, body = get("/readyz")
	if err := json.Unmarshal([]byte(body), &m); err != nil || code != 503 || m["postgres"] != "connection refused" || m["nats"] != "ok" {
		t.Fatalf("/readyz with the database down = %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || body != "metric 1\n" {
		t.Fatalf("/metrics = %d %q", code, body)
	}
}

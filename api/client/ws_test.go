package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/api/protocol"
)

// A peer that speaks raw JSON-RPC frames, to test what the real frontend
// never does on purpose: answers out of order, notifications between
// answers, an error answer, a call left unanswered until the socket closes.
func TestWebSocketFraming(t *testing.T) {
	t.Parallel()
	id := "5b0ca3d6-7a1c-4f0e-9d65-1f2a3b4c5d6e"
	unanswered, heldHealth := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var held []map[string]any
		for {
			var req map[string]any
			if err := ws.ReadJSON(&req); err != nil {
				return
			}
			switch req["method"] {
			case protocol.MethodHealth: // held until a status call arrives, then answered last
				held = append(held, req)
				close(heldHealth)
			case protocol.MethodStatus:
				_ = ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "method": protocol.NotifyStatusUpdate,
					"params": map[string]any{"uuid": id, "status": 1}})
				_ = ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": req["id"],
					"result": map[string]any{"uuid": id, "status": 2}})
				for _, h := range held {
					_ = ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": h["id"], "result": protocol.HealthOK})
				}
				held = nil
			case protocol.MethodCancel:
				_ = ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": req["id"],
					"error": map[string]any{"code": -32600, "message": "UUID not found"}})
			default:
				close(unanswered)
			}
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var wg sync.WaitGroup
	wg.Add(1)
	var healthErr error
	go func() { defer wg.Done(); healthErr = c.Health(ctx) }()
	<-heldHealth
	st, err := c.Status(ctx, id)
	if err != nil || st.Status != 2 || st.UUID != id {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	wg.Wait()
	if healthErr != nil {
		t.Fatalf("Health answered after a later call: %v", healthErr)
	}
	if _, err := c.Cancel(ctx, id, nil); !client.IsCode(err, -32600) {
		t.Fatalf("Cancel = %v, want server error -32600", err)
	}

	// A call still waiting when the connection closes ends with ErrClosed.
	errc := make(chan error, 1)
	go func() {
		_, err := c.Attestation(ctx, protocol.AttestationParams{})
		errc <- err
	}()
	<-unanswered
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, client.ErrClosed) {
		t.Fatalf("pending call after Close = %v, want ErrClosed", err)
	}
}

// The status notification sent before the answer reaches a subscription.
func TestNotificationReachesSubscription(t *testing.T) {
	t.Parallel()
	id := "0e7f1c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if err := ws.ReadJSON(&req); err != nil || req.Method != protocol.MethodSubscribe {
			return
		}
		_ = ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": map[string]any{"uuid": id, "status": 0}})
		for _, s := range []int{1, 2} {
			_ = ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "method": protocol.NotifyStatusUpdate,
				"params": map[string]any{"uuid": id, "status": s}})
		}
		_, _, _ = ws.ReadMessage() // until the client goes
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var seen []int
	if err := c.Subscribe(ctx, id, func(st protocol.Status) { seen = append(seen, int(st.Status)) }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[0] != 0 || seen[1] != 1 || seen[2] != 2 {
		t.Fatalf("statuses seen %v, want [0 1 2]", seen)
	}
}

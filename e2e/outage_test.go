package e2e_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/api/server"
	"github.com/openpassport/prover-fleet/internal/devfleet"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/worker/service"
)

// The tests of this file each run a fleet of their own (the disclose family
// only, disclose_demo with the native prover) and take its NATS or
// PostgreSQL server away while requests flow through the frontend, then
// check that every request the frontend accepted ends proved, with a proof
// the verifier accepts, on its first delivery.

// outageFleet starts a disclose-only fleet whose frontend gives a publish
// recordTimeout, with a worker pool that reconciles every second.
func outageFleet(t *testing.T, recordTimeout time.Duration) (*devfleet.Fleet, *client.Client, json.RawMessage, *syncBuffer) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end proofs with the real circuits are skipped under -short")
	}
	circuits := dirFromEnv("PROVER_CIRCUITS", filepath.Join("..", "circuits", "build"))
	zkeys := dirFromEnv("PROVER_ZKEYS", filepath.Join("..", "zkeys"))
	inputs, err := os.ReadFile(filepath.Join(dirFromEnv("PROVER_INPUTS", filepath.Join(filepath.Dir(circuits), "inputs")), "disclose_demo.json"))
	if err != nil {
		t.Fatalf("the outage tests need the demo circuits (make circuits keys): %v", err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	fleet, err := devfleet.Start(ctx, devfleet.Config{
		CircuitDir: circuits, ZkeyDir: zkeys, Families: []family.Family{family.Disclose}, NoWorkers: true,
		Frontend: server.Config{RecordTimeout: recordTimeout},
		Logger:   slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("start the fleet: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := fleet.Stop(ctx); err != nil {
			t.Errorf("stop the fleet: %v", err)
		}
		if t.Failed() {
			t.Logf("fleet logs:\n%s", logs.String())
		}
	})
	if _, err := fleet.AddWorkers(ctx, family.Disclose, func(c *service.Config) {
		c.ProverMode, c.Verifier = service.ProverNative, service.VerifierNative
		c.ReconcileInterval, c.ReconcileGrace = time.Second, 2*recordTimeout
	}); err != nil {
		t.Fatal(err)
	}
	verifier, err := fleet.NewVerifier()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, fleet.WSURL(), client.Options{Verifier: verifier, StallTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return fleet, c, inputs, logs
}

func discloseRequest(id string, inputs json.RawMessage) client.Request {
	return client.Request{UUID: id, Type: "disclose", Circuit: "disclose_demo", Inputs: inputs, Onchain: true,
		EndpointType: "staging_https", Endpoint: "https://e2e.example/verify"}
}

// waitProved waits for id's final status and checks the proof natively.
func waitProved(t *testing.T, fleet *devfleet.Fleet, c *client.Client, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	st, err := c.Wait(ctx, id, nil)
	if err != nil {
		t.Fatalf("%s: wait: %v", id, err)
	}
	if st.Status != status.ProofGenerated {
		reason := ""
		if st.Reason != nil {
			reason = *st.Reason
		}
		t.Fatalf("%s: final status %d (%s), want 2", id, st.Status, reason)
	}
	vkeyJSON, err := os.ReadFile(filepath.Join(fleet.Config().ZkeyDir, "disclose_demo.vkey.json"))
	if err != nil {
		t.Fatal(err)
	}
	vk, err := groth16.ParseVerifyingKey(vkeyJSON)
	if err != nil {
		t.Fatal(err)
	}
	public, _ := json.Marshal(st.PublicInputs)
	if err := vk.VerifyJSON(st.Proof, public); err != nil {
		t.Errorf("%s: the verifier rejects the proof: %v", id, err)
	}
	row, err := fleet.Store().Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if row.Attempts != 1 {
		t.Errorf("%s: proved on attempt %d, want 1", id, row.Attempts)
	}
}

// NATS goes away while the app submits: the frontend's publish gets no
// answer within its record timeout, so the request is accepted and kept
// with its sealed job. The app, not trusting the answer, retries the same
// uuid and is told it exists. NATS comes back after the submit gave up;
// the request is proved, once.
func TestNATSOutageSubmitThenRetry(t *testing.T) {
	fleet, c, inputs, logs := outageFleet(t, 2*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	srv := fleet.NATSServer()
	srv.Server().Shutdown()
	srv.Server().WaitForShutdown()
	for fleet.NATS().IsConnected() {
		time.Sleep(10 * time.Millisecond)
	}
	id := uuid.NewString()
	got, err := c.Submit(ctx, discloseRequest(id, inputs), nil)
	if err != nil || got != id {
		t.Fatalf("submit with NATS down: %q, %v; want accepted", got, err)
	}
	if _, err := c.Submit(ctx, discloseRequest(id, inputs), nil); !client.IsCode(err, -32600) {
		t.Fatalf("same-uuid retry: %v, want -32600 UUID already exists", err)
	}
	time.Sleep(2 * time.Second) // the outage outlasts the submit
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitProved(t, fleet, c, id)
	if !strings.Contains(logs.String(), "enqueue not confirmed") {
		t.Error("the frontend did not log the unconfirmed enqueue")
	}
}

// PostgreSQL stops while requests are queued and being proved, for longer
// than all the deliveries the jobs have; every request the frontend
// accepted is proved once it is back.
func TestPostgresOutageMidFlight(t *testing.T) {
	fleet, c, inputs, logs := outageFleet(t, 15*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var ids []string
	for i := range 10 {
		id, err := c.Submit(ctx, discloseRequest(uuid.NewString(), inputs), nil)
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		ids = append(ids, id)
	}
	pg := fleet.PostgresServer()
	if pg == nil {
		t.Fatal("the fleet runs on DATABASE_URL; this test needs its throwaway server")
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	// Longer than every delivery the jobs have: the default queue's 5, with
	// 1+2+4+8 s of backoff between them.
	time.Sleep(16 * time.Second)
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		waitProved(t, fleet, c, id)
	}
	if !strings.Contains(logs.String(), "status store unavailable") {
		t.Error("no job met the outage: the workers never found the store down")
	}
}

package devfleet_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/internal/devfleet"
	"github.com/openpassport/prover-fleet/internal/devstack"
	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/internal/relayclient"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/store"
	"github.com/openpassport/prover-fleet/worker/service"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// emptyFolders makes circuit and zkey folders with nothing in them: enough
// for the frontend and the worker pools to start.
func emptyFolders(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	c, k := filepath.Join(dir, "circuits"), filepath.Join(dir, "zkeys")
	for _, d := range []string{c, k} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return c, k
}

func mustP256(t *testing.T) []byte {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().Bytes()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	c, k := emptyFolders(t)
	tests := []struct {
		name string
		cfg  devfleet.Config
		want string
	}{
		{"no circuits", devfleet.Config{ZkeyDir: k}, "devfleet: Config.CircuitDir is required"},
		{"no zkeys", devfleet.Config{CircuitDir: c}, "devfleet: Config.ZkeyDir is required"},
		{"missing folder", devfleet.Config{CircuitDir: filepath.Join(c, "nope"), ZkeyDir: k}, "devfleet: Config.CircuitDir: stat"},
		{"bad port", devfleet.Config{CircuitDir: c, ZkeyDir: k, NATSPort: 70000}, "devfleet: Config.NATSPort must be 0..65535, got 70000"},
		{"bad family", devfleet.Config{CircuitDir: c, ZkeyDir: k, Families: []family.Family{"passport"}}, `devfleet: Config.Families: unknown family "passport"`},
		{"bad attester", devfleet.Config{CircuitDir: c, ZkeyDir: k, Attester: "nsm"}, `devfleet: Config.Attester must be dev-nitro or dev-gcp, got "nsm"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := devfleet.Start(t.Context(), tc.cfg)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Start: %v, want an error starting %q", err, tc.want)
			}
		})
	}
}

// TestThrowawayPostgres starts the fleet the way `proverctl dev` does
// without DATABASE_URL and checks that Stop removes everything.
func TestThrowawayPostgres(t *testing.T) {
	if _, err := devstack.FindPostgresBin(); err != nil {
		if testing.Short() {
			t.Skipf("under -short: %v", err)
		}
		t.Fatalf("this test needs the PostgreSQL server binaries: %v", err)
	}
	c, k := emptyFolders(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	fleet, err := devfleet.Start(ctx, devfleet.Config{CircuitDir: c, ZkeyDir: k, NoWorkers: true})
	if err != nil {
		t.Fatal(err)
	}
	if !fleet.ThrowawayPostgres() {
		t.Error("ThrowawayPostgres() = false without a DatabaseURL")
	}
	var n int
	if err := fleet.Pool().QueryRow(ctx, "SELECT count(*) FROM proofs").Scan(&n); err != nil {
		t.Errorf("proofs table: %v", err)
	}
	state := fleet.StateDir()
	if err := fleet.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s still there after Stop: %v", state, err)
	}
	if err := fleet.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestFleetWithoutWorkers(t *testing.T) {
	t.Parallel()
	c, k := emptyFolders(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	fleet, err := devfleet.Start(ctx, devfleet.Config{
		StateDir: stateDir, DatabaseURL: stacktest.PostgresURL(t),
		CircuitDir: c, ZkeyDir: k, NoWorkers: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fleet.Stop(context.Background()) })

	// The key file is private and holds a key.
	st, err := os.Stat(fleet.JobKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("job key file mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := job.LoadKeyFile(fleet.JobKeyFile()); err != nil {
		t.Errorf("job key file: %v", err)
	}
	pem, err := os.ReadFile(fleet.RootPEMPath())
	if err != nil || !strings.Contains(string(pem), "BEGIN CERTIFICATE") {
		t.Errorf("root PEM %s: %v %q", fleet.RootPEMPath(), err, pem)
	}
	if len(fleet.PCR0()) != 48 {
		t.Errorf("PCR0 is %d bytes", len(fleet.PCR0()))
	}

	// A client pinning the fleet's root gets a verified hello over the
	// WebSocket URL, and health over the HTTP URL.
	verifier, err := fleet.NewVerifier()
	if err != nil {
		t.Fatal(err)
	}
	ws, err := client.Dial(ctx, fleet.WSURL(), client.Options{Verifier: verifier})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	pub := mustP256(t)
	hello, err := ws.Hello(ctx, uuid.NewString(), pub)
	if err != nil {
		t.Fatalf("hello: %v", err)
	}
	if _, err := verifier.Verify(hello.Attestation, pub); err != nil {
		t.Errorf("attestation does not verify against the fleet's root and PCR0: %v", err)
	}
	hc, err := client.Dial(ctx, fleet.HTTPURL(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := hc.Health(ctx); err != nil {
		t.Errorf("health over HTTP: %v", err)
	}

	// The status relay follows a recorded request, and relays a verdict
	// written straight into the table.
	id := uuid.NewString()
	if err := fleet.Store().Insert(ctx, store.Request{ID: id, ProofType: "register", Circuit: "x", Version: 1}); err != nil {
		t.Fatal(err)
	}
	rc, err := relayclient.Dial(ctx, fleet.StatusURL(), relayclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := rc.Subscribe(id); err != nil {
		t.Fatal(err)
	}
	if ev, err := rc.Next(ctx); err != nil || ev.Name != "status" || ev.Message != (relayclient.Message{UUID: id, Status: 0}) {
		t.Fatalf("relay: %+v, %v", ev, err)
	}
	if _, err := fleet.Pool().Exec(ctx, `UPDATE proofs SET status = 4 WHERE request_id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if ev, err := rc.Next(ctx); err != nil || ev.Message != (relayclient.Message{UUID: id, Status: 4}) {
		t.Fatalf("relay: %+v, %v", ev, err)
	}

	// Admin endpoints.
	if code, body := get(t, fleet.AdminURL()+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	code, body := get(t, fleet.AdminURL()+"/readyz")
	if code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
	var ready map[string]string
	if err := json.Unmarshal([]byte(body), &ready); err != nil || ready["postgres"] != "ok" || ready["jetstream"] != "ok" ||
		ready["status_listener"] != "ok" {
		t.Errorf("/readyz body %q (%v)", body, err)
	}
	if code, body := get(t, fleet.MetricsURL()); code != 200 ||
		!strings.Contains(body, `prover_api_requests_total{method="openpassport_hello",outcome="ok"} 1`) ||
		!strings.Contains(body, "prover_api_sessions_open 1") {
		t.Errorf("/metrics: %d, missing the hello call or the session:\n%s", code, body)
	}

	if err := fleet.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// A named state dir keeps the attestation root only.
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != "attest" {
		t.Errorf("state dir after Stop holds %v, want only [attest]", names)
	}
	if _, err := http.Get(fleet.HTTPURL()); err == nil {
		t.Error("frontend still answers after Stop")
	}
	if _, err := http.Get(fleet.StatusURL() + "/?EIO=4&transport=polling"); err == nil {
		t.Error("the status relay still answers after Stop")
	}
}

func TestAddStopKillWorkers(t *testing.T) {
	t.Parallel()
	c, k := emptyFolders(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	fleet, err := devfleet.Start(ctx, devfleet.Config{
		DatabaseURL: stacktest.PostgresURL(t), CircuitDir: c, ZkeyDir: k,
		Families: []family.Family{family.DSC, family.Disclose},
		Worker:   service.Config{Prover: "/bin/true", Verifier: "/bin/true", FetchWait: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fleet.Stop(context.Background()) })
	if got := len(fleet.Workers()); got != 2 {
		t.Fatalf("%d worker pools at start, want one per family (2)", got)
	}
	extra, err := fleet.AddWorkers(ctx, family.DSC, func(c *service.Config) { c.Concurrency = 3 })
	if err != nil {
		t.Fatal(err)
	}
	if got := extra.Service().Config(); got.Verifier != "/bin/true" || got.FetchWait != 200*time.Millisecond || got.Concurrency != 3 {
		t.Errorf("added pool's config: verifier %q, fetch wait %s, concurrency %d; want the fleet's, changed to 3 slots",
			got.Verifier, got.FetchWait, got.Concurrency)
	}
	if bad := fleet.Ready(ctx); len(bad) > 0 {
		t.Errorf("Ready: %v", bad)
	}
	_, metrics := get(t, fleet.MetricsURL())
	for _, want := range []string{
		`prover_worker_slots{family="dsc",pool="dsc-1"} 1`,
		`prover_worker_slots{family="dsc",pool="dsc-3"} 3`,
		`prover_worker_slots{family="disclose",pool="disclose-2"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if err := extra.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	fleet.Workers()[0].Kill()
	select {
	case <-fleet.Workers()[0].Done():
	default:
		t.Error("killed pool not done")
	}
	if bad := fleet.Ready(ctx); len(bad) > 0 {
		t.Errorf("Ready after stopping pools on purpose: %v", bad)
	}
	// Work dirs of stopped pools are gone.
	entries, _ := os.ReadDir(fleet.WorkDir())
	if len(entries) != 1 {
		t.Errorf("work dir holds %d instance dirs, want 1 (the running pool)", len(entries))
	}
	if err := fleet.Stop(ctx); err != nil {
		t.Errorf("fleet Stop: %v", err)
	}
}

// TestConfidentialSpaceAttester: with AttesterDevGCP the fleet signs
// tokens under a development root kept in the state dir; ClientOptions
// gives the matching verifier and a Nitro verifier is refused.
func TestConfidentialSpaceAttester(t *testing.T) {
	t.Parallel()
	c, k := emptyFolders(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	fleet, err := devfleet.Start(ctx, devfleet.Config{
		DatabaseURL: stacktest.PostgresURL(t), CircuitDir: c, ZkeyDir: k, NoWorkers: true,
		Attester: devfleet.AttesterDevGCP,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fleet.Stop(context.Background()) })
	if fleet.RootPEMPath() != filepath.Join(fleet.AttestDir(), attest.DevGCPRootCertFile) || fleet.PCR0() != nil ||
		!strings.HasPrefix(fleet.ImageDigest(), "sha256:") || fleet.Attester() != devfleet.AttesterDevGCP {
		t.Fatalf("root %s, PCR0 %x, digest %q", fleet.RootPEMPath(), fleet.PCR0(), fleet.ImageDigest())
	}
	pem, err := os.ReadFile(fleet.RootPEMPath())
	if err != nil || !bytes.Equal(pem, fleet.RootPEM()) {
		t.Fatalf("root PEM file: %v", err)
	}
	if _, err := fleet.NewVerifier(); !errors.Is(err, devfleet.ErrOtherFormat) {
		t.Fatalf("NewVerifier: %v", err)
	}
	opts, err := fleet.ClientOptions()
	if err != nil || opts.TokenVerifier == nil || opts.Verifier != nil {
		t.Fatalf("ClientOptions = %+v, %v", opts, err)
	}
	ws, err := client.Dial(ctx, fleet.WSURL(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	pub := mustP256(t)
	hello, err := ws.Hello(ctx, uuid.NewString(), pub)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := opts.TokenVerifier.Verify(hello.Attestation, pub)
	if err != nil || tok.ImageDigest != fleet.ImageDigest() {
		t.Fatalf("token: %+v, %v", tok, err)
	}
}

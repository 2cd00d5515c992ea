package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/pflag"

	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/internal/devfleet"
	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/status"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// lockedBuffer collects a command's output while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runCmd runs proverctl with args and the environment env.
func runCmd(ctx context.Context, env map[string]string, args ...string) (string, string, error) {
	var out, errOut lockedBuffer
	err := run(ctx, args, stdio{out: &out, err: &errOut, env: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
	return out.String(), errOut.String(), err
}

func TestUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // in the error; "" for success or help
	}{
		{"no command", nil, nil, "no command given"},
		{"unknown command", []string{"prove"}, nil, `unknown command "prove"`},
		{"help", []string{"help"}, nil, ""},
		{"command help", []string{"submit", "--help"}, nil, ""},
		{"bad flag", []string{"dev", "--no-such-flag"}, nil, "unknown flag: --no-such-flag"},
		{"migrate needs servers", []string{"migrate"}, nil, "missing [--database-url (DATABASE_URL) --nats-url (NATS_URL)]"},
		{"migrate bad replicas", []string{"migrate", "-d", "postgres://x", "--nats-url", "nats://x", "--replicas", "0"}, nil,
			"jobqueue: Config.Replicas must be 1..5, got 0"},
		{"submit needs a request", []string{"submit"}, nil, "missing --circuit, --inputs, --type"},
		{"submit unknown type", []string{"submit", "--type", "passport", "--circuit", "x", "--inputs", "x"}, nil, "--type:"},
		{"submit needs a policy", []string{"submit", "--type", "register", "--circuit", "x", "--inputs", "testdata/inputs.json"}, nil,
			"--attestation auto needs the policy of a format"},
		{"submit nitro needs pcr0", []string{"submit", "--type", "register", "--circuit", "x", "--inputs", "testdata/inputs.json", "--attestation", "nitro"}, nil,
			"--pcr0 is required (the enclave image to trust), or --insecure-any-pcr0 for development"},
		{"submit pcr0 from env not hex", []string{"submit", "--type", "register", "--circuit", "x", "--inputs", "testdata/inputs.json"},
			map[string]string{"PROVER_PCR0": "zz"}, `--pcr0 "zz" is not hex`},
		{"status needs a uuid", []string{"status"}, nil, "status takes one request uuid, got 0 arguments"},
		{"status not a uuid", []string{"status", "nope"}, nil, `"nope" is not a UUID`},
		{"cancel not a uuid", []string{"cancel", "nope"}, nil, `"nope" is not a UUID`},
		{"dev bad concurrency", []string{"dev", "--concurrency", "0"}, nil, "--concurrency must be at least 1, got 0"},
		{"dev bad env", []string{"dev"}, map[string]string{"PROVERCTL_CONCURRENCY": "many"}, `PROVERCTL_CONCURRENCY="many"`},
		{"dev bad families", []string{"dev", "--families", "passport"}, nil, "--families:"},
		{"demo missing build", []string{"demo", "-c", "testdata/none", "-k", "testdata/none"}, nil, "run `make circuits keys`"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := runCmd(t.Context(), tc.env, tc.args...)
			if tc.want == "" {
				if err != nil && !errors.Is(err, pflag.ErrHelp) {
					t.Fatalf("err = %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	_, _, natsURL := stacktest.NATS(t)
	env := map[string]string{"DATABASE_URL": stacktest.PostgresURL(t), "NATS_URL": natsURL}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, _, err := runCmd(ctx, env, "migrate", "--memory")
	if err != nil {
		t.Fatal(err)
	}
	// The test database is migrated already (stacktest); the stream is new.
	for _, want := range []string{"schema up to date", "stream PROOF_JOBS: created", "consumer register: created",
		"consumer dsc: created", "consumer disclose: created", "stream PROOF_JOBS_ADVISORIES: created"} {
		if !strings.Contains(out, want) {
			t.Errorf("first migrate: output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCmd(ctx, env, "migrate", "--memory", "--max-ack-pending", "8")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"schema up to date", "stream PROOF_JOBS: up to date", "consumer dsc: up to date",
		"max ack pending 8", "stream PROOF_JOBS_ADVISORIES: up to date"} {
		if !strings.Contains(out, want) {
			t.Errorf("second migrate: output lacks %q:\n%s", want, out)
		}
	}
}

// fakeCircuit lays out a circuit the frontend accepts (it checks only that
// the witness generator and the zkey are there); with no workers, its
// requests stay queued.
func fakeCircuit(t *testing.T, name string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	circuits, zkeys := filepath.Join(dir, "build"), filepath.Join(dir, "zkeys")
	if err := os.MkdirAll(filepath.Join(circuits, name+"_cpp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(zkeys, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(circuits, name+"_cpp", name), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(zkeys, name+".zkey"), []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	return circuits, zkeys
}

// TestSubmitStatusCancel drives a frontend with no workers through the
// commands the way an operator would.
func TestSubmitStatusCancel(t *testing.T) {
	t.Parallel()
	circuits, zkeys := fakeCircuit(t, "register_x")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	fleet, err := devfleet.Start(ctx, devfleet.Config{
		DatabaseURL: stacktest.PostgresURL(t), CircuitDir: circuits, ZkeyDir: zkeys,
		Families: []family.Family{family.Register}, NoWorkers: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fleet.Stop(context.Background()) })
	pcr0 := strings.ToUpper(hex.EncodeToString(fleet.PCR0()))
	env := map[string]string{"PROVER_URL": fleet.WSURL(), "PROVER_ROOT_PEM": fleet.RootPEMPath()}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"wrong pcr0", []string{"--pcr0", strings.Repeat("00", 48)}, "attestation document rejected"},
		{"wrong root", []string{"--pcr0", pcr0, "--root-pem", "testdata/other-root.pem"}, "attestation document rejected"},
		{"unknown circuit", []string{"--pcr0", pcr0, "--circuit", "nope"}, "Could not find the given circuit name: nope"},
		{"family not served", []string{"--pcr0", pcr0, "--type", "dsc"}, "This endpoint only allows register inputs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"submit", "--type", "register", "--circuit", "register_x", "--inputs", "testdata/inputs.json"}, tc.args...)
			_, _, err := runCmd(ctx, env, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}

	// A good request, with the newer app's compressed key, over HTTP POST.
	id := uuid.NewString()
	out, _, err := runCmd(ctx, map[string]string{"PROVER_ROOT_PEM": fleet.RootPEMPath(), "PROVER_PCR0": pcr0},
		"submit", "--url", fleet.HTTPURL(), "--type", "register", "--circuit", "register_x",
		"--inputs", "testdata/inputs.json", "--uuid", id, "--compressed-key")
	if err != nil {
		t.Fatal(err)
	}
	var submitted map[string]string
	if err := json.Unmarshal([]byte(out), &submitted); err != nil || submitted["uuid"] != id || len(submitted["cancel_token"]) != 64 {
		t.Fatalf("submit printed %q (%v), want {\"uuid\": %q, \"cancel_token\": 64 hex digits}", out, err, id)
	}

	// status over the WebSocket: queued.
	out, _, err = runCmd(ctx, env, "status", id)
	if err != nil {
		t.Fatal(err)
	}
	var st protocol.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status printed %q: %v", out, err)
	}
	if st.UUID != id || st.Status != status.Pending || st.CircuitName != "register_x" {
		t.Errorf("status = %+v, want pending register_x %s", st, id)
	}

	// Only the submitter can cancel: no token, someone else's token, a
	// token that is not hex are refused, and the request stays pending.
	other := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no token", nil, "cancel needs the request's cancel token"},
		{"another token", []string{"--token", other}, "Cancel refused: only the submitter of this request can cancel it"},
		{"not hex", []string{"--token", "zz"}, "the cancel token is not hex"},
	} {
		_, _, err := runCmd(ctx, env, append([]string{"cancel", id}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cancel, %s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	if out, _, err = runCmd(ctx, env, "status", id); err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Status != status.Pending {
		t.Fatalf("status after refused cancels: %q (%v), want pending", out, err)
	}

	// cancel with the submitter's token (from the environment), then the
	// status says why.
	out, _, err = runCmd(ctx, map[string]string{"PROVER_URL": fleet.WSURL(), "PROVER_CANCEL_TOKEN": submitted["cancel_token"]}, "cancel", id)
	if err != nil {
		t.Fatal(err)
	}
	var res protocol.CancelResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Cancelled || res.Status != status.Failed {
		t.Fatalf("cancel printed %q (%v), want cancelled with status 3", out, err)
	}
	out, _, err = runCmd(ctx, env, "status", "--url", fleet.HTTPURL(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Status != status.Failed ||
		st.Reason == nil || *st.Reason != protocol.CancelReason {
		t.Errorf("status after cancel: %q (%v)", out, err)
	}

	// submit --wait follows a request to its end: cancel it from the side,
	// with the token it wrote to a file.
	id2 := uuid.NewString()
	tokenFile := filepath.Join(t.TempDir(), "token")
	done := make(chan error, 1)
	var waitOut string
	go func() {
		var err error
		waitOut, _, err = runCmd(ctx, env, "submit", "--pcr0", pcr0, "--type", "register", "--circuit", "register_x",
			"--inputs", "testdata/inputs.json", "--uuid", id2, "--wait", "--cancel-token-file", tokenFile)
		done <- err
	}()
	waitFor(t, ctx, func() bool {
		_, err := os.Stat(tokenFile)
		return err == nil
	})
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if _, _, err := runCmd(ctx, env, "cancel", id2, "--token-file", tokenFile); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "ended with status 3") {
			t.Errorf("submit --wait of a cancelled request: err = %v", err)
		}
		if err := json.Unmarshal([]byte(waitOut), &st); err != nil || st.UUID != id2 || st.Status != status.Failed {
			t.Errorf("submit --wait printed %q (%v)", waitOut, err)
		}
	case <-ctx.Done():
		t.Fatal("submit --wait did not return after the cancel")
	}
}

func waitFor(t *testing.T, ctx context.Context, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not reached")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestDev runs `proverctl dev` until its context ends, as Ctrl-C would.
func TestDev(t *testing.T) {
	t.Parallel()
	circuits, zkeys := fakeCircuit(t, "dsc_x")
	state := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut lockedBuffer
	env := map[string]string{"DATABASE_URL": stacktest.PostgresURL(t), "PROVERCTL_STATE_DIR": state}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--status-listen", "127.0.0.1:0",
			"-c", circuits, "-k", zkeys, "--families", "dsc", "--no-workers", "--log-level", "error"},
			stdio{out: &out, err: &errOut, env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	}()
	deadline := time.After(time.Minute)
	for !strings.Contains(out.String(), "Try:") {
		select {
		case err := <-done:
			t.Fatalf("dev returned early: %v\n%s\n%s", err, out.String(), errOut.String())
		case <-deadline:
			t.Fatalf("no banner within a minute:\n%s\n%s", out.String(), errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	banner := out.String()
	field := func(label string) string {
		for _, line := range strings.Split(banner, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), label); ok {
				return strings.Fields(rest)[0]
			}
		}
		t.Fatalf("banner lacks %q:\n%s", label, banner)
		return ""
	}
	if ws := field("WebSocket URL"); !strings.HasPrefix(ws, "ws://127.0.0.1:") {
		t.Errorf("WebSocket URL %q", ws)
	}
	relayURL := field("status relay (Socket.IO):")
	if !strings.HasPrefix(relayURL, "http://127.0.0.1:") || !strings.Contains(banner, relayURL+" (path /)") {
		t.Errorf("status relay line: %q in\n%s", relayURL, banner)
	}
	if resp, err := http.Get(relayURL + "/?EIO=4&transport=polling"); err != nil {
		t.Errorf("relay: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), `0{"`) {
			t.Errorf("relay handshake: %d %q", resp.StatusCode, body)
		}
	}
	// dev-gcp by default: the Confidential Space root and the image digest.
	rootPEM := field("attestation root")
	if want := filepath.Join(state, "attest", "gcp-root.pem"); rootPEM != want {
		t.Errorf("attestation root %q, want %q (in --state-dir)", rootPEM, want)
	}
	if d := field("image digest"); !strings.HasPrefix(d, "sha256:") || !strings.Contains(banner, "--image-digest "+d+" --allow-debug") {
		t.Errorf("image digest %q or the Try line:\n%s", d, banner)
	}
	if !strings.Contains(banner, "dsc_x") {
		t.Errorf("banner does not list the circuit dsc_x:\n%s", banner)
	}
	for _, u := range []string{field("HTTP URL") + "v1/proofs/" + uuid.NewString(), field("metrics URL")} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := http.StatusOK
		if strings.Contains(u, "/v1/proofs/") {
			want = http.StatusNotFound
		}
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d: %.200s", u, resp.StatusCode, want, body)
		}
	}

	cancel() // Ctrl-C
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev: %v\n%s", err, errOut.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("dev did not stop within a minute")
	}
	if !strings.Contains(out.String(), "stopped;") {
		t.Errorf("no clean-stop message:\n%s", out.String())
	}
	if _, err := os.Stat(rootPEM); err != nil {
		t.Errorf("the development root is not kept in the state dir: %v", err)
	}
}

func TestCleanup(t *testing.T) {
	t.Parallel()
	url := stacktest.PostgresURL(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	p, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Rows: old proved, old failed, old pending, new proved.
	rows := []struct {
		status int
		age    string
	}{{2, "30 days"}, {3, "30 days"}, {0, "30 days"}, {2, "1 hour"}}
	for _, r := range rows {
		if _, err := p.Exec(ctx, `INSERT INTO proofs (request_id, proof_type, status, circuit_name, proof, public_inputs, updated_at)
			VALUES ($1, 0, $2, 'c', '{"protocol":"groth16"}', '{1}', now() - $3::interval)`, uuid.NewString(), r.status, r.age); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"DATABASE_URL": url}
	out, _, err := runCmd(ctx, env, "cleanup", "--older-than", "168h", "--strip-proofs")
	if err != nil || !strings.HasPrefix(out, "2 terminal rows") {
		t.Fatalf("strip: %q %v", out, err)
	}
	var stripped int
	if err := p.QueryRow(ctx, `SELECT count(*) FROM proofs WHERE proof IS NULL AND public_inputs IS NULL`).Scan(&stripped); err != nil || stripped != 2 {
		t.Errorf("%d rows stripped (%v), want 2", stripped, err)
	}
	out, _, err = runCmd(ctx, env, "cleanup", "--older-than", "168h")
	if err != nil || !strings.HasPrefix(out, "2 terminal rows") {
		t.Fatalf("delete: %q %v", out, err)
	}
	var left int
	if err := p.QueryRow(ctx, `SELECT count(*) FROM proofs`).Scan(&left); err != nil || left != 2 {
		t.Errorf("%d rows left (%v), want 2 (the pending one and the new one)", left, err)
	}
}

// TestDemo runs `proverctl demo` (what `make demo` runs) with the real demo
// circuits: PROVER_CIRCUITS and PROVER_ZKEYS (set by `make test`), else the
// repository's circuits/build and zkeys. It fails when they are not built.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo proves the real circuits; skipped under -short")
	}
	t.Parallel()
	circuits, zkeys := os.Getenv("PROVER_CIRCUITS"), os.Getenv("PROVER_ZKEYS")
	if circuits == "" {
		circuits = filepath.Join("..", "..", "circuits", "build")
	}
	if zkeys == "" {
		zkeys = filepath.Join("..", "..", "zkeys")
	}
	inputs := filepath.Join(filepath.Dir(circuits), "inputs")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	out, errOut, err := runCmd(ctx, map[string]string{"PROVER_CIRCUITS": circuits, "PROVER_ZKEYS": zkeys, "PROVER_INPUTS": inputs},
		"demo", "--log-level", "warn")
	if err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out, errOut)
	}
	for _, want := range []string{"register_demo", "dsc_demo", "disclose_demo", "All 3 proofs generated by the fleet and verified"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// One summary row per circuit, each verified.
	rows := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 9 && strings.HasSuffix(f[0], "_demo") {
			rows++
			if f[8] != "yes" {
				t.Errorf("summary row not verified: %s", line)
			}
		}
	}
	if rows != 3 {
		t.Errorf("%d summary rows, want 3:\n%s", rows, out)
	}
	// Each request was followed on the status relay, through to the 4 the
	// demo wrote as the downstream verifier.
	for _, c := range []string{"register_demo", "dsc_demo", "disclose_demo"} {
		var relayed []string
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, c+" (") {
				if _, note, ok := strings.Cut(line, "relay "); ok {
					relayed = append(relayed, note)
				}
			}
		}
		// The first is the status when the demo subscribed (0, or 1 when
		// the witness was quicker).
		if len(relayed) < 2 || relayed[len(relayed)-1] != "4" || relayed[len(relayed)-2] != "2" {
			t.Errorf("%s: relay events %q, want ... 2 4:\n%s", c, relayed, out)
		}
	}
	if strings.Contains(errOut, "level=ERROR") {
		t.Errorf("the demo logged errors:\n%s", errOut)
	}
}

// TestSubmitConfidentialSpace: against a fleet signing Confidential Space
// tokens, submit verifies them by the flags of that format and refuses
// what they do not allow.
func TestSubmitConfidentialSpace(t *testing.T) {
	t.Parallel()
	circuits, zkeys := fakeCircuit(t, "register_x")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	fleet, err := devfleet.Start(ctx, devfleet.Config{
		DatabaseURL: stacktest.PostgresURL(t), CircuitDir: circuits, ZkeyDir: zkeys,
		Families: []family.Family{family.Register}, NoWorkers: true, Attester: devfleet.AttesterDevGCP,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fleet.Stop(context.Background()) })
	env := map[string]string{"PROVER_URL": fleet.WSURL(), "PROVER_ROOT_PEM": fleet.RootPEMPath()}
	digest := fleet.ImageDigest()
	other := "sha256:" + strings.Repeat("0", 64)

	for _, tc := range []struct {
		name string
		args []string
		want string // "" for success
	}{
		{"auto with the image digest", []string{"--image-digest", digest, "--allow-debug"}, ""},
		{"gcp with any image, compressed key", []string{"--attestation", "gcp", "--insecure-any-image", "--allow-debug", "--compressed-key"}, ""},
		{"debug image refused", []string{"--image-digest", digest}, "debug image"},
		{"another image", []string{"--image-digest", other, "--allow-debug"}, "image digest not allowed"},
		{"Google's root", []string{"--image-digest", digest, "--allow-debug", "--root-pem", ""}, "not a pinned root"},
		{"nitro only", []string{"--attestation", "nitro", "--insecure-any-pcr0"}, "not set up to verify"},
		{"auto without a policy", nil, "--attestation auto needs the policy of a format"},
		{"gcp without a digest", []string{"--attestation", "gcp"}, "--image-digest is required"},
		{"bad format", []string{"--attestation", "tpm", "--insecure-any-image"}, "--attestation must be gcp, nitro or auto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"submit", "--type", "register", "--circuit", "register_x", "--inputs", "testdata/inputs.json"}, tc.args...)
			out, _, err := runCmd(ctx, env, args...)
			if tc.want == "" {
				var submitted map[string]string
				if err != nil || json.Unmarshal([]byte(out), &submitted) != nil || submitted["uuid"] == "" {
					t.Fatalf("submit: %q, %v", out, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

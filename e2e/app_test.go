package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/internal/devfleet"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/worker/service"
)

// appEvent is one line of e2e/app/app.mjs.
type appEvent struct {
	Event          string `json:"event"`
	Circuit        string `json:"circuit"`
	UUID           string `json:"uuid"`
	KeyBytes       int    `json:"keyBytes"`
	Format         string `json:"format"`
	ServerKeyBytes int    `json:"serverKeyBytes"`
	ImageHash      string `json:"imageHash"`
	Attestation    string `json:"attestation"`
	ClientKey      string `json:"clientKey"`
	Type           string `json:"type"`
	Status         int    `json:"status"`
	Via            string `json:"via"`
	Message        string `json:"message"`
}

// appRequest is one request of app.mjs's config.
type appRequest struct {
	CircuitType  string `json:"circuitType"`
	Circuit      string `json:"circuit"`
	InputsFile   string `json:"inputsFile"`
	EndpointType string `json:"endpointType"`
	Endpoint     string `json:"endpoint"`
}

// appDir is the npm project of the app's client libraries, installed by
// scripts/deps.sh (npm ci).
const appDir = "app"

// runApp runs app.mjs with cfg; rootPEM, when set, is pinned in place of
// Google's root. It returns the events and the error of the run.
func runApp(t *testing.T, cfg map[string]any, rootPEM string) ([]appEvent, string, error) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("the app's client code needs Node.js (`node` on PATH); scripts/deps.sh installs it")
	}
	if _, err := os.Stat(filepath.Join(appDir, "node_modules", "@selfxyz", "common", "package.json")); err != nil {
		t.Fatalf("e2e/app's npm packages are not installed (run scripts/deps.sh, or npm ci --prefix e2e/app): %v", err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--import", "./pin-root.mjs", "app.mjs", path)
	cmd.Dir = appDir
	cmd.Env = append(os.Environ(), "DEV_ROOT_PEM="+rootPEM)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var events []appEvent
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev appEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("app.mjs printed %q: %v", sc.Text(), err)
		}
		line := sc.Text()
		if len(line) > 300 {
			line = line[:300] + "..."
		}
		t.Logf("app: %s", line)
		events = append(events, ev)
	}
	return events, stderr.String(), runErr
}

// TestAppClient proves each family's demo circuit the way the phone app
// does, with the app's own published client code (e2e/app: @selfxyz/common
// 0.0.9 and socket.io-client): in the current app's format (a Confidential
// Space token checked by the published validatePKIToken with the
// development root pinned in place of Google's, a compressed key, submit id
// 2) and in the Nitro era's (a COSE document read as that app read it, an
// uncompressed key, submit id 1). Each proof must reach status 2 and verify.
func TestAppClient(t *testing.T) {
	e := fleet(t) // the paths, and the shared Nitro-format fleet
	for _, format := range []string{"gcp", "nitro"} {
		t.Run(format, func(t *testing.T) {
			f := e.fleet
			if format == "gcp" {
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
				defer cancel()
				var err error
				f, err = devfleet.Start(ctx, devfleet.Config{
					CircuitDir: e.circuits, ZkeyDir: e.zkeys, Attester: devfleet.AttesterDevGCP,
					Worker: service.Config{ProverMode: service.ProverNative, NativeTables: true, KeyCacheBytes: 512 << 20},
				})
				if err != nil {
					t.Fatal(err)
				}
				defer func() {
					sctx, scancel := context.WithTimeout(t.Context(), 2*time.Minute)
					defer scancel()
					if err := f.Stop(sctx); err != nil {
						t.Errorf("stop: %v", err)
					}
				}()
			}
			var reqs []appRequest
			for _, d := range demos() {
				inputs, err := filepath.Abs(filepath.Join(e.inputs, d.circuit+".json"))
				if err != nil {
					t.Fatal(err)
				}
				endpointType := d.endpointType
				if endpointType == "" {
					endpointType = "staging_celo"
				}
				reqs = append(reqs, appRequest{CircuitType: string(d.typ.Family()), Circuit: d.circuit, InputsFile: inputs,
					EndpointType: endpointType, Endpoint: d.endpoint})
			}
			cfg := map[string]any{
				"frontend": f.WSURL(), "http": f.HTTPURL(), "relay": f.StatusURL(), "until": 4, "format": format,
				"imageDigest": f.ImageDigest(), "timeoutMs": 8 * 60 * 1000, "mode": "prove", "requests": reqs,
			}
			root := ""
			if format == "gcp" {
				root, _ = filepath.Abs(f.RootPEMPath())
			}
			stopVerifier := standInVerifier(t, f)
			events, stderr, err := runApp(t, cfg, root)
			stopVerifier()
			if err != nil {
				t.Fatalf("app.mjs: %v\n%s", err, stderr)
			}
			checkAppRun(t, e, f, format, events)

			if format == "gcp" {
				// Without the development root pinned, the app's check
				// refuses the token: its root is not Google's.
				cfg["mode"] = "hello"
				events, _, err := runApp(t, cfg, "")
				if err == nil || len(events) == 0 || !strings.Contains(events[len(events)-1].Message, "Root certificate does not match expected root") {
					t.Fatalf("a token under the development root passed the app's check with Google's root pinned: %v %+v", err, events)
				}
			}
		})
	}
}

// standInVerifier plays the downstream verifier, which is not part of the
// fleet: it writes status 4 straight into the proofs table for every row
// the fleet proved (status 2) since it started, as that verifier does,
// until stop is called. The app learns of the 4 only through the status
// relay's LISTEN connection.
func standInVerifier(t *testing.T, f *devfleet.Fleet) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	var since time.Time
	if err := f.Pool().QueryRow(ctx, `SELECT now()`).Scan(&since); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		for {
			if _, err := f.Pool().Exec(ctx, `UPDATE proofs SET status = 4 WHERE status = 2 AND created_at >= $1`, since); err != nil && ctx.Err() == nil {
				t.Errorf("stand-in verifier: %v", err)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// checkAppRun checks what app.mjs reported: per circuit a hello with the
// era's key size, an attestation in the fleet's format binding the server
// key in the era's encoding, a submit, statuses up to 2 and then the
// verifier's 4, on the status relay (Socket.IO), and a proof in the proofs
// table that verifies.
func checkAppRun(t *testing.T, e *env, f *devfleet.Fleet, format string, events []appEvent) {
	t.Helper()
	keyBytes, serverKeyBytes := 33, 33
	if format == "nitro" {
		keyBytes, serverKeyBytes = 65, 65
	}
	byCircuit, circuitOf := map[string][]appEvent{}, map[string]string{}
	for _, ev := range events {
		if ev.Circuit != "" {
			circuitOf[ev.UUID] = ev.Circuit
		}
		c := circuitOf[ev.UUID] // status events name the uuid only
		byCircuit[c] = append(byCircuit[c], ev)
	}
	for _, d := range demos() {
		evs := byCircuit[d.circuit]
		var steps []string
		var id, payloadType string
		statuses := map[int]bool{}
		for _, ev := range evs {
			steps = append(steps, ev.Event)
			switch ev.Event {
			case "hello":
				if ev.KeyBytes != keyBytes {
					t.Errorf("%s: hello sent a %d-byte key, want %d", d.circuit, ev.KeyBytes, keyBytes)
				}
			case "attested":
				if ev.Format != format || ev.ServerKeyBytes != serverKeyBytes {
					t.Errorf("%s: attested %+v", d.circuit, ev)
				}
				switch format {
				case "gcp":
					if "sha256:"+ev.ImageHash != f.ImageDigest() {
						t.Errorf("%s: image hash %s, want %s", d.circuit, ev.ImageHash, f.ImageDigest())
					}
				case "nitro":
					// The document's chain and signature, by the project's
					// verifier (the package no longer ships the app's).
					doc, err := base64.StdEncoding.DecodeString(ev.Attestation)
					if err != nil {
						t.Fatal(err)
					}
					key, err := hex.DecodeString(ev.ClientKey)
					if err != nil {
						t.Fatal(err)
					}
					v, err := f.NewVerifier()
					if err != nil {
						t.Fatal(err)
					}
					if _, err := v.Verify(doc, key); err != nil {
						t.Errorf("%s: the document the app read does not verify: %v", d.circuit, err)
					}
				}
			case "submitted":
				id, payloadType = ev.UUID, ev.Type
			case "status":
				statuses[ev.Status] = true
				if ev.Via != "socket.io" {
					t.Errorf("%s: status %d came over %q, want the Socket.IO relay", d.circuit, ev.Status, ev.Via)
				}
			case "done":
				if ev.Status != 4 {
					t.Errorf("%s: done with status %d, want the verifier's 4", d.circuit, ev.Status)
				}
			}
		}
		if !statuses[4] || len(steps) < 5 || steps[0] != "hello" || steps[1] != "attested" || steps[2] != "submitted" || steps[len(steps)-1] != "done" {
			t.Fatalf("%s: steps %v, statuses %v", d.circuit, steps, statuses)
		}
		st, err := f.Store().Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if int(st.Status) != 4 || string(st.ProofType) != payloadType || family.ProofType(payloadType).Family() != d.typ.Family() {
			t.Fatalf("%s: row status %d type %q (the app's payload type %q)", d.circuit, st.Status, st.ProofType, payloadType)
		}
		vkeyJSON, err := os.ReadFile(filepath.Join(e.zkeys, d.circuit+".vkey.json"))
		if err != nil {
			t.Fatal(err)
		}
		vk, err := groth16.ParseVerifyingKey(vkeyJSON)
		if err != nil {
			t.Fatal(err)
		}
		public, err := json.Marshal(st.PublicInputs)
		if err != nil {
			t.Fatal(err)
		}
		if err := vk.VerifyJSON(st.Proof, public); err != nil {
			t.Errorf("%s: the proof does not verify: %v", d.circuit, err)
		}
	}
}

package e2e_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/status"
)

// readInputs reads a demo circuit's sample input object.
func (e *env) readInputs(t *testing.T, circuit string) json.RawMessage {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.inputs, circuit+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestProofPerFamily submits one request per family through the frontend
// over a WebSocket, as the app does, and checks that each ends in status 2
// with a proof that both the native verifier and `snarkjs groth16 verify`
// accept, and that openpassport_status and GET /v1/proofs/{uuid} agree.
func TestProofPerFamily(t *testing.T) {
	e := fleet(t)
	for _, d := range demos() {
		t.Run(d.circuit, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
			defer cancel()
			verifier, err := e.fleet.NewVerifier()
			if err != nil {
				t.Fatal(err)
			}
			c, err := client.Dial(ctx, e.fleet.WSURL(), client.Options{Verifier: verifier})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var seen []int
			id, err := c.Submit(ctx, client.Request{
				Type: d.typ, Circuit: d.circuit, Inputs: e.readInputs(t, d.circuit), Onchain: true,
				EndpointType: d.endpointType, Endpoint: d.endpoint,
			}, nil)
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			st, err := c.Wait(ctx, id, func(ev client.Event) {
				if ev.Stage == client.StageStatus {
					seen = append(seen, int(ev.Status.Status))
				}
			})
			if err != nil {
				t.Fatalf("wait: %v", err)
			}
			if st.Status != status.ProofGenerated {
				reason := ""
				if st.Reason != nil {
					reason = *st.Reason
				}
				t.Fatalf("final status %d (%s), want 2; statuses seen %v", st.Status, reason, seen)
			}
			if st.UUID != id || st.CircuitName != d.circuit || st.ProofType != d.typ.Code() {
				t.Errorf("status names uuid %s circuit %s type %d, want %s %s %d", st.UUID, st.CircuitName, st.ProofType, id, d.circuit, d.typ.Code())
			}
			if st.WitnessGeneratedAt == nil || st.ProofGeneratedAt == nil || st.ProofGeneratedAt.Before(*st.WitnessGeneratedAt) ||
				st.WitnessGeneratedAt.Before(st.CreatedAt) {
				t.Errorf("timestamps out of order: created %v witness %v proof %v", st.CreatedAt, st.WitnessGeneratedAt, st.ProofGeneratedAt)
			}

			// The native verifier.
			vkeyPath := filepath.Join(e.zkeys, d.circuit+".vkey.json")
			vkeyJSON, err := os.ReadFile(vkeyPath)
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
				t.Errorf("native verifier rejects the proof: %v", err)
			}
			// snarkjs, the reference.
			dir := t.TempDir()
			proofPath, publicPath := filepath.Join(dir, "proof.json"), filepath.Join(dir, "public.json")
			if err := os.WriteFile(proofPath, st.Proof, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(publicPath, public, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.CommandContext(ctx, e.snarkjs, "groth16", "verify", vkeyPath, publicPath, proofPath).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "OK!") {
				t.Errorf("snarkjs groth16 verify rejects the proof: %v\n%s", err, out)
			}

			// openpassport_status (over the WebSocket and over HTTP POST) and
			// GET /v1/proofs/{uuid} tell the same story.
			viaWS, err := c.Status(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			hc, err := client.Dial(ctx, e.fleet.HTTPURL(), client.Options{})
			if err != nil {
				t.Fatal(err)
			}
			viaPOST, err := hc.Status(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.Get(e.fleet.HTTPURL() + "v1/proofs/" + id)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /v1/proofs/%s: %d %s", id, resp.StatusCode, body)
			}
			var viaGET protocol.Status
			if err := json.Unmarshal(body, &viaGET); err != nil {
				t.Fatalf("GET /v1/proofs/%s: %v: %s", id, err, body)
			}
			for name, got := range map[string]protocol.Status{"status over POST": viaPOST, "GET /v1/proofs": viaGET} {
				if !sameStatus(viaWS, got) {
					t.Errorf("%s differs from openpassport_status over the WebSocket:\n ws:  %+v\n got: %+v", name, viaWS, got)
				}
			}
			if !sameStatus(viaWS, st) {
				t.Errorf("openpassport_status differs from the status Wait returned:\n status: %+v\n wait:   %+v", viaWS, st)
			}
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(body, &keys); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"uuid", "status", "proof_type", "circuit_name", "created_at", "witness_generated_at",
				"proof_generated_at", "proof", "public_inputs", "reason"} {
				if _, ok := keys[k]; !ok {
					t.Errorf("GET /v1/proofs/%s lacks %q: %s", id, k, body)
				}
			}
		})
	}
}

// sameStatus compares two status reports, the proof as JSON values and the
// times as instants.
func sameStatus(a, b protocol.Status) bool {
	norm := func(s protocol.Status) protocol.Status {
		if len(s.Proof) > 0 {
			var v any
			if json.Unmarshal(s.Proof, &v) == nil {
				s.Proof, _ = json.Marshal(v)
			}
		}
		s.CreatedAt = s.CreatedAt.UTC()
		if s.WitnessGeneratedAt != nil {
			t := s.WitnessGeneratedAt.UTC()
			s.WitnessGeneratedAt = &t
		}
		if s.ProofGeneratedAt != nil {
			t := s.ProofGeneratedAt.UTC()
			s.ProofGeneratedAt = &t
		}
		return s
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// TestLogsHoldNoSecrets runs a proof end to end with the fleet logging at
// debug level into a buffer (issue 5), doing the app's handshake by hand so
// that the test knows every secret, then checks that no log line holds a
// circuit input value, the plaintext request, the shared key, the client's
// private key or the fleet job key.
func TestLogsHoldNoSecrets(t *testing.T) {
	e := fleet(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	d := demos()[2] // disclose_demo: personal data in its inputs (birth date, document number)
	inputs := e.readInputs(t, d.circuit)

	verifier, err := e.fleet.NewVerifier()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, e.fleet.WSURL(), client.Options{Verifier: verifier})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// The app's handshake, step by step.
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.PublicKey().Bytes()
	id := uuid.NewString()
	hello, err := c.Hello(ctx, id, pub)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := verifier.Verify(hello.Attestation, pub)
	if err != nil {
		t.Fatalf("attestation: %v", err)
	}
	serverKey, err := ecdh.P256().NewPublicKey(doc.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := priv.ECDH(serverKey) // the X coordinate: the AES-256-GCM key, no KDF
	if err != nil {
		t.Fatal(err)
	}
	plain, err := json.Marshal(map[string]any{
		"type": string(d.typ), "onchain": true, "endpointType": d.endpointType, "endpoint": d.endpoint,
		"userDefinedData": "", "selfDefinedData": "", "version": 1,
		"circuit": map[string]string{"name": d.circuit, "inputs": string(inputs)},
	})
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(shared)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	sealed := gcm.Seal(nil, nonce, plain, nil)
	ct, tag := sealed[:len(sealed)-16], sealed[len(sealed)-16:]
	got, err := c.SubmitEncrypted(ctx, protocol.SubmitParams{UUID: hello.UUID, Nonce: nonce, CipherText: ct, AuthTag: tag})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	st, err := c.Wait(ctx, got, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != status.ProofGenerated {
		t.Fatalf("final status %d, want 2 (the log check needs a full run)", st.Status)
	}

	logs := e.logs.String()
	// The check must not pass vacuously: debug lines were written, and this
	// request was logged by the frontend and by a worker.
	if !strings.Contains(logs, `"level":"DEBUG"`) {
		t.Fatal("no debug-level line in the fleet's logs: the logger is not at debug level")
	}
	if n := strings.Count(logs, got); n < 2 {
		t.Fatalf("the request id appears %d times in the logs; expected the frontend and the worker to log it", n)
	}

	secrets := map[string]string{}
	for _, v := range distinctiveValues(inputs, st.PublicInputs) {
		secrets["circuit input value "+v] = v
	}
	if len(secrets) < 3 {
		t.Fatalf("only %d distinctive input values to look for in %s", len(secrets), d.circuit)
	}
	secrets["plaintext request"] = string(plain)
	secrets["circuit inputs as sent"] = string(inputs)
	quoted := mustJSONString(string(inputs))
	secrets["circuit inputs JSON-quoted"] = quoted[1:min(len(quoted)-1, 80)]
	addBytes := func(name string, b []byte) {
		secrets[name+" (hex)"] = hex.EncodeToString(b)
		secrets[name+" (HEX)"] = strings.ToUpper(hex.EncodeToString(b))
		secrets[name+" (base64)"] = base64.StdEncoding.EncodeToString(b)
		secrets[name+" (base64url)"] = base64.RawURLEncoding.EncodeToString(b)
		secrets[name+" (JSON bytes)"] = strings.Trim(mustJSONBytes(b), "[]")
	}
	addBytes("shared key", shared)
	addBytes("client private key", priv.Bytes())
	key, err := os.ReadFile(e.fleet.JobKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(key)))
	if err != nil {
		t.Fatal(err)
	}
	addBytes("fleet job key", raw)

	names := make([]string, 0, len(secrets))
	for name := range secrets {
		names = append(names, name)
	}
	sort.Strings(names)
	lines := strings.Split(logs, "\n")
	for _, name := range names {
		for i, line := range lines {
			if strings.Contains(line, secrets[name]) {
				t.Errorf("log line %d holds the %s: %.300s", i+1, name, line)
				break
			}
		}
	}
	t.Logf("checked %d log lines (%d bytes) for %d secrets", len(lines), len(logs), len(secrets))
}

// distinctiveValues returns the input's scalar values that are long enough
// not to occur by chance (8 characters or more), leaving out those that are
// public signals of the proof (public by design).
func distinctiveValues(inputs []byte, public []string) []string {
	var v any
	if err := json.Unmarshal(inputs, &v); err != nil {
		return nil
	}
	isPublic := map[string]bool{}
	for _, p := range public {
		isPublic[p] = true
	}
	seen := map[string]bool{}
	var out []string
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		case string:
			if len(x) >= 8 && !isPublic[x] && !seen[x] {
				seen[x] = true
				out = append(out, x)
			}
		case json.Number:
			walk(x.String())
		}
	}
	walk(v)
	sort.Strings(out)
	return out
}

func mustJSONString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// mustJSONBytes writes b as the protocol writes bytes: a JSON array of
// integers.
func mustJSONBytes(b []byte) string {
	ints := make([]int, len(b))
	for i, c := range b {
		ints[i] = int(c)
	}
	out, _ := json.Marshal(ints)
	return string(out)
}

// TestWorkDirClean checks, once the requests above are settled, that no
// per-job directory is left in the workers' work dir and that no file there
// holds an input value (issue 3: temp directories are always removed).
func TestWorkDirClean(t *testing.T) {
	e := fleet(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// Wait until no job is in flight.
	for {
		busy := 0
		for _, w := range e.fleet.Workers() {
			busy += w.Service().Running()
		}
		backlogs, err := e.fleet.Backlogs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range backlogs {
			busy += int(b.Pending) + b.AckPending
		}
		if busy == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("jobs still in flight: %d", busy)
		case <-time.After(100 * time.Millisecond):
		}
	}

	var values []string
	for _, d := range demos() {
		values = append(values, distinctiveValues(e.readInputs(t, d.circuit), nil)...)
	}
	var files, dirs int
	err := filepath.WalkDir(e.fleet.WorkDir(), func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			dirs++
			if strings.HasPrefix(de.Name(), "job-") {
				t.Errorf("per-job directory left behind: %s", path)
			}
			return nil
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, v := range values {
			if bytes.Contains(data, []byte(v)) {
				t.Errorf("%s holds the input value %s", path, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", e.fleet.WorkDir(), err)
	}
	t.Logf("work dir %s: %d directories, %d files (lock files of the running pools)", e.fleet.WorkDir(), dirs, files)
	if dirs < 1 {
		t.Errorf("work dir %s is empty: the workers did not use it", e.fleet.WorkDir())
	}
}

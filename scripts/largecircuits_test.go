package scripts_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/groth16/r1cs"
	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
)

// tinyCatalogue has the shapes of the large circuits (gen-large.js's
// catalogue) at sizes that build in seconds: one RSA-shaped and one
// Schnorr-shaped circuit, each filling a small power of two.
var tinyCatalogue = map[string]map[string]any{
	"register_tiny_rsa_14":     {"power": 14, "sig": "rsa", "n": 32, "k": 4, "bits": 120, "nSigs": 1, "depth": 4},
	"register_tiny_schnorr_13": {"power": 13, "sig": "schnorr", "nSigs": 1, "depth": 4},
}

// TestLargeCircuits runs scripts/build-large-circuits.sh, as `make
// circuits-large` does, on tiny instances of the large circuits: circom2, the
// C++ witness generator, the generated input, zkeygen. The build itself checks
// that the compiled constraint count equals gen-large.js's model and that the
// witness generator accepts the input; the test then checks that the circuit
// fills its power of two, that a tampered input is rejected, and that the
// development key proves (the project's prover and snarkjs) and verifies (the
// project's verifier and snarkjs).
func TestLargeCircuits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds circuits (circom2, g++); not under -short")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// circom2 (WebAssembly) reaches only files below the working
	// directory's ancestors, so everything stays in temporary directories.
	dir := t.TempDir()
	out, zkeys := filepath.Join(dir, "build"), filepath.Join(dir, "zkeys")
	cat, _ := json.Marshal(tinyCatalogue)
	catFile := filepath.Join(dir, "catalogue.json")
	if err := os.WriteFile(catFile, cat, 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "LARGE_CATALOGUE="+catFile, "ZKEYGEN="+filepath.Join(dir, "zkeygen"), "CIRCUITS=")

	build := exec.CommandContext(t.Context(), "bash", filepath.Join(root, "scripts", "build-large-circuits.sh"), out, zkeys)
	build.Dir = root
	build.Env = env
	b, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("build-large-circuits.sh: %v\n%s", err, b)
	}
	// Its summary lists every circuit.
	for name := range tinyCatalogue {
		if !regexp.MustCompile(`(?m)^` + name + ` +\d+ `).Match(b) {
			t.Errorf("the summary has no row for %s:\n%s", name, b)
		}
	}

	for name, p := range tinyCatalogue {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			sys, err := r1cs.ReadFile(ctx, filepath.Join(out, name+".r1cs"))
			if err != nil {
				t.Fatal(err)
			}
			power := int(p["power"].(int))
			limit := 1<<power - sys.NPublic() - 1
			if n := len(sys.Constraints); n > limit || n < limit-488 {
				t.Errorf("%d constraints, want within one chunk (488) below %d (2^%d − public signals − 1)", n, limit, power)
			}
			if sys.NPublic() != 4 {
				t.Errorf("%d public signals, want 4", sys.NPublic())
			}

			gen := filepath.Join(out, name+"_cpp", name)
			wtnsFile := filepath.Join(t.TempDir(), "w.wtns")
			if b, err := exec.CommandContext(ctx, gen, filepath.Join(out, "inputs", name+".json"), wtnsFile).CombinedOutput(); err != nil {
				t.Fatalf("the witness generator rejects the generated input: %v\n%s", err, b)
			}

			// A changed signed byte: the generator must refuse the input.
			bad := filepath.Join(t.TempDir(), "bad.json")
			cmd := exec.CommandContext(ctx, "node", filepath.Join(root, "circuits", "scripts", "gen-large.js"), "inputs", name, "--bad", "--out", bad)
			cmd.Env = env
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("gen-large.js inputs --bad: %v\n%s", err, b)
			}
			if b, err := exec.CommandContext(ctx, gen, bad, filepath.Join(t.TempDir(), "bad.wtns")).CombinedOutput(); err == nil {
				t.Fatalf("the witness generator accepts an input with a broken signature:\n%s", b)
			}

			proveAndVerify(ctx, t, root, filepath.Join(zkeys, name+".zkey"), filepath.Join(zkeys, name+".vkey.json"), wtnsFile)
		})
	}
}

// proveAndVerify proves wtnsFile with the project's prover and with snarkjs
// and checks both proofs with the project's verifier and snarkjs.
func proveAndVerify(ctx context.Context, t *testing.T, root, zkey, vkey, wtnsFile string) {
	t.Helper()
	pk, err := groth16.LoadProvingKey(ctx, zkey)
	if err != nil {
		t.Fatal(err)
	}
	w, err := wtns.ReadFile(ctx, wtnsFile)
	if err != nil {
		t.Fatal(err)
	}
	proof, public, err := groth16.Prove(ctx, pk, w)
	if err != nil {
		t.Fatal(err)
	}
	vkJSON, err := os.ReadFile(vkey)
	if err != nil {
		t.Fatal(err)
	}
	vk, err := groth16.ParseVerifyingKey(vkJSON)
	if err != nil {
		t.Fatal(err)
	}
	if err := vk.Verify(proof, public); err != nil {
		t.Fatalf("the project's verifier rejects the project's proof: %v", err)
	}
	dir := t.TempDir()
	proofJSON, _ := proof.MarshalJSON()
	publicJSON, _ := public.MarshalJSON()
	ours, ourPublic := filepath.Join(dir, "ours.proof.json"), filepath.Join(dir, "ours.public.json")
	if err := os.WriteFile(ours, proofJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ourPublic, publicJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	snarkjs := filepath.Join(root, "circuits", "node_modules", ".bin", "snarkjs")
	theirs, theirPublic := filepath.Join(dir, "snarkjs.proof.json"), filepath.Join(dir, "snarkjs.public.json")
	if b, err := exec.CommandContext(ctx, snarkjs, "groth16", "prove", zkey, wtnsFile, theirs, theirPublic).CombinedOutput(); err != nil {
		t.Fatalf("snarkjs groth16 prove with the zkeygen key: %v\n%s", err, b)
	}
	for _, pair := range [][2]string{{ours, ourPublic}, {theirs, theirPublic}} {
		b, err := exec.CommandContext(ctx, snarkjs, "groth16", "verify", vkey, pair[1], pair[0]).CombinedOutput()
		if err != nil || !strings.Contains(string(b), "OK") {
			t.Fatalf("snarkjs groth16 verify %s: %v\n%s", filepath.Base(pair[0]), err, b)
		}
	}
	pj, err := os.ReadFile(theirs)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(theirPublic)
	if err != nil {
		t.Fatal(err)
	}
	if err := vk.VerifyJSON(pj, pub); err != nil {
		t.Fatalf("the project's verifier rejects snarkjs's proof: %v", err)
	}
	if string(normalise(t, pub)) != string(normalise(t, publicJSON)) {
		t.Fatalf("public signals differ: snarkjs %s, ours %s", pub, publicJSON)
	}
}

func normalise(t *testing.T, b []byte) []byte {
	t.Helper()
	var v []string
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for i := range v {
		if _, err := strconv.ParseUint(v[i][:1], 10, 8); err != nil {
			t.Fatalf("public signal %q is not decimal", v[i])
		}
	}
	out, _ := json.Marshal(v)
	return out
}

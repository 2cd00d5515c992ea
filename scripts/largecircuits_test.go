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
	// CPP_OPT=-O0: these generators run for milliseconds, so build them cheaply.
	env := append(os.Environ(), "LARGE_CATALOGUE="+catFile, "ZKEYGEN="+filepath.Join(dir, "zkeygen"), "CIRCUITS=", "CPP_OPT=-O0")

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

// TestLargeCircuitModel compiles (r1cs only) tiny instances of several shapes
// and compares their constraint counts with gen-large.js's model, which is
// what sizes the catalogue's circuits to their powers of two.
func TestLargeCircuitModel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs circom2; not under -short")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		params string
	}{
		{"rsa two signatures", `{"sig":"rsa","n":64,"k":6,"bits":380,"nSigs":2,"depth":5,"nChunks":4}`},
		{"rsa odd key packing", `{"sig":"rsa","n":40,"k":5,"bits":190,"nSigs":1,"depth":3,"nChunks":9}`},
		{"schnorr", `{"sig":"schnorr","nSigs":3,"depth":2,"nChunks":5}`},
		// --O1 keeps linear constraints; its model is a measured point plus a slope.
		{"rsa O1", `{"sig":"rsa","n":32,"k":4,"bits":120,"nSigs":1,"depth":4,"nChunks":11,"opt":1,"calib":{"nChunks":3,"constraints":16087}}`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			// circom2 (WebAssembly) reaches only files below the working
			// directory's ancestors; t.TempDir is under /tmp, which is one.
			dir := t.TempDir()
			name := "model_" + strconv.Itoa(i)
			gen := func(args ...string) []byte {
				t.Helper()
				b, err := exec.CommandContext(ctx, "node", append([]string{filepath.Join(root, "circuits", "scripts", "gen-large.js")}, args...)...).Output()
				if err != nil {
					t.Fatalf("gen-large.js %v: %v", args[0], err)
				}
				return b
			}
			var info struct {
				Constraints int `json:"constraints"`
				Opt         int `json:"opt"`
			}
			if err := json.Unmarshal(gen("info", tt.params), &info); err != nil {
				t.Fatal(err)
			}
			main := filepath.Join(dir, name+".circom")
			gen("main", tt.params, "--out", main)
			opt := "--O2"
			if info.Opt == 1 {
				opt = "--O1"
			}
			cmd := exec.CommandContext(ctx, filepath.Join(root, "circuits", "node_modules", ".bin", "circom2"), main, "--r1cs", opt,
				"-l", filepath.Join(root, "circuits", "large"), "-l", filepath.Join(root, "circuits", "src"),
				"-l", filepath.Join(root, "circuits", "node_modules"), "-o", dir)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("circom2: %v\n%s", err, out)
			}
			sys, err := r1cs.ReadFile(ctx, filepath.Join(dir, name+".r1cs"))
			if err != nil {
				t.Fatal(err)
			}
			if len(sys.Constraints) != info.Constraints {
				t.Fatalf("circom2 made %d constraints, the model says %d\n%s", len(sys.Constraints), info.Constraints, out)
			}
		})
	}
}

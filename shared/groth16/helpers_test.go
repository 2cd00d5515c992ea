package groth16

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	snarkjslookup "github.com/openpassport/prover-fleet/internal/snarkjs"
	"github.com/openpassport/prover-fleet/shared/groth16/r1cs"
	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
)

// Test vectors, see testdata/README.md.
const (
	tinyR1CS      = "testdata/tiny.r1cs"
	tinyWtns      = "testdata/tiny.wtns"
	snarkjsZkey   = "testdata/tiny_snarkjs.zkey"
	snarkjsVkey   = "testdata/tiny_snarkjs.vkey.json"
	snarkjsProof  = "testdata/tiny_snarkjs.proof.json"
	snarkjsPublic = "testdata/tiny_snarkjs.public.json"
	devZkey       = "testdata/tiny_dev.zkey"
	devVkey       = "testdata/tiny_dev.vkey.json"
	devSeed       = "prover-fleet tiny test"
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixture is what most tests need: the tiny circuit's witness and a
// proving key made by snarkjs.
type fixture struct {
	witness []fr.Element
	pk      *ProvingKey
	vk      *VerifyingKey // parsed from snarkjs's vkey.json
}

func setup(t testing.TB) fixture {
	t.Helper()
	ctx := t.Context()
	w, err := wtns.ReadFile(ctx, tinyWtns)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := LoadProvingKey(ctx, snarkjsZkey)
	if err != nil {
		t.Fatal(err)
	}
	vk, err := ParseVerifyingKey(readFile(t, snarkjsVkey))
	if err != nil {
		t.Fatal(err)
	}
	return fixture{witness: w, pk: pk, vk: vk}
}

func readTinyR1CS(t testing.TB) *r1cs.System {
	t.Helper()
	s, err := r1cs.ReadFile(t.Context(), tinyR1CS)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// snarkjs returns the path of the pinned snarkjs CLI (internal/snarkjs).
// Without it the test fails (it is part of the toolchain), except under
// -short where it skips.
func snarkjs(t *testing.T) string {
	t.Helper()
	p, err := snarkjslookup.Find("")
	if err != nil {
		if testing.Short() {
			t.Skipf("%v; skipped under -short", err)
		}
		t.Fatal(err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		if testing.Short() {
			t.Skip("node not installed; skipped under -short")
		}
		t.Fatalf("snarkjs needs node, which is not on PATH: %v", err)
	}
	return p
}

// runSnarkjs runs the snarkjs CLI in dir and fails the test on a non-zero
// exit, showing its output.
func runSnarkjs(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), snarkjs(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("snarkjs %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// snarkjsVerify reports whether "snarkjs groth16 verify" accepts the files.
func snarkjsVerify(t *testing.T, dir, vkey, public, proof string) bool {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), snarkjs(t), "groth16", "verify", vkey, public, proof)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	ok := err == nil && strings.Contains(string(out), "OK!")
	if !ok {
		t.Logf("snarkjs groth16 verify: %v\n%s", err, out)
	}
	return ok
}

func writeJSON(t *testing.T, path string, m interface{ MarshalJSON() ([]byte, error) }) {
	t.Helper()
	b, err := m.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeBytes(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }

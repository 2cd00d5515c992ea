package warm

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openpassport/prover-fleet/shared/groth16"
)

// The tiny circuit of shared/groth16's tests (its README says where it
// comes from).
const testdata = "../../../shared/groth16/testdata/"

func TestRunWarm(t *testing.T) {
	out := t.TempDir()
	var stdout strings.Builder
	err := Main(t.Context(), []string{testdata + "tiny_snarkjs.zkey", testdata + "tiny.wtns", out},
		strings.NewReader("prove\nprove\n"), &stdout)
	if err != nil {
		t.Fatal(err)
	}
	var lines []Line
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 3 || lines[0].LoadNS <= 0 || lines[1].ProveNS <= 0 || lines[2].ProveNS <= 0 {
		t.Fatalf("lines %+v: want a load and two proofs", lines)
	}
	vkJSON, err := os.ReadFile(testdata + "tiny_snarkjs.vkey.json")
	if err != nil {
		t.Fatal(err)
	}
	vk, err := groth16.ParseVerifyingKey(vkJSON)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := os.ReadFile(filepath.Join(out, "proof.json"))
	if err != nil {
		t.Fatal(err)
	}
	public, err := os.ReadFile(filepath.Join(out, "public.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := vk.VerifyJSON(proof, public); err != nil {
		t.Errorf("the warm prover's proof does not verify: %v", err)
	}
}

func TestMainErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"usage", []string{"a"}, "usage"},
		{"missing key", []string{testdata + "nope.zkey", testdata + "tiny.wtns", t.TempDir()}, "load proving key"},
		{"missing witness", []string{testdata + "tiny_snarkjs.zkey", testdata + "nope.wtns", t.TempDir()}, "read witness"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Main(t.Context(), tt.args, strings.NewReader("prove\n"), &strings.Builder{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Main error %v, want %q", err, tt.want)
			}
		})
	}
}

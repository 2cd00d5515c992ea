package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
)

const testdata = "../../shared/groth16/testdata/"

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeygen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	zk, vk := filepath.Join(dir, "tiny.zkey"), filepath.Join(dir, "tiny.vkey.json")
	var stderr bytes.Buffer
	args := []string{"-r1cs", testdata + "tiny.r1cs", "-zkey", zk, "-vkey", vk, "-seed", "prover-fleet tiny test"}
	if err := run(t.Context(), args, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "anyone who knows the seed can forge proofs") {
		t.Fatalf("no development-key warning on stderr: %q", stderr.String())
	}
	// Same seed as testdata's golden key: same bytes.
	if !bytes.Equal(readFile(t, zk), readFile(t, testdata+"tiny_dev.zkey")) {
		t.Fatal("zkey differs from the golden tiny_dev.zkey")
	}
	if !bytes.Equal(readFile(t, vk), readFile(t, testdata+"tiny_dev.vkey.json")) {
		t.Fatal("vkey differs from the golden tiny_dev.vkey.json")
	}
	// And it proves.
	ctx := t.Context()
	pk, err := groth16.LoadProvingKey(ctx, zk)
	if err != nil {
		t.Fatal(err)
	}
	w, err := wtns.ReadFile(ctx, testdata+"tiny.wtns")
	if err != nil {
		t.Fatal(err)
	}
	proof, public, err := groth16.Prove(ctx, pk, w)
	if err != nil {
		t.Fatal(err)
	}
	v, err := groth16.ParseVerifyingKey(readFile(t, vk))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(proof, public); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("directory holds %d entries, want the 2 outputs", len(ents))
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name  string
		args  []string
		usage bool
	}{
		{"no flags", nil, true},
		{"no seed", []string{"-r1cs", testdata + "tiny.r1cs", "-zkey", out("a"), "-vkey", out("b")}, true},
		{"empty seed", []string{"-r1cs", testdata + "tiny.r1cs", "-zkey", out("a"), "-vkey", out("b"), "-seed", ""}, true},
		{"no vkey", []string{"-r1cs", testdata + "tiny.r1cs", "-zkey", out("a"), "-seed", "s"}, true},
		{"unknown flag", []string{"-power", "12"}, true},
		{"stray argument", []string{"-r1cs", "x", "-zkey", "y", "-vkey", "z", "-seed", "s", "extra"}, true},
		{"missing r1cs", []string{"-r1cs", out("none.r1cs"), "-zkey", out("a"), "-vkey", out("b"), "-seed", "s"}, false},
		{"not an r1cs", []string{"-r1cs", testdata + "tiny.wtns", "-zkey", out("a"), "-vkey", out("b"), "-seed", "s"}, false},
		{"unwritable output", []string{"-r1cs", testdata + "tiny.r1cs", "-zkey", out("no/such/dir/a"), "-vkey", out("b"), "-seed", "s"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(t.Context(), tt.args, &bytes.Buffer{})
			if err == nil {
				t.Fatal("run succeeded")
			}
			if errors.Is(err, errUsage) != tt.usage {
				t.Fatalf("err = %v, usage error = %v", err, tt.usage)
			}
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("failed runs left %d files", len(ents))
	}
}

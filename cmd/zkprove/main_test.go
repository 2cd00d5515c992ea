package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
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

func TestProve(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	proofPath, publicPath := filepath.Join(dir, "proof.json"), filepath.Join(dir, "public.json")
	var stderr bytes.Buffer
	err := run(t.Context(), []string{testdata + "tiny_snarkjs.zkey", testdata + "tiny.wtns", proofPath, publicPath}, &stderr)
	if err != nil {
		t.Fatalf("run: %v (stderr %q)", err, stderr.String())
	}
	vk, err := groth16.ParseVerifyingKey(readFile(t, testdata+"tiny_snarkjs.vkey.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := vk.VerifyJSON(readFile(t, proofPath), readFile(t, publicPath)); err != nil {
		t.Fatal(err)
	}
	if got := string(readFile(t, publicPath)); got != `["185643","11"]` {
		t.Fatalf("public.json = %s", got)
	}
	assertOnly(t, dir, "proof.json", "public.json")
}

func TestErrors(t *testing.T) {
	t.Parallel()
	// A witness that does not satisfy the circuit.
	dir := t.TempDir()
	w, err := wtns.ReadFile(t.Context(), testdata+"tiny.wtns")
	if err != nil {
		t.Fatal(err)
	}
	w[3].SetUint64(8)
	var bad bytes.Buffer
	if err := wtns.Write(&bad, w); err != nil {
		t.Fatal(err)
	}
	badWtns := filepath.Join(dir, "bad.wtns")
	truncated := filepath.Join(dir, "truncated.zkey")
	zk := readFile(t, testdata+"tiny_snarkjs.zkey")
	for path, b := range map[string][]byte{badWtns: bad.Bytes(), truncated: zk[:len(zk)/2]} {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		args  []string
		want  error
		usage bool
	}{
		{"no arguments", nil, nil, true},
		{"three arguments", []string{"a", "b", "c"}, nil, true},
		{"missing zkey", []string{dir + "/none.zkey", testdata + "tiny.wtns"}, os.ErrNotExist, false},
		{"truncated zkey", []string{truncated, testdata + "tiny.wtns"}, nil, false},
		{"plonk zkey", []string{testdata + "tiny_plonk.zkey", testdata + "tiny.wtns"}, nil, false},
		{"missing witness", []string{testdata + "tiny_snarkjs.zkey", dir + "/none.wtns"}, os.ErrNotExist, false},
		{"zkey as witness", []string{testdata + "tiny_snarkjs.zkey", testdata + "tiny_snarkjs.zkey"}, wtns.ErrMalformed, false},
		{"unsatisfying witness", []string{testdata + "tiny_snarkjs.zkey", badWtns}, groth16.ErrUnsatisfied, false},
		{"witness for another circuit", []string{testdata + "tiny_snarkjs.zkey", writeOtherWitness(t, dir)}, groth16.ErrWitnessSize, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := t.TempDir()
			args := tt.args
			if !tt.usage {
				args = append(append([]string(nil), args...), filepath.Join(out, "proof.json"), filepath.Join(out, "public.json"))
			}
			err := run(t.Context(), args, &bytes.Buffer{})
			if err == nil {
				t.Fatal("run succeeded")
			}
			if tt.usage != errors.Is(err, errUsage) {
				t.Fatalf("err = %v, usage error = %v", err, tt.usage)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			assertOnly(t, out) // nothing written on failure
		})
	}
}

func TestCancelled(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := run(ctx, []string{testdata + "tiny_snarkjs.zkey", testdata + "tiny.wtns", out + "/p.json", out + "/q.json"}, &bytes.Buffer{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertOnly(t, out)
}

func writeOtherWitness(t *testing.T, dir string) string {
	t.Helper()
	w, err := wtns.ReadFile(t.Context(), testdata+"tiny.wtns")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := wtns.Write(&buf, w[:6]); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "other.wtns")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// assertOnly checks dir holds exactly the named files (no temporaries).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if len(got) != len(names) {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
	for i := range names {
		if got[i] != names[i] {
			t.Fatalf("%s holds %v, want %v", dir, got, names)
		}
	}
}

package groth16

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSnarkjsInterop is the cross-check against the reference
// implementation, on the tiny circuit with a key from our DevSetup:
//
//   - our keygen → our prover → our verifier and snarkjs's verifier
//   - our keygen → snarkjs prover → our verifier and snarkjs's verifier
//   - snarkjs exports the same vkey.json from our zkey as DevSetup returns
//   - a flipped public signal fails both verifiers
//
// It needs the pinned snarkjs (npm ci --prefix circuits) and fails without
// it, except under -short.
func TestSnarkjsInterop(t *testing.T) {
	snarkjs(t)
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	fx := setup(t)

	zk, vkJSON := devSetupBytes(t, readTinyR1CS(t), "interop")
	for name, b := range map[string][]byte{"dev.zkey": zk, "dev.vkey.json": vkJSON, "tiny.wtns": readFile(t, tinyWtns)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vk, err := ParseVerifyingKey(vkJSON)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("snarkjs exports our vkey", func(t *testing.T) {
		runSnarkjs(t, dir, "zkey", "export", "verificationkey", "dev.zkey", "exported.vkey.json")
		if got := readFile(t, filepath.Join(dir, "exported.vkey.json")); string(got) != string(vkJSON) {
			t.Fatalf("snarkjs exported\n%s\nwe wrote\n%s", got, vkJSON)
		}
	})

	t.Run("our prover, both verifiers", func(t *testing.T) {
		pk, err := LoadProvingKey(ctx, filepath.Join(dir, "dev.zkey"))
		if err != nil {
			t.Fatal(err)
		}
		proof, public, err := Prove(ctx, pk, fx.witness)
		if err != nil {
			t.Fatal(err)
		}
		if err := vk.Verify(proof, public); err != nil {
			t.Fatal(err)
		}
		writeJSON(t, filepath.Join(dir, "ours.proof.json"), proof)
		writeJSON(t, filepath.Join(dir, "ours.public.json"), public)
		if !snarkjsVerify(t, dir, "dev.vkey.json", "ours.public.json", "ours.proof.json") {
			t.Fatal("snarkjs rejects our proof")
		}
		if err := os.WriteFile(filepath.Join(dir, "flipped.public.json"), []byte(`["185644","11"]`), 0o644); err != nil {
			t.Fatal(err)
		}
		if snarkjsVerify(t, dir, "dev.vkey.json", "flipped.public.json", "ours.proof.json") {
			t.Fatal("snarkjs accepts our proof with a flipped public signal")
		}
	})

	t.Run("snarkjs prover, both verifiers", func(t *testing.T) {
		runSnarkjs(t, dir, "groth16", "prove", "dev.zkey", "tiny.wtns", "sj.proof.json", "sj.public.json")
		if err := vk.VerifyJSON(readFile(t, filepath.Join(dir, "sj.proof.json")), readFile(t, filepath.Join(dir, "sj.public.json"))); err != nil {
			t.Fatalf("our verifier rejects snarkjs's proof: %v", err)
		}
		if !snarkjsVerify(t, dir, "dev.vkey.json", "sj.public.json", "sj.proof.json") {
			t.Fatal("snarkjs rejects its own proof from our key")
		}
		if err := vk.VerifyJSON(readFile(t, filepath.Join(dir, "sj.proof.json")), []byte(`["185644","11"]`)); err == nil {
			t.Fatal("our verifier accepts snarkjs's proof with a flipped public signal")
		}
	})
}

package prover

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/worker/internal/keycache"
)

// The tiny circuit of shared/groth16's tests: a snarkjs key, its
// verifying key and a witness.
const tinyDir = "../../../shared/groth16/testdata"

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNativeWithTables(t *testing.T) {
	keys := t.TempDir()
	copyFile(t, filepath.Join(tinyDir, "tiny_snarkjs.zkey"), filepath.Join(keys, "tiny.zkey"))
	vkJSON, err := os.ReadFile(filepath.Join(tinyDir, "tiny_snarkjs.vkey.json"))
	if err != nil {
		t.Fatal(err)
	}
	vk, err := groth16.ParseVerifyingKey(vkJSON)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNative(NativeConfig{Layout: circuitdir.Layout{ZkeyDir: keys}, Budget: 64 << 20, Tables: true})
	if err != nil {
		t.Fatal(err)
	}
	prove := func(name string) {
		t.Helper()
		dir := t.TempDir()
		proof, public := filepath.Join(dir, "proof.json"), filepath.Join(dir, "public.json")
		if err := n.Prove(t.Context(), "tiny", dir, filepath.Join(tinyDir, "tiny.wtns"), proof, public); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p, err := os.ReadFile(proof)
		if err != nil {
			t.Fatal(err)
		}
		s, err := os.ReadFile(public)
		if err != nil {
			t.Fatal(err)
		}
		if err := vk.VerifyJSON(p, s); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	prove("first proof (tables building)")
	n.WaitTables()
	if h := n.Keys().Held(); h.Keys != 1 || h.TableBytes == 0 || h.Total() > 64<<20 {
		t.Fatalf("key cache holds %+v, want one key with its tables within 64 MiB", h)
	}
	prove("with tables")
	n.Close()
	dir := t.TempDir()
	err = n.Prove(t.Context(), "tiny", dir, filepath.Join(tinyDir, "tiny.wtns"),
		filepath.Join(dir, "proof.json"), filepath.Join(dir, "public.json"))
	if !errors.Is(err, keycache.ErrClosed) {
		t.Fatalf("proof after Close: %v, want keycache.ErrClosed", err)
	}
}

// TestNativeKeyReplaced replaces a loaded key's file, by rename and then in
// place: each change is loaded for the next proof and the key it replaces
// is closed (its mapping released).
func TestNativeKeyReplaced(t *testing.T) {
	t.Parallel()
	keys := t.TempDir()
	path := filepath.Join(keys, "tiny.zkey")
	copyFile(t, filepath.Join(tinyDir, "tiny_snarkjs.zkey"), path)
	n, err := NewNative(NativeConfig{Layout: circuitdir.Layout{ZkeyDir: keys}, Budget: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	prove := func() *groth16.ProvingKey {
		t.Helper()
		dir := t.TempDir()
		if err := n.Prove(t.Context(), "tiny", dir, filepath.Join(tinyDir, "tiny.wtns"), filepath.Join(dir, "p.json"), filepath.Join(dir, "s.json")); err != nil {
			t.Fatal(err)
		}
		l, err := n.Keys().Acquire(t.Context(), "tiny")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		return l.Key().(*provingKey).key()
	}
	first := prove()
	if first.Memory().Mapped == 0 {
		t.Fatal("the key is not mapped")
	}
	// A new key renamed over the old file (a later mtime, as a deploy
	// would give it).
	next := filepath.Join(keys, "next.zkey.tmp")
	copyFile(t, filepath.Join(tinyDir, "tiny_dev.zkey"), next)
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(next, later, later); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	second := prove()
	if second == first || first.Memory() != (groth16.Memory{}) {
		t.Fatalf("the replaced key was not reloaded and closed: %+v", first.Memory())
	}
	// Rewritten in place (same inode, new size).
	copyFile(t, filepath.Join(tinyDir, "tiny_snarkjs.zkey"), path)
	third := prove()
	if third == second || second.Memory() != (groth16.Memory{}) {
		t.Fatal("the rewritten key was not reloaded and closed")
	}
}

func TestNewNativeRejects(t *testing.T) {
	if _, err := NewNative(NativeConfig{Budget: 1}); err == nil {
		t.Error("empty zkey dir accepted")
	}
	if _, err := NewNative(NativeConfig{Layout: circuitdir.Layout{ZkeyDir: t.TempDir()}}); err == nil {
		t.Error("no budget accepted")
	}
}

package prover

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/groth16"
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
	var logs syncBuffer
	n, err := NewNative(circuitdir.Layout{ZkeyDir: keys}, 0, 64<<20, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	prove := func(name string) {
		t.Helper()
		dir := t.TempDir()
		proof, public := filepath.Join(dir, "proof.json"), filepath.Join(dir, "public.json")
		if err := n.Prove(context.Background(), "tiny", dir, filepath.Join(tinyDir, "tiny.wtns"), proof, public); err != nil {
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
	if !strings.Contains(logs.String(), "window tables built") {
		t.Fatalf("no table build logged:\n%s", logs.String())
	}
	prove("with tables")
	n.Close()
	prove("after Close")
}

// syncBuffer is a bytes.Buffer for a logger used from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNativeKeyReplaced replaces a loaded key's file, by rename and then in
// place: each change is loaded for the next proof and the key it replaces
// is closed (its mapping released).
func TestNativeKeyReplaced(t *testing.T) {
	t.Parallel()
	keys := t.TempDir()
	path := filepath.Join(keys, "tiny.zkey")
	copyFile(t, filepath.Join(tinyDir, "tiny_snarkjs.zkey"), path)
	n, err := NewNative(circuitdir.Layout{ZkeyDir: keys}, 0, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.keys["tiny"].pk
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
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := NewNative(circuitdir.Layout{}, 0, 0, log); err == nil {
		t.Error("empty zkey dir accepted")
	}
	if _, err := NewNative(circuitdir.Layout{ZkeyDir: t.TempDir()}, 0, -1, log); err == nil {
		t.Error("negative table budget accepted")
	}
	if _, err := NewNative(circuitdir.Layout{ZkeyDir: t.TempDir()}, 0, 0, nil); err == nil {
		t.Error("nil logger accepted")
	}
}

package snarkjs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFind(t *testing.T) {
	beside := t.TempDir()
	bin := filepath.Join(beside, "node_modules", ".bin", "snarkjs")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		env        string
		circuitDir string
		want       string
	}{
		{"SNARKJS wins", "/opt/snarkjs", filepath.Join(beside, "build"), "/opt/snarkjs"},
		{"beside the circuit folder", "", filepath.Join(beside, "build"), bin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SNARKJS", tc.env)
			got, err := Find(tc.circuitDir)
			if err != nil || got != tc.want {
				t.Errorf("Find(%q) = %q, %v; want %q", tc.circuitDir, got, err, tc.want)
			}
		})
	}
}

// The repository's pinned snarkjs is found from a package folder, as the
// tests of every package need it.
func TestFindFromPackage(t *testing.T) {
	t.Setenv("SNARKJS", "")
	want, err := filepath.Abs(filepath.Join("..", "..", "circuits", "node_modules", ".bin", "snarkjs"))
	if err != nil {
		t.Fatal(err)
	}
	if !isFile(want) {
		if testing.Short() {
			t.Skip("circuits/node_modules not installed; skipped under -short")
		}
		t.Fatalf("%s missing: run `npm ci --prefix circuits`", want)
	}
	got, err := Find("")
	if err != nil || got != want {
		t.Fatalf("Find(\"\") = %q, %v; want %q", got, err, want)
	}
}

func TestFindNothing(t *testing.T) {
	t.Setenv("SNARKJS", "")
	t.Setenv("PATH", t.TempDir())
	t.Chdir(t.TempDir())
	if _, err := Find(filepath.Join(t.TempDir(), "build")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Find with nothing installed: %v, want ErrNotFound", err)
	}
}

package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExitStatus builds the command and checks what a caller that runs it
// as rapidsnark's replacement sees: exit 0 and the two files, 1 and a
// "zkprove: ..." line on stderr for an error, 2 for bad usage.
func TestExitStatus(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary; skipped under -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "zkprove")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tests := []struct {
		name   string
		args   []string
		status int
		stderr string
	}{
		{"success", []string{testdata + "tiny_snarkjs.zkey", testdata + "tiny.wtns", dir + "/proof.json", dir + "/public.json"}, 0, ""},
		{"usage", []string{"only-one"}, 2, "usage: zkprove"},
		{"bad witness file", []string{testdata + "tiny_snarkjs.zkey", testdata + "tiny.r1cs", dir + "/p.json", dir + "/q.json"}, 1, "zkprove: read witness:"},
	}
	for _, tt := range tests {
		cmd := exec.CommandContext(t.Context(), bin, tt.args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		status := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			status = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if status != tt.status || !strings.Contains(stderr.String(), tt.stderr) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", tt.name, status, stderr.String(), tt.status, tt.stderr)
		}
	}
}

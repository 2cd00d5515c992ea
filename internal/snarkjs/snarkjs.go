// Package snarkjs finds the snarkjs command line, the development and test
// tool the fleet pins in circuits/package-lock.json (npm ci --prefix
// circuits). proverctl dev and demo, the dev fleet, the benchmarks and the
// tests look it up here; production images run rapidsnark or the native
// prover instead.
package snarkjs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
)

// ErrNotFound means no snarkjs was found.
var ErrNotFound = errors.New("snarkjs not found (run `make deps` or `npm ci --prefix circuits`, or set SNARKJS)")

// Find returns the snarkjs command, looking in order at:
//
//  1. $SNARKJS, as given;
//  2. node_modules/.bin/snarkjs beside the circuit folder circuitDir
//     (circuits/build → circuits/node_modules), when circuitDir is set;
//  3. circuits/node_modules/.bin/snarkjs in the working directory or the
//     nearest parent holding it, up to the module root (the folder with
//     go.mod), so that a test finds the repository's from its package;
//  4. snarkjs on PATH.
//
// Paths found in 2 and 3 are absolute.
func Find(circuitDir string) (string, error) {
	if p := os.Getenv("SNARKJS"); p != "" {
		return p, nil
	}
	var candidates []string
	if circuitDir != "" {
		if abs, err := filepath.Abs(circuitDir); err == nil {
			candidates = append(candidates, filepath.Join(filepath.Dir(abs), "node_modules", ".bin", "snarkjs"))
		}
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			candidates = append(candidates, filepath.Join(dir, "circuits", "node_modules", ".bin", "snarkjs"))
			if isFile(filepath.Join(dir, "go.mod")) || filepath.Dir(dir) == dir {
				break
			}
		}
	}
	for _, c := range candidates {
		if isFile(c) {
			return c, nil
		}
	}
	if p, err := exec.LookPath("snarkjs"); err == nil {
		return p, nil
	}
	return "", ErrNotFound
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

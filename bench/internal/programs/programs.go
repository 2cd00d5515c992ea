// Package programs finds the project's binaries in the bin folder (`make
// build`) and builds the ones that are missing with `go build`, so the
// benchmarks run the same programs that are deployed. It always builds the
// benchmark's own helpers (the rusage meter, the warm prover and the
// frontend's load generator).
package programs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Packages maps each program to its package.
var packages = map[string]string{
	"prover-api":    "./api",
	"prover-worker": "./worker",
	"zkprove":       "./cmd/zkprove",
}

// helpers are the benchmark's own programs, always built.
var helpers = map[string]string{
	"rusage":    "./bench/internal/cmd/rusage",
	"warmprove": "./bench/internal/cmd/warmprove",
	"loadgen":   "./bench/internal/cmd/loadgen",
	"bareapi":   "./bench/internal/cmd/bareapi",
}

// Paths are the programs' absolute paths.
type Paths struct {
	API, Worker, Zkprove       string
	Rusage, WarmProve, Loadgen string
	BareAPI                    string
	// Built lists programs that were not in the bin folder and were built.
	Built []string
}

// Find looks for each program in binDir; a missing one is built into
// buildDir with `go build` run in the module root moduleDir.
func Find(ctx context.Context, binDir, buildDir, moduleDir string) (Paths, error) {
	var p Paths
	for name, pkg := range helpers {
		path := filepath.Join(buildDir, name)
		if err := build(ctx, moduleDir, path, pkg); err != nil {
			return p, err
		}
		switch name {
		case "rusage":
			p.Rusage = path
		case "warmprove":
			p.WarmProve = path
		case "loadgen":
			p.Loadgen = path
		case "bareapi":
			p.BareAPI = path
		}
	}
	for name, pkg := range packages {
		path, err := filepath.Abs(filepath.Join(binDir, name))
		if err != nil {
			return p, fmt.Errorf("programs: %w", err)
		}
		if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			path = filepath.Join(buildDir, name)
			if err := build(ctx, moduleDir, path, pkg); err != nil {
				return p, err
			}
			p.Built = append(p.Built, name)
		}
		switch name {
		case "prover-api":
			p.API = path
		case "prover-worker":
			p.Worker = path
		case "zkprove":
			p.Zkprove = path
		}
	}
	return p, nil
}

func build(ctx context.Context, moduleDir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = moduleDir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("programs: go build %s: %w: %s", pkg, err, b)
	}
	return nil
}

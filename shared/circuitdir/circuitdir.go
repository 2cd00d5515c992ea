// Package circuitdir is the circuit folder layout the fleet reads: where a
// circuit's witness generator, constraint system and keys live, given its
// name and the two folders a deployment configures. The frontend's
// catalogue, the workers, proverctl and the benchmarks all locate files
// through it, so the layout is written down once:
//
//	<circuits>/<name>_cpp/<name>       circom's C++ witness generator (executable)
//	<circuits>/<name>_cpp/<name>.dat   its data file, found beside it
//	<circuits>/<name>_js/<name>.wasm   circom's WebAssembly witness generator
//	<circuits>/<name>.r1cs             the constraint system
//	<zkeys>/<name>.zkey                the Groth16 proving key
//	<zkeys>/<name>.vkey.json           its verification key (snarkjs format)
//
// A circuit name is a path element: ValidName says which names may be one.
package circuitdir

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// MaxName is the longest circuit name ValidName accepts.
const MaxName = 128

var nameRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// ValidName reports whether name can name a circuit: a letter or digit,
// then letters, digits, '_' or '-', at most MaxName in all. Such a name is
// one path element, never "." or "..".
func ValidName(name string) bool { return nameRule.MatchString(name) }

// Layout is one deployment's pair of folders. Either may be empty when its
// user needs only the other (a worker's witness stage reads no keys).
type Layout struct {
	// CircuitDir holds the witness generators and constraint systems.
	CircuitDir string
	// ZkeyDir holds the proving and verification keys.
	ZkeyDir string
}

const (
	nativeSuffix = "_cpp"
	wasmSuffix   = "_js"
)

// Generator is circom's C++ witness generator of circuit name:
// <circuits>/<name>_cpp/<name>, run as `<name> input.json out.wtns`.
func (l Layout) Generator(name string) string {
	return filepath.Join(l.CircuitDir, name+nativeSuffix, name)
}

// GeneratorData is the data file the C++ generator reads from beside
// itself (it finds it from argv[0], so run the generator by an absolute
// path).
func (l Layout) GeneratorData(name string) string { return l.Generator(name) + ".dat" }

// Wasm is circom's WebAssembly witness generator of circuit name.
func (l Layout) Wasm(name string) string {
	return filepath.Join(l.CircuitDir, name+wasmSuffix, name+".wasm")
}

// R1CS is the constraint system of circuit name.
func (l Layout) R1CS(name string) string { return filepath.Join(l.CircuitDir, name+".r1cs") }

// Zkey is the Groth16 proving key of circuit name.
func (l Layout) Zkey(name string) string { return filepath.Join(l.ZkeyDir, name+".zkey") }

// VKey is the verification key of circuit name.
func (l Layout) VKey(name string) string { return filepath.Join(l.ZkeyDir, name+".vkey.json") }

// Abs returns the layout with both folders made absolute (an empty one
// stays empty), as the C++ generator needs to find its data file.
func (l Layout) Abs() (Layout, error) {
	for _, d := range []*string{&l.CircuitDir, &l.ZkeyDir} {
		if *d == "" {
			continue
		}
		abs, err := filepath.Abs(*d)
		if err != nil {
			return Layout{}, fmt.Errorf("circuitdir: %w", err)
		}
		*d = abs
	}
	return l, nil
}

// Installed lists, sorted, the circuits whose witness generator is
// present: an executable <name>_cpp/<name> or a <name>_js/<name>.wasm
// (regular files) and, when ZkeyDir is set, whose <name>.zkey is present
// too. Only presence is checked; no file is read. An unreadable circuit
// folder is an error.
func (l Layout) Installed() ([]string, error) {
	entries, err := os.ReadDir(l.CircuitDir)
	if err != nil {
		return nil, fmt.Errorf("circuitdir: %w", err)
	}
	names := make(map[string]bool)
	for _, e := range entries {
		dir := e.Name()
		var name, path string
		native := strings.HasSuffix(dir, nativeSuffix)
		switch {
		case native:
			name = strings.TrimSuffix(dir, nativeSuffix)
			path = l.Generator(name)
		case strings.HasSuffix(dir, wasmSuffix):
			name = strings.TrimSuffix(dir, wasmSuffix)
			path = l.Wasm(name)
		default:
			continue
		}
		if name == "" || names[name] {
			continue
		}
		st, err := os.Stat(path)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		if native && st.Mode().Perm()&0o111 == 0 {
			continue
		}
		if l.ZkeyDir != "" {
			zk, err := os.Stat(l.Zkey(name))
			if err != nil || !zk.Mode().IsRegular() {
				continue
			}
		}
		names[name] = true
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

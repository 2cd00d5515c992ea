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
	"encoding/json"
	"fmt"
	"io"
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
	// ZkeyNames maps a circuit name to the file name of its proving key in
	// ZkeyDir (--circuit-zkey-map, see LoadZkeyMap); a circuit not in it
	// has <name>.zkey. A mapped key's verification key is the key's name
	// with .vkey.json for .zkey.
	ZkeyNames map[string]string
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

// Zkey is the Groth16 proving key of circuit name: <zkeys>/<name>.zkey, or
// the file ZkeyNames gives it.
func (l Layout) Zkey(name string) string {
	if f, ok := l.ZkeyNames[name]; ok {
		return filepath.Join(l.ZkeyDir, f)
	}
	return filepath.Join(l.ZkeyDir, name+".zkey")
}

// VKey is the verification key of circuit name: <zkeys>/<name>.vkey.json,
// or beside a mapped proving key, named after it.
func (l Layout) VKey(name string) string {
	if f, ok := l.ZkeyNames[name]; ok {
		return filepath.Join(l.ZkeyDir, strings.TrimSuffix(f, ".zkey")+".vkey.json")
	}
	return filepath.Join(l.ZkeyDir, name+".vkey.json")
}

// MaxZkeyMapBytes bounds a circuit-zkey map file.
const MaxZkeyMapBytes = 1 << 20

// LoadZkeyMap reads a circuit-zkey map: a JSON object from circuit names to
// the file names of their proving keys in the zkey folder, for keys not
// named <circuit>.zkey (a trusted setup's output, a key shared by two
// circuit names):
//
//	{"register_sha256_sha256_sha256_rsa_65537_4096": "register_rsa_4096_final.zkey"}
//
// Every name must be a valid circuit name and every file name one path
// element ending in .zkey. An empty path returns nil (no map).
func LoadZkeyMap(path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("circuitdir: circuit-zkey map: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxZkeyMapBytes+1))
	if err != nil {
		return nil, fmt.Errorf("circuitdir: circuit-zkey map %s: %w", path, err)
	}
	if len(data) > MaxZkeyMapBytes {
		return nil, fmt.Errorf("circuitdir: circuit-zkey map %s is over %d bytes", path, MaxZkeyMapBytes)
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("circuitdir: circuit-zkey map %s: want a JSON object of circuit name to zkey file name: %w", path, err)
	}
	for name, file := range m {
		switch {
		case !ValidName(name):
			return nil, fmt.Errorf("circuitdir: circuit-zkey map %s: %q is not a circuit name", path, name)
		case file == "" || file != filepath.Base(file) || strings.ContainsRune(file, os.PathSeparator) || !strings.HasSuffix(file, ".zkey") || file == ".zkey":
			return nil, fmt.Errorf("circuitdir: circuit-zkey map %s: %q for %s must be a file name in the zkey folder ending in .zkey", path, file, name)
		}
	}
	return m, nil
}

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
// (regular files) and, when ZkeyDir is set, whose proving key (Zkey) is
// present too. Only presence is checked; no file is read. An unreadable circuit
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

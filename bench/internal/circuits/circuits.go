// Package circuits finds a demo circuit's artifacts as the worker lays them
// out (<circuits>/<name>_cpp/<name>, <zkeys>/<name>.zkey and .vkey.json) with
// its sample input (<inputs>/<name>.json), and makes witnesses with the
// circuit's C++ generator.
package circuits

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/openpassport/prover-fleet/bench/internal/child"
	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/groth16/r1cs"
)

// Demo circuits, smallest first.
const (
	Disclose = "disclose_demo"
	DSC      = "dsc_demo"
	Register = "register_demo"
)

// Circuit is one circuit's files.
type Circuit struct {
	Name      string
	Family    family.Family
	ProofType family.ProofType
	Generator string // C++ witness generator
	R1CS      string
	Zkey      string
	VKey      string
	Input     string // sample input JSON
	ZkeyBytes int64
}

// Dirs are the folders the files are in.
type Dirs struct {
	Circuits string // compiled circuits (circuits/build)
	Zkeys    string // proving and verification keys (zkeys)
	Inputs   string // sample inputs (circuits/inputs)
}

// Find locates name's files (absolute paths) and checks they exist.
func Find(d Dirs, name string) (Circuit, error) {
	prefix, _, _ := strings.Cut(name, "_")
	fam, err := family.Parse(prefix)
	if err != nil {
		return Circuit{}, fmt.Errorf("circuits: %s: %w", name, err)
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	l := circuitdir.Layout{CircuitDir: d.Circuits, ZkeyDir: d.Zkeys}
	input := filepath.Join(d.Inputs, name+".json")
	if _, err := os.Stat(input); err != nil {
		// Circuits built beside the demo ones (make circuits-large) keep
		// their sample inputs in <circuits>/inputs.
		if alt := filepath.Join(d.Circuits, "inputs", name+".json"); fileExists(alt) {
			input = alt
		}
	}
	c := Circuit{
		Name:      name,
		Family:    fam,
		ProofType: family.ProofType(fam),
		Generator: abs(l.Generator(name)),
		R1CS:      abs(l.R1CS(name)),
		Zkey:      abs(l.Zkey(name)),
		VKey:      abs(l.VKey(name)),
		Input:     abs(input),
	}
	for _, p := range []string{c.Generator, c.R1CS, c.Zkey, c.VKey, c.Input} {
		st, err := os.Stat(p)
		if err != nil {
			return Circuit{}, fmt.Errorf("circuits: %s: %w (run `make keys build`)", name, err)
		}
		if p == c.Zkey {
			c.ZkeyBytes = st.Size()
		}
	}
	return c, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Demos are the demo circuits, smallest first.
func Demos() []string { return []string{Disclose, DSC, Register} }

// Discover returns the demo circuits and every other circuit whose key is in
// d.Zkeys and whose files Find finds (the large circuits of make
// circuits-large, once built), ordered by zkey size. A demo circuit whose
// files are missing is an error; another circuit is left out.
func Discover(d Dirs) ([]Circuit, error) {
	var out []Circuit
	seen := map[string]bool{}
	for _, n := range Demos() {
		c, err := Find(d, n)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
		seen[n] = true
	}
	keys, err := filepath.Glob(filepath.Join(d.Zkeys, "*.zkey"))
	if err != nil {
		return nil, fmt.Errorf("circuits: %w", err)
	}
	for _, k := range keys {
		n := strings.TrimSuffix(filepath.Base(k), ".zkey")
		if seen[n] {
			continue
		}
		if c, err := Find(d, n); err == nil {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b Circuit) int { return cmp.Compare(a.ZkeyBytes, b.ZkeyBytes) })
	return out, nil
}

// Inputs reads the sample input, checking that it is JSON.
func (c Circuit) Inputs() ([]byte, error) {
	b, err := os.ReadFile(c.Input)
	if err != nil {
		return nil, fmt.Errorf("circuits: %w", err)
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("circuits: %s is not JSON", c.Input)
	}
	return b, nil
}

// Size is a circuit's size from its .r1cs.
type Size struct {
	Constraints int `json:"constraints"`
	Wires       int `json:"wires"`
	Public      int `json:"public"`
}

// Size reads the constraint system's size.
func (c Circuit) Size(ctx context.Context) (Size, error) {
	sys, err := r1cs.ReadFile(ctx, c.R1CS)
	if err != nil {
		return Size{}, fmt.Errorf("circuits: %s: %w", c.Name, err)
	}
	return Size{Constraints: len(sys.Constraints), Wires: int(sys.NWires), Public: sys.NPublic()}, nil
}

// Witness runs the generator on the sample input in dir and returns the
// witness file's path and the run.
func (c Circuit) Witness(ctx context.Context, dir string) (string, child.Result, error) {
	out := filepath.Join(dir, "witness.wtns")
	res, err := child.Run(ctx, child.Cmd{Path: c.Generator, Args: []string{c.Input, out}, Dir: dir})
	if err != nil {
		return "", res, fmt.Errorf("circuits: witness of %s: %w", c.Name, err)
	}
	return out, res, nil
}

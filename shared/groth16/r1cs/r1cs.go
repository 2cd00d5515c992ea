// Package r1cs reads and writes circom constraint systems (.r1cs files).
//
// Layout (iden3 binary container, magic "r1cs", version 1):
//
//	section 1 (header):      n8 uint32, prime n8 bytes LE, nWires uint32,
//	                         nPubOut uint32, nPubIn uint32, nPrvIn uint32,
//	                         nLabels uint64, nConstraints uint32
//	section 2 (constraints): per constraint three linear combinations A, B, C;
//	                         each is nTerms uint32 then nTerms times
//	                         (wire uint32, coefficient n8 bytes LE, normal form)
//	section 3 (wire→label):  nWires uint64 label ids (required and checked for
//	                         size, not kept)
//	sections 4, 5:           custom gates (PLONK only): rejected
//
// A constraint says <A,w> * <B,w> = <C,w> for the witness w, where wire 0 is
// the constant one, wires 1..nPubOut are the public outputs, the next nPubIn
// the public inputs, then the private inputs and internal signals.
//
// Only systems over the BN254 (bn128) scalar field are accepted. Sizes are
// checked against the header and the file size before allocating.
package r1cs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/parallel"

	"github.com/openpassport/prover-fleet/shared/groth16/internal/binfile"
)

var (
	// ErrMalformed means the file is not a well-formed .r1cs file.
	ErrMalformed = errors.New("r1cs: malformed file")
	// ErrWrongField means the system is over another field than BN254's
	// scalar field.
	ErrWrongField = errors.New("r1cs: constraint system is not over the BN254 scalar field")
	// ErrCustomGates means the file uses circom custom gates, which only
	// PLONK-style provers support.
	ErrCustomGates = errors.New("r1cs: custom gates are not supported by Groth16")
	// ErrWitnessSize means a witness has a different number of wires than
	// the system.
	ErrWitnessSize = errors.New("r1cs: witness size does not match the constraint system")
	// ErrUnsatisfied means a witness violates a constraint.
	ErrUnsatisfied = errors.New("r1cs: witness does not satisfy the constraints")
)

const (
	sectionHeader      = 1
	sectionConstraints = 2
	sectionWireMap     = 3
	sectionCustomList  = 4
	sectionCustomUses  = 5

	n8       = fr.Bytes
	termSize = 4 + n8
)

// Term is one coefficient of a linear combination.
type Term struct {
	Wire  uint32
	Coeff fr.Element
}

// Constraint is <A,w> * <B,w> = <C,w>.
type Constraint struct {
	A, B, C []Term
}

// System is a parsed constraint system.
type System struct {
	NWires      uint32 // including wire 0, the constant one
	NPubOut     uint32
	NPubIn      uint32
	NPrvIn      uint32
	NLabels     uint64
	Constraints []Constraint
}

// NPublic is the number of public signals: outputs then public inputs.
func (s *System) NPublic() int { return int(s.NPubOut) + int(s.NPubIn) }

// Read parses a .r1cs file of the given size from r.
func Read(ctx context.Context, r io.ReaderAt, size int64) (*System, error) {
	f, err := binfile.Open(r, size, "r1cs", 1)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if f.Has(sectionCustomList) || f.Has(sectionCustomUses) {
		return nil, ErrCustomGates
	}
	hs, err := f.Section(sectionHeader)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if hs.Size != n8+32 {
		if hs.Size >= 4 && hs.Size <= 64+32 {
			// Say "wrong field" when the header is the right shape for
			// another element size.
			b, err := f.ReadAll(hs)
			if err == nil && int64(binary.LittleEndian.Uint32(b))+32 == hs.Size {
				return nil, fmt.Errorf("%w: field elements are %d bytes", ErrWrongField, binary.LittleEndian.Uint32(b))
			}
		}
		return nil, fmt.Errorf("%w: header section is %d bytes, want %d", ErrMalformed, hs.Size, n8+32)
	}
	hb, err := f.ReadAll(hs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	d := binfile.NewDecoder(hb)
	if fs := d.Uint32(); fs != n8 {
		return nil, fmt.Errorf("%w: field elements are %d bytes", ErrWrongField, fs)
	}
	if !bytes.Equal(d.Bytes(n8), binfile.LittleEndian(fr.Modulus(), n8)) {
		return nil, ErrWrongField
	}
	s := &System{
		NWires:  d.Uint32(),
		NPubOut: d.Uint32(),
		NPubIn:  d.Uint32(),
		NPrvIn:  d.Uint32(),
		NLabels: d.Uint64(),
	}
	nConstraints := d.Uint32()
	if d.Err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrMalformed, d.Err)
	}
	if uint64(s.NWires) < 1+uint64(s.NPubOut)+uint64(s.NPubIn)+uint64(s.NPrvIn) {
		return nil, fmt.Errorf("%w: %d wires cannot hold 1+%d outputs+%d public inputs+%d private inputs",
			ErrMalformed, s.NWires, s.NPubOut, s.NPubIn, s.NPrvIn)
	}
	// circom always writes the wire→label map; requiring it also bounds
	// nWires by the file size, so later per-wire allocations (the witness,
	// key generation) are bounded too.
	if _, err := f.SectionOfSize(sectionWireMap, int64(s.NWires)*8); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	cs, err := f.Section(sectionConstraints)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	// Every constraint takes at least three uint32 term counts.
	if uint64(nConstraints)*12 > uint64(cs.Size) {
		return nil, fmt.Errorf("%w: %d constraints cannot fit in a %d-byte section", ErrMalformed, nConstraints, cs.Size)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cb, err := f.ReadAll(cs) // bounded by the file size, checked by Open
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	// First pass: check the structure and count the terms, so that one
	// backing array holds them all.
	total, err := countTerms(cb, nConstraints, s.NWires)
	if err != nil {
		return nil, err
	}
	terms := make([]Term, total)
	s.Constraints = make([]Constraint, nConstraints)
	d = binfile.NewDecoder(cb)
	next := 0
	readLC := func(c int) ([]Term, error) {
		n := int(d.Uint32())
		lc := terms[next : next+n : next+n]
		for i := range lc {
			lc[i].Wire = d.Uint32()
			e, err := fr.LittleEndian.Element((*[n8]byte)(d.Bytes(n8)))
			if err != nil {
				return nil, fmt.Errorf("%w: constraint %d: coefficient is not below the field modulus", ErrMalformed, c)
			}
			lc[i].Coeff = e
		}
		next += n
		return lc, nil
	}
	for c := range s.Constraints {
		k := &s.Constraints[c]
		if k.A, err = readLC(c); err != nil {
			return nil, err
		}
		if k.B, err = readLC(c); err != nil {
			return nil, err
		}
		if k.C, err = readLC(c); err != nil {
			return nil, err
		}
		if c%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// countTerms walks the constraints section, checking term counts, lengths
// and wire indices, and returns the total number of terms.
func countTerms(b []byte, nConstraints, nWires uint32) (int, error) {
	d := binfile.NewDecoder(b)
	total := 0
	for c := uint32(0); c < nConstraints; c++ {
		for range 3 {
			n := d.Uint32()
			if d.Err != nil {
				return 0, fmt.Errorf("%w: constraint %d: %w", ErrMalformed, c, d.Err)
			}
			if uint64(n)*termSize > uint64(d.Remaining()) {
				return 0, fmt.Errorf("%w: constraint %d declares %d terms, more than the section holds", ErrMalformed, c, n)
			}
			for range n {
				if w := d.Uint32(); w >= nWires {
					return 0, fmt.Errorf("%w: constraint %d uses wire %d of %d", ErrMalformed, c, w, nWires)
				}
				d.Bytes(n8)
			}
			total += int(n)
		}
	}
	if d.Remaining() != 0 {
		return 0, fmt.Errorf("%w: constraints section has %d trailing bytes", ErrMalformed, d.Remaining())
	}
	return total, nil
}

// ReadFile reads a .r1cs file from disk.
func ReadFile(ctx context.Context, path string) (*System, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	s, err := Read(ctx, fh, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Write writes s as a version 1 .r1cs file with a identity wire→label map,
// the way circom lays it out.
func Write(w io.Writer, s *System) error {
	if err := s.validate(); err != nil {
		return err
	}
	var csize uint64
	for _, c := range s.Constraints {
		csize += 12 + uint64(len(c.A)+len(c.B)+len(c.C))*termSize
	}
	bw := bufio.NewWriter(w)
	if err := binfile.WriteHeader(bw, "r1cs", 1, 3); err != nil {
		return err
	}
	var u4 [4]byte
	var u8 [8]byte
	u32 := func(v uint32) { binary.LittleEndian.PutUint32(u4[:], v); bw.Write(u4[:]) }
	u64 := func(v uint64) { binary.LittleEndian.PutUint64(u8[:], v); bw.Write(u8[:]) }

	binfile.WriteSectionHeader(bw, sectionHeader, n8+32)
	u32(n8)
	bw.Write(binfile.LittleEndian(fr.Modulus(), n8))
	u32(s.NWires)
	u32(s.NPubOut)
	u32(s.NPubIn)
	u32(s.NPrvIn)
	u64(s.NLabels)
	u32(uint32(len(s.Constraints)))

	binfile.WriteSectionHeader(bw, sectionConstraints, csize)
	var e [n8]byte
	for _, c := range s.Constraints {
		for _, lc := range [3][]Term{c.A, c.B, c.C} {
			u32(uint32(len(lc)))
			for _, t := range lc {
				u32(t.Wire)
				fr.LittleEndian.PutElement(&e, t.Coeff)
				bw.Write(e[:])
			}
		}
	}

	binfile.WriteSectionHeader(bw, sectionWireMap, uint64(s.NWires)*8)
	for i := uint32(0); i < s.NWires; i++ {
		u64(uint64(i))
	}
	return bw.Flush()
}

func (s *System) validate() error {
	if uint64(s.NWires) < 1+uint64(s.NPubOut)+uint64(s.NPubIn)+uint64(s.NPrvIn) {
		return fmt.Errorf("r1cs: %d wires cannot hold the declared inputs and outputs", s.NWires)
	}
	if uint64(len(s.Constraints)) > 1<<32-1 {
		return fmt.Errorf("r1cs: %d constraints is too many", len(s.Constraints))
	}
	for i, c := range s.Constraints {
		for _, lc := range [3][]Term{c.A, c.B, c.C} {
			for _, t := range lc {
				if t.Wire >= s.NWires {
					return fmt.Errorf("r1cs: constraint %d uses wire %d of %d", i, t.Wire, s.NWires)
				}
			}
		}
	}
	return nil
}

// IsSatisfied checks every constraint against witness (wire 0 must be one).
// A violation returns an error wrapping ErrUnsatisfied that names the first
// failing constraint.
func (s *System) IsSatisfied(witness []fr.Element) error {
	if len(witness) != int(s.NWires) {
		return fmt.Errorf("%w: witness has %d values, system has %d wires", ErrWitnessSize, len(witness), s.NWires)
	}
	if !witness[0].IsOne() {
		return fmt.Errorf("%w: wire 0 is not one", ErrUnsatisfied)
	}
	var mu sync.Mutex
	first := len(s.Constraints)
	parallel.Execute(len(s.Constraints), func(start, end int) {
		for i := start; i < end; i++ {
			c := &s.Constraints[i]
			a, b, cc := eval(c.A, witness), eval(c.B, witness), eval(c.C, witness)
			a.Mul(&a, &b)
			if !a.Equal(&cc) {
				mu.Lock()
				first = min(first, i)
				mu.Unlock()
				return
			}
		}
	})
	if first < len(s.Constraints) {
		return fmt.Errorf("%w: constraint %d fails", ErrUnsatisfied, first)
	}
	return nil
}

func eval(lc []Term, w []fr.Element) fr.Element {
	var acc, t fr.Element
	for i := range lc {
		t.Mul(&lc[i].Coeff, &w[lc[i].Wire])
		acc.Add(&acc, &t)
	}
	return acc
}

// Package zkey reads and writes snarkjs Groth16 proving keys (.zkey files)
// over BN254 (snarkjs's "bn128").
//
// Layout (iden3 binary container, magic "zkey", version 1 or 2):
//
//	section 1  protocol id uint32: 1 Groth16 (2 PLONK and 10 FFLONK are rejected)
//	section 2  Groth16 header: n8q uint32, q, n8r uint32, r, nVars uint32,
//	           nPublic uint32, domainSize uint32, alpha1, beta1 (G1), beta2,
//	           gamma2 (G2), delta1 (G1), delta2 (G2)
//	section 3  IC: nPublic+1 G1 points
//	section 4  coefficients: count uint32, then per entry matrix uint32 (0 = A,
//	           1 = B), constraint uint32, signal uint32, value (32 bytes)
//	section 5  A: nVars G1 points
//	section 6  B1: nVars G1 points
//	section 7  B2: nVars G2 points
//	section 8  C: nVars-nPublic-1 G1 points (the private signals)
//	section 9  H: domainSize G1 points
//	section 10 contributions (MPC transcript; not read, written empty)
//
// Base-field coordinates are 32 bytes little-endian in Montgomery form (a G1
// point is x then y, a G2 point x.a0, x.a1, y.a0, y.a1; all-zero bytes is the
// point at infinity). Coefficient values are stored multiplied by R^2
// ("double Montgomery": the bytes read as a Montgomery element give value*R),
// so that a Montgomery product with a normal-form witness value yields the
// product in Montgomery form. H holds the odd-index Lagrange basis of the
// 2*domainSize domain, divided by delta.
//
// Read checks every section's size against the header and the file size
// before allocating, rejects coordinates that are not canonical or not on
// the curve, header G2 points outside the prime-order subgroup, and
// coefficients that are out of range. B2 points are checked to be on the
// curve but not for subgroup membership (too slow for large keys; a bad key
// makes proofs that fail verification, which the prover checks).
package zkey

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sync/atomic"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fp"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/parallel"

	"github.com/openpassport/prover-fleet/shared/groth16/internal/binfile"
)

var (
	// ErrMalformed means the file is not a well-formed Groth16 .zkey.
	ErrMalformed = errors.New("zkey: malformed file")
	// ErrUnsupportedProtocol means the key is for another proof system
	// (PLONK, FFLONK).
	ErrUnsupportedProtocol = errors.New("zkey: not a Groth16 key")
	// ErrUnsupportedCurve means the key is over another curve than BN254.
	ErrUnsupportedCurve = errors.New("zkey: not a BN254 (bn128) key")
)

// Protocol ids in section 1, as snarkjs writes them.
const (
	ProtocolGroth16 = 1
	ProtocolPlonk   = 2
	ProtocolFflonk  = 10
)

// MaxDomainSize is the largest evaluation domain supported: the prover works
// on the 2*domainSize domain, and BN254's scalar field has 2^28-th roots of
// unity.
const MaxDomainSize = 1 << 27

const (
	secProtocol = 1
	secHeader   = 2
	secIC       = 3
	secCoefs    = 4
	secA        = 5
	secB1       = 6
	secB2       = 7
	secC        = 8
	secH        = 9
	secContrib  = 10

	n8       = 32
	g1Size   = 2 * n8
	g2Size   = 4 * n8
	coefSize = 12 + n8
	// headerSize is section 2 for BN254.
	headerSize = 4 + n8 + 4 + n8 + 4 + 4 + 4 + 3*g1Size + 3*g2Size
)

// Matrix values in a Coef.
const (
	MatrixA = 0
	MatrixB = 1
)

// Header is the Groth16 header (section 2).
type Header struct {
	NVars      uint32 // wires, including wire 0 (the constant one)
	NPublic    uint32 // public signals, not counting wire 0
	DomainSize uint32 // power of two >= constraints + NPublic + 1
	Alpha1     bn254.G1Affine
	Beta1      bn254.G1Affine
	Beta2      bn254.G2Affine
	Gamma2     bn254.G2Affine
	Delta1     bn254.G1Affine
	Delta2     bn254.G2Affine
}

// Coef is one non-zero entry of the A or B matrix of the QAP, with its value
// as a field element (the R^2 factor of the file removed).
type Coef struct {
	Matrix     uint32 // MatrixA or MatrixB
	Constraint uint32
	Signal     uint32
	Value      fr.Element
}

// Key is a whole Groth16 proving key.
type Key struct {
	Header
	IC    []bn254.G1Affine // NPublic+1
	Coefs []Coef
	A     []bn254.G1Affine // NVars
	B1    []bn254.G1Affine // NVars
	B2    []bn254.G2Affine // NVars
	C     []bn254.G1Affine // NVars-NPublic-1
	H     []bn254.G1Affine // DomainSize
}

// layout is where a key's sections are, found from its header.
type layout struct {
	f      *binfile.File
	secs   map[uint32]binfile.Section
	coefs  binfile.Section // the records, after the count
	nCoefs int64
}

// locate checks the container, the protocol and the header, and that every
// bulk section has exactly the size the header implies, without reading the
// bulk.
func locate(r io.ReaderAt, size int64, h *Header) (*layout, error) {
	f, err := binfile.Open(r, size, "zkey", 2)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	ps, err := f.SectionOfSize(secProtocol, 4)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	pb, err := f.ReadAll(ps)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch p := binary.LittleEndian.Uint32(pb); p {
	case ProtocolGroth16:
	case ProtocolPlonk:
		return nil, fmt.Errorf("%w: the file is a PLONK key", ErrUnsupportedProtocol)
	case ProtocolFflonk:
		return nil, fmt.Errorf("%w: the file is an FFLONK key", ErrUnsupportedProtocol)
	default:
		return nil, fmt.Errorf("%w: unknown protocol id %d", ErrUnsupportedProtocol, p)
	}
	if err := readHeader(f, h); err != nil {
		return nil, err
	}

	// Check every bulk section's size before allocating any of them.
	nv, np := int64(h.NVars), int64(h.NPublic)
	want := []struct {
		id   uint32
		size int64
	}{
		{secIC, (np + 1) * g1Size},
		{secA, nv * g1Size},
		{secB1, nv * g1Size},
		{secB2, nv * g2Size},
		{secC, (nv - np - 1) * g1Size},
		{secH, int64(h.DomainSize) * g1Size},
	}
	l := &layout{f: f, secs: make(map[uint32]binfile.Section, len(want))}
	for _, w := range want {
		s, err := f.SectionOfSize(w.id, w.size)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		l.secs[w.id] = s
	}
	cs, err := f.Section(secCoefs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if cs.Size < 4 {
		return nil, fmt.Errorf("%w: coefficients section is %d bytes", ErrMalformed, cs.Size)
	}
	var nb [4]byte
	if err := f.ReadAt(cs, nb[:], 0); err != nil {
		return nil, fmt.Errorf("%w: coefficients: %w", ErrMalformed, err)
	}
	l.nCoefs = int64(binary.LittleEndian.Uint32(nb[:]))
	if cs.Size != 4+l.nCoefs*coefSize {
		return nil, fmt.Errorf("%w: coefficients section is %d bytes, %d entries need %d",
			ErrMalformed, cs.Size, l.nCoefs, 4+l.nCoefs*coefSize)
	}
	l.coefs = binfile.Section{ID: secCoefs, Offset: cs.Offset + 4, Size: cs.Size - 4}
	return l, nil
}

// Read parses a .zkey file of the given size from r.
func Read(ctx context.Context, r io.ReaderAt, size int64) (*Key, error) {
	k := &Key{}
	l, err := locate(r, size, &k.Header)
	if err != nil {
		return nil, err
	}
	f, secs, h := l.f, l.secs, &k.Header
	steps := []struct {
		name string
		run  func() error
	}{
		{"IC", func() (err error) { k.IC, err = readG1s(f, secs[secIC]); return }},
		{"coefficients", func() (err error) { k.Coefs, err = readCoefs(f, l.coefs, h); return }},
		{"A", func() (err error) { k.A, err = readG1s(f, secs[secA]); return }},
		{"B1", func() (err error) { k.B1, err = readG1s(f, secs[secB1]); return }},
		{"B2", func() (err error) { k.B2, err = readG2s(f, secs[secB2]); return }},
		{"C", func() (err error) { k.C, err = readG1s(f, secs[secC]); return }},
		{"H", func() (err error) { k.H, err = readG1s(f, secs[secH]); return }},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := s.run(); err != nil {
			return nil, fmt.Errorf("section %s: %w", s.name, err)
		}
	}
	return k, nil
}

// ReadFile reads a .zkey file from disk.
func ReadFile(ctx context.Context, path string) (*Key, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	k, err := Read(ctx, fh, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func readHeader(f *binfile.File, h *Header) error {
	hs, err := f.Section(secHeader)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if hs.Size != headerSize {
		if hs.Size >= 4 && hs.Size <= 4096 {
			if b, err := f.ReadAll(hs); err == nil && binary.LittleEndian.Uint32(b) != n8 {
				return fmt.Errorf("%w: base field elements are %d bytes", ErrUnsupportedCurve, binary.LittleEndian.Uint32(b))
			}
		}
		return fmt.Errorf("%w: Groth16 header is %d bytes, want %d", ErrMalformed, hs.Size, headerSize)
	}
	b, err := f.ReadAll(hs)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	d := binfile.NewDecoder(b)
	if d.Uint32() != n8 || !bytes.Equal(d.Bytes(n8), binfile.LittleEndian(fp.Modulus(), n8)) {
		return fmt.Errorf("%w: base field is not BN254's", ErrUnsupportedCurve)
	}
	if d.Uint32() != n8 || !bytes.Equal(d.Bytes(n8), binfile.LittleEndian(fr.Modulus(), n8)) {
		return fmt.Errorf("%w: scalar field is not BN254's", ErrUnsupportedCurve)
	}
	h.NVars = d.Uint32()
	h.NPublic = d.Uint32()
	h.DomainSize = d.Uint32()
	if uint64(h.NVars) < uint64(h.NPublic)+1 {
		return fmt.Errorf("%w: %d wires cannot hold %d public signals and the constant one", ErrMalformed, h.NVars, h.NPublic)
	}
	if h.DomainSize < 2 || bits.OnesCount32(h.DomainSize) != 1 {
		return fmt.Errorf("%w: domain size %d is not a power of two >= 2", ErrMalformed, h.DomainSize)
	}
	if h.DomainSize > MaxDomainSize {
		return fmt.Errorf("%w: domain size %d exceeds the supported maximum 2^27", ErrMalformed, h.DomainSize)
	}
	if uint64(h.DomainSize) < uint64(h.NPublic)+1 {
		return fmt.Errorf("%w: domain size %d is smaller than the %d public-input constraints", ErrMalformed, h.DomainSize, h.NPublic+1)
	}
	type g1 struct {
		name string
		p    *bn254.G1Affine
	}
	type g2 struct {
		name string
		p    *bn254.G2Affine
	}
	// Order in the file: alpha1, beta1, beta2, gamma2, delta1, delta2.
	for _, it := range []any{
		g1{"alpha1", &h.Alpha1}, g1{"beta1", &h.Beta1},
		g2{"beta2", &h.Beta2}, g2{"gamma2", &h.Gamma2},
		g1{"delta1", &h.Delta1}, g2{"delta2", &h.Delta2},
	} {
		switch it := it.(type) {
		case g1:
			if !decodeG1(it.p, d.Bytes(g1Size)) || it.p.IsInfinity() || !it.p.IsOnCurve() {
				return fmt.Errorf("%w: header point %s is not a valid G1 point", ErrMalformed, it.name)
			}
		case g2:
			if !decodeG2(it.p, d.Bytes(g2Size)) || it.p.IsInfinity() || !it.p.IsInSubGroup() {
				return fmt.Errorf("%w: header point %s is not a valid G2 point", ErrMalformed, it.name)
			}
		}
	}
	return nil
}

func readG1s(f *binfile.File, s binfile.Section) ([]bn254.G1Affine, error) {
	out := make([]bn254.G1Affine, s.Size/g1Size)
	err := f.ForEachRecord(s, g1Size, func(first int, b []byte) error {
		for i := 0; i < len(b)/g1Size; i++ {
			if !decodeG1(&out[first+i], b[i*g1Size:(i+1)*g1Size]) {
				return fmt.Errorf("%w: point %d has a coordinate not below the field modulus", ErrMalformed, first+i)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if bad := firstBad(len(out), func(i int) bool { return out[i].IsOnCurve() }); bad >= 0 {
		return nil, fmt.Errorf("%w: point %d is not on the curve", ErrMalformed, bad)
	}
	return out, nil
}

func readG2s(f *binfile.File, s binfile.Section) ([]bn254.G2Affine, error) {
	out := make([]bn254.G2Affine, s.Size/g2Size)
	err := f.ForEachRecord(s, g2Size, func(first int, b []byte) error {
		for i := 0; i < len(b)/g2Size; i++ {
			if !decodeG2(&out[first+i], b[i*g2Size:(i+1)*g2Size]) {
				return fmt.Errorf("%w: point %d has a coordinate not below the field modulus", ErrMalformed, first+i)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if bad := firstBad(len(out), func(i int) bool { return out[i].IsOnCurve() }); bad >= 0 {
		return nil, fmt.Errorf("%w: point %d is not on the curve", ErrMalformed, bad)
	}
	return out, nil
}

// firstBad runs ok over [0,n) in parallel and returns some failing index, or
// -1 if all pass. (IsOnCurve accepts the point at infinity.)
func firstBad(n int, ok func(int) bool) int {
	var bad atomic.Int64
	bad.Store(-1)
	parallel.Execute(n, func(start, end int) {
		for i := start; i < end; i++ {
			if !ok(i) {
				bad.CompareAndSwap(-1, int64(i))
				return
			}
		}
	})
	return int(bad.Load())
}

func readCoefs(f *binfile.File, s binfile.Section, h *Header) ([]Coef, error) {
	out := make([]Coef, s.Size/coefSize)
	// The file's bytes, read as a Montgomery element, are value*R; a
	// Montgomery product with 1 (the element whose internal form is 1, i.e.
	// R^-1) removes that R.
	rInv := fr.Element{1, 0, 0, 0}
	err := f.ForEachRecord(s, coefSize, func(first int, b []byte) error {
		for i := 0; i < len(b)/coefSize; i++ {
			c := &out[first+i]
			var err error
			if c.Matrix, c.Constraint, c.Signal, c.Value, err = h.CheckCoef(first+i, b[i*coefSize:(i+1)*coefSize]); err != nil {
				return err
			}
			c.Value.Mul(&c.Value, &rInv)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CheckCoef decodes coefficient record i (see DecodeCoef) and checks it
// against the header: matrix A or B, constraint inside the domain, signal
// a wire, value below r. Errors wrap ErrMalformed.
func (h *Header) CheckCoef(i int, rec []byte) (matrix, constraint, signal uint32, raw fr.Element, err error) {
	matrix, constraint, signal, raw, ok := DecodeCoef(rec)
	switch {
	case matrix != MatrixA && matrix != MatrixB:
		err = fmt.Errorf("%w: coefficient %d: matrix %d is neither A (0) nor B (1)", ErrMalformed, i, matrix)
	case constraint >= h.DomainSize:
		err = fmt.Errorf("%w: coefficient %d: constraint %d outside the domain of %d", ErrMalformed, i, constraint, h.DomainSize)
	case signal >= h.NVars:
		err = fmt.Errorf("%w: coefficient %d: signal %d of %d", ErrMalformed, i, signal, h.NVars)
	case !ok:
		err = fmt.Errorf("%w: coefficient %d: value not below the field modulus", ErrMalformed, i)
	}
	return
}

// fpModulus is BN254's base field modulus q as little-endian 64-bit limbs
// (checked against gnark-crypto in the tests).
func fpModulus() [4]uint64 {
	return [4]uint64{0x3c208c16d87cfd47, 0x97816a916871ca8d, 0xb85045b68181585d, 0x30644e72e131a029}
}

// frModulus is BN254's scalar field modulus r as little-endian 64-bit limbs.
func frModulus() [4]uint64 {
	return [4]uint64{0x43e1f593f0000001, 0x2833e84879b97091, 0xb85045b68181585d, 0x30644e72e131a029}
}

// limbsFromLE loads 32 little-endian bytes into limbs and reports whether the
// value is below modulus.
func limbsFromLE(z *[4]uint64, b []byte, modulus [4]uint64) bool {
	_ = b[31]
	for i := range 4 {
		z[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	for i := 3; i >= 0; i-- {
		if z[i] != modulus[i] {
			return z[i] < modulus[i]
		}
	}
	return false
}

func putLimbs(b []byte, z *[4]uint64) {
	for i := range 4 {
		binary.LittleEndian.PutUint64(b[8*i:], z[i])
	}
}

// decodeG1 loads a point from its Montgomery little-endian encoding (the
// same limbs gnark-crypto keeps in memory); false if a coordinate is not
// canonical. A nil b (short header) is also false.
func decodeG1(p *bn254.G1Affine, b []byte) bool {
	if len(b) != g1Size {
		return false
	}
	return limbsFromLE((*[4]uint64)(&p.X), b[0:], fpModulus()) &&
		limbsFromLE((*[4]uint64)(&p.Y), b[n8:], fpModulus())
}

func decodeG2(p *bn254.G2Affine, b []byte) bool {
	if len(b) != g2Size {
		return false
	}
	return limbsFromLE((*[4]uint64)(&p.X.A0), b[0:], fpModulus()) &&
		limbsFromLE((*[4]uint64)(&p.X.A1), b[n8:], fpModulus()) &&
		limbsFromLE((*[4]uint64)(&p.Y.A0), b[2*n8:], fpModulus()) &&
		limbsFromLE((*[4]uint64)(&p.Y.A1), b[3*n8:], fpModulus())
}

func encodeG1(b []byte, p *bn254.G1Affine) {
	putLimbs(b[0:], (*[4]uint64)(&p.X))
	putLimbs(b[n8:], (*[4]uint64)(&p.Y))
}

func encodeG2(b []byte, p *bn254.G2Affine) {
	putLimbs(b[0:], (*[4]uint64)(&p.X.A0))
	putLimbs(b[n8:], (*[4]uint64)(&p.X.A1))
	putLimbs(b[2*n8:], (*[4]uint64)(&p.Y.A0))
	putLimbs(b[3*n8:], (*[4]uint64)(&p.Y.A1))
}

// Write writes k as a version 1 .zkey that snarkjs and rapidsnark accept.
// Section 10 records zero MPC contributions; its 64-byte hash is SHA-512 of
// the preceding sections (snarkjs's circuit hash needs the powers of tau,
// which a key not made from a ceremony does not have).
func Write(w io.Writer, k *Key) error {
	if err := k.validateShape(); err != nil {
		return err
	}
	hw := sha512.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, hw), 1<<20)
	// The hash covers sections 1..9; flush before writing section 10.
	if err := binfile.WriteHeader(bw, "zkey", 1, 10); err != nil {
		return err
	}
	var u4 [4]byte
	u32 := func(v uint32) { binary.LittleEndian.PutUint32(u4[:], v); bw.Write(u4[:]) }
	var g1b [g1Size]byte
	var g2b [g2Size]byte
	g1 := func(p *bn254.G1Affine) { encodeG1(g1b[:], p); bw.Write(g1b[:]) }
	g2 := func(p *bn254.G2Affine) { encodeG2(g2b[:], p); bw.Write(g2b[:]) }
	g1s := func(id uint32, ps []bn254.G1Affine) {
		binfile.WriteSectionHeader(bw, id, uint64(len(ps))*g1Size)
		for i := range ps {
			g1(&ps[i])
		}
	}

	binfile.WriteSectionHeader(bw, secProtocol, 4)
	u32(ProtocolGroth16)

	binfile.WriteSectionHeader(bw, secHeader, headerSize)
	u32(n8)
	bw.Write(binfile.LittleEndian(fp.Modulus(), n8))
	u32(n8)
	bw.Write(binfile.LittleEndian(fr.Modulus(), n8))
	u32(k.NVars)
	u32(k.NPublic)
	u32(k.DomainSize)
	g1(&k.Alpha1)
	g1(&k.Beta1)
	g2(&k.Beta2)
	g2(&k.Gamma2)
	g1(&k.Delta1)
	g2(&k.Delta2)

	g1s(secIC, k.IC)

	binfile.WriteSectionHeader(bw, secCoefs, 4+uint64(len(k.Coefs))*coefSize)
	u32(uint32(len(k.Coefs)))
	rv := rFactor()
	var cb [coefSize]byte
	for i := range k.Coefs {
		encodeCoef(cb[:], &k.Coefs[i], &rv)
		bw.Write(cb[:])
	}

	g1s(secA, k.A)
	g1s(secB1, k.B1)
	binfile.WriteSectionHeader(bw, secB2, uint64(len(k.B2))*g2Size)
	for i := range k.B2 {
		g2(&k.B2[i])
	}
	g1s(secC, k.C)
	g1s(secH, k.H)
	if err := bw.Flush(); err != nil {
		return err
	}

	sum := hw.Sum(nil)
	bw = bufio.NewWriter(w)
	binfile.WriteSectionHeader(bw, secContrib, uint64(len(sum))+4)
	bw.Write(sum)
	u4 = [4]byte{}
	bw.Write(u4[:]) // no contributions
	return bw.Flush()
}

func (k *Key) validateShape() error {
	nv, np := int(k.NVars), int(k.NPublic)
	switch {
	case nv < np+1:
		return fmt.Errorf("zkey: %d wires cannot hold %d public signals", nv, np)
	case k.DomainSize < 2 || bits.OnesCount32(k.DomainSize) != 1 || k.DomainSize > MaxDomainSize:
		return fmt.Errorf("zkey: domain size %d is not a power of two in [2, 2^27]", k.DomainSize)
	case len(k.IC) != np+1:
		return fmt.Errorf("zkey: %d IC points, want %d", len(k.IC), np+1)
	case len(k.A) != nv || len(k.B1) != nv || len(k.B2) != nv:
		return fmt.Errorf("zkey: A/B1/B2 have %d/%d/%d points, want %d", len(k.A), len(k.B1), len(k.B2), nv)
	case len(k.C) != nv-np-1:
		return fmt.Errorf("zkey: %d C points, want %d", len(k.C), nv-np-1)
	case len(k.H) != int(k.DomainSize):
		return fmt.Errorf("zkey: %d H points, want %d", len(k.H), k.DomainSize)
	case uint64(len(k.Coefs)) > 1<<32-1:
		return fmt.Errorf("zkey: %d coefficients is too many", len(k.Coefs))
	}
	for i := range k.Coefs {
		c := &k.Coefs[i]
		if c.Matrix > MatrixB || c.Constraint >= k.DomainSize || c.Signal >= k.NVars {
			return fmt.Errorf("zkey: coefficient %d (matrix %d, constraint %d, signal %d) is out of range", i, c.Matrix, c.Constraint, c.Signal)
		}
	}
	return nil
}

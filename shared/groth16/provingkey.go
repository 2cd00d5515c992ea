package groth16

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr/fft"

	"github.com/openpassport/prover-fleet/shared/groth16/zkey"
)

// ProvingKey is a Groth16 proving key ready for Prove: points in
// gnark-crypto affine form, coefficients grouped by matrix and sorted by
// constraint, H in the order the FFT produces. Load it once and share it: it
// is read-only and safe for concurrent Prove calls.
type ProvingKey struct {
	nVars, nPublic, domainSize int

	alpha1, beta1, delta1 bn254.G1Affine
	beta2, delta2         bn254.G2Affine

	a, b1, c bases[bn254.G1Affine]
	b2       bases[bn254.G2Affine]
	hRev     []bn254.G1Affine // H in bit-reversed index order

	coefsA, coefsB []coef // sorted by constraint

	domain     *fft.Domain
	cosetShift fr.Element // primitive 2n-th root of unity: the odd coset of the n domain

	vk *VerifyingKey

	warm atomic.Pointer[warmSet] // set by Warm
}

// bases are the points of one MSM. Wires that appear nowhere in a matrix
// have the point at infinity (a third of B2 in a Poseidon chain); when
// there are enough of them the points are stored without them and idx
// says which witness value goes with each.
type bases[P any] struct {
	pts []P
	idx []uint32 // nil: pts[i] goes with scalar i
}

// compact drops points at infinity when they are at least 1/16 of pts.
func compact[P any](pts []P, isInf func(*P) bool) bases[P] {
	n := 0
	for i := range pts {
		if isInf(&pts[i]) {
			n++
		}
	}
	if n*16 < len(pts) {
		return bases[P]{pts: pts}
	}
	b := bases[P]{pts: make([]P, 0, len(pts)-n), idx: make([]uint32, 0, len(pts)-n)}
	for i := range pts {
		if !isInf(&pts[i]) {
			b.pts = append(b.pts, pts[i])
			b.idx = append(b.idx, uint32(i))
		}
	}
	return b
}

// scalars returns the witness values that go with b.pts.
func (b *bases[P]) scalars(w []fr.Element) []fr.Element {
	if b.idx == nil {
		return w
	}
	out := make([]fr.Element, len(b.idx))
	for i, j := range b.idx {
		out[i] = w[j]
	}
	return out
}

type coef struct {
	constraint, signal uint32
	value              fr.Element
}

// LoadProvingKey reads a snarkjs Groth16 .zkey from path. Memory use is
// about the file's size.
func LoadProvingKey(ctx context.Context, path string) (*ProvingKey, error) {
	k, err := zkey.ReadFile(ctx, path)
	if err != nil {
		return nil, err
	}
	return NewProvingKey(k)
}

// NewProvingKey prepares k for proving. It takes ownership of k: k.H is
// permuted in place and k.Coefs released, so k must not be used afterwards.
func NewProvingKey(k *zkey.Key) (*ProvingKey, error) {
	n := int(k.DomainSize)
	if n < 2 || n > zkey.MaxDomainSize || n&(n-1) != 0 {
		return nil, fmt.Errorf("groth16: domain size %d is not a power of two in [2, 2^27]", n)
	}
	nv, np := int(k.NVars), int(k.NPublic)
	if nv < np+1 || len(k.IC) != np+1 || len(k.A) != nv || len(k.B1) != nv || len(k.B2) != nv ||
		len(k.C) != nv-np-1 || len(k.H) != n {
		return nil, fmt.Errorf("groth16: proving key sections do not match its header")
	}
	pk := &ProvingKey{
		nVars: nv, nPublic: np, domainSize: n,
		alpha1: k.Alpha1, beta1: k.Beta1, delta1: k.Delta1,
		beta2: k.Beta2, delta2: k.Delta2,
		a:  compact(k.A, (*bn254.G1Affine).IsInfinity),
		b1: compact(k.B1, (*bn254.G1Affine).IsInfinity),
		b2: compact(k.B2, (*bn254.G2Affine).IsInfinity),
		c:  compact(k.C, (*bn254.G1Affine).IsInfinity),
	}
	nA := 0
	for i := range k.Coefs {
		c := &k.Coefs[i]
		if c.Constraint >= uint32(n) || c.Signal >= uint32(nv) || c.Matrix > zkey.MatrixB {
			return nil, fmt.Errorf("groth16: coefficient %d is out of range", i)
		}
		if c.Matrix == zkey.MatrixA {
			nA++
		}
	}
	pk.coefsA = make([]coef, 0, nA)
	pk.coefsB = make([]coef, 0, len(k.Coefs)-nA)
	for i := range k.Coefs {
		c := &k.Coefs[i]
		e := coef{constraint: c.Constraint, signal: c.Signal, value: c.Value}
		if c.Matrix == zkey.MatrixA {
			pk.coefsA = append(pk.coefsA, e)
		} else {
			pk.coefsB = append(pk.coefsB, e)
		}
	}
	k.Coefs = nil // ours now; let the collector have the file's copy
	// snarkjs writes coefficients in constraint order already; sorting keeps
	// any other order correct (field addition commutes) and lets Prove split
	// the work by constraint ranges.
	byConstraint := func(x, y coef) int { return int(x.constraint) - int(y.constraint) }
	slices.SortStableFunc(pk.coefsA, byConstraint)
	slices.SortStableFunc(pk.coefsB, byConstraint)

	fft.BitReverse(k.H)
	pk.hRev = k.H

	var err error
	if pk.cosetShift, err = fr.Generator(uint64(2 * n)); err != nil {
		return nil, fmt.Errorf("groth16: domain 2*%d: %w", n, err)
	}
	// No precomputed twiddles: they would cost 4 field elements per domain
	// point for the key's whole life; building them per FFT is cheap.
	pk.domain = fft.NewDomain(uint64(n), fft.WithoutPrecompute())

	if pk.vk, err = NewVerifyingKey(k.Alpha1, k.Beta2, k.Gamma2, k.Delta2, k.IC); err != nil {
		return nil, fmt.Errorf("groth16: proving key's verifying part: %w", err)
	}
	return pk, nil
}

// VerifyingKey returns the verifying key embedded in the proving key (the
// same one snarkjs's "zkey export verificationkey" exports).
func (pk *ProvingKey) VerifyingKey() *VerifyingKey { return pk.vk }

// NVars is the number of witness values a proof needs (wire 0 included).
func (pk *ProvingKey) NVars() int { return pk.nVars }

// NPublic is the number of public signals.
func (pk *ProvingKey) NPublic() int { return pk.nPublic }

// DomainSize is the size of the evaluation domain (a power of two).
func (pk *ProvingKey) DomainSize() int { return pk.domainSize }

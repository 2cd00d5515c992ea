package groth16

import (
	"context"
	"fmt"
	"slices"

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

	a, b1, c []bn254.G1Affine
	b2       []bn254.G2Affine
	hRev     []bn254.G1Affine // H in bit-reversed index order

	coefsA, coefsB []coef // sorted by constraint

	domain     *fft.Domain
	cosetShift fr.Element // primitive 2n-th root of unity: the odd coset of the n domain

	vk *VerifyingKey
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
// permuted in place and must not be used afterwards.
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
		a: k.A, b1: k.B1, b2: k.B2, c: k.C,
	}
	for i := range k.Coefs {
		c := &k.Coefs[i]
		if c.Constraint >= uint32(n) || c.Signal >= uint32(nv) {
			return nil, fmt.Errorf("groth16: coefficient %d is out of range", i)
		}
		e := coef{constraint: c.Constraint, signal: c.Signal, value: c.Value}
		switch c.Matrix {
		case zkey.MatrixA:
			pk.coefsA = append(pk.coefsA, e)
		case zkey.MatrixB:
			pk.coefsB = append(pk.coefsB, e)
		default:
			return nil, fmt.Errorf("groth16: coefficient %d has matrix %d", i, c.Matrix)
		}
	}
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

package groth16

import (
	"context"
	"fmt"
	"math/big"
	"runtime"
	"sort"

	"github.com/consensys/gnark-crypto/ecc"
	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr/fft"
	"github.com/consensys/gnark-crypto/parallel"
)

// Prove computes a Groth16 proof for witness (all wire values, wire 0 the
// constant one, as read from a .wtns file) and returns it with the public
// signals witness[1..nPublic].
//
// Before returning, Prove verifies the proof against the key's own
// verifying key. The key has no C matrix (snarkjs keys never do), so this
// is how an unsatisfying witness is caught: its proof fails the pairing
// check, and Prove returns ErrUnsatisfied and no proof. ctx is checked
// between phases, and inside the MSMs of a key warmed with tables.
//
// Prove uses all CPUs (gnark-crypto's default) and is safe for concurrent
// use with the same key.
func Prove(ctx context.Context, pk *ProvingKey, witness []fr.Element) (*Proof, PublicSignals, error) {
	if len(witness) != pk.nVars {
		return nil, nil, fmt.Errorf("%w: witness has %d values, key needs %d", ErrWitnessSize, len(witness), pk.nVars)
	}
	if !witness[0].IsOne() {
		return nil, nil, fmt.Errorf("%w: wire 0 is not one", ErrUnsatisfied)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}

	var warm warmSet // no tables, gnark-crypto's MultiExp, until Warm has run
	if w := pk.warm.Load(); w != nil {
		warm = *w
	}

	// Phase 1: A·w and B·w on the domain, C = A∘B, then A·B−C on the odd
	// coset of the 2n domain.
	h := pk.quotientEvals(witness, warm.domain)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}

	// Phase 2: multi-scalar multiplications.
	cfg := ecc.MultiExpConfig{}
	var aw, b1w, cw, hw bn254.G1Jac
	var b2w bn254.G2Jac
	private := witness[pk.nPublic+1:]
	msms := []func() error{
		func() error { return warm.a.multiExp(ctx, &aw, pk.a.pts, pk.a.scalars(witness), cfg) },
		func() error { return warm.b1.multiExp(ctx, &b1w, pk.b1.pts, pk.b1.scalars(witness), cfg) },
		func() error { return warm.b2.multiExp(ctx, &b2w, pk.b2.pts, pk.b2.scalars(witness), cfg) },
		func() error { return warm.c.multiExp(ctx, &cw, pk.c.pts, pk.c.scalars(private), cfg) },
		func() error { return warm.h.multiExp(ctx, &hw, pk.hRev, h, cfg) },
	}
	for _, m := range msms {
		if err := m(); err != nil {
			return nil, nil, fmt.Errorf("groth16: multi-scalar multiplication: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
	}

	// Phase 3: blind with random r, s (crypto/rand inside SetRandom).
	var r, s fr.Element
	if _, err := r.SetRandom(); err != nil {
		return nil, nil, fmt.Errorf("groth16: random r: %w", err)
	}
	if _, err := s.SetRandom(); err != nil {
		return nil, nil, fmt.Errorf("groth16: random s: %w", err)
	}
	var rb, sb, rsb big.Int
	r.BigInt(&rb)
	s.BigInt(&sb)
	var rs fr.Element
	rs.Mul(&r, &s)
	rs.BigInt(&rsb)

	// A = alpha1 + Σ w_i A_i + r·delta1
	var piA, t bn254.G1Jac
	piA.FromAffine(&pk.alpha1)
	piA.AddAssign(&aw)
	t.FromAffine(&pk.delta1)
	t.ScalarMultiplication(&t, &rb)
	piA.AddAssign(&t)

	// B = beta2 + Σ w_i B2_i + s·delta2 (and the same in G1 for C)
	var piB, t2 bn254.G2Jac
	piB.FromAffine(&pk.beta2)
	piB.AddAssign(&b2w)
	t2.FromAffine(&pk.delta2)
	t2.ScalarMultiplication(&t2, &sb)
	piB.AddAssign(&t2)

	var b1 bn254.G1Jac
	b1.FromAffine(&pk.beta1)
	b1.AddAssign(&b1w)
	t.FromAffine(&pk.delta1)
	t.ScalarMultiplication(&t, &sb)
	b1.AddAssign(&t)

	// C = Σ_private w_i C_i + H + s·A + r·B1 − r·s·delta1
	var piC bn254.G1Jac
	piC.Set(&cw)
	piC.AddAssign(&hw)
	t.ScalarMultiplication(&piA, &sb)
	piC.AddAssign(&t)
	t.ScalarMultiplication(&b1, &rb)
	piC.AddAssign(&t)
	t.FromAffine(&pk.delta1)
	t.ScalarMultiplication(&t, &rsb)
	piC.SubAssign(&t)

	proof := &Proof{}
	proof.A.FromJacobian(&piA)
	proof.B.FromJacobian(&piB)
	proof.C.FromJacobian(&piC)
	public := append(PublicSignals(nil), witness[1:pk.nPublic+1]...)

	if err := pk.vk.Verify(proof, public); err != nil {
		return nil, nil, fmt.Errorf("%w: the proof does not verify (%w)", ErrUnsatisfied, err)
	}
	return proof, public, nil
}

// quotientEvals returns A·B−C evaluated at the odd points w_2n^(2i+1) of the
// 2n domain, in bit-reversed order of i (matching pk.hRev).
func (pk *ProvingKey) quotientEvals(w []fr.Element, domain *fft.Domain) []fr.Element {
	n := pk.domainSize
	a := make([]fr.Element, n)
	b := make([]fr.Element, n)
	c := make([]fr.Element, n)
	evalMatrix(pk.coefsA, w, a)
	evalMatrix(pk.coefsB, w, b)
	parallel.Execute(n, func(start, end int) {
		for i := start; i < end; i++ {
			c[i].Mul(&a[i], &b[i])
		}
	})
	if domain == nil {
		domain = pk.domain
	}
	for _, p := range [][]fr.Element{a, b, c} {
		pk.toOddCoset(domain, p)
	}
	parallel.Execute(n, func(start, end int) {
		for i := start; i < end; i++ {
			a[i].Mul(&a[i], &b[i]).Sub(&a[i], &c[i])
		}
	})
	return a
}

// toOddCoset turns evaluations on the n domain (natural order) into
// evaluations at g·w_n^i, g the 2n-th root of unity, in bit-reversed order.
func (pk *ProvingKey) toOddCoset(domain *fft.Domain, p []fr.Element) {
	fft.BitReverse(p)
	domain.FFTInverse(p, fft.DIT) // coefficients, natural order
	g := pk.cosetShift
	parallel.Execute(len(p), func(start, end int) {
		var gi fr.Element
		gi.Exp(g, big.NewInt(int64(start)))
		for i := start; i < end; i++ {
			p[i].Mul(&p[i], &gi)
			gi.Mul(&gi, &g)
		}
	})
	domain.FFT(p, fft.DIF) // evaluations at g·w^i, bit-reversed
}

// evalMatrix sets out[c] = Σ value·w[signal] over the coefficients of
// constraint c. coefs are sorted by constraint, so workers own disjoint
// constraint ranges.
func evalMatrix(coefs []coef, w []fr.Element, out []fr.Element) {
	if len(coefs) == 0 {
		return
	}
	tasks := runtime.NumCPU() * 4
	bounds := make([]int, 0, tasks+1)
	bounds = append(bounds, 0)
	for k := 1; k < tasks; k++ {
		limit := uint32(uint64(len(out)) * uint64(k) / uint64(tasks))
		bounds = append(bounds, sort.Search(len(coefs), func(i int) bool { return coefs[i].constraint >= limit }))
	}
	bounds = append(bounds, len(coefs))
	parallel.Execute(tasks, func(start, end int) {
		var t fr.Element
		for k := start; k < end; k++ {
			for i := bounds[k]; i < bounds[k+1]; i++ {
				c := &coefs[i]
				t.Mul(&c.value, &w[c.signal])
				out[c.constraint].Add(&out[c.constraint], &t)
			}
		}
	})
}

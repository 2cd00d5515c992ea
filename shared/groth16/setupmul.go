package groth16

import (
	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fp"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/parallel"
)

// Fixed-base batch scalar multiplication for DevSetup (key generation only;
// the prover does not use it). setupMulG2, in setupmul_g2.go, is generated
// from this file.
//
// Every product s·G is a sum of numWindows(c) table entries ±d·2^(c·k)·G
// (signed c-bit digits, see fixedbase.go). The sums are done in affine
// coordinates, a chunk of scalars at a time, one window at a time: the
// chunk's additions of one window share a single field inversion
// (Montgomery's trick), so an addition costs about 6 field multiplications
// instead of the 11 of a Jacobian mixed addition, and no conversion to affine
// is left at the end. Zero digits (and zero scalars, common in the A and B
// columns) cost nothing.

//go:generate sh -c "{ echo '// Code generated from setupmul.go by go generate; DO NOT EDIT.'; echo; sed -e '/^\\/\\/go:generate/d' -e 's/G1/G2/g' -e 's/g1/g2/g' -e 's/fp\\.Element/bn254.E2/g' -e '/ecc\\/bn254\\/fp\"/d' setupmul.go; } > setupmul_g2.go && gofmt -w setupmul_g2.go"

// setupTableG1 holds d·2^(c·k)·base for every window k and digit d.
type setupTableG1 struct {
	c     uint
	nw    int
	table [][]bn254.G1Affine // table[k][d-1], d = 1..2^(c-1)
}

// newSetupTableG1 makes the table for about n products of base.
func newSetupTableG1(base *bn254.G1Affine, n int) *setupTableG1 {
	c := fixedBaseWindow(n)
	nw := numWindows(c)
	half := 1 << (c - 1)
	table := make([][]bn254.G1Affine, nw)
	starts := make([]bn254.G1Jac, nw)
	starts[0].FromAffine(base)
	for k := 1; k < nw; k++ {
		starts[k] = starts[k-1]
		for range c {
			starts[k].DoubleAssign()
		}
	}
	parallel.Execute(nw, func(lo, hi int) {
		for k := lo; k < hi; k++ {
			row := make([]bn254.G1Jac, half)
			row[0] = starts[k]
			var b bn254.G1Affine
			b.FromJacobian(&starts[k])
			for d := 1; d < half; d++ {
				row[d] = row[d-1]
				row[d].AddMixed(&b)
			}
			table[k] = make([]bn254.G1Affine, half)
			setupToAffineG1(row, table[k])
		}
	})
	return &setupTableG1{c: c, nw: nw, table: table}
}

// mul sets out[i] = scalars[i]·base, in affine form (the zero point for a
// zero scalar).
func (t *setupTableG1) mul(scalars []fr.Element, out []bn254.G1Affine) {
	if len(out) != len(scalars) {
		panic("groth16: setupTableG1.mul: length mismatch")
	}
	c, nw, table := t.c, t.nw, t.table
	nChunks := (len(scalars) + setupChunk - 1) / setupChunk
	parallel.Execute(nChunks, func(lo, hi int) {
		var (
			digits  = make([]int32, setupChunk*nw)
			set     = make([]bool, setupChunk)
			pending = make([]int32, setupChunk)
			addend  = make([]bn254.G1Affine, setupChunk)
			prefix  = make([]fp.Element, setupChunk)
		)
		for ch := lo; ch < hi; ch++ {
			from, to := ch*setupChunk, min((ch+1)*setupChunk, len(scalars))
			acc := out[from:to]
			for i := range acc {
				signedDigits(&scalars[from+i], c, digits[i*nw:(i+1)*nw])
				set[i] = false
			}
			for k := range nw {
				// Collect this window's additions; the first non-zero digit
				// of a scalar sets its point, a rare x1 = x2 (a doubling or a
				// cancellation) is done on its own.
				m := 0
				for i := range acc {
					d := digits[i*nw+k]
					if d == 0 {
						continue
					}
					var t bn254.G1Affine
					if d > 0 {
						t = table[k][d-1]
					} else {
						t.Neg(&table[k][-d-1])
					}
					switch {
					case !set[i]:
						acc[i], set[i] = t, true
					case acc[i].X.Equal(&t.X):
						var j bn254.G1Jac
						j.FromAffine(&acc[i])
						j.AddMixed(&t)
						acc[i].FromJacobian(&j)
						set[i] = !acc[i].IsInfinity()
					default:
						pending[m], addend[m] = int32(i), t
						m++
					}
				}
				if m == 0 {
					continue
				}
				// prefix[j] = Π_{l<j} (x_t − x_acc); one inversion for all.
				var run fp.Element
				run.SetOne()
				for j := range m {
					prefix[j] = run
					var dx fp.Element
					dx.Sub(&addend[j].X, &acc[pending[j]].X)
					run.Mul(&run, &dx)
				}
				run.Inverse(&run)
				for j := m - 1; j >= 0; j-- {
					p, t := &acc[pending[j]], &addend[j]
					var dx, inv, lambda, x3, y3 fp.Element
					dx.Sub(&t.X, &p.X)
					inv.Mul(&run, &prefix[j])
					run.Mul(&run, &dx)
					// λ = (y2 − y1)/(x2 − x1), x3 = λ² − x1 − x2, y3 = λ(x1 − x3) − y1
					lambda.Sub(&t.Y, &p.Y)
					lambda.Mul(&lambda, &inv)
					x3.Square(&lambda)
					x3.Sub(&x3, &p.X).Sub(&x3, &t.X)
					y3.Sub(&p.X, &x3)
					y3.Mul(&y3, &lambda)
					p.Y.Sub(&y3, &p.Y)
					p.X = x3
				}
			}
			for i := range acc {
				if !set[i] {
					acc[i] = bn254.G1Affine{}
				}
			}
		}
	})
}

// setupToAffineG1 converts in (no point at infinity) to affine in out with
// one field inversion.
func setupToAffineG1(in []bn254.G1Jac, out []bn254.G1Affine) {
	var run fp.Element
	run.SetOne()
	for i := range in {
		out[i].X = run // prefix product
		run.Mul(&run, &in[i].Z)
	}
	run.Inverse(&run)
	for i := len(in) - 1; i >= 0; i-- {
		var zInv, zInv2 fp.Element
		zInv.Mul(&out[i].X, &run)
		run.Mul(&run, &in[i].Z)
		zInv2.Square(&zInv)
		out[i].X.Mul(&in[i].X, &zInv2)
		out[i].Y.Mul(&in[i].Y, &zInv2).Mul(&out[i].Y, &zInv)
	}
}

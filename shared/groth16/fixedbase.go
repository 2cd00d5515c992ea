package groth16

import (
	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/parallel"
)

// Fixed-base batch scalar multiplication for key generation: many scalars
// times one generator. gnark-crypto's BatchScalarMultiplication does ~256
// doublings per scalar; with a table of d·2^(c·k)·G for every c-bit window k
// and signed digit d, each product is just one mixed addition per window
// (16 for c = 16), at the price of building the table once.

// scalarBits is the width of BN254 scalars (r < 2^254).
const scalarBits = 254

// fixedBaseWindow picks the window width minimising
// windows·(scalars + table entries per window).
func fixedBaseWindow(n int) uint {
	best, bestCost := uint(2), ^uint64(0)
	for c := uint(2); c <= 16; c++ {
		w := uint64(numWindows(c))
		cost := w * (uint64(n) + 1<<(c-1))
		if cost < bestCost {
			best, bestCost = c, cost
		}
	}
	return best
}

// numWindows is how many signed c-bit digits a scalar below 2^254 needs:
// the top digit must absorb the last carry, which holds when c·w >= 255.
func numWindows(c uint) int { return int((scalarBits + 1 + c - 1) / c) }

// signedDigits recodes s into numWindows(c) digits in (-2^(c-1), 2^(c-1)].
func signedDigits(s *fr.Element, c uint, out []int32) {
	b := s.Bits() // regular (non-Montgomery) little-endian limbs
	mask := uint64(1)<<c - 1
	carry := uint64(0)
	for k := range out {
		pos := uint(k) * c
		limb, off := pos/64, pos%64
		var v uint64
		if limb < 4 {
			v = b[limb] >> off
			if off+c > 64 && limb+1 < 4 {
				v |= b[limb+1] << (64 - off)
			}
		}
		v = (v & mask) + carry
		if v > 1<<(c-1) {
			out[k] = int32(int64(v) - int64(1)<<c)
			carry = 1
		} else {
			out[k] = int32(v)
			carry = 0
		}
	}
}

// batchMulG1 returns s_i·base for every scalar, in affine form.
func batchMulG1(base *bn254.G1Affine, scalars []fr.Element) []bn254.G1Affine {
	out := make([]bn254.G1Affine, len(scalars))
	if len(scalars) == 0 {
		return out
	}
	c := fixedBaseWindow(len(scalars))
	nw := numWindows(c)
	half := 1 << (c - 1)
	// table[k][d-1] = d·2^(c·k)·base, d = 1..2^(c-1)
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
			table[k] = bn254.BatchJacobianToAffineG1(row)
		}
	})
	const chunk = 1 << 12
	nChunks := (len(scalars) + chunk - 1) / chunk
	parallel.Execute(nChunks, func(lo, hi int) {
		digits := make([]int32, nw)
		acc := make([]bn254.G1Jac, chunk)
		for ch := lo; ch < hi; ch++ {
			from, to := ch*chunk, min((ch+1)*chunk, len(scalars))
			for i := from; i < to; i++ {
				signedDigits(&scalars[i], c, digits)
				p := &acc[i-from]
				p.X.SetOne()
				p.Y.SetOne()
				p.Z.SetZero()
				for k, d := range digits {
					switch {
					case d > 0:
						p.AddMixed(&table[k][d-1])
					case d < 0:
						var q bn254.G1Affine
						q.Neg(&table[k][-d-1])
						p.AddMixed(&q)
					}
				}
			}
			copy(out[from:to], bn254.BatchJacobianToAffineG1(acc[:to-from]))
		}
	})
	return out
}

// batchMulG2 is batchMulG1 for G2.
func batchMulG2(base *bn254.G2Affine, scalars []fr.Element) []bn254.G2Affine {
	out := make([]bn254.G2Affine, len(scalars))
	if len(scalars) == 0 {
		return out
	}
	c := fixedBaseWindow(len(scalars))
	nw := numWindows(c)
	half := 1 << (c - 1)
	table := make([][]bn254.G2Affine, nw)
	starts := make([]bn254.G2Jac, nw)
	starts[0].FromAffine(base)
	for k := 1; k < nw; k++ {
		starts[k] = starts[k-1]
		for range c {
			starts[k].DoubleAssign()
		}
	}
	parallel.Execute(nw, func(lo, hi int) {
		for k := lo; k < hi; k++ {
			row := make([]bn254.G2Jac, half)
			row[0] = starts[k]
			var b bn254.G2Affine
			b.FromJacobian(&starts[k])
			for d := 1; d < half; d++ {
				row[d] = row[d-1]
				row[d].AddMixed(&b)
			}
			table[k] = batchJacobianToAffineG2(row)
		}
	})
	const chunk = 1 << 12
	nChunks := (len(scalars) + chunk - 1) / chunk
	parallel.Execute(nChunks, func(lo, hi int) {
		digits := make([]int32, nw)
		acc := make([]bn254.G2Jac, chunk)
		for ch := lo; ch < hi; ch++ {
			from, to := ch*chunk, min((ch+1)*chunk, len(scalars))
			for i := from; i < to; i++ {
				signedDigits(&scalars[i], c, digits)
				p := &acc[i-from]
				p.X.SetOne()
				p.Y.SetOne()
				p.Z.SetZero()
				for k, d := range digits {
					switch {
					case d > 0:
						p.AddMixed(&table[k][d-1])
					case d < 0:
						var q bn254.G2Affine
						q.Neg(&table[k][-d-1])
						p.AddMixed(&q)
					}
				}
			}
			copy(out[from:to], batchJacobianToAffineG2(acc[:to-from]))
		}
	})
	return out
}

// batchJacobianToAffineG2 converts with one E2 inversion in all
// (Montgomery's trick); gnark-crypto only offers this for G1.
func batchJacobianToAffineG2(pts []bn254.G2Jac) []bn254.G2Affine {
	out := make([]bn254.G2Affine, len(pts))
	prefix := make([]bn254.E2, len(pts))
	var acc bn254.E2
	acc.SetOne()
	for i := range pts {
		if pts[i].Z.IsZero() {
			continue
		}
		prefix[i] = acc
		acc.Mul(&acc, &pts[i].Z)
	}
	var inv bn254.E2
	inv.Inverse(&acc)
	for i := len(pts) - 1; i >= 0; i-- {
		p := &pts[i]
		if p.Z.IsZero() {
			continue // (0,0) is infinity in affine form
		}
		var zInv, zInv2 bn254.E2
		zInv.Mul(&inv, &prefix[i])
		inv.Mul(&inv, &p.Z)
		zInv2.Square(&zInv)
		out[i].X.Mul(&p.X, &zInv2)
		out[i].Y.Mul(&p.Y, &zInv2).Mul(&out[i].Y, &zInv)
	}
	return out
}

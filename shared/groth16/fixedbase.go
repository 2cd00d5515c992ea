package groth16

import "github.com/consensys/gnark-crypto/ecc/bn254/fr"

// Fixed-base batch scalar multiplication for key generation: many scalars
// times one generator. gnark-crypto's BatchScalarMultiplication does ~256
// doublings per scalar; with a table of d·2^(c·k)·G for every c-bit window k
// and signed digit d, each product is just one mixed addition per window
// (16 for c = 16), at the price of building the table once. The
// multiplication itself, batchMulG1, is in g1.go (and batchMulG2 in g2.go,
// generated from it).

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

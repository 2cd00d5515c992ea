package groth16

import (
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
)

// setupScalars are edge cases (zero, one, r−1, powers of two, digits at the
// window limits) and random scalars, more than one chunk of them.
func setupScalars(t *testing.T, window int) []fr.Element {
	t.Helper()
	var s []fr.Element
	add := func(b *big.Int) {
		var e fr.Element
		e.SetBigInt(b)
		s = append(s, e)
	}
	r := fr.Modulus()
	for _, v := range []int64{0, 1, 2, 3, -1, -2} {
		add(new(big.Int).Mod(big.NewInt(v), r))
	}
	for _, sh := range []uint{15, 16, 17, 31, 32, 128, 252, 253} {
		add(new(big.Int).Lsh(big.NewInt(1), sh))
		add(new(big.Int).Sub(r, new(big.Int).Lsh(big.NewInt(1), sh)))
	}
	// A doubling inside a product: with M = 2^(c·(windows−1)), the scalar
	// s = r − 2·(r mod M) has the lower part x = −(r mod M) and top part
	// s − x = r + x ≡ x, so the last addition adds a point to itself.
	c := fixedBaseWindow(window)
	m := new(big.Int).Lsh(big.NewInt(1), c*uint(numWindows(c)-1))
	x := new(big.Int).Mod(r, m)
	add(new(big.Int).Sub(r, new(big.Int).Lsh(x, 1)))
	rng := rand.New(rand.NewPCG(1, 2))
	for len(s) < setupChunk+300 {
		var e fr.Element
		e.SetUint64(rng.Uint64())
		if len(s)%3 != 0 {
			e.SetRandom()
		}
		s = append(s, e)
	}
	// The same point twice in one chunk, and a scalar and its negation.
	s = append(s, s[len(s)-1], s[len(s)-2])
	var neg fr.Element
	neg.Neg(&s[len(s)-3])
	return append(s, neg)
}

func TestSetupMul(t *testing.T) {
	t.Parallel()
	_, _, g1, g2 := bn254.Generators()
	for _, window := range []int{setupChunk, 1 << 20} { // small and large windows
		scalars := setupScalars(t, window)
		got1 := make([]bn254.G1Affine, len(scalars))
		newSetupTableG1(&g1, window).mul(scalars, got1)
		got2 := make([]bn254.G2Affine, len(scalars))
		newSetupTableG2(&g2, window).mul(scalars, got2)
		for i := range scalars {
			var b big.Int
			scalars[i].BigInt(&b)
			var w1 bn254.G1Affine
			w1.ScalarMultiplication(&g1, &b)
			var w2 bn254.G2Affine
			w2.ScalarMultiplication(&g2, &b)
			if !got1[i].Equal(&w1) {
				t.Fatalf("window for %d: G1 product %d (%s) differs", window, i, b.String())
			}
			if !got2[i].Equal(&w2) {
				t.Fatalf("window for %d: G2 product %d (%s) differs", window, i, b.String())
			}
		}
	}
}

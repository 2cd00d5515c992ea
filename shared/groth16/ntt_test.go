package groth16

import (
	"fmt"
	"slices"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr/fft"
)

// TestNTTMatchesGnark checks the quotient's transforms against
// gnark-crypto's FFT at sizes below, at and above the cache block.
func TestNTTMatchesGnark(t *testing.T) {
	t.Parallel()
	for _, logN := range []int{1, 2, 3, 4, 5, 9, 13, 14, 16} {
		n := 1 << logN
		t.Run(fmt.Sprintf("2^%d", logN), func(t *testing.T) {
			t.Parallel()
			tr := newNTT(n, make([]fr.Element, nttScratch(n)))
			d := fft.NewDomain(uint64(n))
			a := make([]fr.Element, n)
			for i := range a {
				a[i].SetRandom()
			}
			// dif with ω: evaluations, bit-reversed (gnark's DIF too).
			got, want := slices.Clone(a), slices.Clone(a)
			tr.dif(got, tr.fwd)
			d.FFT(want, fft.DIF)
			if !slices.Equal(got, want) {
				t.Fatal("dif differs from gnark's FFT (DIF)")
			}
			// dit with ω^-1 of bit-reversed evaluations: n·coefficients.
			tr.dit(got, tr.inv)
			var nInv fr.Element
			nInv.SetUint64(uint64(n))
			nInv.Inverse(&nInv)
			for i := range got {
				got[i].Mul(&got[i], &nInv)
			}
			if !slices.Equal(got, a) {
				t.Fatal("dit(inverse) does not undo dif")
			}
			// dif with ω^-1 then dit with ω is n times the identity.
			tr.dif(got, tr.inv)
			tr.dit(got, tr.fwd)
			for i := range got {
				got[i].Mul(&got[i], &nInv)
			}
			if !slices.Equal(got, a) {
				t.Fatal("dit(dif(a)) is not n·a")
			}
		})
	}
}

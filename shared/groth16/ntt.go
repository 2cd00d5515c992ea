package groth16

import (
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr/fft"
)

// ntt is the quotient's number-theoretic transform over a domain of size n
// (a power of two): radix-2, in place, with the butterflies of each stage
// as fr.Vector operations (AVX-512 IFMA where the CPU has it) and the
// stages run block by block once a block fits in the cache.
//
// Twiddles are laid out per stage: the stage whose butterflies are m apart
// uses tw[m-1+j] = ω_2m^j, j < m (n-1 elements in all).
type ntt struct {
	n        int
	fwd, inv []fr.Element // twiddles of ω_n and ω_n^-1
	coset    []fr.Element // see cosetTable (filled by the quotient)
	tmp      []fr.Element // nttChunk temporaries
}

// nttBlock is the size of the blocks the inner stages run on (256 KiB).
const nttBlock = 1 << 13

// nttChunk is how many butterflies one vector operation covers.
const nttChunk = 256

// nttScratch is the memory the transforms use, in elements: the two
// twiddle tables, the coset factors and a chunk of temporaries.
func nttScratch(n int) int { return 3*n + nttChunk }

// newNTT builds the twiddles for size n into mem (nttScratch(n) elements).
func newNTT(n int, mem []fr.Element) *ntt {
	t := &ntt{n: n, fwd: mem[:n], inv: mem[n : 2*n], coset: mem[2*n : 3*n], tmp: mem[3*n : 3*n+nttChunk]}
	if n < 2 {
		return t
	}
	w, err := fr.Generator(uint64(n))
	if err != nil {
		panic(err) // n is a power of two below 2^28: checked at load
	}
	var wInv fr.Element
	wInv.Inverse(&w)
	buildTwiddles(t.fwd, w, n)
	buildTwiddles(t.inv, wInv, n)
	return t
}

// buildTwiddles fills tw's stages from w, a primitive n-th root of unity.
func buildTwiddles(tw []fr.Element, w fr.Element, n int) {
	// The largest stage (m = n/2) holds w^j; each smaller one every other
	// element of the next.
	var one fr.Element
	one.SetOne()
	powers(tw[n/2-1:n-1], one, w)
	for m := n / 4; m >= 1; m /= 2 {
		up := tw[2*m-1 : 4*m-1]
		st := tw[m-1 : 2*m-1]
		for j := range st {
			st[j] = up[2*j]
		}
	}
}

// powers sets dst[i] = start·w^i: the first nttChunk one by one, then
// each chunk as the previous one times w^nttChunk, a vector operation.
func powers(dst []fr.Element, start, w fr.Element) {
	if len(dst) == 0 {
		return
	}
	dst[0] = start
	first := min(len(dst), nttChunk)
	for i := 1; i < first; i++ {
		dst[i].Mul(&dst[i-1], &w)
	}
	if first == len(dst) {
		return
	}
	var step fr.Element
	step.Mul(&dst[first-1], &w) // start·w^chunk
	var inv fr.Element
	inv.Inverse(&start)
	step.Mul(&step, &inv) // w^chunk
	for k := first; k < len(dst); k += nttChunk {
		e := min(k+nttChunk, len(dst))
		v := fr.Vector(dst[k:e])
		v.ScalarMul(dst[k-nttChunk:e-nttChunk], &step)
	}
}

// cosetTable fills tab[p] = g^rev(p)/n: the factors that move the
// bit-reversed coefficients of an inverse transform (times n) to the coset
// g·ω^i.
func cosetTable(tab []fr.Element, g fr.Element) {
	var f fr.Element
	f.SetUint64(uint64(len(tab)))
	f.Inverse(&f)
	powers(tab, f, g)
	fft.BitReverse(tab)
}

// dif transforms a (natural order) into its evaluations on the domain of
// tw's root, in bit-reversed order (decimation in frequency, no scaling).
func (t *ntt) dif(a []fr.Element, tw []fr.Element) {
	n, tmp := len(a), t.tmp
	m := n / 2
	for ; m >= 1 && 2*m > nttBlock; m /= 2 {
		for b := 0; b < n; b += 2 * m {
			difStage(a[b:b+2*m], tw[m-1:2*m-1], tmp)
		}
	}
	if m < 1 {
		return
	}
	for b := 0; b < n; b += 2 * m {
		blk := a[b : b+2*m]
		for mm := m; mm >= 1; mm /= 2 {
			for bb := 0; bb < len(blk); bb += 2 * mm {
				difStage(blk[bb:bb+2*mm], tw[mm-1:2*mm-1], tmp)
			}
		}
	}
}

// dit is dif's mirror: a in bit-reversed order to natural order
// (decimation in time, no scaling).
func (t *ntt) dit(a []fr.Element, tw []fr.Element) {
	n, tmp := len(a), t.tmp
	top := min(n/2, nttBlock/2)
	for b := 0; b < n; b += 2 * top {
		blk := a[b : b+2*top]
		for mm := 1; mm <= top; mm *= 2 {
			for bb := 0; bb < len(blk); bb += 2 * mm {
				ditStage(blk[bb:bb+2*mm], tw[mm-1:2*mm-1], tmp)
			}
		}
	}
	for m := 2 * top; m <= n/2; m *= 2 {
		for b := 0; b < n; b += 2 * m {
			ditStage(a[b:b+2*m], tw[m-1:2*m-1], tmp)
		}
	}
}

// difStage does one block's butterflies m = len(w) apart:
// (u, v) → (u+v, (u-v)·w_j).
func difStage(blk, w, tmp []fr.Element) {
	m := len(w)
	lo, hi := blk[:m], blk[m:]
	if m < 16 {
		for j := range m {
			var d fr.Element
			d.Sub(&lo[j], &hi[j])
			lo[j].Add(&lo[j], &hi[j])
			if j == 0 {
				hi[j] = d
			} else {
				hi[j].Mul(&d, &w[j])
			}
		}
		return
	}
	for s := 0; s < m; s += nttChunk {
		e := min(s+nttChunk, m)
		d := fr.Vector(tmp[:e-s])
		l, h := fr.Vector(lo[s:e]), fr.Vector(hi[s:e])
		d.Sub(l, h)
		l.Add(l, h)
		h.Mul(d, w[s:e])
	}
}

// ditStage: (u, v) → (u + v·w_j, u - v·w_j).
func ditStage(blk, w, tmp []fr.Element) {
	m := len(w)
	lo, hi := blk[:m], blk[m:]
	if m < 16 {
		for j := range m {
			var p fr.Element
			if j == 0 {
				p = hi[j]
			} else {
				p.Mul(&hi[j], &w[j])
			}
			hi[j].Sub(&lo[j], &p)
			lo[j].Add(&lo[j], &p)
		}
		return
	}
	for s := 0; s < m; s += nttChunk {
		e := min(s+nttChunk, m)
		p := fr.Vector(tmp[:e-s])
		l, h := fr.Vector(lo[s:e]), fr.Vector(hi[s:e])
		p.Mul(h, w[s:e])
		h.Sub(l, p)
		l.Add(l, p)
	}
}

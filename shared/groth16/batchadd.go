package groth16

import (
	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fp"
)

// Batched affine additions: n independent bucket += point additions that
// share one field inversion (Montgomery's trick). λ = (y2-y1)/(x2-x1),
// x3 = λ² - x1 - x2, y3 = λ(x1-x3) - y1. The callers guarantee x1 ≠ x2.
//
// In G1 the coordinates are kept as columns so that every step is a vector
// operation of gnark-crypto's fp.Vector, which uses AVX-512 IFMA (eight
// multiplications at once) where the CPU has it: the prefix products of the
// inversion run as eight interleaved chains, one per vector lane, and the
// rest over the whole batch; G2's E2 coordinates are two columns each.

// lanes is the width of the interleaved inversion chains (an IFMA vector).
const lanes = 16

// batchG1 holds one batch: bucket coordinates (bx, by, replaced by the
// sums), point coordinates (px, py), and room for the inversion.
type batchG1 struct {
	bx, by, px, py [batchMax]fp.Element
	num, pre, lam  [batchMax]fp.Element
}

func (b *batchG1) set(j int, bucket, p *bn254.G1Affine) {
	b.bx[j], b.by[j] = bucket.X, bucket.Y
	b.px[j], b.py[j] = p.X, p.Y
}

func (b *batchG1) get(j int, bucket *bn254.G1Affine) {
	bucket.X, bucket.Y = b.bx[j], b.by[j]
}

// run adds the n points into their buckets.
func (b *batchG1) run(n int) {
	m := (n + lanes - 1) &^ (lanes - 1) // padded to whole vectors
	num := fp.Vector(b.num[:m])
	head := num[:n]
	head.Sub(b.px[:n], b.bx[:n])
	for j := n; j < m; j++ {
		num[j].SetOne() // padding: does not change the chains
	}
	// Forward: pre[j] = Π num[i] over i < j in j's lane.
	var acc [lanes]fp.Element
	for l := range acc {
		acc[l].SetOne()
	}
	av := fp.Vector(acc[:])
	for k := 0; k < m; k += lanes {
		copy(b.pre[k:k+lanes], acc[:])
		av.Mul(av, num[k:k+lanes])
	}
	// Invert the lanes' products with one inversion.
	var prefix [lanes]fp.Element
	var all fp.Element
	all.SetOne()
	for l := range acc {
		prefix[l] = all
		all.Mul(&all, &acc[l])
	}
	all.Inverse(&all)
	for l := lanes - 1; l >= 0; l-- {
		var inv fp.Element
		inv.Mul(&prefix[l], &all)
		all.Mul(&all, &acc[l])
		acc[l] = inv
	}
	// Backward: inverses of num into pre.
	for k := m - lanes; k >= 0; k -= lanes {
		pre := fp.Vector(b.pre[k : k+lanes])
		pre.Mul(pre, av)
		av.Mul(av, num[k:k+lanes])
	}
	inv := fp.Vector(b.pre[:n])
	lam := fp.Vector(b.lam[:n])
	bx, by := fp.Vector(b.bx[:n]), fp.Vector(b.by[:n])
	px, py := fp.Vector(b.px[:n]), fp.Vector(b.py[:n])
	lam.Sub(py, by)
	lam.Mul(lam, inv)
	x := fp.Vector(b.num[:n]) // reuse
	x.Mul(lam, lam)
	x.Sub(x, bx)
	x.Sub(x, px)
	px.Sub(bx, x) // x1 - x3 (px is free)
	px.Mul(px, lam)
	by.Sub(px, by)
	copy(bx, x)
}

// e2s are columns of E2 elements (c0 + c1·u, u² = -1).
type e2s struct{ a0, a1 fp.Vector }

func (z e2s) slice(i, j int) e2s { return e2s{z.a0[i:j], z.a1[i:j]} }

func (z e2s) sub(x, y e2s) {
	z.a0.Sub(x.a0, y.a0)
	z.a1.Sub(x.a1, y.a1)
}

// mul sets z = x·y (Karatsuba: three multiplications); t is scratch of
// z's length (four columns), and z may be x or y.
func (z e2s) mul(x, y e2s, t [4]fp.Vector) {
	t[0].Mul(x.a0, y.a0)
	t[1].Mul(x.a1, y.a1)
	t[2].Add(x.a0, x.a1)
	t[3].Add(y.a0, y.a1)
	t[2].Mul(t[2], t[3])
	z.a0.Sub(t[0], t[1])
	z.a1.Sub(t[2], t[0])
	z.a1.Sub(z.a1, t[1])
}

// square sets z = x² = (x0+x1)(x0-x1) + 2·x0·x1·u.
func (z e2s) square(x e2s, t [4]fp.Vector) {
	t[0].Add(x.a0, x.a1)
	t[1].Sub(x.a0, x.a1)
	t[2].Mul(x.a0, x.a1)
	z.a0.Mul(t[0], t[1])
	z.a1.Add(t[2], t[2])
}

// batchG2 is batchG1 for G2: the same steps over E2 columns.
type batchG2 struct {
	bx0, bx1, by0, by1, px0, px1, py0, py1 [batchMax]fp.Element
	num0, num1, pre0, pre1, lam0, lam1     [batchMax]fp.Element
	t                                      [4][batchMax]fp.Element
}

func (b *batchG2) set(j int, bucket, p *bn254.G2Affine) {
	b.bx0[j], b.bx1[j], b.by0[j], b.by1[j] = bucket.X.A0, bucket.X.A1, bucket.Y.A0, bucket.Y.A1
	b.px0[j], b.px1[j], b.py0[j], b.py1[j] = p.X.A0, p.X.A1, p.Y.A0, p.Y.A1
}

func (b *batchG2) get(j int, bucket *bn254.G2Affine) {
	bucket.X.A0, bucket.X.A1, bucket.Y.A0, bucket.Y.A1 = b.bx0[j], b.bx1[j], b.by0[j], b.by1[j]
}

func (b *batchG2) run(n int) {
	m := (n + lanes - 1) &^ (lanes - 1)
	tmp := func(k int) [4]fp.Vector {
		return [4]fp.Vector{b.t[0][:k], b.t[1][:k], b.t[2][:k], b.t[3][:k]}
	}
	num := e2s{b.num0[:m], b.num1[:m]}
	num.slice(0, n).sub(e2s{b.px0[:n], b.px1[:n]}, e2s{b.bx0[:n], b.bx1[:n]})
	for j := n; j < m; j++ {
		num.a0[j].SetOne()
		num.a1[j].SetZero()
	}
	var acc0, acc1 [lanes]fp.Element
	for l := range acc0 {
		acc0[l].SetOne()
	}
	acc := e2s{acc0[:], acc1[:]}
	t8 := tmp(lanes)
	for k := 0; k < m; k += lanes {
		copy(b.pre0[k:k+lanes], acc0[:])
		copy(b.pre1[k:k+lanes], acc1[:])
		acc.mul(acc, num.slice(k, k+lanes), t8)
	}
	var lane [lanes]bn254.E2
	for l := range lane {
		lane[l].A0, lane[l].A1 = acc0[l], acc1[l]
	}
	var prefix [lanes]bn254.E2
	var all bn254.E2
	all.SetOne()
	for l := range lane {
		prefix[l] = all
		all.Mul(&all, &lane[l])
	}
	all.Inverse(&all)
	for l := lanes - 1; l >= 0; l-- {
		var inv bn254.E2
		inv.Mul(&prefix[l], &all)
		all.Mul(&all, &lane[l])
		acc0[l], acc1[l] = inv.A0, inv.A1
	}
	pre := e2s{b.pre0[:m], b.pre1[:m]}
	for k := m - lanes; k >= 0; k -= lanes {
		p := pre.slice(k, k+lanes)
		p.mul(p, acc, t8)
		acc.mul(acc, num.slice(k, k+lanes), t8)
	}
	t := tmp(n)
	inv := pre.slice(0, n)
	lam := e2s{b.lam0[:n], b.lam1[:n]}
	bx, by := e2s{b.bx0[:n], b.bx1[:n]}, e2s{b.by0[:n], b.by1[:n]}
	px, py := e2s{b.px0[:n], b.px1[:n]}, e2s{b.py0[:n], b.py1[:n]}
	lam.sub(py, by)
	lam.mul(lam, inv, t)
	x := num.slice(0, n)
	x.square(lam, t)
	x.sub(x, bx)
	x.sub(x, px)
	px.sub(bx, x)
	px.mul(px, lam, t)
	by.sub(px, by)
	copy(bx.a0, x.a0)
	copy(bx.a1, x.a1)
}

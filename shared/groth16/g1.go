package groth16

import (
	"context"
	"runtime"
	"sync"
	"unsafe"

	"github.com/consensys/gnark-crypto/ecc"
	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/parallel"
)

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
			table[k] = make([]bn254.G1Affine, half)
			batchToAffineG1(row, table[k])
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
			batchToAffineG1(acc[:to-from], out[from:to])
		}
	})
	return out
}

// warmG1 holds tables[i·w+j] = 2^(c·j)·P_i for the n bases of one MSM
// (w = numWindows(c)): the multiples of one base are adjacent, so a pass over
// the scalars reads the tables in order.
type warmG1 struct {
	c      uint
	n      int
	tables []bn254.G1Affine
	pool   sync.Pool // *accG1
}

// newWarmG1 builds the window tables of pts for window width c.
func newWarmG1(pts []bn254.G1Affine, c uint) *warmG1 {
	n, nw := len(pts), numWindows(c)
	t := &warmG1{c: c, n: n, tables: make([]bn254.G1Affine, nw*n)}
	parallel.Execute(n, func(lo, hi int) {
		cur := make([]bn254.G1Jac, hi-lo)
		aff := make([]bn254.G1Affine, hi-lo)
		for i := lo; i < hi; i++ {
			t.tables[i*nw] = pts[i]
			cur[i-lo].FromAffine(&pts[i])
		}
		for j := 1; j < nw; j++ {
			for k := range cur {
				for range c {
					cur[k].DoubleAssign()
				}
			}
			batchToAffineG1(cur, aff)
			for k := range aff {
				t.tables[(lo+k)*nw+j] = aff[k]
			}
		}
	})
	return t
}

// warmBytesG1 is the memory of newWarmG1's tables for n bases and window c.
func warmBytesG1(n int, c uint) int64 {
	return int64(n) * int64(numWindows(c)) * int64(unsafe.Sizeof(bn254.G1Affine{}))
}

// multiExp sets res = Σ scalars[i]·points[i]: with t's tables when t is not
// nil (t must have been built from points), with gnark-crypto's MultiExp
// otherwise. No points give the point at infinity.
//
// With tables the MSM stops early when ctx ends (checked every few thousand
// scalars) and returns ctx's error; gnark-crypto's MultiExp cannot be
// stopped.
func (t *warmG1) multiExp(ctx context.Context, res *bn254.G1Jac, points []bn254.G1Affine, scalars []fr.Element, cfg ecc.MultiExpConfig) error {
	if len(points) == 0 {
		res.X.SetOne()
		res.Y.SetOne()
		res.Z.SetZero()
		return nil
	}
	if t != nil {
		r, err := t.msm(ctx, scalars)
		if err != nil {
			return err
		}
		*res = r
		return nil
	}
	_, err := res.MultiExp(points, scalars, cfg)
	return err
}

// msm returns Σ scalars[i]·P_i. Scalars equal to 0 cost nothing and those
// equal to 1 one addition.
//
// The CPUs share the buckets rather than the bases: task g of T owns the
// buckets k ≡ g (mod T), scans every scalar and adds only the digits that
// fall in its buckets. Each task then reduces 1/T of the buckets (one
// reduction per MSM in all, not one per task), the work is balanced however
// the scalars are distributed over the bases, and each task's buckets are a
// T-th of the cache footprint. Task g's share is
// Σ_m (T·m+g+1)·B_m = T·W + (g+1−T)·S, with W = Σ_m (m+1)·B_m and S = Σ_m B_m
// from its running-sum reduction.
func (t *warmG1) msm(ctx context.Context, scalars []fr.Element) (bn254.G1Jac, error) {
	n := t.n
	if len(scalars) != n {
		panic("groth16: warm MSM scalar count does not match its tables")
	}
	nb := 1 << (t.c - 1)
	tasks := max(1, min(runtime.GOMAXPROCS(0), nb/64, n/256))
	results := make([]xyzzG1, tasks)
	var wg sync.WaitGroup
	for g := range tasks {
		wg.Go(func() {
			acc, _ := t.pool.Get().(*accG1)
			if acc == nil || len(acc.buckets) != (nb+tasks-1)/tasks {
				acc = newAccG1((nb + tasks - 1) / tasks)
			}
			nw := numWindows(t.c)
			digits := make([]int32, nw)
			tt, gg := int32(tasks), int32(g)
			for i := range n {
				if i%warmCheck == 0 && ctx.Err() != nil {
					acc.clearAll()
					t.pool.Put(acc)
					return
				}
				s := &scalars[i]
				row := t.tables[i*nw : (i+1)*nw]
				if s.IsZero() || row[0].IsInfinity() {
					continue // (P_i at infinity: so are all its multiples)
				}
				if s.IsOne() {
					if g == 0 {
						acc.ones.addMixed(&row[0])
					}
					continue
				}
				signedDigits(s, t.c, digits)
				for j, d := range digits {
					neg := d < 0
					if neg {
						d = -d
					}
					if d == 0 || (d-1)%tt != gg {
						continue
					}
					acc.push((d-1)/tt, &row[j], neg)
				}
			}
			acc.finish()
			w, sum := acc.reduce()
			w.mulSmall(tasks)
			sum.mulSmall(g + 1 - tasks)
			w.add(&sum)
			w.add(&acc.ones)
			results[g] = w
			acc.clearAll()
			t.pool.Put(acc)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return bn254.G1Jac{}, err
	}
	for g := 1; g < tasks; g++ {
		results[0].add(&results[g])
	}
	return results[0].jac(), nil
}

// accG1 adds points into 2^(c-1) affine buckets, batching the additions so
// that one field inversion serves warmBatch of them. A bucket can be in a
// batch once; a point for a bucket already in the batch waits in a queue,
// and when the queue is full (skewed digits) the waiting points go to the
// bucket's extended-Jacobian twin in overflow.
type accG1 struct {
	buckets  []bn254.G1Affine
	overflow []xyzzG1 // allocated on first use
	ones     xyzzG1   // Σ P_i over the scalars equal to 1
	busy     []uint64 // bitset: bucket in the current batch

	idx   [warmBatch]int32
	pts   [warmBatch]bn254.G1Affine
	num   [warmBatch]fieldG1 // X differences, then their inverses
	pre   [warmBatch]fieldG1 // prefix products for the batch inversion
	count int

	qIdx []int32
	qPts []bn254.G1Affine
}

func newAccG1(nb int) *accG1 {
	return &accG1{
		buckets: make([]bn254.G1Affine, nb),
		busy:    make([]uint64, (nb+63)/64),
		qIdx:    make([]int32, 0, warmQueue),
		qPts:    make([]bn254.G1Affine, 0, warmQueue),
	}
}

// clearAll empties every bucket, the batch and the queue for the next MSM.
func (a *accG1) clearAll() {
	clear(a.buckets)
	clear(a.overflow)
	clear(a.busy)
	a.ones = xyzzG1{}
	a.count = 0
	a.qIdx, a.qPts = a.qIdx[:0], a.qPts[:0]
}

func (a *accG1) isBusy(k int32) bool { return a.busy[k>>6]&(1<<(k&63)) != 0 }

// slow adds q to bucket k's extended-Jacobian twin.
func (a *accG1) slow(k int32, q *bn254.G1Affine) {
	if a.overflow == nil {
		a.overflow = make([]xyzzG1, len(a.buckets))
	}
	a.overflow[k].addMixed(q)
}

// push adds p (negated when neg) to bucket k.
func (a *accG1) push(k int32, p *bn254.G1Affine, neg bool) {
	var q bn254.G1Affine
	if neg {
		q.Neg(p)
	} else {
		q = *p
	}
	if a.isBusy(k) {
		if len(a.qIdx) == warmQueue {
			for i := range a.qIdx {
				a.slow(a.qIdx[i], &a.qPts[i])
			}
			a.qIdx, a.qPts = a.qIdx[:0], a.qPts[:0]
		}
		a.qIdx = append(a.qIdx, k)
		a.qPts = append(a.qPts, q)
		return
	}
	a.add(k, &q)
}

// add puts q into bucket k, which is not in the current batch.
func (a *accG1) add(k int32, q *bn254.G1Affine) {
	b := &a.buckets[k]
	if b.IsInfinity() {
		*b = *q
		return
	}
	if b.X.Equal(&q.X) {
		// q = ±b: rare; done outside the batch.
		if b.Y.Equal(&q.Y) {
			a.slow(k, q)
			a.slow(k, q)
		}
		*b = bn254.G1Affine{}
		return
	}
	a.busy[k>>6] |= 1 << (k & 63)
	a.idx[a.count] = k
	a.pts[a.count] = *q
	a.count++
	if a.count == warmBatch {
		a.execute()
		a.drainQueue()
	}
}

// execute performs the batched affine additions bucket += point.
func (a *accG1) execute() {
	n := a.count
	if n == 0 {
		return
	}
	for j := range n {
		a.num[j].Sub(&a.pts[j].X, &a.buckets[a.idx[j]].X)
	}
	// Montgomery's batch inversion.
	var acc fieldG1
	acc.SetOne()
	for j := range n {
		a.pre[j] = acc
		acc.Mul(&acc, &a.num[j])
	}
	acc.Inverse(&acc)
	for j := n - 1; j >= 0; j-- {
		var inv fieldG1
		inv.Mul(&a.pre[j], &acc)
		acc.Mul(&acc, &a.num[j])
		a.num[j] = inv
	}
	var lambda, t, x fieldG1
	for j := range n {
		k := a.idx[j]
		b := &a.buckets[k]
		p := &a.pts[j]
		t.Sub(&p.Y, &b.Y)
		lambda.Mul(&t, &a.num[j])
		x.Square(&lambda)
		x.Sub(&x, &b.X)
		x.Sub(&x, &p.X)
		t.Sub(&b.X, &x)
		t.Mul(&lambda, &t)
		b.Y.Sub(&t, &b.Y)
		b.X = x
		a.busy[k>>6] &^= 1 << (k & 63)
	}
	a.count = 0
}

// drainQueue moves waiting points whose bucket is free into the batch.
func (a *accG1) drainQueue() {
	kept := 0
	for i := range a.qIdx {
		k := a.qIdx[i]
		if a.isBusy(k) || a.count == warmBatch-1 {
			a.qIdx[kept], a.qPts[kept] = k, a.qPts[i]
			kept++
			continue
		}
		q := a.qPts[i]
		a.add(k, &q)
	}
	a.qIdx, a.qPts = a.qIdx[:kept], a.qPts[:kept]
}

// finish completes every pending addition.
func (a *accG1) finish() {
	for a.count > 0 || len(a.qIdx) > 0 {
		a.execute()
		a.drainQueue()
		if a.count == 0 && len(a.qIdx) > 0 {
			// The waiting points all share buckets with each other.
			for i := range a.qIdx {
				a.slow(a.qIdx[i], &a.qPts[i])
			}
			a.qIdx, a.qPts = a.qIdx[:0], a.qPts[:0]
		}
	}
}

// reduce returns Σ (k+1)·bucket_k and Σ bucket_k (ones not included).
func (a *accG1) reduce() (weighted, sum xyzzG1) {
	for k := len(a.buckets) - 1; k >= 0; k-- {
		if !a.buckets[k].IsInfinity() {
			sum.addMixed(&a.buckets[k])
		}
		if a.overflow != nil {
			sum.add(&a.overflow[k])
		}
		weighted.add(&sum)
	}
	return weighted, sum
}

// xyzzG1 is a point in extended Jacobian coordinates: x = X/ZZ, y = Y/ZZZ,
// ZZ³ = ZZZ². ZZ = 0 is the point at infinity, so the zero value is it.
// Formulas: hyperelliptic.org/EFD, short Weierstrass a = 0, "xyzz".
type xyzzG1 struct{ X, Y, ZZ, ZZZ fieldG1 }

// addMixed sets p += q (madd-2008-s), q affine and not at infinity.
func (p *xyzzG1) addMixed(q *bn254.G1Affine) {
	if p.ZZ.IsZero() {
		p.X, p.Y = q.X, q.Y
		p.ZZ.SetOne()
		p.ZZZ.SetOne()
		return
	}
	var u2, s2, pp, ppp, qq, r, t fieldG1
	u2.Mul(&q.X, &p.ZZ)
	s2.Mul(&q.Y, &p.ZZZ)
	u2.Sub(&u2, &p.X) // P
	r.Sub(&s2, &p.Y)  // R
	if u2.IsZero() {
		if r.IsZero() {
			p.doubleMixed(q)
			return
		}
		*p = xyzzG1{}
		return
	}
	pp.Square(&u2)
	ppp.Mul(&u2, &pp)
	qq.Mul(&p.X, &pp)
	p.X.Square(&r)
	p.X.Sub(&p.X, &ppp)
	t.Double(&qq)
	p.X.Sub(&p.X, &t)
	qq.Sub(&qq, &p.X)
	t.Mul(&p.Y, &ppp)
	p.Y.Mul(&r, &qq)
	p.Y.Sub(&p.Y, &t)
	p.ZZ.Mul(&p.ZZ, &pp)
	p.ZZZ.Mul(&p.ZZZ, &ppp)
}

// doubleMixed sets p = 2q, q affine (rare: a point added to itself).
func (p *xyzzG1) doubleMixed(q *bn254.G1Affine) {
	p.X, p.Y = q.X, q.Y
	p.ZZ.SetOne()
	p.ZZZ.SetOne()
	p.double()
}

// add sets p += q (add-2008-s).
func (p *xyzzG1) add(q *xyzzG1) {
	if q.ZZ.IsZero() {
		return
	}
	if p.ZZ.IsZero() {
		*p = *q
		return
	}
	var u1, u2, s1, s2, pp, ppp, qq, r, t fieldG1
	u1.Mul(&p.X, &q.ZZ)
	u2.Mul(&q.X, &p.ZZ)
	s1.Mul(&p.Y, &q.ZZZ)
	s2.Mul(&q.Y, &p.ZZZ)
	u2.Sub(&u2, &u1) // P
	r.Sub(&s2, &s1)  // R
	if u2.IsZero() {
		if r.IsZero() {
			p.double()
			return
		}
		*p = xyzzG1{}
		return
	}
	pp.Square(&u2)
	ppp.Mul(&u2, &pp)
	qq.Mul(&u1, &pp)
	p.X.Square(&r)
	p.X.Sub(&p.X, &ppp)
	t.Double(&qq)
	p.X.Sub(&p.X, &t)
	qq.Sub(&qq, &p.X)
	t.Mul(&s1, &ppp)
	p.Y.Mul(&r, &qq)
	p.Y.Sub(&p.Y, &t)
	p.ZZ.Mul(&p.ZZ, &q.ZZ)
	p.ZZ.Mul(&p.ZZ, &pp)
	p.ZZZ.Mul(&p.ZZZ, &q.ZZZ)
	p.ZZZ.Mul(&p.ZZZ, &ppp)
}

// double sets p = 2p (dbl-2008-s-1).
func (p *xyzzG1) double() {
	var u, v, w, s, m, t fieldG1
	u.Double(&p.Y)
	v.Square(&u)
	w.Mul(&u, &v)
	s.Mul(&p.X, &v)
	m.Square(&p.X)
	t.Double(&m)
	m.Add(&m, &t)
	p.X.Square(&m)
	t.Double(&s)
	p.X.Sub(&p.X, &t)
	s.Sub(&s, &p.X)
	t.Mul(&w, &p.Y)
	p.Y.Mul(&m, &s)
	p.Y.Sub(&p.Y, &t)
	p.ZZ.Mul(&p.ZZ, &v)
	p.ZZZ.Mul(&p.ZZZ, &w)
}

// mulSmall sets p = k·p for a small k (double and add; k may be negative).
func (p *xyzzG1) mulSmall(k int) {
	if k < 0 {
		p.Y.Neg(&p.Y)
		k = -k
	}
	if k == 0 {
		*p = xyzzG1{}
		return
	}
	base := *p
	top := 63
	for k>>top&1 == 0 {
		top--
	}
	for b := top - 1; b >= 0; b-- {
		p.double()
		if k>>b&1 == 1 {
			p.add(&base)
		}
	}
}

// jac converts p to gnark-crypto's Jacobian coordinates.
func (p *xyzzG1) jac() bn254.G1Jac {
	var j bn254.G1Jac
	if p.ZZ.IsZero() {
		j.X.SetOne()
		j.Y.SetOne()
		return j
	}
	j.X.Mul(&p.ZZ, &p.X).Mul(&j.X, &p.ZZ)
	j.Y.Mul(&p.ZZZ, &p.Y).Mul(&j.Y, &p.ZZZ)
	j.Z = p.ZZZ
	return j
}

// batchToAffineG1 converts cur to affine in out with one field inversion.
func batchToAffineG1(cur []bn254.G1Jac, out []bn254.G1Affine) {
	var acc fieldG1
	acc.SetOne()
	for i := range cur {
		if cur[i].Z.IsZero() {
			continue
		}
		out[i].X = acc // prefix product
		acc.Mul(&acc, &cur[i].Z)
	}
	acc.Inverse(&acc)
	for i := len(cur) - 1; i >= 0; i-- {
		if cur[i].Z.IsZero() {
			out[i] = bn254.G1Affine{}
			continue
		}
		var zInv, zInv2 fieldG1
		zInv.Mul(&out[i].X, &acc)
		acc.Mul(&acc, &cur[i].Z)
		zInv2.Square(&zInv)
		out[i].X.Mul(&cur[i].X, &zInv2)
		out[i].Y.Mul(&cur[i].Y, &zInv2).Mul(&out[i].Y, &zInv)
	}
}

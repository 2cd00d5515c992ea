package groth16

import (
	"context"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/parallel"

	"github.com/openpassport/prover-fleet/shared/groth16/internal/mmap"
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

// msmG1 is one G1 multi-scalar multiplication of a proof, Pippenger's
// bucket method with signed c-bit digits, cut into jobs that the proof's
// workers share (see msm.go): job (j, r) adds the digits of window j of the
// scalars in point range r into one set of 2^(c-1) affine buckets, with
// batched affine additions, and reduces them to Σ (k+1)·bucket_k.
//
// With window tables (tab, t copies per point: 2^(c·wpp·k)·P for k < t, the
// first being P itself) the scalar's windows are cut into t pieces of wpp
// windows and job j also takes window j of every piece with the matching
// copy, so only wpp windows are reduced instead of all of them.
type msmG1 struct {
	pts     []bn254.G1Affine
	scalars []fr.Element // regular (not Montgomery) form, one per point
	kinds   []uint8      // scalar classes (kindZero, kindOne, kindOther); nil: all kindOther
	wd      windowing
	tab     *tableG1 // nil: no tables (t = 1)
	wpp     int      // windows per piece: wd.w without tables
	ranges  int      // point ranges per window
	res     []xyzzG1 // per job: wpp·ranges
	ones    xyzzG1   // Σ P_i over the scalars equal to 1
}

// newMSMG1 plans an MSM over pts with window width c (and tab's copies).
func newMSMG1(pts []bn254.G1Affine, scalars []fr.Element, kinds []uint8, c uint, tab *tableG1, ranges int) *msmG1 {
	m := &msmG1{pts: pts, scalars: scalars, kinds: kinds, tab: tab, ranges: max(1, ranges)}
	if tab != nil {
		c = tab.c
	}
	m.wd = newWindowing(c)
	m.wpp = m.wd.w
	if tab != nil {
		m.wpp = tab.wpp
	}
	m.res = make([]xyzzG1, m.wpp*m.ranges)
	return m
}

func (m *msmG1) jobs() int { return m.wpp * m.ranges }

// run does one job: window job/ranges over the points of range
// job%ranges.
func (m *msmG1) run(ctx context.Context, acc *accG1, job int) error {
	j, r := job/m.ranges, job%m.ranges
	n := len(m.pts)
	lo, hi := n*r/m.ranges, n*(r+1)/m.ranges
	nb := m.wd.buckets()
	acc.reset(nb)
	t := 1
	if m.tab != nil {
		t = m.tab.t
	}
	// The top window's digits are small (a few bits): alone in a job, they
	// would crowd a few buckets and collide in every batch. Spread them
	// over copies of their bucket range, chosen by point index.
	period, copies := int32(nb), int32(1)
	if t == 1 && j == m.wd.w-1 {
		p := int32(1)
		for p < m.wd.topDigit() {
			p <<= 1
		}
		period, copies = p, int32(nb)/p
	}
	for i := lo; i < hi; i++ {
		if (i-lo)%checkEvery == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if m.kinds != nil && m.kinds[i] != kindOther {
			continue
		}
		s := &m.scalars[i]
		for k := range t {
			jj := k*m.wpp + j
			if jj >= m.wd.w {
				break
			}
			d := m.wd.digit(s, jj)
			if d == 0 {
				continue
			}
			var p *bn254.G1Affine
			if k == 0 {
				p = &m.pts[i]
			} else {
				p = &m.tab.pts[i*(t-1)+k-1]
			}
			if p.IsInfinity() {
				break // so are all its multiples
			}
			neg := d < 0
			if neg {
				d = -d
			}
			acc.push(d-1+period*(int32(i)&(copies-1)), p, neg)
		}
	}
	acc.finish()
	m.res[job] = acc.reduce(int(period))
	return nil
}

// sumOnes sets m.ones: the points whose scalar is 1, spread over onesSlots
// buckets in turn so that their batched additions never collide.
func (m *msmG1) sumOnes(ctx context.Context, acc *accG1) error {
	acc.reset(onesSlots)
	slot := int32(0)
	for i := range m.pts {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if m.kinds[i] != kindOne || m.pts[i].IsInfinity() {
			continue
		}
		acc.push(slot, &m.pts[i], false)
		if slot++; slot == onesSlots {
			slot = 0
		}
	}
	acc.finish()
	m.ones = acc.sum()
	return nil
}

// result combines the jobs' sums: Σ_j 2^(c·j)·W_j + ones.
func (m *msmG1) result() bn254.G1Jac {
	var acc xyzzG1
	for j := m.wpp - 1; j >= 0; j-- {
		for range m.wd.c {
			acc.double()
		}
		for r := range m.ranges {
			acc.add(&m.res[j*m.ranges+r])
		}
	}
	acc.add(&m.ones)
	return acc.jac()
}

// tableG1 holds t-1 shifted copies of every base of one MSM:
// pts[i·(t-1)+k-1] = 2^(c·wpp·k)·P_i for k = 1..t-1, in anonymous memory.
type tableG1 struct {
	c      uint
	t, wpp int
	pts    []bn254.G1Affine
}

// tableBytesG1 is the memory of a table of t copies of n bases.
func tableBytesG1(n, t int) int64 { return int64(n) * int64(t-1) * g1Bytes }

// buildTableG1 fills tab.pts from bases, on tasks goroutines under
// mmap.Guard (bases may be a file mapping).
func buildTableG1(ctx context.Context, tab *tableG1, bases []bn254.G1Affine, tasks int) error {
	t := tab.t
	shift := int(tab.c) * tab.wpp
	const chunk = 1 << 10
	nChunks := (len(bases) + chunk - 1) / chunk
	return mmap.GuardParallel(tasks, nChunks, func(lo, hi int) error {
		cur := make([]bn254.G1Jac, chunk)
		aff := make([]bn254.G1Affine, chunk)
		for ch := lo; ch < hi; ch++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			from, to := ch*chunk, min((ch+1)*chunk, len(bases))
			for i := from; i < to; i++ {
				cur[i-from].FromAffine(&bases[i])
			}
			for k := 1; k < t; k++ {
				for i := range to - from {
					for range shift {
						cur[i].DoubleAssign()
					}
				}
				batchToAffineG1(cur[:to-from], aff[:to-from])
				for i := from; i < to; i++ {
					tab.pts[i*(t-1)+k-1] = aff[i-from]
				}
			}
		}
		return nil
	})
}

// accG1 adds points into affine buckets, batching the additions so that one
// field inversion serves up to batchMax of them. A bucket can be in a batch
// once; a point for a bucket already in the batch waits in a queue, and
// when the queue is full (skewed digits) the waiting points go to the
// bucket's extended-Jacobian twin in overflow.
type accG1 struct {
	store    []bn254.G1Affine // bucket storage (scratch memory)
	buckets  []bn254.G1Affine // store[:nb] in use
	overflow []xyzzG1         // allocated on first use, len(store)
	busy     []uint64         // bitset: bucket in the current batch
	batch    int              // additions per inversion

	idx   [batchMax]int32
	bat   batchG1 // the batch's buckets and points (batchadd.go)
	count int

	qIdx []int32
	qPts []bn254.G1Affine

	// The reduction's segment sums and weighted sums, and which segments a
	// batch holds.
	segS, segW [reduceSegments]bn254.G1Affine
	segIdx     [reduceSegments]int32
}

func newAccG1(store []bn254.G1Affine) *accG1 {
	return &accG1{
		store: store,
		busy:  make([]uint64, (len(store)+63)/64),
		qIdx:  make([]int32, 0, queueMax),
		qPts:  make([]bn254.G1Affine, 0, queueMax),
	}
}

// reset empties the accumulator and sizes it for nb buckets.
func (a *accG1) reset(nb int) {
	a.buckets = a.store[:nb]
	clear(a.buckets)
	if a.overflow != nil {
		clear(a.overflow[:nb])
	}
	clear(a.busy[:(nb+63)/64])
	a.batch = batchSize(nb)
	a.count = 0
	a.qIdx, a.qPts = a.qIdx[:0], a.qPts[:0]
}

func (a *accG1) isBusy(k int32) bool { return a.busy[k>>6]&(1<<(k&63)) != 0 }

// slow adds q to bucket k's extended-Jacobian twin.
func (a *accG1) slow(k int32, q *bn254.G1Affine) {
	if a.overflow == nil {
		a.overflow = make([]xyzzG1, len(a.store))
	}
	a.overflow[k].addMixed(q)
}

// push adds p (negated when neg) to bucket k; p is not at infinity.
func (a *accG1) push(k int32, p *bn254.G1Affine, neg bool) {
	var q bn254.G1Affine
	if neg {
		q.Neg(p)
	} else {
		q = *p
	}
	if a.isBusy(k) {
		if len(a.qIdx) == queueMax {
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
	a.bat.set(a.count, b, q)
	a.count++
	if a.count == a.batch {
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
	a.bat.run(n)
	for j := range n {
		k := a.idx[j]
		a.bat.get(j, &a.buckets[k])
		a.busy[k>>6] &^= 1 << (k & 63)
	}
	a.count = 0
}

// drainQueue moves waiting points whose bucket is free into the batch.
func (a *accG1) drainQueue() {
	kept := 0
	for i := range a.qIdx {
		k := a.qIdx[i]
		if a.isBusy(k) || a.count == a.batch-1 {
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

// reduce returns Σ (k mod period + 1)·bucket_k.
//
// The buckets are cut into reduceSegments segments of seg buckets whose
// running sums S_s and weighted sums W_s advance together, one bucket of
// each segment per step: two batches of affine additions per step instead
// of two extended-Jacobian additions per bucket, a third of the cost.
// Then Σ (k mod period + 1)·B_k = Σ_s W_s + seg·Σ_s (s mod period/seg)·S_s.
// Few buckets, a period shorter than a segment (the top window's copies)
// or overflow buckets take the plain way, reduceSerial.
func (a *accG1) reduce(period int) xyzzG1 {
	nb := len(a.buckets)
	segs := reduceSegments
	seg := nb / segs
	if seg < 2 || period < seg || a.overflow != nil {
		w, _ := a.reduceSerial(period)
		return w
	}
	S, W := a.segS[:], a.segW[:]
	clear(S)
	clear(W)
	// step adds src[s] into dst[s] for every segment (dst, src affine).
	step := func(dst []bn254.G1Affine, src func(s int) *bn254.G1Affine) {
		n := 0
		for s := range segs {
			q := src(s)
			d := &dst[s]
			switch {
			case q.IsInfinity():
			case d.IsInfinity():
				*d = *q
			case d.X.Equal(&q.X):
				d.Add(d, q) // doubling or cancelling: rare, done alone
			default:
				a.bat.set(n, d, q)
				a.segIdx[n] = int32(s)
				n++
			}
		}
		a.bat.run(n)
		for j := range n {
			a.bat.get(j, &dst[a.segIdx[j]])
		}
	}
	for i := seg - 1; i >= 0; i-- {
		step(S, func(s int) *bn254.G1Affine { return &a.buckets[s*seg+i] })
		step(W, func(s int) *bn254.G1Affine { return &S[s] })
	}
	var total xyzzG1
	for s := range segs {
		if !W[s].IsInfinity() {
			total.addMixed(&W[s])
		}
	}
	// Σ_s (s mod p)·S_s, p = period/seg: running sums over each period of
	// segments give Σ (s mod p + 1)·S_s; less Σ S_s.
	p := period / seg
	var run, weighted, all xyzzG1
	for s := segs - 1; s >= 0; s-- {
		if !S[s].IsInfinity() {
			run.addMixed(&S[s])
			all.addMixed(&S[s])
		}
		weighted.add(&run)
		if s%p == 0 {
			run = xyzzG1{}
		}
	}
	all.Y.Neg(&all.Y)
	weighted.add(&all)
	for k := seg; k > 1; k >>= 1 {
		weighted.double()
	}
	total.add(&weighted)
	return total
}

// reduceSerial returns Σ (k mod period + 1)·bucket_k, and Σ bucket_k over
// the lowest period buckets, with a running sum.
func (a *accG1) reduceSerial(period int) (weighted, sum xyzzG1) {
	for k := len(a.buckets) - 1; k >= 0; k-- {
		if !a.buckets[k].IsInfinity() {
			sum.addMixed(&a.buckets[k])
		}
		if a.overflow != nil {
			sum.add(&a.overflow[k])
		}
		weighted.add(&sum)
		if k%period == 0 && k > 0 {
			sum = xyzzG1{} // the next copy of the range starts
		}
	}
	return weighted, sum
}

// sum returns Σ bucket_k.
func (a *accG1) sum() xyzzG1 {
	var s xyzzG1
	for k := range a.buckets {
		if !a.buckets[k].IsInfinity() {
			s.addMixed(&a.buckets[k])
		}
		if a.overflow != nil {
			s.add(&a.overflow[k])
		}
	}
	return s
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

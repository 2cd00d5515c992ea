package groth16

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"unsafe"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/openpassport/prover-fleet/shared/groth16/internal/mmap"
	"github.com/openpassport/prover-fleet/shared/groth16/zkey"
)

// Prove computes a Groth16 proof for witness (all wire values, wire 0 the
// constant one, as read from a .wtns file) and returns it with the public
// signals witness[1..nPublic].
//
// Before returning, Prove verifies the proof against the key's own
// verifying key. The key has no C matrix (snarkjs keys never do), so this
// is how an unsatisfying witness is caught: its proof fails the pairing
// check, and Prove returns ErrUnsatisfied and no proof — unless the key is
// at fault: ErrKeyChanged when its file was modified while in use,
// ErrKeyCorrupt when one of its points is invalid (see Validate).
//
// Prove uses every CPU (GOMAXPROCS workers) and, for its duration,
// ProveMemory bytes of memory outside the Go heap. It is safe for
// concurrent use with the same key. ctx is checked between jobs and every
// few thousand points inside them.
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
	warm, err := pk.acquireWarm()
	if err != nil {
		return nil, nil, err
	}
	defer pk.releaseWarm(warm)

	workers := runtime.GOMAXPROCS(0)
	plan := newScratchPlan(pk, warm, workers)
	mem, err := mmap.Alloc(plan.size)
	if err != nil {
		return nil, nil, fmt.Errorf("groth16: proof memory: %w", err)
	}
	defer mmap.Unmap(mem)
	sc := plan.carve(mem)

	// The witness in regular form, for the matrices (see evalCoefs) and
	// the MSMs' digits: a Montgomery product by 1 removes the factor R.
	toRegular(sc.wReg, witness)
	others := classify(sc.wReg, sc.kinds)

	p, err := pk.prove(ctx, warm, sc, others, workers)
	if err != nil {
		if errors.Is(err, mmap.ErrFault) {
			return nil, nil, fmt.Errorf("%w: %w", ErrKeyChanged, err)
		}
		return nil, nil, err
	}
	public := append(PublicSignals(nil), witness[1:pk.nPublic+1]...)
	if err := pk.vk.Verify(p, public); err != nil {
		if kerr := pk.blameKey(ctx); kerr != nil {
			return nil, nil, kerr
		}
		return nil, nil, fmt.Errorf("%w: the proof does not verify (%w)", ErrUnsatisfied, err)
	}
	return p, public, nil
}

// blameKey tells whether a proof that failed its check failed because of
// the key: its file changed, or a point is invalid. A key found valid once
// is not read again.
func (pk *ProvingKey) blameKey(ctx context.Context) error {
	if pk.file != nil && pk.file.changed() {
		return fmt.Errorf("%w: %s", ErrKeyChanged, pk.file.path)
	}
	if pk.valid.Load() {
		return nil
	}
	if err := pk.Validate(ctx); err != nil {
		return err
	}
	pk.valid.Store(true)
	return nil
}

// prove runs the quotient and the five MSMs on workers goroutines and
// assembles the proof.
func (pk *ProvingKey) prove(ctx context.Context, warm *warmSet, sc *scratch, others, workers int) (*Proof, error) {
	np := pk.nPublic
	cw := chooseWindow(others, 1)
	var tabs warmSet
	if warm != nil {
		tabs = *warm
	}
	mA := newMSMG1(pk.a, sc.wReg, sc.kinds, cw, tabs.a, 1)
	mB1 := newMSMG1(pk.b1, sc.wReg, sc.kinds, cw, tabs.b1, 1)
	mB2 := newMSMG2(pk.b2, sc.wReg, sc.kinds, cw, tabs.b2, 1)
	mC := newMSMG1(pk.c, sc.wReg[np+1:], sc.kinds[np+1:], cw, tabs.c, 1)
	mH := newMSMG1(pk.h, sc.b, nil, chooseWindow(pk.domainSize, 1), tabs.h, 1)

	ws := make([]*worker, workers)
	for i := range ws {
		ws[i] = &worker{g1: newAccG1(sc.store1[i]), g2: newAccG2(sc.store2[i])}
	}
	var jobs []job
	for j := range mB2.jobs() {
		jobs = append(jobs, job{run: func(ctx context.Context, w *worker) error { return mB2.run(ctx, w.g2, j) }})
	}
	jobs = append(jobs, job{run: func(ctx context.Context, w *worker) error { return mB2.sumOnes(ctx, w.g2) }})
	for _, m := range []*msmG1{mA, mB1, mC} {
		for j := range m.jobs() {
			jobs = append(jobs, job{run: func(ctx context.Context, w *worker) error { return m.run(ctx, w.g1, j) }})
		}
		jobs = append(jobs, job{run: func(ctx context.Context, w *worker) error { return m.sumOnes(ctx, w.g1) }})
	}
	for j := range mH.jobs() {
		jobs = append(jobs, job{quotient: true, run: func(ctx context.Context, w *worker) error { return mH.run(ctx, w.g1, j) }})
	}
	qTasks := max(1, workers/2)
	quotient := func() error { return pk.quotient(ctx, sc, qTasks) }
	if err := runJobs(ctx, ws, quotient, jobs); err != nil {
		return nil, err
	}
	aw, b1w, cw1, hw := mA.result(), mB1.result(), mC.result(), mH.result()
	b2w := mB2.result()
	return pk.assemble(&aw, &b1w, &b2w, &cw1, &hw)
}

// assemble blinds the MSMs' sums with random r, s into the proof.
func (pk *ProvingKey) assemble(aw, b1w *bn254.G1Jac, b2w *bn254.G2Jac, cw, hw *bn254.G1Jac) (*Proof, error) {
	// crypto/rand inside SetRandom.
	var r, s fr.Element
	if _, err := r.SetRandom(); err != nil {
		return nil, fmt.Errorf("groth16: random r: %w", err)
	}
	if _, err := s.SetRandom(); err != nil {
		return nil, fmt.Errorf("groth16: random s: %w", err)
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
	piA.AddAssign(aw)
	t.FromAffine(&pk.delta1)
	t.ScalarMultiplication(&t, &rb)
	piA.AddAssign(&t)

	// B = beta2 + Σ w_i B2_i + s·delta2 (and the same in G1 for C)
	var piB, t2 bn254.G2Jac
	piB.FromAffine(&pk.beta2)
	piB.AddAssign(b2w)
	t2.FromAffine(&pk.delta2)
	t2.ScalarMultiplication(&t2, &sb)
	piB.AddAssign(&t2)

	var b1 bn254.G1Jac
	b1.FromAffine(&pk.beta1)
	b1.AddAssign(b1w)
	t.FromAffine(&pk.delta1)
	t.ScalarMultiplication(&t, &sb)
	b1.AddAssign(&t)

	// C = Σ_private w_i C_i + H + s·A + r·B1 − r·s·delta1
	var piC bn254.G1Jac
	piC.Set(cw)
	piC.AddAssign(hw)
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
	return proof, nil
}

// quotient computes H's scalars into sc.b: A·B−C evaluated at the odd points
// w_2n^(2i+1) of the 2n domain, natural order, regular form. The A and B
// evaluations on the n domain come from the key's coefficients, C = A·B
// pointwise; each is interpolated (inverse transform), shifted to the odd
// coset and evaluated there.
func (pk *ProvingKey) quotient(ctx context.Context, sc *scratch, tasks int) error {
	a, b, c := sc.a, sc.b, sc.c
	if err := evalCoefs(pk, sc.wReg, a, b, tasks); err != nil {
		return err
	}
	vc := fr.Vector(c)
	vc.Mul(a, b)
	t := newNTT(pk.domainSize, sc.ntt)
	cosetTable(t.coset, pk.cosetShift)
	for _, p := range [][]fr.Element{a, b, c} {
		if err := ctx.Err(); err != nil {
			return err
		}
		pk.toOddCoset(t, p)
	}
	va := fr.Vector(a)
	va.Mul(a, b)
	va.Sub(a, c)
	toRegular(b, a)
	return nil
}

// toOddCoset turns evaluations on the n domain into evaluations at
// g·w_n^i, g the 2n-th root of unity, both in natural order.
func (pk *ProvingKey) toOddCoset(t *ntt, p []fr.Element) {
	t.dif(p, t.inv) // n·coefficients, bit-reversed
	v := fr.Vector(p)
	v.Mul(v, t.coset) // coefficient i (at bitrev(i)) times g^i/n
	t.dit(p, t.fwd)   // evaluations at g·w^i, natural order
}

// toRegular sets dst to src in regular form: a Montgomery product by the
// element whose internal form is 1 removes the factor R.
func toRegular(dst, src []fr.Element) {
	v := fr.Vector(dst)
	v.ScalarMul(src, &fr.Element{1})
}

// evalCoefs sets a[c] and b[c] to Σ value·w[signal] over the coefficients
// of constraint c in matrix A and B. Each record's value is stored times
// R² (zkey.DecodeCoef); a Montgomery product with the regular-form witness
// value gives the term in Montgomery form. The records are read where they
// lie (a file mapping, on goroutines under mmap.Guard); an index out of
// range means the file changed under the key.
func evalCoefs(pk *ProvingKey, wReg, a, b []fr.Element, tasks int) error {
	const rs = zkey.CoefRecordSize
	coefs := pk.coefs
	n, nv := uint32(pk.domainSize), uint32(pk.nVars)
	return mmap.GuardParallel(tasks, coefBlocks, func(lo, hi int) error {
		var v, t fr.Element
		for i := pk.blocks[lo]; i < pk.blocks[hi]; i++ {
			rec := coefs[i*rs : (i+1)*rs : (i+1)*rs]
			m := binary.LittleEndian.Uint32(rec[0:])
			c := binary.LittleEndian.Uint32(rec[4:])
			s := binary.LittleEndian.Uint32(rec[8:])
			if c >= n || s >= nv || m > zkey.MatrixB {
				return fmt.Errorf("%w: coefficient %d is out of range", ErrKeyChanged, i)
			}
			v[0] = binary.LittleEndian.Uint64(rec[12:])
			v[1] = binary.LittleEndian.Uint64(rec[20:])
			v[2] = binary.LittleEndian.Uint64(rec[28:])
			v[3] = binary.LittleEndian.Uint64(rec[36:])
			t.Mul(&v, &wReg[s])
			if m == zkey.MatrixA {
				a[c].Add(&a[c], &t)
			} else {
				b[c].Add(&b[c], &t)
			}
		}
		return nil
	})
}

// scratch is one proof's working memory, carved from one anonymous mapping.
type scratch struct {
	a, b, c []fr.Element // the quotient's polynomials; b ends as H's scalars
	ntt     []fr.Element // the transforms' twiddles
	wReg    []fr.Element // the witness, regular form
	kinds   []uint8
	store1  [][]bn254.G1Affine // bucket storage per worker
	store2  [][]bn254.G2Affine
}

// scratchPlan lays out a proof's scratch memory.
type scratchPlan struct {
	pk       *ProvingKey
	workers  int
	nb1, nb2 int // buckets per worker
	size     int
}

// newScratchPlan sizes a proof's scratch for pk with the tables warm (nil:
// none) on workers workers.
func newScratchPlan(pk *ProvingKey, warm *warmSet, workers int) scratchPlan {
	c1 := chooseWindow(max(pk.nVars, pk.domainSize), 1)
	c2 := chooseWindow(pk.nVars, 1)
	if warm != nil {
		c1, c2 = max(c1, warm.c1), max(c2, warm.c2)
	}
	p := scratchPlan{pk: pk, workers: workers, nb1: max(1<<(c1-1), onesSlots), nb2: max(1<<(c2-1), onesSlots)}
	fe := int(unsafe.Sizeof(fr.Element{}))
	p.size = align(3*pk.domainSize*fe) + align(nttScratch(pk.domainSize)*fe) + align(pk.nVars*fe) + align(pk.nVars) +
		workers*(align(p.nb1*int(g1Bytes))+align(p.nb2*int(g2Bytes)))
	return p
}

func align(n int) int { return (n + 63) &^ 63 }

// carve cuts mem (p.size bytes, page-aligned) into the scratch's slices.
func (p scratchPlan) carve(mem []byte) *scratch {
	off := 0
	take := func(n int) unsafe.Pointer {
		ptr := unsafe.Pointer(&mem[off])
		off += align(n)
		return ptr
	}
	fe := int(unsafe.Sizeof(fr.Element{}))
	n, nv := p.pk.domainSize, p.pk.nVars
	sc := &scratch{}
	abc := unsafe.Slice((*fr.Element)(take(3*n*fe)), 3*n)
	sc.a, sc.b, sc.c = abc[:n:n], abc[n:2*n:2*n], abc[2*n:]
	sc.ntt = unsafe.Slice((*fr.Element)(take(nttScratch(n)*fe)), nttScratch(n))
	sc.wReg = unsafe.Slice((*fr.Element)(take(nv*fe)), nv)
	sc.kinds = unsafe.Slice((*uint8)(take(nv)), nv)
	for range p.workers {
		sc.store1 = append(sc.store1, unsafe.Slice((*bn254.G1Affine)(take(p.nb1*int(g1Bytes))), p.nb1))
		sc.store2 = append(sc.store2, unsafe.Slice((*bn254.G2Affine)(take(p.nb2*int(g2Bytes))), p.nb2))
	}
	return sc
}

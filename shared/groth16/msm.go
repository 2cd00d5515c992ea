package groth16

import (
	"context"
	"math/big"
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fp"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/openpassport/prover-fleet/shared/groth16/internal/mmap"
)

// The multi-scalar multiplications of a proof.
//
// A proof has five MSMs (A, B1, C and H in G1, B2 in G2) and the quotient
// (the FFTs giving H's scalars). They are cut into jobs — one per window
// (and point range) of each MSM, plus the quotient — that a fixed set of
// worker goroutines, one per CPU, take in turn; so both cores stay busy
// from the first job to the last, instead of each MSM and FFT spreading
// itself over the cores and leaving them idle at its ends. Each worker owns
// its bucket arrays for the whole proof: no allocation per job, no
// goroutine stacks holding buckets. The code over points is written for G1
// in g1.go; g2.go is generated from it (G1 → G2) by go generate, and
// TestG2IsGenerated keeps the two in step.
//
// Scalars are used in regular (not Montgomery) form and recoded into
// signed c-bit digits in (-2^(c-1), 2^(c-1)] on the fly (see windowing), so
// a digit d adds ±P to bucket |d|-1 of 2^(c-1). Witness scalars equal to 0
// cost nothing and those equal to 1 (a fifth of a circom witness) are
// summed apart, spread over many buckets so that their batched additions
// do not collide in bucket 0.

//go:generate sh -c "{ echo '// Code generated from g1.go by go generate; DO NOT EDIT.'; echo; sed -e 's/G1/G2/g' -e 's/g1/g2/g' g1.go; } > g2.go"

// The coordinate fields of G1 and G2, and the points' sizes.
type (
	fieldG1 = fp.Element
	fieldG2 = bn254.E2
)

const (
	g1Bytes = int64(unsafe.Sizeof(bn254.G1Affine{}))
	g2Bytes = int64(unsafe.Sizeof(bn254.G2Affine{}))

	// batchMax is the most bucket additions that share one field inversion.
	batchMax = 512
	// queueMax is how many points may wait for a bucket that is already in
	// the batch before they are added the slow way.
	queueMax = 128
	// checkEvery is how many scalars a job handles between looks at its
	// context.
	checkEvery = 1 << 12
	// onesSlots is how many buckets the points of scalars equal to 1 are
	// spread over.
	onesSlots = batchMax

	// reduceSegments is how many segments of buckets a reduction advances
	// together (see accG1.reduce).
	reduceSegments = 128

	// maxWindow is the widest window chosen: 2^12 buckets, 256 KiB in G1
	// (512 KiB in G2), which stay in a core's L2 cache. Measured on
	// register_demo and a 2^20 circuit, wider windows lose more to cache
	// misses on the buckets than they save in additions (c = 16 costs 1.7×
	// c = 13 on H at 2^20).
	maxWindow = 13
)

// Scalar classes of a witness.
const (
	kindZero  uint8 = iota // 0: contributes nothing
	kindOne                // 1: the point itself
	kindOther              // anything else
)

// classify sets kinds[i] for each regular-form scalar and returns how many
// are kindOther.
func classify(scalars []fr.Element, kinds []uint8) int {
	n := 0
	for i := range scalars {
		s := &scalars[i]
		switch {
		case s[1]|s[2]|s[3] != 0:
			kinds[i] = kindOther
			n++
		case s[0] == 0:
			kinds[i] = kindZero
		case s[0] == 1:
			kinds[i] = kindOne
		default:
			kinds[i] = kindOther
			n++
		}
	}
	return n
}

// batchSize is the number of additions per batch for nb buckets: large
// enough to amortise the inversion, small enough that few points of a
// batch hit the same bucket (about batch/16 of them do).
func batchSize(nb int) int { return max(1, min(batchMax, nb/8)) }

// windowing recodes regular-form scalars below 2^254 into w signed c-bit
// digits. With K = Σ_{j<w-1} (2^(c-1)-1)·2^(c·j), the c-bit windows of s+K,
// each minus 2^(c-1)-1 (all but the top one, taken whole), are exactly the
// digits of the usual carry-propagating recoding, so any window is found
// without the ones below it. s+K < 2^255: four limbs suffice.
type windowing struct {
	c    uint
	w    int
	k    [4]uint64
	h    int32 // 2^(c-1) - 1
	mask uint64
}

func newWindowing(c uint) windowing {
	wd := windowing{c: c, w: numWindows(c), h: int32(1)<<(c-1) - 1, mask: 1<<c - 1}
	k := new(big.Int)
	h := big.NewInt(int64(wd.h))
	for j := wd.w - 2; j >= 0; j-- {
		k.Lsh(k, c)
		k.Add(k, h)
	}
	for i, wd2 := range k.Bits() { // big.Word is 64 bits on the platforms gnark-crypto supports
		wd.k[i] = uint64(wd2)
	}
	return wd
}

func (wd *windowing) buckets() int { return 1 << (wd.c - 1) }

// topDigit bounds the top window's digits: 0 <= d <= topDigit.
func (wd *windowing) topDigit() int32 { return 1 << (scalarBits - uint(wd.w-1)*wd.c) }

// digit returns the signed digit of window j of s.
func (wd *windowing) digit(s *fr.Element, j int) int32 {
	var t [4]uint64
	var carry uint64
	t[0], carry = bits.Add64(s[0], wd.k[0], 0)
	t[1], carry = bits.Add64(s[1], wd.k[1], carry)
	t[2], carry = bits.Add64(s[2], wd.k[2], carry)
	t[3], _ = bits.Add64(s[3], wd.k[3], carry)
	pos := uint(j) * wd.c
	limb, off := pos/64, pos%64
	v := t[limb] >> off
	if off+wd.c > 64 && limb < 3 {
		v |= t[limb+1] << (64 - off)
	}
	if j == wd.w-1 {
		return int32(v) // the top window: every bit left, at most 2^(c-1)
	}
	return int32(v&wd.mask) - wd.h
}

// chooseWindow picks c for an MSM whose scalars are about n full-size ones
// spread over pieces windows-pieces (1 without tables): the fewest bucket
// additions, n·windows, plus the reductions, about 3.5 additions' worth per
// bucket and reduced window; the smaller c on a tie.
func chooseWindow(n, pieces int) uint {
	best, bestCost := uint(4), ^uint64(0)
	for c := uint(4); c <= maxWindow; c++ {
		w := uint64(numWindows(c))
		wpp := (w + uint64(pieces) - 1) / uint64(pieces)
		cost := 2*uint64(n)*w + 7*wpp<<(c-1)
		if cost < bestCost {
			best, bestCost = c, cost
		}
	}
	return best
}

// worker is one proving goroutine's memory: a bucket accumulator per group.
type worker struct {
	g1 *accG1
	g2 *accG2
}

// job is one unit of a proof's work.
type job struct {
	run      func(ctx context.Context, w *worker) error
	quotient bool // needs the quotient's result (H's scalars)
}

// runJobs runs jobs on workers goroutines, each under mmap.Guard (the bases
// may be a file mapping). quotient, if not nil, is the first job; the jobs
// marked quotient wait for it. The first error stops everything.
func runJobs(ctx context.Context, workers []*worker, quotient func() error, jobs []job) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	qDone := make(chan struct{})
	if quotient == nil {
		close(qDone)
	}
	var next atomic.Int64
	next.Store(-1)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			err := mmap.Guard(func() error {
				for {
					if err := ctx.Err(); err != nil {
						return context.Cause(ctx)
					}
					i := int(next.Add(1))
					if i > len(jobs) {
						return nil
					}
					if i == 0 { // the quotient's turn
						if quotient != nil {
							err := quotient()
							close(qDone)
							if err != nil {
								return err
							}
						}
						continue
					}
					j := &jobs[i-1]
					if j.quotient {
						select {
						case <-qDone:
						case <-ctx.Done():
							return context.Cause(ctx)
						}
					}
					if err := j.run(ctx, w); err != nil {
						return err
					}
				}
			})
			if err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

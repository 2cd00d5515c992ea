package groth16

import (
	"context"
	"errors"
	"math/big"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/consensys/gnark-crypto/ecc"
	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
)

// warmScalars mixes the values circom witnesses are full of (0, 1, small
// numbers, repeated values) with random field elements.
func warmScalars(rng *rand.Rand, n int) []fr.Element {
	s := make([]fr.Element, n)
	for i := range s {
		switch rng.IntN(6) {
		case 0: // zero
		case 1:
			s[i].SetOne()
		case 2:
			s[i].SetUint64(rng.Uint64N(1 << 20))
		case 3:
			s[i].SetUint64(7) // same bucket again and again
		case 4:
			s[i].SetOne()
			s[i].Neg(&s[i]) // r-1: every window at its largest
		default:
			s[i].SetRandom()
		}
	}
	return s
}

func warmPointsG1(rng *rand.Rand, n int) []bn254.G1Affine {
	_, _, g1, _ := bn254.Generators()
	s := make([]fr.Element, n)
	for i := range s {
		s[i].SetUint64(rng.Uint64() | 1)
	}
	pts := bn254.BatchScalarMultiplicationG1(&g1, s)
	for i := 0; i < n; i += 13 {
		pts[i] = bn254.G1Affine{} // some bases at infinity
	}
	if n > 4 {
		pts[3] = pts[2] // a repeated base: doublings inside buckets
	}
	return pts
}

// msmTables builds tables of about copies copies of pts for window c (none
// when copies < 2).
func msmTableG1(t *testing.T, pts []bn254.G1Affine, c uint, copies int) *tableG1 {
	t.Helper()
	if copies < 2 {
		return nil
	}
	w := numWindows(c)
	wpp := (w + copies - 1) / copies
	tc := (w + wpp - 1) / wpp
	tab := &tableG1{c: c, t: tc, wpp: wpp, pts: make([]bn254.G1Affine, len(pts)*(tc-1))}
	if err := buildTableG1(t.Context(), tab, pts, 2); err != nil {
		t.Fatal(err)
	}
	return tab
}

// runMSMG1 runs the proof's MSM engine on two workers over pts and the
// Montgomery-form scalars s. withKinds classifies the scalars as witness
// scalars are (zeros skipped, ones summed apart).
func runMSMG1(ctx context.Context, pts []bn254.G1Affine, s []fr.Element, c uint, tab *tableG1, ranges int, withKinds bool) (bn254.G1Jac, error) {
	reg := make([]fr.Element, len(s))
	toRegular(reg, s)
	var kinds []uint8
	if withKinds {
		kinds = make([]uint8, len(s))
		classify(reg, kinds)
	}
	m := newMSMG1(pts, reg, kinds, c, tab, ranges)
	nb := max(1<<(m.wd.c-1), onesSlots)
	ws := []*worker{
		{g1: newAccG1(make([]bn254.G1Affine, nb))},
		{g1: newAccG1(make([]bn254.G1Affine, nb))},
	}
	var jobs []job
	for j := range m.jobs() {
		jobs = append(jobs, job{run: func(ctx context.Context, w *worker) error { return m.run(ctx, w.g1, j) }})
	}
	if withKinds {
		jobs = append(jobs, job{run: func(ctx context.Context, w *worker) error { return m.sumOnes(ctx, w.g1) }})
	}
	if err := runJobs(ctx, ws, nil, jobs); err != nil {
		return bn254.G1Jac{}, err
	}
	return m.result(), nil
}

func TestMSMMatchesMultiExp(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name      string
		n         int
		c         uint
		copies    int
		ranges    int
		withKinds bool
	}{
		{"one point", 1, 8, 1, 1, true},
		{"small window", 300, 5, 1, 1, true},
		{"batch sized", 3000, 10, 1, 1, true},
		{"wide window", 5000, 16, 1, 1, true},
		{"no kinds", 3000, 11, 1, 1, false},
		{"point ranges", 3000, 12, 1, 3, true},
		{"two copies", 2000, 12, 2, 1, true},
		{"four copies, ranges", 2000, 13, 4, 2, true},
		{"full tables", 1500, 16, 16, 4, true},
		{"full tables, small window", 700, 5, 51, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pts := warmPointsG1(rng, tc.n)
			tab := msmTableG1(t, pts, tc.c, tc.copies)
			for round := range 3 {
				s := warmScalars(rng, tc.n)
				got, err := runMSMG1(t.Context(), pts, s, tc.c, tab, tc.ranges, tc.withKinds)
				if err != nil {
					t.Fatal(err)
				}
				var want bn254.G1Jac
				if _, err := want.MultiExp(pts, s, ecc.MultiExpConfig{}); err != nil {
					t.Fatal(err)
				}
				if !got.Equal(&want) {
					t.Fatalf("round %d: MSM differs from MultiExp", round)
				}
			}
		})
	}
}

func TestMSMG2MatchesMultiExp(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	_, _, _, g2 := bn254.Generators()
	n := 700
	pts := make([]bn254.G2Affine, n)
	for i := range pts {
		if i%11 == 0 {
			continue // at infinity
		}
		var k fr.Element
		k.SetUint64(rng.Uint64())
		var kb = k.BigInt(new(big.Int))
		pts[i].ScalarMultiplication(&g2, kb)
	}
	for _, tc := range []struct {
		name   string
		c      uint
		copies int
	}{{"no tables", 9, 1}, {"three copies", 9, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			var tab *tableG2
			if tc.copies > 1 {
				w := numWindows(tc.c)
				wpp := (w + tc.copies - 1) / tc.copies
				tt := (w + wpp - 1) / wpp
				tab = &tableG2{c: tc.c, t: tt, wpp: wpp, pts: make([]bn254.G2Affine, n*(tt-1))}
				if err := buildTableG2(t.Context(), tab, pts, 2); err != nil {
					t.Fatal(err)
				}
			}
			s := warmScalars(rng, n)
			reg := make([]fr.Element, n)
			toRegular(reg, s)
			kinds := make([]uint8, n)
			classify(reg, kinds)
			m := newMSMG2(pts, reg, kinds, tc.c, tab, 2)
			nb := max(1<<(m.wd.c-1), onesSlots)
			ws := []*worker{{g2: newAccG2(make([]bn254.G2Affine, nb))}, {g2: newAccG2(make([]bn254.G2Affine, nb))}}
			jobs := []job{{run: func(ctx context.Context, w *worker) error { return m.sumOnes(ctx, w.g2) }}}
			for j := range m.jobs() {
				jobs = append(jobs, job{run: func(ctx context.Context, w *worker) error { return m.run(ctx, w.g2, j) }})
			}
			if err := runJobs(t.Context(), ws, nil, jobs); err != nil {
				t.Fatal(err)
			}
			got := m.result()
			var want bn254.G2Jac
			if _, err := want.MultiExp(pts, s, ecc.MultiExpConfig{}); err != nil {
				t.Fatal(err)
			}
			if !got.Equal(&want) {
				t.Fatal("G2 MSM differs from MultiExp")
			}
		})
	}
}

func TestMSMAllZero(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	pts := warmPointsG1(rng, 100)
	for _, withKinds := range []bool{false, true} {
		j, err := runMSMG1(t.Context(), pts, make([]fr.Element, 100), 8, nil, 1, withKinds)
		if err != nil {
			t.Fatal(err)
		}
		var a bn254.G1Affine
		a.FromJacobian(&j)
		if !a.IsInfinity() {
			t.Fatal("Σ 0·P is not the point at infinity")
		}
	}
}

// TestWindowDigits checks the recoding against the value it encodes, for
// every window width.
func TestWindowDigits(t *testing.T) {
	t.Parallel()
	var minusOne fr.Element
	minusOne.SetOne()
	minusOne.Neg(&minusOne)
	for c := uint(4); c <= 16; c++ {
		wd := newWindowing(c)
		for k := range 200 {
			var s fr.Element
			switch k {
			case 0:
			case 1:
				s = minusOne
			default:
				s.SetRandom()
			}
			r := []fr.Element{{}}
			toRegular(r, []fr.Element{s})
			reg := r[0]
			got := new(big.Int)
			for j := wd.w - 1; j >= 0; j-- {
				d := wd.digit(&reg, j)
				if d > 1<<(c-1) || d <= -(1<<(c-1)) || (j == wd.w-1 && (d < 0 || d > wd.topDigit())) {
					t.Fatalf("c=%d: digit %d of window %d out of range", c, d, j)
				}
				got.Lsh(got, c)
				got.Add(got, big.NewInt(int64(d)))
			}
			if want := s.BigInt(new(big.Int)); got.Cmp(want) != 0 {
				t.Fatalf("c=%d: digits give %v, want %v", c, got, want)
			}
		}
	}
}

// TestG2IsGenerated fails when g2.go is not what go generate makes of
// g1.go.
func TestG2IsGenerated(t *testing.T) {
	src, err := os.ReadFile("g1.go")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("g2.go")
	if err != nil {
		t.Fatal(err)
	}
	body := strings.NewReplacer("G1", "G2", "g1", "g2").Replace(string(src))
	want := "// Code generated from g1.go by go generate; DO NOT EDIT.\n\n" + body
	if string(got) != want {
		t.Fatal("g2.go is stale: run go generate ./shared/groth16")
	}
}

// TestMSMSamePoint adds a point to itself, in the ones shortcut and in a
// bucket: the doubling paths.
func TestMSMSamePoint(t *testing.T) {
	t.Parallel()
	_, _, g1, _ := bn254.Generators()
	pts := []bn254.G1Affine{g1, g1, g1, g1}
	for _, k := range []uint64{1, 7, 300} {
		s := make([]fr.Element, len(pts))
		for i := range s {
			s[i].SetUint64(k)
		}
		got, err := runMSMG1(t.Context(), pts, s, 8, nil, 1, true)
		if err != nil {
			t.Fatal(err)
		}
		var want bn254.G1Jac
		want.ScalarMultiplication(new(bn254.G1Jac).FromAffine(&g1), new(big.Int).SetUint64(4*k))
		if !got.Equal(&want) {
			t.Fatalf("%d·G four times is not %d·G", k, 4*k)
		}
	}
}

// TestMSMCancelled stops MSM jobs through their context, then reuses the
// same accumulator (left holding work) for a correct MSM.
func TestMSMCancelled(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	pts := warmPointsG1(rng, 3*checkEvery)
	s := warmScalars(rng, len(pts))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := runMSMG1(ctx, pts, s, 10, nil, 1, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	reg := make([]fr.Element, len(s))
	toRegular(reg, s)
	m := newMSMG1(pts, reg, nil, 10, nil, 1)
	acc := newAccG1(make([]bn254.G1Affine, 1<<9))
	// Cancelled halfway: buckets, batch and queue hold work when it stops.
	half := &countdown{Context: t.Context()}
	half.left.Store(2)
	if err := m.run(half, acc, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	for j := range m.jobs() {
		if err := m.run(t.Context(), acc, j); err != nil {
			t.Fatal(err)
		}
	}
	got := m.result()
	var want bn254.G1Jac
	if _, err := want.MultiExp(pts, s, ecc.MultiExpConfig{}); err != nil {
		t.Fatal(err)
	}
	if !got.Equal(&want) {
		t.Fatal("the MSM after a cancelled one is wrong")
	}
}

// countdown is a context that says it is cancelled from its left+1-th look on.
type countdown struct {
	context.Context
	left atomic.Int32
}

func (c *countdown) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

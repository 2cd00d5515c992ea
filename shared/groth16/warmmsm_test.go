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

func TestWarmMSMMatchesMultiExp(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		n    int
		c    uint
	}{
		{"one point", 1, 8},
		{"small window", 300, 5},
		{"batch sized", 3000, 10},
		{"wide window", 5000, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pts := warmPointsG1(rng, tc.n)
			tab := newWarmG1(pts, tc.c)
			for round := range 3 {
				s := warmScalars(rng, tc.n)
				gotJ, err := tab.msm(context.Background(), s)
				if err != nil {
					t.Fatal(err)
				}
				var want bn254.G1Jac
				if _, err := want.MultiExp(pts, s, ecc.MultiExpConfig{}); err != nil {
					t.Fatal(err)
				}
				if !gotJ.Equal(&want) {
					t.Fatalf("round %d: warm MSM differs from MultiExp", round)
				}
			}
		})
	}
}

func TestWarmMSMG2MatchesMultiExp(t *testing.T) {
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
	tab := newWarmG2(pts, 9)
	s := warmScalars(rng, n)
	gotJ, err := tab.msm(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	var want bn254.G2Jac
	if _, err := want.MultiExp(pts, s, ecc.MultiExpConfig{}); err != nil {
		t.Fatal(err)
	}
	if !gotJ.Equal(&want) {
		t.Fatal("warm G2 MSM differs from MultiExp")
	}
}

func TestWarmMSMAllZero(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pts := warmPointsG1(rng, 100)
	j, err := newWarmG1(pts, 8).msm(context.Background(), make([]fr.Element, 100))
	if err != nil {
		t.Fatal(err)
	}
	var a bn254.G1Affine
	a.FromJacobian(&j)
	if !a.IsInfinity() {
		t.Fatal("Σ 0·P is not the point at infinity")
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

// TestWarmMSMSamePoint adds a point to itself, in the ones shortcut and in a
// bucket: the doubling paths.
func TestWarmMSMSamePoint(t *testing.T) {
	t.Parallel()
	_, _, g1, _ := bn254.Generators()
	pts := []bn254.G1Affine{g1, g1, g1, g1}
	tab := newWarmG1(pts, 8)
	for _, k := range []uint64{1, 7, 300} {
		s := make([]fr.Element, len(pts))
		for i := range s {
			s[i].SetUint64(k)
		}
		got, err := tab.msm(context.Background(), s)
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

// TestWarmMSMCancelled stops an MSM through its context, then reuses the
// same tables (and their pooled buckets) for a correct one.
func TestWarmMSMCancelled(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	pts := warmPointsG1(rng, 3*warmCheck)
	tab := newWarmG1(pts, 10)
	s := warmScalars(rng, len(pts))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tab.msm(ctx, s); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// Cancelled halfway: buckets, batch and queue hold work when it stops.
	half := &countdown{Context: context.Background()}
	half.left.Store(3)
	if _, err := tab.msm(half, s); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	got, err := tab.msm(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
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

package groth16

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/openpassport/prover-fleet/shared/groth16/r1cs"
	"github.com/openpassport/prover-fleet/shared/groth16/zkey"
)

var update = flag.Bool("update", false, "rewrite testdata/tiny_dev.zkey and tiny_dev.vkey.json")

func devSetupBytes(t *testing.T, sys *r1cs.System, seed string) (zk, vk []byte) {
	t.Helper()
	k, v, err := DevSetup(t.Context(), sys, []byte(seed))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := zkey.Write(&buf, k); err != nil {
		t.Fatal(err)
	}
	vj, err := v.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), vj
}

// TestDevSetupGolden: the same r1cs and seed always give the same files.
func TestDevSetupGolden(t *testing.T) {
	sys := readTinyR1CS(t)
	zk, vk := devSetupBytes(t, sys, devSeed)
	if *update {
		if err := os.WriteFile(devZkey, zk, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(devVkey, vk, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(zk, readFile(t, devZkey)) {
		t.Error("DevSetup's zkey differs from testdata/tiny_dev.zkey (rerun with -update if intended)")
	}
	if !bytes.Equal(vk, readFile(t, devVkey)) {
		t.Error("DevSetup's vkey differs from testdata/tiny_dev.vkey.json (rerun with -update if intended)")
	}
	zk2, _ := devSetupBytes(t, sys, devSeed+"!")
	if bytes.Equal(zk, zk2) {
		t.Error("a different seed gave the same key")
	}
}

// TestDevSetupLayoutMatchesSnarkjs compares the parts of the key that do
// not depend on the secrets with the key snarkjs made for the same r1cs.
func TestDevSetupLayoutMatchesSnarkjs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mine, err := zkey.ReadFile(ctx, devZkey)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := zkey.ReadFile(ctx, snarkjsZkey)
	if err != nil {
		t.Fatal(err)
	}
	if mine.NVars != theirs.NVars || mine.NPublic != theirs.NPublic || mine.DomainSize != theirs.DomainSize {
		t.Fatalf("header counts differ: ours %d/%d/%d, snarkjs %d/%d/%d",
			mine.NVars, mine.NPublic, mine.DomainSize, theirs.NVars, theirs.NPublic, theirs.DomainSize)
	}
	if len(mine.Coefs) != len(theirs.Coefs) {
		t.Fatalf("%d coefficients, snarkjs has %d", len(mine.Coefs), len(theirs.Coefs))
	}
	for i := range mine.Coefs {
		if mine.Coefs[i] != theirs.Coefs[i] {
			t.Fatalf("coefficient %d = %+v, snarkjs has %+v", i, mine.Coefs[i], theirs.Coefs[i])
		}
	}
	// Points in A, B1, B2 and C are at infinity for exactly the same wires.
	for i := range mine.A {
		if mine.A[i].IsInfinity() != theirs.A[i].IsInfinity() || mine.B1[i].IsInfinity() != theirs.B1[i].IsInfinity() ||
			mine.B2[i].IsInfinity() != theirs.B2[i].IsInfinity() {
			t.Errorf("wire %d: infinity pattern differs from snarkjs", i)
		}
	}
	if st, err := os.Stat(devZkey); err != nil || st.Size() != 4556 {
		// snarkjs's key before its contribution (same r1cs) is 4556 bytes.
		t.Errorf("dev key size %v, want 4556 like snarkjs's uncontributed key", st.Size())
	}
}

func TestDevSetupProves(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	k, vk, err := DevSetup(t.Context(), readTinyR1CS(t), []byte("another seed"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := NewProvingKey(k)
	if err != nil {
		t.Fatal(err)
	}
	proof, public, err := Prove(t.Context(), pk, fx.witness)
	if err != nil {
		t.Fatal(err)
	}
	if err := vk.Verify(proof, public); err != nil {
		t.Fatal(err)
	}
	// A proof for one key does not verify under another.
	if err := fx.vk.Verify(proof, public); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("proof verified under snarkjs's key: %v", err)
	}
}

func TestDevSetupCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := DevSetup(ctx, readTinyR1CS(t), []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestSyntheticCircuits runs setup, prove and verify on generated circuits
// of a few shapes, including one whose wires are all public (no C points).
func TestSyntheticCircuits(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 13, 200} {
		sys, w := chainCircuit(n)
		if err := sys.IsSatisfied(w); err != nil {
			t.Fatal(err)
		}
		k, vk, err := DevSetup(t.Context(), sys, []byte("synthetic"))
		if err != nil {
			t.Fatal(err)
		}
		pk, err := NewProvingKey(k)
		if err != nil {
			t.Fatal(err)
		}
		proof, public, err := Prove(t.Context(), pk, w)
		if err != nil {
			t.Fatalf("%d constraints: %v", n, err)
		}
		if err := vk.Verify(proof, public); err != nil {
			t.Fatalf("%d constraints: %v", n, err)
		}
	}
	allPublic := &r1cs.System{
		NWires: 3, NPubOut: 1, NPubIn: 1,
		Constraints: []r1cs.Constraint{{ // out = in * in
			A: []r1cs.Term{{Wire: 2, Coeff: fr.One()}},
			B: []r1cs.Term{{Wire: 2, Coeff: fr.One()}},
			C: []r1cs.Term{{Wire: 1, Coeff: fr.One()}},
		}},
	}
	k, vk, err := DevSetup(t.Context(), allPublic, []byte("all public"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := NewProvingKey(k)
	if err != nil {
		t.Fatal(err)
	}
	w := []fr.Element{fr.One(), fr.NewElement(9), fr.NewElement(3)}
	proof, public, err := Prove(t.Context(), pk, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := vk.Verify(proof, public); err != nil {
		t.Fatal(err)
	}
}

// chainCircuit builds z_{i+1} = z_i² + x over n constraints, with public
// input x (wire 2) and public output y = z_n (wire 1), plus the witness for
// x = 3, z_0 = 5. Its scalars are dense like a hash chain's.
func chainCircuit(n int) (*r1cs.System, []fr.Element) {
	// wires: 0 one, 1 y, 2 x, 3 z_0, 4.. z_1..z_n
	sys := &r1cs.System{NWires: uint32(4 + n), NPubOut: 1, NPubIn: 1, NPrvIn: 1, NLabels: uint64(4 + n)}
	one := fr.One()
	var minusOne fr.Element
	minusOne.Neg(&one)
	z := func(i int) uint32 { return uint32(3 + i) }
	for i := range n {
		out := z(i + 1)
		if i == n-1 {
			out = 1 // the last link writes y directly
		}
		sys.Constraints = append(sys.Constraints, r1cs.Constraint{
			A: []r1cs.Term{{Wire: z(i), Coeff: one}},
			B: []r1cs.Term{{Wire: z(i), Coeff: one}},
			C: []r1cs.Term{{Wire: out, Coeff: one}, {Wire: 2, Coeff: minusOne}},
		})
	}
	w := make([]fr.Element, sys.NWires)
	w[0].SetOne()
	w[2].SetUint64(3)
	w[3].SetUint64(5)
	for i := range n {
		var v fr.Element
		v.Square(&w[z(i)]).Add(&v, &w[2])
		if i == n-1 {
			w[1] = v
		} else {
			w[z(i+1)] = v
		}
	}
	// z_n's wire is unused when the last link writes y; keep it zero.
	return sys, w
}

func TestFixedBaseMatchesScalarMultiplication(t *testing.T) {
	t.Parallel()
	_, _, g1, g2 := bn254.Generators()
	var rMinus1, big253 fr.Element
	rMinus1.SetBigInt(new(big.Int).Sub(fr.Modulus(), big.NewInt(1)))
	big253.SetBigInt(new(big.Int).Lsh(big.NewInt(1), 253))
	scalars := []fr.Element{{}, fr.One(), fr.NewElement(2), rMinus1, big253}
	for range 300 {
		var s fr.Element
		if _, err := s.SetRandom(); err != nil {
			t.Fatal(err)
		}
		scalars = append(scalars, s)
	}
	for _, n := range []int{1, 5, len(scalars)} {
		p1 := batchMulG1(&g1, scalars[:n])
		p2 := batchMulG2(&g2, scalars[:n])
		for i := range n {
			b := scalars[i].BigInt(new(big.Int))
			var q1 bn254.G1Affine
			var q2 bn254.G2Affine
			q1.ScalarMultiplication(&g1, b)
			q2.ScalarMultiplication(&g2, b)
			if !q1.Equal(&p1[i]) || !q2.Equal(&p2[i]) {
				t.Fatalf("batch of %d, scalar %d (%s): fixed-base result differs", n, i, b)
			}
		}
	}
}

func TestSignedDigits(t *testing.T) {
	t.Parallel()
	var s fr.Element
	for range 200 {
		if _, err := s.SetRandom(); err != nil {
			t.Fatal(err)
		}
		for c := uint(2); c <= 16; c++ {
			d := make([]int32, numWindows(c))
			signedDigits(&s, c, d)
			acc := new(big.Int)
			for k := len(d) - 1; k >= 0; k-- {
				if d[k] > 1<<(c-1) || d[k] <= -(1<<(c-1)) {
					t.Fatalf("c=%d digit %d out of range", c, d[k])
				}
				acc.Lsh(acc, c).Add(acc, big.NewInt(int64(d[k])))
			}
			if acc.Cmp(s.BigInt(new(big.Int))) != 0 {
				t.Fatalf("c=%d: digits do not recompose the scalar", c)
			}
		}
	}
}

func TestDevSetupWritesLoadableFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	zk, vk := devSetupBytes(t, readTinyR1CS(t), "files")
	zpath := filepath.Join(dir, "k.zkey")
	if err := os.WriteFile(zpath, zk, 0o644); err != nil {
		t.Fatal(err)
	}
	pk, err := LoadProvingKey(t.Context(), zpath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pk.VerifyingKey().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, vk) {
		t.Fatal("the vkey DevSetup returns differs from the one in its zkey")
	}
}

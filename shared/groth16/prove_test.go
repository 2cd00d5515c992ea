package groth16

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
)

func TestProveWithSnarkjsKey(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	proof, public, err := Prove(t.Context(), fx.pk, fx.witness)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := public.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(pub) != `["185643","11"]` {
		t.Fatalf("public.json = %s", pub)
	}
	// Verified by the verifying key snarkjs exported, not only by the one
	// embedded in the proving key.
	if err := fx.vk.Verify(proof, public); err != nil {
		t.Fatal(err)
	}
	// Two proofs of the same witness differ (fresh r, s) and both verify.
	proof2, _, err := Prove(t.Context(), fx.pk, fx.witness)
	if err != nil {
		t.Fatal(err)
	}
	if proof2.A.Equal(&proof.A) || proof2.C.Equal(&proof.C) {
		t.Fatal("two proofs share A or C: r and s are not random")
	}
}

func TestProofJSONShape(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	proof, _, err := Prove(t.Context(), fx.pk, fx.witness)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proof.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		PiA      []string   `json:"pi_a"`
		PiB      [][]string `json:"pi_b"`
		PiC      []string   `json:"pi_c"`
		Protocol string     `json:"protocol"`
		Curve    string     `json:"curve"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.PiA) != 3 || v.PiA[2] != "1" || len(v.PiC) != 3 || v.PiC[2] != "1" ||
		len(v.PiB) != 3 || v.PiB[2][0] != "1" || v.PiB[2][1] != "0" || v.Protocol != "groth16" || v.Curve != "bn128" {
		t.Fatalf("unexpected proof.json: %s", b)
	}
	// Key order as snarkjs/rapidsnark write it.
	want := fmt.Sprintf(`{"pi_a":["%s","%s","1"],"pi_b":[["%s","%s"],["%s","%s"],["1","0"]],"pi_c":["%s","%s","1"],"protocol":"groth16","curve":"bn128"}`,
		v.PiA[0], v.PiA[1], v.PiB[0][0], v.PiB[0][1], v.PiB[1][0], v.PiB[1][1], v.PiC[0], v.PiC[1])
	if string(b) != want {
		t.Fatalf("proof.json\n got %s\nwant %s", b, want)
	}
	p2, err := ParseProof(b)
	if err != nil {
		t.Fatal(err)
	}
	if *p2 != *proof {
		t.Fatal("JSON round trip changed the proof")
	}
}

func TestProveRefusesUnsatisfyingWitness(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	var one fr.Element
	one.SetOne()
	// Every wire but 0: the public output (1), the public input (2), the
	// private input (3) and the intermediate signals.
	for i := 1; i < len(fx.witness); i++ {
		t.Run(fmt.Sprintf("wire %d", i), func(t *testing.T) {
			t.Parallel()
			bad := append([]fr.Element(nil), fx.witness...)
			bad[i].Add(&bad[i], &one)
			proof, public, err := Prove(t.Context(), fx.pk, bad)
			if !errors.Is(err, ErrUnsatisfied) {
				t.Fatalf("err = %v, want ErrUnsatisfied", err)
			}
			if proof != nil || public != nil {
				t.Fatal("a proof was returned for an unsatisfying witness")
			}
		})
	}
	t.Run("wire 0 not one", func(t *testing.T) {
		t.Parallel()
		bad := append([]fr.Element(nil), fx.witness...)
		bad[0].SetUint64(2)
		if _, _, err := Prove(t.Context(), fx.pk, bad); !errors.Is(err, ErrUnsatisfied) {
			t.Fatalf("err = %v, want ErrUnsatisfied", err)
		}
	})
}

func TestProveWitnessSize(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	for _, n := range []int{0, 1, len(fx.witness) - 1, len(fx.witness) + 1} {
		w := make([]fr.Element, n)
		copy(w, fx.witness)
		if _, _, err := Prove(t.Context(), fx.pk, w); !errors.Is(err, ErrWitnessSize) {
			t.Errorf("%d values: err = %v, want ErrWitnessSize", n, err)
		}
	}
}

func TestProveCancelled(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	proof, _, err := Prove(ctx, fx.pk, fx.witness)
	if !errors.Is(err, context.Canceled) || proof != nil {
		t.Fatalf("err = %v, proof = %v; want context.Canceled and no proof", err, proof)
	}
}

// TestProveConcurrent shares one key between goroutines (run with -race).
func TestProveConcurrent(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			proof, public, err := Prove(t.Context(), fx.pk, fx.witness)
			if err == nil {
				err = fx.vk.Verify(proof, public)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadProvingKeyRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := readFile(t, snarkjsZkey)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-100]},
		{"garbage", []byte("not a zkey, just some text that is long enough")},
		{"plonk", readFile(t, "testdata/tiny_plonk.zkey")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := dir + "/" + tt.name + ".zkey"
			if err := writeBytes(path, tt.data); err != nil {
				t.Fatal(err)
			}
			pk, err := LoadProvingKey(t.Context(), path)
			if err == nil || pk != nil {
				t.Fatalf("LoadProvingKey accepted %s", tt.name)
			}
			t.Log(err)
		})
	}
}

// TestInfinityBases checks the tiny key exercises the MSMs' skipping of
// bases at infinity: wires that never appear in B have B1 and B2 at
// infinity. Every proof the other tests verify uses them.
func TestInfinityBases(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	inf := 0
	for i := range fx.pk.b2 {
		if fx.pk.b2[i].IsInfinity() {
			if !fx.pk.b1[i].IsInfinity() {
				t.Fatalf("B2[%d] is at infinity, B1[%d] is not", i, i)
			}
			inf++
		}
	}
	if inf == 0 || inf == len(fx.pk.b2) {
		t.Fatalf("%d of %d B2 points at infinity: want some", inf, len(fx.pk.b2))
	}
}

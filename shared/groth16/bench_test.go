package groth16

import (
	"fmt"
	"os"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
)

// BenchmarkProve measures warm proving (key already loaded) on generated
// hash-chain-like circuits filling a 2^10, 2^14 and 2^17 domain (the last is
// about the size of the 100k-constraint register demo circuit), and on a
// real circuit when GROTH16_BENCH_ZKEY and GROTH16_BENCH_WTNS name a .zkey
// and a matching .wtns:
//
//	GROTH16_BENCH_ZKEY=chain.zkey GROTH16_BENCH_WTNS=chain.wtns \
//	  go test ./shared/groth16 -run XXX -bench Prove -benchtime 5x
//
// Key generation for the synthetic circuits is not timed.
func BenchmarkProve(b *testing.B) {
	for _, logN := range []int{10, 14, 17} {
		b.Run(fmt.Sprintf("synthetic-2^%d", logN), func(b *testing.B) {
			// chainCircuit(n) has n constraints and 2 public signals;
			// n + 2 < 2^logN keeps the domain at 2^logN.
			sys, w := chainCircuit(1<<logN - 3)
			k, _, err := DevSetup(b.Context(), sys, []byte("bench"))
			if err != nil {
				b.Fatal(err)
			}
			pk, err := NewProvingKey(k)
			if err != nil {
				b.Fatal(err)
			}
			benchProve(b, pk, w)
		})
	}
	zk, wt := os.Getenv("GROTH16_BENCH_ZKEY"), os.Getenv("GROTH16_BENCH_WTNS")
	if zk == "" || wt == "" {
		return
	}
	b.Run("file", func(b *testing.B) {
		ctx := b.Context()
		pk, err := LoadProvingKey(ctx, zk)
		if err != nil {
			b.Fatal(err)
		}
		w, err := wtns.ReadFile(ctx, wt)
		if err != nil {
			b.Fatal(err)
		}
		benchProve(b, pk, w)
	})
}

func benchProve(b *testing.B, pk *ProvingKey, w []fr.Element) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Prove(b.Context(), pk, w); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(pk.DomainSize()), "domain")
}

// BenchmarkVerify measures parsing-free verification of one proof.
func BenchmarkVerify(b *testing.B) {
	fx := setup(b)
	proof, public, err := Prove(b.Context(), fx.pk, fx.witness)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := fx.vk.Verify(proof, public); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyJSON includes parsing proof.json and public.json, which
// checks the points (pi_b's subgroup check is the costly part).
func BenchmarkVerifyJSON(b *testing.B) {
	fx := setup(b)
	proof, public := readFile(b, snarkjsProof), readFile(b, snarkjsPublic)
	b.ReportAllocs()
	for b.Loop() {
		if err := fx.vk.VerifyJSON(proof, public); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDevSetup measures key generation for a generated circuit
// filling a 2^17 domain (the size of the register demo circuit).
func BenchmarkDevSetup(b *testing.B) {
	sys, _ := chainCircuit(1<<17 - 3)
	for b.Loop() {
		if _, _, err := DevSetup(b.Context(), sys, []byte("bench")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadProvingKey measures what a cold zkprove pays before
// proving: reading, checking and preparing the key (GROTH16_BENCH_ZKEY, or
// the tiny test key).
func BenchmarkLoadProvingKey(b *testing.B) {
	path := os.Getenv("GROTH16_BENCH_ZKEY")
	if path == "" {
		path = snarkjsZkey
	}
	if st, err := os.Stat(path); err == nil {
		b.SetBytes(st.Size())
	}
	for b.Loop() {
		if _, err := LoadProvingKey(b.Context(), path); err != nil {
			b.Fatal(err)
		}
	}
}

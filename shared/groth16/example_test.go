package groth16_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
)

// Prove a circom witness with a snarkjs key, then check the proof the way
// the worker does before reporting success.
func Example() {
	ctx := context.Background()

	// Once per circuit: load the proving key and the verifying key.
	pk, err := groth16.LoadProvingKey(ctx, "testdata/tiny_snarkjs.zkey")
	if err != nil {
		panic(err)
	}
	vkJSON, err := os.ReadFile("testdata/tiny_snarkjs.vkey.json")
	if err != nil {
		panic(err)
	}
	vk, err := groth16.ParseVerifyingKey(vkJSON)
	if err != nil {
		panic(err)
	}

	// Per job: read the witness circom's generator wrote, prove, verify.
	witness, err := wtns.ReadFile(ctx, "testdata/tiny.wtns")
	if err != nil {
		panic(err)
	}
	proof, public, err := groth16.Prove(ctx, pk, witness)
	if err != nil {
		panic(err)
	}
	proofJSON, _ := proof.MarshalJSON()   // proof.json, as rapidsnark writes it
	publicJSON, _ := public.MarshalJSON() // public.json
	fmt.Println("public.json:", string(publicJSON))
	fmt.Println("verified:", vk.VerifyJSON(proofJSON, publicJSON) == nil)

	// A witness that does not satisfy the circuit gives no proof.
	witness[3].SetUint64(8)
	_, _, err = groth16.Prove(ctx, pk, witness)
	fmt.Println("tampered witness refused:", errors.Is(err, groth16.ErrUnsatisfied))
	// Output:
	// public.json: ["185643","11"]
	// verified: true
	// tampered witness refused: true
}

// A key cache's view of a key: what it holds, tables within a budget,
// given back, and the key closed when evicted.
func ExampleProvingKey_Memory() {
	ctx := context.Background()
	pk, err := groth16.LoadProvingKey(ctx, "testdata/tiny_snarkjs.zkey")
	if err != nil {
		panic(err)
	}
	st, _ := os.Stat("testdata/tiny_snarkjs.zkey")
	m := pk.Memory()
	fmt.Println("mapped is the file:", m.Mapped == st.Size(), "tables:", m.Tables)

	budget := 2 * m.Mapped
	ws, err := pk.Warm(ctx, budget)
	if err != nil {
		panic(err)
	}
	fmt.Println("tables within budget:", ws.TableBytes <= budget, ws.TableBytes == pk.Memory().Tables)
	fmt.Println("dropped:", pk.DropTables() == ws.TableBytes, pk.Memory().Tables)

	_ = pk.Close()
	fmt.Println("closed:", pk.Memory().Total())
	// Output:
	// mapped is the file: true tables: 0
	// tables within budget: true true
	// dropped: true 0
	// closed: 0
}

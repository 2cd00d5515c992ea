package job_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/status"
)

func ExampleSealer() {
	sealer, _ := job.NewSealer(job.NewKey())
	sealed, _ := sealer.Seal("2b0e8a4c-0000-4000-8000-000000000001", []byte(`{"age":"42"}`))
	env := job.Envelope{RequestID: "2b0e8a4c-0000-4000-8000-000000000001", ProofType: "register_id", Circuit: "register_demo", Sealed: sealed}
	inputs, _ := sealer.Open(env.RequestID, env.Sealed)
	fmt.Println(env.Family(), string(inputs))
	// Output:
	// register {"age":"42"}
}

func ExampleProofGeneratedEvent() {
	written := time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC)
	witnessAt := written.Add(-2 * time.Second)
	ev := job.ProofGeneratedEvent("2b0e8a4c-0000-4000-8000-000000000001", &witnessAt, written,
		json.RawMessage(`{"protocol":"groth16"}`), []string{"42"})
	fmt.Println(ev.RequestID, ev.Complete(), string(ev.Row.Proof), ev.Row.PublicInputs)

	bare := job.StatusEvent{RequestID: ev.RequestID, Status: status.ProofGenerated}
	fmt.Println(bare.Complete()) // an older publisher's event: readers re-read the row
	// Output:
	// 2b0e8a4c-0000-4000-8000-000000000001 true {"protocol":"groth16"} [42]
	// false
}

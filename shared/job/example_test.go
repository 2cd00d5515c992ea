package job_test

import (
	"fmt"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
)

func ExampleSealer() {
	sealer, _ := job.NewSealer(job.NewKey())
	sealed, _ := sealer.Seal("2b0e8a4c-0000-4000-8000-000000000001", []byte(`{"age":"42"}`))
	env := job.Envelope{RequestID: "2b0e8a4c-0000-4000-8000-000000000001", ProofType: "register_id", Circuit: "register_demo", Sealed: sealed}
	inputs, _ := sealer.Open(env.RequestID, env.Sealed)
	fmt.Println(job.Subject(env.Family()), string(inputs))
	fmt.Println(job.Subject(family.Disclose))
	// Output:
	// proof.jobs.register {"age":"42"}
	// proof.jobs.disclose
}

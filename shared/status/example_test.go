package status_test

import (
	"fmt"

	"github.com/openpassport/prover-fleet/shared/status"
)

func ExampleCode() {
	for _, c := range []status.Code{status.Pending, status.WitnessGenerated, status.ProofGenerated, status.Failed, status.Verified} {
		fmt.Println(int(c), c, c.Terminal())
	}
	// Output:
	// 0 pending false
	// 1 witness_generated false
	// 2 proof_generated true
	// 3 failed true
	// 4 verified true
}

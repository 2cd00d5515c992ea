package jobqueue_test

import (
	"fmt"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
)

func ExampleSubject() {
	fmt.Println(jobqueue.StreamName, jobqueue.SubjectAll)
	for _, f := range family.All() {
		fmt.Println(jobqueue.Subject(f), jobqueue.ConsumerName(f))
	}
	fmt.Println(jobqueue.StatusSubject("2b0e8a4c-0000-4000-8000-000000000001"))
	fmt.Println(jobqueue.CancelSubject("2b0e8a4c-0000-4000-8000-000000000001"), jobqueue.CancelSubjectAll)
	// Output:
	// PROOF_JOBS proof.jobs.>
	// proof.jobs.register register
	// proof.jobs.dsc dsc
	// proof.jobs.disclose disclose
	// proof.status.2b0e8a4c-0000-4000-8000-000000000001
	// proof.cancel.2b0e8a4c-0000-4000-8000-000000000001 proof.cancel.*
}

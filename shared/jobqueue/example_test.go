package jobqueue_test

import (
	"fmt"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
)

func ExampleJobSubject() {
	fmt.Println(jobqueue.StreamName, jobqueue.SubjectAll)
	for _, f := range family.All() {
		fmt.Println(jobqueue.FamilySubjects(f), jobqueue.ConsumerName(f))
	}
	id := "2b0e8a4c-0000-4000-8000-000000000001"
	fmt.Println(jobqueue.JobSubject(family.Register, "register_demo", id))
	fmt.Println(jobqueue.CircuitConsumerName(family.Register, "register_demo"))
	fmt.Println(jobqueue.ParseCircuitConsumer("register-register_demo"))
	fmt.Println(jobqueue.StatusSubject(id))
	fmt.Println(jobqueue.CancelSubject(id), jobqueue.CancelSubjectAll)
	// Output:
	// PROOF_JOBS proof.jobs.>
	// proof.jobs.register.> register
	// proof.jobs.dsc.> dsc
	// proof.jobs.disclose.> disclose
	// proof.jobs.register.register_demo.2b0e8a4c-0000-4000-8000-000000000001
	// register-register_demo
	// register register_demo true
	// proof.status.2b0e8a4c-0000-4000-8000-000000000001
	// proof.cancel.2b0e8a4c-0000-4000-8000-000000000001 proof.cancel.*
}

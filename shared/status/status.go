// Package status holds the status codes of a proof request, the values of
// the proofs table's status column: the one definition the frontend, the
// workers, the store, the wire types and the Go client share.
//
// The prover fleet writes 0 to 3; 4 and 5 are written by a downstream
// verifier and passed through. Every code from 2 up is terminal for the
// fleet: no prover changes it again.
package status

import "fmt"

// Code is a proofs.status code (a smallint in the table, a number on the
// wire).
type Code int16

// The status codes.
const (
	Pending            Code = 0 // recorded and queued
	WitnessGenerated   Code = 1 // a worker generated the witness
	ProofGenerated     Code = 2 // proved and checked by the worker; proof and public inputs set
	Failed             Code = 3 // failed; the reason is set
	Verified           Code = 4 // accepted by a downstream verifier
	VerificationFailed Code = 5 // rejected by a downstream verifier
)

// Terminal reports whether no prover will change this status again
// (proof generated, failed, verified, verification failed).
func (c Code) Terminal() bool { return c >= ProofGenerated }

// String is the code's name, as logs and test messages show it.
func (c Code) String() string {
	switch c {
	case Pending:
		return "pending"
	case WitnessGenerated:
		return "witness_generated"
	case ProofGenerated:
		return "proof_generated"
	case Failed:
		return "failed"
	case Verified:
		return "verified"
	case VerificationFailed:
		return "verification_failed"
	}
	return fmt.Sprintf("status(%d)", int16(c))
}

package groth16

import "errors"

var (
	// ErrWitnessSize means the witness length differs from the key's wire count.
	ErrWitnessSize = errors.New("groth16: witness size does not match the proving key")
	// ErrUnsatisfied means the witness does not satisfy the circuit: the
	// proof computed from it does not verify against the key, so none is
	// returned.
	ErrUnsatisfied = errors.New("groth16: witness does not satisfy the circuit")
	// ErrKeyCorrupt means the proving key holds a point that is not on the
	// curve (or not canonical): proofs made with it cannot verify. Prove
	// returns it instead of ErrUnsatisfied when its own check fails because
	// of the key, not the witness.
	ErrKeyCorrupt = errors.New("groth16: proving key is corrupt")
	// ErrKeyChanged means the file a loaded proving key maps was truncated
	// or rewritten in place while the key was in use. Load it again (and
	// replace key files by renaming a new file over the old one).
	ErrKeyChanged = errors.New("groth16: proving key file changed while in use")
	// ErrClosed means the proving key was closed.
	ErrClosed = errors.New("groth16: proving key is closed")

	// ErrMalformedProof means proof JSON is not a snarkjs Groth16 proof.
	ErrMalformedProof = errors.New("groth16: malformed proof")
	// ErrMalformedPublic means public-signal JSON is not an array of decimal strings.
	ErrMalformedPublic = errors.New("groth16: malformed public signals")
	// ErrPublicSignalRange means a public signal is not below the BN254
	// scalar field modulus.
	ErrPublicSignalRange = errors.New("groth16: public signal is not below the scalar field modulus")
	// ErrPublicCount means the number of public signals differs from the key's.
	ErrPublicCount = errors.New("groth16: wrong number of public signals")
	// ErrMalformedVerifyingKey means vkey JSON is not a snarkjs Groth16 BN254 key.
	ErrMalformedVerifyingKey = errors.New("groth16: malformed verifying key")
	// ErrUnsupportedProtocol means a vkey or proof is for another protocol
	// or curve than Groth16 over BN254 ("bn128").
	ErrUnsupportedProtocol = errors.New("groth16: not a Groth16 BN254 object")
	// ErrNotOnCurve means a point's coordinates do not satisfy the curve equation.
	ErrNotOnCurve = errors.New("groth16: point is not on the curve")
	// ErrNotInSubgroup means a point is on the curve but outside the
	// prime-order subgroup.
	ErrNotInSubgroup = errors.New("groth16: point is not in the prime-order subgroup")
	// ErrInvalidProof means the pairing check failed.
	ErrInvalidProof = errors.New("groth16: invalid proof")
)

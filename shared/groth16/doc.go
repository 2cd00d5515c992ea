// Package groth16 is a native Groth16 prover and verifier over BN254 that is
// byte-compatible with snarkjs and rapidsnark, built on gnark-crypto.
//
//   - LoadProvingKey reads a snarkjs .zkey once; Prove then turns a circom
//     witness (see package wtns) into a proof and its public signals, using
//     gnark-crypto's multi-scalar multiplication and FFT on all cores. Prove
//     refuses (ErrUnsatisfied) a witness that does not satisfy the circuit.
//   - ProvingKey.Warm prepares a key that stays loaded for many proofs:
//     fixed-base window tables for its multi-scalar multiplications (see
//     warm.go) and FFT twiddles, within a memory budget, for about 30% less
//     CPU per proof; it may run while proofs are in flight.
//   - Proof and PublicSignals marshal to exactly the proof.json and
//     public.json that snarkjs and rapidsnark write.
//   - ParseVerifyingKey reads a snarkjs vkey.json and Verify / VerifyJSON check
//     a proof with one pairing product.
//   - DevSetup derives a .zkey and vkey.json from a circom .r1cs and a seed.
//     DEVELOPMENT ONLY: anyone who knows the seed can forge proofs.
//
// The prover follows snarkjs's groth16_prove.js and rapidsnark's groth16.cpp:
// the A and B polynomials are evaluated on the domain from the key's sparse
// coefficients, C = A·B pointwise, all three are moved to the odd coset of
// the 2n domain (points w_2n^(2i+1)) where A·B−C is evaluated; the key's H
// points are the Lagrange basis of those odd points over delta, so their MSM
// with A·B−C gives h(tau)t(tau)/delta directly, with no division.
//
// File formats live in the subpackages zkey, wtns and r1cs.
package groth16

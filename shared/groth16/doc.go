// Package groth16 is a native Groth16 prover and verifier over BN254 that is
// byte-compatible with snarkjs and rapidsnark, built on gnark-crypto.
//
//   - LoadProvingKey maps a snarkjs .zkey read-only and uses its points and
//     coefficients in place; Prove then turns a circom witness (see package
//     wtns) into a proof and its public signals on every CPU. Prove refuses
//     (ErrUnsatisfied) a witness that does not satisfy the circuit.
//   - ProvingKey.Warm adds window tables for a key that stays loaded for
//     many proofs, within a byte budget; DropTables gives them back.
//   - Proof and PublicSignals marshal to exactly the proof.json and
//     public.json that snarkjs and rapidsnark write.
//   - ParseVerifyingKey reads a snarkjs vkey.json and Verify / VerifyJSON check
//     a proof with one pairing product.
//   - DevSetup derives a .zkey and vkey.json from a circom .r1cs and a seed.
//     DEVELOPMENT ONLY: anyone who knows the seed can forge proofs.
//
// # Keys in memory, for a cache with one budget
//
// A key costs what Memory reports, exactly (the sizes of its buffers):
//
//   - Mapped: the .zkey file, mapped read-only and shared. snarkjs stores
//     base-field coordinates as little-endian 64-bit limbs in Montgomery
//     form, which is gnark-crypto's fp.Element, so the file's points are
//     used as they lie, nothing copied (package zkey, View). The pages are
//     the page cache's: loaded once however many keys or processes map the
//     file, counted in a process's RSS once touched (a proof touches them
//     all), and reclaimable by the kernel. LoadProvingKey itself costs a
//     scan of the coefficient records (a few ms per 100k constraints); the
//     bulk points are checked only when a proof fails (Validate).
//   - Heap: kilobytes: the header, the verifying key, a coefficient index.
//   - Tables: what Warm built, in anonymous memory outside the Go heap.
//     Warm(ctx, budget) never uses more than budget; TableBytes(budget)
//     says beforehand how much it would use; DropTables returns it.
//
// Each Prove call also takes ProveMemory bytes of anonymous memory for its
// duration (FFT buffers, the witness in the MSMs' form, bucket arrays),
// returned when it ends: about 7 field elements (224 bytes) per domain
// point and a few MiB. Close releases the mapping and the tables once the proofs in flight
// end; a key that is only dropped is released by the garbage collector.
// So a cache evicts by DropTables (tables only) or Close (the whole key),
// and holds at most Σ Memory().Total() plus ProveMemory per proof running.
//
// Key files must be replaced by renaming a new file over the old one. A
// file truncated or rewritten in place while mapped makes Prove, Validate
// and Warm return ErrKeyChanged (reading a page past the new end of the
// file raises SIGBUS, which the code reading the mapping turns into that
// error; see package internal/mmap) — never a crash. Load the key again.
//
// # How a proof is computed
//
// The prover follows snarkjs's groth16_prove.js and rapidsnark's groth16.cpp:
// the A and B polynomials are evaluated on the domain from the key's sparse
// coefficients, C = A·B pointwise, all three are moved to the odd coset of
// the 2n domain (points w_2n^(2i+1)) where A·B−C is evaluated; the key's H
// points are the Lagrange basis of those odd points over delta, so their MSM
// with A·B−C gives h(tau)t(tau)/delta directly, with no division.
//
// The five multi-scalar multiplications and the quotient are cut into jobs
// (one per MSM window, see msm.go) that GOMAXPROCS workers take in turn, so
// every core stays busy to the end. Bucket additions are batched affine
// additions computed as gnark-crypto vector operations (AVX-512 IFMA where
// the CPU has it); windows are at most 13 bits, so the buckets stay in a
// core's L2 cache. The quotient uses a cache-blocked NTT (ntt.go).
//
// File formats live in the subpackages zkey, wtns and r1cs.
package groth16

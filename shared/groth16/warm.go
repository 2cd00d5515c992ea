package groth16

import (
	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fp"
)

// Multi-scalar multiplication over fixed bases with precomputed window
// tables, for a key kept warm across many proofs.
//
// gnark-crypto's MultiExp splits each scalar into ~19 windows of c bits and
// runs one bucket pass per window, each ending in a reduction over all its
// buckets and c doublings. With the bases fixed, 2^(c·j)·P_i can be
// computed once for every window j, and then every window of every scalar
// lands in ONE set of buckets: a single pass and a single reduction per
// MSM. The price is memory (numWindows(c) copies of the bases) and the time
// to build the tables, paid once when the key is prepared.
//
// The code over points (this MSM, and batchMulG1 for the development key
// generation) is written once for G1 in g1.go; g2.go is generated from it
// (G1 → G2) by go generate, and TestG2IsGenerated keeps the two in step.

//go:generate sh -c "{ echo '// Code generated from g1.go by go generate; DO NOT EDIT.'; echo; sed -e 's/G1/G2/g' -e 's/g1/g2/g' g1.go; } > g2.go"

// The coordinate fields of G1 and G2.
type (
	fieldG1 = fp.Element
	fieldG2 = bn254.E2
)

const (
	// warmBatch is how many bucket additions share one field inversion.
	warmBatch = 512
	// warmQueue is how many points may wait for a bucket that is already
	// in the batch before they are added the slow way.
	warmQueue = 128
	// warmCheck is how many scalars a warm MSM task handles between looks
	// at its context.
	warmCheck = 1 << 12
)

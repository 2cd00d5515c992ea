package groth16

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/consensys/gnark-crypto/ecc"
	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
)

// VerifyingKey is a Groth16 verifying key with the pairing data that does
// not depend on the proof precomputed. It is safe for concurrent use.
type VerifyingKey struct {
	alpha1                bn254.G1Affine
	beta2, gamma2, delta2 bn254.G2Affine
	ic                    []bn254.G1Affine

	alphaBeta bn254.GT // e(alpha1, beta2)
	lines     [][2][len(bn254.LoopCounter)]bn254.LineEvaluationAff
}

// NewVerifyingKey checks the points (on the curve, G2 points in the
// subgroup, none at infinity) and precomputes e(alpha1, beta2) and the
// Miller-loop lines of gamma2 and delta2. ic has one point per public
// signal plus one.
func NewVerifyingKey(alpha1 bn254.G1Affine, beta2, gamma2, delta2 bn254.G2Affine, ic []bn254.G1Affine) (*VerifyingKey, error) {
	if len(ic) == 0 {
		return nil, fmt.Errorf("%w: IC is empty", ErrMalformedVerifyingKey)
	}
	if alpha1.IsInfinity() || !alpha1.IsOnCurve() {
		return nil, fmt.Errorf("vk_alpha_1: %w", ErrNotOnCurve)
	}
	for _, g := range []struct {
		name string
		p    *bn254.G2Affine
	}{{"vk_beta_2", &beta2}, {"vk_gamma_2", &gamma2}, {"vk_delta_2", &delta2}} {
		if g.p.IsInfinity() || !g.p.IsOnCurve() {
			return nil, fmt.Errorf("%s: %w", g.name, ErrNotOnCurve)
		}
		if !g.p.IsInSubGroup() {
			return nil, fmt.Errorf("%s: %w", g.name, ErrNotInSubgroup)
		}
	}
	for i := range ic {
		if !ic[i].IsOnCurve() {
			return nil, fmt.Errorf("IC[%d]: %w", i, ErrNotOnCurve)
		}
	}
	vk := &VerifyingKey{
		alpha1: alpha1, beta2: beta2, gamma2: gamma2, delta2: delta2,
		ic: append([]bn254.G1Affine(nil), ic...),
	}
	var err error
	if vk.alphaBeta, err = bn254.Pair([]bn254.G1Affine{alpha1}, []bn254.G2Affine{beta2}); err != nil {
		return nil, fmt.Errorf("groth16: pairing e(alpha, beta): %w", err)
	}
	vk.lines = [][2][len(bn254.LoopCounter)]bn254.LineEvaluationAff{
		bn254.PrecomputeLines(gamma2),
		bn254.PrecomputeLines(delta2),
	}
	return vk, nil
}

// heapBytes is the memory the key's buffers take.
func (vk *VerifyingKey) heapBytes() int64 {
	return int64(unsafe.Sizeof(*vk)) + int64(cap(vk.ic))*int64(unsafe.Sizeof(bn254.G1Affine{})) +
		int64(cap(vk.lines))*int64(unsafe.Sizeof(vk.lines[0]))
}

// NPublic is the number of public signals the key expects.
func (vk *VerifyingKey) NPublic() int { return len(vk.ic) - 1 }

// Verify checks proof against the public signals:
// e(A, B) = e(alpha, beta) · e(sum public_i·IC_i, gamma) · e(C, delta).
// It returns nil, or an error wrapping ErrPublicCount, ErrPublicSignalRange,
// ErrNotOnCurve, ErrNotInSubgroup or ErrInvalidProof.
func (vk *VerifyingKey) Verify(proof *Proof, public []fr.Element) error {
	if len(public) != vk.NPublic() {
		return fmt.Errorf("%w: got %d, key has %d", ErrPublicCount, len(public), vk.NPublic())
	}
	// A Proof built by hand may hold anything: check it like parsed JSON.
	if !proof.A.IsOnCurve() || !proof.C.IsOnCurve() || !proof.B.IsOnCurve() {
		return ErrNotOnCurve
	}
	if !proof.B.IsInSubGroup() {
		return fmt.Errorf("pi_b: %w", ErrNotInSubgroup)
	}
	// public[i] are fr.Elements, reduced by construction; ParsePublicSignals
	// rejects out-of-range decimal input before it gets here.
	var cpub bn254.G1Jac
	cpub.FromAffine(&vk.ic[0])
	if len(public) > 0 {
		var acc bn254.G1Jac
		if _, err := acc.MultiExp(vk.ic[1:], public, ecc.MultiExpConfig{NbTasks: 1}); err != nil {
			return fmt.Errorf("groth16: public input MSM: %w", err)
		}
		cpub.AddAssign(&acc)
	}
	var negPub, negC bn254.G1Affine
	negPub.FromJacobian(&cpub)
	negPub.Neg(&negPub)
	negC.Neg(&proof.C)

	// FE(ML(A,B) · ML(-pub,gamma) · ML(-C,delta)) == e(alpha, beta)
	m1, err := bn254.MillerLoop([]bn254.G1Affine{proof.A}, []bn254.G2Affine{proof.B})
	if err != nil {
		return fmt.Errorf("groth16: miller loop: %w", err)
	}
	// MillerLoopFixedQ overwrites the lines it is given: work on a copy so
	// the key stays intact and safe for concurrent use.
	lines := slices.Clone(vk.lines)
	m2, err := bn254.MillerLoopFixedQ([]bn254.G1Affine{negPub, negC}, lines)
	if err != nil {
		return fmt.Errorf("groth16: miller loop: %w", err)
	}
	m1.Mul(&m1, &m2)
	got := bn254.FinalExponentiation(&m1)
	if !got.Equal(&vk.alphaBeta) {
		return ErrInvalidProof
	}
	return nil
}

// VerifyJSON parses proof.json and public.json and verifies them; see
// ParseProof, ParsePublicSignals and Verify for the errors.
func (vk *VerifyingKey) VerifyJSON(proofJSON, publicJSON []byte) error {
	p, err := ParseProof(proofJSON)
	if err != nil {
		return err
	}
	pub, err := ParsePublicSignals(publicJSON)
	if err != nil {
		return err
	}
	return vk.Verify(p, pub)
}

type vkeyJSON struct {
	Protocol    string       `json:"protocol"`
	Curve       string       `json:"curve"`
	NPublic     *int         `json:"nPublic"`
	Alpha1      g1JSON       `json:"vk_alpha_1"`
	Beta2       g2JSON       `json:"vk_beta_2"`
	Gamma2      g2JSON       `json:"vk_gamma_2"`
	Delta2      g2JSON       `json:"vk_delta_2"`
	AlphaBeta12 [][][]string `json:"vk_alphabeta_12"`
	IC          []g1JSON     `json:"IC"`
}

// ParseVerifyingKey parses a snarkjs vkey.json (protocol "groth16", curve
// "bn128"). vk_alphabeta_12 is ignored and recomputed. Errors wrap
// ErrMalformedVerifyingKey, ErrUnsupportedProtocol, ErrNotOnCurve or
// ErrNotInSubgroup.
func ParseVerifyingKey(data []byte) (*VerifyingKey, error) {
	var v vkeyJSON
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedVerifyingKey, err)
	}
	if v.Protocol != "groth16" {
		return nil, fmt.Errorf("%w: protocol is %q", ErrUnsupportedProtocol, v.Protocol)
	}
	if !isBN254Name(v.Curve) {
		return nil, fmt.Errorf("%w: curve is %q", ErrUnsupportedProtocol, v.Curve)
	}
	if v.NPublic == nil || v.Alpha1 == nil || v.Beta2 == nil || v.Gamma2 == nil || v.Delta2 == nil || v.IC == nil {
		return nil, fmt.Errorf("%w: nPublic, vk_alpha_1, vk_beta_2, vk_gamma_2, vk_delta_2 and IC are required", ErrMalformedVerifyingKey)
	}
	if *v.NPublic < 0 || *v.NPublic+1 != len(v.IC) {
		return nil, fmt.Errorf("%w: nPublic is %d but IC has %d points", ErrMalformedVerifyingKey, *v.NPublic, len(v.IC))
	}
	var (
		alpha1                bn254.G1Affine
		beta2, gamma2, delta2 bn254.G2Affine
		err                   error
	)
	if alpha1, err = g1FromJSON(v.Alpha1, ErrMalformedVerifyingKey); err != nil {
		return nil, fmt.Errorf("vk_alpha_1: %w", err)
	}
	if beta2, err = g2FromJSON(v.Beta2, ErrMalformedVerifyingKey); err != nil {
		return nil, fmt.Errorf("vk_beta_2: %w", err)
	}
	if gamma2, err = g2FromJSON(v.Gamma2, ErrMalformedVerifyingKey); err != nil {
		return nil, fmt.Errorf("vk_gamma_2: %w", err)
	}
	if delta2, err = g2FromJSON(v.Delta2, ErrMalformedVerifyingKey); err != nil {
		return nil, fmt.Errorf("vk_delta_2: %w", err)
	}
	ic := make([]bn254.G1Affine, len(v.IC))
	for i := range v.IC {
		if ic[i], err = g1FromJSON(v.IC[i], ErrMalformedVerifyingKey); err != nil {
			return nil, fmt.Errorf("IC[%d]: %w", i, err)
		}
	}
	vk, err := NewVerifyingKey(alpha1, beta2, gamma2, delta2, ic)
	if err != nil {
		if errors.Is(err, ErrNotOnCurve) || errors.Is(err, ErrNotInSubgroup) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrMalformedVerifyingKey, err)
	}
	return vk, nil
}

// MarshalJSON writes the key as snarkjs's "zkey export verificationkey"
// does, including vk_alphabeta_12, indented by one space.
func (vk *VerifyingKey) MarshalJSON() ([]byte, error) {
	n := vk.NPublic()
	v := vkeyJSON{
		Protocol:    "groth16",
		Curve:       "bn128",
		NPublic:     &n,
		Alpha1:      g1ToJSON(&vk.alpha1),
		Beta2:       g2ToJSON(&vk.beta2),
		Gamma2:      g2ToJSON(&vk.gamma2),
		Delta2:      g2ToJSON(&vk.delta2),
		AlphaBeta12: gtToJSON(&vk.alphaBeta),
		IC:          make([]g1JSON, len(vk.ic)),
	}
	for i := range vk.ic {
		v.IC[i] = g1ToJSON(&vk.ic[i])
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// gtToJSON is ffjavascript's F12 toObject: [c0, c1], each [b0, b1, b2], each
// [a0, a1]. The tower (Fp2[u]/(u²+1), Fp6 = Fp2[v]/(v³-(9+u)),
// Fp12 = Fp6[w]/(w²-v)) is the same in both libraries.
func gtToJSON(e *bn254.GT) [][][]string {
	out := make([][][]string, 2)
	for i, c := range []*bn254.E6{&e.C0, &e.C1} {
		out[i] = [][]string{
			{fpDecimal(&c.B0.A0), fpDecimal(&c.B0.A1)},
			{fpDecimal(&c.B1.A0), fpDecimal(&c.B1.A1)},
			{fpDecimal(&c.B2.A0), fpDecimal(&c.B2.A1)},
		}
	}
	return out
}

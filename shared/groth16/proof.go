package groth16

import (
	"encoding/json"
	"fmt"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
)

// Proof is a Groth16 proof (A, B, C in snarkjs's pi_a, pi_b, pi_c).
type Proof struct {
	A bn254.G1Affine
	B bn254.G2Affine
	C bn254.G1Affine
}

type proofJSON struct {
	PiA      g1JSON `json:"pi_a"`
	PiB      g2JSON `json:"pi_b"`
	PiC      g1JSON `json:"pi_c"`
	Protocol string `json:"protocol"`
	Curve    string `json:"curve,omitempty"`
}

// MarshalJSON writes the proof as snarkjs and rapidsnark do:
// {"pi_a":[x,y,"1"],"pi_b":[[x.a0,x.a1],[y.a0,y.a1],["1","0"]],"pi_c":[x,y,"1"],"protocol":"groth16","curve":"bn128"}
// with decimal strings.
func (p *Proof) MarshalJSON() ([]byte, error) {
	return marshalCompact(proofJSON{
		PiA:      g1ToJSON(&p.A),
		PiB:      g2ToJSON(&p.B),
		PiC:      g1ToJSON(&p.C),
		Protocol: "groth16",
		Curve:    "bn128",
	})
}

// UnmarshalJSON parses a snarkjs/rapidsnark proof.json. It requires
// "protocol":"groth16", accepts a missing "curve" (rapidsnark omits it) or a
// BN254 name, and checks that every point is on the curve and, for pi_b, in
// the prime-order subgroup. Errors wrap ErrMalformedProof,
// ErrUnsupportedProtocol, ErrNotOnCurve or ErrNotInSubgroup.
func (p *Proof) UnmarshalJSON(data []byte) error {
	var v proofJSON
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedProof, err)
	}
	if v.PiA == nil || v.PiB == nil || v.PiC == nil {
		return fmt.Errorf("%w: pi_a, pi_b and pi_c are required", ErrMalformedProof)
	}
	if v.Protocol != "groth16" {
		return fmt.Errorf("%w: proof protocol is %q", ErrUnsupportedProtocol, v.Protocol)
	}
	if v.Curve != "" && !isBN254Name(v.Curve) {
		return fmt.Errorf("%w: proof curve is %q", ErrUnsupportedProtocol, v.Curve)
	}
	var q Proof
	var err error
	if q.A, err = g1FromJSON(v.PiA, ErrMalformedProof); err != nil {
		return fmt.Errorf("pi_a: %w", err)
	}
	if q.B, err = g2FromJSON(v.PiB, ErrMalformedProof); err != nil {
		return fmt.Errorf("pi_b: %w", err)
	}
	if q.C, err = g1FromJSON(v.PiC, ErrMalformedProof); err != nil {
		return fmt.Errorf("pi_c: %w", err)
	}
	*p = q
	return nil
}

// ParseProof parses proof.json; see Proof.UnmarshalJSON.
func ParseProof(data []byte) (*Proof, error) {
	p := new(Proof)
	if err := p.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return p, nil
}

// isBN254Name accepts the names snarkjs's getCurveFromName accepts for BN254.
func isBN254Name(s string) bool {
	switch s {
	case "bn128", "bn254", "alt_bn128", "BN128", "BN254", "ALT_BN128":
		return true
	}
	return false
}

// PublicSignals are the circuit's public outputs then public inputs
// (witness[1..nPublic]), as in public.json.
type PublicSignals []fr.Element

// MarshalJSON writes a JSON array of decimal strings.
func (s PublicSignals) MarshalJSON() ([]byte, error) {
	out := make([]string, len(s))
	for i := range s {
		out[i] = frDecimal(&s[i])
	}
	return marshalCompact(out)
}

// UnmarshalJSON parses a JSON array of decimal strings. A value that is not
// below the scalar field modulus is ErrPublicSignalRange (snarkjs rejects
// those too: accepting them would let one proof verify for several public
// inputs); anything else that is not an array of decimal strings is
// ErrMalformedPublic.
func (s *PublicSignals) UnmarshalJSON(data []byte) error {
	var raw []string
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedPublic, err)
	}
	if raw == nil {
		return fmt.Errorf("%w: not an array", ErrMalformedPublic)
	}
	out := make(PublicSignals, len(raw))
	mod := fr.Modulus()
	for i, r := range raw {
		v, ok := parseDecimal(r)
		if !ok {
			return fmt.Errorf("%w: signal %d, %q, is not a decimal integer", ErrMalformedPublic, i, r)
		}
		if v.Cmp(mod) >= 0 {
			return fmt.Errorf("%w: signal %d", ErrPublicSignalRange, i)
		}
		out[i].SetBigInt(v)
	}
	*s = out
	return nil
}

// ParsePublicSignals parses public.json; see PublicSignals.UnmarshalJSON.
func ParsePublicSignals(data []byte) (PublicSignals, error) {
	var s PublicSignals
	if err := s.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return s, nil
}

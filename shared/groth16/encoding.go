package groth16

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fp"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
)

// This file holds the snarkjs JSON forms of field elements and points:
// decimal strings, G1 as [x, y, "1"], G2 as [[x.a0, x.a1], [y.a0, y.a1],
// ["1", "0"]], and the point at infinity as ["0", "1", "0"] (G1) or
// [["0","0"], ["1","0"], ["0","0"]] (G2), as ffjavascript's toObject does.

// maxDecimalDigits bounds the significant digits parsed with big.Int; any
// longer number is at least 10^80, above both BN254 moduli.
const maxDecimalDigits = 80

// parseDecimal parses a non-negative decimal integer string strictly: digits
// only, no sign, no spaces. A number of more than maxDecimalDigits
// significant digits comes back as 10^80, which every caller rejects as out
// of range, without parsing it.
func parseDecimal(s string) (*big.Int, bool) {
	if len(s) == 0 {
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return nil, false
		}
	}
	sig := s
	for len(sig) > 1 && sig[0] == '0' {
		sig = sig[1:]
	}
	if len(sig) > maxDecimalDigits {
		return new(big.Int).Exp(big.NewInt(10), big.NewInt(maxDecimalDigits), nil), true
	}
	v, ok := new(big.Int).SetString(sig, 10)
	return v, ok
}

func decimalFp(s string) (fp.Element, error) {
	var e fp.Element
	v, ok := parseDecimal(s)
	if !ok {
		return e, fmt.Errorf("%q is not a decimal integer", s)
	}
	if v.Cmp(fp.Modulus()) >= 0 {
		return e, fmt.Errorf("coordinate %s is not below the base field modulus", s)
	}
	e.SetBigInt(v)
	return e, nil
}

func fpDecimal(e *fp.Element) string { return e.BigInt(new(big.Int)).String() }

func frDecimal(e *fr.Element) string { return e.BigInt(new(big.Int)).String() }

// g1JSON / g2JSON are the snarkjs object forms.
type (
	g1JSON []string
	g2JSON [][]string
)

func g1ToJSON(p *bn254.G1Affine) g1JSON {
	if p.IsInfinity() {
		return g1JSON{"0", "1", "0"}
	}
	return g1JSON{fpDecimal(&p.X), fpDecimal(&p.Y), "1"}
}

func g2ToJSON(p *bn254.G2Affine) g2JSON {
	if p.IsInfinity() {
		return g2JSON{{"0", "0"}, {"1", "0"}, {"0", "0"}}
	}
	return g2JSON{
		{fpDecimal(&p.X.A0), fpDecimal(&p.X.A1)},
		{fpDecimal(&p.Y.A0), fpDecimal(&p.Y.A1)},
		{"1", "0"},
	}
}

// g1FromJSON decodes an affine (z = "1") or infinity (z = "0") G1 point and
// checks it is on the curve (G1 has cofactor 1, so that is membership).
// Errors wrap errFormat or ErrNotOnCurve.
func g1FromJSON(v g1JSON, errFormat error) (bn254.G1Affine, error) {
	var p bn254.G1Affine
	if len(v) != 3 {
		return p, fmt.Errorf("%w: G1 point has %d coordinates, want 3", errFormat, len(v))
	}
	switch v[2] {
	case "0":
		return p, nil // infinity, (0,0) in gnark-crypto
	case "1":
	default:
		return p, fmt.Errorf("%w: G1 point z coordinate %q is neither \"1\" nor \"0\"", errFormat, v[2])
	}
	var err error
	if p.X, err = decimalFp(v[0]); err != nil {
		return p, fmt.Errorf("%w: %w", errFormat, err)
	}
	if p.Y, err = decimalFp(v[1]); err != nil {
		return p, fmt.Errorf("%w: %w", errFormat, err)
	}
	if p.IsInfinity() || !p.IsOnCurve() {
		return p, ErrNotOnCurve
	}
	return p, nil
}

// g2FromJSON decodes a G2 point and checks curve and subgroup membership.
func g2FromJSON(v g2JSON, errFormat error) (bn254.G2Affine, error) {
	var p bn254.G2Affine
	if len(v) != 3 || len(v[0]) != 2 || len(v[1]) != 2 || len(v[2]) != 2 {
		return p, fmt.Errorf("%w: G2 point is not 3 pairs of coordinates", errFormat)
	}
	switch {
	case v[2][0] == "0" && v[2][1] == "0":
		return p, nil
	case v[2][0] == "1" && v[2][1] == "0":
	default:
		return p, fmt.Errorf("%w: G2 point z coordinate is neither [\"1\",\"0\"] nor [\"0\",\"0\"]", errFormat)
	}
	var err error
	for _, c := range []struct {
		dst *fp.Element
		s   string
	}{{&p.X.A0, v[0][0]}, {&p.X.A1, v[0][1]}, {&p.Y.A0, v[1][0]}, {&p.Y.A1, v[1][1]}} {
		if *c.dst, err = decimalFp(c.s); err != nil {
			return p, fmt.Errorf("%w: %w", errFormat, err)
		}
	}
	if p.IsInfinity() || !p.IsOnCurve() {
		return p, ErrNotOnCurve
	}
	if !p.IsInSubGroup() {
		return p, ErrNotInSubgroup
	}
	return p, nil
}

// marshalCompact encodes v without HTML escaping or a trailing newline.
func marshalCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

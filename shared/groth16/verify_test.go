package groth16

import (
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fp"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
)

func TestVerifySnarkjsProof(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	if err := fx.vk.VerifyJSON(readFile(t, snarkjsProof), readFile(t, snarkjsPublic)); err != nil {
		t.Fatal(err)
	}
	// The same proof against the key embedded in the zkey.
	if err := fx.pk.VerifyingKey().VerifyJSON(readFile(t, snarkjsProof), readFile(t, snarkjsPublic)); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyingKeyJSONMatchesSnarkjs: the key exported from the zkey is
// byte-identical to "snarkjs zkey export verificationkey", vk_alphabeta_12
// included (gnark-crypto's and ffjavascript's pairings agree).
func TestVerifyingKeyJSONMatchesSnarkjs(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	got, err := fx.pk.VerifyingKey().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := readFile(t, snarkjsVkey); string(got) != string(want) {
		t.Fatalf("vkey.json differs from snarkjs's export\n got %s\nwant %s", got, want)
	}
	again, err := fx.vk.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(got) {
		t.Fatal("parse/marshal round trip changed vkey.json")
	}
}

// editJSON decodes a JSON object, applies f and re-encodes it.
func editJSON(t *testing.T, b []byte, f func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func g1Strings(p *bn254.G1Affine) []any {
	return []any{p.X.String(), p.Y.String(), "1"}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	proof := readFile(t, snarkjsProof)
	public := readFile(t, snarkjsPublic)
	var pub PublicSignals
	if err := json.Unmarshal(public, &pub); err != nil {
		t.Fatal(err)
	}
	r := fr.Modulus()
	q := fp.Modulus()
	plusR := new(big.Int).Add(big.NewInt(185643), r) // same residue, out of range

	// A G2 point on the curve but outside the subgroup.
	var e2 bn254.E2
	e2.A0.SetUint64(3)
	notInG2Jac := bn254.GeneratePointNotInG2(e2)
	var notInG2 bn254.G2Affine
	notInG2.FromJacobian(&notInG2Jac)

	_, _, g1, _ := bn254.Generators()

	tests := []struct {
		name          string
		proof, public []byte
		want          error
	}{
		{"flipped public signal", proof, []byte(`["185644","11"]`), ErrInvalidProof},
		{"swapped public signals", proof, []byte(`["11","185643"]`), ErrInvalidProof},
		{"public signal plus modulus", proof, []byte(`["` + plusR.String() + `","11"]`), ErrPublicSignalRange},
		{"public signal equal to modulus", proof, []byte(`["` + r.String() + `","11"]`), ErrPublicSignalRange},
		{"too few public signals", proof, []byte(`["185643"]`), ErrPublicCount},
		{"too many public signals", proof, []byte(`["185643","11","0"]`), ErrPublicCount},
		{"public not JSON", proof, []byte(`["185643",`), ErrMalformedPublic},
		{"public numbers not strings", proof, []byte(`[185643, 11]`), ErrMalformedPublic},
		{"public negative", proof, []byte(`["-1","11"]`), ErrMalformedPublic},
		{"public hex", proof, []byte(`["0x2d52b","11"]`), ErrMalformedPublic},
		{"public object", proof, []byte(`{"a":"1"}`), ErrMalformedPublic},
		{"public null", proof, []byte(`null`), ErrMalformedPublic},
		{"proof not JSON", []byte(`{"pi_a":`), public, ErrMalformedProof},
		{"proof empty object", []byte(`{}`), public, ErrMalformedProof},
		{"proof plonk", editJSON(t, proof, func(m map[string]any) { m["protocol"] = "plonk" }), public, ErrUnsupportedProtocol},
		{"proof other curve", editJSON(t, proof, func(m map[string]any) { m["curve"] = "bls12381" }), public, ErrUnsupportedProtocol},
		{"pi_a short", editJSON(t, proof, func(m map[string]any) { m["pi_a"] = []any{"1", "2"} }), public, ErrMalformedProof},
		{"pi_a z not 1", editJSON(t, proof, func(m map[string]any) { m["pi_a"].([]any)[2] = "2" }), public, ErrMalformedProof},
		{"pi_a coordinate not decimal", editJSON(t, proof, func(m map[string]any) { m["pi_a"].([]any)[0] = "12ab" }), public, ErrMalformedProof},
		{"pi_a coordinate above modulus", editJSON(t, proof, func(m map[string]any) { m["pi_a"].([]any)[0] = q.String() }), public, ErrMalformedProof},
		{"pi_a not on curve", editJSON(t, proof, func(m map[string]any) { m["pi_a"].([]any)[1] = "5" }), public, ErrNotOnCurve},
		{"pi_c not on curve", editJSON(t, proof, func(m map[string]any) { m["pi_c"].([]any)[0] = "5" }), public, ErrNotOnCurve},
		{"pi_b not on curve", editJSON(t, proof, func(m map[string]any) { m["pi_b"].([]any)[0].([]any)[0] = "5" }), public, ErrNotOnCurve},
		{"pi_b not in subgroup", editJSON(t, proof, func(m map[string]any) {
			m["pi_b"] = []any{
				[]any{notInG2.X.A0.String(), notInG2.X.A1.String()},
				[]any{notInG2.Y.A0.String(), notInG2.Y.A1.String()},
				[]any{"1", "0"},
			}
		}), public, ErrNotInSubgroup},
		{"pi_a replaced by the generator", editJSON(t, proof, func(m map[string]any) { m["pi_a"] = g1Strings(&g1) }), public, ErrInvalidProof},
		{"pi_a and pi_c swapped", editJSON(t, proof, func(m map[string]any) { m["pi_a"], m["pi_c"] = m["pi_c"], m["pi_a"] }), public, ErrInvalidProof},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := fx.vk.VerifyJSON(tt.proof, tt.public)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if !notInG2.IsOnCurve() || notInG2.IsInSubGroup() {
		t.Fatal("test point should be on the twist but outside G2")
	}
}

func TestParseVerifyingKeyRejects(t *testing.T) {
	t.Parallel()
	vk := readFile(t, snarkjsVkey)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"not JSON", []byte(`{"protocol":`), ErrMalformedVerifyingKey},
		{"array", []byte(`[]`), ErrMalformedVerifyingKey},
		{"plonk", editJSON(t, vk, func(m map[string]any) { m["protocol"] = "plonk" }), ErrUnsupportedProtocol},
		{"bls12-381", editJSON(t, vk, func(m map[string]any) { m["curve"] = "bls12381" }), ErrUnsupportedProtocol},
		{"nPublic wrong", editJSON(t, vk, func(m map[string]any) { m["nPublic"] = 3 }), ErrMalformedVerifyingKey},
		{"nPublic missing", editJSON(t, vk, func(m map[string]any) { delete(m, "nPublic") }), ErrMalformedVerifyingKey},
		{"IC missing", editJSON(t, vk, func(m map[string]any) { delete(m, "IC") }), ErrMalformedVerifyingKey},
		{"delta missing", editJSON(t, vk, func(m map[string]any) { delete(m, "vk_delta_2") }), ErrMalformedVerifyingKey},
		{"alpha not on curve", editJSON(t, vk, func(m map[string]any) { m["vk_alpha_1"].([]any)[0] = "7" }), ErrNotOnCurve},
		{"IC point not on curve", editJSON(t, vk, func(m map[string]any) { m["IC"].([]any)[1].([]any)[0] = "7" }), ErrNotOnCurve},
		{"gamma not on curve", editJSON(t, vk, func(m map[string]any) { m["vk_gamma_2"].([]any)[1].([]any)[1] = "7" }), ErrNotOnCurve},
		{"beta at infinity", editJSON(t, vk, func(m map[string]any) {
			m["vk_beta_2"] = []any{[]any{"0", "0"}, []any{"1", "0"}, []any{"0", "0"}}
		}), ErrNotOnCurve},
		{"coordinate as number", editJSON(t, vk, func(m map[string]any) { m["vk_alpha_1"].([]any)[0] = 7 }), ErrMalformedVerifyingKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := ParseVerifyingKey(tt.data); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestVerifyMatchesPlainPairingCheck compares the precomputed-lines check
// with gnark-crypto's plain four-pairing check on good and bad inputs.
func TestVerifyMatchesPlainPairingCheck(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	proof, public, err := Prove(t.Context(), fx.pk, fx.witness)
	if err != nil {
		t.Fatal(err)
	}
	plain := func(p *Proof, pub []fr.Element) bool {
		var cpub bn254.G1Jac
		cpub.FromAffine(&fx.vk.ic[0])
		for i := range pub {
			var term bn254.G1Jac
			term.FromAffine(&fx.vk.ic[i+1])
			term.ScalarMultiplication(&term, pub[i].BigInt(new(big.Int)))
			cpub.AddAssign(&term)
		}
		var c, negA bn254.G1Affine
		c.FromJacobian(&cpub)
		negA.Neg(&p.A)
		ok, err := bn254.PairingCheck(
			[]bn254.G1Affine{negA, fx.vk.alpha1, c, p.C},
			[]bn254.G2Affine{p.B, fx.vk.beta2, fx.vk.gamma2, fx.vk.delta2})
		return err == nil && ok
	}
	badPub := append(PublicSignals(nil), public...)
	badPub[0].SetUint64(1)
	badProof := *proof
	badProof.A, badProof.C = proof.C, proof.A
	for _, c := range []struct {
		name string
		p    *Proof
		pub  []fr.Element
		want bool
	}{{"good", proof, public, true}, {"bad public", proof, badPub, false}, {"bad proof", &badProof, public, false}} {
		if got := fx.vk.Verify(c.p, c.pub) == nil; got != c.want || plain(c.p, c.pub) != c.want {
			t.Errorf("%s: Verify ok = %v, plain ok = %v, want %v", c.name, got, plain(c.p, c.pub), c.want)
		}
	}
}

func TestPublicSignalsJSON(t *testing.T) {
	t.Parallel()
	in := `["0","1","21888242871839275222246405745257275088548364400416034343698204186575808495616"]`
	s, err := ParsePublicSignals([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != in {
		t.Fatalf("round trip: %s", out)
	}
	if _, err := ParsePublicSignals([]byte(`["` + strings.Repeat("9", 200) + `"]`)); !errors.Is(err, ErrPublicSignalRange) {
		t.Fatalf("200-digit signal: err = %v", err)
	}
	s, err = ParsePublicSignals([]byte(`["` + strings.Repeat("0", 200) + `7"]`))
	if err != nil || len(s) != 1 || s[0] != fr.NewElement(7) {
		t.Fatalf("leading zeros: %v, %v", s, err)
	}
}

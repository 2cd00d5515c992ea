// Package family names the three proof families (register, dsc, disclose) and
// the app's proof types that belong to each.
//
// A family's name is the one constant used for the NATS subject, the durable
// consumer, the metric label and the CLI flag alike.
package family

import (
	"fmt"
	"strings"
)

// Family is a proof family: one worker pool serves one family.
type Family string

// The three families.
const (
	Register Family = "register"
	DSC      Family = "dsc"
	Disclose Family = "disclose"
)

// All lists the families in a stable order.
func All() []Family { return []Family{Register, DSC, Disclose} }

// Parse returns the family named s, or an error naming the valid ones.
func Parse(s string) (Family, error) {
	switch f := Family(strings.TrimSpace(strings.ToLower(s))); f {
	case Register, DSC, Disclose:
		return f, nil
	}
	return "", fmt.Errorf("unknown proof family %q (want register, dsc or disclose)", s)
}

// ParseList parses a comma-separated list of families; "all" or "" means all.
func ParseList(s string) ([]Family, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "all") {
		return All(), nil
	}
	var out []Family
	seen := map[Family]bool{}
	for _, part := range strings.Split(s, ",") {
		f, err := Parse(part)
		if err != nil {
			return nil, err
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out, nil
}

// ProofType is the request's "type" field; its numeric code is stored in
// proofs.proof_type.
type ProofType string

// The proof types the app sends, in the order of their numeric codes 0..9.
var proofTypes = []ProofType{
	"register", "dsc", "disclose",
	"register_id", "dsc_id", "disclose_id",
	"register_aadhaar", "disclose_aadhaar",
	"register_kyc", "disclose_kyc",
}

// ProofTypes lists every proof type in code order.
func ProofTypes() []ProofType { return append([]ProofType(nil), proofTypes...) }

// ParseProofType returns the proof type named s.
func ParseProofType(s string) (ProofType, error) {
	for _, t := range proofTypes {
		if string(t) == s {
			return t, nil
		}
	}
	return "", fmt.Errorf("unknown proof type %q", s)
}

// ProofTypeFromCode maps a proofs.proof_type code back to its type.
func ProofTypeFromCode(code int) (ProofType, error) {
	if code < 0 || code >= len(proofTypes) {
		return "", fmt.Errorf("unknown proof type code %d", code)
	}
	return proofTypes[code], nil
}

// Code is the numeric code stored in proofs.proof_type.
func (t ProofType) Code() int {
	for i, p := range proofTypes {
		if p == t {
			return i
		}
	}
	return -1
}

// Family returns the family whose worker pool proves this type.
func (t ProofType) Family() Family {
	s := string(t)
	switch {
	case strings.HasPrefix(s, "register"):
		return Register
	case strings.HasPrefix(s, "dsc"):
		return DSC
	case strings.HasPrefix(s, "disclose"):
		return Disclose
	}
	return ""
}

// IsDisclose reports whether requests of this type must name an endpoint.
func (t ProofType) IsDisclose() bool { return t.Family() == Disclose }

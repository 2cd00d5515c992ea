package attest

import (
	"bytes"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Limits of Confidential Space tokens.
const (
	// MaxTokenLen bounds the token Verify reads and the launcher answer the
	// GCP attester accepts. Real tokens are about 5-7 KiB (three DER
	// certificates in the header).
	MaxTokenLen = 64 << 10
	// MinNonceLen and MaxNonceLen bound each eat_nonce entry as the
	// attestation service accepts it (bytes of the string it is sent);
	// MaxNonces bounds their number.
	MinGCPNonceLen = 10
	MaxGCPNonceLen = 74
	MaxGCPNonces   = 6
)

// Claim values of Confidential Space tokens.
const (
	// DebugDisabled is the dbgstat of a production Confidential Space
	// image: the only value the app accepts outside its own debug builds.
	DebugDisabled = "disabled-since-boot"
	// DebugEnabled is the dbgstat of the debug image, and of every
	// development token.
	DebugEnabled = "enabled"
	// DefaultAudience is the audience asked of the launcher (the app does
	// not check it).
	DefaultAudience = "USER"
	// GCPIssuer is the iss of tokens from Google's attestation service.
	GCPIssuer = "https://confidentialcomputing.googleapis.com"
	// TokenTypePKI is the launcher's token_type for x5c-signed tokens.
	TokenTypePKI = "PKI"
)

// GCPNonces returns the eat_nonce entries a Request becomes in the
// Confidential Space format: the standard base64 of each non-empty field
// in the order UserData, PublicKey, Nonce. A hello's entries are therefore
// [base64(client key), base64(server key)] with both keys compressed (33
// bytes, 44 characters): a 65-byte key would be 88 characters, over the
// service's limit of 74. Errors wrap ErrNonceField.
func GCPNonces(req Request) ([]string, error) {
	var out []string
	for _, f := range []struct {
		name string
		b    []byte
	}{{"user_data", req.UserData}, {"public_key", req.PublicKey}, {"nonce", req.Nonce}} {
		if len(f.b) == 0 {
			continue
		}
		n := base64.StdEncoding.EncodeToString(f.b)
		if len(n) < MinGCPNonceLen || len(n) > MaxGCPNonceLen {
			return nil, fmt.Errorf("%w: %s is %d bytes, %d in base64; a nonce must be %d..%d (raw 7..54 bytes)",
				ErrNonceField, f.name, len(f.b), len(n), MinGCPNonceLen, MaxGCPNonceLen)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no field to bind", ErrNonceField)
	}
	return out, nil
}

// CompressP256 returns the 33-byte compressed form of a P-256 public key
// given as 65 bytes uncompressed (0x04‖X‖Y) or already compressed. It does
// not check that the point is on the curve (callers have parsed the key).
func CompressP256(key []byte) ([]byte, error) {
	switch {
	case len(key) == 33 && (key[0] == 2 || key[0] == 3):
		return bytes.Clone(key), nil
	case len(key) == 65 && key[0] == 4:
		out := make([]byte, 33)
		out[0] = 2 | key[64]&1
		copy(out[1:], key[1:33])
		return out, nil
	}
	return nil, fmt.Errorf("attest: %d-byte key is not a SEC1 P-256 public key", len(key))
}

// parseP256 checks that b is a P-256 point, compressed or not.
func parseP256(b []byte) bool {
	switch len(b) {
	case 33:
		x, _ := elliptic.UnmarshalCompressed(elliptic.P256(), b)
		return x != nil
	case 65:
		x, _ := elliptic.Unmarshal(elliptic.P256(), b) //nolint:staticcheck // only checks the point
		return x != nil
	}
	return false
}

// tokenHeader is the JOSE header of a PKI token. x5c holds standard base64
// DER certificates, leaf first (RFC 7515 §4.1.6).
type tokenHeader struct {
	Alg string   `json:"alg"`
	Kid string   `json:"kid,omitempty"`
	Typ string   `json:"typ,omitempty"`
	X5C []string `json:"x5c"`
}

// encodeHeader returns the header segment of a token in a form both a JWT
// library (base64url without padding) and the app (node-forge's plain
// base64 decoder, which neither pads nor maps '-' and '_') decode alike:
// the header JSON is padded with spaces before its closing brace to a
// multiple of 3 bytes, so that its encoding needs no padding, and its
// encoding must hold no '-' or '_'. A JSON text of printable ASCII without
// '>', '?' or '~' never encodes to them; the check is there all the same.
func encodeHeader(h tokenHeader) (string, error) {
	raw, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("attest: encode token header: %w", err)
	}
	body := raw[:len(raw)-1] // without '}'
	for pad := 0; pad < 6; pad++ {
		if (len(body)+pad+1)%3 != 0 {
			continue
		}
		text := append(append(bytes.Clone(body), bytes.Repeat([]byte{' '}, pad)...), '}')
		seg := base64.RawURLEncoding.EncodeToString(text)
		if !strings.ContainsAny(seg, "-_") {
			return seg, nil
		}
	}
	return "", fmt.Errorf("%w: no padding of the header encodes without '-' or '_'", ErrTokenEncoding)
}

// appDecodableHeader reports whether the app can read a header segment:
// node-forge's decode64 drops characters outside the standard alphabet and
// writes NUL bytes for missing padding, so the segment must be a multiple
// of 4 characters, all standard base64.
func appDecodableHeader(seg string) error {
	if len(seg)%4 != 0 {
		return fmt.Errorf("%w: header segment of %d characters needs padding", ErrTokenEncoding, len(seg))
	}
	if _, err := base64.StdEncoding.DecodeString(seg); err != nil {
		return fmt.Errorf("%w: %v", ErrTokenEncoding, err)
	}
	return nil
}

// tokenBody holds the claims of a PKI token beside the registered ones,
// as far as this package writes and reads them (the service's tokens carry
// more, which are ignored).
type tokenBody struct {
	EATNonce  nonceList `json:"eat_nonce"`
	SecBoot   bool      `json:"secboot"`
	HWModel   string    `json:"hwmodel,omitempty"`
	SWName    string    `json:"swname"`
	SWVersion []string  `json:"swversion,omitempty"`
	DbgStat   string    `json:"dbgstat"`
	Submods   submods   `json:"submods"`
}

// tokenClaims is a token's payload as Verify reads it: aud may be a string
// or an array (jwt.RegisteredClaims takes both).
type tokenClaims struct {
	jwt.RegisteredClaims
	tokenBody
}

// devClaims is the payload a DevGCP writes, in the order and with the
// types of the service's tokens (aud a string, times in seconds).
type devClaims struct {
	Aud string `json:"aud"`
	Exp int64  `json:"exp"`
	Iat int64  `json:"iat"`
	Iss string `json:"iss"`
	Nbf int64  `json:"nbf"`
	Sub string `json:"sub"`
	tokenBody
}

// nonceList is eat_nonce: an array of strings, or one string when the
// token binds a single nonce (EAT allows both).
type nonceList []string

func (n *nonceList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*n = nonceList{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(n))
}

type submods struct {
	ConfidentialSpace *confidentialSpace `json:"confidential_space,omitempty"`
	Container         container          `json:"container"`
}

type confidentialSpace struct {
	SupportAttributes []string `json:"support_attributes"`
}

type container struct {
	ImageReference string `json:"image_reference,omitempty"`
	ImageDigest    string `json:"image_digest"`
	RestartPolicy  string `json:"restart_policy,omitempty"`
	ImageID        string `json:"image_id,omitempty"`
}

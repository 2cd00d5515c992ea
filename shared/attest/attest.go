package attest

import (
	"context"
	"fmt"
)

// Size limits of PROTOCOL.md. The NSM enforces the same ones on requests.
const (
	MaxUserDataLen      = 512
	MaxNonceLen         = 512
	MaxPublicKeyLen     = 1024
	MaxCABundleEntryLen = 1024
	// MaxDocumentLen bounds the input Verify reads. Real documents are about
	// 4.5 KiB and the NSM driver's response buffer is 12 KiB.
	MaxDocumentLen = 64 << 10
)

// Request holds the fields an attestation binds. In the Nitro format they
// are the document's user_data, nonce and public_key (nil fields are
// encoded as CBOR null, as the NSM does). In the Confidential Space format
// each non-empty field, in the order UserData, PublicKey, Nonce, becomes
// one entry of the token's eat_nonce, base64-encoded (see [GCPNonces]): a
// hello's token carries [base64(client key), base64(server key)].
type Request struct {
	UserData  []byte
	Nonce     []byte
	PublicKey []byte
}

// Format is the kind of attestation an Attester produces.
type Format string

// The formats the app knows.
const (
	// FormatNitro is an AWS Nitro Enclaves attestation document: untagged
	// COSE_Sign1 bytes (the app until mid-2025).
	FormatNitro Format = "nitro"
	// FormatGCP is a Google Confidential Space PKI token: a JWT (RS256, x5c
	// chain) whose UTF-8 bytes are the attestation (the app since).
	FormatGCP Format = "gcp"
)

// Attester produces an attestation over a Request in its Format: the raw
// COSE_Sign1 bytes of a Nitro document, or the UTF-8 bytes of a
// Confidential Space token.
type Attester interface {
	Attest(ctx context.Context, req Request) ([]byte, error)
	Format() Format
}

// DetectFormat tells a Nitro document (CBOR: an array or a tag) from a
// Confidential Space token (a JWT, whose JSON header encodes to "ey...").
// Anything else is an error wrapping ErrMalformed.
func DetectFormat(att []byte) (Format, error) {
	switch {
	case len(att) == 0:
		return "", fmt.Errorf("%w: empty attestation", ErrMalformed)
	case len(att) >= 2 && att[0] == 'e' && att[1] == 'y':
		return FormatGCP, nil
	case att[0]>>5 == 4 || att[0]>>5 == 6: // CBOR array or tag
		return FormatNitro, nil
	}
	return "", fmt.Errorf("%w: neither a COSE_Sign1 document nor a JWT (first byte 0x%02x)", ErrMalformed, att[0])
}

func (r Request) validate() error {
	for _, f := range []struct {
		name string
		n    int
		max  int
	}{
		{"user_data", len(r.UserData), MaxUserDataLen},
		{"nonce", len(r.Nonce), MaxNonceLen},
		{"public_key", len(r.PublicKey), MaxPublicKeyLen},
	} {
		if f.n > f.max {
			return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrInputTooLarge, f.name, f.n, f.max)
		}
	}
	return nil
}

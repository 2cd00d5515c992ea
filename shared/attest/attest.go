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

// Request holds the fields an attestation document binds. Nil fields are
// encoded as CBOR null, as the NSM does.
type Request struct {
	UserData  []byte
	Nonce     []byte
	PublicKey []byte
}

// Attester produces an attestation document over a Request: the raw,
// untagged COSE_Sign1 bytes.
type Attester interface {
	Attest(ctx context.Context, req Request) ([]byte, error)
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

package attest

import (
	"crypto/x509"
	"errors"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// Document is the payload of a verified attestation document.
type Document struct {
	ModuleID    string
	Digest      string
	Timestamp   time.Time
	PCRs        map[uint][]byte
	Certificate *x509.Certificate // the leaf, which signed the document
	CABundle    [][]byte          // DER, root first, as in the document
	PublicKey   []byte            // nil when absent or null
	UserData    []byte            // nil when absent or null
	Nonce       []byte            // nil when absent or null
}

// payload is the document body as the NSM writes it. Field order is the
// NSM's key order; the encoder keeps it. Nil byte slices encode as null.
type payload struct {
	ModuleID    string          `cbor:"module_id"`
	Digest      string          `cbor:"digest"`
	Timestamp   uint64          `cbor:"timestamp"`
	PCRs        cbor.RawMessage `cbor:"pcrs"`
	Certificate []byte          `cbor:"certificate"`
	CABundle    [][]byte        `cbor:"cabundle"`
	PublicKey   []byte          `cbor:"public_key"`
	UserData    []byte          `cbor:"user_data"`
	Nonce       []byte          `cbor:"nonce"`
}

// digestSHA384 is the only digest the app accepts.
const digestSHA384 = "SHA384"

// es384Headers returns the COSE headers of every document: protected
// {1: -35} (alg ES384), unprotected {}.
func es384Headers() cose.Headers {
	return cose.Headers{Protected: cose.ProtectedHeader{cose.HeaderLabelAlgorithm: cose.AlgorithmES384}}
}

// decMode returns the decoder for documents. Duplicate map keys are
// rejected so that no field can be read two ways.
func decMode() (cbor.DecMode, error) {
	return cbor.DecOptions{DupMapKey: cbor.DupMapKeyEnforcedAPF}.DecMode()
}

// bstr decodes only a CBOR byte string (major type 2). A plain []byte would
// also take an array of small integers.
type bstr []byte

func (b *bstr) UnmarshalCBOR(data []byte) error {
	if len(data) == 0 || data[0]>>5 != 2 {
		return errors.New("not a byte string")
	}
	return cbor.Unmarshal(data, (*[]byte)(b))
}

// isNull reports whether raw is CBOR null or undefined, which the NSM
// writes for absent optional fields.
func isNull(raw cbor.RawMessage) bool {
	return len(raw) == 1 && (raw[0] == 0xf6 || raw[0] == 0xf7)
}

func validPCRLength(n int) bool { return n == 32 || n == 48 || n == 64 }

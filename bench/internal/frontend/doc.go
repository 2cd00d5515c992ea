package frontend

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/openpassport/prover-fleet/shared/attest"
)

// DocReader is the load generator's attestation "verifier": it reads the
// document's public_key and checks user_data, without checking the
// signature, the chain, PCR0 or the age. The frontend's cost is what is
// measured; a full check would spend the shared cores on client work (the
// fleet-overhead benchmark's client does the full check).
type DocReader struct{}

type sign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

type docPayload struct {
	PublicKey []byte `cbor:"public_key"`
	UserData  []byte `cbor:"user_data"`
}

func (DocReader) Verify(doc, wantUserData []byte) (*attest.Document, error) {
	var msg sign1
	if err := cbor.Unmarshal(doc, &msg); err != nil {
		return nil, fmt.Errorf("frontend: attestation document: %w", err)
	}
	var p docPayload
	if err := cbor.Unmarshal(msg.Payload, &p); err != nil {
		return nil, fmt.Errorf("frontend: attestation payload: %w", err)
	}
	if !bytes.Equal(p.UserData, wantUserData) {
		return nil, errors.New("frontend: attestation user_data is not our key")
	}
	if len(p.PublicKey) == 0 {
		return nil, errors.New("frontend: attestation document has no public_key")
	}
	return &attest.Document{PublicKey: p.PublicKey, UserData: p.UserData}, nil
}

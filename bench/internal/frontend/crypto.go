package frontend

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"

	"github.com/openpassport/prover-fleet/bench/internal/gcm"
	"github.com/openpassport/prover-fleet/shared/attest"
)

// cryptoPair is the cryptography one hello+submit pair costs, with no wire,
// no session table, no database and no queue.
//
// Both ends (what this process does per pair when it is the frontend and
// the load generator at once): the client's P-256 key, the server's
// session key, the server's ECDH, the attestation document (the dev
// attester's Attest: one ECDSA P-384 signature), the client's ECDH, the
// client's AES-256-GCM encryption and the server's decryption.
//
// Server only: a fixed client key (made once per goroutine), then the
// server's session key, ECDH, Attest, and the decryption of a request
// encrypted under the new shared key (one AES-GCM seal of a few
// microseconds is included to make it).
type cryptoPair struct {
	attester  attest.Attester
	plaintext []byte
}

func (p cryptoPair) bothEnds(ctx context.Context) error {
	cpriv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	cpub := cpriv.PublicKey().Bytes()
	// Server: parse the client key, make the session key, ECDH, attest.
	ckey, err := ecdh.P256().NewPublicKey(cpub)
	if err != nil {
		return err
	}
	spriv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	sshared, err := spriv.ECDH(ckey)
	if err != nil {
		return err
	}
	spub := spriv.PublicKey().Bytes()
	if _, err := p.attester.Attest(ctx, attest.Request{UserData: cpub, PublicKey: spub}); err != nil {
		return err
	}
	// Client: parse the server key, ECDH, encrypt.
	skey, err := ecdh.P256().NewPublicKey(spub)
	if err != nil {
		return err
	}
	cshared, err := cpriv.ECDH(skey)
	if err != nil {
		return err
	}
	nonce, sealed, err := gcm.Seal(cshared, p.plaintext)
	if err != nil {
		return err
	}
	return gcm.Open(sshared, nonce, sealed)
}

// serverOnly needs a fixed client key.
func (p cryptoPair) serverOnly(ctx context.Context, cpub []byte) error {
	ckey, err := ecdh.P256().NewPublicKey(cpub)
	if err != nil {
		return err
	}
	spriv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	shared, err := spriv.ECDH(ckey)
	if err != nil {
		return err
	}
	if _, err := p.attester.Attest(ctx, attest.Request{UserData: cpub, PublicKey: spriv.PublicKey().Bytes()}); err != nil {
		return err
	}
	nonce, sealed, err := gcm.Seal(shared, p.plaintext)
	if err != nil {
		return err
	}
	return gcm.Open(shared, nonce, sealed)
}

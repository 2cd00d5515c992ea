// Package gcm is the AES-256-GCM the benchmarks' crypto baselines and
// client measurements do per request: a fresh cipher for each key (as the
// app and the frontend make one per session), a random 12-byte nonce.
package gcm

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
)

// Seal encrypts plaintext under key with a fresh random nonce.
func Seal(key, plaintext []byte) (nonce, sealed []byte, err error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, nil, err
	}
	nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	return nonce, aead.Seal(nil, nonce, plaintext, nil), nil
}

// Open decrypts what Seal made and checks its tag.
func Open(key, nonce, sealed []byte) error {
	aead, err := newAEAD(key)
	if err != nil {
		return err
	}
	if _, err := aead.Open(nil, nonce, sealed, nil); err != nil {
		return fmt.Errorf("gcm: %w", err)
	}
	return nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

package attest_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/openpassport/prover-fleet/shared/attest"
)

// A hello outside an enclave: the development attester binds the client's
// key (user_data) and the server's session key (public_key); the client
// verifies the document against the pinned development root and PCR0.
func ExampleVerifier() {
	dir, err := os.MkdirTemp("", "attest-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	dev, err := attest.NewDev(attest.DevConfig{Dir: dir, ModuleID: "i-0dev-enc0example"})
	if err != nil {
		log.Fatal(err)
	}
	clientKey := append([]byte{0x04}, make([]byte, 64)...) // 65-byte uncompressed P-256 point
	serverKey := append([]byte{0x04}, make([]byte, 64)...)
	doc, err := dev.Attest(context.Background(), attest.Request{UserData: clientKey, PublicKey: serverKey})
	if err != nil {
		log.Fatal(err)
	}

	verifier, err := attest.NewVerifier(attest.VerifierConfig{
		Roots:       []*x509.Certificate{dev.RootCert()},
		AllowedPCR0: [][]byte{dev.PCR0()},
		MaxAge:      time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	d, err := verifier.Verify(doc, clientKey)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.ModuleID, d.Digest, len(d.PublicKey), len(d.PCRs))

	_, err = verifier.Verify(doc, []byte("another client's key"))
	fmt.Println(errors.Is(err, attest.ErrUserData))
	// Output:
	// i-0dev-enc0example SHA384 65 16
	// true
}

// A hello in the Confidential Space format, outside Confidential Space: the
// development attester signs a PKI token whose eat_nonce binds the client's
// and the server's compressed keys; the client checks it against the pinned
// development root, accepting the debug status development tokens carry.
func ExampleTokenVerifier() {
	dir, err := os.MkdirTemp("", "attest-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	dev, err := attest.NewDevGCP(attest.DevGCPConfig{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	clientKey, _ := ecdh.P256().GenerateKey(rand.Reader)
	serverKey, _ := ecdh.P256().GenerateKey(rand.Reader)
	client, _ := attest.CompressP256(clientKey.PublicKey().Bytes())
	server, _ := attest.CompressP256(serverKey.PublicKey().Bytes())
	token, err := dev.Attest(context.Background(), attest.Request{UserData: client, PublicKey: server})
	if err != nil {
		log.Fatal(err)
	}
	format, _ := attest.DetectFormat(token)

	verifier, err := attest.NewTokenVerifier(attest.TokenVerifierConfig{
		Roots:               []*x509.Certificate{dev.RootCert()},
		AllowedImageDigests: []string{dev.ImageDigest()},
		AllowDebug:          true, // development tokens say dbgstat "enabled"
		MaxAge:              time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	t, err := verifier.Verify(token, clientKey.PublicKey().Bytes())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(format, len(t.ServerKey), t.DebugStatus, t.ImageDigest == dev.ImageDigest())

	other, _ := ecdh.P256().GenerateKey(rand.Reader)
	_, err = verifier.Verify(token, other.PublicKey().Bytes())
	fmt.Println(errors.Is(err, attest.ErrClientKey))
	// Output:
	// gcp 33 enabled true
	// true
}

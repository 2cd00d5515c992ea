package attest_test

import (
	"context"
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

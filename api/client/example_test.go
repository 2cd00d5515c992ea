package client_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/shared/attest"
)

// Submitting a request the way `proverctl submit` does, against a
// development frontend, and waiting for the proof with a progress display.
// (Not run: it needs a frontend and a worker; TestSubmitAndWait does the
// same against real ones.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// Pin the development root the frontend's --dev-attest-dir holds.
	rootPEM, err := os.ReadFile("dev-attest/" + attest.DevRootCertFile)
	if err != nil {
		fmt.Println(err)
		return
	}
	block, _ := pem.Decode(rootPEM)
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		fmt.Println(err)
		return
	}
	verifier, err := attest.NewVerifier(attest.VerifierConfig{
		Roots: []*x509.Certificate{root}, AllowAnyPCR0: true, MaxAge: time.Minute, // development only
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	c, err := client.Dial(ctx, "ws://127.0.0.1:8888/", client.Options{Verifier: verifier})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	progress := func(ev client.Event) {
		if ev.Stage == client.StageStatus {
			fmt.Printf("%s status %d\n", ev.UUID, ev.Status.Status)
			return
		}
		fmt.Printf("%s %s\n", ev.UUID, ev.Stage)
	}
	id, err := c.Submit(ctx, client.Request{
		Type:    "register",
		Circuit: "register_demo",
		Inputs:  json.RawMessage(`{"secret":"1234"}`),
	}, progress)
	if err != nil {
		fmt.Println(err) // a *client.Error carries the server's code and message
		return
	}
	final, err := c.Wait(ctx, id, progress)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(final.Proof), final.PublicInputs)
}

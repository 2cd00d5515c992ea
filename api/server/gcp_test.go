package server_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/internal/vectors"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/shared/attest"
)

// The app's recorded requests through a frontend whose attester is in the
// Confidential Space format: with the recorded server key, the hello's
// token must bind both keys compressed in eat_nonce, and the app's
// encrypted submits (sent with "id": 2, as the current app does) decrypt
// and are recorded and queued, whichever key encoding the client sent.
func TestVectorsConfidentialSpace(t *testing.T) {
	t.Parallel()
	vs, err := vectors.Load()
	must(t, err)
	e := setup(t, options{GCP: true})
	for _, form := range []string{"uncompressed", "compressed"} {
		for _, v := range vs {
			t.Run(form+"/"+v.Name, func(t *testing.T) {
				var hello struct {
					Params struct {
						UUID string `json:"uuid"`
					} `json:"params"`
				}
				must(t, json.Unmarshal(v.HelloRequest, &hello))
				id, sentKey := uuid.NewString(), vectors.Bytes(v.ClientPublicKey)
				replace := map[string]string{hello.Params.UUID: id}
				if form == "compressed" {
					sentKey = vectors.Bytes(v.ClientPublicKeyComp)
					replace[intsJSON(v.ClientPublicKey)] = intsJSON(v.ClientPublicKeyComp)
				}
				submit := bytes.Replace(appBody(t, v.SubmitRequest, replace), []byte(`"id":1`), []byte(`"id":2`), 1)
				priv, err := ecdh.P256().NewPrivateKey(vectors.Hex(v.ServerPrivateKeyHex))
				must(t, err)
				e.Keys.Set(priv)

				ws := e.dialWS()
				var res protocol.HelloResult
				wantResult(t, ws.send(t, appBody(t, v.HelloRequest, replace)), &res)
				if f, err := attest.DetectFormat(res.Attestation); err != nil || f != attest.FormatGCP {
					t.Fatalf("attestation format %q, %v", f, err)
				}
				tok, err := e.TokenVerifier.Verify(res.Attestation, sentKey)
				if err != nil {
					t.Fatalf("token: %v", err)
				}
				wantServer, _ := attest.CompressP256(vectors.Bytes(v.ServerPublicKey))
				wantClient, _ := attest.CompressP256(sentKey)
				if !bytes.Equal(tok.ServerKey, wantServer) || !bytes.Equal(tok.ClientKey, wantClient) {
					t.Fatalf("eat_nonce binds %x and %x, want the compressed session keys", tok.ClientKey, tok.ServerKey)
				}
				r := ws.send(t, submit)
				if string(r.ID) != "2" {
					t.Fatalf("submit answer id %s, want 2", r.ID)
				}
				var got string
				wantResult(t, r, &got)
				if got != id {
					t.Fatalf("submit answered %q, want %q", got, id)
				}
				e.checkRecordedAndQueued(t, id, v.Plaintext)
			})
		}
	}
}

// A client doing the app's current handshake itself: compressed key in,
// token checked, ECDH with the compressed server key from eat_nonce[1].
func TestConfidentialSpaceHandshake(t *testing.T) {
	t.Parallel()
	e := setup(t, options{GCP: true})
	for _, tr := range e.transports() {
		t.Run(tr.name(), func(t *testing.T) {
			priv, err := ecdh.P256().GenerateKey(rand.Reader)
			must(t, err)
			pub, _ := attest.CompressP256(priv.PublicKey().Bytes())
			id := uuid.NewString()
			var res protocol.HelloResult
			wantResult(t, tr.send(t, helloBody(t, pub, id)), &res)
			tok, err := e.TokenVerifier.Verify(res.Attestation, pub)
			must(t, err)
			if len(tok.ServerKey) != 33 {
				t.Fatalf("server key of %d bytes, want 33 (compressed)", len(tok.ServerKey))
			}
			server, err := handshake.ParseClientKey(tok.ServerKey)
			must(t, err)
			key, err := priv.ECDH(server)
			must(t, err)
			plain := request("register", "register_demo", `{"a":"1"}`, nil)
			var got string
			wantResult(t, tr.send(t, session{uuid: res.UUID, key: key}.submitBody(t, plain)), &got)
			e.checkRecordedAndQueued(t, id, plain)
		})
	}
}

// openpassport_attestation in the Confidential Space format: the fields
// become eat_nonce entries; one too long for a nonce is the client's error.
func TestAttestationConfidentialSpace(t *testing.T) {
	t.Parallel()
	e := setup(t, options{GCP: true})
	key := clientKey(t)
	comp, _ := attest.CompressP256(key)
	for _, tr := range e.transports() {
		var tokBytes protocol.Bytes
		wantResult(t, tr.send(t, body(t, 1, protocol.MethodAttestation, map[string]any{
			"user_data": protocol.Bytes(comp), "public_key": protocol.Bytes(comp)})), &tokBytes)
		tok, err := e.TokenVerifier.Verify(tokBytes, key)
		must(t, err)
		if !bytes.Equal(tok.ServerKey, comp) {
			t.Fatalf("%s: eat_nonce[1] %x", tr.name(), tok.ServerKey)
		}
		r := tr.send(t, body(t, 1, protocol.MethodAttestation, map[string]any{"user_data": protocol.Bytes(key)}))
		if r.Error == nil || r.Error.Code != protocol.CodeInvalidParams {
			t.Fatalf("%s: a 65-byte field gave %+v, want invalid params", tr.name(), r.Error)
		}
	}
}

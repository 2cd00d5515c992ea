package frontend

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"testing"

	"github.com/openpassport/prover-fleet/shared/attest"
)

func TestDocReader(t *testing.T) {
	dev, err := attest.NewDev(attest.DevConfig{Dir: t.TempDir(), ModuleID: "bench-test"})
	if err != nil {
		t.Fatal(err)
	}
	key := func() []byte {
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k.PublicKey().Bytes()
	}
	client, server := key(), key()
	doc, err := dev.Attest(t.Context(), attest.Request{UserData: client, PublicKey: server})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		doc      []byte
		userData []byte
		wantErr  bool
	}{
		{"reads public_key", doc, client, false},
		{"user_data is not our key", doc, key(), true},
		{"not CBOR", []byte("nonsense"), client, true},
		{"truncated", doc[:len(doc)/2], client, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DocReader{}.Verify(tt.doc, tt.userData)
			if tt.wantErr {
				if err == nil {
					t.Fatal("Verify succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.PublicKey, server) {
				t.Errorf("public_key %x, want %x", got.PublicKey, server)
			}
		})
	}
}

func TestCryptoPair(t *testing.T) {
	dev, err := attest.NewDev(attest.DevConfig{Dir: t.TempDir(), ModuleID: "bench-test"})
	if err != nil {
		t.Fatal(err)
	}
	p := cryptoPair{attester: dev, plaintext: []byte(`{"type":"disclose"}`)}
	ctx := t.Context()
	if err := p.bothEnds(ctx); err != nil {
		t.Errorf("bothEnds: %v", err)
	}
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.serverOnly(ctx, k.PublicKey().Bytes()); err != nil {
		t.Errorf("serverOnly: %v", err)
	}
	if err := p.serverOnly(ctx, []byte{4, 1, 2}); err == nil {
		t.Error("serverOnly with a bad client key succeeded")
	}
}

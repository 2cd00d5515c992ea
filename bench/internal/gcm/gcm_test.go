package gcm

import (
	"bytes"
	"testing"
)

func TestSealOpen(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	nonce, sealed, err := Seal(key, []byte("request"))
	if err != nil {
		t.Fatal(err)
	}
	if len(nonce) != 12 || len(sealed) != len("request")+16 {
		t.Fatalf("nonce %d bytes, sealed %d bytes", len(nonce), len(sealed))
	}
	if err := Open(key, nonce, sealed); err != nil {
		t.Fatal(err)
	}
	sealed[0] ^= 1
	if err := Open(key, nonce, sealed); err == nil {
		t.Error("a changed cipher text opened")
	}
	if _, _, err := Seal(key[:5], nil); err == nil {
		t.Error("a 5-byte key was accepted")
	}
}

package attest

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

func TestAWSNitroRootFingerprint(t *testing.T) {
	t.Parallel()
	root := awsRoot(t)
	// As published by AWS for AWS_NitroEnclaves_Root-G1.
	const want = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
	if got := sha256.Sum256(root.Raw); hex.EncodeToString(got[:]) != want {
		t.Fatalf("SHA-256 fingerprint %x, want %s", got, want)
	}
	if root.Subject.CommonName != "aws.nitro-enclaves" || !root.IsCA {
		t.Fatalf("subject %v", root.Subject)
	}
}

func awsRoot(t testing.TB) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(AWSNitroRootPEM())
	if block == nil || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatal("AWSNitroRootPEM is not one PEM block")
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// realNitroDocument is an attestation document from a real Nitro enclave
// (debug mode, so PCR0..2 are zero); see testdata/README.md.
func realNitroDocument(t testing.TB) []byte {
	t.Helper()
	b64, err := os.ReadFile("testdata/nitro-2024-09-17.cose.b64")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b64)))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestVerifyRealNitroDocument runs the verifier on a document the NSM
// wrote, chained to the real AWS root through AWS's intermediates.
func TestVerifyRealNitroDocument(t *testing.T) {
	t.Parallel()
	doc := realNitroDocument(t)
	issued := time.UnixMilli(0x191fd7354cf)
	newVerifier := func(now time.Time, pcr0 []byte, roots ...*x509.Certificate) *Verifier {
		v, err := NewVerifier(VerifierConfig{Roots: roots, AllowedPCR0: [][]byte{pcr0}, MaxAge: 5 * time.Minute, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	zeroPCR := make([]byte, 48)
	v := newVerifier(issued.Add(time.Minute), zeroPCR, awsRoot(t))

	userData, _ := hex.DecodeString("1220ecf94fb7bc410d9f93b00069f22bb257885297bdcee33a87e9f306c7d64281dc1220" + strings.Repeat("00", 32))
	d, err := v.Verify(doc, userData)
	if err != nil {
		t.Fatalf("real Nitro document: %v", err)
	}
	if d.ModuleID != "i-0bbf1bfe232b8c2ce-enc0191fc27458c1d41" || !d.Timestamp.Equal(issued) ||
		string(d.PublicKey) != "dummy" || !bytes.Equal(d.Nonce, append(make([]byte, 19), 1)) ||
		len(d.PCRs) != 16 || len(d.CABundle) != 4 || !bytes.Equal(d.CABundle[0], awsRoot(t).Raw) {
		t.Errorf("decoded %+v", d)
	}

	devRoot := setup(t).dev.RootCert()
	flipped := split(t, doc)
	flipped.Signature[0] ^= 0x80
	for _, c := range []struct {
		name string
		v    *Verifier
		doc  []byte
		want []byte
		err  error
	}{
		{"development root pinned", newVerifier(issued, zeroPCR, devRoot), doc, userData, ErrUntrustedRoot},
		{"checked today", newVerifier(time.Now(), zeroPCR, awsRoot(t)), doc, userData, ErrStale},
		{"another PCR0", newVerifier(issued, fill(48, 1), awsRoot(t)), doc, userData, ErrPCR0},
		{"other user_data", v, doc, userData[:32], ErrUserData},
		{"signature flipped", v, flipped.encode(t), userData, ErrSignature},
	} {
		if _, err := c.v.Verify(c.doc, c.want); !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
		}
	}
}

// TestDevMatchesNitroShape compares a development document with the real
// one: same COSE header bytes, same payload keys in the same order, same
// number of PCRs.
func TestDevMatchesNitroShape(t *testing.T) {
	t.Parallel()
	real := realNitroDocument(t)
	dev := attest(t, setup(t).dev, testRequest())
	const header = 8 // 84 44 a1 01 38 22 a0 59: array(4), protected {1: -35}, unprotected {}, payload bstr
	if !bytes.Equal(real[:header], dev[:header]) {
		t.Errorf("headers differ: real % x, dev % x", real[:header], dev[:header])
	}
	if got, want := payloadKeys(t, dev), payloadKeys(t, real); !slices.Equal(got, want) {
		t.Errorf("payload keys %v, NSM writes %v", got, want)
	}
	if got, want := len(payloadMap(t, dev)["pcrs"].(map[any]any)), len(payloadMap(t, real)["pcrs"].(map[any]any)); got != want {
		t.Errorf("%d PCRs, NSM writes %d", got, want)
	}
}

// payloadKeys lists the payload's keys in encoded order.
func payloadKeys(t testing.TB, doc []byte) []string {
	t.Helper()
	body := split(t, doc).Payload
	n := int(body[0] & 0x1f)
	if body[0]>>5 != 5 || n > 23 {
		t.Fatalf("payload starts %#x, want a short map", body[0])
	}
	dec := cbor.NewDecoder(bytes.NewReader(body[1:]))
	keys := make([]string, n)
	for i := range keys {
		var skip cbor.RawMessage
		if err := dec.Decode(&keys[i]); err != nil {
			t.Fatal(err)
		}
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

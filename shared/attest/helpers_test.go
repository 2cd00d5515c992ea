package attest

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// testModuleID mimics the NSM's module ids.
const testModuleID = "i-0123456789abcdef0-enc0123456789abcdef"

// clock is a settable time source shared by a Dev and its Verifier.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) At(d time.Duration) func() time.Time {
	return func() time.Time { return c.Now().Add(d) }
}

type fixture struct {
	dev      *Dev
	clock    *clock
	verifier *Verifier
}

// setup returns a Dev with its root in a fresh directory and a Verifier that
// pins that root and the Dev's PCR0, both reading the same clock.
func setup(t testing.TB) *fixture {
	t.Helper()
	clk := newClock(time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.UTC))
	dev, err := NewDev(DevConfig{Dir: t.TempDir(), ModuleID: testModuleID, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dev: dev, clock: clk, verifier: newTestVerifier(t, dev, clk, nil)}
}

func newTestVerifier(t testing.TB, dev *Dev, clk *clock, edit func(*VerifierConfig)) *Verifier {
	t.Helper()
	cfg := VerifierConfig{
		Roots:       []*x509.Certificate{dev.RootCert()},
		AllowedPCR0: [][]byte{dev.PCR0()},
		MaxAge:      5 * time.Minute,
		Now:         clk.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// testRequest is what a hello binds: the client's key as user_data and the
// server's session key as public_key (65-byte uncompressed P-256 points).
func testRequest() Request {
	return Request{UserData: fill(65, 0x04), PublicKey: fill(65, 0x05)}
}

func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

func attest(t testing.TB, dev *Dev, req Request) []byte {
	t.Helper()
	doc, err := dev.Attest(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// sign1 is a document split into its four elements.
type sign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

func split(t testing.TB, doc []byte) sign1 {
	t.Helper()
	var s sign1
	if err := cbor.Unmarshal(doc, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s sign1) encode(t testing.TB) []byte {
	t.Helper()
	b, err := cbor.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// payloadMap decodes a document's payload into a map a test can edit.
func payloadMap(t testing.TB, doc []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := cbor.Unmarshal(split(t, doc).Payload, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func encode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// resign signs body with the Dev's current leaf key, as Attest would: the
// way to build a document that breaks exactly one non-signature check.
func resign(t testing.TB, dev *Dev, body []byte) []byte {
	t.Helper()
	leaf, err := dev.leafAt(dev.now())
	if err != nil {
		t.Fatal(err)
	}
	doc, err := dev.sign(leaf, body)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// signWith signs body with any ES384 signer (for foreign leaves).
func signWith(t testing.TB, signer cose.Signer, body []byte) []byte {
	t.Helper()
	doc, err := cose.Sign1Untagged(rand.Reader, signer, es384Headers(), body, nil)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"testing"
)

// BenchmarkDevAttest is the cost of one development document: payload
// encoding plus one ES384 signature with the cached leaf key.
func BenchmarkDevAttest(b *testing.B) {
	f := setup(b)
	req := testRequest()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.dev.Attest(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDevAttestParallel(b *testing.B) {
	f := setup(b)
	req := testRequest()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.dev.Attest(b.Context(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkES384SignOnly is the floor under BenchmarkDevAttest: the P-384
// signature alone over a payload-sized message.
func BenchmarkES384SignOnly(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 2300)
	b.ReportAllocs()
	for b.Loop() {
		digest := sha512.Sum384(msg)
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify: parse, chain (one certificate signature), COSE signature.
func BenchmarkVerify(b *testing.B) {
	f := setup(b)
	doc := attest(b, f.dev, testRequest())
	want := testRequest().UserData
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.verifier.Verify(doc, want); err != nil {
			b.Fatal(err)
		}
	}
}

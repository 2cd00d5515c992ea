package attest

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// FuzzVerify feeds arbitrary bytes to Verify: it must never panic, every
// rejection must wrap one of the package's sentinels, and anything accepted
// must carry the expected user_data. The seeds (a valid development
// document, its tagged form, a real NSM document, near-misses) run under
// plain `go test`.
func FuzzVerify(f *testing.F) {
	fx := setup(f)
	want := testRequest().UserData
	valid := attest(f, fx.dev, testRequest())
	if _, err := fx.verifier.Verify(valid, want); err != nil {
		f.Fatalf("seed document does not verify: %v", err)
	}
	f.Add(valid)
	f.Add(append([]byte{0xd2}, valid...))
	f.Add(realNitroDocument(f))
	f.Add(valid[:len(valid)-7])
	f.Add([]byte{})
	f.Add([]byte{0x84, 0x40, 0xa0, 0x40, 0x40})                               // four empty elements
	f.Add([]byte{0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x41, 0xa0, 0x40}) // empty payload map

	f.Fuzz(func(t *testing.T, doc []byte) {
		d, err := fx.verifier.Verify(doc, want)
		if err != nil {
			if d != nil {
				t.Fatalf("document returned with error %v", err)
			}
			if !slices.ContainsFunc(allVerifyErrors, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if d == nil || !bytes.Equal(d.UserData, want) || d.Certificate == nil {
			t.Fatalf("accepted document %+v", d)
		}
	})
}

// allTokenErrors are the sentinels TokenVerifier.Verify may wrap.
var allTokenErrors = []error{
	ErrTokenTooLarge, ErrTokenMalformed, ErrTokenEncoding, ErrTokenAlgorithm, ErrX5C,
	ErrCertificate, ErrUntrustedRoot, ErrChain, ErrTokenSignature, ErrTokenTime, ErrStale,
	ErrDebug, ErrEATNonce, ErrClientKey, ErrServerKey, ErrImageDigest,
}

// FuzzVerifyToken feeds arbitrary text to TokenVerifier.Verify: it must
// never panic, every rejection must wrap one of the package's sentinels,
// and anything accepted must be bound to the expected client key. The
// seeds (a valid development token, near-misses) run under plain `go test`.
func FuzzVerifyToken(f *testing.F) {
	fx := gcpSetup(f)
	v := fx.verifier(f, nil)
	valid := fx.token(f)
	if _, err := v.Verify(valid, fx.client); err != nil {
		f.Fatalf("seed token does not verify: %v", err)
	}
	parts := bytes.Split(valid, []byte("."))
	f.Add(valid)
	f.Add(valid[:len(valid)-5])
	f.Add(bytes.Join([][]byte{parts[0], parts[1]}, []byte(".")))
	f.Add(bytes.Join([][]byte{parts[0], []byte("e30"), parts[2]}, []byte(".")))
	f.Add(bytes.Join([][]byte{[]byte("eyJhbGciOiJSUzI1NiJ9"), parts[1], parts[2]}, []byte(".")))
	f.Add([]byte("eyJ4NWMiOltudWxsLDEsImEiXSwiYWxnIjoiUlMyNTYifQ==.."))
	f.Add([]byte{})
	f.Add([]byte(".."))

	f.Fuzz(func(t *testing.T, tok []byte) {
		got, err := v.Verify(tok, fx.client)
		if err != nil {
			if got != nil {
				t.Fatalf("token returned with error %v", err)
			}
			if !slices.ContainsFunc(allTokenErrors, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if got == nil || !bytes.Equal(got.ClientKey, fx.client) || got.Chain[0] == nil {
			t.Fatalf("accepted token %+v", got)
		}
	})
}

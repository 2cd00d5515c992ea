package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

type docFunc func(t *testing.T, f *fixture, valid []byte) []byte

// verifyCase builds a fresh fixture, derives the document under test from a
// valid one, and verifies it with the fixture's verifier or an edited one.
type verifyCase struct {
	doc      docFunc                                           // nil: the valid document
	userData func() []byte                                     // nil: testRequest().UserData
	config   func(t *testing.T, f *fixture, c *VerifierConfig) // nil: the fixture's verifier
}

func (c verifyCase) run(t *testing.T) (*Document, error) {
	t.Helper()
	f := setup(t)
	doc := attest(t, f.dev, testRequest())
	if c.doc != nil {
		doc = c.doc(t, f, doc)
	}
	want := testRequest().UserData
	if c.userData != nil {
		want = c.userData()
	}
	v := f.verifier
	if c.config != nil {
		v = newTestVerifier(t, f.dev, f.clock, func(cfg *VerifierConfig) { c.config(t, f, cfg) })
	}
	d, err := v.Verify(doc, want)
	if err == nil && !bytes.Equal(d.UserData, want) {
		t.Fatalf("accepted user_data %x, want %x", d.UserData, want)
	}
	return d, err
}

// resigned edits the payload of the valid document and signs it again with
// the Dev's leaf, so only the edited check can fail.
func resigned(change func(m map[string]any)) docFunc {
	return func(t *testing.T, f *fixture, valid []byte) []byte {
		m := payloadMap(t, valid)
		change(m)
		return resign(t, f.dev, encode(t, m))
	}
}

// tampered replaces one field's value inside the signed payload bytes and
// keeps the old signature.
func tampered(field string, value any) docFunc {
	return func(t *testing.T, f *fixture, valid []byte) []byte {
		det, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			t.Fatal(err)
		}
		enc := func(v any) []byte {
			b, err := det.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		s := split(t, valid)
		key := enc(field)
		old := append(key, enc(payloadMap(t, valid)[field])...)
		if !bytes.Contains(s.Payload, old) {
			t.Fatalf("payload does not contain %s as re-encoded", field)
		}
		s.Payload = bytes.Replace(s.Payload, old, append(key, enc(value)...), 1)
		return s.encode(t)
	}
}

func pcrsOf(m map[string]any) map[any]any { return m["pcrs"].(map[any]any) }

// otherDev is a second Dev with its own root, same clock, same binary.
func otherDev(t *testing.T, f *fixture) *Dev {
	t.Helper()
	d, err := NewDev(DevConfig{Dir: t.TempDir(), ModuleID: testModuleID, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// leafWithKey issues a leaf under the fixture's root for an arbitrary key.
func leafWithKey(t *testing.T, f *fixture, pub any) []byte {
	t.Helper()
	now := f.clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "p256 leaf"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.dev.root, pub, f.dev.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	type tc struct {
		name     string
		doc      docFunc
		userData func() []byte // nil: testRequest().UserData
		config   func(t *testing.T, f *fixture, c *VerifierConfig)
		err      error
		field    string // for field-level errors: the *FieldError's Field
	}
	cases := []tc{
		{name: "empty input", doc: func(*testing.T, *fixture, []byte) []byte { return nil }, err: ErrMalformed},
		{name: "garbage", doc: func(*testing.T, *fixture, []byte) []byte { return []byte{0xff, 0x00, 0x13, 0x37} }, err: ErrMalformed},
		{name: "truncated", doc: func(_ *testing.T, _ *fixture, v []byte) []byte { return v[:len(v)/2] }, err: ErrMalformed},
		{name: "truncated by one byte", doc: func(_ *testing.T, _ *fixture, v []byte) []byte { return v[:len(v)-1] }, err: ErrMalformed},
		{name: "trailing byte", doc: func(_ *testing.T, _ *fixture, v []byte) []byte { return append(bytes.Clone(v), 0) }, err: ErrMalformed},
		{name: "too large", doc: func(*testing.T, *fixture, []byte) []byte { return make([]byte, MaxDocumentLen+1) }, err: ErrDocumentTooLarge},
		{name: "array of 3", doc: func(t *testing.T, _ *fixture, v []byte) []byte {
			s := split(t, v)
			return encode(t, []any{s.Protected, s.Unprotected, s.Payload})
		}, err: ErrNotSign1},
		{name: "array of 5", doc: func(t *testing.T, _ *fixture, v []byte) []byte {
			s := split(t, v)
			return encode(t, []any{s.Protected, s.Unprotected, s.Payload, s.Signature, s.Signature})
		}, err: ErrNotSign1},
		{name: "map instead of array", doc: func(t *testing.T, _ *fixture, _ []byte) []byte { return encode(t, map[string]int{"a": 1}) }, err: ErrNotSign1},
		{name: "tag 98 (COSE_Sign)", doc: func(t *testing.T, _ *fixture, v []byte) []byte {
			return encode(t, cbor.RawTag{Number: 98, Content: v})
		}, err: ErrNotSign1},
		{name: "alg ES256", doc: func(t *testing.T, _ *fixture, v []byte) []byte {
			s := split(t, v)
			s.Protected = encode(t, map[int]int{1: int(cose.AlgorithmES256)})
			return s.encode(t)
		}, err: ErrAlgorithm},
		{name: "no alg", doc: func(t *testing.T, _ *fixture, v []byte) []byte {
			s := split(t, v)
			s.Protected = []byte{}
			return s.encode(t)
		}, err: ErrAlgorithm},
		{name: "payload not a map", doc: func(t *testing.T, f *fixture, _ []byte) []byte {
			return resign(t, f.dev, encode(t, []int{1, 2, 3}))
		}, err: ErrMalformed},
		{name: "duplicate module_id", doc: func(t *testing.T, f *fixture, v []byte) []byte {
			body := split(t, v).Payload
			if body[0] != 0xa9 {
				t.Fatalf("payload starts with %#x, want a map of 9", body[0])
			}
			dup := append([]byte{0xaa}, body[1:]...)
			dup = append(dup, encode(t, "module_id")...)
			dup = append(dup, encode(t, "i-evil")...)
			return resign(t, f.dev, dup)
		}, err: ErrMalformed},
		{name: "module_id null", doc: resigned(func(m map[string]any) { m["module_id"] = nil }), err: ErrMissingField, field: "module_id"},
		{name: "module_id as bytes", doc: resigned(func(m map[string]any) { m["module_id"] = []byte(testModuleID) }), err: ErrFieldType, field: "module_id"},
		{name: "timestamp negative", doc: resigned(func(m map[string]any) { m["timestamp"] = -1 }), err: ErrFieldType, field: "timestamp"},
		{name: "timestamp as text", doc: resigned(func(m map[string]any) { m["timestamp"] = "1700000000000" }), err: ErrFieldType, field: "timestamp"},
		{name: "timestamp beyond int64", doc: resigned(func(m map[string]any) { m["timestamp"] = uint64(1) << 63 }), err: ErrFieldSize, field: "timestamp"},
		{name: "pcr as array of ints", doc: resigned(func(m map[string]any) {
			ints := make([]int, 48)
			pcrsOf(m)[uint64(3)] = ints
		}), err: ErrFieldType, field: "pcrs"},
		{name: "pcrs text key", doc: resigned(func(m map[string]any) { pcrsOf(m)["0"] = fill(48, 1) }), err: ErrFieldType, field: "pcrs"},
		{name: "certificate as text", doc: resigned(func(m map[string]any) { m["certificate"] = "MIIB" }), err: ErrFieldType, field: "certificate"},
		{name: "cabundle as bytes", doc: resigned(func(m map[string]any) { m["cabundle"] = []byte{1} }), err: ErrFieldType, field: "cabundle"},
		{name: "user_data as text", doc: resigned(func(m map[string]any) { m["user_data"] = "hello" }), err: ErrFieldType, field: "user_data"},
		{name: "digest SHA256", doc: resigned(func(m map[string]any) { m["digest"] = "SHA256" }), err: ErrDigest},
		{name: "digest lower case", doc: resigned(func(m map[string]any) { m["digest"] = "sha384" }), err: ErrDigest},
		{name: "pcr index 32", doc: resigned(func(m map[string]any) { pcrsOf(m)[uint64(32)] = fill(48, 1) }), err: ErrPCRIndex},
		{name: "pcr length 47", doc: resigned(func(m map[string]any) { pcrsOf(m)[uint64(4)] = fill(47, 1) }), err: ErrPCRLength},
		{name: "pcr length 0", doc: resigned(func(m map[string]any) { pcrsOf(m)[uint64(4)] = []byte{} }), err: ErrPCRLength},
		{name: "cabundle empty", doc: resigned(func(m map[string]any) { m["cabundle"] = []any{} }), err: ErrFieldSize, field: "cabundle"},
		{name: "cabundle entry empty", doc: resigned(func(m map[string]any) {
			m["cabundle"] = append(m["cabundle"].([]any), []byte{})
		}), err: ErrFieldSize, field: "cabundle[1]"},
		{name: "cabundle entry 1025 bytes", doc: resigned(func(m map[string]any) {
			m["cabundle"] = append(m["cabundle"].([]any), fill(MaxCABundleEntryLen+1, 0x30))
		}), err: ErrFieldSize, field: "cabundle[1]"},
		{name: "public_key 1025 bytes", doc: resigned(func(m map[string]any) { m["public_key"] = fill(MaxPublicKeyLen+1, 1) }), err: ErrFieldSize, field: "public_key"},
		{name: "user_data 513 bytes", doc: resigned(func(m map[string]any) { m["user_data"] = fill(MaxUserDataLen+1, 1) }),
			userData: func() []byte { return fill(MaxUserDataLen+1, 1) }, err: ErrFieldSize, field: "user_data"},
		{name: "nonce 513 bytes", doc: resigned(func(m map[string]any) { m["nonce"] = fill(MaxNonceLen+1, 1) }), err: ErrFieldSize, field: "nonce"},
		{name: "certificate garbage", doc: resigned(func(m map[string]any) { m["certificate"] = []byte("not DER") }), err: ErrCertificate},
		{name: "leaf key P-256", doc: func(t *testing.T, f *fixture, v []byte) []byte {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			m := payloadMap(t, v)
			m["certificate"] = leafWithKey(t, f, &key.PublicKey)
			return resign(t, f.dev, encode(t, m))
		}, err: ErrCertificate},
		{name: "cabundle intermediate garbage", doc: resigned(func(m map[string]any) {
			m["cabundle"] = append(m["cabundle"].([]any), fill(100, 0x30))
		}), err: ErrCertificate},
		{name: "wrong root", doc: func(t *testing.T, f *fixture, _ []byte) []byte {
			return attest(t, otherDev(t, f), testRequest())
		}, err: ErrUntrustedRoot},
		{name: "pinned root in cabundle, leaf from another root", doc: func(t *testing.T, f *fixture, _ []byte) []byte {
			other := otherDev(t, f)
			m := payloadMap(t, attest(t, other, testRequest()))
			m["cabundle"] = []any{f.dev.root.Raw}
			return resign(t, other, encode(t, m))
		}, err: ErrChain},
		{name: "timestamp after leaf expiry", doc: resigned(func(m map[string]any) {
			m["timestamp"] = m["timestamp"].(uint64) + uint64((devLeafValidity + time.Minute).Milliseconds())
		}), err: ErrChain},
		{name: "timestamp before leaf validity", doc: resigned(func(m map[string]any) {
			m["timestamp"] = m["timestamp"].(uint64) - uint64((2 * time.Minute).Milliseconds())
		}), err: ErrChain},
		{name: "signature bit flipped", doc: func(t *testing.T, _ *fixture, v []byte) []byte {
			s := split(t, v)
			s.Signature[10] ^= 0x01
			return s.encode(t)
		}, err: ErrSignature},
		{name: "signature truncated", doc: func(t *testing.T, _ *fixture, v []byte) []byte {
			s := split(t, v)
			s.Signature = s.Signature[:95]
			return s.encode(t)
		}, err: ErrSignature},
		{name: "signature by another key", doc: func(t *testing.T, f *fixture, v []byte) []byte {
			key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			signer, err := cose.NewSigner(cose.AlgorithmES384, key)
			if err != nil {
				t.Fatal(err)
			}
			return signWith(t, signer, split(t, v).Payload)
		}, err: ErrSignature},
		{name: "tampered module_id", doc: tampered("module_id", "i-0123456789abcdef0-enc0123456789abcdeX"), err: ErrSignature},
		{name: "tampered timestamp", doc: tampered("timestamp", uint64(time.Date(2026, 3, 14, 15, 9, 27, 0, time.UTC).UnixMilli())), err: ErrSignature},
		{name: "tampered pcrs", doc: func(t *testing.T, f *fixture, v []byte) []byte {
			pcrs := map[uint][]byte{}
			for i, p := range f.dev.pcrs {
				pcrs[i] = p
			}
			pcrs[3] = fill(48, 0x33)
			return tampered("pcrs", pcrs)(t, f, v)
		}, err: ErrSignature},
		{name: "tampered public_key", doc: tampered("public_key", fill(65, 0x06)), err: ErrSignature},
		{name: "tampered user_data", doc: tampered("user_data", fill(65, 0x07)), userData: func() []byte { return fill(65, 0x07) }, err: ErrSignature},
		{name: "tampered nonce", doc: tampered("nonce", fill(12, 0x08)), err: ErrSignature},
		{name: "PCR0 not allowed", config: func(_ *testing.T, _ *fixture, c *VerifierConfig) { c.AllowedPCR0 = [][]byte{fill(48, 0xaa)} }, err: ErrPCR0},
		{name: "PCR0 missing", doc: resigned(func(m map[string]any) { delete(pcrsOf(m), uint64(0)) }), err: ErrPCR0},
		{name: "user_data differs", userData: func() []byte { return fill(65, 0x09) }, err: ErrUserData},
		{name: "user_data one byte short", userData: func() []byte { return fill(64, 0x04) }, err: ErrUserData},
		{name: "user_data expected, none in document", doc: resigned(func(m map[string]any) { m["user_data"] = nil }), err: ErrUserData},
		{name: "user_data in document, none expected", userData: func() []byte { return nil }, err: ErrUserData},
		{name: "stale", config: func(_ *testing.T, f *fixture, c *VerifierConfig) { c.Now = f.clock.At(c.MaxAge + time.Millisecond) }, err: ErrStale},
		{name: "future beyond skew", config: func(_ *testing.T, f *fixture, c *VerifierConfig) {
			c.ClockSkew = time.Second
			c.Now = f.clock.At(-1001 * time.Millisecond)
		}, err: ErrFuture},
		{name: "future beyond default skew", config: func(_ *testing.T, f *fixture, c *VerifierConfig) {
			c.Now = f.clock.At(-DefaultClockSkew - time.Millisecond)
		}, err: ErrFuture},
	}
	for _, field := range []string{"module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle"} {
		cases = append(cases, tc{
			name:  "missing " + field,
			doc:   resigned(func(m map[string]any) { delete(m, field) }),
			err:   ErrMissingField,
			field: field,
		})
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d, err := verifyCase{c.doc, c.userData, c.config}.run(t)
			t.Log(err)
			if !errors.Is(err, c.err) {
				t.Fatalf("Verify error = %v, want %v", err, c.err)
			}
			if d != nil {
				t.Errorf("Verify returned a document with error %v", err)
			}
			for _, other := range allVerifyErrors {
				if other != c.err && errors.Is(err, other) {
					t.Errorf("error %q also matches %v; each failure must be distinct", err, other)
				}
			}
			if c.field != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != c.field {
					t.Fatalf("error %v: want *FieldError for %q", err, c.field)
				}
			}
		})
	}
}

var allVerifyErrors = []error{
	ErrDocumentTooLarge, ErrMalformed, ErrNotSign1, ErrAlgorithm, ErrMissingField, ErrFieldType, ErrFieldSize,
	ErrDigest, ErrPCRIndex, ErrPCRLength, ErrCertificate, ErrUntrustedRoot, ErrChain, ErrSignature,
	ErrPCR0, ErrUserData, ErrStale, ErrFuture,
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		doc      docFunc
		userData func() []byte
		config   func(t *testing.T, f *fixture, c *VerifierConfig)
	}{
		{name: "as attested (untagged)"},
		{name: "tagged COSE_Sign1 (tag 18)", doc: func(_ *testing.T, _ *fixture, v []byte) []byte { return append([]byte{0xd2}, v...) }},
		{name: "re-signed with keys in another order", doc: resigned(func(map[string]any) {})},
		{name: "optional fields absent", doc: resigned(func(m map[string]any) {
			delete(m, "public_key")
			delete(m, "nonce")
			delete(m, "user_data")
		}), userData: func() []byte { return []byte{} }},
		{name: "PCRs of 32 and 64 bytes", doc: resigned(func(m map[string]any) {
			pcrsOf(m)[uint64(5)] = fill(32, 5)
			pcrsOf(m)[uint64(31)] = fill(64, 6)
		})},
		{name: "indefinite-length payload map", doc: func(t *testing.T, f *fixture, v []byte) []byte {
			body := split(t, v).Payload
			indef := append(append([]byte{0xbf}, body[1:]...), 0xff)
			return resign(t, f.dev, indef)
		}},
		{name: "exactly MaxAge old", config: func(_ *testing.T, f *fixture, c *VerifierConfig) { c.Now = f.clock.At(c.MaxAge) }},
		{name: "exactly DefaultClockSkew ahead", config: func(_ *testing.T, f *fixture, c *VerifierConfig) { c.Now = f.clock.At(-DefaultClockSkew) }},
		{name: "AllowAnyPCR0", config: func(_ *testing.T, _ *fixture, c *VerifierConfig) {
			c.AllowedPCR0 = nil
			c.AllowAnyPCR0 = true
		}, doc: resigned(func(m map[string]any) { pcrsOf(m)[uint64(0)] = fill(48, 0xee) })},
		{name: "one of several roots and PCR0s", config: func(t *testing.T, f *fixture, c *VerifierConfig) {
			c.Roots = append([]*x509.Certificate{otherDev(t, f).RootCert()}, c.Roots...)
			c.AllowedPCR0 = append([][]byte{fill(48, 1), fill(32, 2)}, c.AllowedPCR0...)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d, err := verifyCase{c.doc, c.userData, c.config}.run(t)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if d.ModuleID != testModuleID || d.Certificate == nil {
				t.Errorf("document = %+v", d)
			}
		})
	}
}

func TestNewVerifierConfig(t *testing.T) {
	t.Parallel()
	f := setup(t)
	root := f.dev.RootCert()
	pcr0 := f.dev.PCR0()
	cases := []struct {
		name string
		cfg  VerifierConfig
		msg  string
	}{
		{"no roots", VerifierConfig{AllowedPCR0: [][]byte{pcr0}, MaxAge: time.Minute},
			"attest: invalid config: VerifierConfig.Roots is empty"},
		{"nil root", VerifierConfig{Roots: []*x509.Certificate{root, nil}, AllowedPCR0: [][]byte{pcr0}, MaxAge: time.Minute},
			"attest: invalid config: VerifierConfig.Roots[1] is nil"},
		{"no PCR0", VerifierConfig{Roots: []*x509.Certificate{root}, MaxAge: time.Minute},
			"attest: invalid config: VerifierConfig.AllowedPCR0 is empty (set AllowAnyPCR0 to accept any image, for development only)"},
		{"PCR0 list and AllowAnyPCR0", VerifierConfig{Roots: []*x509.Certificate{root}, AllowedPCR0: [][]byte{pcr0}, AllowAnyPCR0: true, MaxAge: time.Minute},
			"attest: invalid config: VerifierConfig.AllowAnyPCR0 is set together with AllowedPCR0"},
		{"PCR0 of 47 bytes", VerifierConfig{Roots: []*x509.Certificate{root}, AllowedPCR0: [][]byte{pcr0, pcr0[:47]}, MaxAge: time.Minute},
			"attest: invalid config: VerifierConfig.AllowedPCR0[1] is 47 bytes, want 32, 48 or 64"},
		{"no MaxAge", VerifierConfig{Roots: []*x509.Certificate{root}, AllowedPCR0: [][]byte{pcr0}},
			"attest: invalid config: VerifierConfig.MaxAge must be positive"},
		{"negative skew", VerifierConfig{Roots: []*x509.Certificate{root}, AllowedPCR0: [][]byte{pcr0}, MaxAge: time.Minute, ClockSkew: -1},
			"attest: invalid config: VerifierConfig.ClockSkew must not be negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewVerifier(c.cfg)
			if err == nil || err.Error() != c.msg || !errors.Is(err, ErrInvalidConfig) || v != nil {
				t.Fatalf("NewVerifier = %v, %v; want error %q", v, err, c.msg)
			}
		})
	}
}

// TestVerifierCopiesAllowList: a caller reusing its slice cannot widen the
// allow-list after NewVerifier.
func TestVerifierCopiesAllowList(t *testing.T) {
	t.Parallel()
	f := setup(t)
	allowed := f.dev.PCR0()
	v := newTestVerifier(t, f.dev, f.clock, func(c *VerifierConfig) { c.AllowedPCR0 = [][]byte{allowed} })
	doc := attest(t, f.dev, testRequest())
	copy(allowed, fill(48, 0))
	if _, err := v.Verify(doc, testRequest().UserData); err != nil {
		t.Fatalf("Verify after caller changed its slice: %v", err)
	}
}

func TestFieldErrorMessage(t *testing.T) {
	t.Parallel()
	f := setup(t)
	m := payloadMap(t, attest(t, f.dev, testRequest()))
	m["cabundle"] = append(m["cabundle"].([]any), fill(2000, 0x30))
	_, err := f.verifier.Verify(resign(t, f.dev, encode(t, m)), testRequest().UserData)
	const want = "attest: payload field cabundle[1]: bad size: 2000 bytes, want 1..1024"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
	if !strings.HasPrefix(err.Error(), "attest: ") {
		t.Fatal("errors name the package")
	}
}

package attest

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGCPRootFingerprint(t *testing.T) {
	t.Parallel()
	block, _ := pem.Decode(GCPConfidentialSpaceRootPEM())
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// SHA-1 as Confidential Space token validators pin it; SHA-256 as
	// openssl prints it for the certificate Google serves.
	if got := sha1.Sum(root.Raw); hex.EncodeToString(got[:]) != "b95120742c24e3aa34042e1c3ba3aad28b212321" {
		t.Fatalf("SHA-1 fingerprint %x", got)
	}
	if got := sha256.Sum256(root.Raw); hex.EncodeToString(got[:]) != "148b293821bb0c6a317f413c8ba475814091cb22d49b9e3c94198db8e8f86c39" {
		t.Fatalf("SHA-256 fingerprint %x", got)
	}
	if root.Subject.CommonName != "Confidential Space Root CA" || !root.IsCA {
		t.Fatalf("subject %v", root.Subject)
	}
	if _, ok := root.PublicKey.(*rsa.PublicKey); !ok {
		t.Fatal("root key is not RSA")
	}
}

func TestDetectFormat(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	g := gcpSetup(t)
	for _, tc := range []struct {
		name string
		att  []byte
		want Format
		err  error
	}{
		{name: "nitro document", att: attest(t, fx.dev, testRequest()), want: FormatNitro},
		{name: "tagged nitro document", att: append([]byte{0xd2}, attest(t, fx.dev, testRequest())...), want: FormatNitro},
		{name: "token", att: g.token(t), want: FormatGCP},
		{name: "empty", err: ErrMalformed},
		{name: "text", att: []byte("hello"), err: ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DetectFormat(tc.att)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("DetectFormat = %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestGCPNonces(t *testing.T) {
	t.Parallel()
	c33, c65 := make([]byte, 33), make([]byte, 65)
	for _, tc := range []struct {
		name string
		req  Request
		want int
		err  bool
	}{
		{name: "hello with compressed keys", req: Request{UserData: c33, PublicKey: c33}, want: 2},
		{name: "all three fields", req: Request{UserData: c33, PublicKey: c33, Nonce: make([]byte, 7)}, want: 3},
		{name: "largest field", req: Request{UserData: make([]byte, 54)}, want: 1},
		{name: "uncompressed key is too long", req: Request{UserData: c33, PublicKey: c65}, err: true},
		{name: "field too short", req: Request{Nonce: make([]byte, 6)}, err: true},
		{name: "nothing to bind", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := GCPNonces(tc.req)
			if tc.err {
				if !errors.Is(err, ErrNonceField) {
					t.Fatalf("err = %v, want ErrNonceField", err)
				}
				return
			}
			if err != nil || len(got) != tc.want {
				t.Fatalf("GCPNonces = %q, %v", got, err)
			}
			if got[0] != base64.StdEncoding.EncodeToString(tc.req.UserData) && len(tc.req.UserData) > 0 {
				t.Fatalf("first nonce %q is not base64(user_data)", got[0])
			}
		})
	}
}

// gcpFixture is a DevGCP with a settable clock, a client and a server key.
type gcpFixture struct {
	dev    *DevGCP
	clock  *clock
	dir    string
	client []byte // compressed
	server []byte // compressed
	full   []byte // the client key uncompressed
}

func gcpSetup(t testing.TB) *gcpFixture {
	t.Helper()
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	dev, err := NewDevGCP(DevGCPConfig{Dir: dir, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	ck, _ := ecdh.P256().GenerateKey(rand.Reader)
	sk, _ := ecdh.P256().GenerateKey(rand.Reader)
	fx := &gcpFixture{dev: dev, clock: c, dir: dir, full: ck.PublicKey().Bytes()}
	fx.client, _ = CompressP256(fx.full)
	fx.server, _ = CompressP256(sk.PublicKey().Bytes())
	return fx
}

func (fx *gcpFixture) token(t testing.TB) []byte {
	t.Helper()
	tok, err := fx.dev.Attest(t.Context(), Request{UserData: fx.client, PublicKey: fx.server})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (fx *gcpFixture) verifier(t testing.TB, mod func(*TokenVerifierConfig)) *TokenVerifier {
	t.Helper()
	cfg := TokenVerifierConfig{
		Roots:               []*x509.Certificate{fx.dev.RootCert()},
		AllowedImageDigests: []string{fx.dev.ImageDigest()},
		AllowDebug:          true,
		MaxAge:              5 * time.Minute,
		Now:                 fx.clock.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewTokenVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// forged is a token taken apart, to be changed and signed again.
type forged struct {
	header tokenHeader
	claims devClaims
	key    *rsa.PrivateKey
	rawHdr string // when set, the header segment as is
}

func (fx *gcpFixture) forge(t testing.TB) *forged {
	t.Helper()
	leaf, err := fx.dev.leafAt(fx.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(leaf.header)
	if err != nil {
		t.Fatal(err)
	}
	f := &forged{key: leaf.key}
	if err := json.Unmarshal(raw, &f.header); err != nil {
		t.Fatal(err)
	}
	nonces, err := GCPNonces(Request{UserData: fx.client, PublicKey: fx.server})
	if err != nil {
		t.Fatal(err)
	}
	f.claims = fx.dev.claims(nonces, fx.clock.Now())
	return f
}

func (f *forged) sign(t testing.TB) []byte {
	t.Helper()
	hdr := f.rawHdr
	if hdr == "" {
		var err error
		if hdr, err = encodeHeader(f.header); err != nil {
			t.Fatal(err)
		}
	}
	body, err := json.Marshal(f.claims)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signToken(hdr, body, f.key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// selfSigned makes a throwaway RSA CA certificate.
func selfSigned(t testing.TB, cn string) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-24 * 365 * time.Hour), NotAfter: time.Now().Add(24 * 365 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func randSerial(t testing.TB) *big.Int {
	s, err := randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDevGCPToken(t *testing.T) {
	t.Parallel()
	fx := gcpSetup(t)
	tok := fx.token(t)

	parts := strings.Split(string(tok), ".")
	if len(parts) != 3 {
		t.Fatalf("%d segments", len(parts))
	}
	// The app decodes the header with a plain base64 decoder.
	if err := appDecodableHeader(parts[0]); err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(parts[0])
	var h tokenHeader
	if err := json.Unmarshal(raw, &h); err != nil || h.Alg != "RS256" || h.Typ != "JWT" || len(h.X5C) != 3 {
		t.Fatalf("header %s: %v", raw, err)
	}
	if h.X5C[2] != base64.StdEncoding.EncodeToString(fx.dev.RootCert().Raw) {
		t.Fatal("x5c[2] is not the development root")
	}

	got, err := fx.verifier(t, nil).Verify(tok, fx.full)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := executableDigest(sha256.New())
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case !bytes.Equal(got.ClientKey, fx.client), !bytes.Equal(got.ServerKey, fx.server):
		t.Fatal("eat_nonce does not carry the session keys")
	case got.ImageDigest != "sha256:"+hex.EncodeToString(sum) || got.ImageDigest != fx.dev.ImageDigest():
		t.Fatalf("image digest %s is not the running binary's", got.ImageDigest)
	case got.DebugStatus != DebugEnabled:
		t.Fatalf("dbgstat %q", got.DebugStatus)
	case got.ExpiresAt.Sub(got.IssuedAt) != TokenLifetime, !got.IssuedAt.Equal(fx.clock.Now().Truncate(time.Second)):
		t.Fatalf("iat %v exp %v", got.IssuedAt, got.ExpiresAt)
	case got.Issuer != DevGCPIssuer || len(got.Audience) != 1 || got.Audience[0] != DefaultAudience:
		t.Fatalf("iss %q aud %q", got.Issuer, got.Audience)
	}
	// aud is a plain string, as in the service's tokens.
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if !bytes.Contains(payload, []byte(`"aud":"USER"`)) || !bytes.Contains(payload, []byte(`"eat_nonce":["`)) {
		t.Fatalf("payload %s", payload)
	}
}

func TestDevGCPRootReused(t *testing.T) {
	t.Parallel()
	fx := gcpSetup(t)
	nitro, err := NewDev(DevConfig{Dir: fx.dir, ModuleID: testModuleID})
	if err != nil {
		t.Fatal(err)
	}
	again, err := NewDevGCP(DevGCPConfig{Dir: fx.dir, Now: fx.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.RootPEM(), fx.dev.RootPEM()) {
		t.Fatal("a second DevGCP on the same directory made a new root")
	}
	if bytes.Equal(nitro.RootPEM(), fx.dev.RootPEM()) {
		t.Fatal("the Nitro and Confidential Space roots are the same file")
	}
	if st, err := os.Stat(filepath.Join(fx.dir, DevGCPRootKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("root key: %v %v", st, err)
	}
	// A token of the second attester verifies against the first's root.
	tok, err := again.Attest(t.Context(), Request{UserData: fx.client, PublicKey: fx.server})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.verifier(t, nil).Verify(tok, fx.client); err != nil {
		t.Fatal(err)
	}
	// A broken root is reported, not replaced.
	if err := os.WriteFile(filepath.Join(fx.dir, DevGCPRootKeyFile), nitroKeyPEM(t, fx.dir), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDevGCP(DevGCPConfig{Dir: fx.dir}); err == nil || !strings.Contains(err.Error(), "is not an RSA 2048 key") {
		t.Fatalf("err = %v", err)
	}
}

func nitroKeyPEM(t *testing.T, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, DevRootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDevGCPLeafRenewal(t *testing.T) {
	t.Parallel()
	fx := gcpSetup(t)
	first := fx.forge(t).header.X5C[0]
	fx.clock.Advance(devLeafValidity - devLeafRenew + time.Minute)
	tok := fx.token(t)
	if fx.forge(t).header.X5C[0] == first {
		t.Fatal("the leaf was not renewed before its last hour")
	}
	if _, err := fx.verifier(t, nil).Verify(tok, fx.client); err != nil {
		t.Fatal(err)
	}
}

func TestTokenVerifierChecks(t *testing.T) {
	t.Parallel()
	fx := gcpSetup(t)
	otherRoot, otherKey := selfSigned(t, "someone else's root")
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherClient, _ := ecdh.P256().GenerateKey(rand.Reader)
	b64 := base64.StdEncoding.EncodeToString

	for _, tc := range []struct {
		name   string
		token  func(f *forged) []byte
		client []byte
		cfg    func(*TokenVerifierConfig)
		later  time.Duration // the verifier's clock runs this far ahead
		want   error
	}{
		{name: "valid"},
		{name: "valid with the uncompressed client key", client: fx.full},
		{name: "production image allowed without AllowDebug", token: func(f *forged) []byte {
			f.claims.DbgStat = DebugDisabled
			return f.sign(t)
		}, cfg: func(c *TokenVerifierConfig) { c.AllowDebug = false }},
		{name: "any image", cfg: func(c *TokenVerifierConfig) { c.AllowedImageDigests, c.AllowAnyImage = nil, true }},
		{name: "debug image refused", cfg: func(c *TokenVerifierConfig) { c.AllowDebug = false }, want: ErrDebug},
		{name: "header needs padding", token: func(f *forged) []byte {
			raw, _ := json.Marshal(f.header)
			for len(raw)%3 == 0 {
				f.header.Kid += "x"
				raw, _ = json.Marshal(f.header)
			}
			f.rawHdr = base64.RawURLEncoding.EncodeToString(raw)
			return f.sign(t)
		}, want: ErrTokenEncoding},
		{name: "alg HS256", token: func(f *forged) []byte { f.header.Alg = "HS256"; return f.sign(t) }, want: ErrTokenAlgorithm},
		{name: "two certificates", token: func(f *forged) []byte { f.header.X5C = f.header.X5C[:2]; return f.sign(t) }, want: ErrX5C},
		{name: "four certificates", token: func(f *forged) []byte {
			f.header.X5C = append(f.header.X5C, f.header.X5C[2])
			return f.sign(t)
		}, want: ErrX5C},
		{name: "certificate not base64", token: func(f *forged) []byte { f.header.X5C[1] = "***"; return f.sign(t) }, want: ErrX5C},
		{name: "certificate not DER", token: func(f *forged) []byte { f.header.X5C[1] = b64([]byte("nope")); return f.sign(t) }, want: ErrCertificate},
		{name: "root not pinned", token: func(f *forged) []byte { f.header.X5C[2] = b64(otherRoot.Raw); return f.sign(t) }, want: ErrUntrustedRoot},
		{name: "intermediate did not sign the leaf", token: func(f *forged) []byte {
			f.header.X5C[1] = b64(otherRoot.Raw)
			return f.sign(t)
		}, want: ErrChain},
		{name: "leaf from another CA with the pinned root", token: func(f *forged) []byte {
			leafDER := leafUnder(t, otherRoot, otherKey, &key.PublicKey)
			f.header.X5C[0], f.header.X5C[1] = b64(leafDER), b64(otherRoot.Raw)
			f.key = key
			return f.sign(t)
		}, want: ErrChain},
		{name: "leaf expired", later: devLeafValidity + time.Minute, cfg: func(c *TokenVerifierConfig) { c.MaxAge = 24 * time.Hour }, want: ErrChain},
		{name: "signed by another key", token: func(f *forged) []byte { f.key = key; return f.sign(t) }, want: ErrTokenSignature},
		{name: "payload changed after signing", token: func(f *forged) []byte {
			tok := string(f.sign(t))
			f.claims.EATNonce[1] = b64(bytes.Repeat([]byte{2}, 33))
			other := strings.Split(string(f.sign(t)), ".")
			p := strings.Split(tok, ".")
			return []byte(p[0] + "." + other[1] + "." + p[2])
		}, want: ErrTokenSignature},
		{name: "expired", later: TokenLifetime + 2*time.Minute, cfg: func(c *TokenVerifierConfig) { c.MaxAge = 24 * time.Hour }, want: ErrTokenTime},
		{name: "no exp", token: func(f *forged) []byte { f.claims.Exp = 0; return f.signNoExp(t) }, want: ErrTokenTime},
		{name: "issued in the future", token: func(f *forged) []byte {
			f.claims.Iat += 3600
			f.claims.Nbf = f.claims.Iat
			return f.sign(t)
		}, want: ErrTokenTime},
		{name: "too old", later: 10 * time.Minute, want: ErrStale},
		{name: "one nonce", token: func(f *forged) []byte { f.claims.EATNonce = f.claims.EATNonce[:1]; return f.sign(t) }, want: ErrEATNonce},
		{name: "nonce not base64", token: func(f *forged) []byte { f.claims.EATNonce[1] = "#!"; return f.sign(t) }, want: ErrEATNonce},
		{name: "another client's key", client: otherClient.PublicKey().Bytes(), want: ErrClientKey},
		{name: "client key uncompressed in the token", token: func(f *forged) []byte {
			f.claims.EATNonce[0] = b64(fx.full)
			return f.sign(t)
		}, want: ErrClientKey},
		{name: "server key not on the curve", token: func(f *forged) []byte {
			f.claims.EATNonce[1] = b64(append([]byte{2}, bytes.Repeat([]byte{0xff}, 32)...))
			return f.sign(t)
		}, want: ErrServerKey},
		{name: "image not allowed", cfg: func(c *TokenVerifierConfig) {
			c.AllowedImageDigests = []string{"sha256:" + strings.Repeat("0", 64)}
		}, want: ErrImageDigest},
		{name: "image digest malformed", token: func(f *forged) []byte {
			f.claims.Submods.Container.ImageDigest = "sha384:" + strings.Repeat("0", 64)
			return f.sign(t)
		}, cfg: func(c *TokenVerifierConfig) { c.AllowedImageDigests, c.AllowAnyImage = nil, true }, want: ErrImageDigest},
		{name: "four segments", token: func(f *forged) []byte { return append(f.sign(t), ".x"...) }, want: ErrTokenMalformed},
		{name: "too large", token: func(*forged) []byte { return bytes.Repeat([]byte("e"), MaxTokenLen+1) }, want: ErrTokenTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := fx.token(t)
			if tc.token != nil {
				tok = tc.token(fx.forge(t))
			}
			client := fx.client
			if tc.client != nil {
				client = tc.client
			}
			c := newClock(fx.clock.Now().Add(tc.later))
			v := fx.verifier(t, func(cfg *TokenVerifierConfig) {
				cfg.Now = c.Now
				if tc.cfg != nil {
					tc.cfg(cfg)
				}
			})
			got, err := v.Verify(tok, client)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if !bytes.Equal(got.ServerKey, fx.server) {
					t.Fatal("wrong server key")
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// signNoExp signs the claims without exp.
func (f *forged) signNoExp(t testing.TB) []byte {
	t.Helper()
	raw, _ := json.Marshal(f.claims)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	delete(m, "exp")
	body, _ := json.Marshal(m)
	hdr, err := encodeHeader(f.header)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signToken(hdr, body, f.key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// leafUnder issues a leaf for pub under ca.
func leafUnder(t testing.TB, ca *x509.Certificate, caKey *rsa.PrivateKey, pub *rsa.PublicKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: "forged leaf"},
		NotBefore: ca.NotBefore, NotAfter: ca.NotAfter, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestTokenVerifierConfig(t *testing.T) {
	t.Parallel()
	root, _ := selfSigned(t, "r")
	ok := TokenVerifierConfig{Roots: []*x509.Certificate{root}, AllowAnyImage: true, MaxAge: time.Minute}
	for _, tc := range []struct {
		name string
		mod  func(*TokenVerifierConfig)
	}{
		{name: "no roots", mod: func(c *TokenVerifierConfig) { c.Roots = nil }},
		{name: "nil root", mod: func(c *TokenVerifierConfig) { c.Roots = []*x509.Certificate{nil} }},
		{name: "no image policy", mod: func(c *TokenVerifierConfig) { c.AllowAnyImage = false }},
		{name: "both image policies", mod: func(c *TokenVerifierConfig) { c.AllowedImageDigests = []string{"sha256:" + strings.Repeat("a", 64)} }},
		{name: "malformed digest", mod: func(c *TokenVerifierConfig) { c.AllowAnyImage, c.AllowedImageDigests = false, []string{"sha256:AB"} }},
		{name: "no max age", mod: func(c *TokenVerifierConfig) { c.MaxAge = 0 }},
		{name: "negative skew", mod: func(c *TokenVerifierConfig) { c.ClockSkew = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mod(&cfg)
			if _, err := NewTokenVerifier(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := NewTokenVerifier(ok); err != nil {
		t.Fatal(err)
	}
}

// fakeLauncher stands in for the Confidential Space launcher, which cannot
// run here: an HTTP server on a unix socket that handles POST /v1/token as
// the launcher's teeserver does (JSON body, unknown fields refused,
// audience and token_type required) and answers with a DevGCP token over
// the nonces it was given. answer, when set, replaces the token.
type fakeLauncher struct {
	socket string
	got    chan tokenRequest
}

func startLauncher(t *testing.T, dev *DevGCP, answer http.HandlerFunc) *fakeLauncher {
	t.Helper()
	// Unix socket paths are short; t.TempDir may be too long.
	dir, err := os.MkdirTemp("", "launcher")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	fl := &fakeLauncher{socket: filepath.Join(dir, "teeserver.sock"), got: make(chan tokenRequest, 8)}
	ln, err := net.Listen("unix", fl.socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/token", func(w http.ResponseWriter, r *http.Request) {
		if answer != nil {
			answer(w, r)
			return
		}
		if r.Method != http.MethodPost {
			http.Error(w, "use POST", http.StatusBadRequest)
			return
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		var req tokenRequest
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "failed to parse POST body as TokenOptions: "+err.Error(), http.StatusBadRequest)
			return
		}
		if req.Audience == "" || req.TokenType == "" {
			http.Error(w, "audience and token_type are required", http.StatusBadRequest)
			return
		}
		fl.got <- req
		tok, err := dev.token(req.Nonces)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write(tok)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return fl
}

func TestGCPAttester(t *testing.T) {
	t.Parallel()
	fx := gcpSetup(t)
	fl := startLauncher(t, fx.dev, nil)
	g, err := NewGCP(GCPConfig{Socket: fl.socket})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Format() != FormatGCP {
		t.Fatal("format")
	}
	tok, err := g.Attest(t.Context(), Request{UserData: fx.client, PublicKey: fx.server})
	if err != nil {
		t.Fatal(err)
	}
	req := <-fl.got
	want, _ := GCPNonces(Request{UserData: fx.client, PublicKey: fx.server})
	if req.Audience != DefaultAudience || req.TokenType != "PKI" || strings.Join(req.Nonces, ",") != strings.Join(want, ",") {
		t.Fatalf("launcher got %+v", req)
	}
	got, err := fx.verifier(t, nil).Verify(tok, fx.client)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.ServerKey, fx.server) {
		t.Fatal("server key")
	}
	if _, err := g.Attest(t.Context(), Request{UserData: fx.full}); !errors.Is(err, ErrNonceField) {
		t.Fatalf("65-byte field: err = %v", err)
	}
}

func TestGCPAttesterLauncherFailures(t *testing.T) {
	t.Parallel()
	fx := gcpSetup(t)
	unpadded := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","x5c":[]}`)) // 24 bytes: 32 chars, pads fine
	for len(unpadded)%4 == 0 {
		unpadded = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","x5c":[], "k":"` + strings.Repeat("a", len(unpadded)%7) + `"}`))
		unpadded += "A" // make it need padding
	}
	for _, tc := range []struct {
		name    string
		answer  http.HandlerFunc
		timeout time.Duration
		want    error
	}{
		{name: "launcher error", answer: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "failed to retrieve custom attestation service token", http.StatusInternalServerError)
		}, want: ErrLauncher},
		{name: "not a token", answer: func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") }, want: ErrLauncher},
		{name: "too large", answer: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(bytes.Repeat([]byte("a"), MaxTokenLen+10))
		}, want: ErrLauncher},
		{name: "header the app cannot decode", answer: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, unpadded+".e30.c2ln")
		}, want: ErrTokenEncoding},
		{name: "launcher hangs", answer: func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			timeout: 50 * time.Millisecond, want: context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl := startLauncher(t, fx.dev, tc.answer)
			g, err := NewGCP(GCPConfig{Socket: fl.socket, Timeout: tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			_, err = g.Attest(t.Context(), Request{UserData: fx.client, PublicKey: fx.server})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestNewGCPNeedsTheSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := NewGCP(GCPConfig{Socket: filepath.Join(dir, "missing.sock")}); err == nil {
		t.Fatal("a missing socket was accepted")
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewGCP(GCPConfig{Socket: file}); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewGCP(GCPConfig{Socket: file, Timeout: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
}

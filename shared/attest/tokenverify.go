package attest

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// TokenVerifierConfig configures a TokenVerifier.
type TokenVerifierConfig struct {
	// Roots are the pinned roots; the token's x5c[2] must be one of them
	// byte for byte. Production: GCPConfidentialSpaceRootPEM. Development:
	// DevGCP.RootCert.
	Roots []*x509.Certificate
	// AllowedImageDigests lists the container images accepted
	// ("sha256:<64 hex>", as submods.container.image_digest). Empty is an
	// error unless AllowAnyImage is set.
	AllowedImageDigests []string
	// AllowAnyImage skips the image check. Development only; the app itself
	// looks the digest up on chain instead.
	AllowAnyImage bool
	// AllowDebug accepts tokens whose dbgstat is not "disabled-since-boot"
	// (the debug image, development tokens), as the app's debug builds do.
	AllowDebug bool
	// MaxAge is how old a token may be (from its iat). Required.
	MaxAge time.Duration
	// ClockSkew is the leeway on iat, nbf and exp (0: DefaultClockSkew).
	ClockSkew time.Duration
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
}

// Token is what a verified token says about the session.
type Token struct {
	// ClientKey is eat_nonce[0] decoded: the client's key, compressed.
	ClientKey []byte
	// ServerKey is eat_nonce[1] decoded: the server's session key, a P-256
	// point (33 bytes compressed from this project's attesters).
	ServerKey []byte
	// ImageDigest is submods.container.image_digest, "sha256:<64 hex>".
	ImageDigest string
	// DebugStatus is dbgstat.
	DebugStatus string
	Issuer      string
	Audience    []string
	IssuedAt    time.Time
	ExpiresAt   time.Time
	// Chain is the verified x5c: leaf, intermediate, root.
	Chain [3]*x509.Certificate
}

// TokenVerifier checks Confidential Space PKI tokens. It is safe for
// concurrent use.
type TokenVerifier struct {
	roots    []*x509.Certificate
	digests  []string
	anyImage bool
	debug    bool
	maxAge   time.Duration
	skew     time.Duration
	now      func() time.Time
}

// NewTokenVerifier validates cfg and returns a TokenVerifier.
func NewTokenVerifier(cfg TokenVerifierConfig) (*TokenVerifier, error) {
	if len(cfg.Roots) == 0 {
		return nil, configErr("TokenVerifierConfig.Roots is empty")
	}
	v := &TokenVerifier{anyImage: cfg.AllowAnyImage, debug: cfg.AllowDebug, maxAge: cfg.MaxAge, skew: cfg.ClockSkew, now: cfg.Now}
	for i, root := range cfg.Roots {
		if root == nil {
			return nil, configErr("TokenVerifierConfig.Roots[%d] is nil", i)
		}
		v.roots = append(v.roots, root)
	}
	switch {
	case len(cfg.AllowedImageDigests) == 0 && !cfg.AllowAnyImage:
		return nil, configErr("TokenVerifierConfig.AllowedImageDigests is empty (set AllowAnyImage to accept any image, for development only)")
	case len(cfg.AllowedImageDigests) > 0 && cfg.AllowAnyImage:
		return nil, configErr("TokenVerifierConfig.AllowAnyImage is set together with AllowedImageDigests")
	}
	for i, d := range cfg.AllowedImageDigests {
		if !imageDigestPattern.MatchString(d) {
			return nil, configErr("TokenVerifierConfig.AllowedImageDigests[%d] %q is not sha256:<64 lowercase hex>", i, d)
		}
		v.digests = append(v.digests, d)
	}
	switch {
	case cfg.MaxAge <= 0:
		return nil, configErr("TokenVerifierConfig.MaxAge must be positive")
	case cfg.ClockSkew < 0:
		return nil, configErr("TokenVerifierConfig.ClockSkew must not be negative")
	}
	if v.skew == 0 {
		v.skew = DefaultClockSkew
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Verify checks a token as the app's validatePKIToken and its caller do,
// and more:
//
//   - the header decodes as the app decodes it (plain base64), alg is
//     RS256 and x5c holds exactly three certificates, RSA keys;
//   - x5c[2] is a pinned root; the leaf chains through x5c[1] to it (the
//     app checks only the leaf's signature by the intermediate) and every
//     certificate is within its validity now;
//   - the RS256 signature verifies with the leaf's key;
//   - iat, nbf and exp hold now (within ClockSkew; exp is required) and iat
//     is at most MaxAge old (the app checks none of these);
//   - dbgstat is "disabled-since-boot" unless AllowDebug;
//   - eat_nonce[0] is clientKey in compressed form (the app compares it
//     with its own compressed key) and eat_nonce[1] is a P-256 key;
//   - the image digest is "sha256:<64 hex>" and allowed (the app asks its
//     on-chain registry instead).
//
// It returns what the token says, or an error wrapping the sentinel of the
// first failed check. clientKey is the client's P-256 key as it sent it,
// 33 or 65 bytes.
func (v *TokenVerifier) Verify(token []byte, clientKey []byte) (*Token, error) {
	want, err := CompressP256(clientKey)
	if err != nil {
		return nil, fmt.Errorf("%w: expected key: %v", ErrClientKey, err)
	}
	if len(token) > MaxTokenLen {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTokenTooLarge, len(token), MaxTokenLen)
	}
	if !utf8.Valid(token) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrTokenMalformed)
	}
	parts := strings.Split(string(token), ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: %d segments, want 3", ErrTokenMalformed, len(parts))
	}
	chain, err := v.decodeChain(parts[0])
	if err != nil {
		return nil, err
	}
	now := v.now()
	if err := v.verifyChain(chain, now); err != nil {
		return nil, err
	}
	claims, err := v.verifySignature(string(token), chain[0], now)
	if err != nil {
		return nil, err
	}
	return v.checkClaims(claims, chain, want, now)
}

// decodeChain reads the header: app-decodable, RS256, three RSA
// certificates in x5c.
func (v *TokenVerifier) decodeChain(seg string) ([3]*x509.Certificate, error) {
	var chain [3]*x509.Certificate
	if err := appDecodableHeader(seg); err != nil {
		return chain, err
	}
	raw, _ := base64.StdEncoding.DecodeString(seg) // appDecodableHeader checked it
	var h struct {
		Alg any   `json:"alg"`
		X5C []any `json:"x5c"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return chain, fmt.Errorf("%w: header: %v", ErrTokenMalformed, err)
	}
	if h.Alg != "RS256" {
		return chain, fmt.Errorf("%w: %v", ErrTokenAlgorithm, h.Alg)
	}
	if len(h.X5C) != 3 {
		return chain, fmt.Errorf("%w: %d entries", ErrX5C, len(h.X5C))
	}
	for i, e := range h.X5C {
		s, ok := e.(string)
		if !ok {
			return chain, fmt.Errorf("%w: x5c[%d] is not a string", ErrX5C, i)
		}
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return chain, fmt.Errorf("%w: x5c[%d]: %v", ErrX5C, i, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return chain, fmt.Errorf("%w: x5c[%d]: %v", ErrCertificate, i, err)
		}
		if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
			// node-forge, the app's X.509 library, reads RSA keys only.
			return chain, fmt.Errorf("%w: x5c[%d] key is not RSA", ErrCertificate, i)
		}
		chain[i] = cert
	}
	return chain, nil
}

// verifyChain requires the pinned root and the full chain, each
// certificate valid now.
func (v *TokenVerifier) verifyChain(chain [3]*x509.Certificate, now time.Time) error {
	leaf, inter, root := chain[0], chain[1], chain[2]
	if !slices.ContainsFunc(v.roots, func(r *x509.Certificate) bool { return bytes.Equal(r.Raw, root.Raw) }) {
		return ErrUntrustedRoot
	}
	for i, c := range chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return fmt.Errorf("%w: x5c[%d] is valid from %v to %v, not now (%v)", ErrChain, i, c.NotBefore, c.NotAfter, now.UTC())
		}
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inters.AddCert(inter)
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inters,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrChain, err)
	}
	// The chain must be the one sent: leaf, x5c[1], x5c[2].
	if !slices.ContainsFunc(chains, func(c []*x509.Certificate) bool {
		return len(c) == 3 && c[1].Equal(inter) && c[2].Equal(root)
	}) {
		return fmt.Errorf("%w: the leaf does not chain through x5c[1]", ErrChain)
	}
	return nil
}

// verifySignature checks RS256 with the leaf's key and the time claims.
func (v *TokenVerifier) verifySignature(token string, leaf *x509.Certificate, now time.Time) (*tokenClaims, error) {
	var claims tokenClaims
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithPaddingAllowed(),
		jwt.WithLeeway(v.skew),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	_, err := parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return leaf.PublicKey, nil })
	switch {
	case err == nil:
		return &claims, nil
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, fmt.Errorf("%w: %v", ErrTokenSignature, err)
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet),
		errors.Is(err, jwt.ErrTokenUsedBeforeIssued), errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return nil, fmt.Errorf("%w: %v", ErrTokenTime, err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return nil, fmt.Errorf("%w: %v", ErrTokenSignature, err)
	}
	return nil, fmt.Errorf("%w: %v", ErrTokenMalformed, err)
}

func (v *TokenVerifier) checkClaims(c *tokenClaims, chain [3]*x509.Certificate, wantClient []byte, now time.Time) (*Token, error) {
	if c.IssuedAt != nil {
		if age := now.Sub(c.IssuedAt.Time); age > v.maxAge {
			return nil, fmt.Errorf("%w: issued %v ago, limit %v", ErrStale, age, v.maxAge)
		}
	} else {
		return nil, fmt.Errorf("%w: no iat", ErrTokenTime)
	}
	if !v.debug && c.DbgStat != DebugDisabled {
		return nil, fmt.Errorf("%w: %q", ErrDebug, c.DbgStat)
	}
	if len(c.EATNonce) < 2 {
		return nil, fmt.Errorf("%w: %d entries", ErrEATNonce, len(c.EATNonce))
	}
	client, err := decodeNonce(c.EATNonce[0])
	if err != nil {
		return nil, fmt.Errorf("%w: eat_nonce[0]: %v", ErrEATNonce, err)
	}
	if !bytes.Equal(client, wantClient) {
		return nil, fmt.Errorf("%w (token: %d bytes, expected the %d-byte compressed key)", ErrClientKey, len(client), len(wantClient))
	}
	server, err := decodeNonce(c.EATNonce[1])
	if err != nil {
		return nil, fmt.Errorf("%w: eat_nonce[1]: %v", ErrEATNonce, err)
	}
	if !parseP256(server) {
		return nil, fmt.Errorf("%w: %d bytes", ErrServerKey, len(server))
	}
	digest := c.Submods.Container.ImageDigest
	if !imageDigestPattern.MatchString(digest) {
		return nil, fmt.Errorf("%w: %q is not sha256:<64 lowercase hex>", ErrImageDigest, digest)
	}
	if !v.anyImage && !slices.Contains(v.digests, digest) {
		return nil, fmt.Errorf("%w: %s", ErrImageDigest, digest)
	}
	t := &Token{
		ClientKey:   client,
		ServerKey:   server,
		ImageDigest: digest,
		DebugStatus: c.DbgStat,
		Issuer:      c.Issuer,
		Audience:    c.Audience,
		IssuedAt:    c.IssuedAt.Time.UTC(),
		Chain:       chain,
	}
	if c.ExpiresAt != nil {
		t.ExpiresAt = c.ExpiresAt.Time.UTC()
	}
	return t, nil
}

// decodeNonce reads an eat_nonce entry as the app does (Node's
// Buffer.from(s, "base64"), which takes the standard and the URL-safe
// alphabets, padded or not).
func decodeNonce(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

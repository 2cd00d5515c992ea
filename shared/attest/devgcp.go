package attest

import (
	"bytes"
	"context"
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
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Files a DevGCP attester keeps in DevGCPConfig.Dir (beside a Dev
// attester's root.pem and root.key, which it does not touch).
const (
	DevGCPRootCertFile = "gcp-root.pem" // the development root certificate, PEM
	DevGCPRootKeyFile  = "gcp-root.key" // its RSA private key, PKCS#8 PEM, mode 0600
	devGCPLockFile     = "gcp-root.lock"
)

const (
	devGCPRSABits            = 2048
	devGCPIntermediateExpiry = 365 * 24 * time.Hour
	devGCPOrganization       = "prover-fleet development attestation (not Google Confidential Space)"
	// DevGCPRootCommonName is the subject CN of every development
	// Confidential Space root.
	DevGCPRootCommonName = "prover-fleet DEVELOPMENT Confidential Space root - not Google, proves nothing"
	// DevGCPIssuer is the iss of development tokens.
	DevGCPIssuer = "prover-fleet-dev (not " + GCPIssuer + ")"
	// TokenLifetime is exp - iat of a token, as the service issues them.
	TokenLifetime = time.Hour
)

// imageDigestPattern is the form of submods.container.image_digest; the app
// takes the 64 hex digits after "sha256:" as the image hash it looks up.
var imageDigestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// DevGCPConfig configures a DevGCP attester.
type DevGCPConfig struct {
	// Dir holds the development root (gcp-root.pem, gcp-root.key). It is
	// created with mode 0700 if missing; an existing root is reused.
	Dir string
	// Audience is the aud of every token (empty: DefaultAudience).
	Audience string
	// ImageDigest, if set ("sha256:<64 hex>"), replaces the digest of the
	// running binary in submods.container.image_digest.
	ImageDigest string
	// ImageReference is submods.container.image_reference (empty:
	// "prover-fleet-dev").
	ImageReference string
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
}

// DevGCP is the development Attester of the Confidential Space format: it
// signs PKI tokens in the attestation service's format (RS256, x5c of
// leaf, intermediate and root) with a leaf certified by an intermediate
// under a development root kept on disk. Its tokens bind the request as
// eat_nonce (see GCPNonces), report the SHA-256 of the running binary as
// the image digest and say dbgstat "enabled": the app accepts them only in
// its debug builds, and only with the development root pinned. Safe for
// concurrent use; Attest costs one RSA-2048 signature.
type DevGCP struct {
	aud, digest, ref string
	now              func() time.Time
	root             *x509.Certificate
	rootPEM          []byte
	inter            *x509.Certificate
	interKey         *rsa.PrivateKey

	renew sync.Mutex // serialises leaf renewal
	leaf  atomic.Pointer[gcpLeaf]
}

// gcpLeaf is the current signing identity and its encoded token header.
type gcpLeaf struct {
	key       *rsa.PrivateKey
	header    string // the token's first segment
	notBefore time.Time
	renewAt   time.Time
}

// NewDevGCP validates cfg, loads or creates the development root in
// cfg.Dir, measures the running binary, and issues an intermediate and the
// first leaf.
func NewDevGCP(cfg DevGCPConfig) (*DevGCP, error) {
	if cfg.Dir == "" {
		return nil, configErr("DevGCPConfig.Dir is required")
	}
	if cfg.ImageDigest != "" && !imageDigestPattern.MatchString(cfg.ImageDigest) {
		return nil, configErr("DevGCPConfig.ImageDigest %q is not sha256:<64 lowercase hex>", cfg.ImageDigest)
	}
	d := &DevGCP{aud: cfg.Audience, digest: cfg.ImageDigest, ref: cfg.ImageReference, now: cfg.Now}
	if d.aud == "" {
		d.aud = DefaultAudience
	}
	if d.ref == "" {
		d.ref = "prover-fleet-dev"
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.digest == "" {
		sum, err := executableDigest(sha256.New())
		if err != nil {
			return nil, err
		}
		d.digest = "sha256:" + hex.EncodeToString(sum)
	}
	root, rootKey, err := loadOrCreateRoot(cfg.Dir, devGCPRoot(), d.now())
	if err != nil {
		return nil, err
	}
	d.root = root
	d.rootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	if d.inter, d.interKey, err = issueIntermediate(root, rootKey.(*rsa.PrivateKey), d.now()); err != nil {
		return nil, err
	}
	if _, err := d.leafAt(d.now()); err != nil {
		return nil, err
	}
	return d, nil
}

// Format is FormatGCP.
func (d *DevGCP) Format() Format { return FormatGCP }

// RootPEM returns the development root certificate, PEM-encoded.
func (d *DevGCP) RootPEM() []byte { return bytes.Clone(d.rootPEM) }

// RootCert returns the development root certificate, for
// TokenVerifierConfig.Roots.
func (d *DevGCP) RootCert() *x509.Certificate { return d.root }

// ImageDigest returns the image digest every token reports
// ("sha256:<64 hex>"), for TokenVerifierConfig.AllowedImageDigests.
func (d *DevGCP) ImageDigest() string { return d.digest }

// Attest returns a token over req, issued now: its UTF-8 bytes.
func (d *DevGCP) Attest(ctx context.Context, req Request) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	nonces, err := GCPNonces(req)
	if err != nil {
		return nil, err
	}
	return d.token(nonces)
}

// token signs a token over eat_nonce entries as the launcher passes them.
func (d *DevGCP) token(nonces []string) ([]byte, error) {
	now := d.now()
	leaf, err := d.leafAt(now)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(d.claims(nonces, now))
	if err != nil {
		return nil, fmt.Errorf("attest: encode token payload: %w", err)
	}
	return signToken(leaf.header, body, leaf.key)
}

// claims are a token's payload, in the service's shape: registered claims,
// eat_nonce, the platform, dbgstat "enabled", the container.
func (d *DevGCP) claims(nonces []string, now time.Time) devClaims {
	iat := now.Unix()
	return devClaims{
		Aud: d.aud,
		Exp: now.Add(TokenLifetime).Unix(),
		Iat: iat,
		Iss: DevGCPIssuer,
		Nbf: iat,
		Sub: "prover-fleet-dev",
		tokenBody: tokenBody{
			EATNonce:  nonces,
			HWModel:   "DEVELOPMENT",
			SWName:    "CONFIDENTIAL_SPACE",
			SWVersion: []string{"dev"},
			DbgStat:   DebugEnabled,
			Submods: submods{Container: container{
				ImageReference: d.ref,
				ImageDigest:    d.digest,
				RestartPolicy:  "Never",
			}},
		},
	}
}

// signToken joins an encoded header and a payload and signs them RS256.
func signToken(header string, payload []byte, key *rsa.PrivateKey) ([]byte, error) {
	signing := header + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := jwt.SigningMethodRS256.Sign(signing, key)
	if err != nil {
		return nil, fmt.Errorf("attest: sign token: %w", err)
	}
	return []byte(signing + "." + base64.RawURLEncoding.EncodeToString(sig)), nil
}

// leafAt returns a leaf valid at now, issuing a new one when the current
// one is not yet valid or is within devLeafRenew of expiry (a token lives
// TokenLifetime, less than devLeafRenew, so every token's leaf outlives it).
func (d *DevGCP) leafAt(now time.Time) (*gcpLeaf, error) {
	usable := func(l *gcpLeaf) bool { return l != nil && !now.Before(l.notBefore) && now.Before(l.renewAt) }
	if l := d.leaf.Load(); usable(l) {
		return l, nil
	}
	d.renew.Lock()
	defer d.renew.Unlock()
	if l := d.leaf.Load(); usable(l) {
		return l, nil
	}
	l, err := d.issueLeaf(now)
	if err != nil {
		return nil, err
	}
	d.leaf.Store(l)
	return l, nil
}

func (d *DevGCP) issueLeaf(now time.Time) (*gcpLeaf, error) {
	key, err := rsa.GenerateKey(rand.Reader, devGCPRSABits)
	if err != nil {
		return nil, fmt.Errorf("attest: generate token signing key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "prover-fleet development token signer", Organization: []string{devGCPOrganization}},
		NotBefore:             now.Add(-time.Minute).Truncate(time.Second),
		NotAfter:              now.Add(devLeafValidity).Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if tmpl.NotAfter.After(d.inter.NotAfter) {
		tmpl.NotAfter = d.inter.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, d.inter, &key.PublicKey, d.interKey)
	if err != nil {
		return nil, fmt.Errorf("attest: issue token signing certificate: %w", err)
	}
	kid := sha1.Sum(der)
	header, err := encodeHeader(tokenHeader{
		Alg: "RS256",
		Kid: hex.EncodeToString(kid[:]),
		Typ: "JWT",
		X5C: []string{
			base64.StdEncoding.EncodeToString(der),
			base64.StdEncoding.EncodeToString(d.inter.Raw),
			base64.StdEncoding.EncodeToString(d.root.Raw),
		},
	})
	if err != nil {
		return nil, err
	}
	return &gcpLeaf{key: key, header: header, notBefore: tmpl.NotBefore, renewAt: tmpl.NotAfter.Add(-devLeafRenew)}, nil
}

// issueIntermediate makes the intermediate CA between the development root
// and the leaves, fresh for each process (Google's chain has one too).
func issueIntermediate(root *x509.Certificate, rootKey *rsa.PrivateKey, now time.Time) (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, devGCPRSABits)
	if err != nil {
		return nil, nil, fmt.Errorf("attest: generate development intermediate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "prover-fleet DEVELOPMENT Confidential Space intermediate", Organization: []string{devGCPOrganization}},
		NotBefore:             now.Add(-time.Hour).Truncate(time.Second),
		NotAfter:              now.Add(devGCPIntermediateExpiry).Truncate(time.Second),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if tmpl.NotAfter.After(root.NotAfter) {
		tmpl.NotAfter = root.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, &key.PublicKey, rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("attest: issue development intermediate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("attest: parse development intermediate: %w", err)
	}
	return cert, key, nil
}

package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// rootSpec describes one kind of development root kept on disk: its file
// names, how its key is made and checked, and its subject.
type rootSpec struct {
	certFile, keyFile, lockFile string
	keyKind                     string // for messages: "ECDSA P-384"
	newKey                      func() (crypto.Signer, error)
	keyOK                       func(crypto.Signer) bool
	subject                     pkix.Name
	maxPathLen                  int // 0: leaves sit directly under the root
}

// devNitroRoot is the development root of the Nitro-format attester.
func devNitroRoot() rootSpec {
	return rootSpec{
		certFile: DevRootCertFile, keyFile: DevRootKeyFile, lockFile: devLockFile,
		keyKind: "ECDSA P-384",
		newKey:  func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) },
		keyOK: func(k crypto.Signer) bool {
			e, ok := k.(*ecdsa.PrivateKey)
			return ok && e.Curve == elliptic.P384()
		},
		subject: pkix.Name{CommonName: DevRootCommonName, Organization: []string{devOrganization}},
	}
}

// devGCPRoot is the development root of the Confidential Space format: RSA,
// as Google's, because the app's verifier (node-forge) reads RSA
// certificates only.
func devGCPRoot() rootSpec {
	return rootSpec{
		certFile: DevGCPRootCertFile, keyFile: DevGCPRootKeyFile, lockFile: devGCPLockFile,
		keyKind: fmt.Sprintf("RSA %d", devGCPRSABits),
		newKey:  func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, devGCPRSABits) },
		keyOK: func(k crypto.Signer) bool {
			r, ok := k.(*rsa.PrivateKey)
			return ok && r.N.BitLen() >= 2048
		},
		subject:    pkix.Name{CommonName: DevGCPRootCommonName, Organization: []string{devGCPOrganization}},
		maxPathLen: 1, // root → intermediate → leaf, as Google's
	}
}

// loadOrCreateRoot reuses the root of this kind in dir or creates one. A
// lock file keeps two processes starting together from creating two roots.
func loadOrCreateRoot(dir string, spec rootSpec, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("attest: development root dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, spec.lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("attest: development root lock: %w", err)
	}
	defer lock.Close() // releases the flock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, nil, fmt.Errorf("attest: lock %s: %w", lock.Name(), err)
	}

	certPath, keyPath := filepath.Join(dir, spec.certFile), filepath.Join(dir, spec.keyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		return parseRoot(spec, certPEM, keyPEM, certPath, now)
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return createRoot(spec, certPath, keyPath, now)
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("attest: read development root: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("attest: read development root key: %w", keyErr)
	default:
		return nil, nil, fmt.Errorf("attest: development root in %s is incomplete (%s and %s must both exist); remove the one left to create a new root",
			dir, spec.certFile, spec.keyFile)
	}
}

func createRoot(spec rootSpec, certPath, keyPath string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := spec.newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("attest: generate development root key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               spec.subject,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(devRootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            spec.maxPathLen,
		MaxPathLenZero:        spec.maxPathLen == 0,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("attest: create development root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("attest: parse development root: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("attest: encode development root key: %w", err)
	}
	// The key goes first: a crash in between leaves an incomplete root,
	// which loadOrCreateRoot reports instead of silently replacing.
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func parseRoot(spec rootSpec, certPEM, keyPEM []byte, certPath string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("attest: development root %s: "+format, append([]any{certPath}, args...)...)
	}
	certBlock, _ := pem.Decode(certPEM)
	if certBlock == nil || certBlock.Type != "CERTIFICATE" {
		return nil, nil, bad("no CERTIFICATE PEM block")
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, nil, bad("%w", err)
	}
	keyBlock, _ := pem.Decode(keyPEM)
	if keyBlock == nil || keyBlock.Type != "PRIVATE KEY" {
		return nil, nil, bad("%s holds no PRIVATE KEY PEM block", spec.keyFile)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, nil, bad("%s: %w", spec.keyFile, err)
	}
	key, ok := parsed.(crypto.Signer)
	switch {
	case !ok || !spec.keyOK(key):
		return nil, nil, bad("%s is not an %s key", spec.keyFile, spec.keyKind)
	case !publicEqual(key.Public(), cert.PublicKey):
		return nil, nil, bad("%s does not belong to the certificate", spec.keyFile)
	case !cert.IsCA:
		return nil, nil, bad("not a CA certificate")
	case now.After(cert.NotAfter):
		return nil, nil, bad("expired at %v; remove %s and %s to create a new root", cert.NotAfter, spec.certFile, spec.keyFile)
	}
	return cert, key, nil
}

// publicEqual compares two public keys of any of the standard types.
func publicEqual(a crypto.PublicKey, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

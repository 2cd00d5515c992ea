package attest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"

	"fmt"
	"hash"
	"io"

	"math/big"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// Files a Dev attester keeps in DevConfig.Dir.
const (
	DevRootCertFile = "root.pem" // the development root certificate, PEM
	DevRootKeyFile  = "root.key" // its P-384 private key, PKCS#8 PEM, mode 0600
	devLockFile     = "root.lock"
)

const (
	devRootValidity = 10 * 365 * 24 * time.Hour
	devLeafValidity = 3 * time.Hour // as the NSM's own leaf certificates
	devLeafRenew    = time.Hour     // a leaf is replaced when less than this remains
	devOrganization = "prover-fleet development attestation (not AWS Nitro)"
	// DevRootCommonName is the subject CN of every development root.
	DevRootCommonName = "prover-fleet DEVELOPMENT attestation root - not AWS Nitro, proves nothing"
)

// DevConfig configures a Dev attester.
type DevConfig struct {
	// Dir holds the development root (root.pem, root.key). It is created
	// with mode 0700 if missing; an existing root is reused.
	Dir string
	// ModuleID is the module_id of every document and the leaf's CN.
	ModuleID string
	// PCR0, if set (48 bytes), replaces the PCR0 derived from the binary.
	PCR0 []byte
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
}

// Dev is the development Attester: it signs documents in the NSM's format
// with a leaf key certified by a development root kept on disk. Safe for
// concurrent use; Attest costs one ECDSA P-384 signature.
type Dev struct {
	moduleID string
	now      func() time.Time
	root     *x509.Certificate
	rootKey  *ecdsa.PrivateKey
	rootPEM  []byte
	pcrs     map[uint][]byte
	pcrsCBOR cbor.RawMessage // pcrs encoded once, keys in ascending order
	enc      cbor.EncMode

	renew sync.Mutex // serialises leaf renewal
	leaf  atomic.Pointer[devLeaf]
}

// devLeaf is the current signing identity, replaced before it expires.
type devLeaf struct {
	der       []byte
	notBefore time.Time
	renewAt   time.Time
	signer    cose.Signer
}

// NewDev validates cfg, loads or creates the development root in cfg.Dir,
// measures the running binary into PCRs and issues the first leaf.
func NewDev(cfg DevConfig) (*Dev, error) {
	switch {
	case cfg.Dir == "":
		return nil, configErr("DevConfig.Dir is required")
	case cfg.ModuleID == "":
		return nil, configErr("DevConfig.ModuleID is required")
	case cfg.PCR0 != nil && len(cfg.PCR0) != sha512.Size384:
		return nil, configErr("DevConfig.PCR0 is %d bytes, want %d", len(cfg.PCR0), sha512.Size384)
	}
	d := &Dev{moduleID: cfg.ModuleID, now: cfg.Now}
	if d.now == nil {
		d.now = time.Now
	}

	binary, err := executableSHA384()
	if err != nil {
		return nil, err
	}
	d.pcrs = DevPCRs(binary)
	if cfg.PCR0 != nil {
		d.pcrs[0] = bytes.Clone(cfg.PCR0)
	}
	sorted, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		return nil, fmt.Errorf("attest: CBOR encoder: %w", err)
	}
	if d.pcrsCBOR, err = sorted.Marshal(d.pcrs); err != nil {
		return nil, fmt.Errorf("attest: encode PCRs: %w", err)
	}
	if d.enc, err = (cbor.EncOptions{}).EncMode(); err != nil { // keeps struct field order
		return nil, fmt.Errorf("attest: CBOR encoder: %w", err)
	}

	root, rootKey, err := loadOrCreateRoot(cfg.Dir, devNitroRoot(), d.now())
	if err != nil {
		return nil, err
	}
	d.root, d.rootKey = root, rootKey.(*ecdsa.PrivateKey) // devNitroRoot checked the type
	d.rootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.root.Raw})
	if _, err := d.leafAt(d.now()); err != nil {
		return nil, err
	}
	return d, nil
}

// RootPEM returns the development root certificate, PEM-encoded.
func (d *Dev) RootPEM() []byte { return bytes.Clone(d.rootPEM) }

// RootCert returns the development root certificate, for VerifierConfig.Roots.
func (d *Dev) RootCert() *x509.Certificate { return d.root }

// PCR0 returns the PCR0 this attester reports, for VerifierConfig.AllowedPCR0.
func (d *Dev) PCR0() []byte { return bytes.Clone(d.pcrs[0]) }

// Format is FormatNitro.
func (d *Dev) Format() Format { return FormatNitro }

// Attest returns an untagged COSE_Sign1 document over req, timestamped now.
func (d *Dev) Attest(ctx context.Context, req Request) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	now := d.now()
	if now.UnixMilli() < 0 {
		return nil, fmt.Errorf("attest: clock reads %v, before 1970", now)
	}
	leaf, err := d.leafAt(now)
	if err != nil {
		return nil, err
	}
	body, err := d.enc.Marshal(payload{
		ModuleID:    d.moduleID,
		Digest:      digestSHA384,
		Timestamp:   uint64(now.UnixMilli()),
		PCRs:        d.pcrsCBOR,
		Certificate: leaf.der,
		CABundle:    [][]byte{d.root.Raw},
		PublicKey:   req.PublicKey,
		UserData:    req.UserData,
		Nonce:       req.Nonce,
	})
	if err != nil {
		return nil, fmt.Errorf("attest: encode payload: %w", err)
	}
	return d.sign(leaf, body)
}

func (d *Dev) sign(leaf *devLeaf, body []byte) ([]byte, error) {
	doc, err := cose.Sign1Untagged(rand.Reader, leaf.signer, es384Headers(), body, nil)
	if err != nil {
		return nil, fmt.Errorf("attest: sign document: %w", err)
	}
	return doc, nil
}

// leafAt returns a leaf valid at now, issuing a new one when the current one
// is not yet valid or is within devLeafRenew of expiry.
func (d *Dev) leafAt(now time.Time) (*devLeaf, error) {
	usable := func(l *devLeaf) bool { return l != nil && !now.Before(l.notBefore) && now.Before(l.renewAt) }
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

func (d *Dev) issueLeaf(now time.Time) (*devLeaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("attest: generate leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: d.moduleID, Organization: []string{devOrganization}},
		NotBefore:             now.Add(-time.Minute).Truncate(time.Second),
		NotAfter:              now.Add(devLeafValidity).Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, d.root, &key.PublicKey, d.rootKey)
	if err != nil {
		return nil, fmt.Errorf("attest: issue leaf certificate: %w", err)
	}
	signer, err := cose.NewSigner(cose.AlgorithmES384, key)
	if err != nil {
		return nil, fmt.Errorf("attest: leaf signer: %w", err)
	}
	return &devLeaf{der: der, notBefore: tmpl.NotBefore, renewAt: tmpl.NotAfter.Add(-devLeafRenew), signer: signer}, nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("attest: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("attest: write %s: %w", path, err)
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("attest: certificate serial: %w", err)
	}
	return serial, nil
}

// DevPCRs returns the PCRs a Dev attester reports when the running binary's
// SHA-384 is binarySHA384. Like the NSM it reports PCR0..PCR15, 48 bytes each.
//
// On Nitro, PCR0, PCR1 and PCR2 measure the enclave image, its kernel and
// boot ramdisk, and the application. Outside an enclave the binary is all
// there is, so each of the three is one Nitro-style extend of a zeroed
// register with a per-index measurement of the binary:
//
//	PCRn = SHA-384(48 zero bytes ‖ SHA-384("prover-fleet dev PCRn" ‖ binarySHA384))   n = 0, 1, 2
//
// Every build therefore has its own PCR0 and the three registers differ.
// PCR3..PCR15 (IAM role, instance, signing certificate, ...) are zero, as
// for an unsigned image not bound to an instance.
func DevPCRs(binarySHA384 []byte) map[uint][]byte {
	pcrs := make(map[uint][]byte, 16)
	zero := make([]byte, sha512.Size384)
	for i := uint(0); i < 16; i++ {
		if i > 2 {
			pcrs[i] = make([]byte, sha512.Size384)
			continue
		}
		measurement := sha512.New384()
		fmt.Fprintf(measurement, "prover-fleet dev PCR%d", i)
		measurement.Write(binarySHA384)
		extend := sha512.New384()
		extend.Write(zero)
		extend.Write(measurement.Sum(nil))
		pcrs[i] = extend.Sum(nil)
	}
	return pcrs
}

// executableSHA384 hashes the running binary (os.Executable).
func executableSHA384() ([]byte, error) { return executableDigest(sha512.New384()) }

// executableDigest hashes the running binary (os.Executable) with h.
func executableDigest(h hash.Hash) ([]byte, error) {
	path, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("attest: find running binary: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("attest: measure running binary: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("attest: measure running binary %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

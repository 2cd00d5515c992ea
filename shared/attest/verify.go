package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// DefaultClockSkew is how far in the future a document's timestamp may lie
// when VerifierConfig.ClockSkew is zero.
const DefaultClockSkew = time.Minute

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Roots are the pinned roots; the document's first cabundle entry must be
	// one of them. Production: the AWS Nitro root. Development: Dev.RootCert.
	Roots []*x509.Certificate
	// AllowedPCR0 lists the enclave images accepted. Empty is an error
	// unless AllowAnyPCR0 is set.
	AllowedPCR0 [][]byte
	// AllowAnyPCR0 skips the PCR0 check. Development only.
	AllowAnyPCR0 bool
	// MaxAge is how old a document may be, measured from Now. Required.
	MaxAge time.Duration
	// ClockSkew is how far ahead of Now a timestamp may be (0: DefaultClockSkew).
	ClockSkew time.Duration
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
}

// Verifier checks attestation documents. It is safe for concurrent use.
type Verifier struct {
	roots       []*x509.Certificate
	rootPools   []*x509.CertPool // rootPools[i] holds only roots[i]
	allowedPCR0 [][]byte
	allowAny    bool
	maxAge      time.Duration
	skew        time.Duration
	now         func() time.Time
	dec         cbor.DecMode
	chains      chainCache
}

// NewVerifier validates cfg and returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if len(cfg.Roots) == 0 {
		return nil, configErr("VerifierConfig.Roots is empty")
	}
	v := &Verifier{
		allowAny: cfg.AllowAnyPCR0,
		maxAge:   cfg.MaxAge,
		skew:     cfg.ClockSkew,
		now:      cfg.Now,
	}
	for i, root := range cfg.Roots {
		if root == nil {
			return nil, configErr("VerifierConfig.Roots[%d] is nil", i)
		}
		pool := x509.NewCertPool()
		pool.AddCert(root)
		v.roots = append(v.roots, root)
		v.rootPools = append(v.rootPools, pool)
	}
	switch {
	case len(cfg.AllowedPCR0) == 0 && !cfg.AllowAnyPCR0:
		return nil, configErr("VerifierConfig.AllowedPCR0 is empty (set AllowAnyPCR0 to accept any image, for development only)")
	case len(cfg.AllowedPCR0) > 0 && cfg.AllowAnyPCR0:
		return nil, configErr("VerifierConfig.AllowAnyPCR0 is set together with AllowedPCR0")
	}
	for i, pcr := range cfg.AllowedPCR0 {
		if !validPCRLength(len(pcr)) {
			return nil, configErr("VerifierConfig.AllowedPCR0[%d] is %d bytes, want 32, 48 or 64", i, len(pcr))
		}
		v.allowedPCR0 = append(v.allowedPCR0, bytes.Clone(pcr))
	}
	if cfg.MaxAge <= 0 {
		return nil, configErr("VerifierConfig.MaxAge must be positive")
	}
	if cfg.ClockSkew < 0 {
		return nil, configErr("VerifierConfig.ClockSkew must not be negative")
	}
	if v.skew == 0 {
		v.skew = DefaultClockSkew
	}
	if v.now == nil {
		v.now = time.Now
	}
	dec, err := decMode()
	if err != nil {
		return nil, fmt.Errorf("attest: CBOR decoder: %w", err)
	}
	v.dec = dec
	return v, nil
}

// Verify checks doc as the app does (see the package comment), then that its
// user_data equals wantUserData byte for byte (absent, null and empty are all
// "no user_data") and that its timestamp lies
// within MaxAge before Now and at most ClockSkew after it. It returns the
// verified payload, or an error wrapping the sentinel of the first failed
// check. Structure is checked before cryptography, and authenticity before
// policy (PCR0, user_data, age).
func (v *Verifier) Verify(doc []byte, wantUserData []byte) (*Document, error) {
	msg, err := v.decodeSign1(doc)
	if err != nil {
		return nil, err
	}
	d, err := v.decodePayload(msg.Payload)
	if err != nil {
		return nil, err
	}
	if err := v.verifyChain(d); err != nil {
		return nil, err
	}
	if err := verifySignature(msg, d.Certificate); err != nil {
		return nil, err
	}
	if err := v.checkPCR0(d.PCRs); err != nil {
		return nil, err
	}
	if !bytes.Equal(d.UserData, wantUserData) {
		return nil, fmt.Errorf("%w (document: %d bytes, expected: %d bytes)", ErrUserData, len(d.UserData), len(wantUserData))
	}
	if err := v.checkAge(d.Timestamp); err != nil {
		return nil, err
	}
	return d, nil
}

// decodeSign1 accepts COSE_Sign1 untagged (as the NSM writes it) or with
// tag 18, and requires the ES384 algorithm in the protected header.
func (v *Verifier) decodeSign1(doc []byte) (*cose.Sign1Message, error) {
	if len(doc) > MaxDocumentLen {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrDocumentTooLarge, len(doc), MaxDocumentLen)
	}
	if err := v.dec.Wellformed(doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	body := doc
	if doc[0]>>5 == 6 { // major type 6: a tag
		var tag cbor.RawTag
		if err := v.dec.Unmarshal(doc, &tag); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if tag.Number != cose.CBORTagSign1Message {
			return nil, fmt.Errorf("%w: CBOR tag %d, want none or %d", ErrNotSign1, tag.Number, cose.CBORTagSign1Message)
		}
		body = tag.Content
	}
	var elems []cbor.RawMessage
	if err := v.dec.Unmarshal(body, &elems); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotSign1, err)
	}
	if len(elems) != 4 {
		return nil, fmt.Errorf("%w: array of %d", ErrNotSign1, len(elems))
	}
	var msg cose.UntaggedSign1Message
	if err := msg.UnmarshalCBOR(body); err != nil {
		return nil, fmt.Errorf("%w: COSE_Sign1: %v", ErrMalformed, err)
	}
	alg, err := msg.Headers.Protected.Algorithm()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAlgorithm, err)
	}
	if alg != cose.AlgorithmES384 {
		return nil, fmt.Errorf("%w: %v", ErrAlgorithm, alg)
	}
	return (*cose.Sign1Message)(&msg), nil
}

// decodePayload reads the payload map and makes the app's presence, type
// and size checks. It parses the leaf certificate but verifies nothing yet.
func (v *Verifier) decodePayload(body []byte) (*Document, error) {
	var fields map[string]cbor.RawMessage
	if err := v.dec.Unmarshal(body, &fields); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	d := &Document{}
	var (
		timestamp uint64
		pcrs      map[uint64]bstr
		leafDER   bstr
		cabundle  []bstr
	)
	for _, f := range []struct {
		name string
		dst  any
	}{
		{"module_id", &d.ModuleID},
		{"digest", &d.Digest},
		{"timestamp", &timestamp},
		{"pcrs", &pcrs},
		{"certificate", &leafDER},
		{"cabundle", &cabundle},
	} {
		raw, ok := fields[f.name]
		if !ok {
			return nil, fieldErr(f.name, ErrMissingField, "")
		}
		if isNull(raw) {
			return nil, fieldErr(f.name, ErrMissingField, "null")
		}
		if err := v.dec.Unmarshal(raw, f.dst); err != nil {
			return nil, fieldErr(f.name, ErrFieldType, "%v", err)
		}
	}
	for _, f := range []struct {
		name  string
		dst   *[]byte
		limit int
	}{
		{"public_key", &d.PublicKey, MaxPublicKeyLen},
		{"user_data", &d.UserData, MaxUserDataLen},
		{"nonce", &d.Nonce, MaxNonceLen},
	} {
		raw, ok := fields[f.name]
		if !ok || isNull(raw) {
			continue // optional: absent and null both mean none
		}
		if err := v.dec.Unmarshal(raw, (*bstr)(f.dst)); err != nil {
			return nil, fieldErr(f.name, ErrFieldType, "%v", err)
		}
		if len(*f.dst) > f.limit {
			return nil, fieldErr(f.name, ErrFieldSize, "%d bytes, limit %d", len(*f.dst), f.limit)
		}
	}

	if d.Digest != digestSHA384 {
		return nil, fmt.Errorf("%w: %q", ErrDigest, d.Digest)
	}
	if timestamp > math.MaxInt64 {
		return nil, fieldErr("timestamp", ErrFieldSize, "%d ms is out of range", timestamp)
	}
	d.Timestamp = time.UnixMilli(int64(timestamp)).UTC()

	d.PCRs = make(map[uint][]byte, len(pcrs))
	for _, idx := range slices.Sorted(maps.Keys(pcrs)) {
		if idx >= 32 {
			return nil, fmt.Errorf("%w: index %d, limit 31", ErrPCRIndex, idx)
		}
		if !validPCRLength(len(pcrs[idx])) {
			return nil, fmt.Errorf("%w: PCR%d is %d bytes", ErrPCRLength, idx, len(pcrs[idx]))
		}
		d.PCRs[uint(idx)] = pcrs[idx]
	}

	if len(cabundle) == 0 {
		return nil, fieldErr("cabundle", ErrFieldSize, "empty, the root must come first")
	}
	for i, der := range cabundle {
		if len(der) == 0 || len(der) > MaxCABundleEntryLen {
			return nil, fieldErr(fmt.Sprintf("cabundle[%d]", i), ErrFieldSize, "%d bytes, want 1..%d", len(der), MaxCABundleEntryLen)
		}
		d.CABundle = append(d.CABundle, der)
	}

	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrCertificate, err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P384() {
		return nil, fmt.Errorf("%w: leaf key is not ECDSA P-384", ErrCertificate)
	}
	d.Certificate = leaf
	return d, nil
}

// verifyChain requires cabundle[0] to be a pinned root and the leaf to chain
// from it through the rest of the cabundle, valid at the document's time.
//
// A chain that verified once is remembered (bytes of the leaf and the
// cabundle, and the window in which all its certificates are valid), as TLS
// stacks do: the same enclave sends the same chain with every document, and
// its check costs as much as the document's own signature. A remembered
// chain still needs the document's time inside its window; anything else
// goes through the full check.
func (v *Verifier) verifyChain(d *Document) error {
	rootIdx := slices.IndexFunc(v.roots, func(r *x509.Certificate) bool { return bytes.Equal(r.Raw, d.CABundle[0]) })
	if rootIdx < 0 {
		return ErrUntrustedRoot
	}
	key := chainKey(rootIdx, d.Certificate.Raw, d.CABundle)
	if v.chains.valid(key, d.Timestamp) {
		return nil
	}
	intermediates := x509.NewCertPool()
	for i, der := range d.CABundle[1:] {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("%w: cabundle[%d]: %v", ErrCertificate, i+1, err)
		}
		intermediates.AddCert(cert)
	}
	chains, err := d.Certificate.Verify(x509.VerifyOptions{
		Roots:         v.rootPools[rootIdx],
		Intermediates: intermediates,
		CurrentTime:   d.Timestamp,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrChain, err)
	}
	v.chains.add(key, chains)
	return nil
}

// verifySignature checks the COSE ES384 signature with the leaf's key
// (decodePayload made sure it is ECDSA P-384).
func verifySignature(msg *cose.Sign1Message, leaf *x509.Certificate) error {
	verifier, err := cose.NewVerifier(cose.AlgorithmES384, leaf.PublicKey)
	if err != nil {
		return fmt.Errorf("%w: leaf key: %v", ErrCertificate, err)
	}
	if err := msg.Verify(nil, verifier); err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return nil
}

func (v *Verifier) checkPCR0(pcrs map[uint][]byte) error {
	if v.allowAny {
		return nil
	}
	pcr0, ok := pcrs[0]
	if !ok {
		return fmt.Errorf("%w: document has no PCR0", ErrPCR0)
	}
	if !slices.ContainsFunc(v.allowedPCR0, func(a []byte) bool { return bytes.Equal(a, pcr0) }) {
		return fmt.Errorf("%w: %x", ErrPCR0, pcr0)
	}
	return nil
}

func (v *Verifier) checkAge(ts time.Time) error {
	now := v.now()
	switch age := now.Sub(ts); {
	case age > v.maxAge:
		return fmt.Errorf("%w: issued %v ago, limit %v", ErrStale, age, v.maxAge)
	case -age > v.skew:
		return fmt.Errorf("%w: %v ahead of now, allowed skew %v", ErrFuture, -age, v.skew)
	}
	return nil
}

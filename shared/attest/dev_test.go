package attest

import (
	"bytes"
	"context"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

func TestDevRoundTrip(t *testing.T) {
	t.Parallel()
	f := setup(t)
	req := Request{UserData: fill(33, 0x02), Nonce: fill(12, 0x0c), PublicKey: fill(65, 0x04)}
	doc := attest(t, f.dev, req)

	d, err := f.verifier.Verify(doc, req.UserData)
	if err != nil {
		t.Fatal(err)
	}
	if d.ModuleID != testModuleID || d.Digest != "SHA384" {
		t.Errorf("module_id %q digest %q", d.ModuleID, d.Digest)
	}
	if !d.Timestamp.Equal(f.clock.Now().Truncate(time.Millisecond)) {
		t.Errorf("timestamp %v, want %v", d.Timestamp, f.clock.Now())
	}
	if !bytes.Equal(d.UserData, req.UserData) || !bytes.Equal(d.Nonce, req.Nonce) || !bytes.Equal(d.PublicKey, req.PublicKey) {
		t.Errorf("bound fields: user_data %x nonce %x public_key %x", d.UserData, d.Nonce, d.PublicKey)
	}
	if len(d.PCRs) != 16 || !bytes.Equal(d.PCRs[0], f.dev.PCR0()) {
		t.Errorf("PCRs %x", d.PCRs)
	}
	for i, pcr := range d.PCRs {
		if !bytes.Equal(pcr, f.dev.pcrs[i]) {
			t.Errorf("PCR%d = %x, want %x", i, pcr, f.dev.pcrs[i])
		}
	}
	if d.Certificate.Subject.CommonName != testModuleID {
		t.Errorf("leaf CN %q", d.Certificate.Subject.CommonName)
	}
	if len(d.CABundle) != 1 || !bytes.Equal(d.CABundle[0], f.dev.RootCert().Raw) {
		t.Errorf("cabundle should be exactly the root")
	}
}

// TestDevDocumentShape pins the bytes the app parses: untagged COSE_Sign1,
// protected header {1: -35}, empty unprotected map, the NSM's payload key
// order, null for absent fields, 16 PCRs in ascending order, and a raw
// 96-byte r‖s signature.
func TestDevDocumentShape(t *testing.T) {
	t.Parallel()
	f := setup(t)
	doc := attest(t, f.dev, Request{UserData: fill(65, 4), PublicKey: fill(65, 5)}) // no nonce

	prefix := []byte{0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x59} // array(4), bstr{1:-35}, {}, bstr(len16)
	if !bytes.HasPrefix(doc, prefix) {
		t.Fatalf("document starts % x, want % x", doc[:len(prefix)], prefix)
	}
	s := split(t, doc)
	if len(s.Signature) != 96 {
		t.Errorf("signature is %d bytes, want 96", len(s.Signature))
	}

	wantKeys := []string{"module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "public_key", "user_data", "nonce"}
	if keys := payloadKeys(t, doc); !slices.Equal(keys, wantKeys) {
		t.Errorf("payload keys %v, want %v", keys, wantKeys)
	}
	var values map[string]cbor.RawMessage
	if err := cbor.Unmarshal(s.Payload, &values); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(values["nonce"], []byte{0xf6}) {
		t.Errorf("absent nonce encodes as % x, want null", values["nonce"])
	}
	if values["timestamp"][0] != 0x1b { // uint64
		t.Errorf("timestamp encodes as % x, want a uint", values["timestamp"])
	}

	pcrDec := cbor.NewDecoder(bytes.NewReader(values["pcrs"][1:]))
	if values["pcrs"][0] != 0xb0 {
		t.Fatalf("pcrs start %#x, want map of 16", values["pcrs"][0])
	}
	for want := uint64(0); want < 16; want++ {
		var idx uint64
		var pcr []byte
		if err := pcrDec.Decode(&idx); err != nil {
			t.Fatal(err)
		}
		if err := pcrDec.Decode(&pcr); err != nil {
			t.Fatal(err)
		}
		if idx != want || len(pcr) != 48 {
			t.Errorf("pcr entry %d: index %d, %d bytes", want, idx, len(pcr))
		}
	}
}

func TestDevAttestRejects(t *testing.T) {
	t.Parallel()
	f := setup(t)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		req  Request
		err  error
	}{
		{"user_data 513 bytes", t.Context(), Request{UserData: fill(513, 1)}, ErrInputTooLarge},
		{"nonce 513 bytes", t.Context(), Request{Nonce: fill(513, 1)}, ErrInputTooLarge},
		{"public_key 1025 bytes", t.Context(), Request{PublicKey: fill(1025, 1)}, ErrInputTooLarge},
		{"cancelled context", cancelled, testRequest(), context.Canceled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			doc, err := f.dev.Attest(c.ctx, c.req)
			if !errors.Is(err, c.err) || doc != nil {
				t.Fatalf("Attest = %d bytes, %v; want %v", len(doc), err, c.err)
			}
		})
	}
	// The limits themselves are accepted.
	max := Request{UserData: fill(MaxUserDataLen, 1), Nonce: fill(MaxNonceLen, 2), PublicKey: fill(MaxPublicKeyLen, 3)}
	if _, err := f.verifier.Verify(attest(t, f.dev, max), max.UserData); err != nil {
		t.Fatalf("document at the size limits: %v", err)
	}
}

func TestNewDevConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  DevConfig
		msg  string
	}{
		{"no dir", DevConfig{ModuleID: "m"}, "attest: invalid config: DevConfig.Dir is required"},
		{"no module id", DevConfig{Dir: t.TempDir()}, "attest: invalid config: DevConfig.ModuleID is required"},
		{"PCR0 of 32 bytes", DevConfig{Dir: t.TempDir(), ModuleID: "m", PCR0: fill(32, 1)}, "attest: invalid config: DevConfig.PCR0 is 32 bytes, want 48"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d, err := NewDev(c.cfg)
			if err == nil || err.Error() != c.msg || !errors.Is(err, ErrInvalidConfig) || d != nil {
				t.Fatalf("NewDev = %v, %v; want error %q", d, err, c.msg)
			}
		})
	}
}

func TestDevRootPersists(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "attest-root")
	clk := newClock(time.Now())
	first, err := NewDev(DevConfig{Dir: dir, ModuleID: "first", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	second, err := NewDev(DevConfig{Dir: dir, ModuleID: "second", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.RootPEM(), second.RootPEM()) || !first.RootCert().Equal(second.RootCert()) {
		t.Fatal("second NewDev on the same dir made a new root")
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, DevRootCertFile))
	if err != nil || !bytes.Equal(onDisk, first.RootPEM()) {
		t.Fatalf("root.pem on disk differs from RootPEM (%v)", err)
	}

	// A document from the restarted attester verifies against the first root.
	v := newTestVerifier(t, first, clk, nil)
	if _, err := v.Verify(attest(t, second, testRequest()), testRequest().UserData); err != nil {
		t.Fatalf("document after restart: %v", err)
	}

	for name, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, DevRootKeyFile): 0o600} {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	cn := first.RootCert().Subject.CommonName
	if !strings.Contains(cn, "DEVELOPMENT") || !strings.Contains(cn, "not AWS") {
		t.Errorf("root CN %q must say it is a development root, not AWS", cn)
	}
	if !first.RootCert().IsCA || first.RootCert().PublicKeyAlgorithm != x509.ECDSA {
		t.Error("root must be an ECDSA CA")
	}
}

func TestDevRootProblems(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		now    time.Duration // clock offset for the second NewDev
		msg    string
	}{
		{name: "certificate removed", break_: func(t *testing.T, dir string) { remove(t, dir, DevRootCertFile) }, msg: "is incomplete"},
		{name: "key removed", break_: func(t *testing.T, dir string) { remove(t, dir, DevRootKeyFile) }, msg: "is incomplete"},
		{name: "key of another root", break_: func(t *testing.T, dir string) {
			other := t.TempDir()
			if _, err := NewDev(DevConfig{Dir: other, ModuleID: "m"}); err != nil {
				t.Fatal(err)
			}
			copyFile(t, filepath.Join(other, DevRootKeyFile), filepath.Join(dir, DevRootKeyFile))
		}, msg: "does not belong to the certificate"},
		{name: "certificate not PEM", break_: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, DevRootCertFile), []byte("junk"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, msg: "no CERTIFICATE PEM block"},
		{name: "expired", now: devRootValidity + time.Hour, msg: "expired at"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, err := NewDev(DevConfig{Dir: dir, ModuleID: "m"}); err != nil {
				t.Fatal(err)
			}
			if c.break_ != nil {
				c.break_(t, dir)
			}
			d, err := NewDev(DevConfig{Dir: dir, ModuleID: "m", Now: func() time.Time { return time.Now().Add(c.now) }})
			if err == nil || !strings.Contains(err.Error(), c.msg) || d != nil {
				t.Fatalf("NewDev = %v, %v; want error containing %q", d, err, c.msg)
			}
		})
	}
}

// TestDevRootCreatedOnce starts several attesters on one fresh directory at
// once, as replicas of a dev stack would; they must all share one root.
func TestDevRootCreatedOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	roots := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range roots {
		wg.Go(func() {
			d, err := NewDev(DevConfig{Dir: dir, ModuleID: fmt.Sprintf("m%d", i)})
			if err != nil {
				t.Error(err)
				return
			}
			roots[i] = d.RootPEM()
		})
	}
	wg.Wait()
	for i := range roots {
		if !bytes.Equal(roots[i], roots[0]) {
			t.Fatalf("attester %d has a different root", i)
		}
	}
}

func TestDevConcurrentAttest(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			req := Request{UserData: fill(65, byte(i)), Nonce: fill(12, byte(i)), PublicKey: fill(65, byte(i+1))}
			doc, err := f.dev.Attest(t.Context(), req)
			if err != nil {
				t.Error(err)
				return
			}
			d, err := f.verifier.Verify(doc, req.UserData)
			if err != nil {
				t.Error(err)
				return
			}
			if !bytes.Equal(d.Nonce, req.Nonce) {
				t.Errorf("goroutine %d got another request's document", i)
			}
		})
	}
	wg.Wait()
}

// TestDevLeafRenewal: a long-running attester replaces its leaf before it
// expires, and documents keep verifying.
func TestDevLeafRenewal(t *testing.T) {
	t.Parallel()
	f := setup(t)
	leafOf := func(doc []byte) []byte { return payloadMap(t, doc)["certificate"].([]byte) }
	first := attest(t, f.dev, testRequest())

	f.clock.Advance(devLeafValidity - devLeafRenew - time.Second)
	same := attest(t, f.dev, testRequest())
	if !bytes.Equal(leafOf(first), leafOf(same)) {
		t.Fatal("leaf replaced too early")
	}
	f.clock.Advance(2 * time.Second)
	renewed := attest(t, f.dev, testRequest())
	if bytes.Equal(leafOf(first), leafOf(renewed)) {
		t.Fatal("leaf not replaced within devLeafRenew of expiry")
	}
	for _, doc := range [][]byte{same, renewed} {
		if _, err := f.verifier.Verify(doc, testRequest().UserData); err != nil {
			t.Fatal(err)
		}
	}
	// A clock set back before the current leaf's validity (but not the
	// root's) gets a fresh leaf too.
	f.clock.Advance(-time.Hour)
	if _, err := f.verifier.Verify(attest(t, f.dev, testRequest()), testRequest().UserData); err != nil {
		t.Fatalf("after the clock went back: %v", err)
	}
}

func TestDevPCRs(t *testing.T) {
	t.Parallel()
	bin := sha512.Sum384([]byte("build 1"))
	pcrs := DevPCRs(bin[:])
	if len(pcrs) != 16 {
		t.Fatalf("%d PCRs, want 16", len(pcrs))
	}
	zero := make([]byte, 48)
	for i := range uint(16) {
		if len(pcrs[i]) != 48 {
			t.Errorf("PCR%d is %d bytes", i, len(pcrs[i]))
		}
		if (i <= 2) == bytes.Equal(pcrs[i], zero) {
			t.Errorf("PCR%d = %x: 0..2 are measured, the rest zero", i, pcrs[i])
		}
	}
	// The documented formula, computed independently.
	measurement := sha512.Sum384(append([]byte("prover-fleet dev PCR0"), bin[:]...))
	want := sha512.Sum384(append(zero, measurement[:]...))
	if !bytes.Equal(pcrs[0], want[:]) {
		t.Errorf("PCR0 = %x, want %x", pcrs[0], want)
	}
	if bytes.Equal(pcrs[0], pcrs[1]) || bytes.Equal(pcrs[1], pcrs[2]) {
		t.Error("PCR0..2 must differ")
	}
	other := sha512.Sum384([]byte("build 2"))
	if bytes.Equal(DevPCRs(other[:])[0], pcrs[0]) {
		t.Error("a different build must have a different PCR0")
	}
	if !bytes.Equal(DevPCRs(bin[:])[0], pcrs[0]) {
		t.Error("DevPCRs is not deterministic")
	}
	pcrs[3][0] = 1
	if pcrs[4][0] != 0 {
		t.Error("PCR entries share memory")
	}
}

func TestDevPCR0MeasuresRunningBinary(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha512.New384()
	if _, err := io.Copy(h, fh); err != nil {
		t.Fatal(err)
	}
	f := setup(t)
	if want := DevPCRs(h.Sum(nil))[0]; !bytes.Equal(f.dev.PCR0(), want) {
		t.Fatalf("Dev.PCR0 = %x, want DevPCRs(sha384(%s))[0] = %x", f.dev.PCR0(), exe, want)
	}

	override := fill(48, 0xab)
	d, err := NewDev(DevConfig{Dir: t.TempDir(), ModuleID: "m", PCR0: override})
	if err != nil {
		t.Fatal(err)
	}
	override[0] = 0
	if !bytes.Equal(d.PCR0(), fill(48, 0xab)) {
		t.Fatalf("PCR0 override: %x", d.PCR0())
	}
}

func remove(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

package attest

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

func TestVerifyRemembersChains(t *testing.T) {
	t.Parallel()
	f := setup(t)
	req := testRequest()
	valid := attest(t, f.dev, req)
	for i := range 3 {
		if _, err := f.verifier.Verify(valid, req.UserData); err != nil {
			t.Fatalf("verify %d: %v", i, err)
		}
		if n := f.verifier.chains.len(); n != 1 {
			t.Fatalf("verify %d: %d chains remembered, want 1", i, n)
		}
	}
	// The same leaf and cabundle, at times outside the leaf's validity:
	// the remembered chain must not vouch for them.
	for _, tc := range []struct {
		name  string
		shift time.Duration
	}{
		{"after leaf expiry", devLeafValidity + time.Minute},
		{"before leaf validity", -2 * time.Minute},
	} {
		doc := resigned(func(m map[string]any) {
			ts := int64(m["timestamp"].(uint64)) + tc.shift.Milliseconds()
			m["timestamp"] = uint64(ts)
		})(t, f, valid)
		if _, err := f.verifier.Verify(doc, req.UserData); !errors.Is(err, ErrChain) {
			t.Fatalf("%s: err = %v, want ErrChain", tc.name, err)
		}
	}
	// A document signed by a key the chain does not certify still fails
	// on its signature.
	s := split(t, valid)
	s.Signature[5] ^= 1
	if _, err := f.verifier.Verify(s.encode(t), req.UserData); !errors.Is(err, ErrSignature) {
		t.Fatalf("bad signature with a remembered chain: err = %v, want ErrSignature", err)
	}
}

func TestChainCacheBounded(t *testing.T) {
	t.Parallel()
	var c chainCache
	now := time.Now()
	chain := [][]*x509.Certificate{{{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}}}
	for i := range 3 * chainCacheSize {
		c.add(chainKey(i, []byte("leaf"), nil), chain)
	}
	if n := c.len(); n != chainCacheSize {
		t.Fatalf("%d chains remembered, want the bound %d", n, chainCacheSize)
	}
	last := chainKey(3*chainCacheSize-1, []byte("leaf"), nil)
	if !c.valid(last, now) || c.valid(last, now.Add(2*time.Hour)) {
		t.Fatal("the last chain added is not remembered with its window")
	}
	if c.valid([sha256.Size]byte{}, now) {
		t.Fatal("an unknown chain is valid")
	}
	// Keys separate the root, the leaf and every cabundle entry.
	keys := map[[sha256.Size]byte]bool{}
	for _, k := range [][sha256.Size]byte{
		chainKey(0, []byte("ab"), [][]byte{[]byte("c")}),
		chainKey(0, []byte("a"), [][]byte{[]byte("bc")}),
		chainKey(1, []byte("ab"), [][]byte{[]byte("c")}),
		chainKey(0, []byte("ab"), [][]byte{[]byte("c"), []byte("d")}),
	} {
		keys[k] = true
	}
	if len(keys) != 4 {
		t.Fatal("chain keys collide")
	}
}

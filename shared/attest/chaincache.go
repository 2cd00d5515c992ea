package attest

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"sync"
	"time"
)

// chainCacheSize bounds the remembered chains: a client talks to a handful
// of enclaves, each with one leaf at a time (renewed every few hours).
const chainCacheSize = 64

// chainCache remembers certificate chains that verified, keyed by the
// SHA-256 of the pinned root's index, the leaf and the cabundle, with the
// windows in which every certificate of a verified chain is valid. Whether
// a chain verifies depends on the time only through those windows (the
// signatures, names and constraints do not change), so a chain known to
// verify at one time verifies at any other time inside a window.
type chainCache struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte][]window
}

// window is the time span in which all of one chain's certificates are
// valid.
type window struct{ notBefore, notAfter time.Time }

func chainKey(rootIdx int, leaf []byte, cabundle [][]byte) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(rootIdx))
	h.Write(n[:])
	entry := func(der []byte) { // length-prefixed, so entries cannot run together
		binary.BigEndian.PutUint64(n[:], uint64(len(der)))
		h.Write(n[:])
		h.Write(der)
	}
	entry(leaf)
	for _, der := range cabundle {
		entry(der)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// valid reports whether the chain under key verified before and t lies in
// one of its windows.
func (c *chainCache) valid(key [sha256.Size]byte, t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.entries[key] {
		if !t.Before(w.notBefore) && !t.After(w.notAfter) {
			return true
		}
	}
	return false
}

// add remembers the chains x509 verified for key.
func (c *chainCache) add(key [sha256.Size]byte, chains [][]*x509.Certificate) {
	var ws []window
	for _, chain := range chains {
		if len(chain) == 0 {
			continue
		}
		w := window{notBefore: chain[0].NotBefore, notAfter: chain[0].NotAfter}
		for _, cert := range chain[1:] {
			if cert.NotBefore.After(w.notBefore) {
				w.notBefore = cert.NotBefore
			}
			if cert.NotAfter.Before(w.notAfter) {
				w.notAfter = cert.NotAfter
			}
		}
		ws = append(ws, w)
	}
	if len(ws) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[[sha256.Size]byte][]window)
	}
	if _, ok := c.entries[key]; !ok && len(c.entries) >= chainCacheSize {
		for k := range c.entries { // full: forget one at random
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = ws
}

// len is the number of chains remembered.
func (c *chainCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

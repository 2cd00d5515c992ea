package handshake

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// TestSessionMemory opens many sessions and reads the heap: what one open
// session costs bounds what --max-sessions costs (README, "Session
// window"). The client keys are distinct; the server key is fixed so the
// test spends its time on the table, not on key generation.
func TestSessionMemory(t *testing.T) {
	n := 20_000
	if testing.Short() {
		n = 2_000
	}
	server, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clients := make([]*ecdh.PublicKey, 64)
	for i := range clients {
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = k.PublicKey()
	}
	s, err := New(Config{TTL: time.Hour, MaxSessions: n, MaxPerSource: -1, FreeShare: -1,
		GenerateKey: func() (*ecdh.PrivateKey, error) { return server, nil }})
	if err != nil {
		t.Fatal(err)
	}
	before := heap()
	for i := range n {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) // a uuid, kept as the table's key
		// 20 sessions per source: the per-source count is in the figure.
		src := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		if i%20 != 0 {
			src = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte((i - i%20) >> 16), byte((i - i%20) >> 8), byte(i - i%20)}), 32)
		}
		if _, err := s.Begin(id, src, clients[i%len(clients)]); err != nil {
			t.Fatal(err)
		}
	}
	after := heap()
	per := float64(after-before) / float64(n)
	t.Logf("%d open sessions: %.0f bytes of heap each, the uuid key included", n, per)
	// A session is its 32-byte key, its expiry, its source, its place in
	// the expiry list and a map entry (and a share of its source's count);
	// a regression that kept key material or buffers per session would show.
	if per > 512 {
		t.Fatalf("%.0f bytes per open session, want at most 512", per)
	}
	if s.Len() != n {
		t.Fatalf("Len = %d, want %d", s.Len(), n)
	}
	runtime.KeepAlive(s)
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

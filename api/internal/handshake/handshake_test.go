package handshake

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/api/internal/vectors"
)

// unknown is a session's source when the client's address is not known:
// only the global bound applies.
var unknown = netip.Prefix{}

func loadVectors(t testing.TB) []vectors.Vector {
	t.Helper()
	vs, err := vectors.Load()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// fixedKey returns a GenerateKey that hands out priv.
func fixedKey(t testing.TB, hexKey string) func() (*ecdh.PrivateKey, error) {
	t.Helper()
	priv, err := ecdh.P256().NewPrivateKey(vectors.Hex(hexKey))
	if err != nil {
		t.Fatal(err)
	}
	return func() (*ecdh.PrivateKey, error) { return priv, nil }
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestVectorsDecrypt(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		for _, form := range []struct {
			name string
			key  []int
		}{{"uncompressed", v.ClientPublicKey}, {"compressed", v.ClientPublicKeyComp}} {
			t.Run(v.Name+"/"+form.name, func(t *testing.T) {
				t.Parallel()
				client, err := ParseClientKey(vectors.Bytes(form.key))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(client.Bytes(), vectors.Bytes(v.ClientPublicKey)) {
					t.Fatal("the decompressed key differs from the uncompressed one")
				}
				s, err := New(Config{GenerateKey: fixedKey(t, v.ServerPrivateKeyHex)})
				if err != nil {
					t.Fatal(err)
				}
				serverPub, err := s.Begin("id", unknown, client)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(serverPub, vectors.Bytes(v.ServerPublicKey)) {
					t.Fatalf("server public key = %x, want the vector's", serverPub)
				}
				priv, _ := ecdh.P256().NewPrivateKey(vectors.Hex(v.ServerPrivateKeyHex))
				shared, err := SharedKey(priv, client)
				if err != nil || !bytes.Equal(shared, vectors.Hex(v.SharedKeyHex)) {
					t.Fatalf("shared key = %x, %v; want %s", shared, err, v.SharedKeyHex)
				}
				plain, cancelHash, err := s.Open("id", vectors.Bytes(v.Nonce), vectors.Bytes(v.CipherText), vectors.Bytes(v.AuthTag))
				if err != nil {
					t.Fatal(err)
				}
				if string(plain) != v.Plaintext {
					t.Fatalf("plaintext = %q, want %q", plain, v.Plaintext)
				}
				// The client derives the same token from its side of the
				// handshake; the session keeps only the token's hash.
				token, err := CancelToken(vectors.Hex(v.SharedKeyHex), "id")
				if err != nil {
					t.Fatal(err)
				}
				if !CheckCancelToken(cancelHash, token) || bytes.Equal(cancelHash, token) {
					t.Fatalf("cancel hash %x does not match the client's token", cancelHash)
				}
			})
		}
	}
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	t.Parallel()
	key := make([]byte, KeySize)
	rand.Read(key)
	nonce, ct, tag, err := Encrypt(key, []byte(`{"type":"register"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(nonce) != NonceSize || len(tag) != TagSize || len(ct) != len(`{"type":"register"}`) {
		t.Fatalf("sizes: nonce %d, cipher %d, tag %d", len(nonce), len(ct), len(tag))
	}
	plain, err := Decrypt(key, nonce, ct, tag)
	if err != nil || string(plain) != `{"type":"register"}` {
		t.Fatalf("Decrypt = %q, %v", plain, err)
	}
	tag[0] ^= 1
	if _, err := Decrypt(key, nonce, ct, tag); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("a flipped tag bit: error = %v, want ErrDecrypt", err)
	}
}

func TestParseClientKey(t *testing.T) {
	t.Parallel()
	v := loadVectors(t)[0]
	good := vectors.Bytes(v.ClientPublicKey)
	offCurve := bytes.Clone(good)
	offCurve[64] ^= 1
	badPrefix := bytes.Clone(good)
	badPrefix[0] = 5
	compBadPrefix := vectors.Bytes(v.ClientPublicKeyComp)
	compBadPrefix[0] = 4
	noRoot := noRootX(t)
	tests := []struct {
		name string
		key  []byte
		want error
	}{
		{"uncompressed", good, nil},
		{"compressed", vectors.Bytes(v.ClientPublicKeyComp), nil},
		{"empty", nil, ErrKeyLength},
		{"64 bytes", good[1:], ErrKeyLength},
		{"66 bytes", append(bytes.Clone(good), 0), ErrKeyLength},
		{"32 bytes", good[:32], ErrKeyLength},
		{"off curve", offCurve, ErrNotOnCurve},
		{"bad prefix", badPrefix, ErrNotOnCurve},
		{"compressed bad prefix", compBadPrefix, ErrNotOnCurve},
		{"compressed no such point", noRoot, ErrNotOnCurve},
		{"all zero", make([]byte, 65), ErrNotOnCurve},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseClientKey(tt.key)
			if !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
				t.Fatalf("ParseClientKey error = %v, want %v", err, tt.want)
			}
		})
	}
}

// noRootX returns a compressed key whose X is not on P-256.
func noRootX(t *testing.T) []byte {
	t.Helper()
	for i := 1; i < 256; i++ {
		k := make([]byte, 33)
		k[0] = 2
		k[32] = byte(i)
		if _, err := ParseClientKey(k); errors.Is(err, ErrNotOnCurve) {
			return k
		}
	}
	t.Fatal("every small X is on the curve?")
	return nil
}

func newClientKey(t testing.TB) *ecdh.PublicKey {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func TestSessions(t *testing.T) {
	t.Parallel()
	nonce, tag := make([]byte, NonceSize), make([]byte, TagSize)

	t.Run("one submit per session", func(t *testing.T) {
		t.Parallel()
		s, _ := New(Config{})
		if _, err := s.Begin("a", unknown, newClientKey(t)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Open("a", nonce, []byte("x"), tag); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("first submit: %v, want ErrDecrypt", err)
		}
		if _, _, err := s.Open("a", nonce, []byte("x"), tag); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second submit: %v, want ErrNotFound", err)
		}
	})
	t.Run("bad sizes consume the session", func(t *testing.T) {
		t.Parallel()
		s, _ := New(Config{})
		s.Begin("a", unknown, newClientKey(t))
		if _, _, err := s.Open("a", nonce[:11], nil, tag); !errors.Is(err, ErrNonceSize) {
			t.Fatalf("short nonce: %v", err)
		}
		if s.Has("a") {
			t.Fatal("session kept after a submit with a bad nonce")
		}
		s.Begin("b", unknown, newClientKey(t))
		if _, _, err := s.Open("b", nonce, nil, tag[:15]); !errors.Is(err, ErrTagSize) {
			t.Fatalf("short tag: %v", err)
		}
		if _, _, err := s.Open("nobody", nonce[:3], nil, tag); !errors.Is(err, ErrNonceSize) {
			t.Fatalf("size errors come before the lookup: %v", err)
		}
	})
	t.Run("duplicate uuid", func(t *testing.T) {
		t.Parallel()
		s, _ := New(Config{})
		if _, err := s.Begin("a", unknown, newClientKey(t)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Begin("a", unknown, newClientKey(t)); !errors.Is(err, ErrExists) {
			t.Fatalf("second hello: %v, want ErrExists", err)
		}
		s.Abort("a")
		if _, err := s.Begin("a", unknown, newClientKey(t)); err != nil {
			t.Fatalf("hello after abort: %v", err)
		}
	})
	t.Run("expiry", func(t *testing.T) {
		t.Parallel()
		clock := &fakeClock{now: time.Unix(1e9, 0)}
		s, _ := New(Config{TTL: time.Minute, Now: clock.Now})
		s.Begin("a", unknown, newClientKey(t))
		s.Begin("b", unknown, newClientKey(t))
		clock.Add(59 * time.Second)
		if !s.Has("a") {
			t.Fatal("session gone before its TTL")
		}
		clock.Add(time.Second)
		if s.Has("a") {
			t.Fatal("session alive at its TTL")
		}
		if _, _, err := s.Open("a", nonce, nil, tag); !errors.Is(err, ErrNotFound) {
			t.Fatalf("submit after expiry: %v, want ErrNotFound", err)
		}
		if _, err := s.Begin("b", unknown, newClientKey(t)); err != nil {
			t.Fatalf("hello on an expired uuid: %v", err)
		}
		clock.Add(time.Minute)
		if n := s.Sweep(); n != 1 || s.Len() != 0 {
			t.Fatalf("Sweep removed %d, %d left; want 1, 0", n, s.Len())
		}
	})
	t.Run("full table refuses, never evicts", func(t *testing.T) {
		t.Parallel()
		clock := &fakeClock{now: time.Unix(1e9, 0)}
		s, _ := New(Config{TTL: time.Minute, MaxSessions: 3, Now: clock.Now})
		for i := range 3 {
			if _, err := s.Begin(fmt.Sprint(i), unknown, newClientKey(t)); err != nil {
				t.Fatal(err)
			}
			clock.Add(10 * time.Second)
		}
		if _, err := s.Begin("x", unknown, newClientKey(t)); !errors.Is(err, ErrBusy) {
			t.Fatalf("hello on a full table: %v, want ErrBusy", err)
		}
		for i := range 3 {
			if !s.Has(fmt.Sprint(i)) {
				t.Fatalf("session %d was evicted", i)
			}
		}
		clock.Add(31 * time.Second) // session 0 expires
		if _, err := s.Begin("x", unknown, newClientKey(t)); err != nil {
			t.Fatalf("hello once a session expired: %v", err)
		}
		if s.Has("0") || !s.Has("1") || !s.Has("2") || !s.Has("x") {
			t.Fatal("only the expired session should have made room")
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		s, _ := New(Config{MaxSessions: 50})
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := map[error]int{}
		for i := range 200 {
			wg.Go(func() {
				_, err := s.Begin(fmt.Sprint(i%60), unknown, newClientKey(t))
				if err == nil {
					s.Open(fmt.Sprint(i%60), nonce, nil, tag)
				}
				mu.Lock()
				won[err]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if won[nil] == 0 {
			t.Fatal("no hello succeeded")
		}
	})
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{TTL: -time.Second}); err == nil {
		t.Fatal("negative TTL accepted")
	}
	if _, err := New(Config{MaxSessions: -1}); err == nil {
		t.Fatal("negative MaxSessions accepted")
	}
	if _, err := New(Config{MaxPerSource: -2}); err == nil {
		t.Fatal("MaxPerSource -2 accepted")
	}
	if _, err := New(Config{FreeShare: -2}); err == nil {
		t.Fatal("FreeShare -2 accepted")
	}
	bad := func() (*ecdh.PrivateKey, error) { return ecdh.X25519().GenerateKey(rand.Reader) }
	s, _ := New(Config{GenerateKey: bad})
	if _, err := s.Begin("a", unknown, newClientKey(t)); err == nil {
		t.Fatal("a non-P-256 server key was used")
	}
}

// FuzzOpen drives the decrypt path with arbitrary nonce, cipher text and
// tag under a vector's session: it must never panic, must fail with one of
// the handshake's errors, and may only succeed on the recorded input.
func FuzzOpen(f *testing.F) {
	vs := loadVectors(f)
	v := vs[0]
	f.Add(vectors.Bytes(v.Nonce), vectors.Bytes(v.CipherText), vectors.Bytes(v.AuthTag))
	f.Add([]byte{}, []byte{}, []byte{})
	f.Add(make([]byte, 12), []byte("x"), make([]byte, 16))
	f.Add(make([]byte, 13), []byte{}, make([]byte, 15))
	client, err := ParseClientKey(vectors.Bytes(v.ClientPublicKey))
	if err != nil {
		f.Fatal(err)
	}
	gen := fixedKey(f, v.ServerPrivateKeyHex)
	f.Fuzz(func(t *testing.T, nonce, ct, tag []byte) {
		s, _ := New(Config{GenerateKey: gen})
		if _, err := s.Begin("id", unknown, client); err != nil {
			t.Fatal(err)
		}
		plain, _, err := s.Open("id", nonce, ct, tag)
		if err == nil {
			if string(plain) != v.Plaintext {
				t.Fatalf("forged cipher text decrypted to %q", plain)
			}
			return
		}
		if !errors.Is(err, ErrNonceSize) && !errors.Is(err, ErrTagSize) && !errors.Is(err, ErrDecrypt) {
			t.Fatalf("unexpected error %v", err)
		}
		if s.Has("id") {
			t.Fatal("session survived a submit")
		}
	})
}

func src(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A source holds at most MaxPerSource sessions, and a few sources together
// never more than their share of what is free; a source holding none is
// served while a slot is free. The global bound stays.
func TestSessionsPerSource(t *testing.T) {
	t.Parallel()
	a, b, c := src(t, "192.0.2.1/32"), src(t, "192.0.2.2/32"), src(t, "2001:db8::/64")
	tests := []struct {
		name      string
		cfg       Config
		flood     []netip.Prefix // sources that open sessions until refused, in turn
		wantHeld  map[netip.Prefix]int
		newSource netip.Prefix // then: does a new source get one?
		wantNew   error
	}{
		{
			name:  "one source stops at its cap",
			cfg:   Config{MaxSessions: 1000, MaxPerSource: 10, FreeShare: -1},
			flood: []netip.Prefix{a}, wantHeld: map[netip.Prefix]int{a: 10},
			newSource: b,
		},
		{
			name:  "one source stops at its share of the free slots",
			cfg:   Config{MaxSessions: 100, MaxPerSource: -1, FreeShare: 4},
			flood: []netip.Prefix{a}, wantHeld: map[netip.Prefix]int{a: 20}, // 20×4 ≥ 100−20
			newSource: b,
		},
		{
			name:  "three sources leave FreeShare/(FreeShare+3) free",
			cfg:   Config{MaxSessions: 70, MaxPerSource: -1, FreeShare: 4},
			flood: []netip.Prefix{a, b, c}, wantHeld: map[netip.Prefix]int{a: 10, b: 10, c: 10}, // 10×4 ≥ 70−30
			newSource: src(t, "198.51.100.7/32"),
		},
		{
			name:  "no limits but the global one",
			cfg:   Config{MaxSessions: 30, MaxPerSource: -1, FreeShare: -1},
			flood: []netip.Prefix{a}, wantHeld: map[netip.Prefix]int{a: 30},
			newSource: b, wantNew: ErrBusy,
		},
		{
			name:  "unknown sources share only the global bound",
			cfg:   Config{MaxSessions: 30, MaxPerSource: 5, FreeShare: 4},
			flood: []netip.Prefix{unknown}, wantHeld: map[netip.Prefix]int{unknown: 30},
			newSource: a, wantNew: ErrBusy,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			key := newClientKey(t)
			held := map[netip.Prefix]int{}
			refused := map[netip.Prefix]bool{}
			for i := 0; len(refused) < len(tt.flood); i++ {
				from := tt.flood[i%len(tt.flood)]
				if refused[from] {
					continue
				}
				id := fmt.Sprintf("%s-%d", from, i)
				if err := s.Admit(id, from); err != nil {
					refused[from] = true
					if _, err2 := s.Begin(id, from, key); !errors.Is(err2, err) {
						t.Fatalf("Admit said %v, Begin %v", err, err2)
					}
					want := ErrSourceBusy
					if !from.IsValid() || tt.cfg.MaxPerSource < 0 && tt.cfg.FreeShare < 0 {
						want = ErrBusy
					}
					if !errors.Is(err, want) {
						t.Fatalf("%s refused with %v, want %v", from, err, want)
					}
					continue
				}
				if _, err := s.Begin(id, from, key); err != nil {
					t.Fatalf("Begin after Admit: %v", err)
				}
				held[from]++
			}
			for from, n := range tt.wantHeld {
				if held[from] != n {
					t.Errorf("%s holds %d sessions, want %d", from, held[from], n)
				}
				if from.IsValid() && s.OfSource(from) != n {
					t.Errorf("OfSource(%s) = %d, want %d", from, s.OfSource(from), n)
				}
			}
			_, err = s.Begin("newcomer", tt.newSource, key)
			if !errors.Is(err, tt.wantNew) && !(tt.wantNew == nil && err == nil) {
				t.Fatalf("a new source's hello: %v, want %v", err, tt.wantNew)
			}
		})
	}
}

// A source's count follows its sessions out: submitted, aborted, expired.
func TestSessionsPerSourceRelease(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	s, _ := New(Config{TTL: time.Minute, MaxPerSource: 2, FreeShare: -1, Now: clock.Now})
	a := src(t, "192.0.2.1/32")
	key := newClientKey(t)
	nonce, tag := make([]byte, NonceSize), make([]byte, TagSize)
	begin := func(id string) error { _, err := s.Begin(id, a, key); return err }
	for _, step := range []struct {
		name string
		do   func() error
		want error
		held int
	}{
		{"first", func() error { return begin("1") }, nil, 1},
		{"second", func() error { return begin("2") }, nil, 2},
		{"third refused", func() error { return begin("3") }, ErrSourceBusy, 2},
		{"a submit frees one", func() error { _, _, err := s.Open("1", nonce, nil, tag); return err }, ErrDecrypt, 1},
		{"third", func() error { return begin("3") }, nil, 2},
		{"an abort frees one", func() error { s.Abort("2"); return nil }, nil, 1},
		{"fourth", func() error { clock.Add(30 * time.Second); return begin("4") }, nil, 2},
		{"expiry frees the older one", func() error { clock.Add(31 * time.Second); return begin("5") }, nil, 2},
		{"all expired", func() error { clock.Add(2 * time.Minute); s.Sweep(); return nil }, nil, 0},
	} {
		if err := step.do(); !errors.Is(err, step.want) && !(step.want == nil && err == nil) {
			t.Fatalf("%s: %v, want %v", step.name, err, step.want)
		}
		if got := s.OfSource(a); got != step.held {
			t.Fatalf("%s: source holds %d, want %d", step.name, got, step.held)
		}
	}
	if s.Len() != 0 || s.Sources() != 0 {
		t.Fatalf("%d sessions of %d sources left", s.Len(), s.Sources())
	}
}

func TestCancelToken(t *testing.T) {
	t.Parallel()
	shared := make([]byte, KeySize)
	rand.Read(shared)
	other := bytes.Clone(shared)
	other[0] ^= 1
	const id = "0b6e2c47-3a4f-4a8b-9a8e-6f1d2a3b4c5d"
	token, err := CancelToken(shared, id)
	if err != nil || len(token) != CancelTokenSize {
		t.Fatalf("CancelToken = %x, %v", token, err)
	}
	stored := HashCancelToken(token)
	forOther, _ := CancelToken(other, id)
	forOtherID, _ := CancelToken(shared, "0b6e2c47-3a4f-4a8b-9a8e-6f1d2a3b4c5e")
	tests := []struct {
		name   string
		stored []byte
		token  []byte
		want   bool
	}{
		{"the submitter's token", stored, token, true},
		{"another session's key", stored, forOther, false},
		{"another request's token", stored, forOtherID, false},
		{"the stored hash itself", stored, stored, false},
		{"the shared key itself", stored, shared, false},
		{"short token", stored, token[:16], false},
		{"no token", stored, nil, false},
		{"a row without a hash", nil, token, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckCancelToken(tt.stored, tt.token); got != tt.want {
				t.Fatalf("CheckCancelToken = %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := CancelToken(shared[:31], id); err == nil {
		t.Fatal("a 31-byte shared key was accepted")
	}
}

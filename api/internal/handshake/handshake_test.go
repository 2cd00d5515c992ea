package handshake

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/api/internal/vectors"
)

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
				serverPub, err := s.Begin("id", client)
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
				plain, err := s.Open("id", vectors.Bytes(v.Nonce), vectors.Bytes(v.CipherText), vectors.Bytes(v.AuthTag))
				if err != nil {
					t.Fatal(err)
				}
				if string(plain) != v.Plaintext {
					t.Fatalf("plaintext = %q, want %q", plain, v.Plaintext)
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
		if _, err := s.Begin("a", newClientKey(t)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open("a", nonce, []byte("x"), tag); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("first submit: %v, want ErrDecrypt", err)
		}
		if _, err := s.Open("a", nonce, []byte("x"), tag); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second submit: %v, want ErrNotFound", err)
		}
	})
	t.Run("bad sizes consume the session", func(t *testing.T) {
		t.Parallel()
		s, _ := New(Config{})
		s.Begin("a", newClientKey(t))
		if _, err := s.Open("a", nonce[:11], nil, tag); !errors.Is(err, ErrNonceSize) {
			t.Fatalf("short nonce: %v", err)
		}
		if s.Has("a") {
			t.Fatal("session kept after a submit with a bad nonce")
		}
		s.Begin("b", newClientKey(t))
		if _, err := s.Open("b", nonce, nil, tag[:15]); !errors.Is(err, ErrTagSize) {
			t.Fatalf("short tag: %v", err)
		}
		if _, err := s.Open("nobody", nonce[:3], nil, tag); !errors.Is(err, ErrNonceSize) {
			t.Fatalf("size errors come before the lookup: %v", err)
		}
	})
	t.Run("duplicate uuid", func(t *testing.T) {
		t.Parallel()
		s, _ := New(Config{})
		if _, err := s.Begin("a", newClientKey(t)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Begin("a", newClientKey(t)); !errors.Is(err, ErrExists) {
			t.Fatalf("second hello: %v, want ErrExists", err)
		}
		s.Abort("a")
		if _, err := s.Begin("a", newClientKey(t)); err != nil {
			t.Fatalf("hello after abort: %v", err)
		}
	})
	t.Run("expiry", func(t *testing.T) {
		t.Parallel()
		clock := &fakeClock{now: time.Unix(1e9, 0)}
		s, _ := New(Config{TTL: time.Minute, Now: clock.Now})
		s.Begin("a", newClientKey(t))
		s.Begin("b", newClientKey(t))
		clock.Add(59 * time.Second)
		if !s.Has("a") {
			t.Fatal("session gone before its TTL")
		}
		clock.Add(time.Second)
		if s.Has("a") {
			t.Fatal("session alive at its TTL")
		}
		if _, err := s.Open("a", nonce, nil, tag); !errors.Is(err, ErrNotFound) {
			t.Fatalf("submit after expiry: %v, want ErrNotFound", err)
		}
		if _, err := s.Begin("b", newClientKey(t)); err != nil {
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
			if _, err := s.Begin(fmt.Sprint(i), newClientKey(t)); err != nil {
				t.Fatal(err)
			}
			clock.Add(10 * time.Second)
		}
		if _, err := s.Begin("x", newClientKey(t)); !errors.Is(err, ErrBusy) {
			t.Fatalf("hello on a full table: %v, want ErrBusy", err)
		}
		for i := range 3 {
			if !s.Has(fmt.Sprint(i)) {
				t.Fatalf("session %d was evicted", i)
			}
		}
		clock.Add(31 * time.Second) // session 0 expires
		if _, err := s.Begin("x", newClientKey(t)); err != nil {
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
				_, err := s.Begin(fmt.Sprint(i%60), newClientKey(t))
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
	bad := func() (*ecdh.PrivateKey, error) { return ecdh.X25519().GenerateKey(rand.Reader) }
	s, _ := New(Config{GenerateKey: bad})
	if _, err := s.Begin("a", newClientKey(t)); err == nil {
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
		if _, err := s.Begin("id", client); err != nil {
			t.Fatal(err)
		}
		plain, err := s.Open("id", nonce, ct, tag)
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

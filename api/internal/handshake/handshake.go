// Package handshake holds the app's key agreement with the frontend: the
// client's P-256 key, one fresh server key per session, the shared
// AES-256-GCM key (the raw X coordinate of the ECDH point, no KDF, as the
// app does it) and the one decryption each session allows.
//
// Sessions are bounded and expire. A full table refuses new sessions
// (ErrBusy) instead of evicting live ones, so a flood of hellos cannot push
// out a client that is about to submit.
package handshake

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Sizes fixed by the app's protocol.
const (
	NonceSize      = 12
	TagSize        = 16
	KeySize        = 32 // AES-256
	UncompressedPK = 65 // 0x04 ‖ X ‖ Y
	CompressedPK   = 33 // 0x02/0x03 ‖ X
)

// Errors of the handshake; the frontend maps each to the app's error.
var (
	ErrKeyLength  = errors.New("public key must be 33 or 65 bytes")
	ErrNotOnCurve = errors.New("public key is not a point on P-256")
	ErrExists     = errors.New("a session for this uuid already exists")
	ErrBusy       = errors.New("too many open sessions")
	ErrNotFound   = errors.New("no session for this uuid")
	ErrNonceSize  = errors.New("nonce must be 12 bytes")
	ErrTagSize    = errors.New("auth tag must be 16 bytes")
	ErrDecrypt    = errors.New("cipher text does not authenticate")
)

// ParseClientKey parses the client's P-256 key, 65 bytes uncompressed or 33
// bytes compressed. An error wraps ErrKeyLength or ErrNotOnCurve.
func ParseClientKey(b []byte) (*ecdh.PublicKey, error) {
	switch len(b) {
	case UncompressedPK:
		if b[0] != 4 {
			return nil, fmt.Errorf("%w: a 65-byte key must start with 0x04, not 0x%02x", ErrNotOnCurve, b[0])
		}
		k, err := ecdh.P256().NewPublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("%w: the point (X, Y) does not satisfy the curve equation", ErrNotOnCurve)
		}
		return k, nil
	case CompressedPK:
		if b[0] != 2 && b[0] != 3 {
			return nil, fmt.Errorf("%w: a 33-byte key must start with 0x02 or 0x03, not 0x%02x", ErrNotOnCurve, b[0])
		}
		x, y := elliptic.UnmarshalCompressed(elliptic.P256(), b)
		if x == nil {
			return nil, fmt.Errorf("%w: no point on the curve has this X coordinate", ErrNotOnCurve)
		}
		var raw [UncompressedPK]byte
		raw[0] = 4
		x.FillBytes(raw[1:33])
		y.FillBytes(raw[33:])
		k, err := ecdh.P256().NewPublicKey(raw[:])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotOnCurve, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w, got %d", ErrKeyLength, len(b))
}

// SharedKey computes the AES-256 key the app derives: the 32-byte
// big-endian X coordinate of priv·peer.
func SharedKey(priv *ecdh.PrivateKey, peer *ecdh.PublicKey) ([]byte, error) {
	k, err := priv.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("handshake: ecdh: %w", err)
	}
	return k, nil
}

// Decrypt opens AES-256-GCM cipher text with a detached tag and no
// associated data. It checks the nonce and tag sizes, and returns an error
// wrapping ErrDecrypt when the tag does not match.
func Decrypt(key, nonce, ciphertext, tag []byte) ([]byte, error) {
	if len(nonce) != NonceSize {
		return nil, ErrNonceSize
	}
	if len(tag) != TagSize {
		return nil, ErrTagSize
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	buf := make([]byte, 0, len(ciphertext)+TagSize)
	buf = append(append(buf, ciphertext...), tag...)
	plain, err := aead.Open(buf[:0], nonce, buf, nil)
	if err != nil {
		clear(buf)
		return nil, ErrDecrypt
	}
	return plain, nil
}

// Encrypt is the client's side of Decrypt: AES-256-GCM under key with a
// random 12-byte nonce, the tag returned separately.
func Encrypt(key, plaintext []byte) (nonce, ciphertext, tag []byte, err error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("handshake: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("handshake: %w", err)
	}
	nonce = make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, nil, fmt.Errorf("handshake: nonce: %w", err)
	}
	sealed := aead.Seal(nil, nonce, plaintext, nil)
	n := len(sealed) - TagSize
	return nonce, sealed[:n:n], sealed[n:], nil
}

// Config sets up Sessions.
type Config struct {
	// TTL is how long a session waits for its submit (default DefaultTTL).
	TTL time.Duration
	// MaxSessions bounds the open sessions (default 10000).
	MaxSessions int
	// GenerateKey makes the server's key for a new session. Nil means a
	// fresh random P-256 key; tests set it to replay recorded vectors.
	GenerateKey func() (*ecdh.PrivateKey, error)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Defaults.
const (
	// DefaultTTL leaves a user minutes to confirm before the app submits.
	DefaultTTL         = 15 * time.Minute
	DefaultMaxSessions = 10000
)

func (c *Config) setDefaults() {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.GenerateKey == nil {
		c.GenerateKey = func() (*ecdh.PrivateKey, error) { return ecdh.P256().GenerateKey(rand.Reader) }
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Sessions is the table of open handshakes, keyed by the client's uuid.
// It is safe for concurrent use.
type Sessions struct {
	cfg Config

	mu sync.Mutex
	m  map[string]*session
}

type session struct {
	key     [KeySize]byte
	expires time.Time
}

// New returns an empty session table.
func New(cfg Config) (*Sessions, error) {
	cfg.setDefaults()
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("handshake: session TTL must be positive, got %v", cfg.TTL)
	}
	if cfg.MaxSessions < 0 {
		return nil, fmt.Errorf("handshake: max sessions must be positive, got %d", cfg.MaxSessions)
	}
	return &Sessions{cfg: cfg, m: make(map[string]*session)}, nil
}

// TTL is how long a session lives.
func (s *Sessions) TTL() time.Duration { return s.cfg.TTL }

// Begin opens a session for id with the client's key: it makes a fresh
// server key, keeps only the shared AES key, and returns the server's
// public key (65 bytes, uncompressed). It fails with ErrExists if id has a
// live session and with ErrBusy if the table is full of live sessions.
func (s *Sessions) Begin(id string, client *ecdh.PublicKey) ([]byte, error) {
	priv, err := s.cfg.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("handshake: server key: %w", err)
	}
	if priv.Curve() != ecdh.P256() {
		return nil, errors.New("handshake: server key is not a P-256 key")
	}
	shared, err := SharedKey(priv, client)
	if err != nil {
		return nil, err
	}
	defer clear(shared)
	sess := &session{}
	copy(sess.key[:], shared)

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	if old, ok := s.m[id]; ok {
		if now.Before(old.expires) {
			clear(sess.key[:])
			return nil, ErrExists
		}
		s.removeLocked(id, old)
	}
	if len(s.m) >= s.cfg.MaxSessions {
		s.sweepLocked(now)
		if len(s.m) >= s.cfg.MaxSessions {
			clear(sess.key[:])
			return nil, ErrBusy
		}
	}
	sess.expires = now.Add(s.cfg.TTL)
	s.m[id] = sess
	return priv.PublicKey().Bytes(), nil
}

// Has reports whether id has a live session.
func (s *Sessions) Has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[id]
	return ok && s.cfg.Now().Before(sess.expires)
}

// Abort ends the session for id without a submit (for example when the
// attestation could not be made).
func (s *Sessions) Abort(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.m[id]; ok {
		s.removeLocked(id, sess)
	}
}

// Open is the session's one submit attempt: it removes the session for id
// whatever happens, then checks the nonce and tag sizes and decrypts.
// Errors: ErrNonceSize, ErrTagSize, ErrNotFound (no live session),
// ErrDecrypt.
func (s *Sessions) Open(id string, nonce, ciphertext, tag []byte) ([]byte, error) {
	s.mu.Lock()
	sess, ok := s.m[id]
	if ok {
		delete(s.m, id)
		if !s.cfg.Now().Before(sess.expires) {
			clear(sess.key[:])
			ok = false
		}
	}
	s.mu.Unlock()
	if ok {
		defer clear(sess.key[:])
	}
	switch {
	case len(nonce) != NonceSize:
		return nil, ErrNonceSize
	case len(tag) != TagSize:
		return nil, ErrTagSize
	case !ok:
		return nil, ErrNotFound
	}
	return Decrypt(sess.key[:], nonce, ciphertext, tag)
}

// Len is the number of sessions held, expired ones not yet swept included.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Sweep removes expired sessions and returns how many it removed.
func (s *Sessions) Sweep() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sweepLocked(s.cfg.Now())
}

// Run sweeps expired sessions every quarter TTL (at least every second)
// until ctx is done. Begin also sweeps when the table is full, so Run only
// keeps memory down between floods.
func (s *Sessions) Run(ctx context.Context) {
	t := time.NewTicker(max(s.cfg.TTL/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

func (s *Sessions) sweepLocked(now time.Time) int {
	n := 0
	for id, sess := range s.m {
		if !now.Before(sess.expires) {
			s.removeLocked(id, sess)
			n++
		}
	}
	return n
}

func (s *Sessions) removeLocked(id string, sess *session) {
	clear(sess.key[:])
	delete(s.m, id)
}

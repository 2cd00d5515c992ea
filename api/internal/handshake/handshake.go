// Package handshake holds the app's key agreement with the frontend: the
// client's P-256 key, one fresh server key per session, the shared
// AES-256-GCM key (the raw X coordinate of the ECDH point, no KDF, as the
// app does it) and the one decryption each session allows.
//
// Sessions are bounded and expire. A full table refuses new sessions
// (ErrBusy) instead of evicting live ones, so a flood of hellos cannot push
// out a client that is about to submit; and each source (a client's network
// address) holds at most its share of the table (ErrSourceBusy), so a flood
// from one source, or from a few hundred, cannot fill it.
//
// A submitted request can later be cancelled only by whoever holds the
// session's shared key: CancelToken derives a token from it and the
// request's uuid, and the frontend keeps only its hash (HashCancelToken).
package handshake

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
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
	ErrSourceBusy = errors.New("too many open sessions from this source")
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
	// MaxPerSource bounds the open sessions of one source (default 64;
	// -1: no bound). A session's source is the client's network address
	// (see Begin); sessions of an unknown source are only bounded by
	// MaxSessions.
	MaxPerSource int
	// FreeShare keeps a few sources from filling the table: a source that
	// already holds n sessions gets another only while n × FreeShare is
	// less than the free slots (default 32; -1: off). A source holding none
	// is served while any slot is free. So k sources flooding together stop
	// when about FreeShare/(FreeShare+k) of the table is still free (k = 1:
	// 97 %, k = 300: 10 %), and a single one at MaxSessions/(FreeShare+1).
	FreeShare int
	// GenerateKey makes the server's key for a new session. Nil means a
	// fresh random P-256 key; tests set it to replay recorded vectors.
	GenerateKey func() (*ecdh.PrivateKey, error)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Defaults.
const (
	// DefaultTTL leaves a user minutes to confirm before the app submits.
	DefaultTTL          = 15 * time.Minute
	DefaultMaxSessions  = 10000
	DefaultMaxPerSource = 64
	DefaultFreeShare    = 32
)

func (c *Config) setDefaults() {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.MaxPerSource == 0 {
		c.MaxPerSource = DefaultMaxPerSource
	}
	if c.FreeShare == 0 {
		c.FreeShare = DefaultFreeShare
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
//
// Sessions are kept in a list in the order they expire (every session
// lives TTL from its hello), so expired ones are dropped from its head in
// constant time on every Begin: a source's count is always exact.
type Sessions struct {
	cfg Config

	mu         sync.Mutex
	m          map[string]*session
	head, tail *session               // expiry order: head expires first
	perSource  map[netip.Prefix]int32 // open sessions of each known source
}

type session struct {
	key        [KeySize]byte
	expires    time.Time
	src        netip.Prefix
	id         string
	prev, next *session
}

// New returns an empty session table.
func New(cfg Config) (*Sessions, error) {
	cfg.setDefaults()
	switch {
	case cfg.TTL < 0:
		return nil, fmt.Errorf("handshake: session TTL must be positive, got %v", cfg.TTL)
	case cfg.MaxSessions < 0:
		return nil, fmt.Errorf("handshake: max sessions must be positive, got %d", cfg.MaxSessions)
	case cfg.MaxPerSource < -1:
		return nil, fmt.Errorf("handshake: max sessions per source must be positive or -1 (no bound), got %d", cfg.MaxPerSource)
	case cfg.FreeShare < -1:
		return nil, fmt.Errorf("handshake: free share must be positive or -1 (off), got %d", cfg.FreeShare)
	}
	return &Sessions{cfg: cfg, m: make(map[string]*session), perSource: make(map[netip.Prefix]int32)}, nil
}

// TTL is how long a session lives.
func (s *Sessions) TTL() time.Duration { return s.cfg.TTL }

// Admit reports, without opening anything, whether Begin would refuse a
// session for id from src right now: ErrExists, ErrBusy or
// ErrSourceBusy. Callers use it to refuse a flood before spending a key
// generation, an ECDH and a database lookup on it; Begin checks again.
func (s *Sessions) Admit(id string, src netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	s.expireLocked(now)
	if old, ok := s.m[id]; ok && now.Before(old.expires) {
		return ErrExists
	}
	return s.admitLocked(src)
}

// admitLocked applies the global and the per-source bounds. Expired
// sessions are gone already.
func (s *Sessions) admitLocked(src netip.Prefix) error {
	if len(s.m) >= s.cfg.MaxSessions {
		return ErrBusy
	}
	if !src.IsValid() {
		return nil
	}
	n := int(s.perSource[src])
	if s.cfg.MaxPerSource > 0 && n >= s.cfg.MaxPerSource {
		return ErrSourceBusy
	}
	if s.cfg.FreeShare > 0 && n > 0 && n*s.cfg.FreeShare >= s.cfg.MaxSessions-len(s.m) {
		return ErrSourceBusy
	}
	return nil
}

// Begin opens a session for id with the client's key: it makes a fresh
// server key, keeps only the shared AES key, and returns the server's
// public key (65 bytes, uncompressed). src is the client's source (its
// address, see api/internal/admission); the zero Prefix means unknown. It
// fails with ErrExists if id has a live session, with ErrBusy if the table
// is full of live sessions and with ErrSourceBusy if src holds its share.
// Live sessions are never evicted to make room.
func (s *Sessions) Begin(id string, src netip.Prefix, client *ecdh.PublicKey) ([]byte, error) {
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
	sess := &session{id: id, src: src}
	copy(sess.key[:], shared)

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	s.expireLocked(now)
	if _, ok := s.m[id]; ok {
		clear(sess.key[:])
		return nil, ErrExists
	}
	if err := s.admitLocked(src); err != nil {
		clear(sess.key[:])
		return nil, err
	}
	sess.expires = now.Add(s.cfg.TTL)
	s.m[id] = sess
	s.pushLocked(sess)
	if src.IsValid() {
		s.perSource[src]++
	}
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
		s.removeLocked(sess)
	}
}

// Open is the session's one submit attempt: it removes the session for id
// whatever happens, then checks the nonce and tag sizes and decrypts. With
// the plaintext it returns the hash of the request's cancel token
// (HashCancelToken of CancelToken), which is all the frontend keeps of
// the session once it is gone. Errors: ErrNonceSize, ErrTagSize,
// ErrNotFound (no live session), ErrDecrypt.
func (s *Sessions) Open(id string, nonce, ciphertext, tag []byte) (plain, cancelHash []byte, err error) {
	var key [KeySize]byte
	defer clear(key[:])
	s.mu.Lock()
	sess, ok := s.m[id]
	if ok {
		ok = s.cfg.Now().Before(sess.expires)
		if ok {
			key = sess.key
		}
		s.removeLocked(sess) // clears the session's copy
	}
	s.mu.Unlock()
	switch {
	case len(nonce) != NonceSize:
		return nil, nil, ErrNonceSize
	case len(tag) != TagSize:
		return nil, nil, ErrTagSize
	case !ok:
		return nil, nil, ErrNotFound
	}
	plain, err = Decrypt(key[:], nonce, ciphertext, tag)
	if err != nil {
		return nil, nil, err
	}
	token, err := CancelToken(key[:], id)
	if err != nil {
		clear(plain)
		return nil, nil, err
	}
	defer clear(token)
	return plain, HashCancelToken(token), nil
}

// Len is the number of sessions held, expired ones not yet swept included.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Sources is the number of sources holding at least one session.
func (s *Sessions) Sources() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.perSource)
}

// OfSource is the number of sessions src holds, expired ones not yet
// swept included.
func (s *Sessions) OfSource(src netip.Prefix) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.perSource[src])
}

// Sweep removes expired sessions and returns how many it removed.
func (s *Sessions) Sweep() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expireLocked(s.cfg.Now())
}

// Run sweeps expired sessions every quarter TTL (at least every second,
// at most every 10 s) until ctx is done. Begin also drops expired
// sessions, so Run only keeps memory down while no hello arrives.
func (s *Sessions) Run(ctx context.Context) {
	t := time.NewTicker(min(max(s.cfg.TTL/4, time.Second), 10*time.Second))
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

// expireLocked drops the expired sessions from the head of the list.
func (s *Sessions) expireLocked(now time.Time) int {
	n := 0
	for s.head != nil && !now.Before(s.head.expires) {
		s.removeLocked(s.head)
		n++
	}
	return n
}

func (s *Sessions) pushLocked(sess *session) {
	sess.prev, sess.next = s.tail, nil
	if s.tail != nil {
		s.tail.next = sess
	} else {
		s.head = sess
	}
	s.tail = sess
}

func (s *Sessions) removeLocked(sess *session) {
	clear(sess.key[:])
	delete(s.m, sess.id)
	if sess.prev != nil {
		sess.prev.next = sess.next
	} else {
		s.head = sess.next
	}
	if sess.next != nil {
		sess.next.prev = sess.prev
	} else {
		s.tail = sess.prev
	}
	sess.prev, sess.next = nil, nil
	if sess.src.IsValid() {
		if n := s.perSource[sess.src] - 1; n > 0 {
			s.perSource[sess.src] = n
		} else {
			delete(s.perSource, sess.src)
		}
	}
}

// cancelInfo is the HKDF info prefix of a cancel token; the request's
// uuid follows it.
const cancelInfo = "openpassport_cancel v1 "

// CancelTokenSize is the length of a cancel token.
const CancelTokenSize = 32

// CancelToken is what authorises cancelling the request a session
// submitted: HKDF-SHA256 of the session's shared key (no salt), info
// "openpassport_cancel v1 " followed by the request's uuid (lowercase,
// hyphenated), 32 bytes. Only the two ends of the handshake can compute
// it; it reveals nothing of the shared key, and it names one request.
func CancelToken(sharedKey []byte, id string) ([]byte, error) {
	if len(sharedKey) != KeySize {
		return nil, fmt.Errorf("handshake: cancel token: shared key is %d bytes, want %d", len(sharedKey), KeySize)
	}
	t, err := hkdf.Key(sha256.New, sharedKey, nil, cancelInfo+id, CancelTokenSize)
	if err != nil {
		return nil, fmt.Errorf("handshake: cancel token: %w", err)
	}
	return t, nil
}

// HashCancelToken is what the frontend stores of a cancel token (with the
// request's row): its SHA-256, so that reading the table does not give the
// power to cancel.
func HashCancelToken(token []byte) []byte {
	h := sha256.Sum256(token)
	return h[:]
}

// CheckCancelToken reports whether token hashes to stored, in constant
// time. An empty stored hash (a request recorded without one) matches
// nothing.
func CheckCancelToken(stored, token []byte) bool {
	if len(stored) != sha256.Size || len(token) != CancelTokenSize {
		return false
	}
	h := sha256.Sum256(token)
	return subtle.ConstantTimeCompare(stored, h[:]) == 1
}

// Package job defines what travels on the queue between the frontend and the
// worker pools: the job envelope, the sealing of circuit inputs, the NATS
// subjects and the status events.
//
// Circuit inputs are personal data (passport fields). They are sealed with
// AES-256-GCM under a fleet key shared by the frontend and the workers (both
// inside enclaves) before they are published, so the plaintext never sits in
// JetStream's file store. The request id is the associated data, so a sealed
// blob cannot be replayed under another request.
package job

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/openpassport/prover-fleet/shared/family"
)

// StreamName is the JetStream stream that holds proof jobs.
const StreamName = "PROOF_JOBS"

// Subject is the subject a family's jobs are published on.
func Subject(f family.Family) string { return "proof.jobs." + string(f) }

// SubjectAll matches every family's job subject (the stream's subjects).
const SubjectAll = "proof.jobs.>"

// StatusSubject is the subject on which status changes of one request are
// announced.
func StatusSubject(requestID string) string { return "proof.status." + requestID }

// CancelSubject is the subject on which a cancel of one request is announced.
func CancelSubject(requestID string) string { return "proof.cancel." + requestID }

// CancelSubjectAll matches every cancel announcement.
const CancelSubjectAll = "proof.cancel.*"

// Envelope is one proof job as published on the stream.
type Envelope struct {
	RequestID  string           `json:"request_id"`
	ProofType  family.ProofType `json:"proof_type"`
	Circuit    string           `json:"circuit"`
	EnqueuedAt time.Time        `json:"enqueued_at"`
	// Sealed is nonce ‖ AES-256-GCM(circuit inputs JSON), associated data =
	// RequestID.
	Sealed []byte `json:"sealed_inputs"`
}

// Family is the family whose pool proves this job.
func (e Envelope) Family() family.Family { return e.ProofType.Family() }

// Validate reports the first missing or inconsistent field.
func (e Envelope) Validate() error {
	switch {
	case e.RequestID == "":
		return errors.New("job: request_id is empty")
	case e.ProofType.Family() == "":
		return fmt.Errorf("job: unknown proof type %q", e.ProofType)
	case e.Circuit == "":
		return errors.New("job: circuit is empty")
	case len(e.Sealed) < nonceSize+16:
		return errors.New("job: sealed inputs are missing or truncated")
	}
	return nil
}

// Marshal encodes the envelope for publishing.
func (e Envelope) Marshal() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

// Unmarshal decodes and validates an envelope.
func Unmarshal(data []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return Envelope{}, fmt.Errorf("job: decode envelope: %w", err)
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// KeySize is the length of the fleet key.
const KeySize = 32

const nonceSize = 12

// ErrOpen means sealed inputs did not authenticate under the fleet key.
var ErrOpen = errors.New("job: sealed inputs do not open with this fleet key")

// Sealer seals and opens circuit inputs with the fleet key.
type Sealer struct{ aead cipher.AEAD }

// NewSealer returns a Sealer for a 32-byte fleet key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("job: fleet key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("job: fleet key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("job: fleet key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts inputs for the job requestID.
func (s *Sealer) Seal(requestID string, inputs []byte) ([]byte, error) {
	out := make([]byte, nonceSize, nonceSize+len(inputs)+s.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("job: nonce: %w", err)
	}
	return s.aead.Seal(out, out, inputs, []byte(requestID)), nil
}

// Open decrypts the inputs of the job requestID.
func (s *Sealer) Open(requestID string, sealed []byte) ([]byte, error) {
	if len(sealed) < nonceSize+s.aead.Overhead() {
		return nil, ErrOpen
	}
	plain, err := s.aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], []byte(requestID))
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// ParseKey reads a fleet key written as 64 hex characters (surrounding
// whitespace ignored) or as 32 raw bytes.
func ParseKey(data []byte) ([]byte, error) {
	if len(data) == KeySize {
		return append([]byte(nil), data...), nil
	}
	s := strings.TrimSpace(string(data))
	key, err := hex.DecodeString(s)
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("job: fleet key must be %d raw bytes or %d hex characters", KeySize, 2*KeySize)
	}
	return key, nil
}

// LoadKeyFile reads a fleet key from a file (see ParseKey).
func LoadKeyFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("job: read fleet key: %w", err)
	}
	return ParseKey(data)
}

// NewKey returns a fresh random fleet key (development and tests).
func NewKey() []byte {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		panic("crypto/rand failed: " + err.Error()) // rand.Read never fails on Linux
	}
	return k
}

// Status codes of proofs.status.
const (
	StatusPending            = 0
	StatusWitnessGenerated   = 1
	StatusProofGenerated     = 2
	StatusFailed             = 3
	StatusVerified           = 4
	StatusVerificationFailed = 5
)

// Terminal reports whether no prover will change a status again.
func Terminal(status int) bool { return status >= StatusProofGenerated }

// StatusEvent announces that a request's status changed. It carries no
// proof: readers fetch the row.
type StatusEvent struct {
	RequestID string    `json:"request_id"`
	Status    int       `json:"status"`
	At        time.Time `json:"at"`
}

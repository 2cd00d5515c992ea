// Package job defines what travels on the queue between the frontend and the
// worker pools: the job envelope, the sealing of circuit inputs and the
// status events. The stream, subjects and consumers they travel on are
// shared/jobqueue's.
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
	"github.com/openpassport/prover-fleet/shared/status"
)

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

// StatusEvent announces that a write changed a request's proofs row. It is
// published after the write committed, on core NATS: a hint that can be
// lost; Postgres holds the truth.
//
// Row, when set, is what that write left in the fields a client is shown
// (see StatusRow), so that a reader can pass the status on without reading
// the row. An event without Row (from an older publisher, or from one that
// does not know every field) only says "look again": readers re-read the
// row. Build events with WitnessGeneratedEvent, ProofGeneratedEvent and
// FailedEvent.
//
// No event carries a request's plaintext, a key or circuit inputs: the
// proof and the public signals are the job's public outputs, and the reason
// is the public one the row stores and clients are shown.
type StatusEvent struct {
	RequestID string      `json:"request_id"`
	Status    status.Code `json:"status"`
	At        time.Time   `json:"at"`
	Row       *StatusRow  `json:"row,omitempty"`
}

// StatusRow is the part of a proofs row that changes with its status and
// that clients are shown, as one write left it:
//
//   - witness generated (1): WitnessGeneratedAt;
//   - proof generated (2): WitnessGeneratedAt, ProofGeneratedAt, Proof
//     and PublicInputs as written (the proof compacted, as JSON encoding
//     does with it here and again on its way to the client);
//   - failed (3): Reason. A failed write changes no timestamp and its
//     writer does not know them, so a reader keeps the ones it knows (it
//     knows them when it has seen status 1: they cannot change after it).
//
// The timestamps are the ones the write stored in the row (store's Mark*
// writes return them), so a status built from an event equals one read
// from the row.
type StatusRow struct {
	WitnessGeneratedAt *time.Time      `json:"witness_generated_at,omitempty"`
	ProofGeneratedAt   *time.Time      `json:"proof_generated_at,omitempty"`
	Proof              json.RawMessage `json:"proof,omitempty"`
	PublicInputs       []string        `json:"public_inputs,omitempty"`
	Reason             string          `json:"reason,omitempty"`
}

// Complete reports whether the event carries every field its status changes
// in the row (see StatusRow). Only such an event may stand in for a read.
func (ev StatusEvent) Complete() bool {
	r := ev.Row
	if r == nil {
		return false
	}
	switch ev.Status {
	case status.WitnessGenerated:
		return r.WitnessGeneratedAt != nil
	case status.ProofGenerated:
		return r.WitnessGeneratedAt != nil && r.ProofGeneratedAt != nil && len(r.Proof) > 0 && json.Valid(r.Proof)
	case status.Failed:
		return true
	}
	return false
}

// stamp is a write's time as a row holds it: UTC, to the microsecond.
func stamp(t time.Time) *time.Time {
	u := t.UTC().Truncate(time.Microsecond)
	return &u
}

// WitnessGeneratedEvent announces the write that moved id to witness
// generated; at is the witness time that write stored.
func WitnessGeneratedEvent(id string, at time.Time) StatusEvent {
	return StatusEvent{RequestID: id, Status: status.WitnessGenerated, At: at.UTC(),
		Row: &StatusRow{WitnessGeneratedAt: stamp(at)}}
}

// ProofGeneratedEvent announces the write that stored proof and public for
// id; at is the proof time that write stored and witnessAt the row's
// witness time; nil when the publisher does not know it, and then the
// event carries no Row and readers re-read.
func ProofGeneratedEvent(id string, witnessAt *time.Time, at time.Time, proof json.RawMessage, public []string) StatusEvent {
	ev := StatusEvent{RequestID: id, Status: status.ProofGenerated, At: at.UTC()}
	if witnessAt == nil {
		return ev
	}
	if public == nil {
		public = []string{} // as the store writes it
	}
	ev.Row = &StatusRow{WitnessGeneratedAt: stamp(*witnessAt), ProofGeneratedAt: stamp(at), Proof: proof, PublicInputs: public}
	return ev
}

// FailedEvent announces the write that failed id with reason; at is when
// that write returned.
func FailedEvent(id, reason string, at time.Time) StatusEvent {
	return StatusEvent{RequestID: id, Status: status.Failed, At: at.UTC(), Row: &StatusRow{Reason: reason}}
}

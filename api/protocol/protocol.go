// Package protocol is the frontend's JSON-RPC 2.0 contract as Go values:
// method names, params and results, the status object, and the error codes
// and messages the app sees. The frontend and the Go client (api/client)
// both use it, so the two cannot drift apart.
//
// The app's part is fixed by PROTOCOL.md: openpassport_hello,
// openpassport_submit_request, openpassport_attestation and
// openpassport_health, byte strings as JSON arrays of integers 0..255
// (Bytes). The rest is this project's: openpassport_status,
// openpassport_subscribe (WebSocket only, followed by
// openpassport_status_update notifications) and openpassport_cancel.
package protocol

import (
	"encoding/json"
	"time"

	"github.com/openpassport/prover-fleet/shared/status"
)

// Methods.
const (
	MethodHello       = "openpassport_hello"
	MethodSubmit      = "openpassport_submit_request"
	MethodAttestation = "openpassport_attestation"
	MethodHealth      = "openpassport_health"
	MethodStatus      = "openpassport_status"
	MethodSubscribe   = "openpassport_subscribe"
	MethodCancel      = "openpassport_cancel"

	// NotifyStatusUpdate is the notification a subscription sends on every
	// status change; its params are a Status.
	NotifyStatusUpdate = "openpassport_status_update"
)

// HealthOK is openpassport_health's result.
const HealthOK = "OK"

// HelloParams are openpassport_hello's params (positional order: user_pubkey,
// uuid).
type HelloParams struct {
	UserPubkey Bytes  `json:"user_pubkey"`
	UUID       string `json:"uuid"`
}

// HelloResult is openpassport_hello's result. Attestation is a raw
// attestation document whose public_key is the server's session key.
type HelloResult struct {
	UUID        string `json:"uuid"`
	Attestation Bytes  `json:"attestation"`
}

// SubmitParams are openpassport_submit_request's params (positional order:
// uuid, nonce, cipher_text, auth_tag). The result is the uuid as a string.
type SubmitParams struct {
	UUID       string `json:"uuid"`
	Nonce      Bytes  `json:"nonce"`
	CipherText Bytes  `json:"cipher_text"`
	AuthTag    Bytes  `json:"auth_tag"`
}

// AttestationParams are openpassport_attestation's params, all optional
// (positional order: user_data, nonce, public_key). The result is a raw
// attestation document as Bytes.
type AttestationParams struct {
	UserData  Bytes `json:"user_data,omitempty"`
	Nonce     Bytes `json:"nonce,omitempty"`
	PublicKey Bytes `json:"public_key,omitempty"`
}

// UUIDParams are the params of openpassport_status and
// openpassport_subscribe.
type UUIDParams struct {
	UUID string `json:"uuid"`
}

// CancelParams are openpassport_cancel's params (positional order: uuid,
// cancel_token). CancelToken proves that the caller submitted the request:
// HKDF-SHA256 of the session's shared key (the AES key of the submit, no
// salt), info "openpassport_cancel v1 " followed by the uuid in lowercase
// hyphenated form, 32 bytes (api/client derives it; the frontend keeps
// only its SHA-256 with the row).
type CancelParams struct {
	UUID        string `json:"uuid"`
	CancelToken Bytes  `json:"cancel_token"`
}

// Status is a proof request as openpassport_status, openpassport_subscribe,
// openpassport_status_update and GET /v1/proofs/{uuid} report it. Every key
// is always present; the ones not known yet are null. Proof and
// PublicInputs are set once the status is 2 (and stay for 4 and 5).
type Status struct {
	UUID               string          `json:"uuid"`
	Status             status.Code     `json:"status"`     // shared/status: 0 pending .. 5 verification failed
	ProofType          int             `json:"proof_type"` // the proofs.proof_type code, 0..9
	CircuitName        string          `json:"circuit_name"`
	CreatedAt          time.Time       `json:"created_at"`
	WitnessGeneratedAt *time.Time      `json:"witness_generated_at"`
	ProofGeneratedAt   *time.Time      `json:"proof_generated_at"`
	Proof              json.RawMessage `json:"proof"`
	PublicInputs       []string        `json:"public_inputs"`
	Reason             *string         `json:"reason"`
}

// HasProof reports whether Proof holds a proof (not absent, not null).
func (s Status) HasProof() bool { return len(s.Proof) > 0 && string(s.Proof) != "null" }

// Terminal reports whether the status will not change again by the prover
// (2 proof generated, 3 failed, 4 verified, 5 verification failed).
func (s Status) Terminal() bool { return s.Status.Terminal() }

// CancelResult is openpassport_cancel's result. Cancelled is false when the
// request had already reached a terminal status, which Status then shows.
type CancelResult struct {
	UUID      string      `json:"uuid"`
	Cancelled bool        `json:"cancelled"`
	Status    status.Code `json:"status"`
}

// CancelReason is the reason recorded on a cancelled request.
const CancelReason = "cancelled"

// JSON-RPC error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	// CodeServerBusy: the session table is full, or the caller's network
	// address holds its share of it, of the connections or of the
	// handshake rate; retry later. Live sessions are never evicted to make
	// room.
	CodeServerBusy = -32000
	// CodeNotSubmitter: openpassport_cancel with a cancel token that is not
	// the request's submitter's (this project's method; the app never
	// sees it).
	CodeNotSubmitter = -32001
)

// The app's error messages (PROTOCOL.md, "Errors the app may see"), and
// this frontend's own for the cases the table leaves open.
const (
	MsgKeyLength    = "Public key must be 33 or 65 bytes"                // -32600
	MsgNotOnCurve   = "Public key is not a valid P-256 point"            // -32602, data says why
	MsgUUIDExists   = "UUID already exists"                              // -32600
	MsgNonceLength  = "Nonce must be 12 bytes"                           // -32600
	MsgTagLength    = "Auth tag must be 16 bytes"                        // -32600
	MsgUUIDNotFound = "UUID not found"                                   // -32600
	MsgDecrypt      = "Failed to decrypt text"                           // -32600
	MsgParse        = "Failed to parse proof request"                    // -32600
	MsgServerBusy   = "Server busy: too many open sessions, retry later" // -32000
	// MsgSourceBusy: the caller's network address holds its share of the
	// session table.
	MsgSourceBusy = "Server busy: too many open sessions from your network address, retry later" // -32000
	// MsgHelloRate: the caller's network address starts handshakes (hello,
	// attestation) faster than its share.
	MsgHelloRate = "Server busy: too many handshakes from your network address, retry later" // -32000
	// MsgConnsBusy and MsgSourceConnsBusy: a connection over the limits,
	// answered with HTTP 503 and this error as body.
	MsgConnsBusy       = "Server busy: too many connections, retry later"                           // -32000
	MsgSourceConnsBusy = "Server busy: too many connections from your network address, retry later" // -32000
	// MsgClientsBusy: the frontend tracks as many client addresses as it
	// may.
	MsgClientsBusy = "Server busy: too many clients, retry later" // -32000
	// MsgNotSubmitter: a cancel whose token is not the submitter's.
	MsgNotSubmitter = "Cancel refused: only the submitter of this request can cancel it" // -32001
	// "This endpoint only allows {family} inputs" and "Could not find the
	// given circuit name: {name}" are built by the frontend.
)

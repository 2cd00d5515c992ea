package relay

import (
	"strings"

	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

// Event names of the relay.
const (
	// EventSubscribe is what a client emits, with the request's uuid (a
	// string) as its one argument, and optionally an acknowledgement.
	EventSubscribe = "subscribe"
	// EventUnsubscribe stops a subscription of this connection.
	EventUnsubscribe = "unsubscribe"
	// EventStatus carries a Message, the event the app listens to.
	EventStatus = "status"
	// EventSubscribeError carries a Message that refuses a subscription
	// without saying anything about the request (too many on this
	// connection, the relay shutting down).
	EventSubscribeError = "subscribe_error"
)

// Error codes the relay itself puts in a Message.
const (
	// CodeInvalidUUID: the subscribe argument is not a UUID (status 3).
	CodeInvalidUUID = "INVALID_UUID"
	// CodeUUIDNotFound: no request has this uuid (status 3).
	CodeUUIDNotFound = "UUID_NOT_FOUND"
	// CodeTooManySubscriptions: the connection has Config.MaxSubscriptions
	// live subscriptions (subscribe_error).
	CodeTooManySubscriptions = "TOO_MANY_SUBSCRIPTIONS"
	// CodeUnavailable: the relay cannot follow the request now: it is
	// shutting down or cannot subscribe to status events (subscribe_error).
	CodeUnavailable = "UNAVAILABLE"
)

// Message is the payload of a status event: a JSON object with the keys
// the app reads (status, error_code, reason) and the request's uuid, so
// that a client following several requests on one connection can tell them
// apart. error_code and reason are left out when empty, as the app expects
// them optional.
//
// The app (selfxyz/self, mobile-sdk-alpha socketIOListener.ts and
// statusHandlers.ts) accepts the payload as an object or as a JSON string;
// the relay sends an object. It treats 4 as success, 3 and 5 as failure
// (5 with error_code REGISTERED_COMMITMENT as "already registered") and
// any other status as progress.
type Message struct {
	UUID      string      `json:"uuid"`
	Status    status.Code `json:"status"`
	ErrorCode string      `json:"error_code,omitempty"`
	Reason    string      `json:"reason,omitempty"`
}

// messageOf is a row's Message.
func messageOf(p store.Proof) Message {
	return newMessage(p.ID, p.Status, p.Reason)
}

func newMessage(id string, s status.Code, reason string) Message {
	return Message{UUID: id, Status: s, Reason: reason, ErrorCode: ErrorCode(s, reason)}
}

// ErrorCode is the error_code sent with a failed status (3 or 5): the
// reason itself when it is a code, or the code it starts with ("CODE" or
// "CODE: text"), where a code is an upper-case identifier of 2 to 64
// characters (A-Z, 0-9, _, starting with a letter), as a contract's
// custom error is named (REGISTERED_COMMITMENT). The proofs table has no
// error_code column: a downstream verifier that writes status 5 with
// reason "REGISTERED_COMMITMENT" (or "REGISTERED_COMMITMENT: …") is
// relayed as the app expects. Empty for other statuses and free-text
// reasons ("cancelled").
func ErrorCode(s status.Code, reason string) string {
	if s != status.Failed && s != status.VerificationFailed {
		return ""
	}
	code, _, _ := strings.Cut(reason, ":")
	code = strings.TrimSpace(code)
	if len(code) < 2 || len(code) > 64 || code[0] < 'A' || code[0] > 'Z' {
		return ""
	}
	for _, c := range []byte(code) {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			return ""
		}
	}
	return code
}

// rank orders statuses as a row moves through them: pending, witness
// generated, proof generated, then one final status (failed, or the
// downstream verifier's verdict).
func rank(s status.Code) int { return min(max(int(s), -1), 3) }

// final reports whether a status ends a subscription: the app stops at 3,
// 4 and 5. Status 2 is not final: a downstream verifier may still write 4
// or 5.
func final(s status.Code) bool { return s >= status.Failed }

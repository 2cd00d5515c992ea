package attest

import (
	"errors"
	"fmt"
)

// Errors from the attesters.
var (
	// ErrInvalidConfig is wrapped by every constructor's config validation error.
	ErrInvalidConfig = errors.New("attest: invalid config")
	// ErrInputTooLarge: a Request field exceeds what the NSM (and the app) accept.
	ErrInputTooLarge = errors.New("attest: request field too large")
	// ErrClosed: Attest was called after Close.
	ErrClosed = errors.New("attest: attester is closed")
	// ErrNonceField: a Request field cannot be a Confidential Space nonce
	// (each is sent base64-encoded and must then be 10..74 bytes).
	ErrNonceField = errors.New("attest: request field does not fit a Confidential Space nonce")
	// ErrLauncher: the Confidential Space launcher did not answer with a token.
	ErrLauncher = errors.New("attest: Confidential Space launcher")
)

// Errors from [TokenVerifier.Verify]. Like the document errors, a failing
// token returns an error wrapping exactly one of them (ErrUntrustedRoot,
// ErrChain, ErrCertificate and ErrStale are shared with [Verifier]).
var (
	ErrTokenTooLarge  = errors.New("attest: token too large")
	ErrTokenMalformed = errors.New("attest: malformed token")
	// ErrTokenEncoding: the header does not decode with the plain base64
	// decoder the app uses (node-forge's decode64): its segment must be a
	// multiple of 4 characters of the standard alphabet.
	ErrTokenEncoding  = errors.New("attest: token header is not plain base64 as the app decodes it")
	ErrTokenAlgorithm = errors.New("attest: token algorithm is not RS256")
	ErrX5C            = errors.New("attest: token x5c is not three certificates (leaf, intermediate, root)")
	ErrTokenSignature = errors.New("attest: token signature does not verify")
	ErrTokenTime      = errors.New("attest: token is expired, not yet valid or issued in the future")
	ErrDebug          = errors.New("attest: token comes from a debug image (dbgstat is not disabled-since-boot)")
	ErrEATNonce       = errors.New("attest: token eat_nonce does not hold the two session keys")
	ErrClientKey      = errors.New("attest: token eat_nonce[0] is not the client's key")
	ErrServerKey      = errors.New("attest: token eat_nonce[1] is not a P-256 key")
	ErrImageDigest    = errors.New("attest: image digest not allowed")
)

// Errors from [Verifier.Verify]. Each check has its own sentinel; a failing
// document returns an error that wraps exactly one of them.
var (
	ErrDocumentTooLarge = errors.New("attest: document too large")
	ErrMalformed        = errors.New("attest: malformed document")
	ErrNotSign1         = errors.New("attest: not a COSE_Sign1 array of 4 elements")
	ErrAlgorithm        = errors.New("attest: COSE algorithm is not ES384")

	// Field-level failures; they arrive inside a *FieldError.
	ErrMissingField = errors.New("missing")
	ErrFieldType    = errors.New("wrong type")
	ErrFieldSize    = errors.New("bad size")

	ErrDigest        = errors.New("attest: digest is not SHA384")
	ErrPCRIndex      = errors.New("attest: PCR index out of range")
	ErrPCRLength     = errors.New("attest: PCR length is not 32, 48 or 64")
	ErrCertificate   = errors.New("attest: unusable certificate")
	ErrUntrustedRoot = errors.New("attest: cabundle root is not a pinned root")
	ErrChain         = errors.New("attest: certificate chain does not verify")
	ErrSignature     = errors.New("attest: COSE signature does not verify")
	ErrPCR0          = errors.New("attest: PCR0 not allowed")
	ErrUserData      = errors.New("attest: user_data does not match")
	ErrStale         = errors.New("attest: document too old")
	ErrFuture        = errors.New("attest: document timestamp in the future")
)

// FieldError reports a payload field that is missing, of the wrong CBOR type
// or of a size the app rejects. Err wraps ErrMissingField, ErrFieldType or
// ErrFieldSize.
type FieldError struct {
	Field string // payload key, with an index for array entries: "cabundle[2]"
	Err   error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("attest: payload field %s: %v", e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, sentinel error, format string, args ...any) *FieldError {
	if format == "" {
		return &FieldError{Field: field, Err: sentinel}
	}
	return &FieldError{Field: field, Err: fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)}
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}

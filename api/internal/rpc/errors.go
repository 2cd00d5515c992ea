package rpc

import (
	"encoding/json"
	"errors"

	"github.com/sourcegraph/jsonrpc2"

	"github.com/openpassport/prover-fleet/api/internal/admission"
	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/internal/intake"
	"github.com/openpassport/prover-fleet/api/internal/params"
	"github.com/openpassport/prover-fleet/api/internal/request"
	"github.com/openpassport/prover-fleet/api/protocol"
)

// rpcError builds a JSON-RPC error, with data (a string explaining the
// message further) when detail is not empty.
func rpcError(code int64, message, detail string) *jsonrpc2.Error {
	e := &jsonrpc2.Error{Code: code, Message: message}
	if detail != "" {
		b, _ := json.Marshal(detail)
		raw := json.RawMessage(b)
		e.Data = &raw
	}
	return e
}

// toRPCError maps an error from the service to the app's code and message
// (PROTOCOL.md's table, and protocol's constants for the cases it leaves
// open). internal reports whether the error is the server's fault, to be
// logged; its cause is never sent.
func toRPCError(err error) (e *jsonrpc2.Error, internal bool) {
	var (
		re *jsonrpc2.Error
		pe *params.Error
		qe *request.Error
		ie *intake.InternalError
		me *intake.ParamError
	)
	switch {
	case errors.As(err, &re):
		return re, false
	case errors.As(err, &pe):
		return rpcError(protocol.CodeInvalidParams, "Invalid params: "+pe.Error(), ""), false
	case errors.As(err, &me):
		return rpcError(protocol.CodeInvalidParams, "Invalid params: "+me.Error(), ""), false
	case errors.Is(err, intake.ErrBadUUID):
		return rpcError(protocol.CodeInvalidParams, `Invalid params: param "uuid": must be a UUID`, ""), false
	case errors.Is(err, handshake.ErrKeyLength):
		return rpcError(protocol.CodeInvalidRequest, protocol.MsgKeyLength, ""), false
	case errors.Is(err, handshake.ErrNotOnCurve):
		return rpcError(protocol.CodeInvalidParams, protocol.MsgNotOnCurve, err.Error()), false
	case errors.Is(err, intake.ErrExists):
		return rpcError(protocol.CodeInvalidRequest, protocol.MsgUUIDExists, ""), false
	case errors.Is(err, handshake.ErrBusy):
		return rpcError(protocol.CodeServerBusy, protocol.MsgServerBusy, ""), false
	case errors.Is(err, handshake.ErrSourceBusy):
		return rpcError(protocol.CodeServerBusy, protocol.MsgSourceBusy, ""), false
	case admission.ReasonOf(err) != "":
		return rpcError(protocol.CodeServerBusy, admission.Message(err), ""), false
	case errors.Is(err, intake.ErrNotSubmitter):
		return rpcError(protocol.CodeNotSubmitter, protocol.MsgNotSubmitter,
			"the cancel_token is not the one derived from this request's session"), false
	case errors.Is(err, handshake.ErrNonceSize):
		return rpcError(protocol.CodeInvalidRequest, protocol.MsgNonceLength, ""), false
	case errors.Is(err, handshake.ErrTagSize):
		return rpcError(protocol.CodeInvalidRequest, protocol.MsgTagLength, ""), false
	case errors.Is(err, intake.ErrNotFound):
		return rpcError(protocol.CodeInvalidRequest, protocol.MsgUUIDNotFound, ""), false
	case errors.Is(err, handshake.ErrDecrypt):
		return rpcError(protocol.CodeInvalidRequest, protocol.MsgDecrypt, ""), false
	case errors.As(err, &qe):
		return rpcError(protocol.CodeInvalidRequest, qe.Message, qe.Detail), false
	case errors.As(err, &ie):
		return rpcError(protocol.CodeInternalError, ie.Public, ""), true
	}
	return rpcError(protocol.CodeInternalError, "Internal error", ""), true
}

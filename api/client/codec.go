package client

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/sourcegraph/jsonrpc2"

	"github.com/openpassport/prover-fleet/api/internal/params"
	"github.com/openpassport/prover-fleet/api/protocol"
)

// The client's JSON work is dominated by byte strings written as arrays of
// integers: a hello's attestation document (a few thousand elements) and a
// submit's cipher text (as many as the request has bytes). encoding/json
// scans such a value again at every level it passes through: validating the
// message, skipping the raw result, validating the result, skipping the
// field for its UnmarshalJSON, and compacting a MarshalJSON's output. The
// codec below splits an answer's top level by hand and decodes each member
// it uses strictly, once: the id as an integer, method and error with
// encoding/json, a hello's attestation with protocol.ParseBytes, any other
// result with encoding/json. Members it ignores ("jsonrpc", unknown ones)
// are only skipped over, not validated. Submit params are written directly.

// inMessage is any message from the server, split once.
type inMessage struct {
	ID     json.RawMessage
	Method string
	Params json.RawMessage
	Result json.RawMessage
	Error  *jsonrpc2.Error
}

var errNotObject = errors.New("not a JSON object")

// parseMessage splits data's top level; the result and params stay raw
// (sub-slices of data) for decodeResult or the notification's handler,
// which decode them strictly.
func parseMessage(data []byte) (inMessage, error) {
	members, err := params.Object(data)
	if err != nil {
		return inMessage{}, errNotObject
	}
	m := inMessage{ID: members["id"], Params: members["params"], Result: members["result"]}
	if raw, ok := members["method"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &m.Method); err != nil {
			return inMessage{}, errors.New("method is not a string")
		}
	}
	if raw, ok := members["error"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &m.Error); err != nil {
			return inMessage{}, errors.New("error is not a JSON-RPC error object")
		}
	}
	return m, nil
}

// decodeResult decodes a result that parseMessage split off. A hello
// result's attestation goes straight to protocol.ParseBytes; anything else,
// or a hello result that is not the plain {"uuid", "attestation"} object,
// goes through encoding/json.
func decodeResult(raw json.RawMessage, result any) error {
	if h, ok := result.(*protocol.HelloResult); ok {
		if members, err := params.Object(raw); err == nil {
			id, att := members["uuid"], members["attestation"]
			if id != nil && att != nil && len(members) == 2 {
				var out protocol.HelloResult
				if err := json.Unmarshal(id, &out.UUID); err != nil {
					return err
				}
				b, err := protocol.ParseBytes(att)
				if err != nil {
					return err
				}
				out.Attestation = b
				*h = out
				return nil
			}
		}
	}
	return json.Unmarshal(raw, result)
}

// encodeRequest writes a JSON-RPC 2.0 request. Submit params are written
// directly; other params through encoding/json.
func encodeRequest(id uint64, method string, p any) ([]byte, error) {
	name, err := json.Marshal(method)
	if err != nil {
		return nil, err
	}
	var body []byte
	switch v := p.(type) {
	case nil:
	case protocol.SubmitParams:
		body, err = appendSubmit(make([]byte, 0, 128+4*(len(v.Nonce)+len(v.CipherText)+len(v.AuthTag))), v)
	default:
		body, err = json.Marshal(p)
	}
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 48+len(name)+len(body))
	out = append(out, `{"jsonrpc":"2.0","id":`...)
	out = strconv.AppendUint(out, id, 10)
	out = append(out, `,"method":`...)
	out = append(out, name...)
	if body != nil {
		out = append(out, `,"params":`...)
		out = append(out, body...)
	}
	return append(out, '}'), nil
}

// appendSubmit writes SubmitParams as encoding/json would.
func appendSubmit(dst []byte, p protocol.SubmitParams) ([]byte, error) {
	id, err := json.Marshal(p.UUID)
	if err != nil {
		return nil, err
	}
	dst = append(dst, `{"uuid":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"nonce":`...)
	dst = protocol.AppendBytes(dst, p.Nonce)
	dst = append(dst, `,"cipher_text":`...)
	dst = protocol.AppendBytes(dst, p.CipherText)
	dst = append(dst, `,"auth_tag":`...)
	dst = protocol.AppendBytes(dst, p.AuthTag)
	return append(dst, '}'), nil
}

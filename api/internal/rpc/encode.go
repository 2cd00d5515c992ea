package rpc

import (
	"encoding/json"

	"github.com/openpassport/prover-fleet/api/protocol"
)

// marshal encodes a message as encoding/json does. The answers to hello and
// submit, the hot path, are written directly: json.Marshal validates and
// compacts again whatever a MarshalJSON method returns, which for the
// attestation document (a few KB of byte values) cost about as much as
// writing it. The output is byte for byte json.Marshal's (a test checks);
// anything else goes through json.Marshal.
func marshal(v any) ([]byte, error) {
	if r, ok := v.(*response); ok && r.Error == nil && r.JSONRPC == "2.0" && plainRaw(r.ID) {
		switch res := r.Result.(type) {
		case protocol.HelloResult:
			if b, ok := appendHelloResponse(r.ID, res); ok {
				return b, nil
			}
		case string:
			if q, ok := quote(res); ok {
				return appendEnvelope(r.ID, q), nil
			}
		}
	}
	return json.Marshal(v)
}

// appendEnvelope wraps an encoded result: {"jsonrpc":"2.0","id":…,"result":…}.
func appendEnvelope(id json.RawMessage, result []byte) []byte {
	const (
		head = `{"jsonrpc":"2.0","id":`
		mid  = `,"result":`
	)
	out := make([]byte, 0, len(head)+len(id)+len(mid)+len(result)+1)
	out = append(out, head...)
	out = append(out, id...)
	out = append(out, mid...)
	out = append(out, result...)
	return append(out, '}')
}

// appendHelloResponse encodes the whole answer to a hello in one buffer:
// {"jsonrpc":"2.0","id":…,"result":{"uuid":…,"attestation":[…]}}.
func appendHelloResponse(rid json.RawMessage, h protocol.HelloResult) ([]byte, bool) {
	const head = `{"jsonrpc":"2.0","id":`
	id, ok := quote(h.UUID)
	if !ok {
		return nil, false
	}
	out := make([]byte, 0, len(head)+len(rid)+64+len(id)+4*len(h.Attestation))
	out = append(out, head...)
	out = append(out, rid...)
	out = append(out, `,"result":`...)
	out, _ = appendHelloTo(out, id, h)
	return append(out, '}'), true
}

// appendHelloTo appends {"uuid":…,"attestation":[…]} (id is the uuid
// quoted).
func appendHelloTo(out, id []byte, h protocol.HelloResult) ([]byte, bool) {
	out = append(out, `{"uuid":`...)
	out = append(out, id...)
	out = append(out, `,"attestation":[`...)
	for i, c := range h.Attestation {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendByte(out, c)
	}
	return append(out, "]}"...), true
}

// appendByte writes c in decimal, as strconv.AppendUint.
func appendByte(out []byte, c byte) []byte {
	switch {
	case c >= 100:
		return append(out, '0'+c/100, '0'+c/10%10, '0'+c%10)
	case c >= 10:
		return append(out, '0'+c/10, '0'+c%10)
	}
	return append(out, '0'+c)
}

// quote encodes s as a JSON string when that needs no escape at all
// (printable ASCII without '"', '\\', '<', '>' or '&', as a uuid), where
// encoding/json's output is s in quotes.
func quote(s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return nil, false
		}
	}
	out := make([]byte, 0, len(s)+2)
	out = append(out, '"')
	out = append(out, s...)
	return append(out, '"'), true
}

// plainRaw reports whether json.Marshal would copy a raw id unchanged: it
// compacts it and escapes '<', '>', '&' and U+2028/9 in strings. An id
// from the request is one value without surrounding space; an absent id is
// never answered.
func plainRaw(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	for _, c := range raw {
		if c <= ' ' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			return false
		}
	}
	return true
}

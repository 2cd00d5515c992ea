package rpc

import (
	"encoding/json"
	"slices"
	"strconv"
	"sync"

	"github.com/openpassport/prover-fleet/api/protocol"
)

// appendMessage appends a message to dst encoded as encoding/json encodes
// it. The answers to hello and submit, the hot path, are written directly:
// json.Marshal validates and compacts again whatever a MarshalJSON method
// returns, which for the attestation document (a few KB of byte values)
// cost about as much as writing it. The output is byte for byte
// json.Marshal's (a test checks); anything else goes through json.Marshal.
func appendMessage(dst []byte, v any) ([]byte, error) {
	if r, ok := v.(*response); ok && r.Error == nil && r.JSONRPC == "2.0" && plainRaw(r.ID) {
		switch res := r.Result.(type) {
		case protocol.HelloResult:
			if b, ok := appendHelloResponse(dst, r.ID, res); ok {
				return b, nil
			}
		case string:
			if q, ok := quote(res); ok {
				return appendEnvelope(dst, r.ID, q), nil
			}
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	if dst == nil {
		return b, nil
	}
	return append(dst, b...), nil
}

// Buffers of encoded messages, reused once a message is written (an answer
// to a hello is about 11 KB). Buffers that grew past 64 KiB are dropped.
var messageBuffers = sync.Pool{New: func() any { return new([]byte) }}

// encode encodes v into a pooled buffer; release returns it once its bytes
// have been written.
func encode(v any) (data []byte, release func(), err error) {
	bp := messageBuffers.Get().(*[]byte)
	data, err = appendMessage((*bp)[:0], v)
	if err != nil {
		messageBuffers.Put(bp)
		return nil, nil, err
	}
	return data, func() {
		if cap(data) <= 64<<10 {
			*bp = data[:0]
			messageBuffers.Put(bp)
		}
	}, nil
}

// appendEnvelope wraps an encoded result: {"jsonrpc":"2.0","id":…,"result":…}.
func appendEnvelope(out []byte, id json.RawMessage, result []byte) []byte {
	const (
		head = `{"jsonrpc":"2.0","id":`
		mid  = `,"result":`
	)
	out = slices.Grow(out, len(head)+len(id)+len(mid)+len(result)+1)
	out = append(out, head...)
	out = append(out, id...)
	out = append(out, mid...)
	out = append(out, result...)
	return append(out, '}')
}

// appendHelloResponse encodes the whole answer to a hello in one buffer:
// {"jsonrpc":"2.0","id":…,"result":{"uuid":…,"attestation":[…]}}.
func appendHelloResponse(out []byte, rid json.RawMessage, h protocol.HelloResult) ([]byte, bool) {
	const head = `{"jsonrpc":"2.0","id":`
	id, ok := quote(h.UUID)
	if !ok {
		return out, false
	}
	out = slices.Grow(out, len(head)+len(rid)+64+len(id)+4*len(h.Attestation))
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
	out = slices.Grow(out, 4*len(h.Attestation)+2)
	for i, c := range h.Attestation {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, decimal[c]...)
	}
	return append(out, "]}"...), true
}

// decimal holds each byte value in decimal, as strconv.AppendUint writes
// it: an attestation document is thousands of them.
var decimal = func() (t [256]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

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

package rpc

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/openpassport/prover-fleet/api/protocol"
)

// FuzzParseMessage checks parseMessage against encoding/json: invalid
// JSON is a parse error, and for a valid request the id, method and params
// are the ones encoding/json reads (a repeated member keeps its last
// value).
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"openpassport_hello","params":{"uuid":"u","user_pubkey":[4,1]}}`,
		`{"id":"a","method":"m","params":[1,2],"method":"n"}`, `{"id":null,"method":"\u006d"}`, `{"method":"m"}`,
		`[{"method":"m"}]`, `{"id":{},"method":"m"}`, `{"id":1,"method":null}`, `{"id":1,"method":7}`, `{`, `7`, ` {"method":"m"} `,
		"{\"method\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, perr := parseMessage(data)
		if !json.Valid(data) {
			if perr == nil || perr.Code != protocol.CodeParseError {
				t.Fatalf("invalid JSON %q: error %v, want a parse error", data, perr)
			}
			return
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
			if perr == nil {
				t.Fatalf("%q is not an object, yet parsed", data)
			}
			return
		}
		if perr != nil {
			return // a bad id or method: its message is tested elsewhere
		}
		var method string
		if err := json.Unmarshal(obj["method"], &method); err != nil || method != m.Method {
			t.Fatalf("%q: method %q, encoding/json reads %q (%v)", data, m.Method, method, err)
		}
		for name, got := range map[string]json.RawMessage{"id": m.ID, "params": m.Params} {
			if want := obj[name]; !bytes.Equal(compact(t, want), compact(t, got)) {
				t.Fatalf("%q: %s %q, encoding/json reads %q", data, name, got, want)
			}
		}
	})
}

func compact(t *testing.T, raw json.RawMessage) []byte {
	if raw == nil {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("compact %q: %v", raw, err)
	}
	return b.Bytes()
}

package rpc

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/openpassport/prover-fleet/api/protocol"
)

// marshal must write exactly what json.Marshal writes, fast path or not.
func TestMarshalMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	doc := make([]byte, 300)
	for i := range doc {
		doc[i] = byte(i * 7)
	}
	results := []struct {
		name string
		v    any
	}{
		{"hello", protocol.HelloResult{UUID: "0f8fad5b-d9cb-469f-a165-70867728950e", Attestation: doc}},
		{"hello, empty document", protocol.HelloResult{UUID: "0f8fad5b-d9cb-469f-a165-70867728950e", Attestation: protocol.Bytes{}}},
		{"hello, nil document", protocol.HelloResult{UUID: "x"}},
		{"hello, uuid to escape", protocol.HelloResult{UUID: "a<b>&\"\\\u2028é", Attestation: doc[:3]}},
		{"uuid", "0f8fad5b-d9cb-469f-a165-70867728950e"},
		{"empty string", ""},
		{"string to escape", "<tag> & \"quote\" \\ \n é \u2029"},
		{"bytes", protocol.Bytes(doc[:5])},
		{"health", protocol.HealthOK},
		{"nil", nil},
	}
	ids := []string{`1`, `0`, `-12.5e3`, `"abc"`, `""`, `null`, `"a<b"`, `"a&b"`, `"\u003c"`, `"é"`, "\"\u2028\"", `"a\"b"`}
	for _, r := range results {
		for _, id := range ids {
			resp := &response{JSONRPC: "2.0", ID: json.RawMessage(id), Result: r.v}
			want, err := json.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendMessage(nil, resp)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s, id %s:\n got %s\nwant %s", r.name, id, got, want)
			}
		}
	}
	// Errors and other messages go through json.Marshal.
	e := errorResponse(json.RawMessage(`7`), rpcError(protocol.CodeInvalidRequest, "UUID not found", ""))
	want, _ := json.Marshal(e)
	if got, _ := appendMessage(nil, e); !bytes.Equal(got, want) {
		t.Errorf("error response: got %s, want %s", got, want)
	}
}

func BenchmarkMarshalHello(b *testing.B) {
	doc := make([]byte, 4500)
	for i := range doc {
		doc[i] = byte(i * 7)
	}
	resp := &response{JSONRPC: "2.0", ID: json.RawMessage(`1`),
		Result: protocol.HelloResult{UUID: "0f8fad5b-d9cb-469f-a165-70867728950e", Attestation: doc}}
	b.Run("marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = appendMessage(nil, resp)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(resp)
		}
	})
}

func TestDecimal(t *testing.T) {
	t.Parallel()
	for c := range 256 {
		if got, want := decimal[c], strconv.Itoa(c); got != want {
			t.Fatalf("decimal[%d] = %q", c, got)
		}
	}
}

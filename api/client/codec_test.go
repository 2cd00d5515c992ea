package client

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/openpassport/prover-fleet/api/protocol"
)

// encodeRequest must write what encoding/json writes for the same request.
func TestEncodeRequestMatchesEncodingJSON(t *testing.T) {
	type request struct {
		JSONRPC string `json:"jsonrpc"`
		ID      uint64 `json:"id"`
		Method  string `json:"method"`
		Params  any    `json:"params,omitempty"`
	}
	cipher := make([]byte, 3000)
	for i := range cipher {
		cipher[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		name   string
		method string
		params any
	}{
		{"submit", "openpassport_submit_request", protocol.SubmitParams{UUID: "a1b2", Nonce: []byte{0, 1, 255}, CipherText: cipher, AuthTag: make([]byte, 16)}},
		{"submit with empty bytes", "openpassport_submit_request", protocol.SubmitParams{UUID: `quote" and \ and <tag> and é`}},
		{"other params", "openpassport_hello", map[string]any{"uuid": "x", "key": protocol.Bytes{4, 5}}},
		{"no params", "openpassport_health", nil},
		{"odd method name", "m\"\u2028", protocol.UUIDParams{UUID: "u"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := encodeRequest(42, tc.method, tc.params)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(request{JSONRPC: "2.0", ID: 42, Method: tc.method, Params: tc.params})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encodeRequest =\n%.300s\nencoding/json =\n%.300s", got, want)
			}
		})
	}
	if _, err := encodeRequest(1, "m", func() {}); err == nil {
		t.Error("params that cannot be encoded were accepted")
	}
}

func TestParseMessage(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		wantErr    bool
		check      func(t *testing.T, m inMessage)
	}{
		{name: "answer", data: `{"jsonrpc":"2.0","id":7,"result":{"uuid":"u"}}`, check: func(t *testing.T, m inMessage) {
			if string(m.ID) != "7" || string(m.Result) != `{"uuid":"u"}` || m.Error != nil || m.Method != "" {
				t.Errorf("got %+v", m)
			}
		}},
		{name: "error", data: ` {"jsonrpc":"2.0","id":"7","error":{"code":-32602,"message":"bad"}} `, check: func(t *testing.T, m inMessage) {
			if m.Error == nil || m.Error.Code != -32602 || m.Error.Message != "bad" {
				t.Errorf("got %+v", m)
			}
		}},
		{name: "notification", data: `{"jsonrpc":"2.0","method":"openpassport_status","params":{"status":1}}`, check: func(t *testing.T, m inMessage) {
			if m.Method != "openpassport_status" || string(m.Params) != `{"status":1}` || !isNull(m.ID) {
				t.Errorf("got %+v", m)
			}
		}},
		{name: "null error and result", data: `{"id":1,"result":null,"error":null}`, check: func(t *testing.T, m inMessage) {
			if m.Error != nil || !isNull(m.Result) {
				t.Errorf("got %+v", m)
			}
		}},
		{name: "not JSON", data: `{"id":1,"result":[1,2}`, wantErr: true},
		{name: "not an object", data: `[1,2]`, wantErr: true},
		{name: "method not a string", data: `{"method":5}`, wantErr: true},
		{name: "error not an object", data: `{"id":1,"error":"boom"}`, wantErr: true},
		{name: "empty", data: ``, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseMessage([]byte(tc.data))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

// decodeResult must give what encoding/json gives, on the fast path and
// off it.
func TestDecodeResultMatchesEncodingJSON(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		wantErr   bool
	}{
		{name: "hello", raw: `{"uuid":"3f1c","attestation":[0,1,2,255,128]}`},
		{name: "hello, spaced and reordered", raw: ` { "attestation" : [ 9 , 8 ] , "uuid" : "x\u00e9" } `},
		{name: "hello with an extra member", raw: `{"uuid":"u","attestation":[1],"extra":true}`},
		{name: "hello with a differently cased key", raw: `{"UUID":"u","attestation":[1]}`},
		{name: "attestation out of range", raw: `{"uuid":"u","attestation":[256]}`, wantErr: true},
		{name: "attestation not an array", raw: `{"uuid":"u","attestation":"AQID"}`, wantErr: true},
		{name: "uuid not a string", raw: `{"uuid":5,"attestation":[1]}`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got, want protocol.HelloResult
			err := decodeResult(json.RawMessage(tc.raw), &got)
			werr := json.Unmarshal([]byte(tc.raw), &want)
			if (err != nil) != tc.wantErr || (werr != nil) != tc.wantErr {
				t.Fatalf("decodeResult err = %v, encoding/json err = %v, want error %v", err, werr, tc.wantErr)
			}
			if !tc.wantErr && (got.UUID != want.UUID || !bytes.Equal(got.Attestation, want.Attestation)) {
				t.Errorf("decodeResult = %+v, encoding/json = %+v", got, want)
			}
		})
	}
	var s string
	if err := decodeResult(json.RawMessage(`"plain"`), &s); err != nil || s != "plain" {
		t.Errorf("a string result: %q, %v", s, err)
	}
}

// BenchmarkHelloAnswer compares reading a hello answer (an attestation of
// 4,500 bytes) the way encoding/json alone reads it with parseMessage and
// decodeResult.
func BenchmarkHelloAnswer(b *testing.B) {
	att := make([]byte, 4500)
	for i := range att {
		att[i] = byte(i * 31)
	}
	result, _ := json.Marshal(protocol.HelloResult{UUID: "3f1c0000-0000-4000-8000-000000000000", Attestation: att})
	msg := []byte(`{"jsonrpc":"2.0","id":12,"result":` + string(result) + `}`)
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var m struct {
				ID     json.RawMessage `json:"id"`
				Result json.RawMessage `json:"result"`
			}
			var h protocol.HelloResult
			if json.Unmarshal(msg, &m) != nil || json.Unmarshal(m.Result, &h) != nil {
				b.Fatal("decode")
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		for b.Loop() {
			m, err := parseMessage(msg)
			var h protocol.HelloResult
			if err != nil || decodeResult(m.Result, &h) != nil {
				b.Fatal("decode")
			}
		}
	})
}

// parseMessage and decodeResult read whatever the server sends, without a
// validation pass first: they must never panic, and a hello result they
// accept must be what encoding/json accepts.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":7,"result":{"uuid":"u","attestation":[1,2,3]}}`,
		`{"id":1,"error":{"code":1,"message":"m","data":{"x":[1]}}}`,
		`{"method":"openpassport_status","params":{"uuid":"u"}}`,
		`{"id":1,"result":{"uuid":"u\"","attestation":[}}`,
		`{"a":"\\","b":[[[{"c":1}]]]}`, `{`, `{"x"`, `{"x":`, `{"x":1,}`, `[]`, `""`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseMessage(data)
		if err != nil {
			return
		}
		var got, want protocol.HelloResult
		if decodeResult(m.Result, &got) == nil {
			if err := json.Unmarshal(m.Result, &want); err != nil {
				t.Fatalf("decodeResult accepted %q, encoding/json did not: %v", m.Result, err)
			}
			if got.UUID != want.UUID || !bytes.Equal(got.Attestation, want.Attestation) {
				t.Fatalf("decodeResult = %+v, encoding/json = %+v", got, want)
			}
		}
	})
}

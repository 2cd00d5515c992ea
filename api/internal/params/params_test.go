package params

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/openpassport/prover-fleet/api/protocol"
)

type submit struct {
	UUID   string
	Nonce  protocol.Bytes
	Cipher protocol.Bytes
	Tag    protocol.Bytes
}

func decodeSubmit(raw string) (submit, error) {
	var p submit
	err := Decode(json.RawMessage(raw),
		Field{Name: "uuid", Dst: &p.UUID},
		Field{Name: "nonce", Dst: &p.Nonce},
		Field{Name: "cipher_text", Dst: &p.Cipher},
		Field{Name: "auth_tag", Dst: &p.Tag, Optional: true})
	return p, err
}

func TestDecode(t *testing.T) {
	t.Parallel()
	want := submit{UUID: "u", Nonce: protocol.Bytes{1, 2}, Cipher: protocol.Bytes{3}, Tag: protocol.Bytes{4}}
	tests := []struct {
		name    string
		raw     string
		want    submit
		wantErr string // substring of the *Error text
	}{
		{name: "by name", raw: `{"uuid":"u","nonce":[1,2],"cipher_text":[3],"auth_tag":[4]}`, want: want},
		{name: "by name, unknown ignored", raw: `{"extra":{"x":1},"uuid":"u","nonce":[1,2],"cipher_text":[3],"auth_tag":[4]}`, want: want},
		{name: "by position", raw: `["u",[1,2],[3],[4]]`, want: want},
		{name: "repeated name keeps the last", raw: `{"uuid":"x","nonce":[1,2],"cipher_text":[3],"auth_tag":[4],"uuid":"u"}`, want: want},
		{name: "escaped name", raw: `{"\u0075uid":"u","nonce":[1,2],"cipher_text":[3],"auth_tag":[4]}`, want: want},
		{name: "escaped value", raw: `{"uuid":"\u0075","nonce":[1,2],"cipher_text":[3],"auth_tag":[4]}`, want: want},
		{name: "optional missing", raw: `{"uuid":"u","nonce":[1,2],"cipher_text":[3]}`, want: submit{UUID: "u", Nonce: protocol.Bytes{1, 2}, Cipher: protocol.Bytes{3}}},
		{name: "optional null", raw: `{"uuid":"u","nonce":[1,2],"cipher_text":[3],"auth_tag":null}`, want: submit{UUID: "u", Nonce: protocol.Bytes{1, 2}, Cipher: protocol.Bytes{3}}},
		{name: "positional short", raw: `["u",[1,2],[3]]`, want: submit{UUID: "u", Nonce: protocol.Bytes{1, 2}, Cipher: protocol.Bytes{3}}},
		{name: "required missing", raw: `{"uuid":"u","nonce":[1,2]}`, wantErr: `param "cipher_text": is required`},
		{name: "required null", raw: `{"uuid":null,"nonce":[1,2],"cipher_text":[3]}`, wantErr: `param "uuid": must not be null`},
		{name: "no params", raw: ``, wantErr: `param "uuid": is required`},
		{name: "null params", raw: `null`, wantErr: `param "uuid": is required`},
		{name: "too many positional", raw: `["u",[1],[2],[3],[4]]`, wantErr: "too many positional params: got 5, want at most 4"},
		{name: "params a string", raw: `"u"`, wantErr: "params must be an object or an array"},
		{name: "params a number", raw: `7`, wantErr: "params must be an object or an array"},
		{name: "uuid a number", raw: `{"uuid":5,"nonce":[1],"cipher_text":[3]}`, wantErr: `param "uuid": want a string, got a JSON number`},
		{name: "nonce base64", raw: `{"uuid":"u","nonce":"AQI=","cipher_text":[3]}`, wantErr: `param "nonce": want an array of integers 0..255, got a string`},
		{name: "nonce hex", raw: `{"uuid":"u","nonce":"0102","cipher_text":[3]}`, wantErr: `param "nonce": want an array of integers 0..255, got a string`},
		{name: "cipher out of range", raw: `{"uuid":"u","nonce":[1],"cipher_text":[3,300]}`, wantErr: `param "cipher_text": element 1 is out of range`},
		{name: "cipher negative", raw: `{"uuid":"u","nonce":[1],"cipher_text":[-3]}`, wantErr: `param "cipher_text": element 0 is a negative number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeSubmit(tt.raw)
			if tt.wantErr != "" {
				var pe *Error
				if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want a *params.Error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.UUID != tt.want.UUID || !bytes.Equal(got.Nonce, tt.want.Nonce) ||
				!bytes.Equal(got.Cipher, tt.want.Cipher) || !bytes.Equal(got.Tag, tt.want.Tag) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzDecode feeds arbitrary params to a submit-shaped decode: it must never
// panic, every failure must be a *Error, and for valid JSON (Decode's
// precondition) a success must agree with decoding the same object by name.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"uuid":"550e8400-e29b-41d4-a716-446655440000","nonce":[1,2,3,4,5,6,7,8,9,10,11,12],"cipher_text":[1],"auth_tag":[0]}`,
		`["u",[1],[2],[3]]`, `[]`, `{}`, `null`, `"x"`, `{"nonce":"AAA="}`, `[1,2,3,4,5]`, `{"uuid":{"a":[1]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := decodeSubmit(string(raw))
		if !json.Valid(raw) && len(bytes.TrimSpace(raw)) > 0 {
			return // garbage in: only "no panic" is promised
		}
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *params.Error", err, err)
			}
			return
		}
		// Re-encode by name and decode again: the same values come back.
		obj := map[string]any{"uuid": p.UUID, "nonce": p.Nonce, "cipher_text": p.Cipher}
		if p.Tag != nil {
			obj["auth_tag"] = p.Tag
		}
		data, _ := json.Marshal(obj)
		q, err := decodeSubmit(string(data))
		if err != nil || q.UUID != p.UUID || !bytes.Equal(q.Nonce, p.Nonce) || !bytes.Equal(q.Cipher, p.Cipher) || !bytes.Equal(q.Tag, p.Tag) {
			t.Fatalf("re-decoding %s gave %+v, %v; want %+v", data, q, err, p)
		}
	})
}

// FuzzString checks String against encoding/json on valid JSON.
func FuzzString(f *testing.F) {
	for _, s := range []string{`"u"`, `"\u00e9\n"`, "\"\xff\"", `""`, `1`, `null`, `["a"]`, `"a\"b"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) || IsNull(data) { // null: Decode checks it first
			return
		}
		got, ok := String(bytes.TrimSpace(data))
		var want string
		werr := json.Unmarshal(data, &want)
		if ok != (werr == nil) || got != want {
			t.Fatalf("String(%q) = %q, %v; encoding/json: %q, %v", data, got, ok, want, werr)
		}
	})
}

// FuzzSplit checks the splitters against encoding/json on valid JSON, and
// that they never panic on anything else.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":1,"b":[1,{"c":"]"}],"a":"x\\\""}`, `[1,"a",null,true,{"x":[]}]`,
		` { "k" : -1.5e3 } `, `{"\u0075uid":"v"}`, `{"a":"}"}`, `[[[]]]`, `{"a":{"b":{"c":[1,2]}}}`, `"s"`, `1`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		obj, oerr := Object(data)
		arr, aerr := Array(data)
		if !json.Valid(data) {
			return
		}
		var wantObj map[string]json.RawMessage
		if json.Unmarshal(data, &wantObj) == nil && wantObj != nil {
			if oerr != nil || len(obj) != len(wantObj) {
				t.Fatalf("Object(%q) = %v, %v; want %v", data, obj, oerr, wantObj)
			}
			for k, v := range wantObj {
				if !bytes.Equal(obj[k], v) {
					t.Fatalf("Object(%q)[%q] = %q, want %q", data, k, obj[k], v)
				}
			}
		} else if oerr == nil {
			t.Fatalf("Object(%q) accepted a non-object", data)
		}
		var wantArr []json.RawMessage
		if json.Unmarshal(data, &wantArr) == nil && wantArr != nil {
			if aerr != nil || len(arr) != len(wantArr) {
				t.Fatalf("Array(%q) = %v, %v; want %v", data, arr, aerr, wantArr)
			}
			for i := range wantArr {
				if !bytes.Equal(arr[i], wantArr[i]) {
					t.Fatalf("Array(%q)[%d] = %q, want %q", data, i, arr[i], wantArr[i])
				}
			}
		} else if aerr == nil {
			t.Fatalf("Array(%q) accepted a non-array", data)
		}
	})
}

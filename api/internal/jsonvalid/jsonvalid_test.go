package jsonvalid

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var cases = []string{
	``, ` `, `{}`, `[]`, `[ ]`, `{ }`, `0`, `-0`, `01`, `-`, `1.`, `.5`, `1.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `-1.5e10`,
	`"a"`, `"`, `"\"`, `"\\"`, `"\u00e9"`, `"\u00g9"`, `"\u00e"`, `"\x"`, `"\/"`, "\"\x01\"", "\"\x7f\xff\"", `"é"`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `nulll`,
	`[1,2,3]`, `[1,]`, `[,1]`, `[1 2]`, `{"a":1}`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{a:1}`, `{"a":1 "b":2}`, `{"a":[{"b":null}]}`,
	`{"a":1]`, `[1}`, `[[[]]]`, `[[[]]`, `[]]`, `{}{}`, `1 2`, " \t\r\n[1]\n ", "\v1", `[1,{"a":"b","c":[true,false,null]}]`,
	`{"jsonrpc":"2.0","id":1,"method":"openpassport_hello","params":{"user_pubkey":[4,1,2],"uuid":"x"}}`,
	`[-]`, `[-a]`, `[1.e5]`, `[0x10]`, `[+1]`, `[1e5.5]`, `"\u12345"`, `{"":""}`, `{"a":{"b":{"c":{}}}}`,
}

func TestValidAgreesWithEncodingJSON(t *testing.T) {
	for _, c := range cases {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%q) = %v, json.Valid says %v", c, got, want)
		}
	}
}

func TestNestingLimit(t *testing.T) {
	for _, depth := range []int{63, 64, 65, 9999, 10000, 10001, 100000} {
		for _, open := range []string{"[", `{"a":`} {
			close := "]"
			if open != "[" {
				close = "}"
			}
			doc := []byte(strings.Repeat(open, depth) + "1" + strings.Repeat(close, depth))
			if got, want := Valid(doc), json.Valid(doc); got != want {
				t.Errorf("depth %d of %q: Valid = %v, json.Valid = %v", depth, open, got, want)
			}
		}
	}
}

func TestVectors(t *testing.T) {
	files, _ := filepath.Glob("../../../testdata/vectors/*.json")
	if len(files) == 0 {
		t.Fatal("no test vectors found")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !Valid(b) || !json.Valid(b) {
			t.Errorf("%s: Valid = %v, json.Valid = %v", f, Valid(b), json.Valid(b))
		}
		if Valid(b[:len(b)/2]) {
			t.Errorf("%s: half of it is valid", f)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, c := range cases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	doc := request(b)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if !Valid(doc) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkEncodingJSONValid(b *testing.B) {
	doc := request(b)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if !json.Valid(doc) {
			b.Fatal("invalid")
		}
	}
}

// request is a submit-sized message: a cipher text of 4 KiB as the app
// writes it, an array of byte values.
func request(b *testing.B) []byte {
	var sb strings.Builder
	sb.WriteString(`{"jsonrpc":"2.0","id":1,"method":"openpassport_submit_request","params":{"uuid":"b7d2c1a4-4e1f-4d6b-9a51-0c3f2e8d7a90","nonce":[1,2,3,4,5,6,7,8,9,10,11,12],"cipher_text":[`)
	for i := range 4096 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString([]string{"7", "42", "255", "0", "133"}[i%5])
	}
	sb.WriteString(`],"auth_tag":[9,8,7,6,5,4,3,2,1,0,1,2,3,4,5,6]}}`)
	return []byte(sb.String())
}

package protocol

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []byte
		wantErr string
	}{
		{name: "empty", in: `[]`, want: []byte{}},
		{name: "spaces", in: " [ 0 , 1,255 ,\n\t7 ] ", want: []byte{0, 1, 255, 7}},
		{name: "one", in: `[42]`, want: []byte{42}},
		{name: "out of range", in: `[1,256]`, wantErr: "element 1 is out of range"},
		{name: "big", in: `[99999999999999999999]`, wantErr: "element 0 is out of range"},
		{name: "negative", in: `[-1]`, wantErr: "element 0 is a negative number"},
		{name: "fraction", in: `[1.5]`, wantErr: "element 0 is not an integer"},
		{name: "exponent", in: `[1e2]`, wantErr: "element 0 is not an integer"},
		{name: "leading zero", in: `[01]`, wantErr: "element 0 has a leading zero"},
		{name: "string element", in: `["1"]`, wantErr: "element 0 is a string"},
		{name: "null element", in: `[null]`, wantErr: "element 0 is null"},
		{name: "base64", in: `"AAEC"`, wantErr: "got a string"},
		{name: "object", in: `{"0":1}`, wantErr: "got an object"},
		{name: "number", in: `5`, wantErr: "got a number"},
		{name: "nothing", in: ``, wantErr: "got nothing"},
		{name: "unterminated", in: `[1,2`, wantErr: "unterminated array"},
		{name: "trailing comma", in: `[1,]`, wantErr: "element 1 is not JSON"},
		{name: "missing comma", in: `[1 2]`, wantErr: "after element 0"},
		{name: "trailing data", in: `[1] x`, wantErr: "trailing data"},
		{name: "nested", in: `[[1]]`, wantErr: "element 0 is an array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBytes([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseBytes(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("ParseBytes(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestBytesJSONRoundTrip(t *testing.T) {
	t.Parallel()
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	data, err := json.Marshal(struct{ B Bytes }{all})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), `{"B":[0,1,2,`) {
		t.Fatalf("Bytes must marshal as an array of integers, got %.40s", data)
	}
	var back struct{ B Bytes }
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.B, all) {
		t.Fatal("round trip changed the bytes")
	}
	if got, _ := json.Marshal(Bytes(nil)); string(got) != "[]" {
		t.Fatalf("nil Bytes marshals as %s, want []", got)
	}
}

// FuzzParseBytes checks that ParseBytes never panics, accepts exactly the
// arrays of integers 0..255 that encoding/json reads as such, and that its
// output marshals back to an equivalent array.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{`[]`, `[0,1,255]`, `[256]`, `"AAE="`, `[1.0]`, `[-0]`, `[ 1 , 2 ]`, `[01]`, `[1e1]`, `null`, `[`, `[1,`, "[\x00]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseBytes(data)
		var ints []int
		jerr := json.Unmarshal(data, &ints)
		valid := jerr == nil && ints != nil
		for _, v := range ints {
			if v < 0 || v > 255 {
				valid = false
			}
		}
		if valid && bytes.Contains(data, []byte("-0")) {
			valid = false // "-0" is an integer to encoding/json, a sign to us
		}
		if err == nil {
			if !json.Valid(data) {
				t.Fatalf("accepted invalid JSON %q", data)
			}
			out, _ := Bytes(got).MarshalJSON()
			again, err := ParseBytes(out)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("round trip of %q failed: %v", data, err)
			}
			if !valid {
				t.Fatalf("accepted %q, which is not an array of integers 0..255", data)
			}
			if len(ints) != len(got) {
				t.Fatalf("%q: got %d bytes, encoding/json sees %d integers", data, len(got), len(ints))
			}
		} else if valid && !bytes.ContainsAny(data, ".eE") {
			t.Fatalf("refused %q (%v), an array of integers 0..255", data, err)
		}
	})
}

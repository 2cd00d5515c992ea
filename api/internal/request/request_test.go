package request

import (
	"errors"
	"strings"
	"testing"

	"github.com/openpassport/prover-fleet/api/internal/vectors"
	"github.com/openpassport/prover-fleet/shared/family"
)

func TestParseVectors(t *testing.T) {
	t.Parallel()
	vs, err := vectors.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		r, err := Parse([]byte(v.Plaintext))
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if string(r.Type.Family())+"/"+r.Circuit != v.Name {
			t.Errorf("%s: parsed as %s/%s", v.Name, r.Type.Family(), r.Circuit)
		}
		if r.Version != 1 || r.UserDefinedData != "" || r.SelfDefinedData != "" {
			t.Errorf("%s: defaults not applied: %+v", v.Name, r)
		}
		if !isJSONObject(r.Inputs) {
			t.Errorf("%s: inputs %q are not an object", v.Name, r.Inputs)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	t.Run("full", func(t *testing.T) {
		r, err := Parse([]byte(`{"type":"disclose_id","onchain":true,"endpointType":"https","endpoint":"https://x",
			"userDefinedData":"ud","selfDefinedData":"sd","version":3,"future":[1,{"a":2}],
			"circuit":{"name":"vc_and_disclose_id","inputs":"{\"a\":\"1\"}","extra":true}}`))
		if err != nil {
			t.Fatal(err)
		}
		want := Request{Type: "disclose_id", Onchain: true, EndpointType: "https", Endpoint: "https://x",
			UserDefinedData: "ud", SelfDefinedData: "sd", Version: 3, Circuit: "vc_and_disclose_id", Inputs: []byte(`{"a":"1"}`)}
		if r.Type != want.Type || r.Onchain != want.Onchain || r.EndpointType != want.EndpointType ||
			r.Endpoint != want.Endpoint || r.UserDefinedData != want.UserDefinedData ||
			r.SelfDefinedData != want.SelfDefinedData || r.Version != want.Version ||
			r.Circuit != want.Circuit || string(r.Inputs) != string(want.Inputs) {
			t.Fatalf("got %+v, want %+v", r, want)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		r, err := Parse([]byte(`{"type":"register","circuit":{"name":"c","inputs":"{}"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if r.Onchain || r.EndpointType != "" || r.Endpoint != "" || r.Version != 1 || r.UserDefinedData != "" || r.SelfDefinedData != "" {
			t.Fatalf("defaults: %+v", r)
		}
	})
	bad := []struct{ name, in, detail string }{
		{"not json", `{"type":`, "invalid JSON"},
		{"empty", ``, "invalid JSON"},
		{"array", `[1]`, "must be a JSON object"},
		{"string", `"register"`, "must be a JSON object"},
		{"trailing", `{"type":"register","circuit":{"name":"c","inputs":"{}"}} {}`, "trailing data"},
		{"not utf-8", "{\"type\":\"register\xff\"}", "not UTF-8"},
		{"no type", `{"circuit":{"name":"c","inputs":"{}"}}`, `missing "type"`},
		{"unknown type", `{"type":"passport","circuit":{"name":"c","inputs":"{}"}}`, `unknown "type"`},
		{"type number", `{"type":1,"circuit":{"name":"c","inputs":"{}"}}`, `"type" has the wrong type`},
		{"onchain string", `{"type":"register","onchain":"yes","circuit":{"name":"c","inputs":"{}"}}`, `"onchain" has the wrong type`},
		{"version fraction", `{"type":"register","version":1.5,"circuit":{"name":"c","inputs":"{}"}}`, `"version" has the wrong type`},
		{"version huge", `{"type":"register","version":99999999999,"circuit":{"name":"c","inputs":"{}"}}`, `"version" has the wrong type`},
		{"no circuit", `{"type":"register"}`, `missing "circuit.name"`},
		{"no inputs", `{"type":"register","circuit":{"name":"c"}}`, `missing "circuit.inputs"`},
		{"inputs object", `{"type":"register","circuit":{"name":"c","inputs":{"a":"1"}}}`, `"circuit.inputs" has the wrong type`},
		{"inputs not json", `{"type":"register","circuit":{"name":"c","inputs":"{a"}}`, "must be a JSON string holding a JSON object"},
		{"inputs array", `{"type":"register","circuit":{"name":"c","inputs":"[1]"}}`, "must be a JSON string holding a JSON object"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrParse) {
				t.Fatalf("error = %v, want a parse *Error", err)
			}
			if e.Message != "Failed to parse proof request" || !strings.Contains(e.Detail, tt.detail) {
				t.Fatalf("error = %q / %q, want the app's message and a detail with %q", e.Message, e.Detail, tt.detail)
			}
			if strings.Contains(e.Detail, `"a":"1"`) {
				t.Fatal("the detail quotes the inputs")
			}
		})
	}
}

type known map[string]bool

func (k known) Known(n string) bool { return k[n] }

func TestValidate(t *testing.T) {
	t.Parallel()
	circuits := known{"register_c": true, "dsc_c": true, "vc_and_disclose": true}
	all, err := NewValidator(Config{Families: family.All(), Circuits: circuits, MaxDataBytes: 8, MaxInputsBytes: 16})
	if err != nil {
		t.Fatal(err)
	}
	regOnly, _ := NewValidator(Config{Families: []family.Family{family.Register}, Circuits: circuits})
	two, _ := NewValidator(Config{Families: []family.Family{family.DSC, family.Disclose}, Circuits: circuits})
	ok := func(r Request) Request {
		if r.Circuit == "" {
			r.Circuit = "register_c"
		}
		if r.Inputs == nil {
			r.Inputs = []byte(`{}`)
		}
		return r
	}
	tests := []struct {
		name    string
		v       *Validator
		r       Request
		kind    error
		message string
	}{
		{"register, no endpoint", all, ok(Request{Type: "register"}), nil, ""},
		{"register with endpointType", all, ok(Request{Type: "register", EndpointType: "celo"}), nil, ""},
		{"dsc_id", all, ok(Request{Type: "dsc_id", Circuit: "dsc_c"}), nil, ""},
		{"disclose full", all, ok(Request{Type: "disclose", Circuit: "vc_and_disclose", EndpointType: "https", Endpoint: "https://e"}), nil, ""},
		{"family one", regOnly, ok(Request{Type: "dsc", Circuit: "dsc_c"}), ErrFamily, "This endpoint only allows register inputs"},
		{"family two", two, ok(Request{Type: "register_kyc"}), ErrFamily, "This endpoint only allows dsc or disclose inputs"},
		{"family aadhaar", regOnly, ok(Request{Type: "disclose_aadhaar", Circuit: "vc_and_disclose", EndpointType: "https", Endpoint: "x"}), ErrFamily, "This endpoint only allows register inputs"},
		{"unknown circuit", all, ok(Request{Type: "register", Circuit: "nope"}), ErrCircuit, "Could not find the given circuit name: nope"},
		{"empty circuit", all, Request{Type: "register", Inputs: []byte(`{}`)}, ErrCircuit, "Circuit name is empty"},
		{"long circuit", all, ok(Request{Type: "register", Circuit: strings.Repeat("a", 256)}), ErrTooLarge, "Circuit name is longer than 255 bytes"},
		{"big inputs", all, ok(Request{Type: "register", Inputs: []byte(`{"a":"12345678901234"}`)}), ErrTooLarge, "Circuit inputs are larger than 16 bytes"},
		{"big user data", all, ok(Request{Type: "register", UserDefinedData: "123456789"}), ErrTooLarge, "userDefinedData is larger than 8 bytes"},
		{"big self data", all, ok(Request{Type: "register", SelfDefinedData: "123456789"}), ErrTooLarge, "selfDefinedData is larger than 8 bytes"},
		{"long endpoint", all, ok(Request{Type: "disclose", Circuit: "vc_and_disclose", EndpointType: "https", Endpoint: strings.Repeat("é", 129)}), ErrTooLarge, "endpoint is longer than 128 characters"},
		{"endpoint of 128 chars", all, ok(Request{Type: "disclose", Circuit: "vc_and_disclose", EndpointType: "https", Endpoint: strings.Repeat("é", 128)}), nil, ""},
		{"disclose without endpointType", all, ok(Request{Type: "disclose", Circuit: "vc_and_disclose", Endpoint: "x"}), ErrEndpoint, "endpointType is required for disclose requests"},
		{"disclose without endpoint", all, ok(Request{Type: "disclose_kyc", Circuit: "vc_and_disclose", EndpointType: "celo"}), ErrEndpoint, "endpoint is required for disclose_kyc requests"},
		{"bad endpointType", all, ok(Request{Type: "register", EndpointType: "ftp"}), ErrEndpoint, "endpointType must be one of celo, https, staging_celo, staging_https, test_celo, test_https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.Validate(tt.r)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, tt.kind) || e.Message != tt.message {
				t.Fatalf("Validate error = %v, want kind %v with message %q", err, tt.kind, tt.message)
			}
		})
	}
}

func TestNewValidatorErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"no families":    {Circuits: known{}},
		"unknown family": {Families: []family.Family{"kyc"}, Circuits: known{}},
		"no circuits":    {Families: family.All()},
	} {
		if _, err := NewValidator(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzParse: the payload parser never panics, every failure is a parse
// *Error with the app's message, and every success has a known type, a
// circuit name and inputs holding a JSON object.
func FuzzParse(f *testing.F) {
	if vs, err := vectors.Load(); err == nil {
		for _, v := range vs {
			f.Add([]byte(v.Plaintext))
		}
	}
	for _, s := range []string{`{}`, `null`, `[]`, `{"type":"register","circuit":{"name":"c","inputs":"{}"}}`,
		`{"type":"dsc","circuit":{"name":"c","inputs":"{\"a\":[\"1\"]}"},"version":2}`, "\xff", `{"circuit":{"inputs":"\u0000"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrParse) || e.Message != ParseMessage {
				t.Fatalf("error %v is not a parse *Error", err)
			}
			return
		}
		if r.Type.Code() < 0 || !isJSONObject(r.Inputs) {
			t.Fatalf("accepted %+v", r)
		}
	})
}

// Package request parses and checks the app's decrypted proof request
// (PROTOCOL.md, "Decrypted request").
//
// Parse applies the app's defaults and ignores unknown fields; anything that
// does not decode into the request's shape is ErrParse, whose client
// message is the app's "Failed to parse proof request". Validator then
// applies this deployment's rules: the proof type's family is served here,
// the circuit is known, the endpoint rules, and size limits. Every failure
// is an *Error whose Message is what the client is told; none of them ever
// contains circuit inputs.
package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/openpassport/prover-fleet/api/internal/jsonvalid"
	"github.com/openpassport/prover-fleet/shared/family"
)

// Request is a decrypted, parsed proof request.
type Request struct {
	Type            family.ProofType
	Onchain         bool
	EndpointType    string // "" when the app sent none
	Endpoint        string
	UserDefinedData string
	SelfDefinedData string
	Version         int
	Circuit         string
	// Inputs is the circuit's input object as JSON text, exactly as the app
	// sent it inside circuit.inputs.
	Inputs []byte
}

// EndpointTypes are the values endpointType may take.
var endpointTypes = []string{"celo", "https", "staging_celo", "staging_https", "test_celo", "test_https"}

// EndpointTypes lists the accepted endpointType values.
func EndpointTypes() []string { return slices.Clone(endpointTypes) }

// Kinds of failure; an *Error unwraps to one of these.
var (
	ErrParse    = errors.New("request does not parse")
	ErrFamily   = errors.New("proof type not served here")
	ErrCircuit  = errors.New("unknown circuit")
	ErrEndpoint = errors.New("endpoint rules not met")
	ErrTooLarge = errors.New("field too large")
)

// Error is a rejected request: Message is for the client, Detail (may be
// empty) explains it further, Kind is one of the Err values above.
type Error struct {
	Kind    error
	Message string
	Detail  string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Message
	}
	return e.Message + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Kind }

// ParseMessage is the app's message for a request that does not parse.
const ParseMessage = "Failed to parse proof request"

func parseError(detail string) *Error {
	return &Error{Kind: ErrParse, Message: ParseMessage, Detail: detail}
}

// wire is the JSON shape of the request. Pointers tell absent from empty.
type wire struct {
	Type            *string `json:"type"`
	Onchain         *bool   `json:"onchain"`
	EndpointType    *string `json:"endpointType"`
	Endpoint        *string `json:"endpoint"`
	UserDefinedData *string `json:"userDefinedData"`
	SelfDefinedData *string `json:"selfDefinedData"`
	Version         *int32  `json:"version"`
	Circuit         *struct {
		Name   *string `json:"name"`
		Inputs *string `json:"inputs"`
	} `json:"circuit"`
}

// Parse decodes plaintext into a Request. Defaults: onchain false,
// endpointType and endpoint "", userDefinedData "", selfDefinedData "",
// version 1. type, circuit.name and circuit.inputs are required, and
// circuit.inputs must be a JSON string holding a JSON object.
func Parse(plaintext []byte) (Request, error) {
	if !utf8.Valid(plaintext) {
		return Request{}, parseError("not UTF-8 text")
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(plaintext))
	if err := dec.Decode(&w); err != nil {
		return Request{}, parseError(describe(err))
	}
	if len(bytes.TrimSpace(plaintext[dec.InputOffset():])) != 0 {
		return Request{}, parseError("trailing data after the JSON object")
	}
	if w.Type == nil {
		return Request{}, parseError(`missing "type"`)
	}
	typ, err := family.ParseProofType(*w.Type)
	if err != nil {
		return Request{}, parseError(fmt.Sprintf(`unknown "type" (want one of %s)`, joinTypes()))
	}
	if w.Circuit == nil || w.Circuit.Name == nil {
		return Request{}, parseError(`missing "circuit.name"`)
	}
	if w.Circuit.Inputs == nil {
		return Request{}, parseError(`missing "circuit.inputs"`)
	}
	inputs := []byte(*w.Circuit.Inputs)
	if !isJSONObject(inputs) {
		clear(inputs)
		return Request{}, parseError(`"circuit.inputs" must be a JSON string holding a JSON object`)
	}
	r := Request{
		Type:    typ,
		Circuit: *w.Circuit.Name,
		Inputs:  inputs,
		Version: 1,
	}
	if w.Onchain != nil {
		r.Onchain = *w.Onchain
	}
	if w.EndpointType != nil {
		r.EndpointType = *w.EndpointType
	}
	if w.Endpoint != nil {
		r.Endpoint = *w.Endpoint
	}
	if w.UserDefinedData != nil {
		r.UserDefinedData = *w.UserDefinedData
	}
	if w.SelfDefinedData != nil {
		r.SelfDefinedData = *w.SelfDefinedData
	}
	if w.Version != nil {
		r.Version = int(*w.Version)
	}
	return r, nil
}

// describe names what went wrong without quoting the request.
func describe(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			return "the request must be a JSON object"
		}
		return fmt.Sprintf("%q has the wrong type (a JSON %s)", field, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	}
	return "invalid JSON"
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{' && jsonvalid.Valid(b)
}

func joinTypes() string {
	var s []string
	for _, t := range family.ProofTypes() {
		s = append(s, string(t))
	}
	return strings.Join(s, ", ")
}

// Circuits tells whether a circuit is known (circuits.Catalog does).
type Circuits interface {
	Known(name string) bool
}

// Config sets the rules of one deployment.
type Config struct {
	// Families served by this frontend (required, at least one).
	Families []family.Family
	// Circuits is the catalog of known circuits (required).
	Circuits Circuits
	// MaxInputsBytes bounds circuit.inputs (default 8 MiB).
	MaxInputsBytes int
	// MaxDataBytes bounds userDefinedData and selfDefinedData each
	// (default 64 KiB).
	MaxDataBytes int
}

// Limits fixed by the proofs table's columns.
const (
	MaxCircuitName = 255
	MaxEndpoint    = 128

	DefaultMaxInputsBytes = 8 << 20
	DefaultMaxDataBytes   = 64 << 10
)

// Validator checks parsed requests against a Config.
type Validator struct {
	cfg     Config
	allowed string
}

// NewValidator checks the config.
func NewValidator(cfg Config) (*Validator, error) {
	if len(cfg.Families) == 0 {
		return nil, errors.New("request: at least one family must be served")
	}
	for _, f := range cfg.Families {
		if _, err := family.Parse(string(f)); err != nil {
			return nil, fmt.Errorf("request: %w", err)
		}
	}
	if cfg.Circuits == nil {
		return nil, errors.New("request: a circuit catalog is required")
	}
	if cfg.MaxInputsBytes == 0 {
		cfg.MaxInputsBytes = DefaultMaxInputsBytes
	}
	if cfg.MaxDataBytes == 0 {
		cfg.MaxDataBytes = DefaultMaxDataBytes
	}
	return &Validator{cfg: cfg, allowed: FamilyList(cfg.Families)}, nil
}

// FamilyList is the {family} of the app's message "This endpoint only
// allows {family} inputs": the served family names in the configured order,
// joined with " or " (for example "register" or "register or dsc").
func FamilyList(fams []family.Family) string {
	s := make([]string, len(fams))
	for i, f := range fams {
		s[i] = string(f)
	}
	return strings.Join(s, " or ")
}

// Validate applies the deployment's rules, in this order: family, sizes,
// circuit, endpoint.
func (v *Validator) Validate(r Request) error {
	if !slices.Contains(v.cfg.Families, r.Type.Family()) {
		return &Error{
			Kind:    ErrFamily,
			Message: fmt.Sprintf("This endpoint only allows %s inputs", v.allowed),
			Detail:  fmt.Sprintf("type %s belongs to the %s family", r.Type, r.Type.Family()),
		}
	}
	switch {
	case r.Circuit == "":
		return &Error{Kind: ErrCircuit, Message: "Circuit name is empty"}
	case len(r.Circuit) > MaxCircuitName:
		return &Error{Kind: ErrTooLarge, Message: fmt.Sprintf("Circuit name is longer than %d bytes", MaxCircuitName)}
	case len(r.Inputs) > v.cfg.MaxInputsBytes:
		return &Error{Kind: ErrTooLarge, Message: fmt.Sprintf("Circuit inputs are larger than %d bytes", v.cfg.MaxInputsBytes)}
	case len(r.UserDefinedData) > v.cfg.MaxDataBytes:
		return &Error{Kind: ErrTooLarge, Message: fmt.Sprintf("userDefinedData is larger than %d bytes", v.cfg.MaxDataBytes)}
	case len(r.SelfDefinedData) > v.cfg.MaxDataBytes:
		return &Error{Kind: ErrTooLarge, Message: fmt.Sprintf("selfDefinedData is larger than %d bytes", v.cfg.MaxDataBytes)}
	case utf8.RuneCountInString(r.Endpoint) > MaxEndpoint:
		return &Error{Kind: ErrTooLarge, Message: fmt.Sprintf("endpoint is longer than %d characters", MaxEndpoint)}
	}
	if !v.cfg.Circuits.Known(r.Circuit) {
		return &Error{Kind: ErrCircuit, Message: "Could not find the given circuit name: " + r.Circuit}
	}
	return v.checkEndpoint(r)
}

func (v *Validator) checkEndpoint(r Request) error {
	if r.EndpointType == "" {
		if r.Type.IsDisclose() {
			return &Error{Kind: ErrEndpoint, Message: fmt.Sprintf("endpointType is required for %s requests", r.Type)}
		}
		return nil
	}
	if !slices.Contains(endpointTypes, r.EndpointType) {
		return &Error{Kind: ErrEndpoint, Message: "endpointType must be one of " + strings.Join(endpointTypes, ", ")}
	}
	if r.Type.IsDisclose() && strings.TrimSpace(r.Endpoint) == "" {
		return &Error{Kind: ErrEndpoint, Message: fmt.Sprintf("endpoint is required for %s requests", r.Type)}
	}
	return nil
}

// Package params decodes JSON-RPC 2.0 params the way the app sends them:
// by name (an object) or by position (an array), with every byte string as
// a JSON array of integers 0..255 (protocol.Bytes).
//
// Decoding is strict about types and lenient about extras: a byte string in
// any other form (base64 or hex text, numbers out of range, fractions) is an
// error that names the param, while params the method does not know are
// ignored.
package params

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/openpassport/prover-fleet/api/protocol"
)

// Error says which param is wrong and why. Its text is safe to show to the
// client: it never quotes the param's value.
type Error struct {
	Param  string // empty when the params as a whole are wrong
	Reason string
}

func (e *Error) Error() string {
	if e.Param == "" {
		return e.Reason
	}
	return fmt.Sprintf("param %q: %s", e.Param, e.Reason)
}

// Field is one param of a method: its name, where its position-th element
// goes (fields are positional in the order given to Decode), and a pointer
// to decode it into.
type Field struct {
	Name     string
	Dst      any // pointer; decoded with encoding/json (use Bytes for byte strings)
	Optional bool
}

// Decode fills the fields from raw params: an object (by name; unknown
// names are ignored) or an array (by position, in the order of fields).
// Absent params (nil raw, JSON null) count as an empty object. A required
// field that is missing or null is an error; an optional one is left as is.
//
// raw must be valid JSON (the JSON-RPC message it came in was checked):
// values are split off without decoding, and a Dst that implements
// json.Unmarshaler (protocol.Bytes) is handed its raw value directly.
func Decode(raw json.RawMessage, fields ...Field) error {
	byName, err := split(raw, fields)
	if err != nil {
		return err
	}
	for _, f := range fields {
		v, ok := byName[f.Name]
		if !ok || IsNull(v) {
			if f.Optional {
				continue
			}
			if ok {
				return &Error{Param: f.Name, Reason: "must not be null"}
			}
			return &Error{Param: f.Name, Reason: "is required"}
		}
		if u, ok := f.Dst.(json.Unmarshaler); ok {
			err = u.UnmarshalJSON(v)
		} else {
			err = json.Unmarshal(v, f.Dst)
		}
		if err != nil {
			return &Error{Param: f.Name, Reason: describe(err)}
		}
	}
	return nil
}

// split maps param names to their raw values.
func split(raw json.RawMessage, fields []Field) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || IsNull(raw) {
		return map[string]json.RawMessage{}, nil
	}
	switch raw[0] {
	case '{':
		m, err := Object(raw)
		if err != nil {
			return nil, &Error{Reason: "params are not a valid JSON object"}
		}
		return m, nil
	case '[':
		list, err := Array(raw)
		if err != nil {
			return nil, &Error{Reason: "params are not a valid JSON array"}
		}
		if len(list) > len(fields) {
			return nil, &Error{Reason: fmt.Sprintf("too many positional params: got %d, want at most %d", len(list), len(fields))}
		}
		m := make(map[string]json.RawMessage, len(list))
		for i, v := range list {
			m[fields[i].Name] = v
		}
		return m, nil
	}
	return nil, &Error{Reason: "params must be an object or an array"}
}

// IsNull reports whether a raw value is JSON null.
func IsNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// describe turns an encoding/json error into a reason that names the
// expected type but not the value.
func describe(err error) string {
	var be *protocol.BytesError
	if errors.As(err, &be) {
		return be.Reason
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("want %s, got a JSON %s", goTypeName(te.Type.String()), te.Value)
	}
	return "is not valid JSON"
}

func goTypeName(t string) string {
	switch t {
	case "string":
		return "a string"
	case "int", "int64", "int32":
		return "an integer"
	case "bool":
		return "a boolean"
	}
	return t
}

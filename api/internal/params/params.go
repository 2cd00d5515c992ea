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
	// Each field's raw value, by the field's index: no map.
	var buf [8]json.RawMessage
	var vals []json.RawMessage
	if len(fields) <= len(buf) {
		vals = buf[:len(fields)]
	} else {
		vals = make([]json.RawMessage, len(fields))
	}
	if err := split(raw, fields, vals); err != nil {
		return err
	}
	for i, f := range fields {
		v := vals[i]
		if v == nil || IsNull(v) {
			if f.Optional {
				continue
			}
			if v != nil {
				return &Error{Param: f.Name, Reason: "must not be null"}
			}
			return &Error{Param: f.Name, Reason: "is required"}
		}
		var err error
		switch dst := f.Dst.(type) {
		case json.Unmarshaler:
			err = dst.UnmarshalJSON(v)
		case *string:
			if s, ok := String(v); ok {
				*dst = s
				continue
			}
			err = json.Unmarshal(v, dst) // for its error
		default:
			err = json.Unmarshal(v, dst)
		}
		if err != nil {
			return &Error{Param: f.Name, Reason: describe(err)}
		}
	}
	return nil
}

// split puts each field's raw value (nil when absent) in vals, by the
// field's index.
func split(raw json.RawMessage, fields []Field, vals []json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || IsNull(raw) {
		return nil
	}
	switch raw[0] {
	case '{':
		err := Members(raw, func(key []byte, v json.RawMessage) {
			for i, f := range fields {
				if string(key) == f.Name {
					vals[i] = v // a repeated name keeps its last value
					return
				}
			}
		})
		if err != nil {
			return &Error{Reason: "params are not a valid JSON object"}
		}
		return nil
	case '[':
		list, err := Array(raw)
		if err != nil {
			return &Error{Reason: "params are not a valid JSON array"}
		}
		if len(list) > len(fields) {
			return &Error{Reason: fmt.Sprintf("too many positional params: got %d, want at most %d", len(list), len(fields))}
		}
		copy(vals, list)
		return nil
	}
	return &Error{Reason: "params must be an object or an array"}
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

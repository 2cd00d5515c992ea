package protocol

import (
	"fmt"
	"strconv"

	"github.com/openpassport/prover-fleet/api/internal/jsonvalid"
)

// Bytes is a byte string written as a JSON array of integers 0..255.
type Bytes []byte

// BytesError says why a JSON value is not a byte string. It never quotes the
// value.
type BytesError struct{ Reason string }

func (e *BytesError) Error() string { return e.Reason }

// MarshalJSON writes b as an array of integers (never base64).
func (b Bytes) MarshalJSON() ([]byte, error) {
	return AppendBytes(make([]byte, 0, 2+4*len(b)), b), nil
}

// AppendBytes appends b to dst as a JSON array of integers, as MarshalJSON
// writes it.
func AppendBytes(dst, b []byte) []byte {
	dst = append(dst, '[')
	for i, c := range b {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendUint(dst, uint64(c), 10)
	}
	return append(dst, ']')
}

// UnmarshalJSON accepts only an array whose elements are integers 0..255
// written without sign, fraction or exponent.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	out, err := ParseBytes(data)
	if err != nil {
		return err
	}
	*b = out
	return nil
}

// ParseBytes decodes a JSON array of integers 0..255. It scans the text
// itself instead of building a []any: a 10 MiB cipher text is about three
// million elements.
func ParseBytes(data []byte) ([]byte, error) {
	i := jsonvalid.SkipSpace(data, 0)
	if i >= len(data) || data[i] != '[' {
		kind := "nothing"
		if i < len(data) {
			kind = jsonKind(data[i])
		}
		return nil, &BytesError{fmt.Sprintf("want an array of integers 0..255, got %s", kind)}
	}
	// Upper bound on the element count: one element needs at least two
	// bytes ("0,"), so this never over-allocates by more than 2x.
	out := make([]byte, 0, len(data)/2)
	i = jsonvalid.SkipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		if j := jsonvalid.SkipSpace(data, i+1); j != len(data) {
			return nil, &BytesError{"trailing data after the array"}
		}
		return out, nil
	}
	for n := 0; ; n++ {
		if i >= len(data) {
			return nil, &BytesError{"unterminated array"}
		}
		start := i
		v := 0
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			v = v*10 + int(data[i]-'0')
			if v > 255 {
				return nil, &BytesError{fmt.Sprintf("element %d is out of range: want an integer 0..255", n)}
			}
			i++
		}
		if i == start {
			return nil, &BytesError{fmt.Sprintf("element %d is %s: want an integer 0..255", n, jsonKind(data[i]))}
		}
		if i-start > 1 && data[start] == '0' {
			return nil, &BytesError{fmt.Sprintf("element %d has a leading zero", n)}
		}
		if i < len(data) && (data[i] == '.' || data[i] == 'e' || data[i] == 'E') {
			return nil, &BytesError{fmt.Sprintf("element %d is not an integer: want an integer 0..255", n)}
		}
		out = append(out, byte(v))
		i = jsonvalid.SkipSpace(data, i)
		if i >= len(data) {
			return nil, &BytesError{"unterminated array"}
		}
		switch data[i] {
		case ',':
			i = jsonvalid.SkipSpace(data, i+1)
		case ']':
			if j := jsonvalid.SkipSpace(data, i+1); j != len(data) {
				return nil, &BytesError{"trailing data after the array"}
			}
			return out, nil
		default:
			return nil, &BytesError{fmt.Sprintf("after element %d: want ',' or ']'", n)}
		}
	}
}

// jsonKind names the JSON value that starts with c.
func jsonKind(c byte) string {
	switch {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-':
		return "a negative number"
	case c >= '0' && c <= '9':
		return "a number"
	}
	return "not JSON"
}

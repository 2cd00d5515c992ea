package params

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/openpassport/prover-fleet/api/internal/jsonvalid"
)

// The splitters below walk the top level of JSON text that has already
// been validated (json.Valid), returning each member's raw value without
// decoding it. They exist because a submit's params are up to 10 MiB:
// encoding/json scans its input twice per Unmarshal, and splitting the
// envelope and then the params that way cost about a second per 10 MiB on
// the reference machine. On text that is not valid JSON they return an
// error or garbage, never panic.

var errNotJSON = errors.New("params: not valid JSON")

// Object returns the members of a JSON object; a repeated key keeps its
// last value, as encoding/json does.
func Object(data []byte) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage)
	err := Members(data, func(key []byte, v json.RawMessage) {
		out[string(key)] = v
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Members calls fn with each member of a JSON object, in order: the key
// unescaped, and the value's raw text (sharing data's memory). It
// allocates nothing for keys without escapes, so the hot path (a
// message's three members, a method's few params) builds no map.
func Members(data []byte, fn func(key []byte, v json.RawMessage)) error {
	i := jsonvalid.SkipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errNotJSON
	}
	i = jsonvalid.SkipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return errNotJSON
		}
		end, err := skipString(data, i)
		if err != nil {
			return err
		}
		key := data[i+1 : end-1]
		if !plain(key) {
			var k string
			if err := json.Unmarshal(data[i:end], &k); err != nil {
				return errNotJSON
			}
			key = []byte(k)
		}
		i = jsonvalid.SkipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return errNotJSON
		}
		i = jsonvalid.SkipSpace(data, i+1)
		end, err = skipValue(data, i)
		if err != nil {
			return err
		}
		fn(key, data[i:end:end])
		i = jsonvalid.SkipSpace(data, end)
		if i >= len(data) {
			return errNotJSON
		}
		switch data[i] {
		case ',':
			i = jsonvalid.SkipSpace(data, i+1)
		case '}':
			return nil
		default:
			return errNotJSON
		}
	}
}

// plain reports whether a string's body (between its quotes) is its value
// as encoding/json decodes it: no escapes, valid UTF-8 (encoding/json turns
// invalid bytes into U+FFFD).
func plain(body []byte) bool {
	return bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body)
}

// String decodes a JSON string value (v must be valid JSON). Strings
// without escapes (uuids, method names) are copied out directly; others go
// through encoding/json, which also turns invalid UTF-8 into U+FFFD. ok is
// false when v is not a string.
func String(v json.RawMessage) (s string, ok bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	body := v[1 : len(v)-1]
	if plain(body) {
		return string(body), true
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// Array returns the elements of a JSON array.
func Array(data []byte) ([]json.RawMessage, error) {
	i := jsonvalid.SkipSpace(data, 0)
	if i >= len(data) || data[i] != '[' {
		return nil, errNotJSON
	}
	var out []json.RawMessage
	i = jsonvalid.SkipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return out, nil
	}
	for {
		end, err := skipValue(data, i)
		if err != nil {
			return nil, err
		}
		out = append(out, data[i:end:end])
		i = jsonvalid.SkipSpace(data, end)
		if i >= len(data) {
			return nil, errNotJSON
		}
		switch data[i] {
		case ',':
			i = jsonvalid.SkipSpace(data, i+1)
		case ']':
			return out, nil
		default:
			return nil, errNotJSON
		}
	}
}

// skipString returns the index after the string starting at data[i] == '"'.
func skipString(data []byte, i int) (int, error) {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1, nil
		}
	}
	return 0, errNotJSON
}

// flatArray finds the end of an array without nested arrays, objects or
// strings (a byte string: thousands of small integers) with the
// vectorised bytes.IndexByte instead of a loop over every byte.
func flatArray(data []byte, i int) (int, bool) {
	if data[i] != '[' {
		return 0, false
	}
	n := bytes.IndexByte(data[i+1:], ']')
	if n < 0 {
		return 0, false
	}
	body := data[i+1 : i+1+n]
	if bytes.IndexByte(body, '[') >= 0 || bytes.IndexByte(body, '{') >= 0 || bytes.IndexByte(body, '"') >= 0 {
		return 0, false
	}
	return i + n + 2, true
}

// skipValue returns the index after the value starting at data[i].
func skipValue(data []byte, i int) (int, error) {
	if i >= len(data) {
		return 0, errNotJSON
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		if end, ok := flatArray(data, i); ok {
			return end, nil
		}
		depth := 0
		for ; i < len(data); i++ {
			switch data[i] {
			case '"':
				end, err := skipString(data, i)
				if err != nil {
					return 0, err
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errNotJSON
	}
	// A number or a literal: up to the next delimiter.
	start := i
	for i < len(data) {
		switch data[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			if i == start {
				return 0, errNotJSON
			}
			return i, nil
		}
		i++
	}
	if i == start {
		return 0, errNotJSON
	}
	return i, nil
}

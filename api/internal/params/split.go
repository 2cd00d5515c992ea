package params

import (
	"encoding/json"
	"errors"
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
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, errNotJSON
	}
	out := make(map[string]json.RawMessage)
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return out, nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return nil, errNotJSON
		}
		end, err := skipString(data, i)
		if err != nil {
			return nil, err
		}
		var key string
		if err := json.Unmarshal(data[i:end], &key); err != nil {
			return nil, errNotJSON
		}
		i = skipWS(data, end)
		if i >= len(data) || data[i] != ':' {
			return nil, errNotJSON
		}
		i = skipWS(data, i+1)
		end, err = skipValue(data, i)
		if err != nil {
			return nil, err
		}
		out[key] = data[i:end:end]
		i = skipWS(data, end)
		if i >= len(data) {
			return nil, errNotJSON
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case '}':
			return out, nil
		default:
			return nil, errNotJSON
		}
	}
}

// Array returns the elements of a JSON array.
func Array(data []byte) ([]json.RawMessage, error) {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '[' {
		return nil, errNotJSON
	}
	var out []json.RawMessage
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		return out, nil
	}
	for {
		end, err := skipValue(data, i)
		if err != nil {
			return nil, err
		}
		out = append(out, data[i:end:end])
		i = skipWS(data, end)
		if i >= len(data) {
			return nil, errNotJSON
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case ']':
			return out, nil
		default:
			return nil, errNotJSON
		}
	}
}

func skipWS(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
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

// skipValue returns the index after the value starting at data[i].
func skipValue(data []byte, i int) (int, error) {
	if i >= len(data) {
		return 0, errNotJSON
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
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

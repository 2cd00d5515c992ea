// Package vectors loads testdata/vectors/client-handshake.json, the
// handshakes recorded from the deployed app's own client functions, for the
// frontend's tests.
package vectors

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Vector is one recorded handshake.
type Vector struct {
	Name                string          `json:"name"`
	ClientPrivateKeyHex string          `json:"client_private_key_hex"`
	ClientPublicKey     []int           `json:"client_public_key_uncompressed"`
	ClientPublicKeyComp []int           `json:"client_public_key_compressed"`
	ServerPrivateKeyHex string          `json:"server_private_key_hex"`
	ServerPublicKey     []int           `json:"server_public_key_uncompressed"`
	SharedKeyHex        string          `json:"shared_key_hex"`
	Plaintext           string          `json:"plaintext"`
	Nonce               []int           `json:"nonce"`
	CipherText          []int           `json:"cipher_text"`
	AuthTag             []int           `json:"auth_tag"`
	HelloRequest        json.RawMessage `json:"hello_request"`
	SubmitRequest       json.RawMessage `json:"submit_request"`
}

// Bytes converts one of the vector's integer arrays.
func Bytes(ints []int) []byte {
	out := make([]byte, len(ints))
	for i, v := range ints {
		out[i] = byte(v)
	}
	return out
}

// Hex decodes one of the vector's hex fields; it panics on bad hex, which
// would mean a corrupt vector file.
func Hex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(fmt.Sprintf("vectors: bad hex %q: %v", s, err))
	}
	return b
}

// Path finds testdata/vectors/client-handshake.json above the working
// directory (tests run in their package's folder).
func Path() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "testdata", "vectors", "client-handshake.json")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("vectors: testdata/vectors/client-handshake.json not found above the working directory")
		}
		dir = parent
	}
}

// Load reads every vector.
func Load() ([]Vector, error) {
	p, err := Path()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var file struct {
		Vectors []Vector `json:"vectors"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("vectors: %s: %w", p, err)
	}
	if len(file.Vectors) == 0 {
		return nil, fmt.Errorf("vectors: %s holds no vectors", p)
	}
	return file.Vectors, nil
}

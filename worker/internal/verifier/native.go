package verifier

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/groth16"
)

// Native verifies in process with shared/groth16, keeping each circuit's
// parsed verification key (reloaded when the file changes).
type Native struct {
	layout circuitdir.Layout // ZkeyDir absolute
	mu     sync.Mutex
	keys   map[string]cachedVK
}

type cachedVK struct {
	vk      *groth16.VerifyingKey
	modTime time.Time
	size    int64
}

// NewNative returns a Native verifier reading the verification keys of
// keys (keys.VKey; the circuit folder is not used).
func NewNative(keys circuitdir.Layout) (*Native, error) {
	if keys.ZkeyDir == "" {
		return nil, errors.New("verifier: zkey dir is empty")
	}
	abs, err := keys.Abs()
	if err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	return &Native{layout: abs, keys: map[string]cachedVK{}}, nil
}

func (n *Native) key(circuit string) (*groth16.VerifyingKey, error) {
	path := n.layout.VKey(circuit)
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoKey, circuit, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.keys[circuit]; ok && c.modTime.Equal(st.ModTime()) && c.size == st.Size() {
		return c.vk, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoKey, circuit, err)
	}
	vk, err := groth16.ParseVerifyingKey(data)
	if err != nil {
		return nil, fmt.Errorf("verification key of %s: %w", circuit, err)
	}
	n.keys[circuit] = cachedVK{vk: vk, modTime: st.ModTime(), size: st.Size()}
	return vk, nil
}

// Verify checks the proof and public signals files of circuit. A proof or
// public signals that do not parse, or do not pass the pairing check, are
// ErrInvalid.
func (n *Native) Verify(ctx context.Context, circuit, proof, public string) error {
	vk, err := n.key(circuit)
	if err != nil {
		return err
	}
	proofJSON, err := os.ReadFile(proof)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	publicJSON, err := os.ReadFile(public)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("verify: %w", context.Cause(ctx))
	}
	if err := vk.VerifyJSON(proofJSON, publicJSON); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

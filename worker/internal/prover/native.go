package prover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
	"github.com/openpassport/prover-fleet/worker/internal/keycache"
)

// Native proves in process with shared/groth16. Proving keys are held in a
// key cache (worker/internal/keycache) with one memory budget for every key
// and its window tables: a circuit's key is loaded on first use
// (concurrent first uses wait for one load) and stays warm until the budget
// needs its room for another key and no proof is using it (least recently
// used first); a key file that changes on disk is loaded again and the old
// mapping released once the proofs using it end. Replace key files by
// renaming a new file over the old one: a file rewritten in place fails the
// proofs in flight with groth16.ErrKeyChanged (retried by the pipeline,
// with the new key). A key larger than the whole budget still proves,
// alone. It writes proof.json and public.json exactly as snarkjs and
// rapidsnark do.
//
// With NativeConfig.Tables, once a key is loaded Native builds its
// fixed-base window tables in the background with what the budget leaves
// (groth16's ProvingKey.Warm: seconds of CPU); proofs run meanwhile without
// them and pick them up when they are ready. Close stops the builds.
//
// Unlike a child process, an in-process proof cannot be killed: the
// timeout and cancellation are honoured between the prover's phases, and
// inside its multi-scalar multiplications once the key's tables are built.
type Native struct {
	timeout time.Duration
	keys    *keycache.Cache
}

// NativeConfig configures a Native prover.
type NativeConfig struct {
	// Layout.ZkeyDir holds the proving keys (required; the circuit folder
	// is not used).
	Layout circuitdir.Layout
	// Timeout bounds one proof (0: none).
	Timeout time.Duration
	// Budget is the memory, in bytes, all keys and tables may hold.
	// Required.
	Budget int64
	// Tables builds window tables within what the budget leaves.
	Tables bool
	// Observer is told what the key cache does (logs, metrics); optional.
	Observer keycache.Observer
}

// NewNative returns a Native prover.
func NewNative(cfg NativeConfig) (*Native, error) {
	if cfg.Layout.ZkeyDir == "" {
		return nil, errors.New("prover: NativeConfig.Layout.ZkeyDir is empty")
	}
	if cfg.Budget <= 0 {
		return nil, fmt.Errorf("prover: NativeConfig.Budget must be positive, got %d", cfg.Budget)
	}
	abs, err := cfg.Layout.Abs()
	if err != nil {
		return nil, fmt.Errorf("prover: %w", err)
	}
	keys, err := keycache.New(zkeys{layout: abs, load: loadProvingKey},
		keycache.Config{Budget: cfg.Budget, Tables: cfg.Tables}, cfg.Observer)
	if err != nil {
		return nil, fmt.Errorf("prover: %w", err)
	}
	return &Native{timeout: cfg.Timeout, keys: keys}, nil
}

// Keys is the key cache (what it holds, which circuits are warm).
func (n *Native) Keys() *keycache.Cache { return n.keys }

// WaitTables blocks until the key loads and table builds in progress have
// ended.
func (n *Native) WaitTables() { n.keys.WaitIdle() }

// Close stops the table builds in progress, waits for them and releases the
// keys no proof uses (the others once their proofs end). Proving fails with
// keycache.ErrClosed afterwards.
func (n *Native) Close() { n.keys.Close() }

// Prove reads the witness wtns, proves and writes proof and public.
func (n *Native) Prove(ctx context.Context, circuit, dir, wtnsPath, proof, public string) error {
	if n.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, n.timeout, fmt.Errorf("prove: timed out after %s", n.timeout))
		defer cancel()
	}
	lease, err := n.keys.Acquire(ctx, circuit)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return &Failure{Err: cause}
		}
		return err
	}
	defer lease.Release()
	pk := lease.Key().(*provingKey).key()
	w, err := wtns.ReadFile(ctx, wtnsPath)
	if err != nil {
		return &Failure{Err: fmt.Errorf("prove: read witness: %w", err)}
	}
	p, signals, err := groth16.Prove(ctx, pk, w)
	clear(w)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return &Failure{Err: cause}
		}
		return &Failure{Err: fmt.Errorf("prove: %w", err)}
	}
	proofJSON, err := p.MarshalJSON()
	if err != nil {
		return &Failure{Err: fmt.Errorf("prove: %w", err)}
	}
	publicJSON, err := signals.MarshalJSON()
	if err != nil {
		return &Failure{Err: fmt.Errorf("prove: %w", err)}
	}
	if err := os.WriteFile(proof, proofJSON, 0o600); err != nil {
		return &Failure{Err: fmt.Errorf("prove: %w", err)}
	}
	if err := os.WriteFile(public, publicJSON, 0o600); err != nil {
		return &Failure{Err: fmt.Errorf("prove: %w", err)}
	}
	return nil
}

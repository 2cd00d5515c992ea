package overhead

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/openpassport/prover-fleet/bench/internal/child"
	"github.com/openpassport/prover-fleet/bench/internal/circuits"
	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
)

// bare does one job's witness, proof and verification the way the worker
// does them, with none of the fleet around it: the same generator, the same
// prover and verifier, the same child-process settings (own process group,
// the worker's minimal environment), in a fresh private directory.
type bare struct {
	c        circuits.Circuit
	inputs   []byte
	prover   []string              // command prefix; nil: native in process
	pk       *groth16.ProvingKey   // native prover's warm key
	verifier []string              // command prefix; nil: native
	vk       *groth16.VerifyingKey // native verifier's key
	workDir  string
}

func newBare(ctx context.Context, c circuits.Circuit, inputs []byte, proverMode, prover, verifier, workDir string) (*bare, error) {
	b := &bare{c: c, inputs: inputs, workDir: workDir}
	if proverMode == ProverNative {
		pk, err := groth16.LoadProvingKey(ctx, c.Zkey)
		if err != nil {
			return nil, fmt.Errorf("overhead: %w", err)
		}
		b.pk = pk
	} else {
		b.prover = strings.Fields(prover)
	}
	if verifier == VerifierNative {
		data, err := os.ReadFile(c.VKey)
		if err != nil {
			return nil, fmt.Errorf("overhead: %w", err)
		}
		if b.vk, err = groth16.ParseVerifyingKey(data); err != nil {
			return nil, fmt.Errorf("overhead: %s: %w", c.VKey, err)
		}
	} else {
		b.verifier = strings.Fields(verifier)
	}
	return b, nil
}

func (b *bare) run(ctx context.Context) error {
	dir, err := os.MkdirTemp(b.workDir, "bare-")
	if err != nil {
		return fmt.Errorf("overhead: %w", err)
	}
	defer os.RemoveAll(dir)
	var (
		input  = filepath.Join(dir, "input.json")
		wit    = filepath.Join(dir, "witness.wtns")
		proof  = filepath.Join(dir, "proof.json")
		public = filepath.Join(dir, "public.json")
	)
	if err := os.WriteFile(input, b.inputs, 0o600); err != nil {
		return fmt.Errorf("overhead: %w", err)
	}
	if _, err := child.Run(ctx, child.Cmd{Path: b.c.Generator, Args: []string{input, wit}, Dir: dir}); err != nil {
		return fmt.Errorf("overhead: bare witness: %w", err)
	}
	if b.prover != nil {
		args := append(slices.Clone(b.prover[1:]), b.c.Zkey, wit, proof, public)
		if _, err := child.Run(ctx, child.Cmd{Path: b.prover[0], Args: args, Dir: dir}); err != nil {
			return fmt.Errorf("overhead: bare prove: %w", err)
		}
	} else if err := b.proveNative(ctx, wit, proof, public); err != nil {
		return err
	}
	if b.verifier != nil {
		args := append(slices.Clone(b.verifier[1:]), b.c.VKey, public, proof)
		if _, err := child.Run(ctx, child.Cmd{Path: b.verifier[0], Args: args, Dir: dir}); err != nil {
			return fmt.Errorf("overhead: bare verify: %w", err)
		}
		return nil
	}
	pj, err := os.ReadFile(proof)
	if err != nil {
		return fmt.Errorf("overhead: %w", err)
	}
	sj, err := os.ReadFile(public)
	if err != nil {
		return fmt.Errorf("overhead: %w", err)
	}
	if err := b.vk.VerifyJSON(pj, sj); err != nil {
		return fmt.Errorf("overhead: bare verify: %w", err)
	}
	return nil
}

func (b *bare) proveNative(ctx context.Context, wit, proof, public string) error {
	w, err := wtns.ReadFile(ctx, wit)
	if err != nil {
		return fmt.Errorf("overhead: bare prove: %w", err)
	}
	p, s, err := groth16.Prove(ctx, b.pk, w)
	if err != nil {
		return fmt.Errorf("overhead: bare prove: %w", err)
	}
	pj, err := p.MarshalJSON()
	if err != nil {
		return err
	}
	sj, err := s.MarshalJSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(proof, pj, 0o644); err != nil {
		return err
	}
	return os.WriteFile(public, sj, 0o644)
}

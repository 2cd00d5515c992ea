// Package verifier checks a proof against the circuit's verification key
// <zkeys>/<name>.vkey.json before the worker reports it (provers have been
// seen to write proofs that do not verify).
//
// Command runs a snarkjs-style verifier as a child process:
// <verifier…> <vkey.json> <public.json> <proof.json> ("snarkjs groth16
// verify" takes exactly that), exit status 0 meaning valid.
package verifier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/worker/internal/proc"
)

// ErrInvalid: the proof does not verify against the verification key.
var ErrInvalid = errors.New("proof does not verify")

// ErrNoKey: this worker has no verification key for the circuit.
var ErrNoKey = errors.New("verification key not installed")

// CommandConfig configures a Command verifier.
type CommandConfig struct {
	// Command is the verifier and leading arguments, split on white space:
	// "circuits/node_modules/.bin/snarkjs groth16 verify".
	Command string
	// Layout.ZkeyDir holds the verification keys (required; the circuit
	// folder is not used).
	Layout circuitdir.Layout
	// Timeout bounds one verification.
	Timeout time.Duration
	// Env is the verifier's whole environment.
	Env []string
}

// Command is a verifier run as a child process.
type Command struct {
	run  proc.Runner
	argv []string
	cfg  CommandConfig
}

// NewCommand returns a Command verifier that starts children with run.
func NewCommand(run proc.Runner, cfg CommandConfig) (*Command, error) {
	if run == nil {
		return nil, errors.New("verifier: NewCommand needs a proc.Runner")
	}
	argv, err := proc.ParseCommand(cfg.Command, cfg.Env)
	if errors.Is(err, proc.ErrEmptyCommand) {
		return nil, errors.New("verifier: CommandConfig.Command is empty")
	}
	if cfg.Layout.ZkeyDir == "" {
		return nil, errors.New("verifier: CommandConfig.Layout.ZkeyDir is empty")
	}
	if err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	if cfg.Layout, err = cfg.Layout.Abs(); err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	return &Command{run: run, argv: argv, cfg: cfg}, nil
}

// Verify checks the proof and public signals files of circuit.
func (c *Command) Verify(ctx context.Context, circuit, proof, public string) error {
	vkey := c.cfg.Layout.VKey(circuit)
	if _, err := os.Stat(vkey); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNoKey, circuit, err)
	}
	args := append(append([]string(nil), c.argv[1:]...), vkey, public, proof)
	res, err := c.run.Run(ctx, proc.Cmd{
		Stage: "verify", Path: c.argv[0], Args: args, Dir: filepath.Dir(proof),
		Env: c.cfg.Env, Timeout: c.cfg.Timeout,
	})
	if err == nil {
		return nil
	}
	var exit *proc.ExitError
	if errors.As(err, &exit) && bytes.Contains(append(res.Stdout, res.Stderr...), []byte("Invalid proof")) {
		return ErrInvalid
	}
	said := proc.Excerpt(res.Stderr)
	if said == "" {
		said = proc.Excerpt(res.Stdout)
	}
	if said != "" {
		return fmt.Errorf("verify: %w: %s", err, said)
	}
	return fmt.Errorf("verify: %w", err)
}

// Package witness runs circom's C++ witness generators:
// <circuits>/<name>_cpp/<name> input.json witness.wtns (PROTOCOL.md
// "Proving commands"; the path is circuitdir.Layout.Generator).
//
// A generator that rejects its input is told apart from trouble with the
// machine: circom's generators report a failed constraint or a malformed input
// with a non-zero exit status or by aborting (an assert, SIGABRT). Both are
// ErrRejected. A kill by any other signal (the OOM killer's SIGKILL, a
// crash), a timeout or a generator that cannot be started is not the input's
// fault and is returned as it is.
package witness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/worker/internal/proc"
)

// ErrRejected: the generator refused the input (bad input, not retryable).
var ErrRejected = errors.New("witness generator rejected the input")

// ErrNoCircuit: this worker has no generator for the circuit.
var ErrNoCircuit = errors.New("witness generator not installed")

// RejectedError carries what the generator said (redacted, see
// proc.Excerpt).
type RejectedError struct {
	Said string
	Err  error
}

func (e *RejectedError) Error() string {
	if e.Said == "" {
		return fmt.Sprintf("%s (%v)", ErrRejected, e.Err)
	}
	return fmt.Sprintf("%s (%v): %s", ErrRejected, e.Err, e.Said)
}

// Is lets errors.Is(err, ErrRejected) match.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

func (e *RejectedError) Unwrap() error { return e.Err }

// Config configures a Generator.
type Config struct {
	// Layout.CircuitDir holds the generator of every circuit served
	// (required; the key folder is not used).
	Layout circuitdir.Layout
	// Timeout bounds one run.
	Timeout time.Duration
	// Env is the generator's whole environment.
	Env []string
}

// Generator computes witnesses.
type Generator struct {
	run proc.Runner
	cfg Config
}

// New returns a Generator that starts children with run.
func New(run proc.Runner, cfg Config) (*Generator, error) {
	if run == nil {
		return nil, errors.New("witness: New needs a proc.Runner")
	}
	if cfg.Layout.CircuitDir == "" {
		return nil, errors.New("witness: Config.Layout.CircuitDir is empty")
	}
	abs, err := cfg.Layout.Abs()
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	cfg.Layout = abs
	return &Generator{run: run, cfg: cfg}, nil
}

// Path is the generator binary of circuit.
func (g *Generator) Path(circuit string) string {
	return g.cfg.Layout.Generator(circuit)
}

// Generate runs the generator of circuit in dir on input, writing output.
func (g *Generator) Generate(ctx context.Context, circuit, dir, input, output string) error {
	bin := g.Path(circuit)
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNoCircuit, circuit, err)
	}
	// circom's generator finds <name>.dat from argv[0], so bin is absolute.
	res, err := g.run.Run(ctx, proc.Cmd{
		Stage: "witness", Path: bin, Args: []string{input, output},
		Dir: dir, Env: g.cfg.Env, Timeout: g.cfg.Timeout,
	})
	if err != nil {
		var exit *proc.ExitError
		var sig *proc.SignalError
		if errors.As(err, &exit) || (errors.As(err, &sig) && sig.Signal == syscall.SIGABRT) {
			// circom prints the failed template and line on stdout, then
			// the C assert on stderr.
			out := append(append(append([]byte(nil), res.Stdout...), '\n'), res.Stderr...)
			return &RejectedError{Said: proc.Excerpt(out), Err: err}
		}
		return err
	}
	if st, err := os.Stat(output); err != nil || st.Size() == 0 {
		return fmt.Errorf("witness: generator exited 0 but wrote no witness: %v", err)
	}
	return nil
}

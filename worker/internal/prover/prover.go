// Package prover turns a witness into a Groth16 proof with the circuit's
// proving key (<zkeys>/<name>.zkey, circuitdir.Layout.Zkey).
//
// Command runs any prover with rapidsnark's argument shape as a child
// process: <prover…> <zkey> <witness.wtns> <proof.json> <public.json>, where
// <prover…> is configuration: a rapidsnark binary, "snarkjs groth16 prove",
// or our cmd/zkprove. Its exit status decides; its stderr is kept (bounded)
// for the failure reason. The worker holds no key then, but the kernel's
// page cache holds the zkeys the children read: Command keeps the account
// of them in a key cache in bookkeeping mode (the budget is the page cache
// to count on), so that the worker knows which circuits it has warm.
//
// Native proves in process, its keys held in a key cache within one memory
// budget (see Native).
package prover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/worker/internal/keycache"
	"github.com/openpassport/prover-fleet/worker/internal/proc"
)

// ErrNoKey: this worker has no proving key for the circuit.
var ErrNoKey = errors.New("proving key not installed")

// Failure is a prover run that did not produce a proof, with what the
// prover said (redacted, see proc.Excerpt).
type Failure struct {
	Said string
	Err  error
}

func (e *Failure) Error() string {
	if e.Said == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Said
}

func (e *Failure) Unwrap() error { return e.Err }

// CommandConfig configures a Command prover.
type CommandConfig struct {
	// Command is the prover and any leading arguments, split on white
	// space (no quoting): "/opt/rapidsnark/prover",
	// "circuits/node_modules/.bin/snarkjs groth16 prove", "zkprove".
	// A first word without a slash is looked up in PATH.
	Command string
	// Layout.ZkeyDir holds the proving keys (required; the circuit folder
	// is not used).
	Layout circuitdir.Layout
	// Timeout bounds one proof.
	Timeout time.Duration
	// Env is the prover's whole environment.
	Env []string
	// PageCacheBudget is the page cache, in bytes, the worker counts on
	// for the zkeys its children read: the zkeys used most recently within
	// it are this worker's warm circuits (Keys). 0: no account is kept.
	PageCacheBudget int64
	// Observer is told what the key account does; optional.
	Observer keycache.Observer
}

// Command is a prover run as a child process.
type Command struct {
	run  proc.Runner
	argv []string
	cfg  CommandConfig
	keys *keycache.Cache // nil without a PageCacheBudget
}

// NewCommand returns a Command prover that starts children with run.
func NewCommand(run proc.Runner, cfg CommandConfig) (*Command, error) {
	if run == nil {
		return nil, errors.New("prover: NewCommand needs a proc.Runner")
	}
	argv, err := proc.ParseCommand(cfg.Command, cfg.Env)
	if errors.Is(err, proc.ErrEmptyCommand) {
		return nil, errors.New("prover: CommandConfig.Command is empty")
	}
	if cfg.Layout.ZkeyDir == "" {
		return nil, errors.New("prover: CommandConfig.Layout.ZkeyDir is empty")
	}
	if err != nil {
		return nil, fmt.Errorf("prover: %w", err)
	}
	if cfg.Layout, err = cfg.Layout.Abs(); err != nil {
		return nil, fmt.Errorf("prover: %w", err)
	}
	if cfg.PageCacheBudget < 0 {
		return nil, fmt.Errorf("prover: CommandConfig.PageCacheBudget must not be negative, got %d", cfg.PageCacheBudget)
	}
	c := &Command{run: run, argv: argv, cfg: cfg}
	if cfg.PageCacheBudget > 0 {
		c.keys, err = keycache.New(zkeys{layout: cfg.Layout, load: loadZkeyFile},
			keycache.Config{Budget: cfg.PageCacheBudget, Bookkeeping: true}, cfg.Observer)
		if err != nil {
			return nil, fmt.Errorf("prover: %w", err)
		}
	}
	return c, nil
}

// Keys is the account of the zkeys in the page cache; nil without a
// PageCacheBudget.
func (c *Command) Keys() *keycache.Cache { return c.keys }

// Argv is the resolved command prefix (for the start-up log).
func (c *Command) Argv() []string { return append([]string(nil), c.argv...) }

// Prove writes proof and public for the witness wtns of circuit, running in
// dir. All paths are absolute.
func (c *Command) Prove(ctx context.Context, circuit, dir, wtns, proof, public string) error {
	zkey := c.cfg.Layout.Zkey(circuit)
	if c.keys != nil {
		lease, err := c.keys.Acquire(ctx, circuit) // never waits: bookkeeping
		if err != nil {
			return err
		}
		defer lease.Release()
	} else if _, err := os.Stat(zkey); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNoKey, circuit, err)
	}
	args := append(append([]string(nil), c.argv[1:]...), zkey, wtns, proof, public)
	res, err := c.run.Run(ctx, proc.Cmd{
		Stage: "prove", Path: c.argv[0], Args: args, Dir: dir, Env: c.cfg.Env, Timeout: c.cfg.Timeout,
	})
	if err != nil {
		return &Failure{Said: proc.Excerpt(res.Stderr), Err: err}
	}
	for _, p := range []string{proof, public} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			return &Failure{Said: proc.Excerpt(res.Stderr),
				Err: fmt.Errorf("prove: exited 0 without writing %s", filepath.Base(p))}
		}
	}
	return nil
}

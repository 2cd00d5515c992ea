// Package apiproc runs prover-api, the deployed frontend, as a child of a
// benchmark against a fleet's NATS and Postgres: on free loopback ports,
// with a development attester whose root lives in a directory of its own,
// and with the per-source limits off (every client of a benchmark has the
// same address).
package apiproc

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/openpassport/prover-fleet/bench/internal/child"
	"github.com/openpassport/prover-fleet/internal/devfleet"
)

// Config says which prover-api to run and against what.
type Config struct {
	Binary              string
	Fleet               *devfleet.Fleet
	CircuitDir, ZkeyDir string
	// WorkDir receives the attester's directory (removed by Stop).
	WorkDir string
	// Args are more flags: the session table, timeouts, profiling.
	Args []string
	// Prefix, when set, is a command that runs the program (for example
	// taskset -c 1): it is started as Prefix[0] with Prefix[1:], the
	// binary and its flags as arguments, and must exec the binary so
	// that the process measured is prover-api.
	Prefix []string
}

// Process is a prover-api that answered /readyz.
type Process struct {
	*child.Process
	// Addr is its JSON-RPC address (host:port), Admin its admin address.
	Addr, Admin string
	// AttestDir holds its development attester's root (attest.NewDev
	// with the same directory verifies its documents).
	AttestDir string
}

// Start runs prover-api and waits (up to a minute) until it is ready. An
// *child.ExitedError says it exited during start-up.
func Start(ctx context.Context, cfg Config) (*Process, error) {
	addr, err := child.FreeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := child.FreeAddr()
	if err != nil {
		return nil, err
	}
	attestDir, err := os.MkdirTemp(cfg.WorkDir, "api-attest-")
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--server-address", addr, "--admin-address", admin, "--status-address", "127.0.0.1:0",
		"--database-url", cfg.Fleet.DatabaseURL(), "--nats-url", cfg.Fleet.NATSURL(),
		"--circuit-folder", cfg.CircuitDir, "--zkey-folder", cfg.ZkeyDir,
		"--attester", "dev", "--dev-attest-dir", attestDir, "--job-key-file", cfg.Fleet.JobKeyFile(),
		"--hello-rate", "0", "--max-sessions-per-source", "0", "--session-share", "0", "--max-connections-per-source", "0",
		"--log-level", "warn", "--log-format", "text",
	}, cfg.Args...)
	p, err := child.Start(ctx, child.Prefixed(cfg.Prefix, cfg.Binary, args...))
	if err != nil {
		os.RemoveAll(attestDir)
		return nil, fmt.Errorf("prover-api: %w", err)
	}
	if err := p.WaitReady(ctx, "http://"+admin+"/readyz", time.Minute); err != nil {
		p.Stop(time.Second)
		os.RemoveAll(attestDir)
		return nil, fmt.Errorf("prover-api: %w", err)
	}
	return &Process{Process: p, Addr: addr, Admin: admin, AttestDir: attestDir}, nil
}

// Stop stops prover-api (SIGTERM, then SIGKILL after grace) and removes
// its attester's directory.
func (p *Process) Stop(grace time.Duration) error {
	err := p.Process.Stop(grace)
	os.RemoveAll(p.AttestDir)
	return err
}

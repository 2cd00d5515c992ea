// Package e2e_test runs the whole fleet in the test process (internal/devfleet:
// embedded NATS JetStream, a throwaway PostgreSQL, the frontend, one worker
// pool per family) with the real demo circuits, and talks to it the way the
// phone app does, over the wire.
//
// The circuits and keys come from `make circuits keys`: PROVER_CIRCUITS and
// PROVER_ZKEYS (set by `make test`), else ../circuits/build and ../zkeys. A
// missing build fails the tests with what to run; they are skipped only
// under -short. Each family's workers prove another way (the native prover,
// snarkjs, zkprove), so one run covers every prover the worker can use
// here.
package e2e_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/internal/devfleet"
	"github.com/openpassport/prover-fleet/internal/snarkjs"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/worker/service"
)

// demo is one demo circuit and the request type the app would send for it.
type demo struct {
	circuit      string
	typ          family.ProofType
	endpointType string
	endpoint     string
}

func demos() []demo {
	return []demo{
		{circuit: "register_demo", typ: "register"},
		{circuit: "dsc_demo", typ: "dsc"},
		{circuit: "disclose_demo", typ: "disclose", endpointType: "staging_https", endpoint: "https://e2e.example/verify"},
	}
}

// env is the fleet shared by the tests of this package, and where its
// inputs are.
type env struct {
	fleet     *devfleet.Fleet
	logs      *syncBuffer
	circuits  string
	zkeys     string
	inputs    string
	snarkjs   string
	bin       string // programs built for the tests
	startErr  error
	startOnce sync.Once
}

// shared is the package's one fleet, started by the first test that needs
// it and stopped by TestMain. (A test binary's TestMain owns it; nothing
// else is package-level.)
var shared env

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if shared.bin != "" {
		defer os.RemoveAll(shared.bin)
	}
	if shared.fleet != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if err := shared.fleet.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stopping the fleet:", err)
			code = 1
		}
		cancel()
	}
	os.Exit(code)
}

// fleet returns the shared fleet, starting it on first use. It fails the
// test (skips it under -short) when the circuits are not built or a service
// cannot start.
func fleet(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end proofs with the real circuits are skipped under -short")
	}
	shared.startOnce.Do(shared.start)
	if shared.startErr != nil {
		t.Fatal(shared.startErr)
	}
	return &shared
}

func (e *env) start() {
	e.circuits = dirFromEnv("PROVER_CIRCUITS", filepath.Join("..", "circuits", "build"))
	e.zkeys = dirFromEnv("PROVER_ZKEYS", filepath.Join("..", "zkeys"))
	e.inputs = dirFromEnv("PROVER_INPUTS", filepath.Join(filepath.Dir(e.circuits), "inputs"))
	var missing []string
	for _, d := range demos() {
		for _, p := range []string{
			filepath.Join(e.circuits, d.circuit+"_cpp", d.circuit),
			filepath.Join(e.zkeys, d.circuit+".zkey"),
			filepath.Join(e.zkeys, d.circuit+".vkey.json"),
			filepath.Join(e.inputs, d.circuit+".json"),
		} {
			if _, err := os.Stat(p); err != nil {
				missing = append(missing, p)
			}
		}
	}
	sj, err := snarkjs.Find(e.circuits)
	if err != nil {
		missing = append(missing, "snarkjs (circuits/node_modules/.bin/snarkjs)")
	}
	e.snarkjs = sj
	if len(missing) > 0 {
		e.startErr = fmt.Errorf("the end-to-end tests need the demo circuits, their keys and snarkjs; missing:\n  %s\n"+
			"run `make circuits keys` (or `make test`, which builds them), or set PROVER_CIRCUITS and PROVER_ZKEYS",
			strings.Join(missing, "\n  "))
		return
	}
	// zkprove, the project's rapidsnark-shaped prover command.
	e.bin, err = os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		e.startErr = err
		return
	}
	zkprove := filepath.Join(e.bin, "zkprove")
	if out, err := exec.Command("go", "build", "-o", zkprove, "../cmd/zkprove").CombinedOutput(); err != nil {
		e.startErr = fmt.Errorf("build cmd/zkprove: %v\n%s", err, out)
		return
	}

	e.logs = &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Not a test's context: the shared fleet outlives the test that starts it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.fleet, e.startErr = devfleet.Start(ctx, devfleet.Config{
		CircuitDir: e.circuits,
		ZkeyDir:    e.zkeys,
		Logger:     logger,
		NoWorkers:  true,
	})
	if e.startErr != nil {
		e.startErr = fmt.Errorf("start the fleet: %w", e.startErr)
		return
	}
	// Each family proves another way, so one run covers them all: the
	// in-process prover and verifier; snarkjs as child processes (prove and
	// verify); zkprove as a child process with the native verifier.
	for fam, configure := range map[family.Family]func(*service.Config){
		family.Register: func(c *service.Config) { c.ProverMode, c.Verifier = service.ProverNative, service.VerifierNative },
		family.DSC: func(c *service.Config) {
			c.ProverMode, c.Prover, c.Verifier = service.ProverCommand, e.snarkjs+" groth16 prove", e.snarkjs+" groth16 verify"
		},
		family.Disclose: func(c *service.Config) {
			c.ProverMode, c.Prover, c.Verifier = service.ProverCommand, zkprove, service.VerifierNative
		},
	} {
		if _, err := e.fleet.AddWorkers(ctx, fam, configure); err != nil {
			e.startErr = fmt.Errorf("start the %s workers: %w", fam, err)
			return
		}
	}
}

func dirFromEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

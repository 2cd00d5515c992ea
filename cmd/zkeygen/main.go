// Command zkeygen makes a DEVELOPMENT Groth16 proving key (.zkey) and
// verifying key (vkey.json) for a circom circuit:
//
//	zkeygen -r1cs circuit.r1cs -zkey circuit.zkey -vkey circuit.vkey.json -seed STRING
//
// WARNING: every secret of the setup (tau, alpha, beta, gamma, delta) is
// derived from -seed. Anyone who knows the seed can forge proofs that
// verify. Use it for development, tests and demos only; production keys
// come from a powers-of-tau ceremony and snarkjs zkey contributions.
//
// The .zkey is laid out as snarkjs's "groth16 setup" would lay it out, so
// snarkjs, rapidsnark and zkprove all prove with it, and the vkey.json is
// what "snarkjs zkey export verificationkey" would print for it. The same
// r1cs and seed always give the same files. Outputs are written to a
// temporary file and renamed into place.
//
// Exit status: 0 on success, 1 on error, 2 on bad usage.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/groth16/r1cs"
	"github.com/openpassport/prover-fleet/shared/groth16/zkey"
)

// errUsage marks bad command-line usage (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "zkeygen:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "zkeygen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("zkeygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	r1csPath := fs.String("r1cs", "", "circom constraint system to make a key for (required)")
	zkeyPath := fs.String("zkey", "", "proving key to write, snarkjs .zkey format (required)")
	vkeyPath := fs.String("vkey", "", "verifying key to write, snarkjs vkey.json format (required)")
	seed := fs.String("seed", "", "secret the setup is derived from; anyone who knows it can forge proofs (required)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: zkeygen -r1cs circuit.r1cs -zkey circuit.zkey -vkey circuit.vkey.json -seed STRING")
		fmt.Fprintln(stderr, groth16.DevSetupWarning)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	switch {
	case fs.NArg() != 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case *r1csPath == "" || *zkeyPath == "" || *vkeyPath == "":
		return fmt.Errorf("%w: -r1cs, -zkey and -vkey are required", errUsage)
	case *seed == "":
		return fmt.Errorf("%w: -seed is required (and must be non-empty)", errUsage)
	}

	fmt.Fprintln(stderr, "WARNING:", groth16.DevSetupWarning)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	sys, err := r1cs.ReadFile(ctx, *r1csPath)
	if err != nil {
		return fmt.Errorf("read r1cs: %w", err)
	}
	nCons, nWires, nPub := len(sys.Constraints), sys.NWires, sys.NPublic()
	k, vk, err := groth16.DevSetup(ctx, sys, []byte(*seed))
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	err = writeFileAtomic(*zkeyPath, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		if err := zkey.Write(bw, k); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("write zkey: %w", err)
	}
	vkJSON, err := vk.MarshalJSON()
	if err != nil {
		return err
	}
	err = writeFileAtomic(*vkeyPath, func(w io.Writer) error {
		_, err := w.Write(vkJSON)
		return err
	})
	if err != nil {
		return fmt.Errorf("write vkey: %w", err)
	}
	fmt.Fprintf(stderr, "zkeygen: %d constraints, %d wires, %d public signals, domain 2^%d; wrote %s and %s in %s\n",
		nCons, nWires, nPub, log2(k.DomainSize), *zkeyPath, *vkeyPath,
		time.Since(start).Round(time.Millisecond))
	return nil
}

func log2(n uint32) int {
	l := 0
	for n > 1 {
		n >>= 1
		l++
	}
	return l
}

// writeFileAtomic writes through fill into a temporary file beside path,
// syncs it and renames it over path.
func writeFileAtomic(path string, fill func(io.Writer) error) (err error) {
	dir, base := ".", path
	for i := len(path) - 1; i >= 0; i-- {
		if os.IsPathSeparator(path[i]) {
			dir, base = path[:i+1], path[i+1:]
			break
		}
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = fill(f); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

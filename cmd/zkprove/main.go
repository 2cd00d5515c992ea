// Command zkprove makes a Groth16 proof with the same arguments and outputs
// as rapidsnark's prover:
//
//	zkprove <circuit.zkey> <witness.wtns> <proof.json> <public.json>
//
// It maps a snarkjs Groth16 .zkey (BN254) read-only and uses its points in
// place (groth16.LoadProvingKey: no copy of the key on the heap, its pages
// shared with the page cache), reads a circom .wtns, proves on every CPU,
// and writes proof.json and public.json exactly as snarkjs/rapidsnark do. Each
// output is written to a temporary file in the same directory and renamed
// into place, so a reader never sees a partial file. The proof is checked
// against the key before it is written: a witness that does not satisfy the
// circuit produces no files.
//
// Exit status: 0 on success, 1 on any error (message on stderr), 2 on bad
// usage.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
)

const usage = "usage: zkprove <circuit.zkey> <witness.wtns> <proof.json> <public.json>"

// errUsage marks bad command-line usage (exit status 2).
var errUsage = errors.New(usage)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "zkprove:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprintln(stderr, usage)
		return nil
	}
	if len(args) != 4 {
		return errUsage
	}
	zkeyPath, wtnsPath, proofPath, publicPath := args[0], args[1], args[2], args[3]

	pk, err := groth16.LoadProvingKey(ctx, zkeyPath)
	if err != nil {
		return fmt.Errorf("load proving key: %w", err)
	}
	witness, err := wtns.ReadFile(ctx, wtnsPath)
	if err != nil {
		return fmt.Errorf("read witness: %w", err)
	}
	proof, public, err := groth16.Prove(ctx, pk, witness)
	if err != nil {
		return fmt.Errorf("prove: %w", err)
	}
	proofJSON, err := proof.MarshalJSON()
	if err != nil {
		return err
	}
	publicJSON, err := public.MarshalJSON()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(proofPath, proofJSON); err != nil {
		return fmt.Errorf("write proof: %w", err)
	}
	if err := writeFileAtomic(publicPath, publicJSON); err != nil {
		return fmt.Errorf("write public signals: %w", err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path.
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := splitPath(path)
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
	if _, err = f.Write(data); err != nil {
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

func splitPath(path string) (dir, base string) {
	for i := len(path) - 1; i >= 0; i-- {
		if os.IsPathSeparator(path[i]) {
			return path[:i+1], path[i+1:]
		}
	}
	return ".", path
}

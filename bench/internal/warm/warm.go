// Package warm is the native prover held warm in one process: it loads a
// proving key once and proves the same witness repeatedly, reporting the
// load and each proof's time. It runs as its own small program
// (bench/internal/cmd/warmprove) so that its peak memory is its own.
package warm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
)

// Report is what the warm prover prints on stdout.
type Report struct {
	LoadNS  int64   `json:"load_ns"`
	ProveNS []int64 `json:"prove_ns"`
}

// Main loads the proving key once and then proves n times: each proof
// reads the .wtns file, proves (groth16.Prove checks its own proof) and
// writes proof.json and public.json into outdir, as a worker holding the key
// warm would per job. It prints a warmReport on stdout.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 4 {
		return errors.New("usage: warmprove <zkey> <wtns> <outdir> <n>")
	}
	zkeyPath, wtnsPath, outDir := args[0], args[1], args[2]
	n, err := strconv.Atoi(args[3])
	if err != nil || n < 1 {
		return fmt.Errorf("n must be a positive integer, got %q", args[3])
	}
	start := time.Now()
	pk, err := groth16.LoadProvingKey(ctx, zkeyPath)
	if err != nil {
		return fmt.Errorf("load proving key: %w", err)
	}
	rep := Report{LoadNS: int64(time.Since(start))}
	for range n {
		t := time.Now()
		if err := proveOnce(ctx, pk, wtnsPath, outDir); err != nil {
			return err
		}
		rep.ProveNS = append(rep.ProveNS, int64(time.Since(t)))
	}
	return json.NewEncoder(stdout).Encode(rep)
}

func proveOnce(ctx context.Context, pk *groth16.ProvingKey, wtnsPath, outDir string) error {
	w, err := wtns.ReadFile(ctx, wtnsPath)
	if err != nil {
		return fmt.Errorf("read witness: %w", err)
	}
	proof, public, err := groth16.Prove(ctx, pk, w)
	if err != nil {
		return fmt.Errorf("prove: %w", err)
	}
	pj, err := proof.MarshalJSON()
	if err != nil {
		return err
	}
	sj, err := public.MarshalJSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(outDir, "proof.json"), pj, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(outDir, "public.json"), sj, 0o644)
}

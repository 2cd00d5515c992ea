// Package warm is the native prover held warm in one process: it loads a
// proving key once and proves the same witness repeatedly, reporting the
// load and each proof's time, one proof per request on stdin. It runs as its own small program
// (bench/internal/cmd/warmprove) so that its peak memory is its own.
package warm

import (
	"bufio"
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

// Line is one line the warm prover prints on stdout: first the key load
// (LoadNS), then one per proof asked for (ProveNS).
type Line struct {
	LoadNS  int64 `json:"load_ns,omitempty"`
	ProveNS int64 `json:"prove_ns,omitempty"`
	// With a table budget, the load line also says what groth16's Warm
	// built and how long it took (not included in LoadNS).
	WarmNS     int64    `json:"warm_ns,omitempty"`
	TableBytes int64    `json:"table_bytes,omitempty"`
	Tables     []string `json:"tables,omitempty"`
}

// Main loads the proving key, prints its load time, then proves once for
// every line read from stdin until EOF, printing each proof's time. A proof
// reads the .wtns file, proves (groth16.Prove checks its own proof) and
// writes proof.json and public.json into outdir, as a worker holding the key
// warm does per job. Asking line by line lets the benchmark interleave warm
// proofs with the other provers' runs.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 3 && len(args) != 4 {
		return errors.New("usage: warmprove <zkey> <wtns> <outdir> [table-budget-bytes]  (one proof per line on stdin)")
	}
	zkeyPath, wtnsPath, outDir := args[0], args[1], args[2]
	var budget int64
	if len(args) == 4 {
		var err error
		if budget, err = strconv.ParseInt(args[3], 10, 64); err != nil || budget < 0 {
			return fmt.Errorf("table budget %q: want a number of bytes >= 0", args[3])
		}
	}
	start := time.Now()
	pk, err := groth16.LoadProvingKey(ctx, zkeyPath)
	if err != nil {
		return fmt.Errorf("load proving key: %w", err)
	}
	first := Line{LoadNS: max(1, int64(time.Since(start)))}
	if budget > 0 {
		st, err := pk.Warm(ctx, budget)
		if err != nil {
			return fmt.Errorf("warm the proving key: %w", err)
		}
		first.WarmNS, first.TableBytes, first.Tables = max(1, int64(st.Duration)), st.TableBytes, st.Tables
	}
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(first); err != nil {
		return err
	}
	in := bufio.NewScanner(stdin)
	for in.Scan() {
		t := time.Now()
		if err := proveOnce(ctx, pk, wtnsPath, outDir); err != nil {
			return err
		}
		if err := enc.Encode(Line{ProveNS: max(1, int64(time.Since(t)))}); err != nil {
			return err
		}
	}
	return in.Err()
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

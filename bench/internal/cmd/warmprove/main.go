// Command warmprove is the benchmark's warm in-process prover (package
// bench/internal/warm) as a small program of its own:
//
//	warmprove <zkey> <wtns> <outdir> [table-budget-bytes]    (then one line on stdin per proof)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/openpassport/prover-fleet/bench/internal/warm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := warm.Main(ctx, os.Args[1:], os.Stdin, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "warmprove:", err)
		os.Exit(1)
	}
}

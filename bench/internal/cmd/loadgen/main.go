// Command loadgen is the frontend benchmark's load generator, run as a
// process of its own so that its cryptography and its sockets are not in
// the frontend's CPU time: it reads a frontend.LoadSpec as JSON on standard
// input and runs frontend.RunLoad, which prints the measurement window's
// markers and the result on standard output.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/openpassport/prover-fleet/bench/internal/frontend"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var spec frontend.LoadSpec
	if err := json.NewDecoder(os.Stdin).Decode(&spec); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: spec:", err)
		os.Exit(2)
	}
	if err := frontend.RunLoad(ctx, spec, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// Command bareapi is the frontend benchmark's floor: the thinnest Go
// server of a hello+submit pair (frontend.ServeBare), run as a process of
// its own and measured like prover-api. It listens on -addr until it is
// interrupted, with a development attester whose root is in -attest-dir.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/openpassport/prover-fleet/bench/internal/frontend"
	"github.com/openpassport/prover-fleet/shared/attest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	dir := flag.String("attest-dir", "", "the development attester's root directory (required)")
	flag.Parse()
	if err := run(*addr, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "bareapi:", err)
		os.Exit(1)
	}
}

func run(addr, dir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	attester, err := attest.NewDev(attest.DevConfig{Dir: dir, ModuleID: "prover-api-dev"})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return frontend.ServeBare(ctx, ln, attester)
}

// Command prover-api is the frontend of the prover fleet: the phone app's
// JSON-RPC endpoint (WebSocket and HTTP POST), which checks each request,
// records it in Postgres and queues it on NATS JetStream for the workers.
// See api/server for what it does and api/internal/config for its flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/openpassport/prover-fleet/api/internal/config"
)

func main() {
	cfg, err := config.Parse(os.Args[1:], os.LookupEnv, os.Stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "prover-api:", err)
		os.Exit(2)
	}
	log := config.NewLogger(cfg, os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("prover-api stopped", "err", err)
		os.Exit(1)
	}
}

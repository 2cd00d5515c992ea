// Command proverctl is the prover fleet's command-line tool: it runs the
// whole fleet on one machine (dev, demo), prepares production servers
// (migrate), and talks to a frontend the way the phone app does (submit,
// status, cancel). Run `proverctl help` for the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], stdio{out: os.Stdout, err: os.Stderr, env: os.LookupEnv})
	stop()
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "proverctl:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "proverctl:", err)
		os.Exit(1)
	}
}

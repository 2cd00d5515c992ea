// Command abuse is the frontend's load-and-abuse test (`make abuse`): real
// processes — prover-api built from this tree, a throwaway PostgreSQL,
// nats-server built from the pinned module, and a load generator (this
// program again, in its own process) — and the floods a hostile client
// would try, while a legitimate client submits throughout:
//
//   - a hello flood from one source (client address), then one from many
//     sources at once (loopback has 127.0.0.0/8: each client socket is bound
//     to its own 127.x.y.z);
//   - thousands of idle WebSockets (which answer pings), more that never
//     answer one, one source opening far more than its share, and slow
//     clients that send requests but never read the answers;
//   - the legitimate client: hello, full attestation check, encrypt, submit,
//     over WebSocket and HTTP, from a source of its own.
//
// It reports refused and served per source, the legitimate client's
// success and latency, what the frontend's metrics counted, and the
// frontend's resident memory before, during and after; and it fails (exit
// status 1) when a check does not hold: the legitimate client must always be
// served, no source beyond its share, every idle socket closed within its
// deadline, every slow reader dropped, memory bounded and back down after.
//
//	go run ./e2e/abuse            # full size (~3-5 min on 2 cores)
//	go run ./e2e/abuse -quick     # reduced size (CI)
//
// The open-file limit is raised to what the run needs (as root, or up to
// the hard limit) and reported; each process inherits it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == loadgenRole {
		os.Exit(runLoadgen(os.Stdin, os.Stdout, os.Stderr))
	}
	var o options
	fs := flag.NewFlagSet("abuse", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "reduced sizes (CI): 10k hellos per flood, 1,000 idle WebSockets, shorter timeouts")
	fs.StringVar(&o.out, "out", "", "write results.md and results.json here (default: a temporary directory)")
	fs.StringVar(&o.bin, "bin", "", "use this prover-api binary instead of building one")
	fs.BoolVar(&o.verbose, "v", false, "the frontend's log and the load generator's progress on stderr")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, o)
	var failed *checksFailed
	switch {
	case errors.As(err, &failed):
		fmt.Fprintln(os.Stderr, "abuse:", err)
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "abuse:", err)
		os.Exit(1)
	}
}

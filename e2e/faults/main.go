// Command faults is the fleet's fault suite (`make faults`): it starts real
// processes — a PostgreSQL server, standalone nats-server (one, or a 3-node
// JetStream cluster with the stream at R3), prover-api and several
// prover-workers, all built from the tree — sends proof requests through the
// frontend as the app does, injects one fault per scenario while they flow,
// and then judges the outcome from the proofs table: every request the
// frontend accepted must end terminal (a verified proof, or failed with a
// reason), none recorded twice, and no process or private file may outlive
// its worker.
//
//	go run ./e2e/faults -bin bin -size ci
//	go run ./e2e/faults -bin bin -scenarios pg-outage,nats-outage -requests 300 -duration 2m
//
// It prints a block per scenario and a summary table, and exits 1 if any
// scenario has a stuck, lost, double-recorded or refused request, an
// invalid proof, an orphan process or a leftover private file. See
// e2e/faults/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "faults: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	passed, err := run(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "faults: %v\n", err)
		stop()
		os.Exit(2)
	}
	if !passed {
		stop()
		os.Exit(1)
	}
}

// config is the suite's settings.
type config struct {
	bin       string
	circuits  string
	zkeys     string
	inputs    string
	dir       string // run directory ("" = a temporary one)
	keep      bool
	scenarios []string
	report    string // also write the report (markdown) here
	size
}

// size is how big each scenario is.
type size struct {
	name       string
	requests   int           // requests per scenario: a third in a burst just before the fault
	duration   time.Duration // over which the others are sent
	workers    int           // prover-workers (half direct, half through a wrapper)
	proveDelay time.Duration // the prover sleeps this long first (so kills find it running)
	outage     time.Duration // how long PostgreSQL / NATS / a node stays down
	ackWait    time.Duration // the consumer's AckWait (proverctl migrate --ack-wait)
	retryDelay time.Duration // the app's wait before it retries a failed submit
	giveUp     time.Duration // the app stops retrying this long after its first try
	settle     time.Duration // after the load, how long requests may take to end
}

var sizes = map[string]size{
	// About 15 minutes on 2 cores when every scenario passes.
	"full": {requests: 200, duration: 80 * time.Second, workers: 6, proveDelay: 2 * time.Second,
		outage: 20 * time.Second, ackWait: 30 * time.Second, retryDelay: 30 * time.Second,
		giveUp: 4 * time.Minute, settle: 5 * time.Minute},
	// CI: a few minutes on 2 cores.
	"ci": {requests: 40, duration: 20 * time.Second, workers: 4, proveDelay: 2 * time.Second,
		outage: 20 * time.Second, ackWait: 10 * time.Second, retryDelay: 30 * time.Second,
		giveUp: 4 * time.Minute, settle: 3 * time.Minute},
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("faults", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var sizeName, scenarios string
	var requests int
	var duration, outage, settle, ackWait, retryDelay time.Duration
	fs.StringVar(&c.bin, "bin", "bin", "directory holding prover-api, prover-worker, proverctl, zkprove and nats-server (make faults builds them)")
	fs.StringVar(&c.circuits, "c", envOr("PROVER_CIRCUITS", "circuits/build"), "circuit folder [PROVER_CIRCUITS]")
	fs.StringVar(&c.zkeys, "k", envOr("PROVER_ZKEYS", "zkeys"), "zkey folder [PROVER_ZKEYS]")
	fs.StringVar(&c.inputs, "inputs", envOr("PROVER_INPUTS", "circuits/inputs"), "sample inputs folder [PROVER_INPUTS]")
	fs.StringVar(&c.dir, "dir", "", "run directory (logs, data); default a temporary one, removed when every scenario passed")
	fs.BoolVar(&c.keep, "keep", false, "keep the run directory even when every scenario passed")
	fs.StringVar(&sizeName, "size", "full", "full or ci (sizes below override it)")
	fs.StringVar(&scenarios, "scenarios", "all", "comma-separated scenarios, or all: "+strings.Join(scenarioNames(), ", "))
	fs.StringVar(&c.report, "report", "", "also write the report as markdown to this file")
	fs.IntVar(&requests, "requests", 0, "requests per scenario")
	fs.DurationVar(&duration, "duration", 0, "time over which each scenario's requests are sent")
	fs.DurationVar(&outage, "outage", 0, "how long PostgreSQL, NATS or a cluster node stays down")
	fs.DurationVar(&settle, "settle", 0, "after the load, how long accepted requests may take to end")
	fs.DurationVar(&ackWait, "ack-wait", 0, "the consumers' AckWait")
	fs.DurationVar(&retryDelay, "retry-delay", 0, "the app's wait before retrying a failed submit")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	sz, ok := sizes[sizeName]
	if !ok {
		return c, fmt.Errorf("-size must be full or ci, got %q", sizeName)
	}
	sz.name = sizeName
	setIf(&sz.requests, requests)
	setIf(&sz.duration, duration)
	setIf(&sz.outage, outage)
	setIf(&sz.settle, settle)
	setIf(&sz.ackWait, ackWait)
	setIf(&sz.retryDelay, retryDelay)
	c.size = sz
	if c.requests < 1 || c.duration <= 0 {
		return c, errors.New("-requests and -duration must be positive")
	}
	if scenarios == "all" {
		c.scenarios = scenarioNames()
	} else {
		for _, s := range strings.Split(scenarios, ",") {
			s = strings.TrimSpace(s)
			if findScenario(s) == nil {
				return c, fmt.Errorf("unknown scenario %q (known: %s)", s, strings.Join(scenarioNames(), ", "))
			}
			c.scenarios = append(c.scenarios, s)
		}
	}
	for _, p := range []*string{&c.bin, &c.circuits, &c.zkeys, &c.inputs} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return c, err
		}
		*p = abs
	}
	return c, nil
}

func setIf[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/openpassport/prover-fleet/internal/devfleet"
)

func runDev(ctx context.Context, args []string, std stdio) error {
	var (
		ff           fleetFlags
		listen       string
		adminListen  string
		statusListen string
		natsPort     int
		stateDir     string
		noWorkers    bool
	)
	f := newFlags("dev", "", "Runs the whole fleet on this machine (embedded NATS JetStream, DATABASE_URL or a throwaway\n"+
		"PostgreSQL, migrations, the frontend, the Socket.IO status relay, one worker pool per family) until SIGINT or SIGTERM.", std)
	f.StringVar(&listen, "listen", devfleet.DevListen, "address of the frontend (WebSocket and HTTP POST)")
	f.bind("listen", "PROVERCTL_LISTEN")
	f.StringVar(&statusListen, "status-listen", devfleet.DevStatusListen, "address of the Socket.IO status relay (path /)")
	f.bind("status-listen", "PROVERCTL_STATUS_LISTEN")
	f.StringVar(&adminListen, "admin-listen", "127.0.0.1:9090", "address of /metrics, /healthz and /readyz")
	f.bind("admin-listen", "PROVERCTL_ADMIN_LISTEN")
	f.IntVar(&natsPort, "nats-port", 0, "port of the embedded NATS server on 127.0.0.1 (0: a free port)")
	f.bind("nats-port", "PROVERCTL_NATS_PORT")
	f.StringVar(&stateDir, "state-dir", "", "keep the development attestation root here between runs (default: a temporary directory)")
	f.bind("state-dir", "PROVERCTL_STATE_DIR")
	f.BoolVar(&noWorkers, "no-workers", false, "start no worker pools (only the frontend and the queue)")
	ff.register(f, "info")
	if err := f.parse(args, std); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return usagef("dev takes no arguments, got %q", f.Args())
	}
	cfg, err := ff.config(std.err)
	if err != nil {
		return err
	}
	cfg.Listen, cfg.AdminListen, cfg.NATSPort, cfg.StateDir, cfg.NoWorkers = listen, adminListen, natsPort, stateDir, noWorkers
	cfg.StatusListen = statusListen

	fleet, err := devfleet.Start(ctx, cfg)
	if err != nil {
		return err
	}
	printDevBanner(std, fleet)

	<-ctx.Done()
	fmt.Fprintln(std.out, "\nshutting down...")
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := fleet.Stop(stopCtx); err != nil {
		return err
	}
	fmt.Fprintln(std.out, "stopped; everything this run started is removed.")
	return nil
}

func printDevBanner(std stdio, fleet *devfleet.Fleet) {
	cfg := fleet.Config()
	db := "throwaway PostgreSQL, removed on exit"
	if !fleet.ThrowawayPostgres() {
		db = "DATABASE_URL"
	}
	circuits := fleet.Frontend().Circuits()
	list := strings.Join(circuits, ", ")
	if len(circuits) == 0 {
		list = "none found (run `make circuits keys`)"
	}
	w := std.out
	fmt.Fprintf(w, "prover fleet (development) is running; Ctrl-C stops it.\n\n")
	fmt.Fprintf(w, "  WebSocket URL      %s\n", fleet.WSURL())
	fmt.Fprintf(w, "  HTTP URL           %s  (JSON-RPC over POST; GET %sv1/proofs/{uuid})\n", fleet.HTTPURL(), fleet.HTTPURL())
	fmt.Fprintf(w, "  status relay (Socket.IO): %s (path /)\n", fleet.StatusURL())
	fmt.Fprintf(w, "  metrics URL        %s  (also /healthz, /readyz)\n", fleet.MetricsURL())
	fmt.Fprintf(w, "  attestation        %s\n", describeAttester(fleet))
	fmt.Fprintf(w, "  attestation root   %s  (development root, PEM)\n", fleet.RootPEMPath())
	if fleet.Attester() == devfleet.AttesterDevGCP {
		fmt.Fprintf(w, "  image digest       %s\n", fleet.ImageDigest())
	} else {
		fmt.Fprintf(w, "  attestation PCR0   %s\n", hex.EncodeToString(fleet.PCR0()))
	}
	fmt.Fprintf(w, "  NATS URL           %s\n", fleet.NATSURL())
	fmt.Fprintf(w, "  database           %s  (%s)\n", redactURL(fleet.DatabaseURL()), db)
	fmt.Fprintf(w, "  fleet job key      %s\n", fleet.JobKeyFile())
	fmt.Fprintf(w, "  circuits           %s\n", list)
	if cfg.NoWorkers {
		fmt.Fprintf(w, "  workers            none (--no-workers)\n")
	} else {
		fmt.Fprintf(w, "  workers            one pool per family (%s): %s\n", familyList(fleet), describeProver(cfg))
	}
	fmt.Fprintf(w, "\nTry:\n  proverctl submit --url %s --root-pem %s %s \\\n"+
		"      --type register --circuit register_demo --inputs circuits/inputs/register_demo.json --wait\n\n",
		fleet.WSURL(), fleet.RootPEMPath(), submitPolicy(fleet))
}

// describeAttester says which development attester the fleet runs.
func describeAttester(fleet *devfleet.Fleet) string {
	if fleet.Attester() == devfleet.AttesterDevGCP {
		return "dev-gcp: Confidential Space PKI tokens (debug status), signed by a development root"
	}
	return "dev-nitro: Nitro attestation documents, signed by a development root"
}

// submitPolicy is the proverctl submit flags that trust this fleet's
// attestations.
func submitPolicy(fleet *devfleet.Fleet) string {
	if fleet.Attester() == devfleet.AttesterDevGCP {
		return "--image-digest " + fleet.ImageDigest() + " --allow-debug"
	}
	return "--pcr0 " + hex.EncodeToString(fleet.PCR0())
}

func familyList(fleet *devfleet.Fleet) string {
	var s []string
	for _, f := range fleet.Families() {
		s = append(s, string(f))
	}
	return strings.Join(s, ", ")
}

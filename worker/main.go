// Command prover-worker proves one family's jobs from the JetStream queue:
// witness, proof, verification, status row. See worker/service for the pool
// and worker/internal/config for flags and environment variables.
//
//	prover-worker --family register --concurrency 2 \
//	    -c circuits/build -k zkeys -r /opt/rapidsnark/prover \
//	    --nats-url nats://nats:4222 -d postgres://prover@db/proofs \
//	    --job-key-file /run/secrets/fleet-key
//
// SIGTERM or SIGINT stops it gracefully (see service.Service.Run); a second
// signal is not needed and is ignored until the grace runs out.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/openpassport/prover-fleet/internal/admin"
	"github.com/openpassport/prover-fleet/internal/connect"
	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/vsockdial"
	"github.com/openpassport/prover-fleet/worker/internal/config"
	"github.com/openpassport/prover-fleet/worker/service"
)

func main() {
	cfg, err := config.Parse(os.Args[1:], os.LookupEnv, os.Stderr)
	if errors.Is(err, pflag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "prover-worker: %v\n%s\n", err, config.Usage())
		os.Exit(2)
	}
	logger := cfg.Logger(os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg, logger); err != nil {
		logger.Error("prover-worker failed", "err", err)
		stop()
		os.Exit(1)
	}
}

// run connects, serves until ctx ends, and shuts down in order: the Service
// stops fetching and settles its jobs, then the admin server stops, NATS is
// drained and the database pool closed.
func run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	zkeys, err := circuitdir.LoadZkeyMap(cfg.ZkeyMapFile)
	if err != nil {
		return err
	}
	cfg.Service.ZkeyNames = zkeys
	key, err := job.LoadKeyFile(cfg.JobKeyFile)
	if err != nil {
		return err
	}
	cfg.Service.JobKey = key

	nc, js, err := connect.NATS(connect.NATSConfig{URL: cfg.NATSURL, Target: cfg.NATSTarget,
		Name: "prover-worker " + string(cfg.Service.Family), Logger: log})
	if err != nil {
		return err
	}
	defer connect.Drain(nc, log)

	pool, err := connect.Postgres(ctx, connect.PostgresConfig{URL: cfg.DatabaseURL, Target: cfg.DatabaseTarget})
	if err != nil {
		return err
	}
	defer pool.Close()

	svc, err := service.New(cfg.Service, service.Deps{Pool: pool, JS: js, NC: nc, Logger: log})
	if err != nil {
		return err
	}

	// The admin port takes no work, so it stays up (readyz answering 503)
	// until the jobs are settled, then closes before the connections do.
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	adminDone := make(chan struct{})
	if cfg.AdminAddress != "" {
		ln, err := vsockdial.Listen(cfg.AdminAddress) // host:port, or vsock://:PORT inside an enclave
		if err != nil {
			stopAdmin()
			return fmt.Errorf("--admin-address: %w", err)
		}
		go func() {
			defer close(adminDone)
			if err := admin.Serve(adminCtx, ln, svc.Handler()); err != nil {
				log.Error("admin server", "err", err)
			}
		}()
		log.Info("admin server listening", "component", "admin", "address", ln.Addr().String())
	} else {
		close(adminDone)
	}

	err = svc.Run(ctx)
	stopAdmin()
	<-adminDone
	return err
}

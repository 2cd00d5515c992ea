package service_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/worker/service"
)

// Embedding one pool per family in a program of your own (as proverctl dev
// does). The connections are the caller's: it drains NATS and closes the
// pool after every Run has returned. (Compiled, not run: it needs servers.)
func Example() {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		logger.Error("nats", "err", err)
		return
	}
	defer nc.Drain()
	js, _ := jetstream.New(nc)
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		logger.Error("postgres", "err", err)
		return
	}
	defer pool.Close()
	key, err := job.LoadKeyFile("/run/secrets/fleet-key")
	if err != nil {
		logger.Error("fleet key", "err", err)
		return
	}

	// Build every pool first, so a bad setting stops the program before any
	// job runs.
	var svcs []*service.Service
	for _, f := range family.All() {
		svc, err := service.New(service.Config{
			Family:      f,
			Concurrency: 2,
			CircuitDir:  "circuits/build",
			ZkeyDir:     "zkeys",
			ProverMode:  service.ProverNative,
			JobKey:      key,
		}, service.Deps{Pool: pool, JS: js, NC: nc, Logger: logger})
		if err != nil {
			logger.Error("worker", "family", f, "err", err)
			return
		}
		svcs = append(svcs, svc)
	}
	done := make(chan error, len(svcs))
	for _, svc := range svcs {
		go func() { done <- svc.Run(ctx) }() // returns after a graceful stop
	}
	for range svcs {
		if err := <-done; err != nil {
			logger.Error("worker stopped", "err", err)
		}
	}
}

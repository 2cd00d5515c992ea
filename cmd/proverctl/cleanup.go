package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openpassport/prover-fleet/shared/store"
)

func runCleanup(ctx context.Context, args []string, std stdio) error {
	var (
		dbURL     string
		olderThan time.Duration
		strip     bool
		timeout   time.Duration
	)
	f := newFlags("cleanup", "", "Retention: deletes terminal rows (status 2..5) of the proofs table last updated longer ago than\n"+
		"--older-than, or with --strip-proofs keeps them and clears their proof and public inputs. Works in\n"+
		"batches of 1000; run it periodically (cron, a Kubernetes CronJob).", std)
	f.StringVarP(&dbURL, "database-url", "d", "", "PostgreSQL URL (required)")
	f.bind("database-url", "DATABASE_URL")
	f.DurationVar(&olderThan, "older-than", 7*24*time.Hour, "age of the terminal rows to clean up")
	f.bind("older-than", "PROVERCTL_RETENTION")
	f.BoolVar(&strip, "strip-proofs", false, "keep the rows, clear proof and public_inputs")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	if err := f.parse(args, std); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return usagef("cleanup takes no arguments, got %q", f.Args())
	}
	if dbURL == "" {
		return usagef("missing --database-url (DATABASE_URL)")
	}
	if olderThan <= 0 {
		return usagef("--older-than must be positive, got %s", olderThan)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("database %s: %w", redactURL(dbURL), err)
	}
	defer pool.Close()
	mode, what := store.DeleteRows, "deleted"
	if strip {
		mode, what = store.StripProofs, "stripped of their proofs"
	}
	cutoff := time.Now().Add(-olderThan)
	n, err := store.New(pool).Cleanup(ctx, cutoff, mode)
	if err != nil {
		return err
	}
	fmt.Fprintf(std.out, "%d terminal rows last updated before %s %s\n", n, cutoff.UTC().Format(time.RFC3339), what)
	return nil
}

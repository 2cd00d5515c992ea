package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/internal/migrate"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
)

func runMigrate(ctx context.Context, args []string, std stdio) error {
	def := jobqueue.DefaultConfig()
	var (
		dbURL, natsURL, families string
		q                        = def
		timeout                  time.Duration
	)
	f := newFlags("migrate", "", "Applies the SQL migrations (each in its own transaction, under an advisory lock) and creates or\n"+
		"updates the proof-job stream and one consumer per family. Safe to run again: it is idempotent.", std)
	f.StringVarP(&dbURL, "database-url", "d", "", "PostgreSQL URL (required)")
	f.bind("database-url", "DATABASE_URL")
	f.StringVar(&natsURL, "nats-url", "", "NATS server URL (required)")
	f.bind("nats-url", "NATS_URL")
	f.StringVar(&families, "families", "all", "families to create consumers for: all, or a comma-separated list")
	f.bind("families", "PROVERCTL_FAMILIES")
	f.StringVar(&q.Stream, "stream", def.Stream, "name of the proof-job stream")
	f.IntVar(&q.Replicas, "replicas", def.Replicas, "replicas of the stream and consumers (1 for dev, 3 in production)")
	f.bind("replicas", "PROVERCTL_REPLICAS")
	f.Int64Var(&q.MaxMsgs, "max-msgs", def.MaxMsgs, "jobs the queue holds at most; beyond, submits are refused")
	f.Int64Var(&q.MaxBytes, "max-bytes", def.MaxBytes, "bytes the queue holds at most; beyond, submits are refused")
	f.Int32Var(&q.MaxMsgSize, "max-msg-size", def.MaxMsgSize, "largest job in bytes")
	f.DurationVar(&q.Duplicates, "duplicates", def.Duplicates, "window in which a repeated request id is dropped")
	f.DurationVar(&q.AckWait, "ack-wait", def.AckWait, "time a delivered job may go without an ack or heartbeat before redelivery")
	f.IntVar(&q.MaxDeliver, "max-deliver", def.MaxDeliver, "deliveries of one job at most")
	f.IntVar(&q.MaxAckPending, "max-ack-pending", def.MaxAckPending, "jobs in flight per family at most (the family's total worker slots)")
	f.DurationSliceVar(&q.BackOff, "backoff", nil, "redelivery delays of a job whose worker went silent, e.g. 30s,1m,5m (replaces --ack-wait for redeliveries)")
	f.BoolVar(&q.Memory, "memory", false, "memory storage instead of file storage (tests only)")
	f.DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	if err := f.parse(args, std); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return usagef("migrate takes no arguments, got %q", f.Args())
	}
	var missing []string
	if dbURL == "" {
		missing = append(missing, "--database-url (DATABASE_URL)")
	}
	if natsURL == "" {
		missing = append(missing, "--nats-url (NATS_URL)")
	}
	if len(missing) > 0 {
		return usagef("missing %v", missing)
	}
	fams, err := family.ParseList(families)
	if err != nil {
		return usagef("--families: %v", err)
	}
	if err := q.Validate(); err != nil {
		return usageError{err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// SQL.
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("database %s: %w", redactURL(dbURL), err)
	}
	defer pool.Close()
	applied, err := migrate.Up(ctx, pool)
	if err != nil {
		return fmt.Errorf("database %s: %w", redactURL(dbURL), err)
	}
	if len(applied) == 0 {
		fmt.Fprintf(std.out, "database %s: schema up to date\n", redactURL(dbURL))
	}
	for _, m := range applied {
		fmt.Fprintf(std.out, "database %s: applied %s\n", redactURL(dbURL), m)
	}

	// JetStream.
	nc, err := nats.Connect(natsURL, nats.Name("proverctl migrate"))
	if err != nil {
		return fmt.Errorf("nats %s: %w", redactURL(natsURL), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	streamExisted, err := exists(js.Stream(ctx, q.Stream))
	if err != nil {
		return fmt.Errorf("stream %s: %w", q.Stream, err)
	}
	consumerExisted := map[family.Family]bool{}
	if streamExisted {
		for _, fam := range fams {
			ok, err := exists(js.Consumer(ctx, q.Stream, jobqueue.ConsumerName(fam)))
			if err != nil {
				return fmt.Errorf("consumer %s: %w", fam, err)
			}
			consumerExisted[fam] = ok
		}
	}
	advStream := jobqueue.AdvisoryStream(q.Stream)
	advExisted, err := exists(js.Stream(ctx, advStream))
	if err != nil {
		return fmt.Errorf("stream %s: %w", advStream, err)
	}
	if err := jobqueue.Setup(ctx, js, q, fams); err != nil {
		return err
	}
	fmt.Fprintf(std.out, "stream %s: %s (subjects proof.jobs.<family>.<circuit>.<request id>, jobs deleted once settled, %d replica(s), at most %d jobs / %d bytes)\n",
		q.Stream, createdOr(streamExisted), q.Replicas, q.MaxMsgs, q.MaxBytes)
	for _, fam := range fams {
		fmt.Fprintf(std.out, "consumer %s: %s (the family's backlog, never pulled; its circuit consumers %s-<circuit> take its settings: ack wait %s, max deliver %d, max ack pending %d)\n",
			jobqueue.ConsumerName(fam), createdOr(consumerExisted[fam]), fam, q.AckWait, q.MaxDeliver, q.MaxAckPending)
	}
	fmt.Fprintf(std.out, "stream %s: %s (max-deliveries advisories of the %s consumers, kept until a worker's rescue-<family> consumer handles them)\n",
		advStream, createdOr(advExisted), q.Stream)
	return nil
}

func exists[T any](_ T, err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrConsumerNotFound):
		return false, nil
	}
	return false, err
}

func createdOr(existed bool) string {
	if existed {
		return "up to date (updated in place)"
	}
	return "created"
}

// redactURL hides a URL's password.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

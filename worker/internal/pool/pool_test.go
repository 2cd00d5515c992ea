package pool_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/store"
	"github.com/openpassport/prover-fleet/worker/internal/outcome"
	"github.com/openpassport/prover-fleet/worker/internal/pool"
	wt "github.com/openpassport/prover-fleet/worker/internal/workertest"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// panicky panics on its first run and succeeds on the next.
type panicky struct{ runs atomic.Int32 }

func (j *panicky) Run(ctx context.Context, env job.Envelope, attempt int) error {
	if j.runs.Add(1) == 1 {
		var m map[string]int
		m["boom"]++ // a real nil-map panic
	}
	return nil
}

type outcomes struct{ kinds chan outcome.Kind }

func (o outcomes) Started(job.Envelope, int) {}
func (o outcomes) Finished(_ job.Envelope, d outcome.Decision, _ time.Duration) {
	o.kinds <- d.Kind
}

// A job that panics does not take the worker down: it is retried.
func TestPanicIsRetried(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	cons, err := jobqueue.NewTaker(s.JS, jobqueue.TakerConfig{Stream: s.Queue.Stream, Family: family.DSC, Wait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := cons.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	obs := outcomes{kinds: make(chan outcome.Kind, 4)}
	j := &panicky{}
	p, err := pool.New(pool.Deps{
		Fetcher: cons, Job: j, Store: store.New(s.Pool), Events: s.Events, Observer: obs,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, pool.Config{
		Family: family.DSC, Concurrency: 1, WorkerID: "t", Heartbeat: time.Second,
		FetchWait: 200 * time.Millisecond, MaxDeliver: 3, SettleTimeout: 5 * time.Second,
		Backoff: outcome.Backoff{Base: 50 * time.Millisecond, Max: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done; cons.Stop() }()

	s.Submit("dsc", "dsc_demo", `{}`)
	for _, want := range []outcome.Kind{outcome.Retried, outcome.Proved} {
		select {
		case got := <-obs.kinds:
			if got != want {
				t.Fatalf("outcome %s, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s outcome", want)
		}
	}
	s.WaitDelivered(family.DSC, 2, 5*time.Second)
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := pool.New(pool.Deps{}, pool.Config{})
	if err == nil || err.Error() != "pool: Deps.Fetcher is nil" {
		t.Fatalf("err = %v", err)
	}
}

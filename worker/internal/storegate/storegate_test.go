package storegate_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/store"
	"github.com/openpassport/prover-fleet/worker/internal/storegate"
	wt "github.com/openpassport/prover-fleet/worker/internal/workertest"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// A claim made while Postgres is down closes the gate and waits; the gate
// reports why; once the server is back the probe opens the gate and the
// claim goes through, once.
func TestCallWaitsOutAnOutage(t *testing.T) {
	t.Parallel()
	pg, url := stacktest.PrivatePostgres(t)
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := store.New(pool)
	id := uuid.NewString()
	if err := st.Insert(ctx, store.Request{ID: id, ProofType: "dsc", Circuit: "dsc_demo", Version: 1}); err != nil {
		t.Fatal(err)
	}
	var changes atomic.Int32
	g, err := storegate.New(st, wt.Discard(), storegate.Config{ProbeMin: 20 * time.Millisecond, ProbeMax: 100 * time.Millisecond,
		CallTimeout: 2 * time.Second, OnChange: func(bool) { changes.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	gctx, stop := context.WithCancel(ctx)
	defer stop()
	go g.Run(gctx)
	s := g.Store(st)

	if err := g.Err(); err != nil {
		t.Fatalf("a new gate is closed: %v", err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	claimed := make(chan error, 1)
	go func() {
		p, err := s.Claim(ctx, id, "w1", 1)
		if err == nil && p.Attempts != 1 {
			err = errors.New("attempts not recorded")
		}
		claimed <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for g.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the gate stayed open with Postgres stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(g.Err().Error(), "unavailable") {
		t.Errorf("gate error %q", g.Err())
	}
	// A waiter whose context ends gives up with that cause.
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	if err := g.Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with an ended context = %v", err)
	}
	cancel()
	select {
	case err := <-claimed:
		t.Fatalf("claim returned during the outage: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-claimed:
		if err != nil {
			t.Fatalf("claim after the outage: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("claim still waiting 30s after Postgres came back")
	}
	if err := g.Wait(ctx); err != nil || g.Err() != nil {
		t.Fatalf("gate after the outage: %v / %v", err, g.Err())
	}
	if n := changes.Load(); n != 2 {
		t.Errorf("%d state changes reported, want 2 (down, up)", n)
	}
}

// An answer that is a refusal, not an outage, is returned at once and
// leaves the gate open; a cancelled call does not close it either.
func TestRefusalIsNotAnOutage(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	g, err := storegate.New(s.Store, wt.Discard(), storegate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	gs := g.Store(s.Store)
	ctx := t.Context()
	if _, err := gs.Claim(ctx, "not-a-uuid", "w", 1); !errors.Is(err, store.ErrBadID) {
		t.Fatalf("claim of a bad id: %v", err)
	}
	if _, err := gs.Claim(ctx, uuid.NewString(), "w", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim of an unknown id: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := gs.MarkFailed(cctx, uuid.NewString(), "x"); err == nil {
		t.Fatal("a cancelled call succeeded")
	}
	if err := g.Err(); err != nil {
		t.Fatalf("gate closed by a refusal or a cancel: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := storegate.New(nil, wt.Discard(), storegate.Config{}); err == nil {
		t.Fatal("nil pinger accepted")
	}
	if _, err := storegate.New(store.New(nil), wt.Discard(), storegate.Config{ProbeMin: time.Second, ProbeMax: time.Millisecond}); err == nil {
		t.Fatal("ProbeMax below ProbeMin accepted")
	}
}

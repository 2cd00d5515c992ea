package intake

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

// stalledStore is a Postgres that stopped answering: its reads wait until
// their context ends.
type stalledStore struct{ *store.Store }

func (stalledStore) Exists(ctx context.Context, _ string) (bool, error) {
	<-ctx.Done()
	return false, ctx.Err()
}

func (stalledStore) Recorded(ctx context.Context, _ []string) (map[string]bool, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (stalledStore) Get(ctx context.Context, _ string) (store.Proof, error) {
	<-ctx.Done()
	return store.Proof{}, ctx.Err()
}

func (stalledStore) CancelHash(ctx context.Context, _ string) ([]byte, status.Code, error) {
	<-ctx.Done()
	return nil, 0, ctx.Err()
}

// TestQueryTimeout: with Postgres stalled, a hello, a status read, a
// subscription and a cancel from a caller whose context never ends (a
// WebSocket's) fail with the app's "retry later" errors after
// QueryTimeout instead of waiting for ever.
func TestQueryTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	svc, _, _ := newService(t, stalledStore{store.New(stacktest.Postgres(t))}, Config{QueryTimeout: timeout})
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	must(t, err)
	ctx := context.Background() // as a WebSocket's calls have
	calls := []struct {
		name string
		call func() error
	}{
		{"hello", func() error {
			_, err := svc.Hello(ctx, netip.Prefix{}, uuid.NewString(), k.PublicKey().Bytes())
			return err
		}},
		{"status", func() error { _, err := svc.Status(ctx, uuid.NewString()); return err }},
		{"subscribe", func() error { _, err := svc.Subscribe(ctx, uuid.NewString()); return err }},
		{"cancel", func() error { _, err := svc.Cancel(ctx, uuid.NewString(), make([]byte, 32)); return err }},
	}
	for _, c := range calls {
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- c.call() }()
		select {
		case err := <-done:
			var ie *InternalError
			// The deadline, or a batch's cancellation once every call in
			// it has passed its deadline.
			ended := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
			if !errors.As(err, &ie) || !ended {
				t.Errorf("%s with Postgres stalled: %v, want an InternalError for the deadline", c.name, err)
			}
			if took := time.Since(start); took < timeout/2 {
				t.Errorf("%s failed after %s, before QueryTimeout", c.name, took)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s with Postgres stalled has not returned after 10 s", c.name)
		}
	}
}

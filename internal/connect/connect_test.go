package connect_test

import (
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/openpassport/prover-fleet/internal/connect"
	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// The URL points nowhere; the target is the real server, so a working
// connection proves that the target was dialled.
func deadURL(t *testing.T, scheme string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return scheme + "://" + addr
}

func TestPostgresThroughTarget(t *testing.T) {
	t.Parallel()
	real := stacktest.PostgresURL(t)
	i := strings.Index(real, "@") + 1
	j := i + strings.IndexAny(real[i:], "/?")
	target := real[i:j]
	dead := real[:i] + strings.TrimPrefix(deadURL(t, "x"), "x://") + real[j:]
	pool, err := connect.Postgres(t.Context(), connect.PostgresConfig{URL: dead, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pool.Ping(t.Context()); err != nil {
		t.Fatalf("ping through --database-target %s: %v", target, err)
	}
}

func TestNATSThroughTarget(t *testing.T) {
	t.Parallel()
	srv := stacktest.NATSServer(t)
	target := strings.TrimPrefix(srv.URL(), "nats://")
	nc, js, err := connect.NATS(connect.NATSConfig{URL: deadURL(t, "nats"), Target: target, Name: t.Name(), Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer connect.Drain(nc, discard())
	if !nc.IsConnected() {
		t.Fatal("not connected")
	}
	if _, err := js.AccountInfo(t.Context()); err != nil {
		t.Fatalf("jetstream through the target: %v", err)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  func() error
		want string
	}{
		{"postgres without URL", func() error {
			_, err := connect.Postgres(t.Context(), connect.PostgresConfig{})
			return err
		}, "connect: PostgresConfig.URL is empty"},
		{"postgres bad URL keeps the password out", func() error {
			_, err := connect.Postgres(t.Context(), connect.PostgresConfig{URL: "postgres://u:secret@h:99999999/db"})
			return err
		}, "postgres postgres://u:xxxxx@h:99999999/db: "},
		{"postgres bad target", func() error {
			_, err := connect.Postgres(t.Context(), connect.PostgresConfig{URL: "postgres://h/db", Target: "vsock://:5432"})
			return err
		}, "--database-target: "},
		{"nats without URL", func() error {
			_, _, err := connect.NATS(connect.NATSConfig{Logger: discard()})
			return err
		}, "connect: NATSConfig.URL is empty"},
		{"nats without logger", func() error {
			_, _, err := connect.NATS(connect.NATSConfig{URL: "nats://h:4222"})
			return err
		}, "connect: NATSConfig.Logger is nil"},
		{"nats bad target", func() error {
			_, _, err := connect.NATS(connect.NATSConfig{URL: "nats://h:4222", Target: "vsock://:4222", Logger: discard()})
			return err
		}, "--nats-target: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
				t.Fatalf("error %v, want it to start with %q (and no password)", err, tc.want)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	if got := connect.Redacted("postgres://prover:hunter2@db:5432/proofs"); strings.Contains(got, "hunter2") {
		t.Fatalf("password in %s", got)
	}
	if got := connect.Redacted("postgres://u:secret@db/proofs"); got != "postgres://u:xxxxx@db/proofs" {
		t.Errorf("Redacted = %q", got)
	}
	if got := connect.Redacted("::"); got != "(unparseable URL)" {
		t.Errorf("Redacted(bad) = %q", got)
	}
}

// Drain returns once the connection has closed, with what was published
// before it delivered: the program exits right after it.
func TestDrainWaits(t *testing.T) {
	t.Parallel()
	srv := stacktest.NATSServer(t)
	nc, _, err := connect.NATS(connect.NATSConfig{URL: srv.URL(), Name: t.Name(), Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	sub, _, err := connect.NATS(connect.NATSConfig{URL: srv.URL(), Name: t.Name() + "-sub", Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var got atomic.Int64
	s, err := sub.Subscribe("drain.test", func(*nats.Msg) { got.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	const n = 20000
	payload := make([]byte, 512)
	for range n {
		if err := nc.Publish("drain.test", payload); err != nil {
			t.Fatal(err)
		}
	}
	connect.Drain(nc, discard())
	if !nc.IsClosed() {
		t.Fatal("Drain returned before the connection closed")
	}
	deadline := time.Now().Add(10 * time.Second)
	for got.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got.Load() != n {
		t.Fatalf("%d of %d messages published before Drain were delivered", got.Load(), n)
	}
	_ = s.Unsubscribe()
}

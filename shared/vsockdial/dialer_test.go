package vsockdial

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/openpassport/prover-fleet/internal/devstack"
)

// echoServer accepts TCP connections on 127.0.0.1 and echoes what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

// roundTrip writes a line on c and reads it back.
func roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	const msg = "ping\n"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

func TestNewDialerConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		want    Addr
		wantErr string
	}{
		{name: "no target", cfg: Config{}, want: Addr{}},
		{name: "vsock target", cfg: Config{Target: "vsock://3:4222"}, want: Addr{Vsock: true, CID: 3, Port: 4222}},
		{name: "tcp target", cfg: Config{Target: "127.0.0.1:4222"}, want: Addr{HostPort: "127.0.0.1:4222"}},
		{name: "nats url target", cfg: Config{Target: "nats://nats"}, want: Addr{HostPort: "nats:4222"}},
		{name: "negative timeout", cfg: Config{Timeout: -time.Second}, wantErr: "vsockdial: Config.Timeout must not be negative, got -1s"},
		{name: "bad target", cfg: Config{Target: "vsock://x:1"}, wantErr: `vsockdial: Config.Target: vsockdial: address "vsock://x:1": bad CID "x"`},
		{name: "any CID target", cfg: Config{Target: "vsock://:4222"}, wantErr: "vsockdial: Config.Target vsock://ANY:4222 names no CID to dial"},
		{name: "port 0 target", cfg: Config{Target: "vsock://3:0"}, wantErr: "vsockdial: Config.Target vsock://3:0 names no port to dial"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := NewDialer(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("NewDialer(%+v) error = %v, want prefix %q", tt.cfg, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewDialer(%+v): %v", tt.cfg, err)
			}
			if d.Target() != tt.want {
				t.Fatalf("Target() = %+v, want %+v", d.Target(), tt.want)
			}
		})
	}
}

func TestDialerTCPFallback(t *testing.T) {
	t.Parallel()
	addr := echoServer(t)

	t.Run("no target dials the asked address", func(t *testing.T) {
		t.Parallel()
		d, err := NewDialer(Config{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := d.Dial("tcp", addr) // the nats.CustomDialer path
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		roundTrip(t, c)
	})
	t.Run("tcp target overrides the asked address", func(t *testing.T) {
		t.Parallel()
		d, err := NewDialer(Config{Target: "tcp://" + addr})
		if err != nil {
			t.Fatal(err)
		}
		// The asked-for host does not exist; the target does.
		c, err := d.DialContext(t.Context(), "tcp", "db.invalid:5432")
		if err != nil {
			t.Fatalf("DialContext: %v", err)
		}
		roundTrip(t, c)
	})
	t.Run("refused tcp names the address", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := l.Addr().String()
		_ = l.Close()
		d, err := NewDialer(Config{Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.DialContext(t.Context(), "tcp", closed)
		if err == nil {
			t.Fatalf("dial of closed port %s succeeded", closed)
		}
		if want := "vsockdial: dial tcp " + closed; !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("error = %q, want prefix %q", err, want)
		}
	})
}

// TestVsockDialFailsFast dials vsock CID 1 (this machine's loopback, which
// no hypervisor forwards anywhere) on a port nobody listens on. On a machine
// without a vsock device the dial fails at once; on a VM with one it fails
// with the kernel's connect timeout or the context's deadline. Either way it
// must return an error that names the vsock address, and must not hang.
func TestVsockDialFailsFast(t *testing.T) {
	t.Parallel()
	const target = "vsock://1:40999"
	d, err := NewDialer(Config{Target: target, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("context deadline", func(t *testing.T) {
		t.Parallel()
		const deadline = 300 * time.Millisecond
		ctx, cancel := context.WithTimeout(t.Context(), deadline)
		defer cancel()
		start := time.Now()
		c, err := d.DialContext(ctx, "tcp", "db.internal:5432")
		elapsed := time.Since(start)
		if err == nil {
			c.Close()
			t.Fatalf("vsock dial to %s succeeded; nothing should listen there", target)
		}
		t.Logf("error after %s: %v", elapsed, err)
		if want := "vsockdial: dial " + target + " (for db.internal:5432): "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error = %q, want prefix %q", err, want)
		}
		if elapsed > deadline+2*time.Second {
			t.Errorf("dial took %s, want it bounded by the %s deadline", elapsed, deadline)
		}
	})
	t.Run("nats dial bounded by Timeout", func(t *testing.T) {
		t.Parallel()
		short, err := NewDialer(Config{Target: target, Timeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c, err := short.Dial("tcp", "nats.internal:4222")
		elapsed := time.Since(start)
		if err == nil {
			c.Close()
			t.Fatalf("vsock dial to %s succeeded; nothing should listen there", target)
		}
		if !strings.Contains(err.Error(), target) {
			t.Errorf("error = %q, want it to name %s", err, target)
		}
		if elapsed > 2300*time.Millisecond {
			t.Errorf("dial took %s, want it bounded by the 300ms Timeout", elapsed)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := d.DialContext(ctx, "tcp", "db.internal:5432")
		if err == nil {
			t.Fatal("dial with a cancelled context succeeded")
		}
		// No vsock device: the socket call fails first; with one: the
		// context error is reported before any connect is attempted.
		if !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "no vsock device") {
			t.Errorf("error = %v, want context.Canceled or the no-device explanation", err)
		}
	})
}

func TestListen(t *testing.T) {
	t.Parallel()
	t.Run("tcp", func(t *testing.T) {
		t.Parallel()
		l, err := Listen("tcp://127.0.0.1:0")
		if err != nil {
			t.Fatalf("Listen: %v", err)
		}
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c)
	})
	t.Run("bad address", func(t *testing.T) {
		t.Parallel()
		_, err := Listen("vsock://:x")
		if !errors.Is(err, ErrInvalidAddr) {
			t.Fatalf("Listen(vsock://:x) error = %v, want ErrInvalidAddr", err)
		}
	})
	t.Run("vsock", func(t *testing.T) {
		t.Parallel()
		// Binding is local (nothing is sent). It works on a machine with a
		// vsock device and fails with a clear error on one without.
		l, err := Listen("vsock://:0")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "vsockdial: listen vsock://ANY:0: ") {
				t.Fatalf("error = %q, want it to name the vsock address", err)
			}
			t.Logf("no vsock here, as expected on most machines: %v", err)
			return
		}
		defer l.Close()
		if got := l.Addr().Network(); got != "vsock" {
			t.Fatalf("listener network = %q, want vsock", got)
		}
		t.Logf("vsock listener bound at %s", l.Addr())
	})
}

// TestNATSOverDialer connects a real (embedded) NATS server through the
// Dialer, with a TCP target standing in for the vsock proxy: the server URL
// names a host that does not resolve, and the connection must still arrive.
func TestNATSOverDialer(t *testing.T) {
	t.Parallel()
	srv, err := devstack.StartNATS(devstack.NATSConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	d, err := NewDialer(Config{Target: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://nats.prover.invalid:4222", d.NATSOptions()...)
	if err != nil {
		t.Fatalf("connect through the dialer: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("vsockdial.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("vsockdial.test", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no message back: %v", err)
	}
	if string(msg.Data) != "hello" {
		t.Fatalf("message = %q, want hello", msg.Data)
	}
}

// TestPgxOverDialer opens a pgx pool to a real Postgres through the Dialer,
// with a database URL whose host does not resolve and a TCP target standing
// in for the vsock proxy.
func TestPgxOverDialer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Postgres server")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("start postgres (needs the PostgreSQL server binaries): %v", err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	real, err := ParseAddr(pg.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig("postgres://postgres@db.prover.invalid:5432/postgres?sslmode=disable&connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDialer(Config{Target: real.String()})
	if err != nil {
		t.Fatal(err)
	}
	d.ConfigurePgx(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var one int
	if err := pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("query through the dialer: %v", err)
	}
	if one != 1 {
		t.Fatalf("SELECT 1 = %d", one)
	}
}

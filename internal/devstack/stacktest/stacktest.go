// Package stacktest gives tests real infrastructure: an embedded NATS
// JetStream server per test and a fresh, migrated Postgres database per test
// on a throwaway server shared by the test binary.
//
// Use it from TestMain so the server is stopped when the tests end:
//
//	func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }
//
// PROVER_TEST_PG_URL may name an existing server's admin URL (a superuser on
// its "postgres" database) to use instead of starting one. A test that needs
// a service that cannot be started fails with the reason; it is skipped only
// under -short.
package stacktest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/internal/devstack"
	"github.com/openpassport/prover-fleet/internal/migrate"
)

var (
	pgOnce   sync.Once
	pgServer *devstack.Postgres
	pgDir    string
	pgAdmin  string
	pgErr    error
	dbSeq    atomic.Int64
)

const templateDB = "fleet_template"

// Main runs the tests and stops the shared Postgres server afterwards.
func Main(m *testing.M) int {
	code := m.Run()
	if pgServer != nil {
		_ = pgServer.Stop()
	}
	if pgDir != "" {
		_ = os.RemoveAll(pgDir)
	}
	return code
}

func startPostgres() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if url := os.Getenv("PROVER_TEST_PG_URL"); url != "" {
		pgAdmin = url
	} else {
		dir, err := os.MkdirTemp("", "stacktest-pg-")
		if err != nil {
			pgErr = err
			return
		}
		pgDir = dir
		pgServer, pgErr = devstack.StartPostgres(ctx, devstack.PostgresConfig{Dir: dir})
		if pgErr != nil {
			return
		}
		pgAdmin = pgServer.AdminURL()
	}
	// One migrated template per test binary; each test clones it.
	conn, err := pgx.Connect(ctx, pgAdmin)
	if err != nil {
		pgErr = fmt.Errorf("connect %s: %w", pgAdmin, err)
		return
	}
	defer conn.Close(ctx)
	tmpl := fmt.Sprintf("%s_%d", templateDB, os.Getpid())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+tmpl); err != nil {
		pgErr = err
		return
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+tmpl); err != nil {
		pgErr = err
		return
	}
	pool, err := pgxpool.New(ctx, withDB(pgAdmin, tmpl))
	if err != nil {
		pgErr = err
		return
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool); err != nil {
		pgErr = err
	}
}

// withDB replaces the database name of a postgres:// URL.
func withDB(url, db string) string {
	i := strings.Index(url, "://")
	rest := url[i+3:]
	q := ""
	if j := strings.IndexByte(rest, '?'); j >= 0 {
		rest, q = rest[:j], rest[j:]
	}
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		rest = rest[:j]
	}
	return url[:i+3] + rest + "/" + db + q
}

// PostgresURL returns the URL of a fresh database holding the migrated
// schema. The database is dropped when the test ends.
func PostgresURL(t testing.TB) string {
	t.Helper()
	pgOnce.Do(startPostgres)
	if pgErr != nil {
		if testing.Short() {
			t.Skipf("postgres unavailable under -short: %v", pgErr)
		}
		t.Fatalf("this test needs PostgreSQL and none could be started: %v", pgErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgAdmin)
	if err != nil {
		t.Fatalf("connect to test postgres: %v", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("t_%d_%d", os.Getpid(), dbSeq.Add(1))
	tmpl := fmt.Sprintf("%s_%d", templateDB, os.Getpid())
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tmpl)); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, pgAdmin); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			conn.Close(ctx)
		}
	})
	return withDB(pgAdmin, name)
}

// Postgres returns a pool on a fresh migrated database, closed when the test
// ends.
func Postgres(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), PostgresURL(t))
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// PrivatePostgres starts a PostgreSQL server of the test's own, with a
// migrated database, and returns the server (stopped when the test ends)
// and the database's URL. Tests that stop and restart the server (to make
// an outage) use it instead of the shared one.
func PrivatePostgres(t testing.TB) (*devstack.Postgres, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "stacktest-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresConfig{Dir: dir})
	if err != nil {
		if testing.Short() {
			t.Skipf("postgres unavailable under -short: %v", err)
		}
		t.Fatalf("this test needs PostgreSQL and none could be started: %v", err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	url, err := pg.CreateDatabase(ctx, "proofs")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pg, url
}

// NATSServer starts an embedded JetStream server for the test and returns it
// (shut down when the test ends).
func NATSServer(t testing.TB) *devstack.NATS {
	t.Helper()
	srv, err := devstack.StartNATS(devstack.NATSConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start embedded nats: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// NATS starts an embedded JetStream server for the test and connects to it.
func NATS(t testing.TB) (*nats.Conn, jetstream.JetStream, string) {
	t.Helper()
	srv := NATSServer(t)
	nc, err := nats.Connect(srv.URL(), nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("connect to embedded nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js, srv.URL()
}

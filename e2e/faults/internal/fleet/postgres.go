package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openpassport/prover-fleet/internal/devstack"
)

// Postgres is a throwaway PostgreSQL server that can be stopped and started
// again on the same port and data.
type Postgres struct {
	procs *Procs
	bin   string
	dir   string
	port  int
	cred  *syscall.Credential
	proc  *Proc
	n     int // incarnations
}

// NewPostgres initialises a data directory in dir (created) and starts the
// server.
func NewPostgres(ctx context.Context, procs *Procs, dir string) (*Postgres, error) {
	bin, err := devstack.FindPostgresBin() // PG_BIN, else the newest /usr/lib/postgresql/*/bin
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cred, err := devstack.ServerCredential(dir)
	if err != nil {
		return nil, err
	}
	pg := &Postgres{procs: procs, bin: bin, dir: dir, port: port, cred: cred}
	out, err := procs.Run(ctx, Spec{Name: "initdb", Cred: cred, Env: []string{"LC_ALL=C", "PATH=/usr/bin:/bin"},
		Argv: []string{filepath.Join(bin, "initdb"), "-D", pg.data(), "-U", "postgres", "--auth=trust",
			"--encoding=UTF8", "--locale=C", "--no-sync"}})
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	return pg, pg.Start(ctx)
}

func (pg *Postgres) data() string { return filepath.Join(pg.dir, "data") }

// Start starts the server and waits until it answers.
func (pg *Postgres) Start(ctx context.Context) error {
	if pg.proc != nil && !pg.proc.Exited() {
		return errors.New("fleet: postgres is running")
	}
	pg.n++
	// fsync off: the machine does not crash in these tests, a process
	// does, and what a killed server wrote is in the page cache.
	// synchronous_commit stays on: a commit the server acknowledged must
	// survive an immediate shutdown.
	p, err := pg.procs.Start(Spec{Name: "postgres", Cred: pg.cred, Env: []string{"LC_ALL=C"},
		Argv: []string{filepath.Join(pg.bin, "postgres"), "-D", pg.data(), "-p", strconv.Itoa(pg.port),
			"-h", "127.0.0.1", "-k", pg.dir, "-c", "max_connections=300", "-c", "shared_buffers=64MB",
			"-c", "fsync=off", "-c", "full_page_writes=off"}})
	if err != nil {
		return err
	}
	pg.proc = p
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, pg.URL("postgres"))
		cancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("fleet: postgres exited during start-up (see %s)", p.LogPath())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fleet: postgres not ready after 60s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop shuts the server down: "fast" (SIGINT: sessions are disconnected,
// a checkpoint is written) or "immediate" (SIGQUIT: no checkpoint, crash
// recovery at the next start), and waits for it.
func (pg *Postgres) Stop(mode string) error {
	if pg.proc == nil {
		return nil
	}
	sig := syscall.SIGINT
	if mode == "immediate" {
		sig = syscall.SIGQUIT
	}
	return pg.proc.Stop(sig, 30*time.Second)
}

// URL of database name.
func (pg *Postgres) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.port, name)
}

// CreateDatabase creates a database and returns its URL.
func (pg *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return pg.URL(name), nil
}

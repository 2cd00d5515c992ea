// Package devstack starts the infrastructure the fleet needs on one machine:
// an embedded NATS server with JetStream and a throwaway PostgreSQL server
// made from the system's PostgreSQL binaries. The demo, `proverctl dev` and
// the tests use it; production points the programs at real servers instead.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
)

// NATS is an embedded NATS server with JetStream enabled.
type NATS struct {
	srv  *server.Server
	opts server.Options
}

// NATSConfig configures StartNATS.
type NATSConfig struct {
	// StoreDir holds JetStream's file store. Required.
	StoreDir string
	// Host and Port to listen on; Port 0 picks a free port. Host defaults to
	// 127.0.0.1.
	Host string
	Port int
}

// StartNATS starts an embedded NATS server and waits until it accepts
// connections.
func StartNATS(cfg NATSConfig) (*NATS, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("devstack: NATSConfig.StoreDir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = -1 // nats-server: random free port
	}
	opts := &server.Options{
		ServerName: "prover-fleet-dev",
		Host:       cfg.Host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: 16 << 20,
	}
	n := &NATS{opts: *opts}
	if err := n.start(); err != nil {
		return nil, err
	}
	// Keep the port it got, so that a restart comes back where clients
	// reconnect to.
	n.opts.Port = n.srv.Addr().(*net.TCPAddr).Port
	return n, nil
}

func (n *NATS) start() error {
	opts := n.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		return fmt.Errorf("devstack: nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return errors.New("devstack: nats did not become ready within 10s")
	}
	n.srv = srv
	return nil
}

// Restart starts a server that was shut down again, on the same address and
// JetStream store (tests use it to make an outage). Not safe to call
// concurrently with the NATS's other methods.
func (n *NATS) Restart() error {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	return n.start()
}

// URL is the client URL of the server.
func (n *NATS) URL() string { return n.srv.ClientURL() }

// Server exposes the embedded server (tests use it to restart or inspect).
func (n *NATS) Server() *server.Server { return n.srv }

// Shutdown stops the server and waits for it.
func (n *NATS) Shutdown() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

// Postgres is a throwaway PostgreSQL server in a private data directory.
type Postgres struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan error
	log  *os.File
	// what Restart needs
	bin, logPath string
	args         []string
	cred         *syscall.Credential
}

// PostgresConfig configures StartPostgres.
type PostgresConfig struct {
	// Dir holds the data directory and the socket; it is created and must not
	// exist yet or be empty. Required.
	Dir string
	// BinDir holds initdb and postgres; found automatically when empty (PG_BIN
	// environment variable, /usr/lib/postgresql/*/bin, then PATH).
	BinDir string
	// Port on 127.0.0.1; 0 picks a free port.
	Port int
	// Durable keeps fsync on. Off by default: this server is thrown away.
	Durable bool
}

// FindPostgresBin finds the directory holding initdb and postgres.
func FindPostgresBin() (string, error) {
	if dir := os.Getenv("PG_BIN"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
			return "", fmt.Errorf("devstack: PG_BIN=%s has no initdb: %w", dir, err)
		}
		return dir, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return pgVersion(matches[i]) > pgVersion(matches[j]) })
	if len(matches) > 0 {
		return filepath.Dir(matches[0]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("devstack: PostgreSQL server binaries (initdb, postgres) not found; install the Debian package postgresql (or set PG_BIN), or set DATABASE_URL to an existing server")
}

func pgVersion(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

// StartPostgres initialises a data directory and starts a server on
// 127.0.0.1. PostgreSQL refuses to run as root, so when this process is root
// the server runs as the "postgres" system user (or "nobody").
func StartPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	if cfg.Dir == "" {
		return nil, errors.New("devstack: PostgresConfig.Dir is required")
	}
	bin := cfg.BinDir
	if bin == "" {
		var err error
		if bin, err = FindPostgresBin(); err != nil {
			return nil, err
		}
	}
	port := cfg.Port
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	cred, err := ServerCredential(cfg.Dir)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(cfg.Dir, "data")
	logPath := filepath.Join(cfg.Dir, "postgres.log")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("devstack: initdb: %w: %s", err, strings.TrimSpace(string(out)))
	}
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-h", "127.0.0.1", "-k", cfg.Dir,
		"-c", "max_connections=200", "-c", "shared_buffers=64MB"}
	if !cfg.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	p := &Postgres{dir: cfg.Dir, port: port, bin: bin, logPath: logPath, args: args, cred: cred}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// start runs the server on an initialised data directory and waits for it.
func (p *Postgres) start(ctx context.Context) error {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), p.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("devstack: start postgres: %w", err)
	}
	p.cmd, p.done, p.log = cmd, make(chan error, 1), logFile
	go func() { p.done <- cmd.Wait() }()
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		_ = p.Stop()
		tail, _ := os.ReadFile(p.logPath)
		return fmt.Errorf("%w; server log:\n%s", err, lastLines(string(tail), 20))
	}
	return nil
}

// Restart starts a stopped server again on the same data directory and
// port (tests use it to end an outage they made with Stop).
func (p *Postgres) Restart(ctx context.Context) error {
	select {
	case err := <-p.done:
		p.done <- err
	default:
		return errors.New("devstack: postgres is still running; Stop it first")
	}
	return p.start(ctx)
}

// ServerCredential picks the user a PostgreSQL server runs as when this
// process is root (PostgreSQL refuses root: the 'postgres' user, else
// 'nobody'), makes every directory above dir traversable for it and hands it
// dir. It returns nil when this process is not root.
func ServerCredential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var u *user.User
	var err error
	for _, name := range []string{"postgres", "nobody"} {
		if u, err = user.Lookup(name); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("devstack: running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Every directory above dir must be traversable by that user.
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 && d != dir {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return nil, fmt.Errorf("devstack: make %s traversable for %s: %w", d, u.Username, err)
			}
		}
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("devstack: chown %s: %w", dir, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (p *Postgres) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("devstack: postgres exited during start-up: %v", err)
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, p.AdminURL())
		cancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("devstack: postgres not ready after %s: %w", limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AdminURL is the URL of the server's "postgres" database as superuser.
func (p *Postgres) AdminURL() string { return p.DatabaseURL("postgres") }

// DatabaseURL is the URL of database name on this server.
func (p *Postgres) DatabaseURL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, name)
}

// CreateDatabase creates a database and returns its URL.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, p.AdminURL())
	if err != nil {
		return "", fmt.Errorf("devstack: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("devstack: create database %s: %w", name, err)
	}
	return p.DatabaseURL(name), nil
}

// Stop shuts the server down (fast shutdown) and removes nothing: the caller
// owns Dir.
func (p *Postgres) Stop() error {
	defer p.log.Close()
	select {
	case err := <-p.done:
		p.done <- err
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	// The exit status goes back into done: a later Stop or Restart reads
	// it to see that the server is down.
	select {
	case err := <-p.done:
		p.done <- err
		return nil
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		p.done <- <-p.done
		return errors.New("devstack: postgres did not stop within 15s; killed")
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("devstack: pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

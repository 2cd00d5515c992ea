package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/internal/devstack"
	"github.com/openpassport/prover-fleet/internal/migrate"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
)

// circuit is the frontend's only circuit: an empty witness generator and
// key (the frontend checks presence; nothing is proved here).
const circuit = "register_abuse"

// stack is the real processes the frontend runs against, and the frontend.
type stack struct {
	dir       string
	pg        *devstack.Postgres
	nats      *proc
	api       *proc
	dbURL     string
	natsURL   string
	apiAddr   string
	adminAddr string
	attestDir string
}

// proc is a child process in its own process group, killed with this one.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

func startProc(dir, name string, verbose bool, path string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var w io.Writer = f
	if verbose {
		w = io.MultiWriter(f, os.Stderr)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and kills the group after grace.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// goBuild builds a package of this module (or of its pinned dependencies)
// into dir.
func goBuild(ctx context.Context, dir, name, pkg string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w: %s", pkg, err, b)
	}
	return out, nil
}

// apiFlags are the frontend's settings under test: the defaults, but a
// 15-minute session window (as the app needs) and shorter socket timeouts
// so that the run sees them act.
type apiFlags struct {
	idle, ping, pong time.Duration
	maxSessions      int
}

func (f apiFlags) args() []string {
	return []string{
		"--session-ttl", "15m", "--max-sessions", strconv.Itoa(f.maxSessions),
		"--idle-timeout", f.idle.String(), "--ping-interval", f.ping.String(), "--pong-timeout", f.pong.String(),
	}
}

// startStack starts Postgres, NATS and the frontend, migrated and ready.
func startStack(ctx context.Context, dir, apiBin string, flags apiFlags, verbose bool) (*stack, error) {
	s := &stack{dir: dir}
	ok := false
	defer func() {
		if !ok {
			s.stop()
		}
	}()
	var err error
	if s.pg, err = devstack.StartPostgres(ctx, devstack.PostgresConfig{Dir: filepath.Join(dir, "pg")}); err != nil {
		return nil, err
	}
	if s.dbURL, err = s.pg.CreateDatabase(ctx, "proofs"); err != nil {
		return nil, err
	}
	natsBin, err := goBuild(ctx, dir, "nats-server", "github.com/nats-io/nats-server/v2")
	if err != nil {
		return nil, err
	}
	natsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	s.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	if s.nats, err = startProc(dir, "nats-server", false, natsBin, "-a", "127.0.0.1", "-p", strconv.Itoa(natsPort),
		"-js", "-sd", filepath.Join(dir, "nats")); err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}

	// The fleet key, the development attestation root, the circuit folder.
	keyFile := filepath.Join(dir, "fleet.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(job.NewKey())), 0o600); err != nil {
		return nil, err
	}
	s.attestDir = filepath.Join(dir, "attest")
	if _, err := attest.NewDev(attest.DevConfig{Dir: s.attestDir, ModuleID: "prover-api-abuse"}); err != nil {
		return nil, err
	}
	circuits, zkeys := filepath.Join(dir, "circuits"), filepath.Join(dir, "zkeys")
	gen := filepath.Join(circuits, circuit+"_cpp", circuit)
	for _, d := range []string{filepath.Dir(gen), zkeys} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(gen, nil, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(zkeys, circuit+".zkey"), nil, 0o644); err != nil {
		return nil, err
	}

	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	s.apiAddr, s.adminAddr = fmt.Sprintf("127.0.0.1:%d", apiPort), fmt.Sprintf("127.0.0.1:%d", adminPort)
	args := append([]string{
		"-s", s.apiAddr, "--admin-address", s.adminAddr,
		// The status relay runs as deployed, on a port of its own choosing
		// (its default, 0.0.0.0:8889, may be taken on a shared machine).
		"--status-address", "127.0.0.1:0", "-d", s.dbURL, "--nats-url", s.natsURL,
		"-c", circuits, "-k", zkeys, "--attester", "dev", "--dev-attest-dir", s.attestDir,
		"--job-key-file", keyFile, "--families", "register", "--log-level", "warn", "--log-format", "text",
	}, flags.args()...)
	if s.api, err = startProc(dir, "prover-api", verbose, apiBin, args...); err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// migrate prepares the database and the stream, as proverctl migrate does.
func (s *stack) migrate(ctx context.Context) error {
	pool, err := pgxpool.New(ctx, s.dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool); err != nil {
		return err
	}
	var nc *nats.Conn
	for deadline := time.Now().Add(20 * time.Second); ; {
		if nc, err = nats.Connect(s.natsURL); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server: %w (%s)", err, s.nats.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	q := jobqueue.DefaultConfig()
	return jobqueue.Setup(ctx, js, q, []family.Family{family.Register})
}

func (s *stack) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + s.adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.api.done:
			return fmt.Errorf("prover-api exited: %v\n%s", s.api.err, s.api.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("prover-api not ready after 60 s:\n%s", s.api.tail())
		}
	}
}

func (s *stack) stop() {
	s.api.stop(15 * time.Second)
	s.nats.stop(10 * time.Second)
	if s.pg != nil {
		_ = s.pg.Stop()
	}
}

// memory is a process's resident set and its high-water mark.
type memory struct{ rss, hwm int64 }

func readMemory(pid int) (memory, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmRSS":
			m.rss = n << 10
		case "VmHWM":
			m.hwm = n << 10
		}
	}
	return m, sc.Err()
}

// cpuTime is a process's user + system time so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond, nil
}

// sampler records the frontend's memory and gauges every interval.
type sampler struct {
	mu      sync.Mutex
	samples []sample
}

type sample struct {
	At         time.Time `json:"at"`
	RSS        int64     `json:"rss_bytes"`
	WebSockets float64   `json:"websockets_open"`
	Conns      float64   `json:"connections_open"`
	Sessions   float64   `json:"sessions_open"`
	Goroutines float64   `json:"goroutines"`
	HeapInuse  float64   `json:"heap_inuse_bytes"`
	StackInuse float64   `json:"stack_inuse_bytes"`
	Released   float64   `json:"heap_released_bytes"`
}

func (sm *sampler) run(ctx context.Context, s *stack, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		m, err := readMemory(s.api.pid())
		if err == nil {
			g := scrape("http://" + s.adminAddr + "/metrics")
			sm.mu.Lock()
			sm.samples = append(sm.samples, sample{At: time.Now(), RSS: m.rss,
				WebSockets: g["prover_api_websockets_open"], Conns: g["prover_api_connections_open"], Sessions: g["prover_api_sessions_open"],
				Goroutines: g["go_goroutines"], HeapInuse: g["go_memstats_heap_inuse_bytes"], StackInuse: g["go_memstats_stack_inuse_bytes"],
				Released: g["go_memstats_heap_released_bytes"]})
			sm.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (sm *sampler) all() []sample {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return append([]sample(nil), sm.samples...)
}

// scrape reads a Prometheus text page into series → value (labels kept in
// the key as written).
func scrape(url string) map[string]float64 {
	out := map[string]float64{}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// raiseFileLimit lifts RLIMIT_NOFILE to want (the hard limit too when
// allowed, as root) and returns the limit now in force.
func raiseFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	try := syscall.Rlimit{Cur: want, Max: max(want, lim.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try); err != nil {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return lim.Cur, err
		}
		return lim.Cur, nil
	}
	return want, nil
}

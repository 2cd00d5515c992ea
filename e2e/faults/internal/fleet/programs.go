package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

// Binaries are the programs built from the tree.
type Binaries struct {
	API, Worker, Proverctl, Zkprove, NATSServer string
}

// APIConfig configures prover-api.
type APIConfig struct {
	Bin         string
	DatabaseURL string
	NATSURLs    string
	Circuits    string
	Zkeys       string
	AttestDir   string
	KeyFile     string
	Families    string
}

// API is the frontend, restartable on the same ports.
type API struct {
	procs     *Procs
	cfg       APIConfig
	port      int
	adminPort int
	proc      *Proc
}

// StartAPI starts prover-api on free ports and waits until it is ready.
func StartAPI(ctx context.Context, procs *Procs, cfg APIConfig) (*API, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	admin, err := FreePort()
	if err != nil {
		return nil, err
	}
	a := &API{procs: procs, cfg: cfg, port: port, adminPort: admin}
	return a, a.Start(ctx)
}

// Start starts the frontend (again) and waits until /readyz answers 200.
func (a *API) Start(ctx context.Context) error {
	// The app's requests all come from 127.0.0.1, one source, and a third
	// of them in a burst: the per-source limits (hello rate, sessions and
	// connections per source) would refuse them, so they are off, as in a
	// dev fleet. The status relay listens on a port of its own choosing
	// (its default, 0.0.0.0:8889, may be taken on a shared machine). Both
	// through the environment, which older binaries (-bin) ignore.
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"PROVER_API_HELLO_RATE=0", "PROVER_API_MAX_SESSIONS_PER_SOURCE=0", "PROVER_API_SESSION_SHARE=0",
		"PROVER_API_MAX_CONNECTIONS_PER_SOURCE=0", "PROVER_API_STATUS_ADDRESS=127.0.0.1:0",
	}
	p, err := a.procs.Start(Spec{Name: "prover-api", Env: env, Argv: []string{
		a.cfg.Bin,
		"-s", fmt.Sprintf("127.0.0.1:%d", a.port),
		"-d", a.cfg.DatabaseURL,
		"-c", a.cfg.Circuits, "-k", a.cfg.Zkeys,
		"--nats-url", a.cfg.NATSURLs,
		"--families", a.cfg.Families,
		// dev is dev-nitro's alias, known to builds of every version, so
		// that the suite can judge older binaries too (-bin).
		"--attester", "dev", "--dev-attest-dir", a.cfg.AttestDir,
		"--admin-address", fmt.Sprintf("127.0.0.1:%d", a.adminPort),
		"--job-key-file", a.cfg.KeyFile,
		"--log-level", "info", "--log-format", "json",
	}})
	if err != nil {
		return err
	}
	a.proc = p
	return waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", a.adminPort), 60*time.Second, p)
}

// Kill kills the frontend with SIGKILL.
func (a *API) Kill() { a.proc.Kill() }

// Stop stops it gracefully.
func (a *API) Stop() error { return a.proc.Stop(syscall.SIGTERM, 30*time.Second) }

// WSURL is the app's WebSocket URL.
func (a *API) WSURL() string { return fmt.Sprintf("ws://127.0.0.1:%d/", a.port) }

// Proc is the current incarnation.
func (a *API) Proc() *Proc { return a.proc }

func waitReady(ctx context.Context, url string, limit time.Duration, p *Proc) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if p.Exited() {
			return fmt.Errorf("fleet: %s exited during start-up: %v (see %s)", p.Name, p.Err(), p.LogPath())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("fleet: %s not ready after %s: %s (see %s)", p.Name, limit, last, p.LogPath())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WorkerConfig configures prover-worker.
type WorkerConfig struct {
	Bin         string
	Family      string
	DatabaseURL string
	NATSURLs    string
	Circuits    string
	Zkeys       string
	Prover      string // the --prover command
	KeyFile     string
	WorkDir     string
	// MarkVar names the environment entry set in every child process
	// (--child-env), "<MarkVar>=<WorkDir>:<worker name>", to find them
	// later. The work directory makes it unique to one scenario of one run:
	// two suites on one machine never count (or kill) each other's
	// processes.
	MarkVar string
}

// Worker is one prover-worker process.
type Worker struct {
	Name string
	Kind string // what its prover is, for reports
	proc *Proc
	// InstanceDir is the worker's private directory under WorkDir.
	InstanceDir string
	mark        string
}

// StartWorker starts a worker and waits until it takes jobs.
func StartWorker(ctx context.Context, procs *Procs, name, kind string, cfg WorkerConfig) (*Worker, error) {
	mark := cfg.MarkVar + "=" + cfg.WorkDir + ":" + name
	p, err := procs.Start(Spec{Name: name, Env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, Argv: []string{
		cfg.Bin,
		"--family", cfg.Family,
		"--concurrency", "1",
		"-c", cfg.Circuits, "-k", cfg.Zkeys,
		"-r", cfg.Prover, "--prover-mode", "command", "--verifier", "native",
		"--nats-url", cfg.NATSURLs,
		"-d", cfg.DatabaseURL,
		"--work-dir", cfg.WorkDir,
		"--job-key-file", cfg.KeyFile,
		"--admin-address", "127.0.0.1:0",
		"--worker-id", name,
		"--child-env", mark,
		"--log-level", "info", "--log-format", "json",
	}})
	if err != nil {
		return nil, err
	}
	w := &Worker{Name: name, Kind: kind, proc: p, mark: mark}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if dir, ok := startedLine(p.LogPath()); ok {
			w.InstanceDir = dir
			return w, nil
		}
		if p.Exited() {
			return nil, fmt.Errorf("fleet: worker %s exited during start-up: %v (see %s)", name, p.Err(), p.LogPath())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.Kill()
			return nil, fmt.Errorf("fleet: worker %s did not start within 60s (see %s)", name, p.LogPath())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startedLine finds the worker's "worker started" log line and its
// instance directory.
func startedLine(logPath string) (string, bool) {
	f, err := os.Open(logPath)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), `"msg":"worker started"`) {
			continue
		}
		var v struct {
			WorkDir string `json:"work_dir"`
		}
		if json.Unmarshal(line, &v) == nil && v.WorkDir != "" {
			return v.WorkDir, true
		}
	}
	return "", false
}

// Proc is the worker's process.
func (w *Worker) Proc() *Proc { return w.proc }

// Mark is the environment entry its children carry.
func (w *Worker) Mark() string { return w.mark }

// Kill kills the worker with SIGKILL.
func (w *Worker) Kill() { w.proc.Kill() }

// Stop stops the worker gracefully (SIGTERM: running jobs finish within
// its shutdown grace).
func (w *Worker) Stop() error { return w.proc.Stop(syscall.SIGTERM, 60*time.Second) }

// Busy reports whether the worker has a child process running (a
// witness generator, a prover, a wrapper), at any depth.
func (w *Worker) Busy() bool { return len(Marked(w.mark)) > 0 }

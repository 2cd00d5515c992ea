// Package memory measures the resident memory of the deployed programs,
// each run as its own process against the fleet's NATS and Postgres: the
// frontend (prover-api) idle and with N live handshake sessions (hellos
// without a submit), and a worker (prover-worker) idle and while it proves
// jobs — its own memory only: the witness generators and provers it starts
// are separate processes and are not counted.
package memory

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/bench/internal/apiproc"
	"github.com/openpassport/prover-fleet/bench/internal/child"
	"github.com/openpassport/prover-fleet/bench/internal/circuits"
	"github.com/openpassport/prover-fleet/bench/internal/report"
	"github.com/openpassport/prover-fleet/internal/devfleet"
	"github.com/openpassport/prover-fleet/shared/status"
)

// Config configures a run.
type Config struct {
	APIBinary    string
	WorkerBinary string
	CircuitDir   string
	ZkeyDir      string
	DatabaseURL  string
	// Sessions is the number of live sessions to open.
	Sessions int
	// Circuit is what the worker proves, Jobs times, Concurrency at once.
	Circuit     circuits.Circuit
	Jobs        int
	Concurrency int
	// Prover is the worker's command prover (--prover), Verifier its
	// --verifier, Fallback the verifier used if it refuses Verifier.
	Prover   string
	Verifier string
	Fallback string
	// NativeToo also runs the worker with --prover-mode native.
	NativeToo bool
	WorkDir   string
	Logger    *slog.Logger
	Log       func(format string, args ...any)
}

// Frontend is prover-api's memory.
type Frontend struct {
	Transport string `json:"transport"`
	Sessions  int    `json:"sessions"`
	// LiveSessions is the frontend's own count after the hellos, from its
	// metrics (-1 when it exports none).
	LiveSessions  int     `json:"live_sessions"`
	IdleRSS       int64   `json:"idle_rss_bytes"`
	RSS           int64   `json:"rss_bytes"`
	PeakRSS       int64   `json:"peak_rss_bytes"`
	BytesPerSess  float64 `json:"bytes_per_session"`
	HelloDuration float64 `json:"hellos_s"`
}

// Worker is prover-worker's memory.
type Worker struct {
	Mode     string `json:"mode"`
	Prover   string `json:"prover"`
	Verifier string `json:"verifier"`
	Jobs     int    `json:"jobs"`
	IdleRSS  int64  `json:"idle_rss_bytes"`
	// PeakRSS is the worker process's own high-water mark (VmHWM) after
	// the jobs; RSS its resident memory after them.
	PeakRSS int64 `json:"peak_rss_bytes"`
	RSS     int64 `json:"rss_bytes"`
}

// Result is the benchmark's outcome.
type Result struct {
	Frontend []Frontend `json:"frontend"`
	Worker   []Worker   `json:"worker"`
	Notes    []string   `json:"notes,omitempty"`
}

// Measure runs the benchmark.
func Measure(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	fleet, err := devfleet.Start(ctx, devfleet.Config{
		CircuitDir: cfg.CircuitDir, ZkeyDir: cfg.ZkeyDir, DatabaseURL: cfg.DatabaseURL,
		NoWorkers: true, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = fleet.Stop(stopCtx)
	}()
	res := &Result{}
	for _, transport := range []string{"http", "websocket", "websocket-idle"} {
		cfg.Log("memory: prover-api with %d sessions over %s", cfg.Sessions, transport)
		fe, err := frontend(ctx, cfg, fleet, transport)
		if err != nil {
			return nil, err
		}
		res.Frontend = append(res.Frontend, fe)
	}
	modes := []string{"command"}
	if cfg.NativeToo {
		modes = append(modes, "native")
	}
	for _, mode := range modes {
		cfg.Log("memory: prover-worker (%s), %d jobs", mode, cfg.Jobs)
		w, err := worker(ctx, cfg, fleet, mode, cfg.Verifier)
		var refused *child.ExitedError
		if errors.As(err, &refused) && cfg.Verifier != cfg.Fallback && cfg.Fallback != "" {
			res.Notes = append(res.Notes, fmt.Sprintf("prover-worker (%s) refused --verifier %s (%s); it ran with %s", mode, cfg.Verifier, refused.Output, shortCmd(cfg.Fallback)))
			w, err = worker(ctx, cfg, fleet, mode, cfg.Fallback)
		}
		if errors.As(err, &refused) && mode == "native" {
			res.Notes = append(res.Notes, "prover-worker refused --prover-mode native: "+refused.Output)
			continue
		}
		if err != nil {
			return nil, err
		}
		res.Worker = append(res.Worker, w)
	}
	return res, nil
}

// settle lets the process go quiet before its memory is read.
func settle(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
}

func frontend(ctx context.Context, cfg Config, fleet *devfleet.Fleet, transport string) (Frontend, error) {
	fe := Frontend{Transport: transport, Sessions: cfg.Sessions, LiveSessions: -1}
	// Every client here has the same address: apiproc turns the
	// per-source limits off.
	p, err := apiproc.Start(ctx, apiproc.Config{
		Binary: cfg.APIBinary, Fleet: fleet, CircuitDir: cfg.CircuitDir, ZkeyDir: cfg.ZkeyDir, WorkDir: cfg.WorkDir,
		Args: []string{"--max-sessions", strconv.Itoa(2 * cfg.Sessions), "--session-ttl", "30m", "--idle-timeout", "30m"},
	})
	if err != nil {
		return fe, fmt.Errorf("memory: %w", err)
	}
	defer p.Stop(10 * time.Second)
	addr, admin := p.Addr, p.Admin
	settle(ctx)
	idle, err := child.ReadMemory(p.Pid())
	if err != nil {
		return fe, err
	}
	fe.IdleRSS = idle.RSS

	start := time.Now()
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	switch transport {
	case "http":
		err = httpHellos(ctx, "http://"+addr+"/", cfg.Sessions)
	case "websocket":
		closers, err = wsHellos(ctx, "ws://"+addr+"/", cfg.Sessions, true)
	case "websocket-idle":
		closers, err = wsHellos(ctx, "ws://"+addr+"/", cfg.Sessions, false)
	}
	if err != nil {
		return fe, fmt.Errorf("memory: prover-api hellos over %s: %w (%s)", transport, err, p.Output())
	}
	fe.HelloDuration = time.Since(start).Seconds()
	settle(ctx)
	m, err := child.ReadMemory(p.Pid())
	if err != nil {
		return fe, err
	}
	fe.RSS, fe.PeakRSS = m.RSS, m.HWM
	fe.BytesPerSess = float64(m.RSS-idle.RSS) / float64(cfg.Sessions)
	if n, ok := gauge(ctx, "http://"+admin+"/metrics", "prover_api_sessions_open"); ok {
		fe.LiveSessions = int(n)
		if want := cfg.Sessions; transport != "websocket-idle" && fe.LiveSessions != want {
			return fe, fmt.Errorf("memory: prover-api reports %d live sessions after %d hellos", fe.LiveSessions, want)
		}
	}
	if transport != "http" {
		n, ok := gauge(ctx, "http://"+admin+"/metrics", "prover_api_websockets_open")
		if !ok || int(n) != cfg.Sessions {
			return fe, fmt.Errorf("memory: prover-api reports %v open WebSockets (exported: %t), want %d", n, ok, cfg.Sessions)
		}
	}
	return fe, nil
}

func newKey() ([]byte, error) {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return k.PublicKey().Bytes(), nil
}

// httpHellos opens n sessions with hellos over HTTP POST (16 at a time).
func httpHellos(ctx context.Context, url string, n int) error {
	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	defer transport.CloseIdleConnections()
	c, err := client.Dial(ctx, url, client.Options{HTTPClient: &http.Client{Transport: transport, Timeout: time.Minute}})
	if err != nil {
		return err
	}
	return parallel(ctx, n, 16, func(ctx context.Context, _ int) error {
		key, err := newKey()
		if err != nil {
			return err
		}
		_, err = c.Hello(ctx, uuid.NewString(), key)
		return err
	})
}

// wsHellos opens n WebSockets, each saying one hello (unless hello is
// false: then nothing) and staying open.
func wsHellos(ctx context.Context, url string, n int, hello bool) ([]func(), error) {
	conns := make([]*client.Client, n)
	err := parallel(ctx, n, 16, func(ctx context.Context, i int) error {
		c, err := client.Dial(ctx, url, client.Options{})
		if err != nil {
			return err
		}
		conns[i] = c
		if !hello {
			return nil
		}
		key, err := newKey()
		if err != nil {
			return err
		}
		_, err = c.Hello(ctx, uuid.NewString(), key)
		return err
	})
	var closers []func()
	for _, c := range conns {
		if c != nil {
			closers = append(closers, func() { _ = c.Close() })
		}
	}
	return closers, err
}

func parallel(ctx context.Context, n, c int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// gauge reads one unlabelled gauge from a Prometheus text endpoint.
func gauge(ctx context.Context, url, name string) (float64, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

func worker(ctx context.Context, cfg Config, fleet *devfleet.Fleet, mode, verifier string) (Worker, error) {
	w := Worker{Mode: mode, Verifier: shortCmd(verifier), Jobs: cfg.Jobs}
	admin, err := child.FreeAddr()
	if err != nil {
		return w, err
	}
	workDir, err := os.MkdirTemp(cfg.WorkDir, "worker-")
	if err != nil {
		return w, err
	}
	defer os.RemoveAll(workDir)
	args := []string{
		"--family", string(cfg.Circuit.Family), "--concurrency", strconv.Itoa(cfg.Concurrency),
		"--circuit-folder", cfg.CircuitDir, "--zkey-folder", cfg.ZkeyDir,
		"--prover-mode", mode, "--verifier", verifier,
		"--nats-url", fleet.NATSURL(), "--database-url", fleet.DatabaseURL(),
		"--job-key-file", fleet.JobKeyFile(), "--admin-address", admin, "--work-dir", workDir,
		"--log-level", "warn", "--log-format", "text",
	}
	if mode == "command" {
		args = append(args, "--prover", cfg.Prover)
		w.Prover = shortCmd(cfg.Prover)
	} else {
		w.Prover = "native (in process)"
	}
	p, err := child.Start(ctx, child.Cmd{Path: cfg.WorkerBinary, Args: args})
	if err != nil {
		return w, fmt.Errorf("memory: %w", err)
	}
	defer p.Stop(30 * time.Second)
	if err := p.WaitReady(ctx, "http://"+admin+"/readyz", time.Minute); err != nil {
		var refused *child.ExitedError
		if errors.As(err, &refused) {
			return w, err
		}
		return w, fmt.Errorf("memory: prover-worker: %w", err)
	}
	settle(ctx)
	idle, err := child.ReadMemory(p.Pid())
	if err != nil {
		return w, err
	}
	w.IdleRSS = idle.RSS

	verif, err := fleet.NewVerifier()
	if err != nil {
		return w, err
	}
	inputs, err := cfg.Circuit.Inputs()
	if err != nil {
		return w, err
	}
	req := client.Request{
		Type: cfg.Circuit.ProofType, Circuit: cfg.Circuit.Name, Inputs: inputs, Onchain: true,
		EndpointType: "staging_https", Endpoint: "https://bench.example/verify",
	}
	err = parallel(ctx, cfg.Jobs, cfg.Concurrency, func(ctx context.Context, _ int) error {
		c, err := client.Dial(ctx, fleet.WSURL(), client.Options{Verifier: verif})
		if err != nil {
			return err
		}
		defer c.Close()
		id, err := c.Submit(ctx, req, nil)
		if err != nil {
			return err
		}
		st, err := c.Wait(ctx, id, nil)
		if err != nil {
			return err
		}
		if st.Status != status.ProofGenerated {
			return fmt.Errorf("job %s ended with status %d", id, st.Status)
		}
		return nil
	})
	if err != nil {
		return w, fmt.Errorf("memory: jobs for prover-worker: %w (%s)", err, p.Output())
	}
	m, err := child.ReadMemory(p.Pid())
	if err != nil {
		return w, err
	}
	w.RSS, w.PeakRSS = m.RSS, m.HWM
	return w, nil
}

func shortCmd(cmd string) string {
	words := strings.Fields(cmd)
	for i, w := range words {
		if j := strings.LastIndexByte(w, '/'); j >= 0 {
			words[i] = w[j+1:]
		}
	}
	return strings.Join(words, " ")
}

// Section renders the result.
func (r *Result) Section() report.Section {
	s := report.Section{
		Title: "5. Memory",
		Intro: []string{
			"The deployed binaries, each as its own process against the fleet's NATS and Postgres; RSS is the process's own resident set (VmRSS in /proc/<pid>/status, read after one quiet second), peak its high-water mark (VmHWM). " +
				"**Frontend**: prover-api idle, then after N hellos without a submit (N live handshake sessions; TTL 30 min, so none expires), either over HTTP POST (16 keep-alive connections: the session table alone) " +
				"or with each session on its own open WebSocket (what N waiting phones cost); and, in a third process, N idle WebSockets that say nothing (the connection alone; --idle-timeout 30 min). Per session (or per socket) = (RSS after − RSS idle) ÷ N; the target for an idle WebSocket is ≤ 10 KiB. The per-source limits are off (every client here has the same address). " +
				"**Worker**: prover-worker idle, then after proving jobs submitted through the frontend. Its witness generators, provers and command verifiers are separate processes, so they are not in its RSS; " +
				"in native mode the proving key and the proving itself are in the worker's own memory.",
		},
	}
	t := report.Table{Header: []string{"frontend", "sessions", "live (its metric)", "RSS idle", "RSS with sessions", "peak", "per session"}}
	for _, f := range r.Frontend {
		live := "not exported"
		if f.LiveSessions >= 0 {
			live = fmt.Sprint(f.LiveSessions)
		}
		what := "prover-api, hellos over " + f.Transport
		if f.Transport == "websocket-idle" {
			what = "prover-api, idle WebSockets (no hello; per socket, target ≤ 10 KiB)"
		}
		t.Row(what, fmt.Sprint(f.Sessions), live, report.MiB(f.IdleRSS), report.MiB(f.RSS), report.MiB(f.PeakRSS),
			report.F(f.BytesPerSess/1024, 1)+" KiB")
	}
	s.Tables = append(s.Tables, t)
	wt := report.Table{Header: []string{"worker", "prover", "verifier", "jobs", "RSS idle", "RSS after jobs", "peak (own, children excluded)"}}
	for _, w := range r.Worker {
		wt.Row("prover-worker, "+w.Mode+" mode", w.Prover, w.Verifier, fmt.Sprint(w.Jobs), report.MiB(w.IdleRSS), report.MiB(w.RSS), report.MiB(w.PeakRSS))
	}
	s.Tables = append(s.Tables, wt)
	s.Notes = append(s.Notes, r.Notes...)
	return s
}

package frontend

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/api/server"
	"github.com/openpassport/prover-fleet/bench/internal/apiproc"
	"github.com/openpassport/prover-fleet/bench/internal/child"
	"github.com/openpassport/prover-fleet/bench/internal/circuits"
	"github.com/openpassport/prover-fleet/bench/internal/report"
	"github.com/openpassport/prover-fleet/bench/internal/stats"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/family"
)

// ProcessConfig configures MeasureProcess: the frontend as the deployed
// program, in a process of its own, driven by a load generator in
// another.
type ProcessConfig struct {
	APIBinary     string // prover-api
	LoadgenBinary string // bench/internal/cmd/loadgen
	// BareBinary is bench/internal/cmd/bareapi, the floor (see
	// ServeBare); empty: the floor is not measured.
	BareBinary  string
	Circuit     circuits.Circuit
	CircuitDir  string
	ZkeyDir     string
	DatabaseURL string
	Concurrency int
	Warmup      time.Duration
	Duration    time.Duration
	// CryptoPairs is how many server-side pairs each run of the crypto
	// baseline does (one before the loads, one after each).
	CryptoPairs int
	WorkDir     string
	// ProfileDir, when set, keeps prover-api's CPU and allocation profiles
	// of each loop's measured window (prover-api-<transport>.prof and
	// .allocs.prof, from its admin address with --admin-pprof); they are
	// taken in WorkDir otherwise, and the CPU one is read for
	// ProcessLoad.Profile either way.
	ProfileDir string
	// Unpinned leaves every process free to run on any CPU (see pinning).
	Unpinned bool
	Logger   *slog.Logger
	Log      func(format string, args ...any)
}

// ProcessLoad is one transport's loop against prover-api.
type ProcessLoad struct {
	Transport      string        `json:"transport"`
	Pairs          int           `json:"pairs"`
	PairsPerSecond float64       `json:"pairs_per_second"`
	Latency        stats.Summary `json:"latency"`
	// FrontendCPUPerPairMS is prover-api's own CPU time (user + system,
	// /proc/<pid>/stat) over the measured window ÷ the pairs finished in
	// it; Ratio is that ÷ the server-side cryptography of a pair (target
	// ≤ 1.3).
	FrontendCPUPerPairMS float64 `json:"frontend_cpu_per_pair_ms"`
	// ServerCryptoPerPairMS is the mean of the server crypto runs just
	// before and just after this load: the machine's speed drifts (runs
	// a minute apart have differed by half), so each load is compared
	// with its neighbours.
	ServerCryptoPerPairMS float64 `json:"server_crypto_per_pair_ms"`
	Ratio                 float64 `json:"ratio_to_server_crypto"`
	// RatioConcurrent is frontend CPU per pair ÷ ConcurrentCryptoPerPairMS.
	RatioConcurrent float64 `json:"ratio_to_concurrent_crypto"`
	// The other processes, measured apart: Postgres (every process under
	// the bench's postgres child), the load generator, and this process
	// (the embedded NATS server; the embedded fleet's own frontend is
	// idle).
	PostgresCPUPerPairMS float64 `json:"postgres_cpu_per_pair_ms"`
	LoadgenCPUPerPairMS  float64 `json:"loadgen_cpu_per_pair_ms"`
	NATSCPUPerPairMS     float64 `json:"nats_and_bench_cpu_per_pair_ms"`
	FrontendRSS          int64   `json:"frontend_rss_bytes"`
	// Profile is where prover-api's CPU went in the window (its CPU
	// profile); nil when the profile could not be taken.
	Profile *CPUBreakdown `json:"profile,omitempty"`
	// profilePath is the profile's file, read once the server crypto is
	// known.
	profilePath string
}

// ProcessResult is MeasureProcess's outcome.
type ProcessResult struct {
	Circuit     string  `json:"circuit"`
	Concurrency int     `json:"concurrency"`
	DurationS   float64 `json:"duration_s"`
	// ServerCryptoPerPairMS is the server's cryptography of one pair (a
	// session key, ECDH, the dev attester's document, the AES-GCM
	// decryption of the request), on one locked OS thread, from
	// getrusage(RUSAGE_THREAD): the mean of CryptoRuns, one before the
	// loads and one after each (a load's ratio uses its two neighbours).
	ServerCryptoPerPairMS float64   `json:"server_crypto_per_pair_ms"`
	CryptoRuns            []float64 `json:"server_crypto_runs_ms"`
	// ConcurrentCryptoPerPairMS is the same cryptography done by
	// Concurrency goroutines at once in the bench process (its CPU time ÷
	// pairs; warm-up included): what the Go runtime adds to the
	// cryptography alone (scheduling, GC of what it allocates) when a
	// server does it concurrently.
	ConcurrentCryptoPerPairMS float64 `json:"concurrent_crypto_per_pair_ms"`
	// Pinning says how the CPUs were shared (see pinning), or why they
	// were not split.
	Pinning  string        `json:"pinning"`
	Loads    []ProcessLoad `json:"loads"`
	Enqueued uint64        `json:"enqueued"`
	Notes    []string      `json:"notes,omitempty"`
}

// rusageThread is Linux's RUSAGE_THREAD.
const rusageThread = 1

func threadCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0, fmt.Errorf("frontend: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// serverCrypto runs n server-side pairs on one locked OS thread and
// returns the thread's CPU time per pair.
func serverCrypto(ctx context.Context, pair cryptoPair, n int) (time.Duration, error) {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return 0, err
	}
	cpub := k.PublicKey().Bytes()
	if err := pair.serverOnly(ctx, cpub); err != nil { // warm
		return 0, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0, err := threadCPU()
	if err != nil {
		return 0, err
	}
	for range n {
		if err := pair.serverOnly(ctx, cpub); err != nil {
			return 0, err
		}
	}
	t1, err := threadCPU()
	if err != nil {
		return 0, err
	}
	return (t1 - t0) / time.Duration(n), nil
}

// MeasureProcess runs the benchmark.
func MeasureProcess(ctx context.Context, cfg ProcessConfig) (*ProcessResult, error) {
	if cfg.Concurrency < 1 || cfg.Duration <= 0 || cfg.CryptoPairs < 1 {
		return nil, errors.New("frontend: Concurrency, Duration and CryptoPairs must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	c := cfg.Circuit
	inputs, err := c.Inputs()
	if err != nil {
		return nil, err
	}
	res := &ProcessResult{Circuit: c.Name, Concurrency: cfg.Concurrency, DurationS: cfg.Duration.Seconds()}
	// Pinned first, so that the fleet's Postgres and NATS, and the load
	// generator, start on the CPUs left to them.
	pin, why := (*pinning)(nil), "not pinned: -frontend-unpinned"
	if !cfg.Unpinned {
		pin, why = newPinning()
	}
	res.Pinning = why
	if pin != nil {
		if err := pin.pinSelf(); err != nil {
			return nil, err
		}
		defer func() {
			if err := pin.restore(); err != nil {
				cfg.Log("frontend (own process): %v", err)
			}
		}()
		res.Pinning = pin.describe()
		if cfg.DatabaseURL != "" {
			res.Pinning += " (a -database-url server: not moved)"
		}
	}
	fleet, stopFleet, err := startQueueFleet(ctx, cfg.CircuitDir, cfg.ZkeyDir, cfg.DatabaseURL, server.Config{}, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer stopFleet()

	// A session table far above what the run opens, and a CPU profile of
	// each window, which says where the CPU goes (sampling at 100 Hz costs
	// it well under 1 %).
	api, err := apiproc.Start(ctx, apiproc.Config{
		Binary: cfg.APIBinary, Fleet: fleet, CircuitDir: cfg.CircuitDir, ZkeyDir: cfg.ZkeyDir, WorkDir: cfg.WorkDir,
		Args:   []string{"--max-sessions", "1000000", "--admin-pprof"},
		Prefix: pin.prefix(),
	})
	if err != nil {
		return nil, fmt.Errorf("frontend: %w", err)
	}
	defer api.Stop(10 * time.Second)

	attester, err := attest.NewDev(attest.DevConfig{Dir: api.AttestDir, ModuleID: "prover-api-dev"})
	if err != nil {
		return nil, fmt.Errorf("frontend: %w", err)
	}
	plain, err := requestPlaintext(string(c.ProofType), c.Name, inputs)
	if err != nil {
		return nil, err
	}
	pair := cryptoPair{attester: attester, plaintext: plain}
	crypto := func() error {
		var d time.Duration
		err := pin.onAPICPU(func() (err error) {
			d, err = serverCrypto(ctx, pair, cfg.CryptoPairs)
			return err
		})
		if err != nil {
			return fmt.Errorf("frontend: server crypto: %w", err)
		}
		res.CryptoRuns = append(res.CryptoRuns, stats.Round(stats.MS(d), 4))
		return nil
	}
	cfg.Log("frontend (own process): server-side crypto, %d pairs on one thread", cfg.CryptoPairs)
	if err := crypto(); err != nil {
		return nil, err
	}
	spec := LoadSpec{
		Concurrency: cfg.Concurrency, Warmup: cfg.Warmup, Duration: cfg.Duration,
		Type: string(c.ProofType), Circuit: c.Name, Inputs: inputs,
		EndpointType: "staging_https", Endpoint: "https://bench.example/verify",
	}
	loopCfg := Config{Concurrency: cfg.Concurrency, Warmup: cfg.Warmup, Duration: cfg.Duration, Log: cfg.Log}
	serverOnly := func(int) func(context.Context) error {
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			return func(context.Context) error { return err }
		}
		cpub := k.PublicKey().Bytes()
		return func(ctx context.Context) error { return pair.serverOnly(ctx, cpub) }
	}
	conc, err := loop(ctx, "crypto only, server side, concurrent", loopCfg, serverOnly)
	if err != nil {
		return nil, err
	}
	res.ConcurrentCryptoPerPairMS = conc.ProcessCPUPerPairMS
	for _, tr := range []struct{ name, url string }{{"WebSocket", "ws://" + api.Addr + "/"}, {"HTTP", "http://" + api.Addr + "/"}} {
		cfg.Log("frontend (own process): %s, %d clients in the load generator", tr.name, cfg.Concurrency)
		spec.URL = tr.url
		dir := cfg.ProfileDir
		if dir == "" {
			dir = cfg.WorkDir
		}
		profile := filepath.Join(dir, "prover-api-"+strings.ToLower(tr.name)+".prof")
		l, err := runLoad(ctx, cfg, api.Pid(), api.Admin, spec, profile)
		if err != nil {
			return nil, fmt.Errorf("frontend: %s load: %w (prover-api: %s)", tr.name, err, api.Output())
		}
		l.Transport = tr.name
		res.Loads = append(res.Loads, l)
		if err := crypto(); err != nil {
			return nil, err
		}
	}
	if cfg.BareBinary != "" {
		cfg.Log("frontend (own process): the bare server (floor), %d clients in the load generator", cfg.Concurrency)
		l, err := runBare(ctx, cfg, pin, spec)
		if err != nil {
			return nil, err
		}
		res.Loads = append(res.Loads, l)
		if err := crypto(); err != nil {
			return nil, err
		}
	}
	var sum float64
	for _, v := range res.CryptoRuns {
		sum += v
	}
	res.ServerCryptoPerPairMS = stats.Round(sum/float64(len(res.CryptoRuns)), 4)
	for i := range res.Loads {
		// Load i ran between crypto runs i and i+1.
		l := &res.Loads[i]
		l.ServerCryptoPerPairMS = stats.Round((res.CryptoRuns[i]+res.CryptoRuns[i+1])/2, 4)
		l.Ratio = stats.Round(stats.Ratio(l.FrontendCPUPerPairMS, l.ServerCryptoPerPairMS), 3)
		l.RatioConcurrent = stats.Round(stats.Ratio(l.FrontendCPUPerPairMS, res.ConcurrentCryptoPerPairMS), 3)
		if p := l.profilePath; p != "" {
			b, err := breakdown(p, l.Pairs, l.ServerCryptoPerPairMS)
			if err != nil {
				res.Notes = append(res.Notes, fmt.Sprintf("%s: no CPU breakdown: %v", l.Transport, err))
			}
			l.Profile = b
		}
	}
	backlogs, err := fleet.Backlogs(ctx)
	if err != nil {
		return nil, fmt.Errorf("frontend: %w", err)
	}
	for _, b := range backlogs {
		res.Enqueued += b.Pending
	}
	return res, nil
}

// cpuSnapshot is the CPU time so far of the processes measured apart.
type cpuSnapshot struct {
	api, loadgen, postgres, self time.Duration
}

func snapshot(apiPid, loadgenPid int) (cpuSnapshot, error) {
	var s cpuSnapshot
	var err error
	if s.api, err = child.ProcessCPU(apiPid); err != nil {
		return s, err
	}
	if s.loadgen, err = child.ProcessCPU(loadgenPid); err != nil {
		return s, err
	}
	tree, err := child.TreeCPU(os.Getpid())
	if err != nil {
		return s, err
	}
	s.postgres, s.self = tree.Postgres, tree.Self
	return s, nil
}

// runLoad starts the load generator and takes the CPU snapshots at the
// window it announces.
func runLoad(ctx context.Context, cfg ProcessConfig, apiPid int, admin string, spec LoadSpec, profile string) (ProcessLoad, error) {
	var l ProcessLoad
	in, err := json.Marshal(spec)
	if err != nil {
		return l, err
	}
	pr, pw := io.Pipe()
	p, err := child.Start(ctx, child.Cmd{Path: cfg.LoadgenBinary, Stdin: strings.NewReader(string(in)), Stdout: pw})
	if err != nil {
		return l, err
	}
	defer p.Stop(5 * time.Second)
	var (
		mu       sync.Mutex
		from, to cpuSnapshot
		result   LoadResult
		readErr  error
		profWG   sync.WaitGroup
		cpuErr   error // the CPU profile's fetch
		allocErr error // the allocation profile's fetch
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			switch {
			case line == MarkMeasure:
				from, readErr = snapshot(apiPid, p.Pid())
				if profile != "" {
					profWG.Add(2)
					go func() {
						defer profWG.Done()
						cpuErr = fetchProfile(ctx, admin, "profile", spec.Duration, profile)
					}()
					go func() {
						defer profWG.Done()
						allocErr = fetchProfile(ctx, admin, "allocs", spec.Duration, strings.TrimSuffix(profile, ".prof")+".allocs.prof")
					}()
				}
			case line == MarkDone:
				to, readErr = snapshot(apiPid, p.Pid())
			case strings.HasPrefix(line, "{"):
				readErr = errors.Join(readErr, json.Unmarshal([]byte(line), &result))
			}
			mu.Unlock()
		}
	}()
	select {
	case <-p.Exited():
	case <-ctx.Done():
		return l, ctx.Err()
	}
	pw.Close()
	<-done
	profWG.Wait()
	if profile != "" {
		if cpuErr == nil {
			l.profilePath = profile
		} else {
			cfg.Log("frontend (own process): no CPU profile of prover-api: %v", cpuErr)
		}
		if allocErr != nil {
			cfg.Log("frontend (own process): no allocation profile of prover-api: %v", allocErr)
		}
	}
	if err := p.Stop(time.Second); err != nil {
		return l, fmt.Errorf("load generator: %w: %s", err, p.Output())
	}
	mu.Lock()
	defer mu.Unlock()
	if readErr != nil {
		return l, readErr
	}
	if result.Error != "" {
		return l, errors.New(result.Error)
	}
	if result.Pairs == 0 {
		return l, errors.New("load generator finished no pair in the measured window")
	}
	n := float64(result.Pairs)
	per := func(d time.Duration) float64 { return stats.Round(stats.MS(d)/n, 4) }
	l.Pairs = result.Pairs
	l.PairsPerSecond = stats.Round(n/cfg.Duration.Seconds(), 1)
	l.Latency = result.Latency
	l.FrontendCPUPerPairMS = per(to.api - from.api)
	l.PostgresCPUPerPairMS = per(to.postgres - from.postgres)
	l.LoadgenCPUPerPairMS = per(to.loadgen - from.loadgen)
	l.NATSCPUPerPairMS = per(to.self - from.self)
	if m, err := child.ReadMemory(apiPid); err == nil {
		l.FrontendRSS = m.RSS
	}
	return l, nil
}

// BareTransport names the bare server's load.
const BareTransport = "bare TCP (floor)"

// runBare starts the bare server where prover-api runs (its CPU, when
// pinned) and runs the load generator against it.
func runBare(ctx context.Context, cfg ProcessConfig, pin *pinning, spec LoadSpec) (ProcessLoad, error) {
	addr, err := child.FreeAddr()
	if err != nil {
		return ProcessLoad{}, err
	}
	dir, err := os.MkdirTemp(cfg.WorkDir, "bare-attest-")
	if err != nil {
		return ProcessLoad{}, err
	}
	defer os.RemoveAll(dir)
	p, err := child.Start(ctx, child.Prefixed(pin.prefix(), cfg.BareBinary, "-addr", addr, "-attest-dir", dir))
	if err != nil {
		return ProcessLoad{}, fmt.Errorf("frontend: bare server: %w", err)
	}
	defer p.Stop(5 * time.Second)
	if err := p.WaitListening(ctx, addr, time.Minute); err != nil {
		return ProcessLoad{}, fmt.Errorf("frontend: bare server: %w", err)
	}
	spec.URL = "tcp://" + addr
	l, err := runLoad(ctx, cfg, p.Pid(), "", spec, "")
	if err != nil {
		return l, fmt.Errorf("frontend: bare load: %w (bare server: %s)", err, p.Output())
	}
	l.Transport = BareTransport
	return l, nil
}

// fetchProfile writes prover-api's profile of the given kind ("profile"
// for CPU, "allocs" for allocations) over the next d to path.
func fetchProfile(ctx context.Context, admin, kind string, d time.Duration, path string) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", admin, kind, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Markers the load generator prints on its standard output.
const (
	MarkMeasure = "measure" // the warm-up is over: the window starts
	MarkDone    = "done"    // the window ends
)

// LoadSpec is what the load generator runs (JSON on its standard input).
type LoadSpec struct {
	URL          string          `json:"url"`
	Concurrency  int             `json:"concurrency"`
	Warmup       time.Duration   `json:"warmup"`
	Duration     time.Duration   `json:"duration"`
	Type         string          `json:"type"`
	Circuit      string          `json:"circuit"`
	Inputs       json.RawMessage `json:"inputs"`
	EndpointType string          `json:"endpoint_type"`
	Endpoint     string          `json:"endpoint"`
}

// LoadResult is the load generator's answer (one JSON line after
// MarkDone).
type LoadResult struct {
	Pairs   int           `json:"pairs"` // finished inside the window
	Latency stats.Summary `json:"latency"`
	Error   string        `json:"error,omitempty"`
}

// RunLoad is the load generator: Concurrency clients, each on its own
// connection, loop hello+submit (reading the server key from the document
// without checking its signature, as the in-process loops do); it prints
// MarkMeasure when the warm-up ends, MarkDone when the window ends, then
// the LoadResult as one JSON line.
func RunLoad(ctx context.Context, spec LoadSpec, out io.Writer) error {
	pairs, closeAll, err := loadClients(ctx, spec)
	defer closeAll()
	if err != nil {
		return err
	}
	start := time.Now()
	from, to := start.Add(spec.Warmup), start.Add(spec.Warmup+spec.Duration)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu   sync.Mutex
		done int
		lats []time.Duration
		wg   sync.WaitGroup
	)
	for _, pair := range pairs {
		wg.Go(func() {
			for ctx.Err() == nil {
				t := time.Now()
				if !t.Before(to) {
					return
				}
				if err := pair(ctx); err != nil {
					cancel(err)
					return
				}
				end := time.Now()
				if end.After(from) && !end.After(to) {
					mu.Lock()
					done++
					if !t.Before(from) {
						lats = append(lats, end.Sub(t))
					}
					mu.Unlock()
				}
			}
		})
	}
	mark := func(at time.Time, line string) {
		select {
		case <-time.After(time.Until(at)):
			fmt.Fprintln(out, line)
		case <-ctx.Done():
		}
	}
	mark(from, MarkMeasure)
	mark(to, MarkDone)
	wg.Wait()
	res := LoadResult{Pairs: done, Latency: stats.Summarize(lats)}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		res.Error = err.Error()
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, string(b))
	return err
}

// loadClients connects spec.Concurrency clients and returns a pair
// function for each, and what closes them all (also after an error). A
// tcp:// URL is a bare server (see ServeBare); ws:// and http:// are
// prover-api, through api/client.
func loadClients(ctx context.Context, spec LoadSpec) ([]func(context.Context) error, func(), error) {
	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	pairs := make([]func(context.Context) error, spec.Concurrency)
	if addr, ok := strings.CutPrefix(spec.URL, "tcp://"); ok {
		plain, err := requestPlaintext(spec.Type, spec.Circuit, spec.Inputs)
		if err != nil {
			return nil, closeAll, err
		}
		for i := range pairs {
			c, err := dialBare(ctx, addr, plain)
			if err != nil {
				return nil, closeAll, err
			}
			closers = append(closers, c)
			pairs[i] = c.pair
		}
		return pairs, closeAll, nil
	}
	req := client.Request{Type: family.ProofType(spec.Type), Circuit: spec.Circuit, Inputs: spec.Inputs, Onchain: true,
		EndpointType: spec.EndpointType, Endpoint: spec.Endpoint}
	transport := &http.Transport{MaxIdleConns: 2 * spec.Concurrency, MaxIdleConnsPerHost: 2 * spec.Concurrency}
	closers = append(closers, closerFunc(transport.CloseIdleConnections))
	for i := range pairs {
		c, err := client.Dial(ctx, spec.URL, client.Options{Verifier: DocReader{}, HTTPClient: &http.Client{Transport: transport, Timeout: time.Minute}})
		if err != nil {
			return nil, closeAll, err
		}
		closers = append(closers, c)
		pairs[i] = func(ctx context.Context) error {
			_, err := c.Submit(ctx, req, nil)
			return err
		}
	}
	return pairs, closeAll, nil
}

// ratioCell is a load's ratio with the target, or with "floor" for the
// bare server, which is not a frontend.
func ratioCell(l ProcessLoad) string {
	if l.Transport == BareTransport {
		return report.F(l.Ratio, 3) + " (floor)"
	}
	return report.F(l.Ratio, 3) + " (" + report.Target(l.Ratio <= 1.3, "≤ 1.3") + ")"
}

type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }

// ProcessSection renders the result.
func (r *ProcessResult) Section() report.Section {
	s := report.Section{
		Title: "2b. Frontend as its own process",
		Intro: []string{
			fmt.Sprintf("prover-api, the deployed program, in a process of its own against the fleet's NATS (embedded in the bench process) and Postgres (its own processes); "+
				"the load generator in another process (`bench/internal/cmd/loadgen`): %d clients, each on its own connection, looping hello+submit (%s request) for %s s after a discarded warm-up. "+
				"Per-source limits are off (every client has the same address) and the session table holds 1,000,000.", r.Concurrency, r.Circuit, report.F(r.DurationS, 0)),
			"**CPUs**: " + r.Pinning + ". With 2 CPUs or more, prover-api runs alone on one CPU (`taskset`, so Go gives it one P, as a container of one CPU would), and the server-side baseline's thread runs on that CPU too: both sides of the ratio run on the same core while the load generator, Postgres and NATS work on the others. `-frontend-unpinned` turns this off.",
			"**Frontend CPU per pair** = prover-api's own CPU time (user + system from /proc/<pid>/stat) over the measured window ÷ the pairs finished in it: everything the frontend does for a pair — JSON-RPC over WebSocket or HTTP, the handshake's cryptography, the session table, validation, the Postgres row (its client side), the JetStream publish (its client side), GC. " +
				"**Server crypto per pair** = the server's cryptography of one pair (session key, ECDH, the dev attester's document: one ECDSA P-384 signature, AES-GCM decryption of the request), on one locked OS thread of the bench process, CPU from getrusage(RUSAGE_THREAD); run once before the loads and once after each; each load is compared with the mean of the two runs beside it (the machine's speed drifts). " +
				"**Ratio** = frontend CPU per pair ÷ server crypto per pair (target ≤ 1.3). **Concurrent crypto** = the same server-side cryptography done by as many goroutines at once in the bench process (its CPU ÷ pairs): what Go's scheduler and GC add to the cryptography alone; the ratio to it is shown too. Postgres, the load generator and NATS (with the bench process's own idle work) are measured apart and are not in the ratio.",
		},
	}
	t := report.Table{Header: []string{"transport", "pairs", "pairs/s", "latency p50", "p99", "frontend CPU per pair", "server crypto per pair", "ratio", "concurrent crypto per pair", "ratio to it", "Postgres", "load generator", "NATS + bench", "frontend RSS"}}
	for _, l := range r.Loads {
		t.Row(l.Transport, fmt.Sprint(l.Pairs), report.F(l.PairsPerSecond, 0), report.F(l.Latency.P50MS, 2)+" ms", report.F(l.Latency.P99MS, 2)+" ms",
			report.F(l.FrontendCPUPerPairMS, 3)+" ms", report.F(l.ServerCryptoPerPairMS, 3)+" ms",
			ratioCell(l),
			report.F(r.ConcurrentCryptoPerPairMS, 3)+" ms", report.F(l.RatioConcurrent, 3),
			report.F(l.PostgresCPUPerPairMS, 3)+" ms", report.F(l.LoadgenCPUPerPairMS, 3)+" ms", report.F(l.NATSCPUPerPairMS, 3)+" ms", report.MiB(l.FrontendRSS))
	}
	s.Tables = append(s.Tables, t)
	b := report.Table{Header: []string{"transport", "sampled CPU per pair", "crypto", "socket reads and writes", "GC and allocation", "Postgres client", "NATS client", "encoding/json", "the rest", "floor: (crypto + socket) ÷ server crypto"}}
	for _, l := range r.Loads {
		if p := l.Profile; p != nil {
			ms := func(v float64) string { return report.F(v, 3) + " ms" }
			b.Row(l.Transport, ms(p.SampledPerPairMS), ms(p.CryptoMS), ms(p.SocketIOMS), ms(p.GCMS), ms(p.PostgresMS), ms(p.NATSMS), ms(p.JSONMS), ms(p.OtherMS), report.F(p.Floor, 3))
		}
	}
	if len(b.Rows) > 0 {
		s.Tables = append(s.Tables, b)
		s.Notes = append(s.Notes, "**Where prover-api's CPU goes**: its CPU profile over each measured window (Go's sampling profiler, 100 Hz, from its admin address with `--admin-pprof`), per pair. "+
			"A sample counts in the first of these its stack contains: Go's crypto packages (key generation, ECDH, the attester's signature, AES-GCM, random numbers), the socket read and write syscalls (on loopback a write also runs the receiver's TCP path), "+
			"the garbage collector and allocation, the Postgres client (pgx), the NATS client, encoding/json; the rest is WebSocket and HTTP framing, the JSON-RPC server, the session table, validation, timers and the scheduler. "+
			"**Floor** = (crypto + socket) ÷ server crypto per pair: the ratio the frontend would show on this machine, under this load, if everything else it does cost nothing. "+
			"Above 1.3, no change to the frontend's own code can meet the target here: the cryptography itself runs slower inside the loaded frontend than on the quiet thread of the baseline.")
	}
	for _, l := range r.Loads {
		if l.Transport == BareTransport {
			s.Notes = append(s.Notes, fmt.Sprintf("**%s**: the floor under any Go frontend of this protocol here. `bench/internal/cmd/bareapi`, measured like prover-api (its own process, on prover-api's CPU, the same load generator), does per pair the server crypto of the baseline and moves the same number of bytes over loopback TCP (each message padded to the size of the app's JSON message, byte strings as decimal lists), and nothing else: no WebSocket or HTTP framing, JSON, session table, deadlines, Postgres or queue. "+
				"Its ratio (%s) is what Go's runtime and the socket calls cost on top of the cryptography; a frontend meets ≤ 1.3 only if all it does beyond that costs under %s ms per pair.",
				BareTransport, report.F(l.Ratio, 3), report.F(max(0, 1.3*l.ServerCryptoPerPairMS-l.FrontendCPUPerPairMS), 3)))
		}
	}
	var runs []string
	for _, v := range r.CryptoRuns {
		runs = append(runs, report.F(v, 3)+" ms")
	}
	s.Notes = append(s.Notes, "Server crypto per pair, the runs (one before the loads, one after each; a load's ratio uses the mean of the two beside it): "+strings.Join(runs, ", ")+".")
	s.Notes = append(s.Notes, fmt.Sprintf("Check: every accepted submit is on the queue (%d jobs pending after the run, warm-ups included).", r.Enqueued))
	s.Notes = append(s.Notes, r.Notes...)
	return s
}

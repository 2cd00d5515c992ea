// Package frontend measures the frontend alone: hello+submit pairs per
// second and their latency over WebSocket and over HTTP POST with many
// concurrent clients, against a fleet with no workers (so only the
// handshake, the request checks, the Postgres row and the JetStream publish
// are measured), and the same process's crypto-only limit: the same number
// of goroutines doing only the pair's cryptography.
package frontend

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/api/server"
	"github.com/openpassport/prover-fleet/bench/internal/child"
	"github.com/openpassport/prover-fleet/bench/internal/circuits"
	"github.com/openpassport/prover-fleet/bench/internal/report"
	"github.com/openpassport/prover-fleet/bench/internal/stats"
	"github.com/openpassport/prover-fleet/internal/devfleet"
	"github.com/openpassport/prover-fleet/shared/attest"
)

// Config configures a run.
type Config struct {
	Circuit    circuits.Circuit
	CircuitDir string
	ZkeyDir    string
	// DatabaseURL is the fleet's database (empty: a throwaway server).
	DatabaseURL string
	// Concurrency is the number of clients (and of crypto goroutines).
	Concurrency int
	// Warmup is run and discarded before each Duration that is measured.
	Warmup   time.Duration
	Duration time.Duration
	Logger   *slog.Logger
	Log      func(format string, args ...any)
}

// Load is one measured loop.
type Load struct {
	Name           string        `json:"name"`
	Pairs          int           `json:"pairs"`
	PairsPerSecond float64       `json:"pairs_per_second"`
	Latency        stats.Summary `json:"latency"`
	// RatioToCrypto is PairsPerSecond over the both-ends crypto limit's
	// (target ≥ 0.8); RatioToServerCrypto over the server-only one's.
	RatioToCrypto       float64 `json:"ratio_to_crypto,omitempty"`
	RatioToServerCrypto float64 `json:"ratio_to_server_crypto,omitempty"`
	// CPUPerPairMS is the CPU time of this process's whole tree (Postgres
	// included) over the loop, warm-up included, per pair finished in it.
	// CPURatio is the both-ends crypto limit's CPU per pair over this
	// loop's: the pairs/s ratio a machine saturated by this work alone would
	// show.
	CPUPerPairMS float64 `json:"cpu_per_pair_ms"`
	CPURatio     float64 `json:"cpu_ratio,omitempty"`
	// ProcessCPUPerPairMS is the part of CPUPerPairMS spent in this
	// process (frontend, load generator and the embedded NATS server);
	// the rest is its child processes (Postgres).
	ProcessCPUPerPairMS float64 `json:"process_cpu_per_pair_ms"`
	// PostgresCPUPerPairMS is the Postgres part of CPUPerPairMS.
	// PostgresCeiling is the highest CPU ratio this loop could show if the
	// frontend, the load generator and NATS cost nothing beyond the pair's
	// cryptography and Postgres cost what it did: both-ends crypto CPU per
	// pair ÷ (that + PostgresCPUPerPairMS). Below the target, no change to
	// the Go code alone can meet it on this machine.
	PostgresCPUPerPairMS float64 `json:"postgres_cpu_per_pair_ms"`
	PostgresCeiling      float64 `json:"postgres_ceiling,omitempty"`

	lat   []time.Duration
	cpu   time.Duration
	self  time.Duration
	pg    time.Duration
	pairs int // warm-up included
}

// Result is the benchmark's outcome.
type Result struct {
	Circuit      string   `json:"circuit"`
	Concurrency  int      `json:"concurrency"`
	DurationS    float64  `json:"duration_s"`
	WebSocket    Load     `json:"websocket"`
	HTTP         Load     `json:"http"`
	Crypto       Load     `json:"crypto_both_ends"`
	ServerCrypto Load     `json:"crypto_server_only"`
	Enqueued     uint64   `json:"enqueued"`
	Notes        []string `json:"notes,omitempty"`
}

// Measure runs the benchmark.
func Measure(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Concurrency < 1 || cfg.Duration <= 0 {
		return nil, errors.New("frontend: Concurrency and Duration must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	c := cfg.Circuit
	inputs, err := c.Inputs()
	if err != nil {
		return nil, err
	}
	fleet, stopFleet, err := startQueueFleet(ctx, cfg.CircuitDir, cfg.ZkeyDir, cfg.DatabaseURL, server.Config{MaxSessions: 1_000_000}, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer stopFleet()
	res := &Result{Circuit: c.Name, Concurrency: cfg.Concurrency, DurationS: cfg.Duration.Seconds()}
	req := client.Request{
		Type: c.ProofType, Circuit: c.Name, Inputs: inputs, Onchain: true,
		EndpointType: "staging_https", Endpoint: "https://bench.example/verify",
	}
	var accepted atomic.Int64 // every accepted submit, warm-ups included
	submit := func(cl *client.Client) func(context.Context) error {
		return func(ctx context.Context) error {
			if _, err := cl.Submit(ctx, req, nil); err != nil {
				return fmt.Errorf("frontend: submit: %w", err)
			}
			accepted.Add(1)
			return nil
		}
	}

	// The crypto-only limits, with the fleet's development root.
	attester, err := attest.NewDev(attest.DevConfig{Dir: fleet.AttestDir(), ModuleID: devfleet.ModuleID})
	if err != nil {
		return nil, fmt.Errorf("frontend: %w", err)
	}
	plain, err := requestPlaintext(string(req.Type), req.Circuit, req.Inputs)
	if err != nil {
		return nil, err
	}
	pair := cryptoPair{attester: attester, plaintext: plain}
	bothEnds := func(int) func(context.Context) error { return pair.bothEnds }
	serverOnly := func(int) func(context.Context) error {
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			return func(context.Context) error { return err }
		}
		cpub := k.PublicKey().Bytes()
		return func(ctx context.Context) error { return pair.serverOnly(ctx, cpub) }
	}

	// WebSocket: one connection per client. The clients' own goroutines
	// (reading the socket) are labelled bench=client for profiles.
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("bench", "client")))
	defer pprof.SetGoroutineLabels(ctx)
	wsClients := make([]*client.Client, cfg.Concurrency)
	for i := range wsClients {
		if wsClients[i], err = client.Dial(ctx, fleet.WSURL(), client.Options{Verifier: DocReader{}}); err != nil {
			return nil, fmt.Errorf("frontend: %w", err)
		}
		defer wsClients[i].Close()
	}
	ws := func(w int) func(context.Context) error { return submit(wsClients[w]) }

	// HTTP POST: one call per request, connections kept alive.
	transport := &http.Transport{MaxIdleConns: 2 * cfg.Concurrency, MaxIdleConnsPerHost: 2 * cfg.Concurrency, IdleConnTimeout: time.Minute}
	defer transport.CloseIdleConnections()
	httpClient := &http.Client{Transport: transport, Timeout: time.Minute}
	httpClients := make([]*client.Client, cfg.Concurrency)
	for i := range httpClients {
		if httpClients[i], err = client.Dial(ctx, fleet.HTTPURL(), client.Options{Verifier: DocReader{}, HTTPClient: httpClient}); err != nil {
			return nil, fmt.Errorf("frontend: %w", err)
		}
	}
	hp := func(w int) func(context.Context) error { return submit(httpClients[w]) }

	// The crypto limits are measured before and after the frontend and
	// averaged, so that drift on the machine hits both sides alike.
	var crypto1, crypto2, server1, server2 Load
	for _, step := range []struct {
		name string
		into *Load
		op   func(int) func(context.Context) error
	}{
		{"crypto only, server side", &server1, serverOnly},
		{"crypto only, both ends", &crypto1, bothEnds},
		{"WebSocket", &res.WebSocket, ws},
		{"HTTP", &res.HTTP, hp},
		{"crypto only, both ends", &crypto2, bothEnds},
		{"crypto only, server side", &server2, serverOnly},
	} {
		cfg.Log("frontend: %s, %d goroutines", step.name, cfg.Concurrency)
		if *step.into, err = loop(ctx, step.name, cfg, step.op); err != nil {
			return nil, err
		}
	}
	res.Crypto = merge(crypto1, crypto2)
	res.ServerCrypto = merge(server1, server2)
	for _, l := range []*Load{&res.WebSocket, &res.HTTP} {
		l.RatioToCrypto = stats.Round(stats.Ratio(l.PairsPerSecond, res.Crypto.PairsPerSecond), 3)
		l.RatioToServerCrypto = stats.Round(stats.Ratio(l.PairsPerSecond, res.ServerCrypto.PairsPerSecond), 3)
		l.CPURatio = stats.Round(stats.Ratio(res.Crypto.CPUPerPairMS, l.CPUPerPairMS), 3)
		l.PostgresCeiling = stats.Round(stats.Ratio(res.Crypto.CPUPerPairMS, res.Crypto.CPUPerPairMS+l.PostgresCPUPerPairMS), 3)
	}

	// Every accepted submit must be on the queue.
	backlogs, err := fleet.Backlogs(ctx)
	if err != nil {
		return nil, fmt.Errorf("frontend: %w", err)
	}
	for _, b := range backlogs {
		res.Enqueued += b.Pending
	}
	if n := accepted.Load(); res.Enqueued != uint64(n) {
		return nil, fmt.Errorf("frontend: %d submits were accepted but %d jobs are queued", n, res.Enqueued)
	}
	return res, nil
}

// merge combines two runs of the same loop: their pairs and latencies
// pooled, the rate averaged.
func merge(a, b Load) Load {
	l := Load{
		Name: a.Name, Pairs: a.Pairs + b.Pairs,
		PairsPerSecond: stats.Round((a.PairsPerSecond+b.PairsPerSecond)/2, 1),
		Latency:        stats.Summarize(append(append([]time.Duration(nil), a.lat...), b.lat...)),
		cpu:            a.cpu + b.cpu, self: a.self + b.self, pg: a.pg + b.pg, pairs: a.pairs + b.pairs,
	}
	l.perPair()
	return l
}

// perPair sets the CPU-per-pair figures from the loop's CPU times.
func (l *Load) perPair() {
	if l.pairs == 0 {
		return
	}
	n := float64(l.pairs)
	l.CPUPerPairMS = stats.Round(stats.MS(l.cpu)/n, 4)
	l.ProcessCPUPerPairMS = stats.Round(stats.MS(l.self)/n, 4)
	l.PostgresCPUPerPairMS = stats.Round(stats.MS(l.pg)/n, 4)
}

// loop runs op on cfg.Concurrency goroutines for cfg.Warmup and then
// cfg.Duration. Pairs are the operations that finished inside the measured
// window; their latencies are those that also started inside it.
func loop(ctx context.Context, name string, cfg Config, newOp func(worker int) func(context.Context) error) (Load, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ops := make([]func(context.Context) error, cfg.Concurrency)
	for i := range ops {
		ops[i] = newOp(i)
	}
	cpu0, err := child.TreeCPU(os.Getpid())
	if err != nil {
		return Load{}, err
	}
	start := time.Now()
	from, to := start.Add(cfg.Warmup), start.Add(cfg.Warmup+cfg.Duration)
	lat := make([][]time.Duration, cfg.Concurrency)
	done := make([]int, cfg.Concurrency)
	all := make([]int, cfg.Concurrency)
	var wg sync.WaitGroup
	// The loop's goroutines carry a profiler label (bench=<loop>), so that
	// a -cpuprofile tells the load generator's and the crypto loops' CPU
	// apart from the frontend's, which has no label.
	labels := pprof.WithLabels(ctx, pprof.Labels("bench", name))
	for w := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pprof.SetGoroutineLabels(labels)
			for ctx.Err() == nil {
				t := time.Now()
				if !t.Before(to) {
					return
				}
				if err := ops[w](ctx); err != nil {
					cancel(err)
					return
				}
				end := time.Now()
				all[w]++
				if end.After(from) && !end.After(to) {
					done[w]++
					if !t.Before(from) {
						lat[w] = append(lat[w], end.Sub(t))
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return Load{}, fmt.Errorf("frontend: %s: %w", name, err)
	}
	cpu1, err := child.TreeCPU(os.Getpid())
	if err != nil {
		return Load{}, err
	}
	d := cpu1.Sub(cpu0)
	l := Load{Name: name, cpu: d.Total(), self: d.Self, pg: d.Postgres}
	var lats []time.Duration
	for w := range cfg.Concurrency {
		l.Pairs += done[w]
		l.pairs += all[w]
		lats = append(lats, lat[w]...)
	}
	l.PairsPerSecond = stats.Round(float64(l.Pairs)/cfg.Duration.Seconds(), 1)
	l.Latency, l.lat = stats.Summarize(lats), lats
	l.perPair()
	return l, nil
}

// Section renders the result.
func (r *Result) Section() report.Section {
	s := report.Section{
		Title: "2. Frontend",
		Intro: []string{
			fmt.Sprintf("%d concurrent clients in this process, each looping hello+submit (%s request) for %s s after a discarded warm-up, against the fleet with no workers "+
				"(frontend, JetStream with file storage, throwaway Postgres; stream limits far above what the run enqueues; session table 1,000,000). "+
				"A pair is: a fresh client P-256 key, `openpassport_hello`, reading the server key from the attestation document, ECDH, AES-256-GCM, `openpassport_submit_request`; "+
				"the server parses, validates, inserts the proofs row and publishes the sealed job before answering. "+
				"WebSocket: one connection per client. HTTP: one POST per call, keep-alive connections.", r.Concurrency, r.Circuit, report.F(r.DurationS, 0)),
			"The load generator does not check the document's signature and chain (the fleet-overhead benchmark's client does): here that would be client work on the frontend's cores. " +
				"**Crypto-only limit, both ends**: the same number of goroutines, same process, doing only the pair's cryptography: client key, server session key, server ECDH, the dev attester's Attest (one ECDSA P-384 signature), client ECDH, AES-GCM encrypt and decrypt. " +
				"Each crypto loop runs once before and once after the frontend loops (rates averaged, latencies pooled), so drift on the machine hits both sides. " +
				"**Server only**: the server's share alone (session key, ECDH, Attest, AES-GCM decrypt) with a fixed client key. " +
				"Only the crypto loops' rates are compared: their latencies are of CPU-bound goroutines that Go's scheduler runs in time slices, not of requests. " +
				"**CPU per pair** = CPU time of this process's whole tree (Postgres included) over the loop, warm-up included, per pair finished in it; " +
				"**Of which this process**: the part of it spent in this process (frontend, load generator, embedded NATS server); the rest is Postgres. " +
				"**CPU ratio** = the both-ends crypto loop's CPU per pair ÷ this loop's: the pairs/s ratio a machine saturated by this work alone would show, hardly moved by other load on a shared machine. " +
				"**Ratio** = pairs/s ÷ the both-ends crypto limit (target ≥ 0.8): this process is both the frontend and the load generator, so both ends' cryptography is the ceiling it can reach; the ratio to the server-only limit is shown too. " +
				"**Ceiling with this Postgres** = crypto CPU per pair ÷ (crypto CPU per pair + this loop's Postgres CPU per pair): the CPU ratio the loop would show if the frontend, the load generator and NATS cost nothing beyond the cryptography. Postgres runs on the same cores here, so when this ceiling is below the target, no change to the frontend's code can meet the target on this machine.",
		},
	}
	t := report.Table{Header: []string{"loop", "pairs", "pairs/s", "latency p50", "p90", "p99", "CPU per pair", "of which this process", "Postgres", "ratio to crypto (both ends)", "ratio to crypto (server only)", "CPU ratio", "ceiling with this Postgres"}}
	for _, l := range []Load{r.WebSocket, r.HTTP, r.Crypto, r.ServerCrypto} {
		r1, r2, r3, r4 := "—", "—", "—", "—"
		if l.RatioToCrypto > 0 {
			r1 = report.F(l.RatioToCrypto, 3) + " (" + report.Target(l.RatioToCrypto >= 0.8, "≥ 0.8") + ")"
			r2 = report.F(l.RatioToServerCrypto, 3)
			r3 = report.F(l.CPURatio, 3)
			r4 = report.F(l.PostgresCeiling, 3)
		}
		t.Row(l.Name, fmt.Sprint(l.Pairs), report.F(l.PairsPerSecond, 0), report.F(l.Latency.P50MS, 2)+" ms",
			report.F(l.Latency.P90MS, 2)+" ms", report.F(l.Latency.P99MS, 2)+" ms", report.F(l.CPUPerPairMS, 3)+" ms", report.F(l.ProcessCPUPerPairMS, 3)+" ms",
			report.F(l.PostgresCPUPerPairMS, 3)+" ms", r1, r2, r3, r4)
	}
	s.Tables = append(s.Tables, t)
	s.Notes = append(s.Notes, fmt.Sprintf("Check: every accepted submit is on the queue (%d jobs pending after the run, warm-ups included).", r.Enqueued))
	s.Notes = append(s.Notes, r.Notes...)
	return s
}

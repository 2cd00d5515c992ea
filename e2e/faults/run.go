package main

import (
	"context"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/e2e/faults/internal/audit"
	"github.com/openpassport/prover-fleet/e2e/faults/internal/fleet"
	"github.com/openpassport/prover-fleet/e2e/faults/internal/load"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/job"
)

// The one circuit the suite proves: the fastest demo circuit, so that the
// faults, not the proofs, decide the run time.
const (
	circuitName  = "disclose_demo"
	proofType    = "disclose"
	familyName   = "disclose"
	streamName   = "PROOF_JOBS"
	markVar      = "FAULTS_WORKER"
	orphanGrace  = time.Second     // a killed worker's tree must be gone by then
	restartAfter = 2 * time.Second // a supervisor restarts a killed worker after this
)

// run runs the chosen scenarios, prints a report and says whether all
// passed. An error means the suite itself could not run.
func run(ctx context.Context, cfg config, out io.Writer) (bool, error) {
	for _, b := range []string{"prover-api", "prover-worker", "proverctl", "zkprove", "nats-server"} {
		if _, err := os.Stat(filepath.Join(cfg.bin, b)); err != nil {
			return false, fmt.Errorf("%s: %w (make faults builds the programs)", b, err)
		}
	}
	inputs, err := os.ReadFile(filepath.Join(cfg.inputs, circuitName+".json"))
	if err != nil {
		return false, err
	}
	root := cfg.dir
	if root == "" {
		if root, err = os.MkdirTemp("", "prover-faults-"); err != nil {
			return false, err
		}
	}
	// The fleet gets a copy of the one circuit it proves, so that a
	// rebuild of the shared circuit folder meanwhile changes nothing.
	if cfg.circuits, cfg.zkeys, err = copyCircuit(cfg.circuits, cfg.zkeys, filepath.Join(root, "circuit")); err != nil {
		return false, err
	}
	vkJSON, err := os.ReadFile(filepath.Join(cfg.zkeys, circuitName+".vkey.json"))
	if err != nil {
		return false, err
	}
	vk, err := groth16.ParseVerifyingKey(vkJSON)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(out, "Fault suite: %d scenario(s), size %s: %d requests over %s each, %d workers, outage %s, AckWait %s, app retries after %s\n",
		len(cfg.scenarios), cfg.name, cfg.requests, cfg.duration, cfg.workers, cfg.outage, cfg.ackWait, cfg.retryDelay)
	fmt.Fprintf(out, "Logs and data: %s\n", root)
	var results []outcome
	for _, name := range cfg.scenarios {
		sc := findScenario(name)
		fmt.Fprintf(out, "\n== %s: %s\n", sc.name, sc.what)
		o, err := runScenario(ctx, cfg, sc, filepath.Join(root, sc.name), inputs, vk)
		if err != nil {
			o.err = err
		}
		o.print(out)
		results = append(results, o)
		if ctx.Err() != nil {
			break
		}
	}
	passed := printSummary(out, results)
	if cfg.report != "" {
		if err := writeReport(cfg.report, cfg, results); err != nil {
			return false, err
		}
	}
	if passed && !cfg.keep && cfg.dir == "" {
		_ = os.RemoveAll(root)
	} else {
		fmt.Fprintf(out, "Logs and data kept in %s\n", root)
	}
	return passed, nil
}

// env is one scenario's running fleet.
type env struct {
	cfg      config
	dir      string
	procs    *fleet.Procs
	pg       *fleet.Postgres
	dbURL    string
	nats     *fleet.NATS
	api      *fleet.API
	wcfg     fleet.WorkerConfig
	provers  map[string]string // worker kind → --prover command
	start    time.Time         // the load started
	timeline []string

	bg sync.WaitGroup // the scenario's own goroutines (orphan checks, restarts)

	mu      sync.Mutex
	workers []*fleet.Worker // every worker started, live or dead
	nextID  int
	orphans []string // "worker: pid comm" of processes that outlived their worker
	rng     *rand.Rand
}

// note records what the suite did, with the time since the load started.
func (e *env) note(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.timeline = append(e.timeline, fmt.Sprintf("%+6.1fs %s", time.Since(e.start).Seconds(), fmt.Sprintf(format, args...)))
}

// runScenario runs one scenario on a fleet of its own. The outcome holds
// the timeline and the logs' place even when it returns an error.
func runScenario(ctx context.Context, cfg config, sc *scenario, dir string, inputs []byte, vk *groth16.VerifyingKey) (o outcome, err error) {
	o = outcome{scenario: sc, logs: filepath.Join(dir, "logs")}
	ctx, cancel := context.WithCancel(ctx) // ends the app's retries when the scenario returns
	defer cancel()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return o, err
	}
	procs, err := fleet.NewProcs(o.logs)
	if err != nil {
		return o, err
	}
	defer procs.Close()
	e := &env{cfg: cfg, dir: dir, procs: procs, start: time.Now(), rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))}
	defer func() {
		cancel()
		e.bg.Wait()
		e.mu.Lock()
		o.timeline, o.orphans = e.timeline, e.orphans
		e.mu.Unlock()
	}()
	if err := e.up(ctx, sc.cluster); err != nil {
		return o, err
	}
	defer e.down()

	// The app's side.
	verifier, err := e.verifier()
	if err != nil {
		return o, err
	}
	ledger := &load.Ledger{}
	faultOver := make(chan struct{})
	lcfg := load.Config{
		URL: e.api.WSURL, Verifier: verifier,
		Type: proofType, Circuit: circuitName, Inputs: inputs,
		EndpointType: "staging_https", Endpoint: "https://faults.example/verify",
		Requests: cfg.requests, Duration: cfg.duration,
		Burst: cfg.requests / 3, BurstAt: max(cfg.duration/4-time.Second, 0),
		RetryDelay: cfg.retryDelay, GiveUp: cfg.giveUp, AttemptTimeout: 45 * time.Second,
		Until: faultOver,
	}
	e.mu.Lock()
	e.start = time.Now()
	e.mu.Unlock()
	e.note("the app starts: %d requests over %s (and on at that rate until the fault is over), %d of them at once at %+.1fs; the fault at %+.1fs",
		lcfg.Requests, lcfg.Duration, lcfg.Burst, lcfg.BurstAt.Seconds(), (cfg.duration / 4).Seconds())
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		load.Run(ctx, lcfg, ledger)
	}()

	// The fault, a quarter into the load.
	select {
	case <-ctx.Done():
		return o, ctx.Err()
	case <-time.After(cfg.duration / 4):
	}
	faultEnd, err := sc.inject(ctx, e, ledger)
	close(faultOver)
	if err != nil {
		return o, fmt.Errorf("inject %s: %w", sc.name, err)
	}
	e.note("fault over")
	<-loadDone
	e.note("the app has sent everything (accepted, or gave up after %s)", cfg.giveUp)

	// Wait until every request ends (or the settle time runs out).
	reqs := ledger.Requests()
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.UUID
	}
	deadline := time.Now().Add(cfg.settle)
	var snap *audit.Snapshot
	for {
		snap, err = audit.Read(ctx, e.dbURL)
		if err == nil && snap.Open(acceptedOrRecorded(reqs, snap)) == 0 {
			e.note("every request ended")
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				return o, err
			}
			e.note("settle time (%s) over with %d request(s) open", cfg.settle, snap.Open(acceptedOrRecorded(reqs, snap)))
			break
		}
		time.Sleep(2 * time.Second)
	}

	// Stop the workers as an operator would; nothing of theirs may remain.
	e.bg.Wait()
	e.mu.Lock()
	workers := append([]*fleet.Worker(nil), e.workers...)
	e.mu.Unlock()
	for _, w := range workers {
		if err := w.Stop(); err != nil {
			e.note("%v", err)
		}
	}
	for _, w := range workers {
		e.collectOrphans(w, "after the workers stopped")
	}
	o.leftovers = leftovers(filepath.Join(dir, "work"))
	o.result = audit.Judge(reqs, snap, audit.VerifyWith(vk), faultEnd)
	return o, nil
}

// acceptedOrRecorded lists the requests that must end: accepted ones, and
// any with a row.
func acceptedOrRecorded(reqs []load.Request, s *audit.Snapshot) []string {
	var ids []string
	for _, r := range reqs {
		if _, ok := s.Rows[r.UUID]; ok || !r.Accepted.IsZero() {
			ids = append(ids, r.UUID)
		}
	}
	return ids
}

// up starts PostgreSQL, NATS, the migrations, the frontend and the workers.
func (e *env) up(ctx context.Context, cluster bool) error {
	var err error
	if e.pg, err = fleet.NewPostgres(ctx, e.procs, filepath.Join(e.dir, "pg")); err != nil {
		return err
	}
	if e.dbURL, err = e.pg.CreateDatabase(ctx, "fleet"); err != nil {
		return err
	}
	nodes, replicas := 1, 1
	if cluster {
		nodes, replicas = 3, 3
	}
	if e.nats, err = fleet.StartNATS(ctx, e.procs, filepath.Join(e.cfg.bin, "nats-server"), filepath.Join(e.dir, "nats"), nodes); err != nil {
		return err
	}
	out, err := e.procs.Run(ctx, fleet.Spec{Name: "migrate", Env: []string{}, Argv: []string{
		filepath.Join(e.cfg.bin, "proverctl"), "migrate", "-d", e.dbURL, "--nats-url", e.nats.URLs(),
		"--replicas", fmt.Sprint(replicas), "--families", familyName, "--ack-wait", e.cfg.ackWait.String(),
	}})
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	if err := audit.Install(ctx, e.dbURL); err != nil {
		return err
	}
	keyFile := filepath.Join(e.dir, "fleet.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(job.NewKey())+"\n"), 0o600); err != nil {
		return err
	}
	attestDir := filepath.Join(e.dir, "attest")
	if e.api, err = fleet.StartAPI(ctx, e.procs, fleet.APIConfig{
		Bin: filepath.Join(e.cfg.bin, "prover-api"), DatabaseURL: e.dbURL, NATSURLs: e.nats.URLs(),
		Circuits: e.cfg.circuits, Zkeys: e.cfg.zkeys, AttestDir: attestDir, KeyFile: keyFile, Families: familyName,
	}); err != nil {
		return err
	}
	if err := e.writeProvers(); err != nil {
		return err
	}
	e.wcfg = fleet.WorkerConfig{
		Bin: filepath.Join(e.cfg.bin, "prover-worker"), Family: familyName, DatabaseURL: e.dbURL,
		NATSURLs: e.nats.URLs(), Circuits: e.cfg.circuits, Zkeys: e.cfg.zkeys, KeyFile: keyFile,
		WorkDir: filepath.Join(e.dir, "work"), MarkVar: markVar,
	}
	for i := range e.cfg.workers {
		kind := "direct"
		if i%2 == 1 {
			kind = "wrapper"
		}
		if _, err := e.startWorker(ctx, kind); err != nil {
			return err
		}
	}
	return nil
}

// writeProvers writes the prover commands. "direct" is zkprove itself: the
// worker's child is the prover, which the kernel kills with the worker
// (Pdeathsig). "wrapper" is a site's wrapper script that runs the prover
// as its child, without exec, as wrappers around rapidsnark often do; its
// prover (a script that waits proveDelay, standing for a longer proof, and
// then execs zkprove) is the worker's grandchild, which only the worker's
// own measures can kill when it dies.
func (e *env) writeProvers() error {
	bin := filepath.Join(e.dir, "provers")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	zkprove := filepath.Join(e.cfg.bin, "zkprove")
	slow := filepath.Join(bin, "prover")
	wrapper := filepath.Join(bin, "site-wrapper")
	scripts := map[string]string{
		slow: fmt.Sprintf("#!/bin/sh\nsleep %.3f\nexec %q \"$@\"\n", e.cfg.proveDelay.Seconds(), zkprove),
		wrapper: fmt.Sprintf("#!/bin/sh\n# A site's wrapper: logs, then runs the prover as its child.\necho \"wrapper: proving\" >&2\n%q \"$@\"\nstatus=$?\necho \"wrapper: prover exited $status\" >&2\nexit $status\n",
			slow),
	}
	for path, body := range scripts {
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			return err
		}
	}
	e.provers = map[string]string{"direct": zkprove, "wrapper": wrapper}
	return nil
}

// startWorker starts one more worker of kind.
func (e *env) startWorker(ctx context.Context, kind string) (*fleet.Worker, error) {
	e.mu.Lock()
	e.nextID++
	name := fmt.Sprintf("worker-%d-%s", e.nextID, kind)
	e.mu.Unlock()
	cfg := e.wcfg
	cfg.Prover = e.provers[kind]
	w, err := fleet.StartWorker(ctx, e.procs, name, kind, cfg)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.workers = append(e.workers, w)
	e.mu.Unlock()
	return w, nil
}

// live lists the running workers.
func (e *env) live() []*fleet.Worker {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ws []*fleet.Worker
	for _, w := range e.workers {
		if !w.Proc().Exited() {
			ws = append(ws, w)
		}
	}
	return ws
}

// collectOrphans records (and kills) the processes w started that still
// run although w is gone.
func (e *env) collectOrphans(w *fleet.Worker, when string) {
	left := fleet.Marked(w.Mark())
	if len(left) == 0 {
		return
	}
	var pids []int
	for pid := range left {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	e.mu.Lock()
	for _, pid := range pids {
		e.orphans = append(e.orphans, fmt.Sprintf("%s: pid %d %s (%s)", w.Name, pid, left[pid], when))
	}
	e.mu.Unlock()
	fleet.KillMarked(w.Mark())
}

// verifier checks the frontend's attestation documents as the app would:
// the development root, and the PCR0 of this prover-api build.
func (e *env) verifier() (client.Verifier, error) {
	dev, err := attest.NewDev(attest.DevConfig{Dir: filepath.Join(e.dir, "attest"), ModuleID: "faults"})
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(filepath.Join(e.cfg.bin, "prover-api"))
	if err != nil {
		return nil, err
	}
	sum := sha512.Sum384(bin)
	return attest.NewVerifier(attest.VerifierConfig{
		Roots: []*x509.Certificate{dev.RootCert()}, AllowedPCR0: [][]byte{attest.DevPCRs(sum[:])[0]}, MaxAge: 5 * time.Minute,
	})
}

// down stops what still runs, the frontend first.
func (e *env) down() {
	if e.api != nil {
		_ = e.api.Stop()
	}
	for _, w := range e.live() {
		w.Kill()
	}
	if e.nats != nil {
		for _, n := range e.nats.Nodes {
			if n.Running() {
				_ = n.Stop()
			}
		}
	}
	if e.pg != nil {
		_ = e.pg.Stop("fast")
	}
}

// leftovers lists what remains under the workers' work dir once they
// have all stopped: instance and job directories, inputs, witnesses.
func leftovers(workDir string) []string {
	var left []string
	_ = filepath.WalkDir(workDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && path != workDir {
			rel, _ := filepath.Rel(workDir, path)
			left = append(left, rel)
		}
		return nil
	})
	return left
}

// copyCircuit copies the suite's circuit (its C++ witness generator with
// its .dat, its zkey and verification key) into dir/circuits and dir/zkeys,
// the layout the programs read, and returns those two folders.
func copyCircuit(circuits, zkeys, dir string) (string, string, error) {
	cpp := circuitName + "_cpp"
	outC, outK := filepath.Join(dir, "circuits"), filepath.Join(dir, "zkeys")
	for _, d := range []string{filepath.Join(outC, cpp), outK} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", "", err
		}
	}
	for _, f := range []struct {
		src, dst string
		mode     os.FileMode
	}{
		{filepath.Join(circuits, cpp, circuitName), filepath.Join(outC, cpp, circuitName), 0o755},
		{filepath.Join(circuits, cpp, circuitName+".dat"), filepath.Join(outC, cpp, circuitName+".dat"), 0o644},
		{filepath.Join(zkeys, circuitName+".zkey"), filepath.Join(outK, circuitName+".zkey"), 0o644},
		{filepath.Join(zkeys, circuitName+".vkey.json"), filepath.Join(outK, circuitName+".vkey.json"), 0o644},
	} {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return "", "", fmt.Errorf("the circuit (make circuits keys): %w", err)
		}
		if err := os.WriteFile(f.dst, data, f.mode); err != nil {
			return "", "", err
		}
	}
	return outC, outK, nil
}

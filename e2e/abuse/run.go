package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	quick   bool
	out     string
	bin     string
	verbose bool
}

// sizes of a run.
type sizes struct {
	loadConfig
	flags apiFlags
	// Settle bounds the wait for the frontend's memory to come back down.
	Settle time.Duration
}

func sizesFor(quick bool) sizes {
	if quick {
		return sizes{
			loadConfig: loadConfig{
				SingleHellos: 10_000, ManyHellos: 10_000, ManySources: 100,
				IdleConns: 1_000, IdleSources: 50, NoPongConns: 100, OneSourceConns: 200, SlowReaders: 10,
				IdleTimeout: 5 * time.Second, PingInterval: 2 * time.Second, PongTimeout: 2 * time.Second,
				LegitEvery: 200 * time.Millisecond,
			},
			flags:  apiFlags{idle: 5 * time.Second, ping: 2 * time.Second, pong: 2 * time.Second, maxSessions: 10_000},
			Settle: 60 * time.Second,
		}
	}
	return sizes{
		loadConfig: loadConfig{
			SingleHellos: 100_000, ManyHellos: 100_000, ManySources: 500,
			IdleConns: 10_000, IdleSources: 200, NoPongConns: 1_000, OneSourceConns: 500, SlowReaders: 50,
			IdleTimeout: 20 * time.Second, PingInterval: 5 * time.Second, PongTimeout: 5 * time.Second,
			LegitEvery: 200 * time.Millisecond,
		},
		flags:  apiFlags{idle: 20 * time.Second, ping: 5 * time.Second, pong: 5 * time.Second, maxSessions: 10_000},
		Settle: 300 * time.Second,
	}
}

// moduleRoot is the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the repository (no go.mod above the working directory)")
		}
		dir = parent
	}
}

func run(ctx context.Context, o options) error {
	sz := sizesFor(o.quick)
	need := uint64(sz.IdleConns+sz.NoPongConns+sz.OneSourceConns+sz.SlowReaders) + 4096
	nofile, err := raiseFileLimit(need)
	if err != nil {
		return fmt.Errorf("open-file limit: %w", err)
	}
	if nofile < need {
		return fmt.Errorf("open-file limit is %d, the run needs %d (run as root, or raise the hard limit: ulimit -Hn)", nofile, need)
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "abuse-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	apiBin := o.bin
	if apiBin == "" {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "prover-api"), "./api")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./api: %w: %s", err, b)
		}
		apiBin = filepath.Join(dir, "prover-api")
	}
	fmt.Fprintf(os.Stderr, "abuse: starting Postgres, nats-server and prover-api (open-file limit %d)\n", nofile)
	s, err := startStack(ctx, dir, apiBin, sz.flags, o.verbose)
	if err != nil {
		return err
	}
	defer s.stop()

	smpCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	smp := &sampler{}
	go smp.run(smpCtx, s, 500*time.Millisecond)
	time.Sleep(2 * time.Second) // idle memory
	idle, err := readMemory(s.api.pid())
	if err != nil {
		return err
	}
	cpu0, _ := cpuTime(s.api.pid())

	cfg := sz.loadConfig
	cfg.HTTPURL, cfg.WSURL = "http://"+s.apiAddr+"/", "ws://"+s.apiAddr+"/"
	cfg.AttestDir, cfg.APIBinary, cfg.Circuit, cfg.Verbose = s.attestDir, apiBin, circuit, o.verbose
	fmt.Fprintf(os.Stderr, "abuse: load generator: %d + %d hellos, %d idle WebSockets, %d silent, %d slow readers\n",
		cfg.SingleHellos, cfg.ManyHellos, cfg.IdleConns, cfg.NoPongConns, cfg.SlowReaders)
	load, err := loadgen(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w\nprover-api log:\n%s", err, s.api.tail())
	}
	cpu1, _ := cpuTime(s.api.pid())

	// After: wait for the frontend's memory to come back down (the Go
	// runtime returns freed memory to the system over a few minutes; it is
	// given Settle), sampling all along.
	socketsPhase := load.Phases[len(load.Phases)-1]
	before := rssAt(smp.all(), socketsPhase.Start)
	settleStart := time.Now()
	var after memory
	for {
		after, err = readMemory(s.api.pid())
		if err != nil {
			return err
		}
		if after.rss <= before+before/4 || time.Since(settleStart) > sz.Settle {
			break
		}
		time.Sleep(time.Second)
	}
	stopSampling()
	metrics := scrape("http://" + s.adminAddr + "/metrics")
	select {
	case <-s.api.done:
		return fmt.Errorf("prover-api exited during the run: %v\n%s", s.api.err, s.api.tail())
	default:
	}
	rep := newReport(o.quick, nofile, sz, load, smp.all(), idle, after, time.Since(settleStart), cpu1-cpu0, metrics)
	out := o.out
	if out == "" {
		if out, err = os.MkdirTemp("", "abuse-results-"); err != nil {
			return err
		}
	}
	if err := rep.write(out); err != nil {
		return err
	}
	fmt.Print(rep.markdown())
	fmt.Fprintf(os.Stderr, "abuse: results in %s\n", out)
	if len(rep.Failed) > 0 {
		return &checksFailed{rep.Failed}
	}
	return nil
}

// checksFailed lists the checks that did not hold.
type checksFailed struct{ checks []string }

func (e *checksFailed) Error() string {
	return fmt.Sprintf("%d check(s) failed:\n  %s", len(e.checks), strings.Join(e.checks, "\n  "))
}

// loadgen runs this program as the load generator, in a process of its
// own (it inherits the open-file limit).
func loadgen(ctx context.Context, cfg loadConfig) (*loadResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	in, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, loadgenRole)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if cfg.Verbose {
		cmd.Stderr = os.Stderr
	}
	cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", runtime.NumCPU()))
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("load generator: %w: %s", err, stderr.String())
	}
	var res loadResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("load generator's result: %w", err)
	}
	return &res, nil
}

// rssAt is the last sample's RSS at or before t.
func rssAt(samples []sample, t time.Time) int64 {
	var v int64
	for _, s := range samples {
		if s.At.After(t) {
			break
		}
		v = s.RSS
	}
	return v
}

// Package proc runs the worker's child processes (witness generators,
// provers, command-line verifiers) so that none outlives its job.
//
// Each child runs in its own process group. A timeout or a cancelled context
// kills the whole group with SIGKILL (exec.Cmd.Cancel), and the group is
// killed once more when the child exits, before the child is reaped, so
// that nothing it left behind survives (a wrapper script's prover, a
// daemonised helper) and the group's id cannot have been reused by then;
// exec.Cmd.WaitDelay bounds the wait for pipes held by a process that left
// the group. The exit status decides success; the last bytes of stderr are
// kept for the failure reason and are not a failure by themselves.
//
// When the worker itself dies, the kernel kills the child it started
// (Pdeathsig) but not the child's own children. For those, Exec reports each
// child's process group (Group: id, leader start time, session) to a
// Tracker while it runs: workdir.Root records it in the worker's instance
// directory and in a watchdog process that kills the recorded groups when
// the worker's end of a pipe closes; the next worker that cleans up after a
// dead one kills what is still recorded, with KillGroup, which checks start
// times so that a recycled pid is never killed.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultTailBytes is how much of a child's stderr (and stdout) is kept.
const DefaultTailBytes = 4096

// Cmd describes one child process.
type Cmd struct {
	// Stage names the step for errors, logs and metrics ("witness", "prove",
	// "verify").
	Stage string
	// Path is the program; Args its arguments (without argv[0]).
	Path string
	Args []string
	// Dir is the working directory.
	Dir string
	// Env is the complete environment of the child. The worker passes a
	// minimal one so that its own secrets never reach a child.
	Env []string
	// Timeout bounds the run; 0 means no limit beyond ctx.
	Timeout time.Duration
}

// Result describes a finished child.
type Result struct {
	Duration time.Duration
	// MaxRSS is the peak resident memory of the child in bytes: its VmHWM
	// in /proc, sampled while it runs (growth in its last sampling interval
	// can be missed); 0 if it exited before the first sample. getrusage's
	// ru_maxrss cannot be used: Go starts children with vfork, so a child's
	// figure starts at the worker's own peak (its memory before exec).
	MaxRSS int64
	// Stdout and Stderr are the last bytes the child wrote.
	Stdout, Stderr []byte
}

// ErrTimeout is the cause of a stage context that ran out of time.
var ErrTimeout = errors.New("proc: stage timed out")

// ExitError: the child exited with a non-zero status on its own.
type ExitError struct {
	Stage  string
	Code   int
	Stderr []byte
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s: exit status %d", e.Stage, e.Code)
}

// SignalError: the child was killed by a signal it was not sent by us
// (the OOM killer, a crash).
type SignalError struct {
	Stage  string
	Signal syscall.Signal
	Stderr []byte
}

func (e *SignalError) Error() string {
	return fmt.Sprintf("%s: killed by signal %s", e.Stage, e.Signal)
}

// TimeoutError: the stage ran out of time and its process group was killed.
type TimeoutError struct {
	Stage   string
	Timeout time.Duration
	Stderr  []byte
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s: timed out after %s", e.Stage, e.Timeout)
}

// Unwrap lets errors.Is(err, ErrTimeout) match.
func (e *TimeoutError) Unwrap() error { return ErrTimeout }

// StartError: the child could not be started (missing binary, no
// permission).
type StartError struct {
	Stage string
	Path  string
	Err   error
}

func (e *StartError) Error() string {
	return fmt.Sprintf("%s: start %s: %v", e.Stage, e.Path, e.Err)
}

func (e *StartError) Unwrap() error { return e.Err }

// Runner runs child processes.
type Runner interface {
	Run(ctx context.Context, c Cmd) (Result, error)
}

// Exec is the Runner that starts real processes.
type Exec struct {
	// TailBytes is how much stderr/stdout to keep; DefaultTailBytes if 0.
	TailBytes int
	// WaitDelay bounds the wait for I/O after the child is killed or exits
	// while a grandchild holds its pipes; 2s if 0.
	WaitDelay time.Duration
	// Tracker, when set, records each child's process group while it runs.
	// A child whose group cannot be recorded is killed at once
	// (*TrackError).
	Tracker Tracker
}

// Run starts c and waits for it. When ctx ends first, the error is
// context.Cause(ctx) wrapped with the stage name, so callers can tell a
// cancel from a shutdown.
func (x Exec) Run(ctx context.Context, c Cmd) (Result, error) {
	tailN := x.TailBytes
	if tailN <= 0 {
		tailN = DefaultTailBytes
	}
	waitDelay := x.WaitDelay
	if waitDelay <= 0 {
		waitDelay = 2 * time.Second
	}
	stageCtx := ctx
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		stageCtx, cancel = context.WithTimeoutCause(ctx, c.Timeout, ErrTimeout)
		defer cancel()
	}
	if err := context.Cause(ctx); err != nil {
		return Result{}, fmt.Errorf("%s: not started: %w", c.Stage, err)
	}

	stdout, stderr := newTail(tailN), newTail(tailN)
	cmd := exec.CommandContext(stageCtx, c.Path, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = []string{} // never inherit the worker's environment
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// The group's id stays ours while its leader is unreaped. Cancel may
	// run concurrently with the reap (os/exec calls it when ctx ends), so
	// it kills only while the reap has not begun.
	var (
		reapMu sync.Mutex
		reaped bool
	)
	cmd.Cancel = func() error {
		reapMu.Lock()
		defer reapMu.Unlock()
		if reaped {
			return nil // the group was killed when the child exited
		}
		return killGroup(cmd.Process.Pid)
	}
	cmd.WaitDelay = waitDelay

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, &StartError{Stage: c.Stage, Path: c.Path, Err: err}
	}
	pgid := cmd.Process.Pid
	untrack, trackErr := x.track(pgid)
	if trackErr != nil {
		_ = killGroup(pgid)
	}
	peak := watchPeakRSS(cmd.Process.Pid)
	waitExit(pgid)
	// The child has exited and is not reaped yet, so pgid is still its
	// group: whatever it left there (a wrapper script's prover, a
	// daemonised helper, a grandchild still sleeping) goes with it.
	_ = killGroup(pgid)
	reapMu.Lock()
	reaped = true
	reapMu.Unlock()
	waitErr := cmd.Wait()
	maxRSS := peak()
	if untrack != nil {
		untrack()
	}

	res := Result{Duration: time.Since(start), Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	res.MaxRSS = maxRSS
	if trackErr != nil {
		return res, &TrackError{Stage: c.Stage, Err: trackErr}
	}
	if waitErr == nil {
		return res, nil
	}
	// Our own kill: say why we killed it.
	if cause := context.Cause(stageCtx); cause != nil {
		if errors.Is(cause, ErrTimeout) && context.Cause(ctx) == nil {
			return res, &TimeoutError{Stage: c.Stage, Timeout: c.Timeout, Stderr: res.Stderr}
		}
		if pc := context.Cause(ctx); pc != nil {
			return res, fmt.Errorf("%s: stopped: %w", c.Stage, pc)
		}
	}
	var exitErr *exec.ExitError
	if errors.As(waitErr, &exitErr) {
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return res, &SignalError{Stage: c.Stage, Signal: ws.Signal(), Stderr: res.Stderr}
		}
		return res, &ExitError{Stage: c.Stage, Code: exitErr.ExitCode(), Stderr: res.Stderr}
	}
	if errors.Is(waitErr, exec.ErrWaitDelay) {
		// The child exited 0 but a grandchild kept its pipes open past
		// WaitDelay; the group is killed above and the exit status stands.
		return res, nil
	}
	return res, fmt.Errorf("%s: wait: %w", c.Stage, waitErr)
}

// track reports the group that pid leads to the Tracker, if any.
func (x Exec) track(pid int) (untrack func(), err error) {
	if x.Tracker == nil {
		return nil, nil
	}
	g, err := Identify(pid)
	if err != nil {
		return nil, err
	}
	return x.Tracker.Track(g)
}

// waitExit blocks until the child pid has exited, without reaping it
// (waitid with WNOWAIT): its zombie keeps the process group's id reserved
// until exec.Cmd.Wait reaps it.
func waitExit(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return // exited, or not ours to wait for (ECHILD): Wait says
		}
	}
}

// ErrEmptyCommand: a command setting holds no program.
var ErrEmptyCommand = errors.New("command is empty")

// ParseCommand splits a command prefix on white space (no quoting), as
// the worker's --prover and --verifier settings are written, and resolves
// its program with Resolve.
func ParseCommand(command string, env []string) ([]string, error) {
	argv := strings.Fields(command)
	if len(argv) == 0 {
		return nil, ErrEmptyCommand
	}
	path, err := Resolve(argv[0], env)
	if err != nil {
		return nil, err
	}
	argv[0] = path
	return argv, nil
}

// Resolve finds a program: a name with a slash is taken as a path (made
// absolute), a bare name is looked up in the PATH of env (or of this
// process when env has none).
func Resolve(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		abs, err := filepath.Abs(name)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("program %s: %w", name, err)
		}
		return abs, nil
	}
	pathList := os.Getenv("PATH")
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathList = v
		}
	}
	for _, d := range filepath.SplitList(pathList) {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %q not found in PATH", name)
}

// peakSample is how often a running child's peak memory is read.
const peakSample = 50 * time.Millisecond

// watchPeakRSS samples the high-water mark of pid's resident memory until
// the returned function is called (after the child has exited), which
// returns the largest value seen, in bytes. The status file is opened once
// and re-read in place: a sample is one pread and a scan of its bytes, with
// no allocation, so a child's memory is cheap to follow while it runs.
func watchPeakRSS(pid int) func() int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return func() int64 { return 0 } // gone already
	}
	buf := make([]byte, statusBuf)
	var peak int64 // written by this goroutine until done, read after
	sample := func() {
		n, _ := f.ReadAt(buf, 0)
		if v := parseVmHWM(buf[:n]); v > peak {
			peak = v
		}
	}
	sample()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		t := time.NewTicker(peakSample)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		return peak
	}
}

// statusBuf holds the head of /proc/<pid>/status down to VmHWM (about
// 20 lines in; the whole file is under 2 KiB).
const statusBuf = 4096

// parseVmHWM returns the value of the "VmHWM:   123 kB" line of a
// /proc/<pid>/status text in bytes, or 0 when there is none (the process
// is gone, or is a zombie without memory).
func parseVmHWM(status []byte) int64 {
	key := []byte("\nVmHWM:")
	i := bytes.Index(status, key)
	if i < 0 {
		return 0
	}
	var kb int64
	digits := false
	for _, c := range status[i+len(key):] {
		switch {
		case c >= '0' && c <= '9':
			kb = kb*10 + int64(c-'0')
			digits = true
		case c == ' ' || c == '\t':
			if digits {
				return kb * 1024
			}
		default:
			if digits {
				return kb * 1024
			}
			return 0
		}
	}
	return 0 // cut off mid-number: the buffer was too short
}

// killGroup sends SIGKILL to every process in the group pgid.
func killGroup(pgid int) error {
	if pgid <= 0 {
		return nil
	}
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	if err != nil {
		return os.NewSyscallError("kill", err)
	}
	return nil
}

// tail keeps the last n bytes written to it.
type tail struct {
	mu  sync.Mutex
	n   int
	buf []byte
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	written := len(p)
	if len(p) >= t.n {
		t.buf = append(t.buf[:0], p[len(p)-t.n:]...)
		return written, nil
	}
	if over := len(t.buf) + len(p) - t.n; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return written, nil
}

func (t *tail) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.buf)
}

// Excerpt summarises what a child wrote for a failure reason: the last few
// non-empty lines of out, at most 300 bytes, with every run of 6 or more
// digits replaced by "#". Circuit inputs are decimal numbers; a tool that
// echoes one in an error message must not carry it into a log or a status
// row.
func Excerpt(out []byte) string {
	lines := strings.Split(strings.ReplaceAll(string(out), "\r", "\n"), "\n")
	var keep []string
	for i := len(lines) - 1; i >= 0 && len(keep) < 3; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			keep = append([]string{l}, keep...)
		}
	}
	s := longDigits.ReplaceAllString(strings.Join(keep, " | "), "#")
	s = strings.ToValidUTF8(s, "?")
	const max = 300
	if len(s) > max {
		s = "…" + s[len(s)-max:]
		s = strings.ToValidUTF8(s, "")
	}
	return s
}

var longDigits = regexp.MustCompile(`[0-9]{6,}`)

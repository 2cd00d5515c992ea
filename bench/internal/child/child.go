// Package child runs the benchmarks' child processes the way the worker runs
// its own (worker/internal/proc): each in its own process group, killed as a
// group on cancel, SIGKILLed if the benchmark dies, with a minimal
// environment (PATH, HOME, LANG, LC_ALL, TZ), and reports the wall time and
// the peak resident memory from wait4's rusage. It also starts long-running
// programs (the frontend and worker binaries) and reads their memory from
// /proc.
package child

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Cmd is one child process.
type Cmd struct {
	Path string
	Args []string
	Dir  string
	// Env is the child's whole environment; nil means Env().
	Env []string
	// Stdin is the child's standard input (nil: none). Stdout, when set,
	// receives its standard output (otherwise only its last bytes are kept
	// for errors).
	Stdin  io.Reader
	Stdout io.Writer
}

// Prefixed is the Cmd that runs path with args under prefix, a command
// that execs what follows it (for example taskset -c 1), so that the
// process started is path's; with no prefix, path itself.
func Prefixed(prefix []string, path string, args ...string) Cmd {
	if len(prefix) == 0 {
		return Cmd{Path: path, Args: args}
	}
	return Cmd{Path: prefix[0], Args: slices.Concat(prefix[1:], []string{path}, args)}
}

// Result describes a finished child.
type Result struct {
	Wall time.Duration
	// MaxRSS is the peak resident set of the child (Linux: the largest of
	// it and its waited-for descendants), in bytes.
	MaxRSS  int64
	UserCPU time.Duration
	SysCPU  time.Duration
}

// Error is a child that failed, with the end of what it wrote.
type Error struct {
	Path string
	Err  error
	Tail string
}

func (e *Error) Error() string {
	if e.Tail == "" {
		return fmt.Sprintf("%s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Path, e.Err, e.Tail)
}

func (e *Error) Unwrap() error { return e.Err }

// Env is the environment the worker gives its children: PATH, HOME, LANG,
// LC_ALL and TZ from this process.
func Env() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if _, ok := os.LookupEnv("PATH"); !ok {
		env = append(env, "PATH=/usr/local/bin:/usr/bin:/bin")
	}
	return env
}

// tail keeps the last n bytes written.
type tail struct {
	mu  sync.Mutex
	n   int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.n:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(strings.Fields(string(t.buf)), " ")
}

func configure(ctx context.Context, c Cmd) (*exec.Cmd, *tail) {
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = Env()
	}
	t := &tail{n: 2048}
	cmd.Stderr = t
	cmd.Stdin = c.Stdin
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	} else {
		cmd.Stdout = t
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 2 * time.Second
	return cmd, t
}

func killGroup(pid int) error {
	if pid <= 0 {
		return nil
	}
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// Run starts c, waits for it and reports its wall time and peak memory. A
// non-zero exit is an *Error carrying the end of its output.
func Run(ctx context.Context, c Cmd) (Result, error) {
	cmd, t := configure(ctx, c)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, &Error{Path: c.Path, Err: err}
	}
	pgid := cmd.Process.Pid
	err := cmd.Wait()
	res := Result{Wall: time.Since(start)}
	_ = killGroup(pgid) // whatever it left behind goes with it
	if st := cmd.ProcessState; st != nil {
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok && ru != nil {
			res.MaxRSS = ru.Maxrss * 1024 // KiB on Linux
			res.UserCPU = time.Duration(ru.Utime.Nano())
			res.SysCPU = time.Duration(ru.Stime.Nano())
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("%s: %w", c.Path, ctx.Err())
		}
		return res, &Error{Path: c.Path, Err: err, Tail: t.String()}
	}
	return res, nil
}

// Process is a long-running child.
type Process struct {
	cmd  *exec.Cmd
	tail *tail
	done chan struct{}
	err  error
}

// Start starts c and returns at once. Its output's last bytes are kept for
// Output.
func Start(ctx context.Context, c Cmd) (*Process, error) {
	cmd, t := configure(ctx, c)
	if err := cmd.Start(); err != nil {
		return nil, &Error{Path: c.Path, Err: err}
	}
	p := &Process{cmd: cmd, tail: t, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the child has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Output is the end of what the child wrote.
func (p *Process) Output() string { return p.tail.String() }

// Stop sends SIGTERM, waits up to grace, then kills the group. It returns
// the exit error unless the child exited on the signal.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = killGroup(p.cmd.Process.Pid)
		<-p.done
		return fmt.Errorf("%s did not stop within %s after SIGTERM", p.cmd.Path, grace)
	}
	_ = killGroup(p.cmd.Process.Pid)
	return p.exitErr()
}

func (p *Process) exitErr() error {
	if p.err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	return &Error{Path: p.cmd.Path, Err: p.err, Tail: p.tail.String()}
}

// Memory is a process's own resident memory (children not included), from
// /proc/<pid>/status.
type Memory struct {
	RSS int64 // VmRSS, bytes
	HWM int64 // VmHWM: peak RSS so far, bytes
}

// ReadMemory reads pid's memory.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Memory{}, fmt.Errorf("child: %w", err)
	}
	var m Memory
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 1 {
			continue
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			m.RSS = kb << 10
		case "VmHWM":
			m.HWM = kb << 10
		}
	}
	if m.RSS == 0 {
		return m, fmt.Errorf("child: no VmRSS for pid %d", pid)
	}
	return m, nil
}

package child

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Why a meter: Go starts children with clone(CLONE_VM|CLONE_VFORK), so at
// the child's exec the kernel records the parent's peak RSS as the child's
// (exec_mmap keeps the old mm's high-water mark in signal->maxrss). wait4's
// ru_maxrss of any direct child of a large Go process is therefore at least
// that process's own peak. A meter runs the program as a grandchild, under a
// small helper process (this binary, started with TrampolineCommand) that
// waits for it and reports the grandchild's own rusage (the rusage program,
// bench/internal/cmd/rusage); the floor is then the helper's size, which
// Floor measures.

// usage is what the helper reports on file descriptor 3.
type usage struct {
	WallNS   int64  `json:"wall_ns"`
	MaxRSSKB int64  `json:"maxrss_kb"`
	UserNS   int64  `json:"user_ns"`
	SysNS    int64  `json:"sys_ns"`
	Err      string `json:"err,omitempty"`
}

// TrampolineMain is the helper: it runs args[0] with args[1:] (same
// directory, environment, stdin, stdout and stderr), waits, writes a usage to fd
// 3 and returns the program's exit status.
func TrampolineMain(args []string) int {
	report := os.NewFile(3, "rusage")
	if len(args) < 1 || report == nil {
		fmt.Fprintln(os.Stderr, "usage: rusage <program> <args...> (with fd 3 open)")
		return 2
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err := cmd.Run()
	u := usage{WallNS: int64(time.Since(start))}
	if st := cmd.ProcessState; st != nil {
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok && ru != nil {
			u.MaxRSSKB, u.UserNS, u.SysNS = ru.Maxrss, ru.Utime.Nano(), ru.Stime.Nano()
		}
	}
	code := 0
	if err != nil {
		u.Err = err.Error()
		code = 1
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			code = ee.ExitCode()
		}
	}
	_ = json.NewEncoder(report).Encode(u)
	_ = report.Close()
	return code
}

// Meter runs programs under the helper to measure their own peak memory.
type Meter struct {
	// Helper is the rusage program.
	Helper string
}

// Run runs c as the helper's child and returns the program's own wall
// time, peak RSS and CPU time.
func (m Meter) Run(ctx context.Context, c Cmd) (Result, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("child: %w", err)
	}
	defer r.Close()
	done := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	outer := Cmd{Path: m.Helper, Args: append([]string{c.Path}, c.Args...), Dir: c.Dir, Env: c.Env, Stdin: c.Stdin, Stdout: c.Stdout}
	cmd, t := configure(ctx, outer)
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		w.Close()
		return Result{}, &Error{Path: m.Helper, Err: err}
	}
	w.Close()
	pgid := cmd.Process.Pid
	waitErr := cmd.Wait()
	_ = killGroup(pgid)
	b := <-done
	var u usage
	if jerr := json.Unmarshal(b, &u); jerr != nil {
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("%s: %w", c.Path, ctx.Err())
		}
		return Result{}, &Error{Path: c.Path, Err: fmt.Errorf("no usage report from the meter (%v): %v", waitErr, jerr), Tail: t.String()}
	}
	res := Result{
		Wall: time.Duration(u.WallNS), MaxRSS: u.MaxRSSKB * 1024,
		UserCPU: time.Duration(u.UserNS), SysCPU: time.Duration(u.SysNS),
	}
	if u.Err != "" || waitErr != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("%s: %w", c.Path, ctx.Err())
		}
		msg := u.Err
		if msg == "" {
			msg = waitErr.Error()
		}
		return res, &Error{Path: c.Path, Err: errors.New(msg), Tail: t.String()}
	}
	return res, nil
}

// Floor is the smallest peak RSS the meter can report: that of a program
// that does nothing (/bin/true).
func (m Meter) Floor(ctx context.Context) (int64, error) {
	res, err := m.Run(ctx, Cmd{Path: "/bin/true"})
	if err != nil {
		return 0, err
	}
	return res.MaxRSS, nil
}

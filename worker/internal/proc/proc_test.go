package proc_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openpassport/prover-fleet/worker/internal/proc"
)

// script writes an executable shell script into dir.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "child.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func env() []string { return []string{"PATH=" + os.Getenv("PATH")} }

// alive reports whether a process with this pid exists (and is not a
// zombie waiting for its reaper).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d is still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		timeout time.Duration
		check   func(t *testing.T, res proc.Result, err error)
	}{
		{
			name: "success keeps stdout, stderr is not a failure",
			body: "echo hello; echo warning >&2; exit 0\n",
			check: func(t *testing.T, res proc.Result, err error) {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if string(res.Stdout) != "hello\n" || string(res.Stderr) != "warning\n" {
					t.Fatalf("stdout %q stderr %q", res.Stdout, res.Stderr)
				}
			},
		},
		{
			name: "non-zero exit is an ExitError with stderr",
			body: "echo 'bad input' >&2; exit 3\n",
			check: func(t *testing.T, res proc.Result, err error) {
				var e *proc.ExitError
				if !errors.As(err, &e) || e.Code != 3 || string(e.Stderr) != "bad input\n" {
					t.Fatalf("err = %#v", err)
				}
			},
		},
		{
			name: "death by signal is a SignalError",
			body: "kill -SEGV $$\n",
			check: func(t *testing.T, res proc.Result, err error) {
				var e *proc.SignalError
				if !errors.As(err, &e) || e.Signal != syscall.SIGSEGV {
					t.Fatalf("err = %v", err)
				}
			},
		},
		{
			name:    "timeout kills and says so",
			body:    "echo started >&2; exec sleep 30\n",
			timeout: 300 * time.Millisecond,
			check: func(t *testing.T, res proc.Result, err error) {
				var e *proc.TimeoutError
				if !errors.As(err, &e) || !errors.Is(err, proc.ErrTimeout) {
					t.Fatalf("err = %v", err)
				}
				if string(e.Stderr) != "started\n" {
					t.Fatalf("stderr %q", e.Stderr)
				}
				if res.Duration > 5*time.Second {
					t.Fatalf("took %s", res.Duration)
				}
			},
		},
		{
			name: "stderr is bounded to its tail",
			body: "i=0; while [ $i -lt 2000 ]; do echo line-$i >&2; i=$((i+1)); done; exit 1\n",
			check: func(t *testing.T, res proc.Result, err error) {
				var e *proc.ExitError
				if !errors.As(err, &e) {
					t.Fatalf("err = %v", err)
				}
				if len(e.Stderr) != proc.DefaultTailBytes || !strings.HasSuffix(string(e.Stderr), "line-1999\n") {
					t.Fatalf("tail is %d bytes ending %q", len(e.Stderr), e.Stderr[len(e.Stderr)-12:])
				}
			},
		},
		{
			name: "the worker's environment is not inherited",
			body: "echo \"home=[$HOME]\"\n", // HOME is set here, not in Cmd.Env
			check: func(t *testing.T, res proc.Result, err error) {
				if err != nil || string(res.Stdout) != "home=[]\n" {
					t.Fatalf("err %v stdout %q", err, res.Stdout)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := proc.Exec{}.Run(t.Context(), proc.Cmd{
				Stage: "test", Path: script(t, tc.body), Dir: t.TempDir(), Env: env(), Timeout: tc.timeout,
			})
			tc.check(t, res, err)
		})
	}
}

// A timeout kills the whole process group, including a grandchild that
// the child started in the background.
func TestTimeoutKillsGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild.pid")
	body := "sleep 60 &\necho $! > " + pidFile + "\nwait\n"
	start := time.Now()
	_, err := proc.Exec{}.Run(t.Context(), proc.Cmd{
		Stage: "prove", Path: script(t, body), Dir: dir, Env: env(), Timeout: 500 * time.Millisecond,
	})
	if !errors.Is(err, proc.ErrTimeout) {
		t.Fatalf("err = %v, want timeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %s", took)
	}
	waitGone(t, readPID(t, pidFile))
}

// A cancelled context kills the group and reports the context's cause.
func TestCancelReportsCause(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild.pid")
	body := "sleep 60 &\necho $! > " + pidFile + "\nwait\n"
	ctx, cancel := context.WithCancelCause(t.Context())
	errStop := errors.New("stop requested")
	go func() {
		readPID(t, pidFile)
		cancel(errStop)
	}()
	_, err := proc.Exec{}.Run(ctx, proc.Cmd{Stage: "prove", Path: script(t, body), Dir: dir, Env: env()})
	if !errors.Is(err, errStop) {
		t.Fatalf("err = %v, want the cause", err)
	}
	waitGone(t, readPID(t, pidFile))
}

// A child that exits 0 while a grandchild holds its stdout open is still
// a success, bounded by WaitDelay, and the grandchild is killed.
func TestLingeringGrandchild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild.pid")
	body := "sleep 60 &\necho $! > " + pidFile + "\nexit 0\n"
	start := time.Now()
	_, err := proc.Exec{WaitDelay: 300 * time.Millisecond}.Run(t.Context(),
		proc.Cmd{Stage: "prove", Path: script(t, body), Dir: dir, Env: env()})
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %s", took)
	}
	waitGone(t, readPID(t, pidFile))
}

func TestStartError(t *testing.T) {
	t.Parallel()
	_, err := proc.Exec{}.Run(t.Context(), proc.Cmd{Stage: "witness", Path: "/nonexistent/gen", Env: env()})
	var e *proc.StartError
	if !errors.As(err, &e) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestExcerpt(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"empty", "", ""},
		{"last three lines", "a\nb\n\nc\nd\n", "b | c | d"},
		{"long numbers redacted", "Error: value 21888242871839275222246405745257275088548364400416034343698204186575808495617 out of range at line 12",
			"Error: value # out of range at line 12"},
		{"bounded", strings.Repeat("x", 1000), "…" + strings.Repeat("x", 300)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := proc.Excerpt([]byte(tc.in)); got != tc.want {
				t.Fatalf("Excerpt = %q, want %q", got, tc.want)
			}
		})
	}
}

// MaxRSS is the child's own peak, not the worker's: Go starts children with
// vfork, so getrusage would report at least the parent's peak memory.
func TestMaxRSSIsTheChilds(t *testing.T) {
	ballast := make([]byte, 256<<20) // the worker holding a warm proving key
	for i := range ballast {
		ballast[i] = byte(i)
	}
	small, err := proc.Exec{}.Run(t.Context(), proc.Cmd{
		Stage: "witness", Path: script(t, "sleep 0.3\n"), Dir: t.TempDir(), Env: env(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if small.MaxRSS <= 0 || small.MaxRSS > 64<<20 {
		t.Fatalf("a sleeping shell's MaxRSS = %d MiB, want (0, 64] MiB (the parent holds 256 MiB)", small.MaxRSS>>20)
	}
	big, err := proc.Exec{}.Run(t.Context(), proc.Cmd{
		Stage: "prove", Path: script(t, "x=$(head -c 100000000 /dev/zero | tr '\\0' x)\nsleep 0.3\necho ${#x}\n"),
		Dir: t.TempDir(), Env: env(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if big.MaxRSS < 90<<20 || big.MaxRSS > 512<<20 {
		t.Fatalf("a child holding 100 MB: MaxRSS = %d MiB, want about 100 MiB", big.MaxRSS>>20)
	}
	ballast[len(ballast)-1]++
}

func TestParseCommand(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "myprover")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pathEnv := []string{"PATH=/nonexistent:" + dir}
	cases := []struct {
		name, command string
		env           []string
		want          []string
		wantErr       string
	}{
		{name: "bare name from the child's PATH", command: "myprover groth16  prove", env: pathEnv, want: []string{prog, "groth16", "prove"}},
		{name: "path", command: prog, want: []string{prog}},
		{name: "empty", command: "  ", wantErr: proc.ErrEmptyCommand.Error()},
		{name: "not in PATH", command: "myprover", env: []string{"PATH=/nonexistent"}, wantErr: `program "myprover" not found in PATH`},
		{name: "missing path", command: dir + "/nope", wantErr: "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := proc.ParseCommand(c.command, c.env)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Fatalf("ParseCommand = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// tracker records what Exec reports, checking the group at each step.
type tracker struct {
	t         *testing.T
	pidFile   string
	tracked   []proc.Group
	untracked int
}

func (tr *tracker) Track(g proc.Group) (func(), error) {
	if same, err := proc.Identify(g.ID); err != nil || same != g {
		tr.t.Errorf("Track(%v): the leader now identifies as %v, %v", g, same, err)
	}
	if g.Session != mustSession(tr.t) {
		tr.t.Errorf("Track(%v): session is not the worker's (%d)", g, mustSession(tr.t))
	}
	tr.tracked = append(tr.tracked, g)
	return func() {
		tr.untracked++
		// By now the child is reaped and the grandchild it left running
		// was sent SIGKILL with the group. The signal takes effect when the
		// grandchild next runs, which on a loaded machine can be a moment
		// later: it must be gone within a bound far below its sleep 60.
		pid := readPID(tr.t, tr.pidFile)
		deadline := time.Now().Add(5 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				tr.t.Errorf("untrack: grandchild %d of the group still alive 5s after the group was killed", pid)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}, nil
}

func mustSession(t *testing.T) int {
	sid, err := unix.Getsid(0)
	if err != nil {
		t.Fatal(err)
	}
	return sid
}

// Each child's group is reported while it runs and released once nothing
// of it is alive, including a grandchild the child left behind.
func TestTrackerSeesEachGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := &tracker{t: t, pidFile: filepath.Join(dir, "grandchild.pid")}
	body := "sleep 60 &\necho $! > " + tr.pidFile + "\nexit 0\n"
	_, err := proc.Exec{Tracker: tr}.Run(t.Context(), proc.Cmd{
		Stage: "prove", Path: script(t, body), Dir: dir, Env: env(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.tracked) != 1 || tr.untracked != 1 {
		t.Fatalf("tracked %v, untracked %d times", tr.tracked, tr.untracked)
	}
}

type failingTracker struct{}

func (failingTracker) Track(proc.Group) (func(), error) { return nil, errors.New("disk full") }

// A child whose group cannot be recorded is killed, and the error says
// why (a TrackError, retried like any infrastructure failure).
func TestUntrackedChildIsKilled(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := proc.Exec{Tracker: failingTracker{}}.Run(t.Context(), proc.Cmd{
		Stage: "prove", Path: script(t, "exec sleep 60\n"), Dir: t.TempDir(), Env: env(),
	})
	var te *proc.TrackError
	if !errors.As(err, &te) || te.Stage != "prove" || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want a TrackError", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("the untracked child ran for %s", took)
	}
}

// KillGroup kills a group only while it is the one identified: a leader
// with another start time or members of another session are someone
// else's.
func TestKillGroupChecksIdentity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*proc.Group)
		killed int
	}{
		{"the group identified", func(*proc.Group) {}, 2},
		{"its id reused by a later leader", func(g *proc.Group) { g.Start-- }, 0},
		{"another session", func(g *proc.Group) { g.Session++ }, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "grandchild.pid")
			sh := exec.Command(script(t, "sleep 60 &\necho $! > "+pidFile+"\nwait\n"))
			sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := sh.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Kill(-sh.Process.Pid, syscall.SIGKILL); _ = sh.Wait() })
			grandchild := readPID(t, pidFile)
			g, err := proc.Identify(sh.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			tc.change(&g)
			n, err := proc.KillGroup(g)
			if err != nil || n != tc.killed {
				t.Fatalf("KillGroup = %d, %v; want %d killed", n, err, tc.killed)
			}
			if tc.killed == 0 {
				if !alive(grandchild) || !alive(sh.Process.Pid) {
					t.Fatal("KillGroup killed a group that was not the one identified")
				}
				return
			}
			_ = sh.Wait()
			waitGone(t, grandchild)
		})
	}
}

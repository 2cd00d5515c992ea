package child

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	ctx := t.Context()
	tests := []struct {
		name    string
		cmd     Cmd
		wantErr string
	}{
		{"ok", Cmd{Path: "/bin/sh", Args: []string{"-c", "exit 0"}}, ""},
		{"exit status", Cmd{Path: "/bin/sh", Args: []string{"-c", "echo broken >&2; exit 3"}}, "exit status 3: broken"},
		{"missing program", Cmd{Path: "/nonexistent/prover"}, "no such file"},
		{"minimal environment", Cmd{Path: "/bin/sh", Args: []string{"-c", `test -z "$SECRET_FOR_TEST"`}}, ""},
	}
	t.Setenv("SECRET_FOR_TEST", "x")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(ctx, tt.cmd)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if res.Wall <= 0 || res.MaxRSS <= 0 {
					t.Errorf("Result %+v: want wall time and peak memory", res)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Run error %v, want an *Error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, Cmd{Path: "/bin/sh", Args: []string{"-c", "sleep 30 & sleep 30"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run error %v, want the context's", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %s: the group was not killed", d)
	}
}

// buildHelper builds the rusage helper (bench/internal/cmd/rusage).
func buildHelper(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a program")
	}
	out := filepath.Join(t.TempDir(), "rusage")
	cmd := exec.Command("go", "build", "-o", out, "../cmd/rusage")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build rusage: %v: %s", err, b)
	}
	return out
}

func TestMeter(t *testing.T) {
	m := Meter{Helper: buildHelper(t)}
	ctx := t.Context()
	floor, err := m.Floor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// This test process is far larger than the helper: a direct child
	// inherits our peak as its ru_maxrss, the meter's must not.
	ballast := make([]byte, 256<<20)
	for i := range ballast {
		ballast[i] = 1
	}
	direct, err := Run(ctx, Cmd{Path: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	metered, err := m.Run(ctx, Cmd{Path: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	if metered.MaxRSS > 64<<20 || metered.MaxRSS < floor/2 {
		t.Errorf("metered /bin/true peak %d bytes, floor %d: want a few MiB", metered.MaxRSS, floor)
	}
	t.Logf("peak RSS of /bin/true: direct child %d MiB, metered %d KiB (ballast[1]=%d)", direct.MaxRSS>>20, metered.MaxRSS>>10, ballast[1])

	// A program that uses memory shows it.
	res, err := m.Run(ctx, Cmd{Path: "/bin/sh", Args: []string{"-c", "x=$(head -c 50000000 /dev/zero | tr '\\0' a); echo ${#x} >/dev/null"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.MaxRSS < 40<<20 {
		t.Errorf("shell holding 50 MB: metered peak %d bytes", res.MaxRSS)
	}

	// Failures carry the program's words.
	_, err = m.Run(ctx, Cmd{Path: "/bin/sh", Args: []string{"-c", "echo nope >&2; exit 4"}})
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("failing program: error %v, want its stderr", err)
	}
}

func TestStartStopReadMemory(t *testing.T) {
	p, err := Start(t.Context(), Cmd{Path: "/bin/sleep", Args: []string{"30"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadMemory(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.HWM < m.RSS {
		t.Errorf("memory %+v", m)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if _, err := ReadMemory(p.Pid()); err == nil {
		t.Error("ReadMemory of a stopped process succeeded")
	}
}

func TestTreeCPU(t *testing.T) {
	busy := []string{"-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"}
	before, err := TreeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// A child that burns about 300 ms of CPU and is waited for counts as a
	// program.
	if _, err := Run(t.Context(), Cmd{Path: "/bin/sh", Args: busy}); err != nil {
		t.Fatal(err)
	}
	after, err := TreeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Sub(before); d.Programs < 50*time.Millisecond || d.Postgres != 0 {
		t.Errorf("across a busy child the tree's CPU grew by %+v", d)
	}
	if after.Total() != after.Self+after.Postgres+after.Programs {
		t.Errorf("Total %s is not the sum of %+v", after.Total(), after)
	}

	// A live child called postgres, and its own child, count as Postgres.
	pg := filepath.Join(t.TempDir(), "postgres")
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pg, sh, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(pg, "-c", "/bin/sh "+strings.Join([]string{busy[0], "'" + busy[1] + "'"}, " ")+"; sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		now, err := TreeCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if d := now.Sub(after); d.Postgres >= 50*time.Millisecond {
			if d.Programs > 20*time.Millisecond {
				t.Errorf("the postgres tree's CPU counted as programs too: %+v", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a busy child of a process called postgres never counted as Postgres: %+v", now.Sub(after))
		}
		time.Sleep(50 * time.Millisecond)
	}

	if _, err := TreeCPU(1 << 30); err == nil {
		t.Error("TreeCPU of a missing process succeeded")
	}
}

func TestPrefixed(t *testing.T) {
	t.Parallel()
	if c := Prefixed(nil, "/bin/prog", "-a", "1"); c.Path != "/bin/prog" || !slices.Equal(c.Args, []string{"-a", "1"}) {
		t.Errorf("Prefixed without a prefix = %+v", c)
	}
	c := Prefixed([]string{"/usr/bin/taskset", "-c", "1"}, "/bin/prog", "-a", "1")
	if c.Path != "/usr/bin/taskset" || !slices.Equal(c.Args, []string{"-c", "1", "/bin/prog", "-a", "1"}) {
		t.Errorf("Prefixed with taskset = %+v", c)
	}
}

package workdir_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/worker/internal/proc"
	"github.com/openpassport/prover-fleet/worker/internal/workdir"
)

// markVar is set in the environment of every process of a test's tree:
// the survivors of a killed worker are found by it, whoever their parent
// is now.
const markVar = "PROVER_TREE_MARK"

// The helper worker's settings, from the test that starts it.
const (
	helperBase = "WORKDIR_HELPER_BASE"
	helperMark = "WORKDIR_HELPER_MARK"
	helperTree = "WORKDIR_HELPER_TREE"
)

// worker is a helper process running the worker's side of this package
// (an instance with a job directory holding a plaintext file and, with a
// tree, a child process running through proc.Exec with the instance as its
// Tracker), killed by the test like a real worker.
type worker struct {
	cmd      *exec.Cmd
	pid      int
	watchdog int
	dir      string // instance directory
	mark     string
}

// startWorker starts a helper worker on base and waits until it is ready.
// With tree, its child is a wrapper script that runs the "prover", a
// sleeping script, as its own child rather than exec'ing it, as site
// wrappers around rapidsnark do.
func startWorker(t *testing.T, base string, tree bool) *worker {
	t.Helper()
	mark := randomHex(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWorker$")
	cmd.Env = append(os.Environ(), helperBase+"="+base, helperMark+"="+mark, fmt.Sprintf("%s=%t", helperTree, tree))
	cmd.Stderr = os.Stderr
	// A session of its own, as a service manager gives a worker: the
	// session check of the next worker's cleanup is then meaningful.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &worker{cmd: cmd, pid: cmd.Process.Pid, mark: mark}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		for _, pid := range marked(mark) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				ready <- line
			}
		}
		close(ready)
	}()
	select {
	case line, ok := <-ready:
		if !ok {
			t.Fatal("helper worker exited before it was ready")
		}
		if _, err := fmt.Sscanf(line, "%d %s", &w.watchdog, &w.dir); err != nil {
			t.Fatalf("helper said %q: %v", line, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("helper worker not ready within 30s")
	}
	return w
}

// kill9 kills the helper worker with SIGKILL and reaps it.
func (w *worker) kill9(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = w.cmd.Wait()
}

// killWithWatchdog kills the worker and its watchdog at once, as when a
// whole process tree is killed: the worker is stopped first, so that it
// cannot replace its watchdog in between.
func (w *worker) killWithWatchdog(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(w.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(w.watchdog, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.kill9(t)
}

// TestHelperWorker is the helper worker (see startWorker); it runs only as
// a child process of this package's tests.
func TestHelperWorker(t *testing.T) {
	base := os.Getenv(helperBase)
	if base == "" {
		t.Skip("helper process only")
	}
	root, _, err := workdir.Open(base, workdir.Config{})
	if err != nil {
		t.Fatal(err)
	}
	job, err := root.Job()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(job, "input.json"), []byte(`{"secret":"plaintext"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Getenv(helperTree) == "true" {
		bin := t.TempDir()
		wrapper := filepath.Join(bin, "wrapper")
		prover := filepath.Join(bin, "prover")
		writeScript(t, wrapper, "echo $$ > \"$PIDS/wrapper\"\n\"$(dirname \"$0\")/prover\" \"$@\"\necho \"prover exited $?\" >&2\n")
		writeScript(t, prover, "echo $$ > \"$PIDS/prover.tmp\" && mv \"$PIDS/prover.tmp\" \"$PIDS/prover\"\nexec sleep 600\n")
		pids := t.TempDir()
		go func() {
			_, err := proc.Exec{Tracker: root}.Run(t.Context(), proc.Cmd{
				Stage: "prove", Path: wrapper, Args: []string{"key.zkey", "witness.wtns"}, Dir: job,
				Env: []string{"PATH=" + os.Getenv("PATH"), "PIDS=" + pids, markVar + "=" + os.Getenv(helperMark)},
			})
			fmt.Fprintf(os.Stderr, "helper: the prover's run ended: %v\n", err)
			os.Exit(3)
		}()
		for {
			if _, err := os.Stat(filepath.Join(pids, "prover")); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	fmt.Printf("ready %d %s\n", root.WatchdogPID(), root.Dir())
	select {} // until killed
}

func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// marked lists the live processes whose environment carries mark.
func marked(mark string) []int {
	want := []byte(markVar + "=" + mark)
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ") // empty for a zombie
		if err != nil || !slices.ContainsFunc(bytes.Split(env, []byte{0}), func(kv []byte) bool { return bytes.Equal(kv, want) }) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// eventually waits for cond, failing the test with what after a generous
// bound: the events waited for take milliseconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not so after 20s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func gone(path string) bool {
	_, err := os.Stat(path)
	return os.IsNotExist(err)
}

// A prover run through a wrapper script dies with its worker on kill -9,
// and the worker's private files go too: by the watchdog at once, or by
// the next worker when the watchdog died as well.
func TestKilledWorkerLeavesNoProcess(t *testing.T) {
	t.Parallel()
	t.Run("the watchdog kills the tree and removes the instance", func(t *testing.T) {
		t.Parallel()
		w := startWorker(t, t.TempDir(), true)
		if n := len(marked(w.mark)); n != 2 {
			t.Fatalf("%d processes of the tree run, want the wrapper and the prover", n)
		}
		w.kill9(t)
		eventually(t, "no process of the tree alive", func() bool { return len(marked(w.mark)) == 0 })
		eventually(t, "instance directory removed", func() bool { return gone(w.dir) })
	})
	t.Run("a watchdog that died is replaced", func(t *testing.T) {
		t.Parallel()
		w := startWorker(t, t.TempDir(), true)
		if err := syscall.Kill(w.watchdog, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var next int
		eventually(t, "another watchdog started", func() bool {
			next = watchdogOf(w.pid)
			return next != 0 && next != w.watchdog
		})
		w.kill9(t)
		eventually(t, "no process of the tree alive", func() bool { return len(marked(w.mark)) == 0 })
		eventually(t, "instance directory removed", func() bool { return gone(w.dir) })
	})
	t.Run("the next worker kills what no watchdog did", func(t *testing.T) {
		t.Parallel()
		base := t.TempDir()
		w := startWorker(t, base, true)
		w.killWithWatchdog(t)
		// The kernel killed the wrapper (Pdeathsig), not its child.
		eventually(t, "the wrapper dies with the worker", func() bool { return len(marked(w.mark)) <= 1 })
		survivors := marked(w.mark)
		if len(survivors) != 1 {
			t.Fatalf("%d processes survive the worker and its watchdog, want the orphaned prover", len(survivors))
		}
		if _, err := os.Stat(w.dir); err != nil {
			t.Fatalf("instance directory: %v", err)
		}
		next, left, err := workdir.Open(base, workdir.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer next.Close()
		if len(left.Groups) != 1 || left.Killed != 1 || len(left.Problems) != 0 {
			t.Fatalf("cleanup: %+v, want one group with one process killed", left)
		}
		if !slices.Equal(left.Dirs, []string{w.dir}) {
			t.Fatalf("removed %v, want %s", left.Dirs, w.dir)
		}
		eventually(t, "no process of the tree alive", func() bool { return len(marked(w.mark)) == 0 })
		if !gone(w.dir) {
			t.Fatal("instance directory survives the cleanup")
		}
	})
}

// watchdogOf finds the watchdog child of the process pid.
func watchdogOf(pid int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 || f[0] == "Z" || f[1] != strconv.Itoa(pid) {
			continue
		}
		if cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline"); bytes.Contains(cmdline, []byte("prover-worker-watchdog")) {
			return child
		}
	}
	return 0
}

// The next worker kills a recorded group only when it is still the one
// recorded: same leader start time, same session, same boot.
func TestCleanupKillsOnlyWhatWasRecorded(t *testing.T) {
	t.Parallel()
	bootID, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		record func(g proc.Group) (proc.Group, []byte)
		killed bool
	}{
		{"the recorded group", func(g proc.Group) (proc.Group, []byte) { return g, bootID }, true},
		{"a reused id: the leader started at another time", func(g proc.Group) (proc.Group, []byte) {
			g.Start--
			return g, bootID
		}, false},
		{"another session", func(g proc.Group) (proc.Group, []byte) {
			g.Session++
			return g, bootID
		}, false},
		{"another boot", func(g proc.Group) (proc.Group, []byte) { return g, []byte("00000000-0000-0000-0000-000000000000\n") }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A live group of two: a shell leading it and its sleeping child.
			sh := exec.Command("/bin/sh", "-c", "sleep 600 & wait")
			sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := sh.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
				_ = sh.Wait()
			})
			g, err := proc.Identify(sh.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			rec, boot := tc.record(g)
			base := t.TempDir()
			dead := filepath.Join(base, "prover-worker-"+randomHex(t))
			for _, f := range []struct {
				name string
				data []byte
			}{{".lock", nil}, {"boot_id", boot}, {fmt.Sprintf("group-%d-%d-%d", rec.ID, rec.Start, rec.Session), nil}} {
				if err := os.MkdirAll(dead, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dead, f.name), f.data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			root, left, err := workdir.Open(base, workdir.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			if !slices.Equal(left.Dirs, []string{dead}) {
				t.Fatalf("removed %v, want %s", left.Dirs, dead)
			}
			if tc.killed {
				if len(left.Groups) != 1 || left.Killed != 2 {
					t.Fatalf("cleanup %+v: want the group's two processes killed", left)
				}
				_ = sh.Wait()
				return
			}
			if len(left.Groups) != 0 || left.Killed != 0 {
				t.Fatalf("cleanup %+v killed what was not recorded", left)
			}
			if err := syscall.Kill(-g.ID, 0); err != nil {
				t.Fatalf("the group is gone: %v", err)
			}
		})
	}
}

// A child whose group cannot be recorded does not run: the worker could
// not kill its tree if it died.
func TestTrackRefusedAfterClose(t *testing.T) {
	t.Parallel()
	root, _, err := workdir.Open(t.TempDir(), workdir.Config{})
	if err != nil {
		t.Fatal(err)
	}
	wd := root.WatchdogPID()
	if wd == 0 {
		t.Fatal("no watchdog running")
	}
	if err := root.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(wd, 0); err == nil {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", wd)); !strings.Contains(string(st), ") Z ") {
			t.Fatalf("watchdog %d still runs after Close", wd)
		}
	}
	_, err = proc.Exec{Tracker: root}.Run(t.Context(), proc.Cmd{
		Stage: "prove", Path: "/bin/sh", Args: []string{"-c", "exec sleep 600"},
		Dir: t.TempDir(), Env: []string{"PATH=" + os.Getenv("PATH")},
	})
	var te *proc.TrackError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a TrackError", err)
	}
}

func TestOpenWithoutShellFails(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	_, _, err := workdir.Open(base, workdir.Config{Shell: "/nonexistent/sh"})
	if err == nil || !strings.Contains(err.Error(), "watchdog") {
		t.Fatalf("err = %v, want the watchdog's start failure", err)
	}
	entries, _ := os.ReadDir(base)
	if len(entries) != 0 {
		t.Fatalf("a failed Open left %d entries", len(entries))
	}
}

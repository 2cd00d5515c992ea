package workdir

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/openpassport/prover-fleet/worker/internal/proc"
)

// watchdogScript runs in a POSIX shell beside the worker. It reads "+ ID
// START" (a child's process group started) and "- ID START" (it is dead)
// lines from the worker on stdin. End of input means the worker has closed
// its end of the pipe: on a clean stop there is nothing left to do, and when
// the worker died (SIGKILL, OOM kill, crash) the kernel closed it. Then it
// kills every group still listed whose leader, if it still exists, started
// at the recorded time (so a reused id is left alone), and removes the
// instance directory with the jobs' private files. It ignores the signals a
// terminal or a supervisor sends to the worker's group (and has a group of
// its own), so that it outlives the worker; SIGKILL ends it, and the worker
// then starts another.
const watchdogScript = `trap '' HUP INT QUIT TERM PIPE
dir=$1
groups=' '
while read -r op id start; do
	case $id$start in ''|*[!0-9]*) continue ;; esac
	case $op in
	+) groups="$groups$id:$start " ;;
	-) case $groups in *" $id:$start "*) groups="${groups%% $id:$start *} ${groups#* $id:$start }" ;; esac ;;
	esac
done
for g in $groups; do
	id=${g%:*} start=${g#*:}
	[ "$id" -gt 1 ] || continue
	if { read -r stat; } 2>/dev/null </proc/$id/stat; then
		set -- ${stat##*") "}
		shift 19
		[ "$1" = "$start" ] || continue
	fi
	kill -KILL -$id 2>/dev/null
done
rm -rf "$dir"
`

// writeTimeout bounds one write to the watchdog: a watchdog that does not
// read (stopped, stuck) is replaced rather than allowed to block a job.
const writeTimeout = 2 * time.Second

// restartEvery spaces the starts of a watchdog that keeps dying.
const restartEvery = time.Second

// watchdog is the shell process that kills an instance's recorded process
// groups and removes its directory when the worker is gone.
type watchdog struct {
	shell, dir string

	mu      sync.Mutex
	groups  map[proc.Group]struct{} // running now: sent again to a new watchdog
	cmd     *exec.Cmd
	w       *os.File // the worker's end of the pipe
	exited  chan struct{}
	started time.Time
	err     error // why no watchdog runs now
	closed  bool
}

func startWatchdog(shell, dir string) (*watchdog, error) {
	wd := &watchdog{shell: shell, dir: dir, groups: map[proc.Group]struct{}{}}
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if err := wd.startLocked(); err != nil {
		return nil, err
	}
	return wd, nil
}

// startLocked starts a watchdog process and tells it the running groups.
func (wd *watchdog) startLocked() error {
	wd.started = time.Now()
	r, w, err := os.Pipe() // both ends close-on-exec: no child inherits the worker's end
	if err != nil {
		return fmt.Errorf("workdir: watchdog pipe: %w", err)
	}
	cmd := exec.Command(wd.shell, "-c", watchdogScript, "prover-worker-watchdog", wd.dir)
	cmd.Stdin = r
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("workdir: start the watchdog (%s): %w", wd.shell, err)
	}
	r.Close()
	exited := make(chan struct{})
	wd.cmd, wd.w, wd.exited, wd.err = cmd, w, exited, nil
	go wd.wait(cmd, exited)
	for g := range wd.groups {
		if err := wd.sendLocked('+', g); err != nil {
			return err
		}
	}
	return nil
}

// wait reaps a watchdog process and, if it died while the instance is
// open, starts another.
func (wd *watchdog) wait(cmd *exec.Cmd, exited chan struct{}) {
	err := cmd.Wait()
	close(exited)
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.closed || wd.cmd != cmd {
		return
	}
	wd.w.Close()
	wd.cmd = nil
	wd.err = fmt.Errorf("workdir: the watchdog exited: %v", err)
	if d := restartEvery - time.Since(wd.started); d > 0 {
		wd.mu.Unlock()
		time.Sleep(d)
		wd.mu.Lock()
		if wd.closed || wd.cmd != nil {
			return
		}
	}
	if err := wd.startLocked(); err != nil {
		wd.err = err
		wd.killLocked()
	}
}

// sendLocked writes one line to the watchdog; a watchdog that cannot take
// it is killed (and replaced by wait).
func (wd *watchdog) sendLocked(op byte, g proc.Group) error {
	if wd.cmd == nil {
		if wd.err != nil {
			return wd.err
		}
		return errors.New("workdir: no watchdog running")
	}
	_ = wd.w.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := fmt.Fprintf(wd.w, "%c %d %d\n", op, g.ID, g.Start); err != nil {
		wd.err = fmt.Errorf("workdir: tell the watchdog: %w", err)
		wd.killLocked()
		return wd.err
	}
	return nil
}

func (wd *watchdog) killLocked() {
	if wd.cmd != nil {
		_ = wd.cmd.Process.Kill()
	}
}

// track tells the watchdog about a group that started.
func (wd *watchdog) track(g proc.Group) error {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.closed {
		return errors.New("workdir: instance closed")
	}
	if wd.cmd == nil && time.Since(wd.started) >= restartEvery {
		if err := wd.startLocked(); err != nil {
			wd.err = err
		}
	}
	if err := wd.sendLocked('+', g); err != nil {
		return err
	}
	wd.groups[g] = struct{}{}
	return nil
}

// untrack tells the watchdog that a group is dead. A failure needs no
// handling: a replaced watchdog is told only the groups still running.
func (wd *watchdog) untrack(g proc.Group) {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	delete(wd.groups, g)
	if !wd.closed && wd.cmd != nil {
		_ = wd.sendLocked('-', g)
	}
}

// close ends the watchdog after a clean stop: with its input closed it
// kills the groups still listed (none, once every job has ended), removes
// the instance directory (already removed) and exits.
func (wd *watchdog) close() error {
	wd.mu.Lock()
	wd.closed = true
	cmd, exited := wd.cmd, wd.exited
	if cmd != nil {
		wd.w.Close()
	}
	wd.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return errors.New("workdir: the watchdog did not exit within 10s of the close; killed")
	}
}

// Package fleet runs the fault suite's real processes: a PostgreSQL
// server, standalone nats-server processes (one, or a 3-node JetStream
// cluster), prover-api and prover-worker, each from a binary, each with its
// log in the run's directory, each killable with SIGKILL or stoppable with a
// signal and restartable on the same ports and data. It also finds the
// processes that outlived the worker that started them.
//
// The suite's process is made a child subreaper: what a killed worker left
// is re-parented to it (not to init), and a reaper collects every exited
// child that the suite did not start itself, so that killed descendants do
// not linger as zombies on a machine whose init does not reap them.
package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Procs starts processes and keeps track of them. Its zero value is not
// usable: call NewProcs.
type Procs struct {
	logDir string

	mu    sync.Mutex // held while a process starts, so the reaper never takes one of ours
	ours  map[int]bool
	stop  chan struct{}
	wg    sync.WaitGroup
	procs []*Proc
}

// NewProcs makes this process a child subreaper and starts the reaper.
// Logs of started processes go to logDir/<name>.log. Call Close at the end.
func NewProcs(logDir string) (*Procs, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("fleet: PR_SET_CHILD_SUBREAPER: %w", err)
	}
	p := &Procs{logDir: logDir, ours: map[int]bool{}, stop: make(chan struct{})}
	p.wg.Add(1)
	go p.reap()
	return p, nil
}

// Close kills every process still running (SIGKILL) and stops the reaper.
func (p *Procs) Close() {
	p.mu.Lock()
	procs := append([]*Proc(nil), p.procs...)
	p.mu.Unlock()
	for _, pr := range procs {
		pr.Kill()
	}
	close(p.stop)
	p.wg.Wait()
}

// reap waits for adopted children (orphans re-parented to this process)
// that are not ours and have exited.
func (p *Procs) reap() {
	defer p.wg.Done()
	self := strconv.Itoa(os.Getpid())
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		entries, _ := os.ReadDir("/proc")
		p.mu.Lock()
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || p.ours[pid] {
				continue
			}
			st, err := ReadStat(pid)
			if err != nil || strconv.Itoa(st.PPID) != self || st.State != 'Z' {
				continue
			}
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
		p.mu.Unlock()
	}
}

// Spec describes a process.
type Spec struct {
	Name string   // for logs and reports, unique in a run
	Argv []string // program and arguments
	Env  []string // complete environment
	Dir  string   // working directory ("" = the suite's)
	// Cred runs it as another user (PostgreSQL refuses root).
	Cred *syscall.Credential
}

// Proc is one started process (one incarnation: a restart is a new Proc).
type Proc struct {
	Spec
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	started time.Time
	log     *os.File
}

// Start starts a process in a session of its own (as a service manager
// would: a signal to the suite's terminal does not reach it), killed if the
// suite dies (Pdeathsig).
func (p *Procs) Start(s Spec) (*Proc, error) {
	logf, err := os.OpenFile(filepath.Join(p.logDir, s.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "--- %s start: %q\n", time.Now().Format(time.RFC3339Nano), s.Argv)
	cmd := exec.Command(s.Argv[0], s.Argv[1:]...)
	cmd.Env, cmd.Dir = s.Env, s.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, Credential: s.Cred}
	pr := &Proc{Spec: s, cmd: cmd, done: make(chan struct{}), log: logf}
	p.mu.Lock()
	err = cmd.Start()
	if err == nil {
		p.ours[cmd.Process.Pid] = true
		p.procs = append(p.procs, pr)
	}
	p.mu.Unlock()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("fleet: start %s: %w", s.Name, err)
	}
	pr.started = time.Now()
	go func() {
		pr.err = cmd.Wait()
		fmt.Fprintf(logf, "--- %s exit: %v\n", time.Now().Format(time.RFC3339Nano), pr.err)
		logf.Close()
		p.mu.Lock()
		delete(p.ours, cmd.Process.Pid)
		p.mu.Unlock()
		close(pr.done)
	}()
	return pr, nil
}

// Run runs a short command to completion (proverctl migrate, initdb) and
// returns its combined output.
func (p *Procs) Run(ctx context.Context, s Spec) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...)
	cmd.Env, cmd.Dir = s.Env, s.Dir
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: s.Cred}
	p.mu.Lock()
	err := cmd.Start()
	if err == nil {
		p.ours[cmd.Process.Pid] = true
	}
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("fleet: run %s: %w", s.Name, err)
	}
	err = cmd.Wait()
	p.mu.Lock()
	delete(p.ours, cmd.Process.Pid)
	p.mu.Unlock()
	if err != nil {
		return out.Bytes(), fmt.Errorf("fleet: %s: %w", s.Name, err)
	}
	return out.Bytes(), nil
}

// Pid is the process id.
func (pr *Proc) Pid() int { return pr.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (pr *Proc) Done() <-chan struct{} { return pr.done }

// Exited reports whether the process has exited.
func (pr *Proc) Exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

// Err is the exit error (after Done).
func (pr *Proc) Err() error { return pr.err }

// Kill sends SIGKILL and waits until the process is reaped.
func (pr *Proc) Kill() {
	if pr.Exited() {
		return
	}
	_ = pr.cmd.Process.Signal(syscall.SIGKILL)
	<-pr.done
}

// Stop sends sig and waits up to timeout for the process to exit, then
// kills it. It returns an error if it had to kill it.
func (pr *Proc) Stop(sig syscall.Signal, timeout time.Duration) error {
	if pr.Exited() {
		return nil
	}
	_ = pr.cmd.Process.Signal(sig)
	select {
	case <-pr.done:
		return nil
	case <-time.After(timeout):
		pr.Kill()
		return fmt.Errorf("fleet: %s did not exit within %s of %s; killed", pr.Name, timeout, sig)
	}
}

// LogPath is the file its output goes to.
func (pr *Proc) LogPath() string { return pr.log.Name() }

// Log reads its log so far.
func (pr *Proc) Log() string {
	b, _ := os.ReadFile(pr.log.Name())
	return string(b)
}

// FreePort picks a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("fleet: pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitTCP waits until something accepts connections on addr.
func WaitTCP(ctx context.Context, addr string, limit time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("fleet: exited before listening on %s", addr)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("fleet: nothing listens on %s after %s: %w", addr, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stat is what the suite reads from /proc/<pid>/stat.
type Stat struct {
	State byte
	PPID  int
	Start uint64 // clock ticks after boot
}

// ReadStat parses /proc/<pid>/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, errors.New("fleet: bad stat")
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, errors.New("fleet: bad stat")
	}
	ppid, _ := strconv.Atoi(string(f[1]))
	start, _ := strconv.ParseUint(string(f[19]), 10, 64)
	return Stat{State: f[0][0], PPID: ppid, Start: start}, nil
}

// Marked lists the live processes (zombies excluded) whose environment
// holds exactly the entry kv ("NAME=value"), with their command names.
func Marked(kv string) map[int]string {
	want := []byte(kv)
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || len(env) == 0 {
			continue // gone, not ours to read, or a zombie
		}
		found := false
		for _, entry := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(entry, want) {
				found = true
				break
			}
		}
		if !found {
			continue
		}
		if st, err := ReadStat(pid); err != nil || st.State == 'Z' || st.State == 'X' {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		out[pid] = string(bytes.TrimSpace(comm))
	}
	return out
}

// KillMarked kills the processes Marked(kv) finds and returns how many.
func KillMarked(kv string) int {
	n := 0
	for pid := range Marked(kv) {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

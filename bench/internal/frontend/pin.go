package frontend

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinning gives prover-api a CPU of its own: the last CPU this process may
// use runs prover-api and nothing else this benchmark starts, while the
// bench process (the fleet's NATS and the crypto loops), Postgres and the
// load generator share the others. The server-side baseline runs on
// prover-api's CPU too, so both sides of the ratio run on the same core
// with the rest of the machine's work elsewhere, as a frontend deployed on
// cores of its own would. (Unpinned, on 2 cores, the loaded frontend's
// cryptography ran up to 1.33x slower than the quiet baseline's.)
type pinning struct {
	orig, api, rest unix.CPUSet
	apiCPU          int
	taskset         string
}

// newPinning plans the split; nil, with the reason, when the machine has
// one CPU or no taskset.
func newPinning() (*pinning, string) {
	var p pinning
	if err := unix.SchedGetaffinity(0, &p.orig); err != nil {
		return nil, fmt.Sprintf("not pinned: sched_getaffinity: %v", err)
	}
	if p.orig.Count() < 2 {
		return nil, "not pinned: this process may use only one CPU"
	}
	path, err := exec.LookPath("taskset")
	if err != nil {
		return nil, "not pinned: no taskset (util-linux) on PATH"
	}
	p.taskset = path
	p.apiCPU = -1
	for cpu := range 1024 {
		if p.orig.IsSet(cpu) {
			p.apiCPU = cpu
		}
	}
	p.rest = p.orig
	p.rest.Clear(p.apiCPU)
	p.api.Set(p.apiCPU)
	return &p, ""
}

// describe says how the CPUs were split.
func (p *pinning) describe() string {
	return fmt.Sprintf("prover-api and the baseline's thread on CPU %d; the bench process (NATS, crypto loops), Postgres and the load generator on the other %d", p.apiCPU, p.rest.Count())
}

// prefix is the command that runs a program on prover-api's CPU; none
// when not pinned (p nil).
func (p *pinning) prefix() []string {
	if p == nil {
		return nil
	}
	return []string{p.taskset, "-c", strconv.Itoa(p.apiCPU)}
}

// pinSelf moves every thread of this process to the other CPUs; the
// processes it starts from now on inherit that.
func (p *pinning) pinSelf() error { return setAllThreads(&p.rest) }

// restore gives this process's threads their CPUs back.
func (p *pinning) restore() error { return setAllThreads(&p.orig) }

// onAPICPU runs fn on one locked thread moved to prover-api's CPU, or just
// runs it when not pinned (p nil). (Threads the runtime starts meanwhile
// do not inherit the CPU: Go starts new threads from a template thread
// while the current one is locked.)
func (p *pinning) onAPICPU(fn func() error) error {
	if p == nil {
		return fn()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.SchedSetaffinity(0, &p.api); err != nil {
		return fmt.Errorf("frontend: pin the baseline's thread: %w", err)
	}
	err := fn()
	if rerr := unix.SchedSetaffinity(0, &p.rest); rerr != nil {
		// Leave the thread locked, and so retired with its goroutine,
		// rather than let it run other goroutines on prover-api's CPU.
		runtime.LockOSThread()
		return errors.Join(err, fmt.Errorf("frontend: unpin the baseline's thread: %w", rerr))
	}
	return err
}

// setAllThreads sets the affinity of every thread of this process; twice,
// for threads started during the first pass by threads not yet moved.
func setAllThreads(set *unix.CPUSet) error {
	for range 2 {
		tids, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("frontend: list threads: %w", err)
		}
		for _, e := range tids {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("frontend: set the CPUs of thread %d: %w", tid, err)
			}
		}
	}
	return nil
}

package proc

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Group identifies a child's process group beyond the life of the worker
// that started it. Each child leads a group of its own, so the group id is
// the child's pid; a pid is reused once its process is gone, but not
// together with the same start time (clock ticks after boot, field 22 of
// /proc/<pid>/stat) within one boot. Session is the worker's session, which
// every member of the group shares.
type Group struct {
	ID      int
	Start   uint64
	Session int
}

func (g Group) String() string {
	return fmt.Sprintf("pgid %d (leader started at tick %d, session %d)", g.ID, g.Start, g.Session)
}

// Tracker records the process group of every running child outside the
// worker's memory, so that what a worker that dies leaves running can still
// be found and killed (workdir.Root is one). Exec calls Track right after
// the child starts, before it waits for it, and the returned untrack once
// the group is dead.
type Tracker interface {
	Track(g Group) (untrack func(), err error)
}

// TrackError: the child's process group could not be recorded, so the
// child was killed at once rather than run untracked. The cause is
// infrastructure (a full disk, a missing watchdog): the job is retried.
type TrackError struct {
	Stage string
	Err   error
}

func (e *TrackError) Error() string {
	return fmt.Sprintf("%s: track the child's process group: %v", e.Stage, e.Err)
}

func (e *TrackError) Unwrap() error { return e.Err }

// procStat is what this package reads from /proc/<pid>/stat.
type procStat struct {
	state   byte
	pgrp    int
	session int
	start   uint64
}

// errNoProcess: no such process (any more).
var errNoProcess = errors.New("no such process")

// readStat parses /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted from its closing one.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return procStat{}, errNoProcess
	}
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	pgrp, err1 := strconv.Atoi(string(f[2]))
	session, err2 := strconv.Atoi(string(f[3]))
	start, err3 := strconv.ParseUint(string(f[19]), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return procStat{state: f[0][0], pgrp: pgrp, session: session, start: start}, nil
}

// dead reports a process that has exited (a zombie awaiting its reaper).
func (s procStat) dead() bool { return s.state == 'Z' || s.state == 'X' || s.state == 'x' }

// Identify returns the process group that pid leads, as Tracker records it.
func Identify(pid int) (Group, error) {
	st, err := readStat(pid)
	if err != nil {
		return Group{}, fmt.Errorf("identify process %d: %w", pid, err)
	}
	if st.pgrp != pid {
		return Group{}, fmt.Errorf("identify process %d: it does not lead its process group (%d)", pid, st.pgrp)
	}
	return Group{ID: pid, Start: st.start, Session: st.session}, nil
}

// ErrGroupSurvives: processes of a group were still alive after SIGKILL
// (stuck in the kernel, in uninterruptible sleep).
var ErrGroupSurvives = errors.New("processes survive SIGKILL")

// KillGroup kills every live process of g, recorded by a worker that may
// be gone, and returns how many it signalled. It never kills a process
// that merely reuses a number: when the group's leader still exists (alive
// or a zombie) its start time must be g.Start, else the id belongs to
// another group now and nothing is killed; every member must be in
// g.Session and have started no earlier than the leader. Each member is
// re-checked through a pidfd before the signal, so a pid freed and reused
// between the check and the kill is not signalled either. Members that
// fork meanwhile are found by the next scan; KillGroup returns once no
// live member is left (ErrGroupSurvives if some are still there after
// about two seconds).
func KillGroup(g Group) (int, error) {
	if g.ID <= 1 {
		return 0, fmt.Errorf("kill group: invalid id %d", g.ID)
	}
	signalled := map[int]uint64{}
	deadline := time.Now().Add(2 * time.Second)
	for {
		members, err := groupMembers(g)
		if err != nil || len(members) == 0 {
			return len(signalled), err
		}
		// Parents before children: a wrapper killed first cannot start or
		// restart a prover meanwhile.
		for _, m := range members {
			if s, ok := signalled[m.pid]; ok && s == m.start {
				continue // signalled, not reaped from /proc yet
			}
			ok, err := signalIfSame(m.pid, g, m.start)
			if err != nil {
				return len(signalled), err
			}
			if ok {
				signalled[m.pid] = m.start
			}
		}
		if time.Now().After(deadline) {
			return len(signalled), fmt.Errorf("kill %s: %d %w", g, len(members), ErrGroupSurvives)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// member is a live process of a group.
type member struct {
	pid   int
	start uint64
}

// groupMembers lists the live processes of g, oldest first; none when the
// group's id has been taken by another leader.
func groupMembers(g Group) ([]member, error) {
	if leader, err := readStat(g.ID); err == nil {
		if leader.start != g.Start {
			return nil, nil // the id was reused: not our group
		}
	} else if !errors.Is(err, errNoProcess) {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("kill group: %w", err)
	}
	var members []member
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue // gone meanwhile, or not readable
		}
		if st.pgrp == g.ID && st.session == g.Session && st.start >= g.Start && !st.dead() {
			members = append(members, member{pid, st.start})
		}
	}
	slices.SortFunc(members, func(a, b member) int {
		return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.pid, b.pid))
	})
	return members, nil
}

// signalIfSame sends SIGKILL to pid if it is still the member of g that
// started at start. With a pidfd the check and the signal address the same
// process whatever happens to the number in between.
func signalIfSame(pid int, g Group, start uint64) (bool, error) {
	same := func() bool {
		st, err := readStat(pid)
		return err == nil && st.start == start && st.pgrp == g.ID && st.session == g.Session && !st.dead()
	}
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return false, nil
	case errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM):
		// No pidfds (kernel before 5.3, or a seccomp filter): check and
		// signal by number; the window between the two is microseconds.
		if !same() {
			return false, nil
		}
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return false, fmt.Errorf("kill %d: %w", pid, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if !same() { // checked after the pidfd is held: it refers to this process
		return false, nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return false, fmt.Errorf("pidfd_send_signal %d: %w", pid, err)
	}
	return true, nil
}

// Package workdir keeps the worker's private temporary directories and
// makes sure that nothing a worker started outlives it.
//
// Circuit inputs and witnesses are plaintext personal data, so they live
// only in per-job directories with random names (never the request id),
// mode 0700, removed when the job ends. A worker instance keeps its job
// directories inside an instance directory of its own, which holds a lock
// file flock'ed for the life of the instance. At start, instance
// directories under the work dir whose lock is free belong to a worker that
// died (SIGKILL, OOM, power loss): they are removed with whatever they hold.
// Only names matching this package's pattern are ever touched, so sharing
// the work dir with other programs (or with other workers in the same
// process) is safe.
//
// A Root is also the proc.Tracker of the worker's child processes: while a
// child runs, its process group (id, leader start time, session) is recorded
// twice outside the worker's memory, because the kernel kills a dead
// worker's direct children (Pdeathsig) but not theirs, such as the real
// prover under a site's wrapper script:
//
//   - in a watchdog, a small POSIX shell process (its own process group,
//     deaf to SIGHUP, SIGINT, SIGTERM) reading the list from a pipe whose
//     other end only the worker holds. When the worker dies the kernel closes
//     that end; the watchdog kills the listed groups and removes the instance
//     directory at once, with no other worker needed. A watchdog that dies is
//     replaced; a child that cannot be reported to one is not run;
//   - as an empty file group-<id>-<start>-<session> in the instance
//     directory. The next worker that removes the directory of a dead
//     instance kills the groups still recorded there (for when the watchdog
//     died with the worker, e.g. a whole process tree killed at once), with
//     proc.KillGroup: a group whose leader now has another start time, or
//     whose members are not in the recorded session or started before it, is
//     someone else's and is left alone. Records from another boot (the
//     instance directory keeps the boot id) are only removed.
package workdir

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"

	"github.com/openpassport/prover-fleet/worker/internal/proc"
)

const (
	instancePrefix = "prover-worker-"
	stagingPrefix  = "prover-worker-staging-"
	jobPrefix      = "job-"
	lockName       = ".lock"
	bootIDName     = "boot_id"
	groupPrefix    = "group-"
)

var (
	instanceName = regexp.MustCompile(`^prover-worker-[0-9a-f]{16}$`)
	jobName      = regexp.MustCompile(`^job-[0-9a-f]{16}$`)
	groupName    = regexp.MustCompile(`^group-([0-9]+)-([0-9]+)-([0-9]+)$`)
)

// bootIDPath identifies the current boot: start times count from it.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// DefaultShell runs the watchdog.
const DefaultShell = "/bin/sh"

// Config configures Open. The zero value is the production setting.
type Config struct {
	// Shell is the POSIX shell that runs the watchdog (default
	// DefaultShell). Open fails when it cannot start one.
	Shell string
}

// Leftovers is what Open found of dead instances.
type Leftovers struct {
	// Dirs are the instance directories removed.
	Dirs []string
	// Groups are the recorded process groups that still had live
	// processes, and Killed how many processes were killed in them.
	Groups []proc.Group
	Killed int
	// Problems are groups that could not be killed entirely (a process
	// stuck in the kernel) and records that could not be read; the
	// directories are removed all the same.
	Problems []error
}

// Root is one worker instance's directory under the work dir.
type Root struct {
	dir      string
	lock     *os.File
	watchdog *watchdog // nil only while Open starts it
}

// Open creates the work dir if it is missing, removes directories left by
// dead instances after killing the process groups recorded in them,
// creates this instance's directory and starts its watchdog. It returns
// what it cleaned up (for the log). Close the Root when the worker stops.
func Open(workDir string, cfg Config) (*Root, Leftovers, error) {
	if workDir == "" {
		return nil, Leftovers{}, errors.New("workdir: work dir is empty")
	}
	if cfg.Shell == "" {
		cfg.Shell = DefaultShell
	}
	abs, err := filepath.Abs(workDir)
	if err != nil {
		return nil, Leftovers{}, fmt.Errorf("workdir: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, Leftovers{}, fmt.Errorf("workdir: create %s: %w", abs, err)
	}
	bootID, err := os.ReadFile(bootIDPath)
	if err != nil {
		return nil, Leftovers{}, fmt.Errorf("workdir: %w", err)
	}
	left, err := removeDead(abs, bootID)
	if err != nil {
		return nil, left, err
	}
	root, err := create(abs, bootID)
	if err != nil {
		return nil, left, err
	}
	if root.watchdog, err = startWatchdog(cfg.Shell, root.dir); err != nil {
		_ = root.Close()
		return nil, left, err
	}
	return root, left, nil
}

// create makes an instance directory: staged under a name the cleaner
// ignores, locked, then renamed into place, so a cleaner never sees a live
// instance without its lock.
func create(workDir string, bootID []byte) (*Root, error) {
	staging, err := os.MkdirTemp(workDir, stagingPrefix)
	if err != nil {
		return nil, fmt.Errorf("workdir: %w", err)
	}
	if err := os.Chmod(staging, 0o700); err != nil {
		_ = os.RemoveAll(staging)
		return nil, fmt.Errorf("workdir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(staging, bootIDName), bootID, 0o600); err != nil {
		_ = os.RemoveAll(staging)
		return nil, fmt.Errorf("workdir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(staging, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		_ = os.RemoveAll(staging)
		return nil, fmt.Errorf("workdir: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		_ = os.RemoveAll(staging)
		return nil, fmt.Errorf("workdir: lock: %w", err)
	}
	name, err := randomName(instancePrefix)
	if err != nil {
		lock.Close()
		_ = os.RemoveAll(staging)
		return nil, err
	}
	dir := filepath.Join(workDir, name)
	if err := os.Rename(staging, dir); err != nil {
		lock.Close()
		_ = os.RemoveAll(staging)
		return nil, fmt.Errorf("workdir: %w", err)
	}
	return &Root{dir: dir, lock: lock}, nil
}

// removeDead removes instance directories whose lock no process holds,
// after killing the process groups recorded in them.
func removeDead(workDir string, bootID []byte) (Leftovers, error) {
	var left Leftovers
	entries, err := os.ReadDir(workDir)
	if err != nil {
		return left, fmt.Errorf("workdir: read %s: %w", workDir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || !instanceName.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(workDir, e.Name())
		dead, err := isDead(dir)
		if err != nil {
			return left, err
		}
		if !dead {
			continue
		}
		killGroups(dir, bootID, &left)
		if err := os.RemoveAll(dir); err != nil {
			return left, fmt.Errorf("workdir: remove leftover %s: %w", dir, err)
		}
		left.Dirs = append(left.Dirs, dir)
	}
	return left, nil
}

// killGroups kills what is left of the process groups recorded in a dead
// instance's directory, if it was made during this boot.
func killGroups(dir string, bootID []byte, left *Leftovers) {
	theirs, err := os.ReadFile(filepath.Join(dir, bootIDName))
	if err != nil || !bytes.Equal(theirs, bootID) {
		return // another boot (or a version that kept no records): nothing of it runs
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		left.Problems = append(left.Problems, fmt.Errorf("workdir: read %s: %w", dir, err))
		return
	}
	for _, e := range entries {
		g, ok := parseGroup(e.Name())
		if !ok {
			continue
		}
		n, err := proc.KillGroup(g)
		if n > 0 {
			left.Groups = append(left.Groups, g)
			left.Killed += n
		}
		if err != nil {
			left.Problems = append(left.Problems, fmt.Errorf("workdir: %s: %w", dir, err))
		}
	}
}

func recordName(g proc.Group) string {
	return fmt.Sprintf("%s%d-%d-%d", groupPrefix, g.ID, g.Start, g.Session)
}

func parseGroup(name string) (proc.Group, bool) {
	m := groupName.FindStringSubmatch(name)
	if m == nil {
		return proc.Group{}, false
	}
	id, err1 := strconv.Atoi(m[1])
	start, err2 := strconv.ParseUint(m[2], 10, 64)
	session, err3 := strconv.Atoi(m[3])
	if err1 != nil || err2 != nil || err3 != nil || id <= 1 {
		return proc.Group{}, false
	}
	return proc.Group{ID: id, Start: start, Session: session}, true
}

// isDead reports whether no live instance holds dir's lock. The probe lock
// is released before returning.
func isDead(dir string) (bool, error) {
	f, err := os.Open(filepath.Join(dir, lockName))
	if errors.Is(err, os.ErrNotExist) {
		return true, nil // locks are created before the rename, so no owner
	}
	if err != nil {
		return false, fmt.Errorf("workdir: %w", err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("workdir: probe lock of %s: %w", dir, err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true, nil
}

// Dir is the instance directory.
func (r *Root) Dir() string { return r.dir }

// Track records a child's process group in the instance directory and in
// the watchdog until the returned untrack is called (proc.Tracker). It
// fails when the group cannot be recorded in both: the caller must not let
// the child run.
func (r *Root) Track(g proc.Group) (untrack func(), err error) {
	if g.ID <= 1 {
		return nil, fmt.Errorf("workdir: track: invalid group id %d", g.ID)
	}
	record := filepath.Join(r.dir, recordName(g))
	f, err := os.OpenFile(record, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("workdir: record process group: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(record)
		return nil, fmt.Errorf("workdir: record process group: %w", err)
	}
	if err := r.watchdog.track(g); err != nil {
		_ = os.Remove(record)
		return nil, err
	}
	return func() {
		r.watchdog.untrack(g)
		_ = os.Remove(record)
	}, nil
}

// Tracked lists the process groups recorded now (tests, diagnostics).
func (r *Root) Tracked() ([]proc.Group, error) {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("workdir: %w", err)
	}
	var out []proc.Group
	for _, e := range entries {
		if g, ok := parseGroup(e.Name()); ok {
			out = append(out, g)
		}
	}
	return out, nil
}

// WatchdogPID is the pid of the running watchdog, 0 if none (tests).
func (r *Root) WatchdogPID() int {
	r.watchdog.mu.Lock()
	defer r.watchdog.mu.Unlock()
	if r.watchdog.cmd == nil {
		return 0
	}
	return r.watchdog.cmd.Process.Pid
}

// Job creates a private job directory (random name, mode 0700). The caller
// removes it with Remove when the job ends, whatever the outcome.
func (r *Root) Job() (string, error) {
	for range 4 {
		name, err := randomName(jobPrefix)
		if err != nil {
			return "", err
		}
		dir := filepath.Join(r.dir, name)
		err = os.Mkdir(dir, 0o700)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("workdir: create job dir: %w", err)
		}
		return dir, nil
	}
	return "", errors.New("workdir: could not find a free job dir name")
}

// Remove deletes a job directory made by Job and everything in it. Paths
// outside this instance, or not named like a job dir, are refused.
func (r *Root) Remove(jobDir string) error {
	if filepath.Dir(jobDir) != r.dir || !jobName.MatchString(filepath.Base(jobDir)) {
		return fmt.Errorf("workdir: refusing to remove %s: not a job dir of this instance", jobDir)
	}
	if err := os.RemoveAll(jobDir); err != nil {
		return fmt.Errorf("workdir: remove job dir: %w", err)
	}
	return nil
}

// Jobs lists the job directories that currently exist (tests, diagnostics).
func (r *Root) Jobs() ([]string, error) {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("workdir: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && jobName.MatchString(e.Name()) {
			out = append(out, filepath.Join(r.dir, e.Name()))
		}
	}
	return out, nil
}

// Close removes the instance directory, ends the watchdog and releases
// the lock. Call it once every child has ended.
func (r *Root) Close() error {
	err := os.RemoveAll(r.dir)
	if r.watchdog != nil {
		err = errors.Join(err, r.watchdog.close())
	}
	if cerr := r.lock.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return fmt.Errorf("workdir: close: %w", err)
	}
	return nil
}

func randomName(prefix string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("workdir: random name: %w", err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

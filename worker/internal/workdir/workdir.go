// Package workdir keeps the worker's private temporary directories.
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
package workdir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
)

const (
	instancePrefix = "prover-worker-"
	stagingPrefix  = "prover-worker-staging-"
	jobPrefix      = "job-"
	lockName       = ".lock"
)

var (
	instanceName = regexp.MustCompile(`^prover-worker-[0-9a-f]{16}$`)
	jobName      = regexp.MustCompile(`^job-[0-9a-f]{16}$`)
)

// Root is one worker instance's directory under the work dir.
type Root struct {
	dir  string
	lock *os.File
}

// Open creates the work dir if it is missing, removes directories left by
// dead instances, and creates this instance's directory. It returns the
// paths it removed (for the log). Close the Root when the worker stops.
func Open(workDir string) (*Root, []string, error) {
	if workDir == "" {
		return nil, nil, errors.New("workdir: work dir is empty")
	}
	abs, err := filepath.Abs(workDir)
	if err != nil {
		return nil, nil, fmt.Errorf("workdir: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, nil, fmt.Errorf("workdir: create %s: %w", abs, err)
	}
	removed, err := removeDead(abs)
	if err != nil {
		return nil, removed, err
	}
	root, err := create(abs)
	if err != nil {
		return nil, removed, err
	}
	return root, removed, nil
}

// create makes an instance directory: staged under a name the cleaner
// ignores, locked, then renamed into place, so a cleaner never sees a live
// instance without its lock.
func create(workDir string) (*Root, error) {
	staging, err := os.MkdirTemp(workDir, stagingPrefix)
	if err != nil {
		return nil, fmt.Errorf("workdir: %w", err)
	}
	if err := os.Chmod(staging, 0o700); err != nil {
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

// removeDead removes instance directories whose lock no process holds.
func removeDead(workDir string) ([]string, error) {
	entries, err := os.ReadDir(workDir)
	if err != nil {
		return nil, fmt.Errorf("workdir: read %s: %w", workDir, err)
	}
	var removed []string
	for _, e := range entries {
		if !e.IsDir() || !instanceName.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(workDir, e.Name())
		dead, err := isDead(dir)
		if err != nil {
			return removed, err
		}
		if !dead {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			return removed, fmt.Errorf("workdir: remove leftover %s: %w", dir, err)
		}
		removed = append(removed, dir)
	}
	return removed, nil
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

// Close removes the instance directory and releases its lock.
func (r *Root) Close() error {
	err := os.RemoveAll(r.dir)
	if cerr := r.lock.Close(); err == nil && cerr != nil {
		err = cerr
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

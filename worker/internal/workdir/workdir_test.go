package workdir_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/openpassport/prover-fleet/worker/internal/workdir"
)

func TestJobDirs(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	root, left, err := workdir.Open(base, workdir.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if len(left.Dirs) != 0 || len(left.Groups) != 0 {
		t.Fatalf("cleaned %+v in an empty work dir", left)
	}
	a, err := root.Job()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := root.Job()
	if a == b {
		t.Fatalf("two jobs got the same dir %s", a)
	}
	if !regexp.MustCompile(`^job-[0-9a-f]{16}$`).MatchString(filepath.Base(a)) {
		t.Fatalf("job dir name %q", filepath.Base(a))
	}
	for _, d := range []string{a, root.Dir()} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Fatalf("%s has mode %v, want 0700", d, st.Mode().Perm())
		}
	}
	if err := os.WriteFile(filepath.Join(a, "input.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if jobs, _ := root.Jobs(); len(jobs) != 2 {
		t.Fatalf("Jobs = %v", jobs)
	}
	if err := root.Remove(a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a); !os.IsNotExist(err) {
		t.Fatalf("job dir still there: %v", err)
	}
	for _, bad := range []string{base, filepath.Join(root.Dir(), ".."), filepath.Join(base, "job-0000000000000000"), "/"} {
		if err := root.Remove(bad); err == nil {
			t.Fatalf("Remove(%s) accepted", bad)
		}
	}
	if err := root.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root.Dir()); !os.IsNotExist(err) {
		t.Fatalf("instance dir survives Close: %v", err)
	}
}

// A live instance (in this process or another) is never cleaned; a dead
// one's directory goes with what it holds; foreign names are left alone.
func TestLeftoversOfDeadWorkers(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	live, _, err := workdir.Open(base, workdir.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	liveJob, _ := live.Job()

	// A worker that died with its watchdog: its lock is free and nothing
	// removed its directory.
	startWorker(t, base, false).killWithWatchdog(t)
	foreign := []string{filepath.Join(base, "prover-worker-notours"), filepath.Join(base, "job-0123456789abcdef"),
		filepath.Join(base, "something-else")}
	for _, d := range foreign {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(base)
	var dead string
	for _, e := range entries {
		p := filepath.Join(base, e.Name())
		if p != live.Dir() && regexp.MustCompile(`^prover-worker-[0-9a-f]{16}$`).MatchString(e.Name()) {
			dead = p
		}
	}
	if dead == "" {
		t.Fatal("helper left no instance dir")
	}

	second, left, err := workdir.Open(base, workdir.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if !slices.Equal(left.Dirs, []string{dead}) {
		t.Fatalf("removed %v, want only %s", left.Dirs, dead)
	}
	for _, d := range append(foreign, liveJob, live.Dir()) {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("%s was removed: %v", d, err)
		}
	}
}

package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	wt "github.com/openpassport/prover-fleet/worker/internal/workertest"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// binary builds prover-worker once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "prover-worker-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "prover-worker")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build prover-worker: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

// worker is a prover-worker process.
type worker struct {
	cmd  *exec.Cmd
	out  *wt.SyncBuffer
	done chan error
}

// startBinary runs prover-worker for fam on s with the fakes; settings come
// partly from flags and partly from the environment, as in a deployment.
func startBinary(t *testing.T, s *wt.Stack, f *wt.Fakes, fam family.Family, prover, workDir string, extraArgs []string, extraEnv ...string) *worker {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "fleet.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(s.Key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t),
		"--family", string(fam),
		"-c", f.Circuits, "-k", f.Zkeys, "-r", prover,
		"--verifier", f.Verifier,
		"--nats-url", s.NATSURL,
		"--work-dir", workDir,
		"--admin-address", "127.0.0.1:0",
		"--fetch-wait", "500ms",
		"--log-level", "debug",
		"--child-env", "FAKE_LOG="+f.Log,
	)
	cmd.Args = append(cmd.Args, extraArgs...)
	cmd.Env = append(os.Environ(),
		"PROVER_WORKER_DATABASE_URL="+s.PGURL,
		"PROVER_WORKER_JOB_KEY_FILE="+keyFile,
		"PROVER_WORKER_WORKER_ID=binary-"+string(fam),
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	w := &worker{cmd: cmd, out: &wt.SyncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = w.out, w.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.done
		w.done <- nil
		if t.Failed() {
			t.Logf("prover-worker output:\n%s", w.out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(w.out.String(), `"msg":"worker started"`) {
		if time.Now().After(deadline) {
			t.Fatalf("prover-worker did not start:\n%s", w.out.String())
		}
		select {
		case err := <-w.done:
			w.done <- err
			t.Fatalf("prover-worker exited: %v\n%s", err, w.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return w
}

// writeScript writes an executable shell script.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// A worker killed with SIGKILL mid-proof: its prover dies with it, its
// plaintext leftovers are removed (by its watchdog at once, else by the
// next worker to start on the same work dir), and the job is proved
// exactly once by a second worker after AckWait; the row is right.
func TestWorkerKilledMidProof(t *testing.T) {
	t.Parallel()
	q := jobqueue.DefaultConfig()
	q.AckWait, q.MaxDeliver = 2*time.Second, 3
	s := wt.Setup(t, q)
	f := wt.NewFakes(t)
	workDir := filepath.Join(t.TempDir(), "work")
	// A prover that never finishes, as one process (exec) so that its pid
	// is the one to watch.
	slow := writeScript(t, `echo $$ > "$FAKE_LOG/slow.pid"
exec sleep 300
`)
	a := startBinary(t, s, f, family.Register, slow, workDir, nil)
	id := s.Submit("register", "fake_ok", wt.FakeInputs("1"))
	prover := f.WaitPID(t, "slow.pid", 20*time.Second)
	row := s.WaitStatus(id, status.WitnessGenerated, 5*time.Second)
	if row.WorkerID != "binary-register" || row.Attempts != 1 {
		t.Fatalf("row under worker A: %+v", row)
	}
	leftovers := wt.WorkDirJobs(t, workDir)
	if len(leftovers) != 1 {
		t.Fatalf("job dirs while proving: %v", leftovers)
	}
	if _, err := os.Stat(filepath.Join(leftovers[0], "witness.wtns")); err != nil {
		t.Fatalf("the witness should be on disk while proving: %v", err)
	}

	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
	a.done <- nil
	wt.WaitGone(t, prover, 5*time.Second) // Pdeathsig: the prover dies with its worker
	killedAt := time.Now()

	// Worker B on the same work dir: cleans A's leftovers, then proves.
	cfg := s.Config(f, family.Register)
	cfg.WorkDir = workDir
	cfg.WorkerID = "worker-b"
	_ = s.Start(cfg)
	if _, err := os.Stat(leftovers[0]); !os.IsNotExist(err) {
		t.Fatalf("leftover job dir of the killed worker still there: %v", err)
	}
	row = s.WaitStatus(id, status.ProofGenerated, 30*time.Second)
	if row.WorkerID != "worker-b" || row.Attempts != 2 || row.Reason != "" {
		t.Fatalf("row after B: %+v", row)
	}
	t.Logf("proved by the second worker %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	info := s.WaitQueueEmpty(family.Register, 5*time.Second)
	time.Sleep(q.AckWait + 500*time.Millisecond) // a stray redelivery would show by now
	info = s.ConsumerInfo(family.Register)
	if info.Delivered.Consumer != 2 || info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("deliveries %d (want 2), ack pending %d, pending %d", info.Delivered.Consumer, info.NumAckPending, info.NumPending)
	}
	if n := f.Calls(t, "prove"); n != 1 {
		t.Fatalf("the real prover ran %d times, want 1", n)
	}
	if after := s.WaitStatus(id, status.ProofGenerated, time.Second); !after.UpdatedAt.Equal(row.UpdatedAt) {
		t.Fatalf("row changed after it was proved")
	}
}

// A prover run through a site's wrapper script (the wrapper runs it as a
// child, without exec) dies with its worker on SIGKILL, with no other
// worker started: the kernel kills only the wrapper (Pdeathsig), the
// worker's watchdog kills the rest of the group and removes the instance
// directory with the job's plaintext files.
func TestWorkerKilledWrapperProver(t *testing.T) {
	t.Parallel()
	q := jobqueue.DefaultConfig()
	q.AckWait, q.MaxDeliver = 2*time.Second, 3
	s := wt.Setup(t, q)
	f := wt.NewFakes(t)
	workDir := filepath.Join(t.TempDir(), "work")
	prover := writeScript(t, `echo $$ > "$FAKE_LOG/real.pid"
exec sleep 300
`)
	wrapper := writeScript(t, `echo $$ > "$FAKE_LOG/wrapper.pid"
`+prover+` "$@"
echo "prover exited $?" >&2
`)
	a := startBinary(t, s, f, family.Register, wrapper, workDir, nil)
	s.Submit("register", "fake_ok", wt.FakeInputs("1"))
	wrapperPID := f.WaitPID(t, "wrapper.pid", 20*time.Second)
	real := f.WaitPID(t, "real.pid", 20*time.Second)
	instances, err := filepath.Glob(filepath.Join(workDir, "prover-worker-*"))
	if err != nil || len(instances) != 1 {
		t.Fatalf("instance dirs %v, %v", instances, err)
	}
	if jobs := wt.WorkDirJobs(t, workDir); len(jobs) != 1 {
		t.Fatalf("job dirs while proving: %v", jobs)
	}

	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
	a.done <- nil
	wt.WaitGone(t, wrapperPID, 10*time.Second)
	wt.WaitGone(t, real, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(instances[0]); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead worker's instance dir %s is still there", instances[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SIGTERM during a proof: the program lets the job finish within
// --shutdown-grace, records it, and exits 0.
func TestBinarySIGTERMFinishesJob(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	w := startBinary(t, s, f, family.DSC, f.Prover, filepath.Join(t.TempDir(), "work"),
		[]string{"--child-env", "FAKE_SLEEP=2"}, "PROVER_WORKER_SHUTDOWN_GRACE=20s")
	id := s.Submit("dsc", "fake_slow", wt.FakeInputs("1"))
	f.WaitPID(t, "prover.pid", 20*time.Second)
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.done:
		w.done <- err
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("prover-worker did not exit after SIGTERM")
	}
	row := s.WaitStatus(id, status.ProofGenerated, time.Second)
	if row.Attempts != 1 {
		t.Fatalf("row %+v", row)
	}
	s.WaitQueueEmpty(family.DSC, 5*time.Second)
	out := w.out.String()
	for _, want := range []string{`"msg":"stopped fetching; waiting for running jobs"`, `"outcome":"proved"`, `"msg":"worker stopped"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s", want)
		}
	}
	wt.AssertNoSecrets(t, out, []string{hex.EncodeToString(s.Key), s.PGURL})
}

// Bad settings exit with status 2 and a message naming them.
func TestBinaryUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"no family", nil, nil, "--family is required"},
		{"missing settings", []string{"--family", "dsc"}, nil, "missing required settings: --circuit-folder, --database-url, --job-key-file, --zkey-folder"},
		{"bad env duration", []string{"--family", "dsc"}, []string{"PROVER_WORKER_PROVE_TIMEOUT=soon"}, "PROVER_WORKER_PROVE_TIMEOUT: invalid argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary(t), tc.args...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tc.env...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("err %v, output:\n%s\nwant exit 2 and %q", err, out.String(), tc.want)
			}
		})
	}
}

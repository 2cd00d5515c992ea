package service_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	wt "github.com/openpassport/prover-fleet/worker/internal/workertest"
	"github.com/openpassport/prover-fleet/worker/service"
)

// The happy path with the real circuits, one family each, and between
// them every way of proving and verifying: rapidsnark-shaped zkprove as a
// child process, snarkjs as a child process for both steps, and the native
// in-process prover and verifier. Each stored proof is then accepted by
// `snarkjs groth16 verify` on its own. The debug logs hold none of the
// circuit inputs.
func TestRealCircuits(t *testing.T) {
	t.Parallel()
	circuits, zkeys := wt.RealCircuits(t)
	zkprove := wt.Command(t, "./cmd/zkprove")
	snarkjs := wt.Snarkjs(t)
	tests := []struct {
		name      string
		family    family.Family
		proofType family.ProofType
		circuit   string
		configure func(*service.Config)
	}{
		{"register with zkprove", family.Register, "register", "register_demo", func(c *service.Config) {
			c.Prover = zkprove
		}},
		{"dsc with snarkjs", family.DSC, "dsc", "dsc_demo", func(c *service.Config) {
			c.Prover = snarkjs + " groth16 prove"
			c.Verifier = snarkjs + " groth16 verify"
		}},
		{"disclose native", family.Disclose, "disclose", "disclose_demo", func(c *service.Config) {
			c.ProverMode = service.ProverNative
			c.Verifier = service.VerifierNative
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := wt.Setup(t, jobqueue.Config{})
			cfg := service.Config{
				Family: tc.family, Concurrency: 1, CircuitDir: circuits, ZkeyDir: zkeys,
				WorkDir: filepath.Join(t.TempDir(), "work"), JobKey: s.Key,
				FetchWait: 500 * time.Millisecond, ProveTimeout: 5 * time.Minute,
			}
			tc.configure(&cfg)
			r := s.Start(cfg)
			inputs := wt.SampleInputs(t, tc.circuit, "")
			id := s.Submit(tc.proofType, tc.circuit, inputs)
			p := s.WaitStatus(id, status.ProofGenerated, 4*time.Minute)
			if p.WitnessGeneratedAt == nil || p.ProofGeneratedAt == nil || len(p.PublicInputs) == 0 || p.Attempts != 1 {
				t.Fatalf("row %+v", p)
			}
			wt.VerifyWithSnarkjs(t, filepath.Join(zkeys, tc.circuit+".vkey.json"), p.Proof, p.PublicInputs)

			// The same circuit rejects its failing input at once.
			bad := s.Submit(tc.proofType, tc.circuit, wt.SampleInputs(t, tc.circuit, "bad"))
			f := s.WaitStatus(bad, status.Failed, time.Minute)
			if !strings.HasPrefix(f.Reason, "witness generation rejected the input: Failed assert in template/function") || f.Attempts != 1 {
				t.Fatalf("failing input: reason %q attempts %d", f.Reason, f.Attempts)
			}
			info := s.WaitQueueEmpty(tc.family, 10*time.Second)
			if info.Delivered.Consumer != 2 {
				t.Fatalf("delivered %d, want 2", info.Delivered.Consumer)
			}
			if left := wt.WorkDirJobs(t, cfg.WorkDir); len(left) != 0 {
				t.Fatalf("job dirs left: %v", left)
			}
			r.WaitLog(t, `"outcome":"rejected"`, 5*time.Second)
			logs := r.Logs.String()
			if !strings.Contains(logs, `"level":"DEBUG"`) {
				t.Fatal("no debug lines captured")
			}
			secrets := wt.InputValues(t, inputs, 8)
			secrets = append(secrets, wt.InputValues(t, wt.SampleInputs(t, tc.circuit, "bad"), 8)...)
			wt.AssertNoSecrets(t, logs, secrets)
		})
	}
}

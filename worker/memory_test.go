package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	wt "github.com/openpassport/prover-fleet/worker/internal/workertest"
)

// memoryRun is what one worker process did with a sequence of jobs.
type memoryRun struct {
	budget     int64
	baseRSS    int64 // VmRSS once started, before any job
	peakRSS    int64 // VmHWM at the end
	maxHeld    int64 // the key cache's own account (keys + tables), its largest after a job
	maxKeys    int
	endHeld    int64
	loads      int
	evictions  int
	coldProofs int
}

// A native worker meeting more circuits than its --key-cache-mib holds keeps
// its memory within the budget. The real prover-worker binary proves real
// register_demo jobs on four circuits (copies of the key, 58 MiB each) in
// turn, once with a budget for two keys and once with room for all four (the
// old behaviour: every key it met stays). The cache's account, scraped from
// the worker's metrics after every job, never exceeds the budget; and the
// process's peak resident memory grows by the budget plus what proving needs
// (measured in the run with room for all: its peak above its start, less the
// keys it held), not by every key it met.
func TestNativeWorkerMemoryStaysWithinKeyBudget(t *testing.T) {
	t.Parallel()
	circuits, zkeys := wt.RealCircuits(t)
	cat, keys, names := wt.Catalogue(t, circuits, zkeys, "register_demo", 4)
	st, err := os.Stat(filepath.Join(keys, names[0]+".zkey"))
	if err != nil {
		t.Fatal(err)
	}
	key := st.Size()
	jobs := append(append([]string(nil), names...), names[0], names[1])
	s := wt.Setup(t, jobqueue.Config{})
	inputs := wt.SampleInputs(t, "register_demo", "")

	tight := runMemory(t, s, cat, keys, 2*key+key/5, jobs, inputs)
	loose := runMemory(t, s, cat, keys, 8*key, jobs, inputs)
	t.Logf("key %d MiB; budget %d MiB: start %d MiB, peak %d MiB, held at most %d MiB in %d keys, %d loads, %d evictions",
		key>>20, tight.budget>>20, tight.baseRSS>>20, tight.peakRSS>>20, tight.maxHeld>>20, tight.maxKeys, tight.loads, tight.evictions)
	t.Logf("budget %d MiB: start %d MiB, peak %d MiB, held %d MiB in %d keys, %d loads",
		loose.budget>>20, loose.baseRSS>>20, loose.peakRSS>>20, loose.endHeld>>20, loose.maxKeys, loose.loads)

	if tight.maxHeld > tight.budget || tight.maxKeys > 2 {
		t.Errorf("budget %d: the cache held up to %d bytes in %d keys", tight.budget, tight.maxHeld, tight.maxKeys)
	}
	if tight.loads != len(jobs) || tight.evictions < len(jobs)-2 || tight.coldProofs != len(jobs) {
		t.Errorf("tight budget: %d loads, %d evictions, %d cold proofs for %d jobs cycling over 4 circuits with room for 2",
			tight.loads, tight.evictions, tight.coldProofs, len(jobs))
	}
	if loose.maxKeys != 4 || loose.loads != 4 || loose.evictions != 0 {
		t.Errorf("room for all: %d keys, %d loads, %d evictions; want 4, 4, 0", loose.maxKeys, loose.loads, loose.evictions)
	}
	proving := loose.peakRSS - loose.baseRSS - loose.endHeld // what proving and the runtime take beside the keys
	const slack = 48 << 20
	if grew, bound := tight.peakRSS-tight.baseRSS, tight.budget+max(proving, 0)+slack; grew > bound {
		t.Errorf("with a %d MiB budget the worker's peak RSS grew by %d MiB, over the budget + %d MiB of proving + %d MiB",
			tight.budget>>20, grew>>20, proving>>20, slack>>20)
	}
	if tight.peakRSS >= loose.peakRSS {
		t.Errorf("peak RSS %d MiB with room for two keys, %d MiB with room for four", tight.peakRSS>>20, loose.peakRSS>>20)
	}
}

// runMemory runs prover-worker (native mode, budget bytes of key cache) on
// the catalogue, proves jobs one after another and reports its memory.
func runMemory(t *testing.T, s *wt.Stack, circuits, zkeys string, budget int64, jobs []string, inputs string) memoryRun {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "fleet.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(s.Key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	mib := (budget + 1<<20 - 1) >> 20
	cmd := exec.Command(binary(t),
		"--family", "register", "-c", circuits, "-k", zkeys,
		"--prover-mode", "native", "--key-cache-mib", strconv.FormatInt(mib, 10), "--native-tables=false",
		"--nats-url", s.NATSURL, "-d", s.PGURL, "--job-key-file", keyFile,
		"--work-dir", t.TempDir(), "--admin-address", admin, "--fetch-wait", "500ms",
		"--worker-id", fmt.Sprintf("memory-%d", mib),
	)
	out := &wt.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prover-worker output:\n%s", out.String())
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), `"msg":"worker started"`) {
		if time.Now().After(deadline) {
			t.Fatalf("prover-worker did not start:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	pid := cmd.Process.Pid
	r := memoryRun{budget: mib << 20, baseRSS: procKiB(t, pid, "VmRSS") << 10}
	for _, c := range jobs {
		id := s.Submit("register", c, inputs)
		s.WaitStatus(id, status.ProofGenerated, 5*time.Minute)
		m := scrape(t, admin)
		held := int64(m[`prover_worker_key_cache_bytes{family="register",kind="key"}`] + m[`prover_worker_key_cache_bytes{family="register",kind="tables"}`])
		r.maxHeld, r.endHeld = max(r.maxHeld, held), held
		r.maxKeys = max(r.maxKeys, int(m[`prover_worker_key_cache_keys{family="register"}`]))
		r.loads = int(m[`prover_worker_key_cache_loads_total{family="register",result="ok"}`])
		r.coldProofs = int(m[`prover_worker_key_cache_proofs_total{family="register",key="cold"}`])
		r.evictions = int(m[`prover_worker_key_cache_evictions_total{family="register",reason="room"}`])
	}
	r.peakRSS = procKiB(t, pid, "VmHWM") << 10
	return r
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// procKiB reads a kB field of /proc/<pid>/status.
func procKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

var scrapeClient = sync.OnceValue(func() *http.Client { return &http.Client{Timeout: 5 * time.Second} })

// scrape reads the worker's /metrics as name{labels} → value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := scrapeClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		out[l[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

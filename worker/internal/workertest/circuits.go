package workertest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/internal/snarkjs"
	"github.com/openpassport/prover-fleet/shared/circuitdir"
)

// DemoCircuits are the real circom circuits standing in for the families.
var DemoCircuits = []string{"register_demo", "dsc_demo", "disclose_demo"}

// Root is the repository root (the directory holding go.mod).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

var (
	realOnce     sync.Once
	realCircuits string
	realZkeys    string
	realErr      error
)

// RealCircuits returns the folder of the compiled demo circuits
// (<name>_cpp/<name>) and a folder of their development keys (<name>.zkey,
// <name>.vkey.json). The circuits are built with scripts/build-circuits.sh,
// which skips what is up to date; keys come from the repository's zkeys/
// when present there, or are made once with cmd/zkeygen and cached under the
// user cache dir, keyed by the circuit's r1cs. A test that cannot get them
// fails with the reason; under -short it is skipped.
func RealCircuits(t testing.TB) (circuits, zkeys string) {
	t.Helper()
	if testing.Short() {
		t.Skip("real circuits are built and proved only without -short")
	}
	root := Root(t)
	realOnce.Do(func() { realCircuits, realZkeys, realErr = prepareCircuits(root) })
	if realErr != nil {
		t.Fatalf("the real demo circuits are not available: %v", realErr)
	}
	return realCircuits, realZkeys
}

func prepareCircuits(root string) (string, string, error) {
	build := exec.Command("bash", filepath.Join(root, "scripts", "build-circuits.sh"))
	build.Dir = root
	build.Env = append(os.Environ(), "CIRCUITS="+strings.Join(DemoCircuits, " "))
	if out, err := build.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("scripts/build-circuits.sh: %v\n%s", err, tail(out, 4000))
	}
	circuits := filepath.Join(root, "circuits", "build")

	zkeys, err := os.MkdirTemp("", "worker-test-zkeys-")
	if err != nil {
		return "", "", err
	}
	var keygen string
	repo := circuitdir.Layout{CircuitDir: circuits, ZkeyDir: filepath.Join(root, "zkeys")}
	linked := circuitdir.Layout{ZkeyDir: zkeys}
	for _, name := range DemoCircuits {
		zkey, vkey := repo.Zkey(name), repo.VKey(name)
		if !exists(zkey) || !exists(vkey) {
			if keygen == "" {
				if keygen, err = buildCmd(root, "./cmd/zkeygen"); err != nil {
					return "", "", err
				}
			}
			if zkey, vkey, err = cachedKey(keygen, repo.R1CS(name), name); err != nil {
				return "", "", err
			}
		}
		for src, dst := range map[string]string{zkey: linked.Zkey(name), vkey: linked.VKey(name)} {
			if err := os.Symlink(src, dst); err != nil {
				return "", "", err
			}
		}
	}
	return circuits, zkeys, nil
}

// cachedKey makes (or finds) a development key for an r1cs.
func cachedKey(keygen, r1cs, name string) (string, string, error) {
	f, err := os.Open(r1cs)
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "prover-fleet", "worker-test-keys", hex.EncodeToString(h.Sum(nil))[:16])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	cached := circuitdir.Layout{ZkeyDir: dir}
	zkey, vkey := cached.Zkey(name), cached.VKey(name)
	if exists(zkey) && exists(vkey) {
		return zkey, vkey, nil
	}
	start := time.Now()
	cmd := exec.Command(keygen, "-r1cs", r1cs, "-zkey", zkey, "-vkey", vkey, "-seed", "prover-fleet worker tests "+name)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("zkeygen %s: %v\n%s", name, err, tail(out, 2000))
	}
	fmt.Fprintf(os.Stderr, "workertest: made a development key for %s in %s (cached in %s)\n", name, time.Since(start).Round(time.Millisecond), dir)
	return zkey, vkey, nil
}

var (
	cmdMu    sync.Mutex
	cmdBuilt = map[string]string{}
)

// Command builds a main package of the repository (e.g. "./cmd/zkprove")
// once per test binary and returns the executable.
func Command(t testing.TB, pkg string) string {
	t.Helper()
	path, err := buildCmd(Root(t), pkg)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func buildCmd(root, pkg string) (string, error) {
	cmdMu.Lock()
	defer cmdMu.Unlock()
	if p, ok := cmdBuilt[pkg]; ok {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "worker-test-bin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	cmdBuilt[pkg] = out
	return out, nil
}

// Snarkjs is the repository's pinned snarkjs (internal/snarkjs); the test
// fails without it.
func Snarkjs(t testing.TB) string {
	t.Helper()
	p, err := snarkjs.Find(filepath.Join(Root(t), "circuits", "build"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// SampleInputs reads circuits/inputs/<name>.json (or <name>.<variant>.json).
func SampleInputs(t testing.TB, name, variant string) string {
	t.Helper()
	file := name + ".json"
	if variant != "" {
		file = name + "." + variant + ".json"
	}
	b, err := os.ReadFile(filepath.Join(Root(t), "circuits", "inputs", file))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// InputValues lists the distinctive values of a circuit input object: every
// string or number of at least minLen characters, for log assertions.
func InputValues(t testing.TB, inputs string, minLen int) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(inputs), &v); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			if len(x) >= minLen {
				seen[x] = true
			}
		case float64:
			if s := fmt.Sprint(x); len(s) >= minLen {
				seen[s] = true
			}
		}
	}
	walk(v)
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatal("no distinctive input values to look for")
	}
	return out
}

// VerifyWithSnarkjs checks a stored proof and its public signals with
// `snarkjs groth16 verify`, independent of the worker's verifier.
func VerifyWithSnarkjs(t testing.TB, vkey string, proof json.RawMessage, public []string) {
	t.Helper()
	dir := t.TempDir()
	pub, _ := json.Marshal(public)
	if err := os.WriteFile(filepath.Join(dir, "proof.json"), proof, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "public.json"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Snarkjs(t), "groth16", "verify", vkey, filepath.Join(dir, "public.json"), filepath.Join(dir, "proof.json"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("snarkjs groth16 verify rejects the stored proof: %v\n%s", err, out)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Catalogue makes n circuits out of the real circuit base in circuits and
// zkeys: base_1 … base_n, each with base's witness generator, data and
// verification key (links) and a copy of its proving key (separate files:
// a worker loads and caches each on its own). It returns the folders that
// hold them and their names.
func Catalogue(t testing.TB, circuits, zkeys, base string, n int) (string, string, []string) {
	t.Helper()
	dir := t.TempDir()
	l := circuitdir.Layout{CircuitDir: filepath.Join(dir, "circuits"), ZkeyDir: filepath.Join(dir, "zkeys")}
	src := circuitdir.Layout{CircuitDir: circuits, ZkeyDir: zkeys}
	key, err := os.ReadFile(src.Zkey(base))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%s_%d", base, i)
		if err := os.MkdirAll(filepath.Dir(l.Generator(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(l.ZkeyDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, link := range [][2]string{
			{src.Generator(base), l.Generator(name)},
			{src.GeneratorData(base), l.GeneratorData(name)},
			{src.VKey(base), l.VKey(name)},
		} {
			if err := os.Symlink(link[0], link[1]); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(l.Zkey(name), key, 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return l.CircuitDir, l.ZkeyDir, names
}

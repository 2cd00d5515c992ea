package circuits

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
)

// writeFile creates an empty file: the catalog only checks presence.
func writeFile(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, mode); err != nil {
		t.Fatal(err)
	}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestCatalog(t *testing.T) {
	t.Parallel()
	circ, zkeys := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(circ, "cpp_only_cpp", "cpp_only"), 0o755)
	writeFile(t, filepath.Join(circ, "wasm_only_js", "wasm_only.wasm"), 0o644)
	writeFile(t, filepath.Join(circ, "both_cpp", "both"), 0o755)
	writeFile(t, filepath.Join(circ, "both_js", "both.wasm"), 0o644)
	writeFile(t, filepath.Join(circ, "not_exec_cpp", "not_exec"), 0o644)
	writeFile(t, filepath.Join(circ, "wrong_name_cpp", "other"), 0o755)
	writeFile(t, filepath.Join(circ, "nozkey_cpp", "nozkey"), 0o755)
	if err := os.MkdirAll(filepath.Join(circ, "dir_cpp", "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(circ, "plain.r1cs"), 0o644)
	for _, n := range []string{"cpp_only", "wasm_only", "both", "not_exec", "wrong_name", "dir"} {
		writeFile(t, filepath.Join(zkeys, n+".zkey"), 0o644)
	}

	tests := []struct {
		name  string
		zkeys string
		want  []string
	}{
		{"with zkeys", zkeys, []string{"both", "cpp_only", "wasm_only"}},
		{"without zkey check", "", []string{"both", "cpp_only", "nozkey", "wasm_only"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Config{Layout: circuitdir.Layout{CircuitDir: circ, ZkeyDir: tt.zkeys}})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Names(); !slices.Equal(got, tt.want) {
				t.Fatalf("Names() = %v, want %v", got, tt.want)
			}
			for _, n := range tt.want {
				if !c.Known(n) {
					t.Fatalf("Known(%q) = false", n)
				}
			}
			for _, n := range []string{"not_exec", "wrong_name", "dir", "plain", "", "../both", "both_cpp"} {
				if c.Known(n) {
					t.Fatalf("Known(%q) = true", n)
				}
			}
		})
	}
}

func TestCatalogRefresh(t *testing.T) {
	t.Parallel()
	circ := t.TempDir()
	clk := &clock{now: time.Unix(1e9, 0)}
	c, err := New(Config{Layout: circuitdir.Layout{CircuitDir: circ}, Refresh: 10 * time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(circ, "late_cpp", "late"), 0o755)
	if c.Known("late") {
		t.Fatal("a miss rescanned before the refresh interval")
	}
	clk.Add(10 * time.Second)
	if !c.Known("late") {
		t.Fatal("a miss after the refresh interval did not rescan")
	}
	if err := os.RemoveAll(filepath.Join(circ, "late_cpp")); err != nil {
		t.Fatal(err)
	}
	if err := c.Rescan(); err != nil {
		t.Fatal(err)
	}
	if c.Known("late") {
		t.Fatal("a removed circuit is still known after Rescan")
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "f")
	writeFile(t, file, 0o644)
	for _, cfg := range []Config{
		{},
		{Layout: circuitdir.Layout{CircuitDir: filepath.Join(t.TempDir(), "missing")}},
		{Layout: circuitdir.Layout{CircuitDir: file}},
		{Layout: circuitdir.Layout{CircuitDir: t.TempDir(), ZkeyDir: filepath.Join(t.TempDir(), "missing")}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a bad config", cfg)
		}
	}
}

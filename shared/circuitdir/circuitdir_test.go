package circuitdir_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
)

func TestPaths(t *testing.T) {
	l := circuitdir.Layout{CircuitDir: "/c", ZkeyDir: "/k"}
	tests := []struct{ name, got, want string }{
		{"generator", l.Generator("register_demo"), "/c/register_demo_cpp/register_demo"},
		{"generator data", l.GeneratorData("register_demo"), "/c/register_demo_cpp/register_demo.dat"},
		{"wasm", l.Wasm("register_demo"), "/c/register_demo_js/register_demo.wasm"},
		{"r1cs", l.R1CS("register_demo"), "/c/register_demo.r1cs"},
		{"zkey", l.Zkey("register_demo"), "/k/register_demo.zkey"},
		{"vkey", l.VKey("register_demo"), "/k/register_demo.vkey.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %s, want %s", tc.got, tc.want)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"demo", "register_demo", true},
		{"dashes and digits", "dsc-rsa-2048_v2", true},
		{"longest", strings.Repeat("a", circuitdir.MaxName), true},
		{"too long", strings.Repeat("a", circuitdir.MaxName+1), false},
		{"empty", "", false},
		{"dot dot", "..", false},
		{"slash", "a/b", false},
		{"leading underscore", "_x", false},
		{"leading dash", "-x", false},
		{"space", "a b", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := circuitdir.ValidName(tc.in); got != tc.want {
				t.Errorf("ValidName(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func write(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x"), mode); err != nil {
		t.Fatal(err)
	}
}

func TestInstalled(t *testing.T) {
	l := circuitdir.Layout{CircuitDir: t.TempDir(), ZkeyDir: t.TempDir()}
	write(t, l.Generator("native"), 0o755)
	write(t, l.Zkey("native"), 0o644)
	write(t, l.Wasm("wasm"), 0o644)
	write(t, l.Zkey("wasm"), 0o644)
	write(t, l.Generator("noexec"), 0o644) // not executable, no wasm
	write(t, l.Zkey("noexec"), 0o644)
	write(t, l.Generator("nokey"), 0o755) // no zkey
	write(t, l.Generator("both"), 0o644)  // the wasm one counts
	write(t, l.Wasm("both"), 0o644)
	write(t, l.Zkey("both"), 0o644)
	if err := os.MkdirAll(filepath.Join(l.CircuitDir, "empty_cpp"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, l.R1CS("native"), 0o644)

	got, err := l.Installed()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"both", "native", "wasm"}; !slices.Equal(got, want) {
		t.Errorf("with keys: %v, want %v", got, want)
	}
	noKeys := circuitdir.Layout{CircuitDir: l.CircuitDir}
	if got, err = noKeys.Installed(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"both", "native", "nokey", "wasm"}; !slices.Equal(got, want) {
		t.Errorf("without a key folder: %v, want %v", got, want)
	}
	if _, err := (circuitdir.Layout{CircuitDir: filepath.Join(l.CircuitDir, "missing")}).Installed(); err == nil {
		t.Error("a missing circuit folder listed without an error")
	}
}

func TestAbs(t *testing.T) {
	l, err := circuitdir.Layout{CircuitDir: "circuits/build"}.Abs()
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(l.CircuitDir) || l.ZkeyDir != "" {
		t.Errorf("Abs = %+v, want an absolute circuit folder and no key folder", l)
	}
}

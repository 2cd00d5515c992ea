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
	mapped := circuitdir.Layout{CircuitDir: "/c", ZkeyDir: "/k", ZkeyNames: map[string]string{"register_x": "reg_final.zkey"}}
	tests := []struct{ name, got, want string }{
		{"generator", l.Generator("register_demo"), "/c/register_demo_cpp/register_demo"},
		{"generator data", l.GeneratorData("register_demo"), "/c/register_demo_cpp/register_demo.dat"},
		{"wasm", l.Wasm("register_demo"), "/c/register_demo_js/register_demo.wasm"},
		{"r1cs", l.R1CS("register_demo"), "/c/register_demo.r1cs"},
		{"zkey", l.Zkey("register_demo"), "/k/register_demo.zkey"},
		{"vkey", l.VKey("register_demo"), "/k/register_demo.vkey.json"},
		{"mapped zkey", mapped.Zkey("register_x"), "/k/reg_final.zkey"},
		{"mapped vkey", mapped.VKey("register_x"), "/k/reg_final.vkey.json"},
		{"unmapped with a map", mapped.Zkey("register_demo"), "/k/register_demo.zkey"},
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

func TestLoadZkeyMap(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "map.json")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m, err := circuitdir.LoadZkeyMap(write(`{"register_x": "reg_final.zkey", "dsc_x": "dsc.zkey"}`))
	if err != nil || m["register_x"] != "reg_final.zkey" || len(m) != 2 {
		t.Fatalf("LoadZkeyMap = %v, %v", m, err)
	}
	if m, err := circuitdir.LoadZkeyMap(""); m != nil || err != nil {
		t.Fatalf("no path: %v, %v", m, err)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"not an object", `["a"]`, "want a JSON object"},
		{"bad circuit name", `{"../x": "x.zkey"}`, "is not a circuit name"},
		{"path in the file name", `{"x": "../x.zkey"}`, "must be a file name in the zkey folder"},
		{"not a zkey", `{"x": "x.json"}`, "must be a file name in the zkey folder"},
		{"empty file name", `{"x": ""}`, "must be a file name in the zkey folder"},
		{"too large", `{"x": "` + strings.Repeat("a", circuitdir.MaxZkeyMapBytes) + `.zkey"}`, "is over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := circuitdir.LoadZkeyMap(write(tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := circuitdir.LoadZkeyMap(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("a missing file was accepted")
	}
	// The catalogue finds a circuit by its mapped key.
	l := circuitdir.Layout{CircuitDir: t.TempDir(), ZkeyDir: t.TempDir(), ZkeyNames: map[string]string{"register_x": "reg_final.zkey"}}
	gen := l.Generator("register_x")
	if err := os.MkdirAll(filepath.Dir(gen), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gen, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Installed(); len(got) != 0 {
		t.Fatalf("installed without its mapped key: %v", got)
	}
	if err := os.WriteFile(filepath.Join(l.ZkeyDir, "reg_final.zkey"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Installed(); !slices.Equal(got, []string{"register_x"}) {
		t.Fatalf("installed = %v", got)
	}
}

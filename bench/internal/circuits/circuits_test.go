package circuits

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestDiscover lays out the demo circuits and two more keys, one of them
// without its witness generator: Discover lists the demos and the complete
// extra circuit (with its input beside the build), by zkey size.
func TestDiscover(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	d := Dirs{Circuits: filepath.Join(root, "build"), Zkeys: filepath.Join(root, "zkeys"), Inputs: filepath.Join(root, "inputs")}
	write := func(path string, size int) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	circuit := func(name string, zkey int, inputs string, generator bool) {
		if generator {
			write(filepath.Join(d.Circuits, name+"_cpp", name), 1)
		}
		write(filepath.Join(d.Circuits, name+".r1cs"), 1)
		write(filepath.Join(d.Zkeys, name+".zkey"), zkey)
		write(filepath.Join(d.Zkeys, name+".vkey.json"), 1)
		write(filepath.Join(inputs, name+".json"), 1)
	}
	circuit(Register, 300, d.Inputs, true)
	circuit(DSC, 200, d.Inputs, true)
	circuit(Disclose, 100, d.Inputs, true)
	circuit("register_large_20", 1000, filepath.Join(d.Circuits, "inputs"), true)
	circuit("dsc_large_20", 900, d.Inputs, false)

	cs, err := Discover(d)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	if want := []string{Disclose, DSC, Register, "register_large_20"}; !slices.Equal(names, want) {
		t.Fatalf("Discover = %v, want %v", names, want)
	}
	if cs[3].Input != filepath.Join(d.Circuits, "inputs", "register_large_20.json") {
		t.Fatalf("input %s", cs[3].Input)
	}

	if err := os.Remove(filepath.Join(d.Zkeys, DSC+".zkey")); err != nil {
		t.Fatal(err)
	}
	if _, err := Discover(d); err == nil {
		t.Fatal("Discover without a demo key succeeded")
	}
}

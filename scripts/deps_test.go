// Package scripts_test checks the repository's shell scripts as the Makefile
// and CI run them.
//
// deps.sh decides what to install from dpkg's database, the tools on PATH
// and the npm lock files. The tests run the real script with a PATH of
// stand-ins for the programs that would change the machine or that report
// its state (dpkg-query, apt-get, sudo, npm, id), so every case — a bare
// machine, a complete one, a non-root user without sudo — runs here without
// installing anything.
package scripts_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// machine is what the stand-ins report.
type machine struct {
	installed map[string]string // Debian package -> version
	tools     []string          // g++, make, node, npm... present on PATH
	root      bool
	sudo      bool   // a sudo that works without a password
	pg        bool   // a PostgreSQL under PG_LIB
	npm       string // npm's version (default 11.19.1)
}

type run struct {
	out   string
	err   error
	calls string // what apt-get, sudo and npm were called with, one line each
}

// deps runs scripts/deps.sh with args on m, in a copy of the repository's
// files the script reads (go.mod, the npm lock files).
func deps(t *testing.T, m machine, repo string, args ...string) run {
	t.Helper()
	bin, lib, calls := t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "calls")
	script := func(path, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/bash\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, body string) { t.Helper(); script(filepath.Join(bin, name), body) }
	// The real tools the script needs.
	for _, tool := range []string{"bash", "sed", "grep", "dirname", "env", "cat", "sha256sum", "mkdir"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s not found: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	var db strings.Builder
	for pkg, v := range m.installed {
		db.WriteString(pkg + " " + v + "\n")
	}
	if err := os.WriteFile(filepath.Join(lib, "dpkg.db"), []byte(db.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// dpkg-query -W -f=FORMAT PKG: FORMAT is ${Status}\n or ${Version}.
	write("dpkg-query", `pkg="${@: -1}"; v=$(sed -n "s/^$pkg //p" "`+filepath.Join(lib, "dpkg.db")+`")
[ -n "$v" ] || exit 1
case "$2" in *Status*) echo "install ok installed" ;; *) printf %s "$v" ;; esac`)
	write("apt-get", `echo "apt-get $*" >>"`+calls+`"`)
	// npm ci --prefix DIR ... makes DIR/node_modules, as the real one does.
	npmVersion := m.npm
	if npmVersion == "" {
		npmVersion = "11.19.1"
	}
	write("npm", `[ "$1" = --version ] && { echo `+npmVersion+`; exit 0; }
echo "npm $*" >>"`+calls+`"; [ "$1 $2" = "ci --prefix" ] && mkdir -p "$3/node_modules"`)
	if m.sudo {
		write("sudo", `echo "sudo $*" >>"`+calls+`"; [ "$1" = -n ] && shift; [ "$1" = true ] && exit 0; exec "$@"`)
	}
	uid := "1000"
	if m.root {
		uid = "0"
	}
	write("id", "echo "+uid)
	write("go", "echo go version go1.26.8 linux/amd64")
	for _, tool := range m.tools {
		write(tool, "exit 0")
	}
	if m.pg {
		script(filepath.Join(lib, "pg", "15", "bin", "initdb"), "exit 0")
	}

	cmd := exec.CommandContext(t.Context(), "bash", filepath.Join(repo, "scripts", "deps.sh"))
	cmd.Args = append(cmd.Args, args...)
	cmd.Env = []string{"PATH=" + bin, "PG_LIB=" + filepath.Join(lib, "pg"), "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	c, _ := os.ReadFile(calls)
	return run{out: string(out), err: err, calls: string(c)}
}

// repo is a copy of what deps.sh reads: the script, go.mod and the npm
// projects' package files; installed lists the npm projects whose
// node_modules is up to date.
func repo(t *testing.T, installed ...string) string {
	t.Helper()
	dir := t.TempDir()
	copyFile := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile("deps.sh", filepath.Join(dir, "scripts", "deps.sh"))
	copyFile("../go.mod", filepath.Join(dir, "go.mod"))
	for _, d := range []string{"circuits", "e2e/app"} {
		for _, f := range []string{"package.json", "package-lock.json"} {
			copyFile(filepath.Join("..", d, f), filepath.Join(dir, d, f))
		}
	}
	for _, d := range installed {
		// The stamp deps.sh writes after npm ci: sha256sum of the package files.
		var stamp strings.Builder
		for _, f := range []string{"package.json", "package-lock.json"} {
			b, err := os.ReadFile(filepath.Join(dir, d, f))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&stamp, "%x  %s\n", sha256.Sum256(b), f)
		}
		if err := os.MkdirAll(filepath.Join(dir, d, "node_modules"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d, "node_modules", ".deps-stamp"), []byte(stamp.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var complete = machine{
	installed: map[string]string{
		"nlohmann-json3-dev": "3.11.2-2",
		"nasm":               "2.16.01-1",
		"libgmp-dev":         "2:6.2.1+dfsg1-1.1",
	},
	tools: []string{"g++", "make", "node"},
	root:  true,
	pg:    true,
}

func TestDeps(t *testing.T) {
	// npm is always a stand-in on PATH (it records its calls), so a bare
	// machine lacks node but not npm.
	bare := machine{installed: map[string]string{}, root: true}
	tests := []struct {
		name      string
		m         machine
		npmDone   []string
		args      []string
		wantErr   bool
		wantOut   []string // lines the output must contain
		wantCalls []string // exact calls, in order
	}{
		{
			name: "bare machine, dry run lists everything and installs nothing",
			m:    bare,
			args: []string{"--dry-run"},
			wantOut: []string{
				"deps: Debian packages to install: nlohmann-json3-dev=3.11.2-2 nasm=2.16.01-1 libgmp-dev=2:6.2.1+dfsg1-1.1 postgresql-15 g++ make nodejs",
				"deps: npm packages to install: npm ci --prefix circuits (pinned by circuits/package-lock.json)",
			},
		},
		{
			name:    "bare machine, check fails",
			m:       bare,
			args:    []string{"--check"},
			wantErr: true,
			wantOut: []string{"deps: Debian packages to install: nlohmann-json3-dev=3.11.2-2"},
		},
		{
			name: "bare machine as root installs the pins, then the npm packages",
			m:    bare,
			wantCalls: []string{
				"apt-get update -qq",
				"apt-get install -y -qq --no-install-recommends nlohmann-json3-dev=3.11.2-2 nasm=2.16.01-1 libgmp-dev=2:6.2.1+dfsg1-1.1 postgresql-15 g++ make nodejs",
				"npm ci --prefix ", // circuits, then e2e/app, in the test's copy of the repository
				"npm ci --prefix ",
			},
		},
		{
			name:    "complete machine installs nothing",
			m:       complete,
			npmDone: []string{"circuits", "e2e/app"},
			wantOut: []string{"deps: nothing to install"},
		},
		{
			name:      "only npm missing",
			m:         complete,
			wantOut:   []string{"deps: npm packages to install: npm ci --prefix circuits", "npm ci --prefix e2e/app"},
			wantCalls: []string{"npm ci --prefix ", "npm ci --prefix "},
		},
		{
			name:    "npm too old for e2e/app: refused with what to do",
			m:       func() machine { m := complete; m.npm = "9.2.0"; return m }(),
			npmDone: []string{"circuits"},
			wantErr: true,
			wantOut: []string{"npm 9.2.0 cannot install e2e/app (its overrides need npm 10 or later, as Node.js 20 ships)"},
		},
		{
			name: "another version of a pinned package is kept",
			m: func() machine {
				m := complete
				m.installed = map[string]string{"nlohmann-json3-dev": "3.11.3-1", "nasm": "2.16.01-1", "libgmp-dev": "2:6.2.1+dfsg1-1.1"}
				return m
			}(),
			npmDone: []string{"circuits", "e2e/app"},
			wantOut: []string{"deps: note: nlohmann-json3-dev 3.11.3-1 is installed (pinned: 3.11.2-2); keeping it", "deps: nothing to install"},
		},
		{
			name: "not root, with sudo",
			m: func() machine {
				m := complete
				m.installed = map[string]string{"nlohmann-json3-dev": "3.11.2-2", "libgmp-dev": "2:6.2.1+dfsg1-1.1"}
				m.root, m.sudo = false, true
				return m
			}(),
			npmDone: []string{"circuits", "e2e/app"},
			wantCalls: []string{
				"sudo -n true",
				"sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -qq",
				"apt-get update -qq",
				"sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nasm=2.16.01-1",
				"apt-get install -y -qq --no-install-recommends nasm=2.16.01-1",
			},
		},
		{
			name: "not root, no sudo: fails with the command to run",
			m: func() machine {
				m := complete
				m.installed = map[string]string{"nlohmann-json3-dev": "3.11.2-2", "libgmp-dev": "2:6.2.1+dfsg1-1.1"}
				m.root = false
				return m
			}(),
			npmDone: []string{"circuits", "e2e/app"},
			wantErr: true,
			wantOut: []string{"sudo apt-get update && sudo apt-get install -y --no-install-recommends nasm=2.16.01-1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := deps(t, tc.m, repo(t, tc.npmDone...), tc.args...)
			if (r.err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v; output:\n%s", r.err, tc.wantErr, r.out)
			}
			for _, want := range tc.wantOut {
				if !strings.Contains(r.out, want) {
					t.Errorf("output lacks %q; output:\n%s", want, r.out)
				}
			}
			calls := strings.Split(strings.TrimSpace(r.calls), "\n")
			if r.calls == "" {
				calls = nil
			}
			if len(calls) != len(tc.wantCalls) {
				t.Fatalf("calls = %q, want %q; output:\n%s", calls, tc.wantCalls, r.out)
			}
			for i, want := range tc.wantCalls {
				if !strings.HasPrefix(calls[i], want) {
					t.Errorf("call %d = %q, want %q", i, calls[i], want)
				}
			}
		})
	}
}

// TestDepsThisMachine runs the dry run on the machine itself: after
// .ci/run's install, nothing may be missing, or the script and the machine
// disagree about what "installed" means.
func TestDepsThisMachine(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the machine's own packages are not checked")
	}
	out, err := exec.CommandContext(t.Context(), "bash", "deps.sh", "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("deps.sh --check on this machine: %v\n%s(run scripts/deps.sh to install what is missing)", err, out)
	}
}

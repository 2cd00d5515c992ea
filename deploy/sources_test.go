package deploy

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// root is the repository root, seen from this package's directory.
const root = ".."

// program names what the deployment files configure.
type program string

const (
	progAPI       program = "prover-api"
	progWorker    program = "prover-worker"
	progProverctl program = "proverctl"
	progZkeygen   program = "zkeygen"
)

// configDirs are the packages that read each program's flags and
// environment.
var configDirs = map[program][]string{
	progAPI:       {"api/internal/config", "api"},
	progWorker:    {"worker/internal/config", "worker"},
	progProverctl: {"cmd/proverctl"},
	progZkeygen:   {"cmd/zkeygen"},
}

// workerEnvPrefix is how prover-worker names the variable of a flag
// (worker/internal/config: PROVER_WORKER_ + long name, '-' → '_').
const workerEnvPrefix = "PROVER_WORKER_"

// goFiles parses the non-test Go files of dir (relative to root). A missing
// directory yields nothing; callers decide whether that is an error.
func goFiles(t *testing.T, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", p, err)
		}
		files = append(files, f)
	}
	return files
}

// stringLit returns the value of a string literal expression.
func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

var (
	flagMethod = regexp.MustCompile(`^(String|Int|Int64|Uint|Uint32|Bool|Duration|Float64|StringSlice|StringArray|IntSlice|Var)(Var)?P?$`)
	flagName   = regexp.MustCompile(`^[a-z][a-z0-9-]+$`)
	envName    = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$`)
)

// programSettings is what one program reads: its long flag names and its
// environment variables.
type programSettings struct {
	flags map[string]bool
	env   map[string]bool
}

// settingsOf reads the flags (pflag definitions: fs.StringVarP(&x, "name",
// ...), fs.Duration("name", ...)) and environment variable names (upper-case
// string literals) from the program's configuration sources. It fails the
// test when the program has no sources yet: the deployment files name it.
func settingsOf(t *testing.T, p program) programSettings {
	t.Helper()
	s := programSettings{flags: map[string]bool{}, env: map[string]bool{}}
	nfiles := 0
	for _, dir := range configDirs[p] {
		for _, f := range goFiles(t, dir) {
			nfiles++
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CallExpr:
					sel, ok := n.Fun.(*ast.SelectorExpr)
					if !ok || !flagMethod.MatchString(sel.Sel.Name) {
						return true
					}
					for _, a := range n.Args {
						if name, ok := stringLit(a); ok {
							if flagName.MatchString(name) {
								s.flags[name] = true
							}
							break
						}
					}
				case *ast.BasicLit:
					if v, ok := stringLit(n); ok && envName.MatchString(v) {
						s.env[v] = true
					}
				}
				return true
			})
		}
	}
	if nfiles == 0 {
		t.Fatalf("%s: no Go sources in %v: the deployment files configure it, so it must exist", p, configDirs[p])
	}
	if len(s.flags) == 0 {
		t.Fatalf("%s: found no flag definitions in %v", p, configDirs[p])
	}
	if p == progWorker {
		for f := range s.flags {
			s.env[workerEnvPrefix+strings.ToUpper(strings.ReplaceAll(f, "-", "_"))] = true
		}
	}
	return s
}

// checkEnv reports every name in vars that program p does not read.
func checkEnv(t *testing.T, where string, p program, vars []string) {
	t.Helper()
	s := settingsOf(t, p)
	for _, v := range vars {
		if !s.env[v] {
			t.Errorf("%s: environment variable %s is not read by %s (it reads %s)", where, v, p, strings.Join(sortedKeys(s.env), ", "))
		}
	}
}

// checkFlag reports a command-line flag ("--name", "-name", "--name=value")
// that program p does not define.
func checkFlag(t *testing.T, where string, p program, arg string) {
	t.Helper()
	if !strings.HasPrefix(arg, "-") {
		return
	}
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	if s := settingsOf(t, p); !s.flags[name] {
		t.Errorf("%s: flag --%s is not defined by %s (it has --%s)", where, name, p, strings.Join(sortedKeys(s.flags), ", --"))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// readFile reads a file relative to the repository root.
func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return b
}

// yamlDocs splits a YAML stream on "---" lines and decodes every document
// that is not empty (or only comments) into a generic map.
func yamlDocs(t *testing.T, rel string) []map[string]any {
	t.Helper()
	data := readFile(t, rel)
	var docs []map[string]any
	var cur bytes.Buffer
	flush := func(i int) {
		text := cur.String()
		cur.Reset()
		if strings.TrimSpace(stripComments(text)) == "" {
			return
		}
		var m map[string]any
		if err := yaml.UnmarshalStrict([]byte(text), &m); err != nil {
			t.Fatalf("%s: document %d: %v", rel, i, err)
		}
		docs = append(docs, m)
	}
	n := 0
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if strings.TrimRight(line, "\r\n") == "---" {
			flush(n)
			n++
			continue
		}
		cur.WriteString(line)
	}
	flush(n)
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// Accessors for decoded YAML and JSON: each returns the zero value when the
// path is absent or of another type.

func get(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...string) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func obj(v any, path ...string) map[string]any {
	m, _ := get(v, path...).(map[string]any)
	return m
}

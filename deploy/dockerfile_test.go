package deploy

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/openpassport/prover-fleet/shared/family"
)

// instruction is one Dockerfile instruction after line continuations are
// joined; heredoc holds the body of a RUN <<EOF … EOF.
type instruction struct {
	line    int
	cmd     string // upper case
	args    string
	heredoc string
}

type stage struct {
	name   string
	from   string
	instrs []instruction
}

// parseDockerfile is a small parser for the subset of the Dockerfile
// syntax Dockerfile.tee uses: comments, line continuations, heredocs.
func parseDockerfile(t *testing.T, text string) (preamble []instruction, stages []*stage) {
	t.Helper()
	known := map[string]bool{"FROM": true, "RUN": true, "CMD": true, "LABEL": true, "EXPOSE": true, "ENV": true,
		"ADD": true, "COPY": true, "ENTRYPOINT": true, "VOLUME": true, "USER": true, "WORKDIR": true, "ARG": true,
		"ONBUILD": true, "STOPSIGNAL": true, "HEALTHCHECK": true, "SHELL": true}
	heredocStart := regexp.MustCompile(`<<-?'?"?([A-Z_]+)'?"?`)
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		raw := strings.TrimSpace(lines[i])
		if raw == "" || strings.HasPrefix(raw, "#") {
			continue
		}
		start := i + 1
		joined := raw
		for strings.HasSuffix(joined, `\`) && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				joined += ` \`
			}
			if !strings.HasPrefix(next, "#") {
				joined = strings.TrimSuffix(joined, `\`) + " " + next
			} else {
				joined = strings.TrimSuffix(joined, `\`)
			}
		}
		cmd, args, _ := strings.Cut(joined, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if !known[in.cmd] {
			t.Errorf("Dockerfile.tee:%d: unknown instruction %q", start, cmd)
		}
		if m := heredocStart.FindStringSubmatch(in.args); m != nil && (in.cmd == "RUN" || in.cmd == "COPY") {
			var body []string
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != m[1]; i++ {
				body = append(body, lines[i])
			}
			if i == len(lines) {
				t.Fatalf("Dockerfile.tee:%d: heredoc %s is not closed", start, m[1])
			}
			in.heredoc = strings.Join(body, "\n")
		}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := &stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				t.Errorf("Dockerfile.tee:%d: FROM %q: want FROM image [AS name]", start, in.args)
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Errorf("Dockerfile.tee:%d: only ARG may come before the first FROM, got %s", start, in.cmd)
			}
			preamble = append(preamble, in)
			continue
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	return preamble, stages
}

// words splits shell-like words, keeping quoted spans together (quotes
// removed).
func words(s string) []string {
	var out []string
	var cur strings.Builder
	var quote rune
	in := false
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// dockerignore matches paths against .dockerignore patterns (no negation).
type dockerignore []*regexp.Regexp

func loadDockerignore(t *testing.T) dockerignore {
	t.Helper()
	var d dockerignore
	for _, line := range strings.Split(string(readFile(t, ".dockerignore")), "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if strings.HasPrefix(p, "!") {
			t.Fatalf(".dockerignore: this test does not handle exceptions (%s)", p)
		}
		p = strings.Trim(path.Clean(p), "/")
		var re strings.Builder
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString(`(.*/)?`)
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(`.*`)
				i++
			case p[i] == '*':
				re.WriteString(`[^/]*`)
			case p[i] == '?':
				re.WriteString(`[^/]`)
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		d = append(d, regexp.MustCompile(`^`+re.String()+`$`))
	}
	return d
}

// excluded reports whether rel or a folder above it is ignored.
func (d dockerignore) excluded(rel string) bool {
	rel = strings.Trim(path.Clean(rel), "/")
	for p := rel; p != "." && p != ""; p = path.Dir(p) {
		for _, re := range d {
			if re.MatchString(p) {
				return true
			}
		}
	}
	return false
}

func loadDockerfile(t *testing.T) ([]instruction, []*stage, map[string]*stage) {
	t.Helper()
	pre, stages := parseDockerfile(t, string(readFile(t, "Dockerfile.tee")))
	byName := map[string]*stage{}
	for _, s := range stages {
		if s.name == "" {
			continue
		}
		if byName[s.name] != nil {
			t.Errorf("two stages named %s", s.name)
		}
		byName[s.name] = s
	}
	return pre, stages, byName
}

func TestDockerfileStages(t *testing.T) {
	pre, stages, byName := loadDockerfile(t)
	args := map[string]string{}
	for _, in := range pre {
		k, v, _ := strings.Cut(in.args, "=")
		args[k] = strings.Trim(v, `"`)
	}
	if _, ok := args["PROOFTYPE"]; !ok {
		t.Error("ARG PROOFTYPE must be declared before the first FROM (the final FROM uses it)")
	}
	if !validProofTypes[args["PROOFTYPE"]] {
		t.Errorf("ARG PROOFTYPE default %q is not a valid PROOFTYPE", args["PROOFTYPE"])
	}
	last := stages[len(stages)-1]
	if last.from != "image-${PROOFTYPE}" {
		t.Errorf("the last stage starts FROM %q, want image-${PROOFTYPE}", last.from)
	}
	for pt := range validProofTypes {
		if byName["image-"+pt] == nil {
			t.Errorf("no stage image-%s for PROOFTYPE=%s", pt, pt)
		}
	}
	// Stages a COPY --from names exist and come earlier.
	seen := map[string]bool{}
	for _, s := range stages {
		for _, in := range s.instrs {
			if in.cmd != "COPY" {
				continue
			}
			for _, w := range words(in.args) {
				if from, ok := strings.CutPrefix(w, "--from="); ok && !seen[from] {
					t.Errorf("Dockerfile.tee:%d: COPY --from=%s: no earlier stage has that name", in.line, from)
				}
			}
		}
		if strings.Contains(s.from, "PROOFTYPE") && s != last {
			t.Errorf("stage %s starts FROM %q: only the final stage selects by PROOFTYPE", s.name, s.from)
		}
		seen[s.name] = true
	}
	// The selection script handles exactly the four PROOFTYPEs.
	sel := byName["select"]
	if sel == nil {
		t.Fatal("no select stage")
	}
	var script string
	for _, in := range sel.instrs {
		if strings.Contains(in.heredoc, `case "$PROOFTYPE" in`) {
			script = in.heredoc
		}
	}
	if script == "" {
		t.Fatal(`select stage: no RUN heredoc with case "$PROOFTYPE" in`)
	}
	cases := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*([a-z*][a-z |*]*)\)`).FindAllStringSubmatch(script, -1) {
		for _, p := range strings.Split(m[1], "|") {
			cases[strings.TrimSpace(p)] = true
		}
	}
	for pt := range validProofTypes {
		if !cases[pt] {
			t.Errorf("select stage: the PROOFTYPE case has no branch for %s (branches: %v)", pt, sortedKeys(cases))
		}
	}
	if !cases["*"] {
		t.Error("select stage: the PROOFTYPE case must reject other values (*) branch")
	}
	// Development keys are made with cmd/zkeygen's own flags.
	zk := regexp.MustCompile(`(?m)^\s*zkeygen (.*)$`).FindStringSubmatch(script)
	if zk == nil {
		t.Error("select stage: no zkeygen command for DEV_KEYS=1")
	} else {
		for _, w := range words(zk[1]) {
			checkFlag(t, "select stage zkeygen", progZkeygen, w)
		}
	}
	// rapidsnark is pinned.
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(args["RAPIDSNARK_COMMIT"]) {
		t.Errorf("ARG RAPIDSNARK_COMMIT=%q is not a full commit hash", args["RAPIDSNARK_COMMIT"])
	}
	rs := byName["rapidsnark"]
	var rsText string
	for _, in := range rs.instrs {
		rsText += in.args + "\n"
	}
	for _, want := range []string{"https://github.com/iden3/rapidsnark", `git checkout --detach "$RAPIDSNARK_COMMIT"`,
		"submodule update --init --recursive", "-DTARGET_PLATFORM=x86_64"} {
		if !strings.Contains(rsText, want) {
			t.Errorf("rapidsnark stage does not contain %q", want)
		}
	}
}

// chain returns a stage and the stages it is built FROM, nearest first.
func chain(byName map[string]*stage, name string) []*stage {
	var out []*stage
	for s := byName[name]; s != nil; s = byName[s.from] {
		out = append(out, s)
	}
	return out
}

func TestDockerfileImages(t *testing.T) {
	_, _, byName := loadDockerfile(t)
	for pt := range validProofTypes {
		t.Run(pt, func(t *testing.T) {
			prog := progWorker
			if pt == "api" {
				prog = progAPI
			}
			st := chain(byName, "image-"+pt)
			var entry []string
			var user string
			env := map[string]bool{}
			for i := len(st) - 1; i >= 0; i-- { // base first, so later stages win
				for _, in := range st[i].instrs {
					switch in.cmd {
					case "ENTRYPOINT":
						entry = nil
						if err := json.Unmarshal([]byte(in.args), &entry); err != nil {
							t.Fatalf("Dockerfile.tee:%d: ENTRYPOINT must be a JSON array: %v", in.line, err)
						}
					case "USER":
						user = in.args
					case "ENV":
						for _, w := range words(in.args) {
							k, _, _ := strings.Cut(w, "=")
							env[k] = true
						}
					}
				}
			}
			if len(entry) == 0 || path.Base(entry[0]) != string(prog) {
				t.Fatalf("ENTRYPOINT %v does not run %s", entry, prog)
			}
			for _, a := range entry[1:] {
				checkFlag(t, "ENTRYPOINT", prog, a)
			}
			if prog == progWorker {
				if f, err := family.Parse(pt); err != nil || !contains(entry, "--family="+string(f)) {
					t.Errorf("ENTRYPOINT %v does not pass --family=%s", entry, pt)
				}
			}
			if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
				t.Errorf("runs as %q: the image must run as a non-root user", user)
			}
			delete(env, "PATH")
			delete(env, "LD_LIBRARY_PATH")
			checkEnv(t, "ENV of image-"+pt, prog, sortedKeys(env))
		})
	}
	for _, f := range family.All() {
		if byName["image-"+string(f)] == nil {
			t.Errorf("family %s has no image stage", f)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// What the image build takes from the context exists and is not excluded
// by .dockerignore; the programs it builds have a main package.
func TestDockerfileContext(t *testing.T) {
	_, stages, _ := loadDockerfile(t)
	ignore := loadDockerignore(t)
	for _, s := range stages {
		for _, in := range s.instrs {
			switch in.cmd {
			case "COPY":
				for _, src := range contextSources(in.args) {
					if _, err := os.Stat(filepath.Join(root, src)); err != nil {
						t.Errorf("Dockerfile.tee:%d: COPY %s: not in the repository (%v)", in.line, src, err)
					}
					if ignore.excluded(src) {
						t.Errorf("Dockerfile.tee:%d: COPY %s: excluded by .dockerignore", in.line, src)
					}
				}
			case "RUN":
				if strings.Contains(in.args, "scripts/build-circuits.sh") {
					if fi, err := os.Stat(filepath.Join(root, "scripts/build-circuits.sh")); err != nil || fi.Mode()&0o111 == 0 {
						t.Errorf("Dockerfile.tee:%d: scripts/build-circuits.sh missing or not executable (%v)", in.line, err)
					}
				}
				if m := regexp.MustCompile(`for p in ([^;]+);`).FindStringSubmatch(in.args); m != nil && strings.Contains(in.args, "go build") {
					for _, pair := range strings.Fields(m[1]) {
						dir, bin, _ := strings.Cut(pair, ":")
						checkMainPackage(t, in.line, dir, bin)
					}
				}
			}
		}
	}
	// Host build outputs and secrets stay out of the context.
	for _, p := range []string{".git", "bin/prover-api", "circuits/node_modules/x", "circuits/build/x", "zkeys/job.key", "a/b/c.eif"} {
		if !ignore.excluded(p) {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
}

// contextSources are the build-context paths a COPY reads (none for
// COPY --from, which reads another stage).
func contextSources(args string) []string {
	ws := words(args)
	var srcs []string
	for _, w := range ws[:len(ws)-1] {
		switch {
		case strings.HasPrefix(w, "--from="):
			return nil
		case strings.HasPrefix(w, "--"), w == ".":
		default:
			srcs = append(srcs, w)
		}
	}
	return srcs
}

func checkMainPackage(t *testing.T, line int, dir, bin string) {
	t.Helper()
	files := goFiles(t, dir)
	if len(files) == 0 {
		t.Errorf("Dockerfile.tee:%d: builds %s from ./%s, which has no Go files yet", line, bin, dir)
		return
	}
	for _, f := range files {
		if f.Name.Name == "main" {
			return
		}
	}
	t.Errorf("Dockerfile.tee:%d: ./%s is not a main package (for %s)", line, dir, bin)
}

// selectScript is the select stage's shell script with its absolute
// /in and /out folders moved under dir.
func selectScript(t *testing.T, dir string) string {
	t.Helper()
	_, _, byName := loadDockerfile(t)
	for _, in := range byName["select"].instrs {
		if strings.Contains(in.heredoc, `case "$PROOFTYPE" in`) {
			s := strings.ReplaceAll(in.heredoc, "/in/", dir+"/in/")
			return strings.ReplaceAll(s, "/out", dir+"/out")
		}
	}
	t.Fatal("select stage script not found")
	return ""
}

// The select stage's script, run for real on a fake build output: it picks
// the right circuits and keys per PROOFTYPE and refuses what it must.
func TestSelectStageScript(t *testing.T) {
	t.Parallel()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("sh not found: %v", err)
	}
	setup := func(t *testing.T, withKeys bool) string {
		dir := t.TempDir()
		for _, name := range []string{"register_demo", "register_id_demo", "dsc_demo", "disclose_demo"} {
			cpp := filepath.Join(dir, "in/circuits", name+"_cpp")
			mustWrite(t, filepath.Join(dir, "in/circuits", name+".r1cs"), "r1cs", 0o644)
			mustWrite(t, filepath.Join(cpp, name), "#!/bin/sh\n", 0o755)
			mustWrite(t, filepath.Join(cpp, name+".dat"), "dat", 0o644)
			mustWrite(t, filepath.Join(cpp, "main.cpp"), "source", 0o644)
			if withKeys {
				mustWrite(t, filepath.Join(dir, "in/zkeys", name+".zkey"), "zkey", 0o644)
				mustWrite(t, filepath.Join(dir, "in/zkeys", name+".vkey.json"), "{}", 0o644)
			}
		}
		return dir
	}
	tests := []struct {
		name      string
		prooftype string
		keys      bool
		wantFiles []string // relative to out/
		wantErr   string
	}{
		{name: "register worker", prooftype: "register", keys: true, wantFiles: []string{
			"circuits/register_demo_cpp/register_demo", "circuits/register_demo_cpp/register_demo.dat",
			"circuits/register_id_demo_cpp/register_id_demo", "circuits/register_id_demo_cpp/register_id_demo.dat",
			"zkeys/register_demo.vkey.json", "zkeys/register_demo.zkey",
			"zkeys/register_id_demo.vkey.json", "zkeys/register_id_demo.zkey"}},
		{name: "dsc worker", prooftype: "dsc", keys: true, wantFiles: []string{
			"circuits/dsc_demo_cpp/dsc_demo", "circuits/dsc_demo_cpp/dsc_demo.dat",
			"zkeys/dsc_demo.vkey.json", "zkeys/dsc_demo.zkey"}},
		{name: "frontend gets every generator and no key", prooftype: "api", wantFiles: []string{
			"circuits/disclose_demo_cpp/disclose_demo", "circuits/disclose_demo_cpp/disclose_demo.dat",
			"circuits/dsc_demo_cpp/dsc_demo", "circuits/dsc_demo_cpp/dsc_demo.dat",
			"circuits/register_demo_cpp/register_demo", "circuits/register_demo_cpp/register_demo.dat",
			"circuits/register_id_demo_cpp/register_id_demo", "circuits/register_id_demo_cpp/register_id_demo.dat"}},
		{name: "missing key without DEV_KEYS", prooftype: "disclose", keys: false, wantErr: "disclose_demo: zkeys/disclose_demo.zkey missing"},
		{name: "unknown PROOFTYPE", prooftype: "prover", keys: true, wantErr: "PROOFTYPE must be register, dsc, disclose or api, got 'prover'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := setup(t, tt.keys)
			cmd := exec.Command(sh, "-c", selectScript(t, dir))
			cmd.Env = append(os.Environ(), "PROOFTYPE="+tt.prooftype, "DEV_KEYS=0", "DEV_KEY_SEED=test")
			out, err := cmd.CombinedOutput()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(string(out), tt.wantErr) {
					t.Fatalf("err %v, output %q; want a failure saying %q", err, out, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("select script: %v\n%s", err, out)
			}
			var got []string
			_ = filepath.WalkDir(filepath.Join(dir, "out"), func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					rel, _ := filepath.Rel(filepath.Join(dir, "out"), p)
					got = append(got, filepath.ToSlash(rel))
				}
				return nil
			})
			sort.Strings(got)
			sort.Strings(tt.wantFiles)
			if strings.Join(got, "\n") != strings.Join(tt.wantFiles, "\n") {
				t.Fatalf("selected\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.wantFiles, "\n  "))
			}
		})
	}
}

func mustWrite(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// TestConfidentialSpaceLabels: the images carry the launch policy the
// Confidential Space launcher reads from image labels, and the frontend's
// lets the VM's metadata choose the attester and the servers only.
func TestConfidentialSpaceLabels(t *testing.T) {
	_, _, byName := loadDockerfile(t)
	for stage, want := range map[string][]string{
		"image-api": {"PROVER_API_ATTESTER", "DATABASE_URL", "NATS_URL"},
		"worker":    {"DATABASE_URL", "NATS_URL"},
	} {
		s := byName[stage]
		if s == nil {
			t.Fatalf("no stage %s", stage)
		}
		labels := map[string]string{}
		for _, in := range s.instrs {
			if in.cmd != "LABEL" {
				continue
			}
			for _, m := range regexp.MustCompile(`"([^"]+)"="([^"]*)"`).FindAllStringSubmatch(in.args, -1) {
				labels[m[1]] = m[2]
			}
		}
		allowed := strings.Split(labels["tee.launch_policy.allow_env_override"], ",")
		for _, v := range want {
			if !slices.Contains(allowed, v) {
				t.Errorf("%s: tee.launch_policy.allow_env_override %q lacks %s", stage, allowed, v)
			}
		}
		for _, v := range allowed {
			if strings.Contains(v, "JOB_KEY") || strings.Contains(v, "FOLDER") || strings.Contains(v, "SOCKET") {
				t.Errorf("%s: the VM's metadata may override %s", stage, v)
			}
		}
		if labels["tee.launch_policy.log_redirect"] != "always" {
			t.Errorf("%s: tee.launch_policy.log_redirect = %q", stage, labels["tee.launch_policy.log_redirect"])
		}
	}
}

package deploy

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const dashboardFile = "deploy/grafana/prover-fleet.json"

// metricSourceTrees are searched for Prometheus metric definitions.
var metricSourceTrees = []string{"api", "worker"}

// metricDef is a metric defined in Go with prometheus.{Counter,Gauge,
// Histogram,Summary}Opts.
type metricDef struct {
	name   string
	kind   string // counter, gauge, histogram, summary
	labels map[string]bool
	file   string
}

// series are the names the metric is exposed under.
func (m metricDef) series() []string {
	switch m.kind {
	case "histogram":
		return []string{m.name + "_bucket", m.name + "_sum", m.name + "_count"}
	case "summary":
		return []string{m.name, m.name + "_sum", m.name + "_count"}
	}
	return []string{m.name}
}

var optsKind = map[string]string{
	"CounterOpts": "counter", "GaugeOpts": "gauge", "HistogramOpts": "histogram", "SummaryOpts": "summary",
}

// definedMetrics parses every non-test Go file under the program trees and
// returns the metrics they define, by exposed series name. Namespace,
// Subsystem and Name may be string literals or constants of the package.
func definedMetrics(t *testing.T) map[string]metricDef {
	t.Helper()
	out := map[string]metricDef{}
	for _, tree := range metricSourceTrees {
		var dirs []string
		err := filepath.WalkDir(filepath.Join(root, tree), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "testdata" || d.Name() == "node_modules" {
					return filepath.SkipDir
				}
				rel, _ := filepath.Rel(root, p)
				dirs = append(dirs, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", tree, err)
		}
		for _, dir := range dirs {
			files := goFiles(t, dir)
			consts := map[string]string{}
			for _, f := range files {
				for _, decl := range f.Decls {
					gd, ok := decl.(*ast.GenDecl)
					if !ok {
						continue
					}
					for _, spec := range gd.Specs {
						vs, ok := spec.(*ast.ValueSpec)
						if !ok {
							continue
						}
						for i, n := range vs.Names {
							if i < len(vs.Values) {
								if s, ok := stringLit(vs.Values[i]); ok {
									consts[n.Name] = s
								}
							}
						}
					}
				}
			}
			for _, f := range files {
				collectMetrics(t, dir, f, consts, out)
			}
		}
	}
	return out
}

func collectMetrics(t *testing.T, dir string, f *ast.File, consts map[string]string, out map[string]metricDef) {
	t.Helper()
	// Label names given as prometheus.Labels{...} anywhere in the file
	// (constant labels are often built once and shared).
	constLabels := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if cl, ok := n.(*ast.CompositeLit); ok && isPromType(cl.Type, "Labels") {
			for _, e := range cl.Elts {
				if kv, ok := e.(*ast.KeyValueExpr); ok {
					if k, ok := stringLit(kv.Key); ok {
						constLabels[k] = true
					}
				}
			}
		}
		return true
	})
	resolve := func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			return stringLit(e)
		case *ast.Ident:
			v, ok := consts[e.Name]
			return v, ok
		case *ast.SelectorExpr:
			v, ok := consts[e.Sel.Name]
			return v, ok
		}
		return "", false
	}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		opts, ok := call.Args[0].(*ast.CompositeLit)
		if !ok {
			return true
		}
		var kind string
		for typ, k := range optsKind {
			if isPromType(opts.Type, typ) {
				kind = k
			}
		}
		if kind == "" {
			return true
		}
		parts := map[string]string{}
		def := metricDef{kind: kind, labels: map[string]bool{}, file: dir}
		for _, e := range opts.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key := kv.Key.(*ast.Ident).Name
			switch key {
			case "Namespace", "Subsystem", "Name":
				v, ok := resolve(kv.Value)
				if !ok {
					t.Errorf("%s: metric %s %s is not a literal or a constant of the package: this test cannot read it", dir, key, exprText(kv.Value))
				}
				parts[key] = v
			case "ConstLabels":
				if cl, ok := kv.Value.(*ast.CompositeLit); ok {
					for _, e := range cl.Elts {
						if kv, ok := e.(*ast.KeyValueExpr); ok {
							if k, ok := stringLit(kv.Key); ok {
								def.labels[k] = true
							}
						}
					}
				} else {
					for k := range constLabels {
						def.labels[k] = true
					}
				}
			}
		}
		// Variable labels: the []string{...} argument of New*Vec.
		if len(call.Args) > 1 {
			if cl, ok := call.Args[1].(*ast.CompositeLit); ok {
				for _, e := range cl.Elts {
					if s, ok := stringLit(e); ok {
						def.labels[s] = true
					}
				}
			}
		}
		var name []string
		for _, k := range []string{"Namespace", "Subsystem", "Name"} {
			if parts[k] != "" {
				name = append(name, parts[k])
			}
		}
		def.name = strings.Join(name, "_")
		if def.name == "" {
			return true
		}
		for _, s := range def.series() {
			out[s] = def
		}
		return true
	})
}

func isPromType(e ast.Expr, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == "prometheus"
}

func exprText(e ast.Expr) string { return fmt.Sprintf("%T", e) }

// panel is the part of a Grafana panel this test reads.
type panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	GridPos *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) (dashboard, []panel) {
	t.Helper()
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(readFile(t, dashboardFile))))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var flat []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			flat = append(flat, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return d, flat
}

func TestDashboardShape(t *testing.T) {
	d, panels := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 30 {
		t.Errorf("dashboard uid %q title %q schemaVersion %d: want all set (schemaVersion ≥ 30)", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	for _, v := range []string{"datasource", "family"} {
		if !vars[v] {
			t.Errorf("no template variable $%s", v)
		}
	}
	ids := map[int]string{}
	for _, p := range panels {
		if other, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d is zero or also used by %q", p.Title, p.ID, other)
		}
		ids[p.ID] = p.Title
		if p.Title == "" || p.Type == "" || p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %d: needs title, type and gridPos (got %q, %q, %v)", p.ID, p.Title, p.Type, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource must be the $datasource variable", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: query refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
}

var (
	metricToken  = regexp.MustCompile(`\b(prover_[a-z0-9_]+)\b`)
	byClause     = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	matcherBlock = regexp.MustCompile(`\{([^}]*)\}`)
	matcherLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	quoted       = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
)

// Every PromQL expression names metrics the Go sources define, and only
// labels those metrics carry.
func TestDashboardMetricsExist(t *testing.T) {
	defined := definedMetrics(t)
	if len(defined) == 0 {
		t.Fatal("found no Prometheus metric definitions under api/ and worker/")
	}
	_, panels := loadDashboard(t)
	used := map[string]bool{}
	missing := map[string][]string{} // undefined series → panels using it
	for _, p := range panels {
		for _, tg := range p.Targets {
			names := metricToken.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q query %s: %q names no prover_ metric", p.Title, tg.RefID, tg.Expr)
			}
			labels := map[string]bool{"le": true}
			for _, n := range names {
				def, ok := defined[n]
				if !ok {
					missing[n] = append(missing[n], fmt.Sprintf("%q/%s", p.Title, tg.RefID))
					continue
				}
				used[def.name] = true
				for l := range def.labels {
					labels[l] = true
				}
			}
			if strings.Contains(tg.Expr, "histogram_quantile") &&
				(!strings.Contains(tg.Expr, "_bucket") || !regexp.MustCompile(`\ble\b`).MatchString(byClauses(tg.Expr))) {
				t.Errorf("panel %q query %s: histogram_quantile needs a _bucket series aggregated by le: %s", p.Title, tg.RefID, tg.Expr)
			}
			if len(names) > 0 && len(labels) > 1 {
				for _, l := range exprLabels(tg.Expr) {
					if !labels[l] {
						t.Errorf("panel %q query %s: label %q is not a label of %v (labels: %v)", p.Title, tg.RefID, l, names, sortedKeys(labels))
					}
				}
			}
		}
	}
	for _, n := range sortedKeys(missing) {
		t.Errorf("METRIC NOT DEFINED: %s is charted by %s, but no Go source under %v defines it", n, strings.Join(missing[n], ", "), metricSourceTrees)
	}
	if len(missing) > 0 {
		t.Logf("series the Go sources define: %s", strings.Join(sortedKeys(defined), ", "))
	}
	// The dashboard shows what issue 5 asks for; its metric names come from
	// the programs' metrics files.
	for _, want := range requiredMetrics {
		if !used[want] && len(missing[want]) == 0 && len(missing[want+"_bucket"]) == 0 {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// requiredMetrics are the metrics the dashboard must chart.
var requiredMetrics = []string{
	// frontend
	"prover_api_requests_total",
	"prover_api_request_duration_seconds", // handshake (hello) and submit latency by method
	"prover_api_sessions_open",
	"prover_api_enqueue_duration_seconds",
	"prover_api_enqueue_failures_total",
	// workers
	"prover_worker_jobs_total",
	"prover_worker_queue_wait_seconds",
	"prover_worker_stage_seconds",
	"prover_worker_end_to_end_seconds",
	"prover_worker_redeliveries_total",
	"prover_worker_child_max_rss_bytes",
	"prover_worker_busy_slots",
	"prover_worker_queue_pending",
	"prover_worker_queue_ack_pending",
}

func byClauses(expr string) string {
	var b strings.Builder
	for _, m := range byClause.FindAllStringSubmatch(expr, -1) {
		b.WriteString(m[1] + " ")
	}
	return b.String()
}

// exprLabels returns the label names an expression groups by or matches
// on (string values removed first, so `stage="prove"` yields stage).
func exprLabels(expr string) []string {
	e := quoted.ReplaceAllString(expr, `""`)
	seen := map[string]bool{}
	for _, m := range byClause.FindAllStringSubmatch(e, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				seen[l] = true
			}
		}
	}
	for _, m := range matcherBlock.FindAllStringSubmatch(e, -1) {
		for _, lm := range matcherLabel.FindAllStringSubmatch(m[1], -1) {
			seen[lm[1]] = true
		}
	}
	out := sortedKeys(seen)
	sort.Strings(out)
	return out
}

// Label values the dashboard matches exactly (stage="prove",
// method="openpassport_hello") are values the programs write: each appears
// as a string literal in their Go sources.
func TestDashboardLabelValues(t *testing.T) {
	literals := map[string]bool{}
	for _, tree := range append(metricSourceTrees, "shared") {
		err := filepath.WalkDir(filepath.Join(root, tree), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			rel, _ := filepath.Rel(root, p)
			for _, f := range goFiles(t, rel) {
				ast.Inspect(f, func(n ast.Node) bool {
					if v, ok := stringLit(asExpr(n)); ok {
						literals[v] = true
					}
					return true
				})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	exact := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(!=|=)\s*"([^"$]*)"`)
	_, panels := loadDashboard(t)
	checked := 0
	for _, p := range panels {
		for _, tg := range p.Targets {
			for _, block := range matcherBlock.FindAllStringSubmatch(tg.Expr, -1) {
				for _, m := range exact.FindAllStringSubmatch(block[1], -1) {
					checked++
					if !literals[m[3]] {
						t.Errorf("panel %q query %s: %s%s%q: no Go source under api/, worker/ or shared/ has the string %q", p.Title, tg.RefID, m[1], m[2], m[3], m[3])
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Error("no exact label matchers found: the regular expression above no longer reads the dashboard")
	}
}

func asExpr(n ast.Node) ast.Expr {
	if e, ok := n.(ast.Expr); ok {
		return e
	}
	return nil
}

// Latency panels show p50, p95 and p99.
func TestDashboardQuantiles(t *testing.T) {
	_, panels := loadDashboard(t)
	histograms := map[string]bool{}
	for _, p := range panels {
		for _, tg := range p.Targets {
			if strings.Contains(tg.Expr, "histogram_quantile") {
				for _, n := range metricToken.FindAllString(tg.Expr, -1) {
					histograms[p.Title+"\x00"+strings.TrimSuffix(n, "_bucket")] = true
				}
			}
		}
	}
	if len(histograms) == 0 {
		t.Fatal("no histogram_quantile queries")
	}
	for key := range histograms {
		title, metric, _ := strings.Cut(key, "\x00")
		for _, q := range []string{"0.5", "0.95", "0.99"} {
			found := false
			for _, p := range panels {
				if p.Title != title {
					continue
				}
				for _, tg := range p.Targets {
					if strings.Contains(tg.Expr, "histogram_quantile("+q+",") && strings.Contains(tg.Expr, metric+"_bucket") {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("panel %q: no %s quantile of %s", title, q, metric)
			}
		}
	}
}

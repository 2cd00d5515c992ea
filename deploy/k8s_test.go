package deploy

import (
	"fmt"
	"go/ast"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
)

const namespace = "prover-fleet"

// manifests is every object in deploy/k8s, by kind and name.
type manifests struct {
	files   []string                  // base names of the object files kustomize applies
	byKind  map[string]map[string]any // kind → name → object
	kustom  map[string]any
	objects []map[string]any
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, "deploy/k8s/*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests in deploy/k8s (%v)", err)
	}
	m := manifests{byKind: map[string]map[string]any{}}
	for _, p := range paths {
		base := filepath.Base(p)
		docs := yamlDocs(t, "deploy/k8s/"+base)
		if base == "kustomization.yaml" {
			if len(docs) != 1 || str(docs[0], "kind") != "Kustomization" {
				t.Fatalf("kustomization.yaml: want one Kustomization document")
			}
			m.kustom = docs[0]
			continue
		}
		// *.example.yaml (the Secret placeholder) is for reading, never
		// applied by kustomize.
		if !strings.HasSuffix(base, ".example.yaml") {
			m.files = append(m.files, base)
		}
		if len(docs) == 0 {
			t.Errorf("%s: no documents", base)
		}
		for i, d := range docs {
			where := fmt.Sprintf("%s document %d", base, i)
			kind, name := str(d, "kind"), str(d, "metadata", "name")
			if str(d, "apiVersion") == "" || kind == "" || name == "" {
				t.Errorf("%s: apiVersion, kind and metadata.name are required (got %q, %q, %q)", where, str(d, "apiVersion"), kind, name)
				continue
			}
			if kind != "Namespace" && str(d, "metadata", "namespace") != namespace {
				t.Errorf("%s: %s/%s is in namespace %q, want %q", where, kind, name, str(d, "metadata", "namespace"), namespace)
			}
			if m.byKind[kind] == nil {
				m.byKind[kind] = map[string]any{}
			}
			if _, dup := m.byKind[kind][name]; dup {
				t.Errorf("%s: a second %s named %s", where, kind, name)
			}
			m.byKind[kind][name] = d
			m.objects = append(m.objects, d)
		}
	}
	return m
}

func TestManifestsParse(t *testing.T) {
	m := loadManifests(t)
	wantAPI := map[string]string{
		"Namespace": "v1", "ConfigMap": "v1", "Secret": "v1", "Service": "v1",
		"Deployment": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1", "ScaledObject": "keda.sh/v1alpha1",
	}
	for _, o := range m.objects {
		kind := str(o, "kind")
		want, known := wantAPI[kind]
		if !known {
			t.Errorf("%s/%s: unexpected kind (this test knows %v)", kind, str(o, "metadata", "name"), sortedKeys(wantAPI))
			continue
		}
		if got := str(o, "apiVersion"); got != want {
			t.Errorf("%s/%s: apiVersion %q, want %q", kind, str(o, "metadata", "name"), got, want)
		}
	}
	if m.byKind["Namespace"][namespace] == nil {
		t.Errorf("no Namespace %s", namespace)
	}
	// kustomization.yaml lists exactly the object files.
	if m.kustom == nil {
		t.Fatal("deploy/k8s/kustomization.yaml is missing")
	}
	listed := map[string]bool{}
	for _, r := range list(m.kustom, "resources") {
		s, _ := r.(string)
		listed[s] = true
	}
	for _, f := range m.files {
		if !listed[f] {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
		delete(listed, f)
	}
	for f := range listed {
		t.Errorf("kustomization.yaml lists %s, which does not exist", f)
	}
}

// Secrets must be placeholders: nothing that could be a working key.
func TestSecretIsPlaceholder(t *testing.T) {
	m := loadManifests(t)
	if len(m.byKind["Secret"]) == 0 {
		t.Fatal("no Secret placeholder")
	}
	hexKey := regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	for name, s := range m.byKind["Secret"] {
		if len(obj(s, "data")) > 0 {
			t.Errorf("Secret %s has base64 data: only readable placeholders (stringData) belong in the repository", name)
		}
		for k, v := range obj(s, "stringData") {
			val, _ := v.(string)
			if hexKey.MatchString(strings.TrimSpace(val)) {
				t.Errorf("Secret %s key %s holds a usable fleet key: placeholders only", name, k)
			}
			if !strings.Contains(val, "REPLACE") {
				t.Errorf("Secret %s key %s = %q does not say REPLACE: placeholders only", name, k, val)
			}
		}
	}
}

// container is the one container of a Deployment or Job.
func container(t *testing.T, o any) map[string]any {
	t.Helper()
	cs := list(o, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("%s/%s: want exactly one container, got %d", str(o, "kind"), str(o, "metadata", "name"), len(cs))
	}
	c, _ := cs[0].(map[string]any)
	return c
}

// programOf maps an image to the program it runs.
func programOf(image string) (program, family.Family, bool) {
	repo, _, _ := strings.Cut(image, ":")
	switch {
	case repo == "prover-fleet/api":
		return progAPI, "", true
	case strings.HasPrefix(repo, "prover-fleet/worker-"):
		f, err := family.Parse(strings.TrimPrefix(repo, "prover-fleet/worker-"))
		return progWorker, f, err == nil
	}
	return "", "", false
}

func TestDeployments(t *testing.T) {
	m := loadManifests(t)
	cm := m.byKind["ConfigMap"]["prover-fleet-config"]
	if cm == nil {
		t.Fatal("no ConfigMap prover-fleet-config")
	}
	seen := map[family.Family]string{}
	apiSeen := false
	for name, d := range m.byKind["Deployment"] {
		t.Run(name, func(t *testing.T) {
			c := container(t, d)
			prog, fam, ok := programOf(str(c, "image"))
			if !ok {
				t.Fatalf("image %q is none of prover-fleet/api, prover-fleet/worker-<family>", str(c, "image"))
			}
			if prog == progAPI {
				apiSeen = true
				checkRelayPort(t, m, c)
			} else {
				if other, dup := seen[fam]; dup {
					t.Errorf("family %s has two Deployments: %s and %s", fam, other, name)
				}
				seen[fam] = name
				if name != "worker-"+string(fam) {
					t.Errorf("Deployment of family %s is named %s, want worker-%s", fam, name, fam)
				}
			}
			checkPodTemplate(t, m, d, c, prog)
			if prog == progWorker {
				checkWorkerSizing(t, d, c)
			}
		})
	}
	for _, f := range family.All() {
		if seen[f] == "" {
			t.Errorf("family %s has no Deployment (want worker-%s running prover-fleet/worker-%s)", f, f, f)
		}
	}
	if !apiSeen {
		t.Error("no Deployment runs prover-fleet/api")
	}
	// Every ConfigMap key is read by a program that loads it.
	api, worker := settingsOf(t, progAPI), settingsOf(t, progWorker)
	for k := range obj(cm, "data") {
		if !api.env[k] && !worker.env[k] {
			t.Errorf("ConfigMap key %s is read by neither prover-api nor prover-worker", k)
		}
	}
}

// checkRelayPort checks that the frontend's status relay listens on a
// container port named status, and that its Service exposes it.
func checkRelayPort(t *testing.T, m manifests, c map[string]any) {
	t.Helper()
	port := 0
	for _, p := range list(c, "ports") {
		if str(p, "name") == "status" {
			f, _ := get(p, "containerPort").(float64)
			port = int(f)
		}
	}
	if port == 0 {
		t.Fatal("prover-api has no container port named status (the Socket.IO relay)")
	}
	addr := envOf(c)["PROVER_API_STATUS_ADDRESS"]
	if _, p, err := net.SplitHostPort(addr); err != nil || p != strconv.Itoa(port) {
		t.Errorf("PROVER_API_STATUS_ADDRESS=%q does not listen on the status port %d", addr, port)
	}
	exposed := false
	for _, svc := range m.byKind["Service"] {
		for _, p := range list(svc, "spec", "ports") {
			if str(p, "targetPort") == "status" {
				exposed = true
			}
		}
	}
	if !exposed {
		t.Error("no Service exposes the status relay's port")
	}
}

// envOf returns a container's literal env values by name.
func envOf(c map[string]any) map[string]string {
	out := map[string]string{}
	for _, e := range list(c, "env") {
		out[str(e, "name")] = str(e, "value")
	}
	return out
}

func checkPodTemplate(t *testing.T, m manifests, d any, c map[string]any, prog program) {
	t.Helper()
	tmpl := obj(d, "spec", "template")
	// Selector matches the template.
	for k, v := range obj(d, "spec", "selector", "matchLabels") {
		if get(tmpl, "metadata", "labels", k) != v {
			t.Errorf("selector %s=%v does not match the pod template's labels", k, v)
		}
	}
	if get(tmpl, "spec", "securityContext", "runAsNonRoot") != true {
		t.Error("pod securityContext.runAsNonRoot must be true")
	}
	// The admin port: named, probed, scraped, and the one the program listens on.
	adminPort := 0
	for _, p := range list(c, "ports") {
		if str(p, "name") == "admin" {
			f, _ := get(p, "containerPort").(float64)
			adminPort = int(f)
		}
	}
	if adminPort == 0 {
		t.Fatal("container has no port named admin")
	}
	for probe, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := str(c, probe, "httpGet", "path"); got != want {
			t.Errorf("%s path %q, want %q", probe, got, want)
		}
		switch port := get(c, probe, "httpGet", "port").(type) {
		case string:
			if port != "admin" {
				t.Errorf("%s targets port %q, want the admin port", probe, port)
			}
		case float64:
			if int(port) != adminPort {
				t.Errorf("%s targets port %v, want the admin port %d", probe, port, adminPort)
			}
		default:
			t.Errorf("%s has no httpGet port", probe)
		}
	}
	ann := obj(tmpl, "metadata", "annotations")
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" ||
		ann["prometheus.io/port"] != strconv.Itoa(adminPort) {
		t.Errorf("scrape annotations %v, want scrape=true, path=/metrics, port=%d", ann, adminPort)
	}
	env := envOf(c)
	adminVar := map[program]string{progAPI: "PROVER_API_ADMIN_ADDRESS", progWorker: workerEnvPrefix + "ADMIN_ADDRESS"}[prog]
	if addr, ok := env[adminVar]; !ok {
		t.Errorf("%s is not set: the program's default may not listen on all interfaces", adminVar)
	} else if _, port, err := net.SplitHostPort(addr); err != nil || port != strconv.Itoa(adminPort) {
		t.Errorf("%s=%q does not listen on the admin port %d", adminVar, addr, adminPort)
	}
	// Variables are ones the program reads.
	checkEnv(t, "container env", prog, sortedKeys(env))
	// References resolve.
	for _, e := range list(c, "env") {
		if ref := obj(e, "valueFrom", "secretKeyRef"); ref != nil {
			s := m.byKind["Secret"][str(ref, "name")]
			if s == nil || get(s, "stringData", str(ref, "key")) == nil {
				t.Errorf("env %s: Secret %s has no key %s", str(e, "name"), str(ref, "name"), str(ref, "key"))
			}
		}
	}
	for _, ef := range list(c, "envFrom") {
		if n := str(ef, "configMapRef", "name"); n != "" && m.byKind["ConfigMap"][n] == nil {
			t.Errorf("envFrom: no ConfigMap %s", n)
		}
	}
	// The job key file is a mounted Secret item.
	keyVar := map[program]string{progAPI: "PROVER_API_JOB_KEY_FILE", progWorker: workerEnvPrefix + "JOB_KEY_FILE"}[prog]
	keyFile := env[keyVar]
	if keyFile == "" {
		t.Errorf("%s is not set", keyVar)
	}
	found := false
	for _, vm := range list(c, "volumeMounts") {
		for _, v := range list(tmpl, "spec", "volumes") {
			if str(v, "name") != str(vm, "name") || obj(v, "secret") == nil {
				continue
			}
			secret := m.byKind["Secret"][str(v, "secret", "secretName")]
			for _, it := range list(v, "secret", "items") {
				if path.Join(str(vm, "mountPath"), str(it, "path")) == keyFile {
					found = secret != nil && get(secret, "stringData", str(it, "key")) != nil
				}
			}
		}
	}
	if keyFile != "" && !found {
		t.Errorf("%s=%s is not a key of a mounted Secret", keyVar, keyFile)
	}
}

func checkWorkerSizing(t *testing.T, d any, c map[string]any) {
	t.Helper()
	for _, kind := range []string{"requests", "limits"} {
		for _, r := range []string{"cpu", "memory"} {
			if get(c, "resources", kind, r) == nil {
				t.Errorf("resources.%s.%s is not set: a prover must be sized", kind, r)
			}
		}
	}
	req, err1 := quantity(get(c, "resources", "requests", "memory"))
	lim, err2 := quantity(get(c, "resources", "limits", "memory"))
	if err1 != nil || err2 != nil {
		t.Errorf("memory quantities: %v %v", err1, err2)
	} else if lim < req {
		t.Errorf("memory limit %v below request %v", lim, req)
	}
	graceText := envOf(c)[workerEnvPrefix+"SHUTDOWN_GRACE"]
	grace, err := time.ParseDuration(graceText)
	if err != nil {
		t.Fatalf("%sSHUTDOWN_GRACE=%q: %v (set it, so terminationGracePeriodSeconds can be checked against it)", workerEnvPrefix, graceText, err)
	}
	term, _ := get(d, "spec", "template", "spec", "terminationGracePeriodSeconds").(float64)
	if min := grace + 30*time.Second; time.Duration(term)*time.Second < min {
		t.Errorf("terminationGracePeriodSeconds %v must exceed the shutdown grace %s by 30s or more (≥ %v)", term, grace, min.Seconds())
	}
}

// quantity parses the memory quantities used here (Ki, Mi, Gi, Ti or a
// plain number of bytes).
func quantity(v any) (int64, error) {
	s := fmt.Sprint(v)
	for suffix, mult := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			return int64(f * float64(mult)), err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

func TestScaledObjects(t *testing.T) {
	m := loadManifests(t)
	natsURL, err := url.Parse(str(m.byKind["ConfigMap"]["prover-fleet-config"], "data", "NATS_URL"))
	if err != nil {
		t.Fatalf("ConfigMap NATS_URL: %v", err)
	}
	scaled := map[family.Family]bool{}
	for name, so := range m.byKind["ScaledObject"] {
		target := str(so, "spec", "scaleTargetRef", "name")
		d := m.byKind["Deployment"][target]
		if d == nil {
			t.Errorf("ScaledObject %s scales Deployment %q, which does not exist", name, target)
			continue
		}
		_, fam, ok := programOf(str(container(t, d), "image"))
		if !ok || fam == "" {
			t.Errorf("ScaledObject %s scales %s, which is not a worker Deployment", name, target)
			continue
		}
		if min, _ := get(so, "spec", "minReplicaCount").(float64); min < 1 {
			t.Errorf("ScaledObject %s: minReplicaCount %v: at 0 KEDA stops the last pod while a job is still ack-pending", name, min)
		}
		var js []any
		for _, tr := range list(so, "spec", "triggers") {
			if str(tr, "type") == "nats-jetstream" {
				js = append(js, tr)
			}
		}
		if len(js) != 1 {
			t.Errorf("ScaledObject %s: want one nats-jetstream trigger, got %d", name, len(js))
			continue
		}
		md := obj(js[0], "metadata")
		want := map[string]string{
			"stream":   jobqueue.StreamName,
			"consumer": jobqueue.ConsumerName(fam),
			"account":  "$G",
		}
		for k, v := range want {
			if md[k] != v {
				t.Errorf("ScaledObject %s (family %s): metadata.%s = %v, want %q", name, fam, k, md[k], v)
			}
		}
		host, port, err := net.SplitHostPort(fmt.Sprint(md["natsServerMonitoringEndpoint"]))
		if err != nil || port != "8222" {
			t.Errorf("ScaledObject %s: natsServerMonitoringEndpoint %v, want host:8222", name, md["natsServerMonitoringEndpoint"])
		} else if host != natsURL.Hostname() {
			t.Errorf("ScaledObject %s: monitors %s but the programs use NATS at %s", name, host, natsURL.Hostname())
		}
		if lag, err := strconv.Atoi(fmt.Sprint(md["lagThreshold"])); err != nil || lag < 1 {
			t.Errorf("ScaledObject %s: lagThreshold %v must be a positive integer string", name, md["lagThreshold"])
		}
		scaled[fam] = true
	}
	for _, f := range family.All() {
		if !scaled[f] {
			t.Errorf("family %s has no ScaledObject on consumer %q", f, jobqueue.ConsumerName(f))
		}
	}
}

func TestMigrateJob(t *testing.T) {
	m := loadManifests(t)
	if len(m.byKind["Job"]) != 1 {
		t.Fatalf("want one Job (migrate), got %d", len(m.byKind["Job"]))
	}
	for name, j := range m.byKind["Job"] {
		c := container(t, j)
		cmd := fmt.Sprint(list(c, "command"), list(c, "args"))
		if !strings.Contains(cmd, "proverctl") || !strings.Contains(cmd, "migrate") {
			t.Errorf("Job %s runs %s, want proverctl migrate", name, cmd)
		}
		if p, _, _ := programOf(str(c, "image")); p != progAPI {
			t.Errorf("Job %s: image %s does not carry proverctl (prover-fleet/api does)", name, str(c, "image"))
		}
		if str(j, "spec", "template", "spec", "restartPolicy") == "Always" {
			t.Errorf("Job %s: restartPolicy Always is invalid for a Job", name)
		}
		vars := sortedKeys(envOf(c))
		cm := m.byKind["ConfigMap"]["prover-fleet-config"]
		for _, k := range []string{"DATABASE_URL", "NATS_URL"} {
			if _, ok := envOf(c)[k]; !ok && get(cm, "data", k) == nil {
				t.Errorf("Job %s: %s is neither in its env nor in the ConfigMap", name, k)
			}
		}
		checkEnv(t, "Job "+name, progProverctl, append(vars, "NATS_URL"))
	}
}

func TestCleanupCronJob(t *testing.T) {
	m := loadManifests(t)
	if len(m.byKind["CronJob"]) != 1 {
		t.Fatalf("want one CronJob (retention cleanup), got %d", len(m.byKind["CronJob"]))
	}
	for name, cj := range m.byKind["CronJob"] {
		if fields := strings.Fields(str(cj, "spec", "schedule")); len(fields) != 5 {
			t.Errorf("CronJob %s: schedule %q is not a 5-field cron expression", name, str(cj, "spec", "schedule"))
		}
		if str(cj, "spec", "concurrencyPolicy") != "Forbid" {
			t.Errorf("CronJob %s: concurrencyPolicy must be Forbid (two cleanups would fight over the same rows)", name)
		}
		cs := list(cj, "spec", "jobTemplate", "spec", "template", "spec", "containers")
		if len(cs) != 1 {
			t.Fatalf("CronJob %s: want one container", name)
		}
		c, _ := cs[0].(map[string]any)
		cmd := fmt.Sprint(list(c, "command"), list(c, "args"))
		if !strings.Contains(cmd, "proverctl") || !strings.Contains(cmd, "cleanup") {
			t.Errorf("CronJob %s runs %s, want proverctl cleanup", name, cmd)
		}
		if p, _, _ := programOf(str(c, "image")); p != progAPI {
			t.Errorf("CronJob %s: image %s does not carry proverctl", name, str(c, "image"))
		}
		env := envOf(c)
		if _, err := time.ParseDuration(env["PROVERCTL_RETENTION"]); err != nil {
			t.Errorf("CronJob %s: PROVERCTL_RETENTION=%q: %v", name, env["PROVERCTL_RETENTION"], err)
		}
		checkEnv(t, "CronJob "+name, progProverctl, sortedKeys(env))
		for _, e := range list(c, "env") {
			if ref := obj(e, "valueFrom", "secretKeyRef"); ref != nil {
				if s := m.byKind["Secret"][str(ref, "name")]; s == nil || get(s, "stringData", str(ref, "key")) == nil {
					t.Errorf("CronJob %s env %s: Secret %s has no key %s", name, str(e, "name"), str(ref, "name"), str(ref, "key"))
				}
			}
		}
	}
}

// The paths the probes, healthchecks and scrape annotations use are routes
// both programs register: they serve internal/admin's handler.
func TestAdminPathsServed(t *testing.T) {
	for _, dir := range []string{"internal/admin"} {
		routes := map[string]bool{}
		for _, f := range goFiles(t, dir) {
			ast.Inspect(f, func(n ast.Node) bool {
				if e, ok := n.(ast.Expr); ok {
					if v, ok := stringLit(e); ok {
						routes[strings.TrimPrefix(v, "GET ")] = true
					}
				}
				return true
			})
		}
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			if !routes[p] {
				t.Errorf("%s registers no route %s (probes and scrapes use it)", dir, p)
			}
		}
	}
	for _, dir := range []string{"api", "worker/service"} {
		uses := false
		for _, f := range goFiles(t, dir) {
			for _, imp := range f.Imports {
				uses = uses || imp.Path.Value == `"github.com/openpassport/prover-fleet/internal/admin"`
			}
		}
		if !uses {
			t.Errorf("%s does not serve internal/admin's handler", dir)
		}
	}
}

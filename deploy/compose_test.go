package deploy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/openpassport/prover-fleet/shared/family"
)

// validProofTypes are the values of Dockerfile.tee's PROOFTYPE build arg.
var validProofTypes = map[string]bool{"register": true, "dsc": true, "disclose": true, "api": true}

func loadCompose(t *testing.T) map[string]any {
	t.Helper()
	var c map[string]any
	// yaml.Unmarshal resolves the anchors and merge keys (<<) the file uses.
	if err := yaml.Unmarshal(readFile(t, "docker-compose.yml"), &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if len(obj(c, "services")) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	return c
}

// composeEnv returns a service's environment as a map (map or list form).
func composeEnv(svc any) map[string]string {
	out := map[string]string{}
	switch e := get(svc, "environment").(type) {
	case map[string]any:
		for k, v := range e {
			out[k] = fmt.Sprint(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(fmt.Sprint(kv), "=")
			out[k] = v
		}
	}
	return out
}

// stringsOf flattens a command/entrypoint given as a list or a string.
func stringsOf(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		var out []string
		for _, s := range v {
			out = append(out, fmt.Sprint(s))
		}
		return out
	}
	return nil
}

func isOneShot(svc any) bool { return str(svc, "restart") == "no" }

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	services := obj(c, "services")
	for _, name := range []string{"postgres", "nats", "migrate", "api"} {
		if services[name] == nil {
			t.Errorf("no %s service", name)
		}
	}
	if img := str(services["postgres"], "image"); !strings.HasPrefix(img, "postgres:15") {
		t.Errorf("postgres image %q, want postgres:15", img)
	}
	if hc := fmt.Sprint(get(services["postgres"], "healthcheck", "test")); !strings.Contains(hc, "pg_isready") {
		t.Errorf("postgres healthcheck %s does not use pg_isready", hc)
	}
	natsCmd := strings.Join(stringsOf(get(services["nats"], "command")), " ")
	if !strings.HasPrefix(str(services["nats"], "image"), "nats:2.") ||
		!strings.Contains(natsCmd, "-js") || !strings.Contains(natsCmd, "-sd /data") || !strings.Contains(natsCmd, "-m 8222") {
		t.Errorf("nats: image %q command %q, want nats:2.x with -js -sd /data -m 8222", str(services["nats"], "image"), natsCmd)
	}
	if hc := fmt.Sprint(get(services["nats"], "healthcheck", "test")); !strings.Contains(hc, ":8222/healthz") {
		t.Errorf("nats healthcheck %s does not probe :8222/healthz", hc)
	}
	mig := strings.Join(append(stringsOf(get(services["migrate"], "entrypoint")), stringsOf(get(services["migrate"], "command"))...), " ")
	if !strings.Contains(mig, "proverctl") || !strings.HasSuffix(mig, "migrate") || !isOneShot(services["migrate"]) {
		t.Errorf("migrate runs %q (restart %q), want a one-shot proverctl migrate", mig, str(services["migrate"], "restart"))
	}
	for _, f := range family.All() {
		name := "worker-" + string(f)
		svc := services[name]
		if svc == nil {
			t.Errorf("family %s has no service %s", f, name)
			continue
		}
		if pt := str(svc, "build", "args", "PROOFTYPE"); pt != string(f) {
			t.Errorf("%s builds PROOFTYPE=%q, want %q", name, pt, f)
		}
		// --scale needs replicas that do not collide.
		if get(svc, "container_name") != nil || get(svc, "ports") != nil {
			t.Errorf("%s sets container_name or host ports: `docker compose up --scale %s=3` would fail", name, name)
		}
		grace, err := time.ParseDuration(composeEnv(svc)[workerEnvPrefix+"SHUTDOWN_GRACE"])
		if err != nil {
			t.Errorf("%s: %sSHUTDOWN_GRACE: %v", name, workerEnvPrefix, err)
		} else if stop, err := time.ParseDuration(str(svc, "stop_grace_period")); err != nil || stop <= grace {
			t.Errorf("%s: stop_grace_period %q must exceed the worker's shutdown grace %s", name, str(svc, "stop_grace_period"), grace)
		}
	}
	if pt := str(services["api"], "build", "args", "PROOFTYPE"); pt != "api" {
		t.Errorf("api builds PROOFTYPE=%q, want api", pt)
	}
}

func TestComposeBuildsHealthAndDependencies(t *testing.T) {
	c := loadCompose(t)
	services := obj(c, "services")
	volumes := obj(c, "volumes")
	for name, svc := range services {
		t.Run(name, func(t *testing.T) {
			if b := get(svc, "build"); b != nil {
				if df := str(b, "dockerfile"); df != "Dockerfile.tee" {
					t.Errorf("builds with %q, want Dockerfile.tee", df)
				}
				if ctx := str(b, "context"); ctx != "." {
					t.Errorf("build context %q, want the repository root", ctx)
				}
				if pt := str(b, "args", "PROOFTYPE"); !validProofTypes[pt] {
					t.Errorf("PROOFTYPE %q is not one of register, dsc, disclose, api", pt)
				}
			}
			hc := get(svc, "healthcheck")
			disabled := get(hc, "disable") == true
			if isOneShot(svc) {
				if !disabled {
					t.Errorf("one-shot service: disable its healthcheck, it is waited on with service_completed_successfully")
				}
			} else if disabled || len(stringsOf(get(hc, "test"))) == 0 {
				t.Errorf("long-running service without a healthcheck")
			}
			for dep, cond := range obj(svc, "depends_on") {
				target := services[dep]
				if target == nil {
					t.Errorf("depends on %s, which does not exist", dep)
					continue
				}
				switch condition := str(cond, "condition"); condition {
				case "service_healthy":
					if get(target, "healthcheck", "test") == nil {
						t.Errorf("waits for %s to be healthy, but it has no healthcheck", dep)
					}
				case "service_completed_successfully":
					if !isOneShot(target) {
						t.Errorf("waits for %s to complete, but it restarts", dep)
					}
				default:
					t.Errorf("depends on %s with condition %q, want service_healthy or service_completed_successfully", dep, condition)
				}
			}
			for _, v := range list(svc, "volumes") {
				var src string
				switch v := v.(type) {
				case string:
					src, _, _ = strings.Cut(v, ":")
				case map[string]any:
					if str(v, "type") != "volume" {
						continue
					}
					src = str(v, "source")
				}
				if src != "" && !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
					if _, ok := volumes[src]; !ok {
						t.Errorf("mounts volume %s, which is not declared", src)
					}
				}
			}
		})
	}
}

// The programs read every variable the compose file sets for them, and the
// healthchecks probe the admin port the programs listen on.
func TestComposeEnvironment(t *testing.T) {
	c := loadCompose(t)
	services := obj(c, "services")
	for name, svc := range services {
		pt := str(svc, "build", "args", "PROOFTYPE")
		var prog program
		entry := strings.Join(stringsOf(get(svc, "entrypoint")), " ")
		switch {
		case strings.Contains(entry, "proverctl"):
			prog = progProverctl
		case entry != "":
			continue // a shell one-shot (fleet key)
		case pt == "api":
			prog = progAPI
		case pt != "":
			prog = progWorker
		default:
			continue // postgres, nats
		}
		env := composeEnv(svc)
		checkEnv(t, "service "+name, prog, sortedKeys(env))
		if prog == progProverctl {
			continue
		}
		adminVar := map[program]string{progAPI: "PROVER_API_ADMIN_ADDRESS", progWorker: workerEnvPrefix + "ADMIN_ADDRESS"}[prog]
		_, port, _ := strings.Cut(env[adminVar], ":")
		hc := stringsOf(get(svc, "healthcheck", "test"))
		if port == "" || len(hc) == 0 || hc[len(hc)-1] != port {
			t.Errorf("service %s: healthcheck %v does not probe the admin port of %s=%q", name, hc, adminVar, env[adminVar])
		}
	}
}

package config_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/worker/internal/config"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

var required = []string{"--family", "register", "-c", "/c", "-k", "/k", "-d", "postgres://db/x", "--job-key-file", "/key"}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c config.Config)
	}{
		{"defaults", required, nil, func(t *testing.T, c config.Config) {
			s := c.Service
			if s.Family != family.Register || s.Concurrency != 1 || s.CircuitDir != "/c" || s.ZkeyDir != "/k" ||
				s.Prover != "rapidsnark" || s.ProverMode != "command" || s.Verifier != "native" ||
				s.ProveTimeout != 30*time.Minute || s.ShutdownGrace != 30*time.Second || s.Heartbeat != 0 ||
				s.Stream != "PROOF_JOBS" || s.KeyCacheBytes != 4096<<20 || !s.NativeTables || s.NoAffinity ||
				s.AffinityYield != 250*time.Millisecond || c.NATSURL != "nats://127.0.0.1:4222" || c.AdminAddress != "127.0.0.1:9090" ||
				c.LogLevel != slog.LevelInfo || c.LogFormat != "json" || c.JobKeyFile != "/key" {
				t.Fatalf("%+v", c)
			}
		}},
		{"flags", append([]string{"--concurrency", "4", "-r", "snarkjs groth16 prove", "--prover-mode", "native",
			"--prove-timeout", "90s", "--shutdown-grace", "0", "--log-level", "debug", "--log-format", "text",
			"--child-env", "A=1", "--child-env", "B=2", "--worker-id", "w1", "--key-cache-mib", "300", "--native-tables=false",
			"--affinity=false", "--affinity-yield", "0", "-z", "/m.json"}, required...), nil, func(t *testing.T, c config.Config) {
			s := c.Service
			if s.KeyCacheBytes != 300<<20 || s.NativeTables || !s.NoAffinity || s.AffinityYield != -1 || c.ZkeyMapFile != "/m.json" ||
				s.Concurrency != 4 || s.Prover != "snarkjs groth16 prove" || s.ProverMode != "native" ||
				s.ProveTimeout != 90*time.Second || s.ShutdownGrace != -1 || c.LogLevel != slog.LevelDebug ||
				c.LogFormat != "text" || strings.Join(s.ChildEnv, ",") != "A=1,B=2" || s.WorkerID != "w1" {
				t.Fatalf("%+v", c)
			}
		}},
		{"environment", nil, map[string]string{
			"PROVER_WORKER_FAMILY": "dsc", "PROVER_WORKER_CIRCUIT_FOLDER": "/ec", "PROVER_WORKER_ZKEY_FOLDER": "/ek",
			"DATABASE_URL": "postgres://fallback/db", "PROVER_WORKER_JOB_KEY_FILE": "/ekey",
			"PROVER_WORKER_CONCURRENCY": "3", "NATS_URL": "nats://n:4222", "PROVER_WORKER_HEARTBEAT": "5s",
			"PROVER_WORKER_ADMIN_ADDRESS": "", "PROVER_WORKER_KEY_CACHE_MIB": "512", "PROVER_WORKER_CIRCUIT_ZKEY_MAP": "/em.json",
			"PROVER_WORKER_AFFINITY_YIELD": "1s",
		}, func(t *testing.T, c config.Config) {
			s := c.Service
			if s.KeyCacheBytes != 512<<20 || s.AffinityYield != time.Second || c.ZkeyMapFile != "/em.json" || s.Family != family.DSC ||
				s.CircuitDir != "/ec" || s.ZkeyDir != "/ek" || c.DatabaseURL != "postgres://fallback/db" ||
				c.JobKeyFile != "/ekey" || s.Concurrency != 3 || c.NATSURL != "nats://n:4222" || s.Heartbeat != 5*time.Second ||
				c.AdminAddress != "" {
				t.Fatalf("%+v", c)
			}
		}},
		{"flag beats environment, own variable beats fallback", append([]string{"--concurrency", "8"}, required...), map[string]string{
			"PROVER_WORKER_CONCURRENCY": "3", "DATABASE_URL": "postgres://fallback/db",
			"PROVER_WORKER_NATS_URL": "nats://own:4222", "NATS_URL": "nats://fallback:4222",
		}, func(t *testing.T, c config.Config) {
			if c.Service.Concurrency != 8 || c.DatabaseURL != "postgres://db/x" || c.NATSURL != "nats://own:4222" {
				t.Fatalf("%+v", c)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse(tc.args, env(tc.env), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no family", []string{"-c", "/c"}, nil, "--family is required: register, dsc or disclose"},
		{"unknown family", []string{"--family", "kyc"}, nil, "--family is required: register, dsc or disclose"},
		{"missing", []string{"--family", "dsc", "-c", "/c"}, nil, "missing required settings: --database-url, --job-key-file, --zkey-folder"},
		{"bad env", required, map[string]string{"PROVER_WORKER_CONCURRENCY": "many"}, `PROVER_WORKER_CONCURRENCY: invalid argument "many"`},
		{"bad level", append([]string{"--log-level", "loud"}, required...), nil, `--log-level must be debug, info, warn or error, got "loud"`},
		{"bad format", append([]string{"--log-format", "xml"}, required...), nil, `--log-format must be json or text, got "xml"`},
		{"stray argument", append([]string{"extra"}, required...), nil, `unexpected arguments: ["extra"]`},
		{"unknown flag", []string{"--colour"}, nil, "unknown flag: --colour"},
		{"no key cache", append([]string{"--key-cache-mib", "0"}, required...), nil, "--key-cache-mib must be between 1 and 1073741824, got 0"},
		{"negative yield", append([]string{"--affinity-yield", "-1s"}, required...), nil, "--affinity-yield must not be negative, got -1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse(tc.args, env(tc.env), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// Every flag has its variable, and the help names them.
func TestHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	_, err := config.Parse([]string{"--help"}, env(nil), &out)
	if !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, flag := range []string{"family", "concurrency", "circuit-folder", "zkey-folder", "prover", "prover-mode", "key-cache-mib",
		"native-tables", "affinity", "affinity-yield",
		"verifier", "nats-url", "database-url", "work-dir", "witness-timeout", "prove-timeout", "verify-timeout",
		"shutdown-grace", "heartbeat", "job-key-file", "admin-address", "log-level", "log-format", "worker-id", "stream"} {
		if !strings.Contains(out.String(), "--"+flag+" ") && !strings.Contains(out.String(), "--"+flag+"[") {
			t.Errorf("help lacks --%s", flag)
		}
	}
	if got := config.EnvName("circuit-folder"); got != "PROVER_WORKER_CIRCUIT_FOLDER" {
		t.Fatalf("EnvName = %s", got)
	}
}

package config

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/openpassport/prover-fleet/shared/family"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

var required = []string{"-d", "postgres://db", "--job-key-file", "/k"}

func TestParse(t *testing.T) {
	t.Parallel()
	t.Run("defaults", func(t *testing.T) {
		c, err := Parse(required, env(nil), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		want := Config{
			ServerAddress: "0.0.0.0:8888", DatabaseURL: "postgres://db", CircuitFolder: "circuits/build", ZkeyFolder: "zkeys",
			NATSURL: "nats://127.0.0.1:4222", Families: family.All(), Attester: "nsm", SessionTTL: 120 * time.Second,
			MaxSessions: 10000, AdminAddress: "127.0.0.1:9090", JobKeyFile: "/k", LogLevel: slog.LevelInfo, LogFormat: "json",
		}
		if !equal(c, want) {
			t.Fatalf("got %+v\nwant %+v", c, want)
		}
	})
	t.Run("short flags of the seed", func(t *testing.T) {
		c, err := Parse([]string{"-s", ":1", "-d", "db", "-c", "circ", "-k", "zk", "--job-key-file", "k"}, env(nil), &bytes.Buffer{})
		if err != nil || c.ServerAddress != ":1" || c.DatabaseURL != "db" || c.CircuitFolder != "circ" || c.ZkeyFolder != "zk" {
			t.Fatalf("%+v, %v", c, err)
		}
	})
	t.Run("environment, overridden by flags", func(t *testing.T) {
		e := env(map[string]string{
			"DATABASE_URL": "postgres://env", "PROVER_API_JOB_KEY_FILE": "/env/key", "NATS_URL": "nats://env:4222",
			"PROVER_API_FAMILIES": "disclose,register", "PROVER_API_SESSION_TTL": "30s", "PROVER_API_MAX_SESSIONS": "7",
			"PROVER_API_ATTESTER": "dev", "PROVER_API_DEV_ATTEST_DIR": "/dev-root", "PROVER_API_LOG_LEVEL": "debug",
			"PROVER_API_LOG_FORMAT": "text", "PROVER_API_ZKEY_FOLDER": "", "PROVER_API_ADMIN_ADDRESS": "",
			"PROVER_API_SERVER_ADDRESS": ":7", "PROVER_API_CIRCUIT_FOLDER": "/c",
		})
		c, err := Parse([]string{"--max-sessions", "9"}, e, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		want := Config{
			ServerAddress: ":7", DatabaseURL: "postgres://env", CircuitFolder: "/c", ZkeyFolder: "", NATSURL: "nats://env:4222",
			Families: []family.Family{family.Disclose, family.Register}, Attester: "dev", DevAttestDir: "/dev-root",
			SessionTTL: 30 * time.Second, MaxSessions: 9, AdminAddress: "", JobKeyFile: "/env/key",
			LogLevel: slog.LevelDebug, LogFormat: "text",
		}
		if !equal(c, want) {
			t.Fatalf("got %+v\nwant %+v", c, want)
		}
	})
	bad := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"nothing", nil, nil, "--database-url (DATABASE_URL) is required"},
		{"no key", []string{"-d", "x"}, nil, "--job-key-file (PROVER_API_JOB_KEY_FILE) is required"},
		{"attester", append([]string{"--attester", "tpm"}, required...), nil, `--attester must be nsm or dev, got "tpm"`},
		{"dev without dir", append([]string{"--attester", "dev"}, required...), nil, "--dev-attest-dir (PROVER_API_DEV_ATTEST_DIR) is required with --attester dev"},
		{"family", append([]string{"--families", "register,kyc"}, required...), nil, "--families: unknown proof family"},
		{"ttl", append([]string{"--session-ttl", "0s"}, required...), nil, "--session-ttl must be positive"},
		{"sessions", append([]string{"--max-sessions", "0"}, required...), nil, "--max-sessions must be at least 1"},
		{"format", append([]string{"--log-format", "xml"}, required...), nil, `--log-format must be json or text, got "xml"`},
		{"level", append([]string{"--log-level", "loud"}, required...), nil, "--log-level"},
		{"env value", required, map[string]string{"PROVER_API_MAX_SESSIONS": "many"}, "PROVER_API_MAX_SESSIONS"},
		{"unknown flag", append([]string{"--bogus"}, required...), nil, "unknown flag: --bogus"},
		{"argument", append([]string{"extra"}, required...), nil, "unexpected arguments: extra"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.args, env(tt.env), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	t.Run("help names every variable", func(t *testing.T) {
		var out bytes.Buffer
		_, err := Parse([]string{"--help"}, env(nil), &out)
		if !errors.Is(err, pflag.ErrHelp) {
			t.Fatalf("error = %v, want pflag.ErrHelp", err)
		}
		for flag, v := range envOf {
			if !strings.Contains(out.String(), "--"+flag) || !strings.Contains(out.String(), "["+v+"]") {
				t.Fatalf("help lacks --%s [%s]:\n%s", flag, v, out.String())
			}
		}
	})
}

func equal(a, b Config) bool { return reflect.DeepEqual(a, b) }

func TestNewLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	NewLogger(Config{LogFormat: "json", LogLevel: slog.LevelWarn}, &buf).Info("hidden")
	NewLogger(Config{LogFormat: "json", LogLevel: slog.LevelWarn}, &buf).Warn("shown")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), `"msg":"shown"`) {
		t.Fatalf("json logger wrote %q", buf.String())
	}
	buf.Reset()
	NewLogger(Config{LogFormat: "text"}, &buf).Info("hi")
	if !strings.Contains(buf.String(), "msg=hi") || !strings.Contains(buf.String(), "program=prover-api") {
		t.Fatalf("text logger wrote %q", buf.String())
	}
}

package config

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/vsockdial"
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
			NATSURL: "nats://127.0.0.1:4222", Families: family.All(), Attester: "nitro", LauncherSocket: attest.DefaultLauncherSocket, SessionTTL: 15 * time.Minute,
			MaxSessions: 10000, AdminAddress: "127.0.0.1:9090", JobKeyFile: "/k", LogLevel: slog.LevelInfo, LogFormat: "json",
			StatusAddress: "0.0.0.0:8889", StatusMaxConnections: 10000, StatusMaxSubscriptions: 16,
			StatusLinger: 10 * time.Minute, StatusMaxWait: time.Hour, StatusRecheck: time.Minute,
			MaxSessionsPerSource: 64, SessionShare: 32, MaxConnections: 20000, MaxConnectionsPerSource: 64,
			HelloRate: 5, HelloBurst: 20, PingInterval: 30 * time.Second, PongTimeout: 15 * time.Second,
			IdleTimeout: time.Minute, ReadTimeout: time.Minute, WriteTimeout: 10 * time.Second,
		}
		if !equal(c, want) {
			t.Fatalf("got %+v\nwant %+v", c, want)
		}
	})
	t.Run("short flags of the seed", func(t *testing.T) {
		c, err := Parse([]string{"-s", ":1", "-d", "db", "-c", "circ", "-k", "zk", "-z", "map.json", "--job-key-file", "k"}, env(nil), &bytes.Buffer{})
		if err != nil || c.ServerAddress != ":1" || c.DatabaseURL != "db" || c.CircuitFolder != "circ" || c.ZkeyFolder != "zk" || c.ZkeyMapFile != "map.json" {
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
			"PROVER_API_NATS_TARGET": "vsock://3:4222", "PROVER_API_DATABASE_TARGET": "vsock://3:5432",
			"PROVER_API_STATUS_ADDRESS": "vsock://:8889", "PROVER_API_STATUS_MAX_CONNECTIONS": "5",
			"PROVER_API_STATUS_MAX_SUBSCRIPTIONS": "2", "PROVER_API_STATUS_LINGER": "1m",
			"PROVER_API_STATUS_MAX_WAIT": "2m", "PROVER_API_STATUS_RECHECK": "0s",
			"PROVER_API_MAX_SESSIONS_PER_SOURCE": "3", "PROVER_API_SESSION_SHARE": "0", "PROVER_API_MAX_CONNECTIONS": "100",
			"PROVER_API_MAX_CONNECTIONS_PER_SOURCE": "4", "PROVER_API_HELLO_RATE": "0.5", "PROVER_API_HELLO_BURST": "2",
			"PROVER_API_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,2001:db8::/32", "PROVER_API_PROXY_PROTOCOL": "true",
			"PROVER_API_PING_INTERVAL": "5s", "PROVER_API_PONG_TIMEOUT": "2s", "PROVER_API_IDLE_TIMEOUT": "20m",
			"PROVER_API_READ_TIMEOUT": "3s", "PROVER_API_WRITE_TIMEOUT": "4s",
		})
		c, err := Parse([]string{"--max-sessions", "9", "--hello-burst", "6"}, e, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		want := Config{
			ServerAddress: ":7", DatabaseURL: "postgres://env", CircuitFolder: "/c", ZkeyFolder: "", NATSURL: "nats://env:4222",
			NATSTarget: "vsock://3:4222", DatabaseTarget: "vsock://3:5432",
			Families: []family.Family{family.Disclose, family.Register}, Attester: "dev-nitro", DevAttestDir: "/dev-root",
			LauncherSocket: attest.DefaultLauncherSocket,
			SessionTTL:     30 * time.Second, MaxSessions: 9, AdminAddress: "", JobKeyFile: "/env/key",
			LogLevel: slog.LevelDebug, LogFormat: "text",
			StatusAddress: "vsock://:8889", StatusMaxConnections: 5, StatusMaxSubscriptions: 2,
			StatusLinger: time.Minute, StatusMaxWait: 2 * time.Minute, StatusRecheck: 0,
			MaxSessionsPerSource: 3, SessionShare: 0, MaxConnections: 100, MaxConnectionsPerSource: 4,
			HelloRate: 0.5, HelloBurst: 6, ProxyProtocol: true,
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::/32")},
			PingInterval:   5 * time.Second, PongTimeout: 2 * time.Second, IdleTimeout: 20 * time.Minute,
			ReadTimeout: 3 * time.Second, WriteTimeout: 4 * time.Second,
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
		{"attester", append([]string{"--attester", "tpm"}, required...), nil, `--attester must be gcp, nitro, dev-gcp or dev-nitro (nsm and dev are aliases), got "tpm"`},
		{"dev without dir", append([]string{"--attester", "dev"}, required...), nil, "--dev-attest-dir (PROVER_API_DEV_ATTEST_DIR) is required with --attester dev-nitro"},
		{"dev-gcp without dir", append([]string{"--attester", "dev-gcp"}, required...), nil, "--dev-attest-dir (PROVER_API_DEV_ATTEST_DIR) is required with --attester dev-gcp"},
		{"gcp without socket", append([]string{"--attester", "gcp", "--launcher-socket", ""}, required...), nil, "--launcher-socket (PROVER_API_LAUNCHER_SOCKET) must not be empty with --attester gcp"},
		{"family", append([]string{"--families", "register,kyc"}, required...), nil, "--families: unknown proof family"},
		{"ttl", append([]string{"--session-ttl", "0s"}, required...), nil, "--session-ttl must be positive"},
		{"sessions", append([]string{"--max-sessions", "0"}, required...), nil, "--max-sessions must be at least 1"},
		{"format", append([]string{"--log-format", "xml"}, required...), nil, `--log-format must be json or text, got "xml"`},
		{"negative per-source sessions", append([]string{"--max-sessions-per-source", "-1"}, required...), nil, "--max-sessions-per-source must not be negative (0 turns it off), got -1"},
		{"negative hello rate", append([]string{"--hello-rate", "-2"}, required...), nil, "--hello-rate must not be negative (0 turns it off), got -2"},
		{"no burst", append([]string{"--hello-burst", "0"}, required...), nil, "--hello-burst must be at least 1, got 0"},
		{"idle timeout", append([]string{"--idle-timeout", "0s"}, required...), nil, "--idle-timeout must be positive, got 0s"},
		{"pong timeout", append([]string{"--pong-timeout", "-1s"}, required...), nil, "--pong-timeout must be positive, got -1s"},
		{"trusted proxy", append([]string{"--trusted-proxies", "10.0.0.0/8,proxy.local"}, required...), nil,
			`--trusted-proxies (PROVER_API_TRUSTED_PROXIES): "proxy.local" is not an address or CIDR prefix`},
		{"level", append([]string{"--log-level", "loud"}, required...), nil, "--log-level"},
		{"env value", required, map[string]string{"PROVER_API_MAX_SESSIONS": "many"}, "PROVER_API_MAX_SESSIONS"},
		{"unknown flag", append([]string{"--bogus"}, required...), nil, "unknown flag: --bogus"},
		{"status on the server's address", append([]string{"-s", ":1", "--status-address", ":1"}, required...), nil,
			`--status-address must differ from --server-address (both ":1")`},
		{"status address", append([]string{"--status-address", "localhost"}, required...), nil,
			"--status-address (PROVER_API_STATUS_ADDRESS): vsockdial"},
		{"status connections", append([]string{"--status-max-connections", "0"}, required...), nil, "--status-max-connections must be at least 1"},
		{"status subscriptions", append([]string{"--status-max-subscriptions", "0"}, required...), nil, "--status-max-subscriptions must be at least 1"},
		{"status linger", append([]string{"--status-linger", "0s"}, required...), nil, "--status-linger must be positive"},
		{"status max wait", append([]string{"--status-max-wait", "-1s"}, required...), nil, "--status-max-wait must be positive"},
		{"status recheck", append([]string{"--status-recheck", "-1s"}, required...), nil, "--status-recheck must not be negative"},
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

// TestParseAddresses covers the listen addresses and dial targets that
// shared/vsockdial reads: accepted forms are kept as given (run hands them
// to vsockdial), and a bad one is refused with its flag, its variable and
// the reason.
func TestParseAddresses(t *testing.T) {
	t.Parallel()
	good := []struct {
		name string
		args []string
		env  map[string]string
		want func(Config) bool
	}{
		{"no targets by default", nil, nil, func(c Config) bool { return c.NATSTarget == "" && c.DatabaseTarget == "" }},
		{"relay disabled", []string{"--status-address", ""}, nil, func(c Config) bool { return c.StatusAddress == "" }},
		{"relay on vsock", []string{"--status-address", "vsock://:8889"}, nil, func(c Config) bool { return c.StatusAddress == "vsock://:8889" }},
		{"vsock listeners", []string{"-s", "vsock://:8888", "--admin-address", "vsock://ANY:9090"}, nil,
			func(c Config) bool { return c.ServerAddress == "vsock://:8888" && c.AdminAddress == "vsock://ANY:9090" }},
		{"vsock listener on one CID", []string{"--server-address", "vsock://16:8888"}, nil,
			func(c Config) bool { return c.ServerAddress == "vsock://16:8888" }},
		{"tcp listeners", []string{"-s", "tcp://127.0.0.1:8888", "--admin-address", "[::1]:0"}, nil,
			func(c Config) bool { return c.ServerAddress == "tcp://127.0.0.1:8888" && c.AdminAddress == "[::1]:0" }},
		{"vsock targets", []string{"--nats-target", "vsock://3:4222", "--database-target", "vsock://3:5432"}, nil,
			func(c Config) bool { return c.NATSTarget == "vsock://3:4222" && c.DatabaseTarget == "vsock://3:5432" }},
		{"tcp targets", []string{"--nats-target", "nats://proxy", "--database-target", "127.0.0.1:6432"}, nil,
			func(c Config) bool { return c.NATSTarget == "nats://proxy" && c.DatabaseTarget == "127.0.0.1:6432" }},
		{"targets from the environment", nil,
			map[string]string{"PROVER_API_NATS_TARGET": "vsock://3:4222", "PROVER_API_DATABASE_TARGET": "tcp://127.0.0.1:5432"},
			func(c Config) bool {
				return c.NATSTarget == "vsock://3:4222" && c.DatabaseTarget == "tcp://127.0.0.1:5432"
			}},
		{"flags win over the environment", []string{"--nats-target", "vsock://3:14222"},
			map[string]string{"PROVER_API_NATS_TARGET": "vsock://3:4222", "PROVER_API_SERVER_ADDRESS": "vsock://:8888"},
			func(c Config) bool { return c.NATSTarget == "vsock://3:14222" && c.ServerAddress == "vsock://:8888" }},
		{"empty variable keeps no target", nil, map[string]string{"PROVER_API_DATABASE_TARGET": ""},
			func(c Config) bool { return c.DatabaseTarget == "" }},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse(append(tt.args, required...), env(tt.env), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(c) {
				t.Fatalf("got %+v", c)
			}
		})
	}

	bad := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string // the whole error
		invalid bool   // wraps vsockdial.ErrInvalidAddr
	}{
		{"server vsock CID name", []string{"-s", "vsock://parent:8888"}, nil,
			`--server-address (PROVER_API_SERVER_ADDRESS): vsockdial: address "vsock://parent:8888": bad CID "parent" (want a decimal context ID below 4294967295, or ANY): invalid address`, true},
		{"server without port", []string{"-s", "localhost"}, nil,
			`--server-address (PROVER_API_SERVER_ADDRESS): vsockdial: address "localhost": missing port (want host:port): invalid address`, true},
		{"server empty", []string{"-s", ""}, nil,
			`--server-address (PROVER_API_SERVER_ADDRESS): vsockdial: empty address: invalid address`, true},
		{"server vsock without port", nil, map[string]string{"PROVER_API_SERVER_ADDRESS": "vsock://:"},
			`--server-address (PROVER_API_SERVER_ADDRESS): vsockdial: address "vsock://:": missing port (want vsock://CID:PORT): invalid address`, true},
		{"server is a dial URL", []string{"-s", "nats://0.0.0.0:8888"}, nil,
			`--server-address (PROVER_API_SERVER_ADDRESS) must be host:port, tcp://host:port or vsock://[CID]:PORT, got "nats://0.0.0.0:8888"`, false},
		{"admin bad vsock port", []string{"--admin-address", "vsock://:metrics"}, nil,
			`--admin-address (PROVER_API_ADMIN_ADDRESS): vsockdial: address "vsock://:metrics": bad port "metrics" (want a decimal vsock port below 4294967295): invalid address`, true},
		{"admin http URL from the environment", nil, map[string]string{"PROVER_API_ADMIN_ADDRESS": "http://127.0.0.1:9090"},
			`--admin-address (PROVER_API_ADMIN_ADDRESS) must be host:port, tcp://host:port or vsock://[CID]:PORT, got "http://127.0.0.1:9090"`, false},
		{"nats target without port", []string{"--nats-target", "vsock://3"}, nil,
			`--nats-target (PROVER_API_NATS_TARGET): vsockdial: address "vsock://3": missing port (want vsock://CID:PORT): invalid address`, true},
		{"nats target is a listener", []string{"--nats-target", "vsock://:4222"}, nil,
			`--nats-target (PROVER_API_NATS_TARGET) vsock://ANY:4222 names no CID to dial (the parent instance is vsock://3:PORT)`, false},
		{"database target vsock port 0", []string{"--database-target", "vsock://3:0"}, nil,
			`--database-target (PROVER_API_DATABASE_TARGET) vsock://3:0 names no port to dial`, false},
		{"database target tcp port 0", []string{"--database-target", "127.0.0.1:0"}, nil,
			`--database-target (PROVER_API_DATABASE_TARGET) 127.0.0.1:0 names no port to dial`, false},
		{"database target unix socket from the environment", nil, map[string]string{"PROVER_API_DATABASE_TARGET": "unix:///run/postgresql"},
			`--database-target (PROVER_API_DATABASE_TARGET): vsockdial: address "unix:///run/postgresql": unknown scheme "unix" (want vsock, tcp, nats, tls, postgres or postgresql): invalid address`, true},
		{"database target several hosts", []string{"--database-target", "postgres://u@db1,db2/proofs"}, nil,
			`--database-target (PROVER_API_DATABASE_TARGET): vsockdial: address "postgres://u@db1,db2/proofs": several hosts are not supported: invalid address`, true},
		{"both targets bad, both reported", []string{"--nats-target", "vsock://x:4222", "--database-target", "db"}, nil,
			`--nats-target (PROVER_API_NATS_TARGET): vsockdial: address "vsock://x:4222": bad CID "x" (want a decimal context ID below 4294967295, or ANY): invalid address` + "\n" +
				`--database-target (PROVER_API_DATABASE_TARGET): vsockdial: address "db": missing port (want host:port): invalid address`, true},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(append(tt.args, required...), env(tt.env), &bytes.Buffer{})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v\nwant    %s", err, tt.want)
			}
			if got := errors.Is(err, vsockdial.ErrInvalidAddr); got != tt.invalid {
				t.Fatalf("errors.Is(err, vsockdial.ErrInvalidAddr) = %t, want %t", got, tt.invalid)
			}
		})
	}
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

func TestAttesterNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ given, want string }{
		{"gcp", AttesterGCP}, {"nitro", AttesterNitro}, {"dev-gcp", AttesterDevGCP}, {"dev-nitro", AttesterDevNitro},
		{"nsm", AttesterNitro}, {"dev", AttesterDevNitro},
	} {
		t.Run(tc.given, func(t *testing.T) {
			c, err := Parse(append([]string{"--attester", tc.given, "--dev-attest-dir", "/d"}, required...), env(nil), &bytes.Buffer{})
			if err != nil || c.Attester != tc.want {
				t.Fatalf("Attester = %q, %v; want %q", c.Attester, err, tc.want)
			}
			if DevAttester(tc.given) != strings.HasPrefix(tc.want, "dev-") {
				t.Fatalf("DevAttester(%q) = %v", tc.given, DevAttester(tc.given))
			}
		})
	}
	c, err := Parse(append([]string{"--attester", "gcp", "--launcher-socket", "/run/x.sock"}, required...), env(nil), &bytes.Buffer{})
	if err != nil || c.LauncherSocket != "/run/x.sock" {
		t.Fatalf("%+v, %v", c, err)
	}
}

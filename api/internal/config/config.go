// Package config reads prover-api's configuration from flags and
// environment variables (a flag given on the command line wins over its
// variable, which wins over the default) and builds its logger.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/openpassport/prover-fleet/api/internal/admission"
	"github.com/openpassport/prover-fleet/internal/admin"
	"github.com/openpassport/prover-fleet/internal/envflag"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/vsockdial"
)

// DefaultSessionTTL is how long a hello's session waits for its submit by
// default: the app submits only after the user has confirmed, which can
// take minutes (the server the app used before kept sessions without a
// limit). --max-sessions still bounds the table.
const DefaultSessionTTL = 15 * time.Minute

// Config is prover-api's configuration.
type Config struct {
	// ServerAddress and AdminAddress are where the frontend listens:
	// host:port, tcp://host:port, or vsock://:PORT inside an enclave (see
	// shared/vsockdial).
	ServerAddress string
	// StatusAddress is where the Socket.IO status relay listens (same
	// forms); empty disables the relay and its LISTEN connection.
	StatusAddress string
	// The relay's bounds (api/internal/relay.Config): connections,
	// subscriptions per connection, how long a subscription at status 2
	// waits for a verifier's 4 or 5, how long any subscription may stay
	// open, and how often each re-reads its row (0: never).
	StatusMaxConnections   int
	StatusMaxSubscriptions int
	StatusLinger           time.Duration
	StatusMaxWait          time.Duration
	StatusRecheck          time.Duration
	// NATSURL and DatabaseURL locate the servers (host names for TLS,
	// credentials, database name); NATSTarget and DatabaseTarget optionally
	// send the bytes elsewhere (vsock://3:4222 inside an enclave, see
	// shared/vsockdial). Empty: dial what the URL names.
	DatabaseURL    string
	DatabaseTarget string
	CircuitFolder  string
	ZkeyFolder     string
	// ZkeyMapFile is the circuit-zkey map (circuitdir.LoadZkeyMap), loaded
	// by the program; empty: every key is <name>.zkey.
	ZkeyMapFile string
	NATSURL     string
	NATSTarget  string
	Families    []family.Family
	// Attester is one of the Attester* names (aliases are resolved by
	// Parse); LauncherSocket is the Confidential Space launcher's socket of
	// AttesterGCP, DevAttestDir the development root of the dev ones.
	Attester       string
	LauncherSocket string
	DevAttestDir   string
	SessionTTL     time.Duration
	MaxSessions    int
	// Per source (a client's network address): open sessions, the share
	// of the free slots a source with sessions may take, TCP connections
	// and WebSockets, handshakes per second and their burst. 0 turns a
	// limit off.
	MaxSessionsPerSource    int
	SessionShare            int
	MaxConnections          int
	MaxConnectionsPerSource int
	HelloRate               float64
	HelloBurst              int
	// TrustedProxies may name the client (X-Forwarded-For, and the PROXY
	// protocol header with ProxyProtocol).
	TrustedProxies []netip.Prefix
	ProxyProtocol  bool
	// WebSocket and HTTP bounds.
	PingInterval time.Duration
	PongTimeout  time.Duration
	IdleTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	AdminAddress string
	// AdminProfiling serves Go's profiler (/debug/pprof/) on the admin
	// address.
	AdminProfiling bool
	JobKeyFile     string
	LogLevel       slog.Level
	LogFormat      string // "json" or "text"
}

// Attesters --attester names.
const (
	AttesterGCP      = "gcp"       // Confidential Space launcher (PKI token)
	AttesterNitro    = "nitro"     // Nitro Security Module (COSE document)
	AttesterDevGCP   = "dev-gcp"   // development root, Confidential Space format
	AttesterDevNitro = "dev-nitro" // development root, Nitro format
)

// attesterAliases are the names of earlier versions.
var attesterAliases = map[string]string{"nsm": AttesterNitro, "dev": AttesterDevNitro}

// CanonicalAttester resolves an alias (nsm, dev) to its name; other
// names come back unchanged.
func CanonicalAttester(name string) string {
	if c, ok := attesterAliases[name]; ok {
		return c
	}
	return name
}

// DevAttester reports whether an attester name is a development one.
func DevAttester(name string) bool {
	n := CanonicalAttester(name)
	return n == AttesterDevGCP || n == AttesterDevNitro
}

// Flag names and their environment variables.
var envOf = map[string]string{
	"server-address":           "PROVER_API_SERVER_ADDRESS",
	"status-address":           "PROVER_API_STATUS_ADDRESS",
	"status-max-connections":   "PROVER_API_STATUS_MAX_CONNECTIONS",
	"status-max-subscriptions": "PROVER_API_STATUS_MAX_SUBSCRIPTIONS",
	"status-linger":            "PROVER_API_STATUS_LINGER",
	"status-max-wait":          "PROVER_API_STATUS_MAX_WAIT",
	"status-recheck":           "PROVER_API_STATUS_RECHECK",
	"database-url":             "DATABASE_URL",
	"database-target":          "PROVER_API_DATABASE_TARGET",
	"circuit-folder":           "PROVER_API_CIRCUIT_FOLDER",
	"zkey-folder":              "PROVER_API_ZKEY_FOLDER",
	"circuit-zkey-map":         "PROVER_API_CIRCUIT_ZKEY_MAP",
	"nats-url":                 "NATS_URL",
	"nats-target":              "PROVER_API_NATS_TARGET",
	"families":                 "PROVER_API_FAMILIES",
	"attester":                 "PROVER_API_ATTESTER",
	"launcher-socket":          "PROVER_API_LAUNCHER_SOCKET",
	"dev-attest-dir":           "PROVER_API_DEV_ATTEST_DIR",
	"session-ttl":              "PROVER_API_SESSION_TTL",
	"max-sessions":             "PROVER_API_MAX_SESSIONS",

	"max-sessions-per-source":    "PROVER_API_MAX_SESSIONS_PER_SOURCE",
	"session-share":              "PROVER_API_SESSION_SHARE",
	"max-connections":            "PROVER_API_MAX_CONNECTIONS",
	"max-connections-per-source": "PROVER_API_MAX_CONNECTIONS_PER_SOURCE",
	"hello-rate":                 "PROVER_API_HELLO_RATE",
	"hello-burst":                "PROVER_API_HELLO_BURST",
	"trusted-proxies":            "PROVER_API_TRUSTED_PROXIES",
	"proxy-protocol":             "PROVER_API_PROXY_PROTOCOL",
	"ping-interval":              "PROVER_API_PING_INTERVAL",
	"pong-timeout":               "PROVER_API_PONG_TIMEOUT",
	"idle-timeout":               "PROVER_API_IDLE_TIMEOUT",
	"read-timeout":               "PROVER_API_READ_TIMEOUT",
	"write-timeout":              "PROVER_API_WRITE_TIMEOUT",

	"admin-address": "PROVER_API_ADMIN_ADDRESS",
	"admin-pprof":   "PROVER_API_ADMIN_PPROF",
	"job-key-file":  "PROVER_API_JOB_KEY_FILE",
	"log-level":     "PROVER_API_LOG_LEVEL",
	"log-format":    "PROVER_API_LOG_FORMAT",
}

// EnvVar returns the environment variable of a flag ("" if none).
func EnvVar(flag string) string { return envOf[flag] }

// Parse reads args (without the program name) and the environment through
// lookupEnv (os.LookupEnv in the program). It returns pflag.ErrHelp after
// printing usage to out when asked for help.
func Parse(args []string, lookupEnv func(string) (string, bool), out io.Writer) (Config, error) {
	fs := pflag.NewFlagSet("prover-api", pflag.ContinueOnError)
	fs.SetOutput(out)
	var (
		c        Config
		families string
		level    string
		proxies  string
	)
	fs.StringVarP(&c.ServerAddress, "server-address", "s", "0.0.0.0:8888", "address of the JSON-RPC listener (WebSocket and HTTP POST): host:port, or vsock://:PORT inside an enclave")
	fs.StringVar(&c.StatusAddress, "status-address", "0.0.0.0:8889", "address of the Socket.IO status relay (path /): host:port, or vsock://:PORT inside an enclave; empty disables it")
	fs.IntVar(&c.StatusMaxConnections, "status-max-connections", 10000, "status relay connections at most; beyond, the handshake is refused")
	fs.IntVar(&c.StatusMaxSubscriptions, "status-max-subscriptions", 16, "live status relay subscriptions per connection at most")
	fs.DurationVar(&c.StatusLinger, "status-linger", 10*time.Minute, "how long a relay subscription at status 2 waits for the verifier's 4 or 5")
	fs.DurationVar(&c.StatusMaxWait, "status-max-wait", time.Hour, "how long a relay subscription may stay open at most")
	fs.DurationVar(&c.StatusRecheck, "status-recheck", time.Minute, "how often a relay subscription re-reads its row in case status events were lost (0: never)")
	fs.StringVarP(&c.DatabaseURL, "database-url", "d", "", "PostgreSQL URL of the proofs table (required)")
	fs.StringVar(&c.DatabaseTarget, "database-target", "", "dial Postgres here instead (vsock://CID:PORT inside an enclave)")
	fs.StringVarP(&c.CircuitFolder, "circuit-folder", "c", "circuits/build", "folder of witness generators (<name>_cpp/<name> or <name>_js/<name>.wasm)")
	fs.StringVarP(&c.ZkeyFolder, "zkey-folder", "k", "zkeys", "folder of proving keys (<name>.zkey); a circuit without one is refused; empty skips the check")
	fs.StringVarP(&c.ZkeyMapFile, "circuit-zkey-map", "z", "", `JSON file mapping circuit names to zkey file names in the zkey folder, {"<circuit>": "<file>.zkey"} (default: <name>.zkey)`)
	fs.StringVar(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	fs.StringVar(&c.NATSTarget, "nats-target", "", "dial NATS here instead (vsock://CID:PORT inside an enclave)")
	fs.StringVar(&families, "families", "all", "proof families served: all, or a comma-separated list of register, dsc, disclose")
	fs.StringVar(&c.Attester, "attester", AttesterNitro, "attestation the hello answers with: gcp (Confidential Space launcher, PKI token), nitro (Nitro Security Module, in an enclave), dev-gcp or dev-nitro (the same formats signed by a development root, outside a TEE); nsm and dev are aliases of nitro and dev-nitro")
	fs.StringVar(&c.LauncherSocket, "launcher-socket", attest.DefaultLauncherSocket, "unix socket of the Confidential Space launcher (--attester gcp)")
	fs.StringVar(&c.DevAttestDir, "dev-attest-dir", "", "directory of the development attestation roots (created if missing; required with --attester dev-gcp or dev-nitro)")
	fs.DurationVar(&c.SessionTTL, "session-ttl", DefaultSessionTTL, "how long a hello's session waits for its submit (the app submits after the user confirms)")
	fs.IntVar(&c.MaxSessions, "max-sessions", 10000, "open handshake sessions at most; beyond, hello answers \"server busy\"")
	fs.IntVar(&c.MaxSessionsPerSource, "max-sessions-per-source", 64, "open sessions of one source (client address: IPv4, or IPv6 /64) at most; 0: no limit")
	fs.IntVar(&c.SessionShare, "session-share", 32, "a source holding n sessions gets another only while n × this is under the free slots (a few sources cannot fill the table); 0: off")
	fs.IntVar(&c.MaxConnections, "max-connections", 20000, "TCP connections held at most (above, answered 503 and closed); 0: no limit")
	fs.IntVar(&c.MaxConnectionsPerSource, "max-connections-per-source", 64, "TCP connections (trusted proxies excepted) and WebSockets of one source at most; 0: no limit")
	fs.Float64Var(&c.HelloRate, "hello-rate", 5, "handshakes (hello, attestation) per second one source may start, sustained; 0: no limit")
	fs.IntVar(&c.HelloBurst, "hello-burst", 20, "handshakes one source may start at once")
	fs.StringVar(&proxies, "trusted-proxies", "", "comma-separated addresses or CIDR prefixes of proxies whose X-Forwarded-For (and PROXY protocol header) name the client; a vsock peer is always trusted")
	fs.BoolVar(&c.ProxyProtocol, "proxy-protocol", false, "trusted proxies' connections start with a PROXY protocol header (v1 or v2) naming the client")
	fs.DurationVar(&c.PingInterval, "ping-interval", 30*time.Second, "how often a WebSocket is pinged")
	fs.DurationVar(&c.PongTimeout, "pong-timeout", 15*time.Second, "how long a ping waits for its pong before the WebSocket is closed")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 60*time.Second, "a WebSocket whose client sends nothing this long is closed, unless a session it opened is open (then when that expires) or it holds a subscription; also the HTTP keep-alive idle timeout")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", 60*time.Second, "time to receive one WebSocket message or POST body once it has begun")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", 10*time.Second, "time to send one message (a client that does not read is disconnected)")
	fs.StringVar(&c.AdminAddress, "admin-address", admin.DefaultAddress, "address of /healthz, /readyz and /metrics: host:port, or vsock://:PORT inside an enclave; empty disables")
	fs.BoolVar(&c.AdminProfiling, "admin-pprof", false, "also serve Go's profiler (/debug/pprof/) on the admin address; it reveals memory, so keep that address private")
	fs.StringVar(&c.JobKeyFile, "job-key-file", "", "file holding the fleet key that seals circuit inputs (64 hex characters or 32 raw bytes; required)")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or text")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: prover-api [flags]\n\nThe frontend of the prover fleet. Every flag can also be set by the environment variable in brackets.\n\n")
		fs.VisitAll(func(f *pflag.Flag) {
			f.Usage += " [" + envOf[f.Name] + "]"
		})
		fmt.Fprint(out, fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := envflag.Apply(fs, lookupEnv, func(flag string) []string {
		if v := envOf[flag]; v != "" {
			return []string{v}
		}
		return nil
	}); err != nil {
		return Config{}, err
	}
	c.Attester = CanonicalAttester(c.Attester)
	var err error
	if c.Families, err = family.ParseList(families); err != nil {
		return Config{}, fmt.Errorf("--families: %w", err)
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return Config{}, fmt.Errorf("--log-level: %w", err)
	}
	if c.TrustedProxies, err = admission.ParsePrefixes(proxies); err != nil {
		return Config{}, fmt.Errorf("--trusted-proxies (PROVER_API_TRUSTED_PROXIES): %w", err)
	}
	return c, c.Validate()
}

// Validate checks the configuration with exact messages.
func (c Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("--database-url (DATABASE_URL) is required"))
	}
	if c.JobKeyFile == "" {
		errs = append(errs, errors.New("--job-key-file (PROVER_API_JOB_KEY_FILE) is required"))
	}
	if c.CircuitFolder == "" {
		errs = append(errs, errors.New("--circuit-folder must not be empty"))
	}
	if c.NATSURL == "" {
		errs = append(errs, errors.New("--nats-url must not be empty"))
	}
	errs = append(errs, checkListen("server-address", c.ServerAddress))
	if c.StatusAddress != "" {
		errs = append(errs, checkListen("status-address", c.StatusAddress))
		if strings.TrimSpace(c.StatusAddress) == strings.TrimSpace(c.ServerAddress) {
			errs = append(errs, fmt.Errorf("--status-address must differ from --server-address (both %q)", c.ServerAddress))
		}
	}
	if c.StatusMaxConnections < 1 {
		errs = append(errs, fmt.Errorf("--status-max-connections must be at least 1, got %d", c.StatusMaxConnections))
	}
	if c.StatusMaxSubscriptions < 1 {
		errs = append(errs, fmt.Errorf("--status-max-subscriptions must be at least 1, got %d", c.StatusMaxSubscriptions))
	}
	if c.StatusLinger <= 0 {
		errs = append(errs, fmt.Errorf("--status-linger must be positive, got %s", c.StatusLinger))
	}
	if c.StatusMaxWait <= 0 {
		errs = append(errs, fmt.Errorf("--status-max-wait must be positive, got %s", c.StatusMaxWait))
	}
	if c.StatusRecheck < 0 {
		errs = append(errs, fmt.Errorf("--status-recheck must not be negative, got %s", c.StatusRecheck))
	}
	if c.AdminAddress != "" {
		errs = append(errs, checkListen("admin-address", c.AdminAddress))
	}
	if c.NATSTarget != "" {
		errs = append(errs, checkTarget("nats-target", c.NATSTarget))
	}
	if c.DatabaseTarget != "" {
		errs = append(errs, checkTarget("database-target", c.DatabaseTarget))
	}
	switch a := CanonicalAttester(c.Attester); a {
	case AttesterNitro:
	case AttesterGCP:
		if c.LauncherSocket == "" {
			errs = append(errs, errors.New("--launcher-socket (PROVER_API_LAUNCHER_SOCKET) must not be empty with --attester gcp"))
		}
	case AttesterDevGCP, AttesterDevNitro:
		if c.DevAttestDir == "" {
			errs = append(errs, fmt.Errorf("--dev-attest-dir (PROVER_API_DEV_ATTEST_DIR) is required with --attester %s", a))
		}
	default:
		errs = append(errs, fmt.Errorf("--attester must be gcp, nitro, dev-gcp or dev-nitro (nsm and dev are aliases), got %q", c.Attester))
	}
	if c.SessionTTL <= 0 {
		errs = append(errs, fmt.Errorf("--session-ttl must be positive, got %s", c.SessionTTL))
	}
	if c.MaxSessions < 1 {
		errs = append(errs, fmt.Errorf("--max-sessions must be at least 1, got %d", c.MaxSessions))
	}
	for _, f := range []struct {
		flag string
		v    float64
	}{
		{"max-sessions-per-source", float64(c.MaxSessionsPerSource)}, {"session-share", float64(c.SessionShare)},
		{"max-connections", float64(c.MaxConnections)}, {"max-connections-per-source", float64(c.MaxConnectionsPerSource)},
		{"hello-rate", c.HelloRate},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("--%s must not be negative (0 turns it off), got %g", f.flag, f.v))
		}
	}
	if c.HelloRate > 0 && c.HelloBurst < 1 {
		errs = append(errs, fmt.Errorf("--hello-burst must be at least 1, got %d", c.HelloBurst))
	}
	for _, f := range []struct {
		flag string
		v    time.Duration
	}{
		{"ping-interval", c.PingInterval}, {"pong-timeout", c.PongTimeout}, {"idle-timeout", c.IdleTimeout},
		{"read-timeout", c.ReadTimeout}, {"write-timeout", c.WriteTimeout},
	} {
		if f.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %s", f.flag, f.v))
		}
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("--log-format must be json or text, got %q", c.LogFormat))
	}
	return errors.Join(errs...)
}

// checkListen checks an address vsockdial.Listen takes: host:port,
// tcp://host:port or vsock://[CID]:PORT. The URL schemes ParseAddr also
// reads (nats://, postgres://…) name servers to dial, not listeners.
func checkListen(flag, addr string) error {
	if scheme, _, ok := strings.Cut(strings.TrimSpace(addr), "://"); ok {
		if s := strings.ToLower(scheme); s != "tcp" && s != "vsock" {
			return fmt.Errorf("--%s (%s) must be host:port, tcp://host:port or vsock://[CID]:PORT, got %q", flag, envOf[flag], addr)
		}
	}
	if _, err := vsockdial.ParseAddr(addr); err != nil {
		return fmt.Errorf("--%s (%s): %w", flag, envOf[flag], err)
	}
	return nil
}

// checkTarget checks an address vsockdial.NewDialer can dial: one CID (not
// the listeners' ANY) and a port other than 0.
func checkTarget(flag, addr string) error {
	a, err := vsockdial.ParseAddr(addr)
	if err != nil {
		return fmt.Errorf("--%s (%s): %w", flag, envOf[flag], err)
	}
	if a.Vsock && a.CID == vsockdial.AnyCID {
		return fmt.Errorf("--%s (%s) %s names no CID to dial (the parent instance is vsock://3:PORT)", flag, envOf[flag], a)
	}
	port := uint64(a.Port)
	if !a.Vsock {
		_, p, _ := net.SplitHostPort(a.HostPort) // ParseAddr checked it
		port, _ = strconv.ParseUint(p, 10, 16)
	}
	if port == 0 {
		return fmt.Errorf("--%s (%s) %s names no port to dial", flag, envOf[flag], a)
	}
	return nil
}

// NewLogger builds the program's logger.
func NewLogger(c Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if c.LogFormat == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With("program", "prover-api")
}

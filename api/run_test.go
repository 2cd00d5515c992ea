package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/api/internal/apitest"
	"github.com/openpassport/prover-fleet/api/internal/config"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// TestRun runs the program's run on real Postgres and NATS, submits a
// request with the Go client, checks the admin endpoints, and shuts it down
// by cancelling its context. It runs twice: dialing the servers the URLs
// name, and as inside an enclave, where the URLs name hosts that do not
// exist (.invalid, RFC 6761) and --nats-target / --database-target send the
// bytes to the real servers through shared/vsockdial's dialer (over TCP
// here: no vsock peer on a development machine); its listeners are given as
// tcp:// addresses, the form vsockdial.Listen shares with vsock://:PORT.
func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		targets  bool
		attester string
	}{
		{name: "direct", attester: "dev"},
		{name: "through targets", targets: true, attester: "dev-nitro"},
		{name: "development Confidential Space tokens", attester: "dev-gcp"},
		{name: "Confidential Space launcher", attester: "gcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testRun(t, tt.targets, tt.attester)
		})
	}
}

func testRun(t *testing.T, targets bool, attester string) {
	ctx := t.Context()
	dbURL := stacktest.PostgresURL(t)
	realDB := dbURL
	_, js, natsURL := stacktest.NATS(t)
	must(t, jobqueue.Setup(ctx, js, jobqueue.DefaultConfig(), family.All())) // proverctl migrate's part
	key := job.NewKey()
	keyFile := filepath.Join(t.TempDir(), "fleet.key")
	must(t, os.WriteFile(keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600))
	circuits, zkeys := apitest.FakeCircuits(t)
	attestDir := t.TempDir()
	serverAddr, adminAddr, statusAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	args := []string{
		"-s", serverAddr, "--status-address", statusAddr, "-c", circuits, "-k", zkeys,
		"--attester", attester, "--dev-attest-dir", attestDir, "--admin-address", adminAddr,
		"--job-key-file", keyFile, "--families", "register,dsc",
	}
	// The client's verifier, from the same development root (reused from
	// the directory); with gcp, a stand-in launcher signs with it.
	var opts client.Options
	switch attester {
	case "gcp", "dev-gcp":
		dev, err := attest.NewDevGCP(attest.DevGCPConfig{Dir: attestDir})
		must(t, err)
		if attester == "gcp" {
			args = append(args, "--launcher-socket", apitest.StartLauncher(t, dev))
		}
		opts.TokenVerifier, err = attest.NewTokenVerifier(attest.TokenVerifierConfig{
			Roots: []*x509.Certificate{dev.RootCert()}, AllowedImageDigests: []string{dev.ImageDigest()},
			AllowDebug: true, MaxAge: time.Minute})
		must(t, err)
	default:
		dev, err := attest.NewDev(attest.DevConfig{Dir: attestDir, ModuleID: "verifier"})
		must(t, err)
		opts.Verifier, err = attest.NewVerifier(attest.VerifierConfig{
			Roots: []*x509.Certificate{dev.RootCert()}, AllowedPCR0: [][]byte{dev.PCR0()}, MaxAge: time.Minute})
		must(t, err)
	}
	if targets {
		u, err := url.Parse(dbURL)
		must(t, err)
		dbTarget := u.Host // host:port
		u.Host = "db.prover.invalid:5432"
		dbURL = u.String()
		natsTarget := natsURL // nats://127.0.0.1:PORT
		natsURL = "nats://nats.prover.invalid:4222"
		args = append(args, "--database-target", dbTarget, "--nats-target", natsTarget,
			"-s", "tcp://"+serverAddr, "--admin-address", "tcp://"+adminAddr)
	}
	args = append(args, "-d", dbURL, "--nats-url", natsURL)
	cfg, err := config.Parse(args, func(string) (string, bool) { return "", false }, io.Discard)
	must(t, err)
	if targets && (cfg.NATSTarget == "" || cfg.DatabaseTarget == "" || !strings.Contains(cfg.DatabaseURL, ".invalid")) {
		t.Fatalf("config does not route through targets: %+v", cfg)
	}

	var logs apitest.Buffer
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- run(runCtx, cfg, slog.New(slog.NewJSONHandler(&logs, nil))) }()

	var c *client.Client
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err = client.Dial(ctx, "ws://"+serverAddr+"/", opts)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prover-api did not come up: %v\n%s", err, logs.String())
		}
		select {
		case runErr := <-done:
			t.Fatalf("run returned before serving: %v\n%s", runErr, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer c.Close()
	inputs := `{"a":"7"}`
	id, err := c.Submit(ctx, client.Request{Type: "dsc", Circuit: "dsc_sha256_rsa_65537_4096", Inputs: json.RawMessage(inputs)}, nil)
	must(t, err)
	st, err := c.Status(ctx, id)
	if err != nil || st.Status != status.Pending {
		t.Fatalf("status %+v, %v", st, err)
	}
	_, err = c.Submit(ctx, client.Request{Type: "disclose", Circuit: "vc_and_disclose", Inputs: json.RawMessage(inputs),
		EndpointType: "https", Endpoint: "https://e"}, nil)
	if !client.IsCode(err, protocol.CodeInvalidRequest) || !strings.Contains(err.Error(), "This endpoint only allows register or dsc inputs") {
		t.Fatalf("disclose on a register,dsc frontend: %v", err)
	}

	// The status relay answers the app's subscribe with the row's status,
	// and relays a verdict written straight into the table, which only its
	// LISTEN connection (dialled like the pool, through the target when
	// there is one) can see.
	ws := relaySubscribe(t, statusAddr, id)
	if got, want := relayFrame(t, ws), `42["status",{"uuid":"`+id+`","status":0}]`; got != want {
		t.Fatalf("relay: %s, want %s", got, want)
	}
	pool, err := pgxpool.New(ctx, realDB)
	must(t, err)
	defer pool.Close()
	_, err = pool.Exec(ctx, `UPDATE proofs SET status = 5, reason = 'REGISTERED_COMMITMENT' WHERE request_id = $1`, id)
	must(t, err)
	if got, want := relayFrame(t, ws), `42["status",{"uuid":"`+id+`","status":5,"error_code":"REGISTERED_COMMITMENT","reason":"REGISTERED_COMMITMENT"}]`; got != want {
		t.Fatalf("relay: %s, want %s", got, want)
	}

	// The job is on the stream, sealed with the fleet key from the file.
	cons, err := js.Consumer(ctx, jobqueue.StreamName, "dsc")
	must(t, err)
	msg, err := cons.Next()
	must(t, err)
	env, err := job.Unmarshal(msg.Data())
	must(t, err)
	sealer, err := job.NewSealer(key)
	must(t, err)
	if plain, err := sealer.Open(id, env.Sealed); err != nil || string(plain) != inputs {
		t.Fatalf("sealed inputs: %q, %v", plain, err)
	}

	// The relay's metrics, recorded as its subscription ends (just after
	// the client has its last frame).
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get("http://" + adminAddr + "/metrics")
		must(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing := ""
		for _, line := range []string{
			`prover_api_status_listener_up 1`,
			`prover_api_relay_events_sent_total{status="0"} 1`,
			`prover_api_relay_events_sent_total{status="5"} 1`,
			`prover_api_relay_subscriptions_total{outcome="final"} 1`,
			`prover_api_relay_subscriptions 0`,
		} {
			if !strings.Contains(string(body), line) {
				missing = line
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q:\n%s", missing, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		resp, err := http.Get("http://" + adminAddr + path)
		must(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
		if path == "/metrics" {
			for _, line := range []string{
				`prover_api_requests_total{method="openpassport_hello",outcome="ok"} 2`,
				`prover_api_requests_total{method="openpassport_submit_request",outcome="-32600"} 1`,
				`prover_api_enqueue_duration_seconds_count{family="dsc"} 1`,
				`prover_api_sessions_open 0`,
			} {
				if !strings.Contains(string(body), line) {
					t.Fatalf("/metrics lacks %q:\n%s", line, body)
				}
			}
		}
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after shutdown", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after its context was cancelled")
	}
	if _, err := net.DialTimeout("tcp", serverAddr, time.Second); err == nil {
		t.Fatal("the listener is still open after run returned")
	}
	if strings.Contains(logs.String(), inputs) || strings.Contains(logs.String(), hex.EncodeToString(key)) {
		t.Fatal("inputs or the fleet key appear in the logs")
	}
}

// TestRelaySharesTheConnectionLimits: the status relay's connections
// count toward the frontend's per-source cap, so one source cannot hold
// more than its share by opening them on the relay's port.
func TestRelaySharesTheConnectionLimits(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, js, natsURL := stacktest.NATS(t)
	must(t, jobqueue.Setup(ctx, js, jobqueue.DefaultConfig(), family.All()))
	keyFile := filepath.Join(t.TempDir(), "fleet.key")
	must(t, os.WriteFile(keyFile, []byte(hex.EncodeToString(job.NewKey())+"\n"), 0o600))
	circuits, zkeys := apitest.FakeCircuits(t)
	serverAddr, statusAddr := freeAddr(t), freeAddr(t)
	cfg, err := config.Parse([]string{
		"-s", serverAddr, "--status-address", statusAddr, "-c", circuits, "-k", zkeys,
		"--attester", "dev", "--dev-attest-dir", t.TempDir(), "--admin-address", "",
		"--job-key-file", keyFile, "-d", stacktest.PostgresURL(t), "--nats-url", natsURL,
		"--max-connections-per-source", "2",
	}, func(string) (string, bool) { return "", false }, io.Discard)
	must(t, err)
	var logs apitest.Buffer
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, cfg, slog.New(slog.NewJSONHandler(&logs, nil))) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	// One connection on each port: both within the cap of 2.
	ws := relaySubscribe(t, statusAddr, "00000000-0000-4000-8000-000000000000")
	defer ws.Close()
	held, err := net.Dial("tcp", serverAddr)
	must(t, err)
	defer held.Close()
	// A third, on the relay's port, is over it: answered 503 and closed,
	// at once, before any request (so read it raw: an HTTP client would
	// call it an unsolicited response).
	over, err := net.Dial("tcp", statusAddr)
	must(t, err)
	_ = over.SetReadDeadline(time.Now().Add(10 * time.Second))
	answer, _ := io.ReadAll(over)
	over.Close()
	if !strings.HasPrefix(string(answer), "HTTP/1.1 503") || !strings.Contains(string(answer), "-32000") {
		t.Fatalf("a third connection from one source on the relay's port got %q, want 503 with a -32000 error\n%s", answer, logs.String())
	}
	// Once the frontend's connection closes, the relay takes one again.
	held.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get("http://" + statusAddr + "/?EIO=4&transport=polling")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay still refuses after a connection closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// relaySubscribe opens the relay as the app's socket.io-client does (path
// "/", websocket) and subscribes to id, speaking the few framing
// characters of Engine.IO 4 and Socket.IO 5 itself.
func relaySubscribe(t *testing.T, addr, id string) *websocket.Conn {
	t.Helper()
	var (
		ws  *websocket.Conn
		err error
	)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ws, _, err = websocket.DefaultDialer.Dial("ws://"+addr+"/?EIO=4&transport=websocket", nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { ws.Close() })
	if open := relayFrame(t, ws); !strings.HasPrefix(open, "0{") {
		t.Fatalf("relay open packet %q", open)
	}
	must(t, ws.WriteMessage(websocket.TextMessage, []byte("40")))
	if got := relayFrame(t, ws); !strings.HasPrefix(got, "40{") {
		t.Fatalf("relay connect answer %q", got)
	}
	must(t, ws.WriteMessage(websocket.TextMessage, []byte(`42["subscribe","`+id+`"]`)))
	return ws
}

// relayFrame reads the relay's next frame, answering pings.
func relayFrame(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	for {
		must(t, ws.SetReadDeadline(time.Now().Add(20*time.Second)))
		_, data, err := ws.ReadMessage()
		must(t, err)
		if string(data) == "2" {
			must(t, ws.WriteMessage(websocket.TextMessage, []byte("3")))
			continue
		}
		return string(data)
	}
}

package server_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/api/server"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/store"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// The circuits the tests' fake circuit folder holds: the vectors' and one
// demo circuit per family.
var testCircuits = []string{
	"register_sha256_sha256_sha256_rsa_65537_4096",
	"dsc_sha256_rsa_65537_4096",
	"vc_and_disclose",
	"vc_and_disclose_id",
	"register_demo",
}

// fakeCircuits lays out a circuit and a zkey folder with empty files named
// as PROTOCOL.md's layout: the frontend only checks presence.
func fakeCircuits(t *testing.T) (circuits, zkeys string) {
	t.Helper()
	circuits, zkeys = t.TempDir(), t.TempDir()
	for i, name := range testCircuits {
		path := filepath.Join(circuits, name+"_cpp", name)
		if i%2 == 1 {
			path = filepath.Join(circuits, name+"_js", name+".wasm")
		}
		must(t, os.MkdirAll(filepath.Dir(path), 0o755))
		must(t, os.WriteFile(path, nil, 0o755))
		must(t, os.WriteFile(filepath.Join(zkeys, name+".zkey"), nil, 0o644))
	}
	return circuits, zkeys
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// keySlot lets a test choose the server key of the next session.
type keySlot struct {
	mu   sync.Mutex
	next *ecdh.PrivateKey
}

func (k *keySlot) set(priv *ecdh.PrivateKey) { k.mu.Lock(); k.next = priv; k.mu.Unlock() }

func (k *keySlot) generate() (*ecdh.PrivateKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.next != nil {
		p := k.next
		k.next = nil
		return p, nil
	}
	return ecdh.P256().GenerateKey(rand.Reader)
}

// switchQueue is the real publisher, made to fail on demand: the one fake
// of the suite, standing in for a JetStream that refuses.
type switchQueue struct {
	real server.Queue
	fail atomic.Bool
}

var errQueueDown = errors.New("test: queue unavailable")

func (q *switchQueue) Publish(ctx context.Context, env job.Envelope) error {
	if q.fail.Load() {
		return errQueueDown
	}
	return q.real.Publish(ctx, env)
}

// panicAttester panics on demand, to prove no panic reaches a client.
type panicAttester struct {
	attest.Attester
	panic atomic.Bool
}

func (a *panicAttester) Attest(ctx context.Context, r attest.Request) ([]byte, error) {
	if a.panic.Load() {
		panic("test: attester exploded")
	}
	return a.Attester.Attest(ctx, r)
}

// env is one frontend on real NATS JetStream and real Postgres.
type env struct {
	t        *testing.T
	srv      *server.Server
	http     *httptest.Server
	store    *store.Store
	nc       *nats.Conn
	js       jetstream.JetStream
	events   *jobqueue.Events
	sealer   *job.Sealer
	verifier *attest.Verifier
	keys     *keySlot
	queue    *switchQueue
	attester *panicAttester
	qcfg     jobqueue.Config
	logs     *syncBuffer
}

type options struct {
	families    []family.Family
	sessionTTL  time.Duration
	maxSessions int
	queue       func(*jobqueue.Config)
}

// syncBuffer collects log output for assertions.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func setup(t *testing.T, o options) *env {
	t.Helper()
	ctx := context.Background()
	pool := stacktest.Postgres(t)
	nc, js, _ := stacktest.NATS(t)
	qcfg := jobqueue.DefaultConfig()
	qcfg.Memory = true
	if o.queue != nil {
		o.queue(&qcfg)
	}
	must(t, jobqueue.Setup(ctx, js, qcfg, family.All()))
	pub, err := jobqueue.NewPublisher(js, qcfg)
	must(t, err)
	dev, err := attest.NewDev(attest.DevConfig{Dir: t.TempDir(), ModuleID: "prover-api-test"})
	must(t, err)
	verifier, err := attest.NewVerifier(attest.VerifierConfig{
		Roots: []*x509.Certificate{dev.RootCert()}, AllowedPCR0: [][]byte{dev.PCR0()}, MaxAge: time.Minute,
	})
	must(t, err)
	sealer, err := job.NewSealer(job.NewKey())
	must(t, err)
	circuits, zkeys := fakeCircuits(t)
	e := &env{
		t: t, store: store.New(pool), nc: nc, js: js, events: jobqueue.NewEvents(nc),
		sealer: sealer, verifier: verifier, keys: &keySlot{}, queue: &switchQueue{real: pub},
		attester: &panicAttester{Attester: dev}, qcfg: qcfg, logs: &syncBuffer{},
	}
	logger := slog.New(slog.NewJSONHandler(io.MultiWriter(e.logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.srv, err = server.New(server.Deps{
		Store: e.store, Queue: e.queue, Events: e.events, Attester: e.attester, Sealer: sealer,
		Logger: logger, GenerateKey: e.keys.generate,
	}, server.Config{
		Families: o.families, CircuitFolder: circuits, ZkeyFolder: zkeys,
		SessionTTL: o.sessionTTL, MaxSessions: o.maxSessions,
	})
	must(t, err)
	sweepCtx, stop := context.WithCancel(ctx)
	go e.srv.RunSessions(sweepCtx)
	e.http = httptest.NewServer(e.srv.Handler())
	t.Cleanup(func() {
		stop()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = e.srv.CloseWebSockets(cctx)
		e.http.Close()
	})
	return e
}

// testWriter sends log lines to t.Log (visible with -v or on failure).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (e *env) wsURL() string { return "ws" + strings.TrimPrefix(e.http.URL, "http") + "/" }

// reply is a JSON-RPC answer or notification as it came off the wire.
type reply struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *struct {
		Code    int64           `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// transport sends raw bodies: a WebSocket or HTTP POSTs.
type transport interface {
	name() string
	send(t *testing.T, body []byte) reply
}

type wsTransport struct{ c *websocket.Conn }

func (e *env) dialWS() *wsTransport {
	e.t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(e.wsURL(), nil)
	must(e.t, err)
	resp.Body.Close()
	e.t.Cleanup(func() { c.Close() })
	return &wsTransport{c: c}
}

func (w *wsTransport) name() string { return "websocket" }

func (w *wsTransport) send(t *testing.T, body []byte) reply {
	t.Helper()
	w.write(t, websocket.TextMessage, body)
	return w.read(t)
}

func (w *wsTransport) write(t *testing.T, typ int, body []byte) {
	t.Helper()
	must(t, w.c.SetWriteDeadline(time.Now().Add(30*time.Second)))
	must(t, w.c.WriteMessage(typ, body))
}

func (w *wsTransport) read(t *testing.T) reply {
	t.Helper()
	must(t, w.c.SetReadDeadline(time.Now().Add(30*time.Second)))
	typ, data, err := w.c.ReadMessage()
	must(t, err)
	if typ != websocket.TextMessage {
		t.Fatalf("server sent message type %d, want text", typ)
	}
	var r reply
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("server sent non-JSON %q: %v", data, err)
	}
	if r.JSONRPC != "2.0" {
		t.Fatalf("server sent %s without jsonrpc 2.0", data)
	}
	return r
}

type httpTransport struct {
	url        string
	lastStatus int
}

func (e *env) httpTransport() *httpTransport { return &httpTransport{url: e.http.URL + "/"} }

func (h *httpTransport) name() string { return "http" }

func (h *httpTransport) send(t *testing.T, body []byte) reply {
	t.Helper()
	resp, err := http.Post(h.url, "application/json", bytes.NewReader(body))
	must(t, err)
	defer resp.Body.Close()
	h.lastStatus = resp.StatusCode
	data, err := io.ReadAll(resp.Body)
	must(t, err)
	var r reply
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("HTTP %d: non-JSON %q: %v", resp.StatusCode, data, err)
	}
	return r
}

// transports returns a fresh WebSocket and the HTTP transport.
func (e *env) transports() []transport { return []transport{e.dialWS(), e.httpTransport()} }

func body(t testing.TB, id any, method string, params any) []byte {
	t.Helper()
	m := map[string]any{"jsonrpc": "2.0", "method": method}
	if id != nil {
		m["id"] = id
	}
	if params != nil {
		m["params"] = params
	}
	b, err := json.Marshal(m)
	must(t, err)
	return b
}

// wantError checks a reply's error code and exact message.
func wantError(t *testing.T, r reply, code int64, message string) {
	t.Helper()
	if r.Error == nil {
		t.Fatalf("got result %.200s, want error %d %q", r.Result, code, message)
	}
	if r.Error.Code != code || r.Error.Message != message {
		t.Fatalf("got error %d %q (data %s), want %d %q", r.Error.Code, r.Error.Message, r.Error.Data, code, message)
	}
}

func wantResult(t *testing.T, r reply, v any) {
	t.Helper()
	if r.Error != nil {
		t.Fatalf("got error %d %q (data %s)", r.Error.Code, r.Error.Message, r.Error.Data)
	}
	if v != nil {
		if err := json.Unmarshal(r.Result, v); err != nil {
			t.Fatalf("result %s: %v", r.Result, err)
		}
	}
}

// session is a client's side of a handshake done over a transport.
type session struct {
	uuid string
	key  []byte // the shared AES key
}

// hello runs a handshake and verifies the attestation like the app.
func (e *env) hello(t *testing.T, tr transport, id string) session {
	t.Helper()
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	must(t, err)
	pub := priv.PublicKey().Bytes()
	var res protocol.HelloResult
	wantResult(t, tr.send(t, body(t, 1, protocol.MethodHello, map[string]any{"user_pubkey": protocol.Bytes(pub), "uuid": id})), &res)
	doc, err := e.verifier.Verify(res.Attestation, pub)
	must(t, err)
	serverPub, err := ecdh.P256().NewPublicKey(doc.PublicKey)
	must(t, err)
	key, err := priv.ECDH(serverPub)
	must(t, err)
	return session{uuid: res.UUID, key: key}
}

// submitBody encrypts plaintext for a session into a submit body.
func (s session) submitBody(t *testing.T, plaintext string) []byte {
	t.Helper()
	nonce, ct, tag, err := handshake.Encrypt(s.key, []byte(plaintext))
	must(t, err)
	return body(t, 1, protocol.MethodSubmit, protocol.SubmitParams{UUID: s.uuid, Nonce: nonce, CipherText: ct, AuthTag: tag})
}

// request builds a plaintext request like the app's.
func request(typ, circuit, inputs string, extra map[string]any) string {
	m := map[string]any{"type": typ, "onchain": true, "circuit": map[string]any{"name": circuit, "inputs": inputs}}
	switch family.ProofType(typ).Family() {
	case family.Disclose:
		m["endpointType"], m["endpoint"] = "https", "https://example.org/verify"
	default:
		m["endpointType"] = "celo"
	}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// fetchJob takes the next job of a family off the stream.
func (e *env) fetchJob(t *testing.T, f family.Family) jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, e.qcfg.Stream, jobqueue.ConsumerName(f))
	must(t, err)
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	must(t, err)
	for m := range batch.Messages() {
		must(t, m.Ack())
		return m
	}
	t.Fatalf("no job on the %s consumer: %v", f, batch.Error())
	return nil
}

// streamCount is the number of jobs waiting on the stream.
func (e *env) streamCount(t *testing.T) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), e.qcfg.Stream)
	must(t, err)
	info, err := s.Info(context.Background())
	must(t, err)
	return info.State.Msgs
}

package server_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openpassport/prover-fleet/api/internal/apitest"
	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/family"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

type options = apitest.Options

// env is a frontend (apitest.Env) and the test using it.
type env struct {
	*apitest.Env
	t *testing.T
}

func setup(t *testing.T, o options) *env {
	t.Helper()
	return &env{Env: apitest.Start(t, o), t: t}
}

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
	c, resp, err := websocket.DefaultDialer.Dial(e.WSURL(), nil)
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

func (e *env) httpTransport() *httpTransport { return &httpTransport{url: e.HTTP.URL + "/"} }

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
	doc, err := e.Verifier.Verify(res.Attestation, pub)
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

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

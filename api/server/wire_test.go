package server_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/shared/family"
)

func clientKey(t *testing.T) []byte {
	t.Helper()
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	must(t, err)
	return priv.PublicKey().Bytes()
}

func helloBody(t *testing.T, key []byte, id string) []byte {
	return body(t, 1, protocol.MethodHello, map[string]any{"user_pubkey": protocol.Bytes(key), "uuid": id})
}

// TestErrorTable sends every row of PROTOCOL.md's error table over both
// transports and checks the exact code and message, then that the
// transport still serves.
func TestErrorTable(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	regOnly := setup(t, options{Families: []family.Family{family.Register}})
	submitWith := func(s session, nonce, ct, tag []byte) []byte {
		return body(t, 1, protocol.MethodSubmit, protocol.SubmitParams{UUID: s.uuid, Nonce: nonce, CipherText: ct, AuthTag: tag})
	}
	offCurve := clientKey(t)
	offCurve[64] ^= 1

	rows := []struct {
		name    string
		env     *env
		run     func(t *testing.T, tr transport) reply
		code    int64
		message string
	}{
		{"key of 64 bytes", e, func(t *testing.T, tr transport) reply {
			return tr.send(t, helloBody(t, clientKey(t)[1:], uuid.NewString()))
		}, -32600, "Public key must be 33 or 65 bytes"},
		{"key of 0 bytes", e, func(t *testing.T, tr transport) reply {
			return tr.send(t, helloBody(t, []byte{}, uuid.NewString()))
		}, -32600, "Public key must be 33 or 65 bytes"},
		{"key not on the curve", e, func(t *testing.T, tr transport) reply {
			return tr.send(t, helloBody(t, offCurve, uuid.NewString()))
		}, -32602, "Public key is not a valid P-256 point"},
		{"compressed key not on the curve", e, func(t *testing.T, tr transport) reply {
			return tr.send(t, helloBody(t, compressedOffCurve(t), uuid.NewString()))
		}, -32602, "Public key is not a valid P-256 point"},
		{"uuid already has a session", e, func(t *testing.T, tr transport) reply {
			id := uuid.NewString()
			e.hello(t, tr, id)
			return tr.send(t, helloBody(t, clientKey(t), id))
		}, -32600, "UUID already exists"},
		{"nonce of 11 bytes", e, func(t *testing.T, tr transport) reply {
			s := e.hello(t, tr, uuid.NewString())
			return tr.send(t, submitWith(s, make([]byte, 11), []byte{1}, make([]byte, 16)))
		}, -32600, "Nonce must be 12 bytes"},
		{"tag of 15 bytes", e, func(t *testing.T, tr transport) reply {
			s := e.hello(t, tr, uuid.NewString())
			return tr.send(t, submitWith(s, make([]byte, 12), []byte{1}, make([]byte, 15)))
		}, -32600, "Auth tag must be 16 bytes"},
		{"no session", e, func(t *testing.T, tr transport) reply {
			return tr.send(t, submitWith(session{uuid: uuid.NewString()}, make([]byte, 12), []byte{1}, make([]byte, 16)))
		}, -32600, "UUID not found"},
		{"authentication fails", e, func(t *testing.T, tr transport) reply {
			s := e.hello(t, tr, uuid.NewString())
			return tr.send(t, submitWith(s, make([]byte, 12), []byte("forged"), make([]byte, 16)))
		}, -32600, "Failed to decrypt text"},
		{"JSON does not parse", e, func(t *testing.T, tr transport) reply {
			return tr.send(t, e.hello(t, tr, uuid.NewString()).submitBody(t, `{"type":"register",`))
		}, -32600, "Failed to parse proof request"},
		{"payload of the wrong shape", e, func(t *testing.T, tr transport) reply {
			return tr.send(t, e.hello(t, tr, uuid.NewString()).submitBody(t, `{"type":"register","circuit":{"name":"register_demo","inputs":{"a":1}}}`))
		}, -32600, "Failed to parse proof request"},
		{"type not served here", regOnly, func(t *testing.T, tr transport) reply {
			return tr.send(t, regOnly.hello(t, tr, uuid.NewString()).submitBody(t, request("dsc", "dsc_sha256_rsa_65537_4096", `{}`, nil)))
		}, -32600, "This endpoint only allows register inputs"},
		{"unknown circuit", e, func(t *testing.T, tr transport) reply {
			return tr.send(t, e.hello(t, tr, uuid.NewString()).submitBody(t, request("register", "register_nope", `{}`, nil)))
		}, -32600, "Could not find the given circuit name: register_nope"},
		{"could not enqueue", e, func(t *testing.T, tr transport) reply {
			s := e.hello(t, tr, uuid.NewString())
			e.Queue.Fail.Store(true)
			defer e.Queue.Fail.Store(false)
			return tr.send(t, s.submitBody(t, request("register", "register_demo", `{}`, nil)))
		}, -32603, "Could not queue the proof request, retry with a new hello"},
	}
	for _, mk := range []func(*env) transport{
		func(e *env) transport { return e.dialWS() },
		func(e *env) transport { return e.httpTransport() },
	} {
		for _, row := range rows {
			tr := mk(row.env)
			t.Run(tr.name()+"/"+row.name, func(t *testing.T) {
				wantError(t, row.run(t, tr), row.code, row.message)
				var ok string
				wantResult(t, tr.send(t, body(t, 2, protocol.MethodHealth, nil)), &ok)
			})
		}
	}
}

// TestMalformedMessages: garbage, wrong shapes and wrong types get a
// clear JSON-RPC error, and the same socket answers the next request.
func TestMalformedMessages(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	cases := []struct {
		name    string
		msg     string
		code    int64
		message string
		id      string // the id the error must carry
	}{
		{"not JSON", `hello?`, -32700, "Parse error", "null"},
		{"truncated JSON", `{"jsonrpc":"2.0","id":1,"method":"openpassport_health"`, -32700, "Parse error", "null"},
		{"empty", ``, -32700, "Parse error", "null"},
		{"invalid UTF-8 inside a string", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}", -32601, "Method not found", "1"},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"openpassport_health"}]`, -32600, "Invalid Request: batch requests are not supported", "null"},
		{"string", `"openpassport_health"`, -32600, "Invalid Request", "null"},
		{"number", `42`, -32600, "Invalid Request", "null"},
		{"no method", `{"jsonrpc":"2.0","id":5}`, -32600, "Invalid Request", "5"},
		{"method a number", `{"jsonrpc":"2.0","id":5,"method":7}`, -32600, "Invalid Request", "5"},
		{"method null", `{"jsonrpc":"2.0","id":5,"method":null}`, -32600, "Invalid Request", "5"},
		{"id an object", `{"jsonrpc":"2.0","id":{"a":1},"method":"openpassport_health"}`, -32600, "Invalid Request", "null"},
		{"unknown method", `{"jsonrpc":"2.0","id":"x","method":"eth_call"}`, -32601, "Method not found", `"x"`},
		{"params a string", `{"jsonrpc":"2.0","id":1,"method":"openpassport_hello","params":"x"}`, -32602, "Invalid params: params must be an object or an array", "1"},
		{"key as base64", `{"jsonrpc":"2.0","id":1,"method":"openpassport_hello","params":{"user_pubkey":"BAAA","uuid":"550e8400-e29b-41d4-a716-446655440009"}}`,
			-32602, `Invalid params: param "user_pubkey": want an array of integers 0..255, got a string`, "1"},
		{"key byte 256", `{"jsonrpc":"2.0","id":1,"method":"openpassport_hello","params":{"user_pubkey":[4,256],"uuid":"550e8400-e29b-41d4-a716-446655440009"}}`,
			-32602, `Invalid params: param "user_pubkey": element 1 is out of range: want an integer 0..255`, "1"},
		{"uuid a number", `{"jsonrpc":"2.0","id":1,"method":"openpassport_hello","params":{"user_pubkey":[4],"uuid":7}}`,
			-32602, `Invalid params: param "uuid": want a string, got a JSON number`, "1"},
		{"uuid missing", `{"jsonrpc":"2.0","id":1,"method":"openpassport_submit_request","params":{"nonce":[1],"cipher_text":[1],"auth_tag":[1]}}`,
			-32602, `Invalid params: param "uuid": is required`, "1"},
		{"uuid not a uuid", `{"jsonrpc":"2.0","id":1,"method":"openpassport_hello","params":{"user_pubkey":` + intsJSONBytes(clientKey(t)) + `,"uuid":"abc"}}`,
			-32602, `Invalid params: param "uuid": must be a UUID`, "1"},
		{"too many positional", `{"jsonrpc":"2.0","id":1,"method":"openpassport_status","params":["a","b"]}`,
			-32602, "Invalid params: too many positional params: got 2, want at most 1", "1"},
		{"attestation user_data too large", `{"jsonrpc":"2.0","id":1,"method":"openpassport_attestation","params":{"user_data":` + intsJSONBytes(make([]byte, 513)) + `}}`,
			-32602, `Invalid params: param "user_data": is 513 bytes, at most 512 allowed`, "1"},
	}
	ws, ht := e.dialWS(), e.httpTransport()
	for _, tr := range []transport{ws, ht} {
		for _, c := range cases {
			t.Run(tr.name()+"/"+c.name, func(t *testing.T) {
				r := tr.send(t, []byte(c.msg))
				wantError(t, r, c.code, c.message)
				if string(r.ID) != c.id {
					t.Fatalf("error id %s, want %s", r.ID, c.id)
				}
				if h, ok := tr.(*httpTransport); ok && h.lastStatus != http.StatusOK {
					t.Fatalf("HTTP status %d, want 200", h.lastStatus)
				}
				var s string
				wantResult(t, tr.send(t, body(t, 9, protocol.MethodHealth, nil)), &s)
				if s != "OK" {
					t.Fatalf("health answered %q", s)
				}
			})
		}
	}

	t.Run("websocket/binary frame", func(t *testing.T) {
		ws.write(t, websocket.BinaryMessage, []byte{0, 1, 2, 0xff})
		wantError(t, ws.read(t), -32700, "Parse error: binary WebSocket messages are not supported, send JSON-RPC as text")
		ws.write(t, websocket.BinaryMessage, body(t, 1, protocol.MethodHealth, nil))
		wantError(t, ws.read(t), -32700, "Parse error: binary WebSocket messages are not supported, send JSON-RPC as text")
		wantResult(t, ws.send(t, body(t, 2, protocol.MethodHealth, nil)), nil)
	})
	t.Run("websocket/notification gets no answer", func(t *testing.T) {
		ws.write(t, websocket.TextMessage, body(t, nil, protocol.MethodHealth, nil))
		r := ws.send(t, body(t, 3, protocol.MethodHealth, nil))
		if string(r.ID) != "3" {
			t.Fatalf("got %+v, want the answer to id 3 only", r)
		}
	})
	t.Run("http/notification is 204", func(t *testing.T) {
		resp, err := http.Post(e.HTTP.URL+"/", "application/json", bytes.NewReader(body(t, nil, protocol.MethodHealth, nil)))
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status %d, want 204", resp.StatusCode)
		}
	})
	t.Run("http/GET without upgrade", func(t *testing.T) {
		resp, err := http.Get(e.HTTP.URL + "/")
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	})
	t.Run("string id echoed", func(t *testing.T) {
		r := ws.send(t, []byte(`{"jsonrpc":"2.0","id":"abc","method":"openpassport_health"}`))
		if string(r.ID) != `"abc"` || string(r.Result) != `"OK"` {
			t.Fatalf("got %+v", r)
		}
		r = ws.send(t, []byte(`{"jsonrpc":"2.0","id":null,"method":"openpassport_health"}`))
		if string(r.ID) != `null` || string(r.Result) != `"OK"` {
			t.Fatalf("null id: got %+v", r)
		}
	})
}

// compressedOffCurve returns a 33-byte key whose X is on no P-256 point
// (about half of all X values are).
func compressedOffCurve(t *testing.T) []byte {
	t.Helper()
	for x := byte(1); x < 255; x++ {
		k := make([]byte, 33)
		k[0], k[32] = 2, x
		if _, err := handshake.ParseClientKey(k); errors.Is(err, handshake.ErrNotOnCurve) {
			return k
		}
	}
	t.Fatal("no small X off the curve")
	return nil
}

func intsJSONBytes(b []byte) string {
	out, _ := protocol.Bytes(b).MarshalJSON()
	return string(out)
}

// TestOversizedBodies: a message over 10 MiB is refused with a clear error
// on both transports; the WebSocket stays open and the server serves on.
func TestOversizedBodies(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	big := append([]byte(`{"jsonrpc":"2.0","id":1,"method":"openpassport_submit_request","params":{"cipher_text":[`),
		bytes.Repeat([]byte("1,"), 5<<20+10)...)
	big = append(big, []byte(`1]}}`)...)
	const message = "Request too large: the limit is 10485760 bytes"

	ws := e.dialWS()
	wantError(t, ws.send(t, big), -32600, message)
	wantResult(t, ws.send(t, body(t, 2, protocol.MethodHealth, nil)), nil)
	// Garbage over the limit too.
	ws.write(t, websocket.BinaryMessage, bytes.Repeat([]byte{0xfe}, 11<<20))
	wantError(t, ws.read(t), -32600, message)
	wantResult(t, ws.send(t, body(t, 3, protocol.MethodHealth, nil)), nil)

	resp, err := http.Post(e.HTTP.URL+"/", "application/json", bytes.NewReader(big))
	must(t, err)
	var r reply
	must(t, json.NewDecoder(resp.Body).Decode(&r))
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("HTTP status %d, want 413", resp.StatusCode)
	}
	wantError(t, r, -32600, message)
	wantResult(t, e.httpTransport().send(t, body(t, 4, protocol.MethodHealth, nil)), nil)
}

// TestSessionRules: expiry, a full table, duplicate uuids and the one
// submit a session allows, over the wire.
func TestSessionRules(t *testing.T) {
	t.Parallel()
	plain := request("register", "register_demo", `{"a":"1"}`, nil)

	t.Run("expiry", func(t *testing.T) {
		t.Parallel()
		e := setup(t, options{SessionTTL: 500 * time.Millisecond})
		ws := e.dialWS()
		s := e.hello(t, ws, uuid.NewString())
		time.Sleep(700 * time.Millisecond)
		wantError(t, ws.send(t, s.submitBody(t, plain)), -32600, "UUID not found")
		// The uuid is free again.
		s = e.hello(t, ws, s.uuid)
		wantResult(t, ws.send(t, s.submitBody(t, plain)), nil)
	})
	t.Run("server busy never evicts", func(t *testing.T) {
		t.Parallel()
		e := setup(t, options{MaxSessions: 2})
		ws := e.dialWS()
		a := e.hello(t, ws, uuid.NewString())
		b := e.hello(t, e.httpTransport(), uuid.NewString())
		for _, tr := range e.transports() {
			wantError(t, tr.send(t, helloBody(t, clientKey(t), uuid.NewString())), -32000,
				"Server busy: too many open sessions, retry later")
		}
		// Both live sessions still work, and free their slots.
		wantResult(t, ws.send(t, a.submitBody(t, plain)), nil)
		wantResult(t, ws.send(t, b.submitBody(t, plain)), nil)
		e.hello(t, ws, uuid.NewString())
	})
	t.Run("a refused recorded uuid leaves no session behind", func(t *testing.T) {
		t.Parallel()
		// One session slot: a session left open by a refused hello would
		// make the next fresh hello "Server busy".
		e := setup(t, options{MaxSessions: 1})
		ws := e.dialWS()
		s := e.hello(t, ws, uuid.NewString())
		wantResult(t, ws.send(t, s.submitBody(t, plain)), nil)
		for range 3 {
			wantError(t, ws.send(t, helloBody(t, clientKey(t), s.uuid)), -32600, "UUID already exists")
		}
		fresh := e.hello(t, ws, uuid.NewString())
		wantResult(t, ws.send(t, fresh.submitBody(t, plain)), nil)
	})
	t.Run("duplicate uuid", func(t *testing.T) {
		t.Parallel()
		e := setup(t, options{})
		for _, tr := range e.transports() {
			id := uuid.NewString()
			s := e.hello(t, tr, id)
			// A live session: refused, over either transport, any case.
			wantError(t, tr.send(t, helloBody(t, clientKey(t), strings.ToUpper(id))), -32600, "UUID already exists")
			wantResult(t, tr.send(t, s.submitBody(t, plain)), nil)
			// A recorded request: refused too.
			wantError(t, tr.send(t, helloBody(t, clientKey(t), id)), -32600, "UUID already exists")
		}
	})
	t.Run("one submit per session", func(t *testing.T) {
		t.Parallel()
		e := setup(t, options{})
		for _, tr := range e.transports() {
			s := e.hello(t, tr, uuid.NewString())
			nonce, ct, tag, err := handshake.Encrypt(s.key, []byte(plain))
			must(t, err)
			bad := bytes.Clone(tag)
			bad[0] ^= 1
			wantError(t, tr.send(t, body(t, 1, protocol.MethodSubmit, protocol.SubmitParams{UUID: s.uuid, Nonce: nonce, CipherText: ct, AuthTag: bad})),
				-32600, "Failed to decrypt text")
			wantError(t, tr.send(t, body(t, 1, protocol.MethodSubmit, protocol.SubmitParams{UUID: s.uuid, Nonce: nonce, CipherText: ct, AuthTag: tag})),
				-32600, "UUID not found")
			// After a success the session is gone as well.
			s = e.hello(t, tr, uuid.NewString())
			b := s.submitBody(t, plain)
			wantResult(t, tr.send(t, b), nil)
			wantError(t, tr.send(t, b), -32600, "UUID not found")
		}
	})
}

// TestPanicRecovered: a method that panics answers -32603 and the
// connection and server keep serving.
func TestPanicRecovered(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	for _, tr := range e.transports() {
		e.Attester.Panic.Store(true)
		wantError(t, tr.send(t, helloBody(t, clientKey(t), uuid.NewString())), -32603, "Internal error")
		e.Attester.Panic.Store(false)
		e.hello(t, tr, uuid.NewString())
	}
	if !strings.Contains(e.Logs.String(), "method panicked") {
		t.Fatal("the panic was not logged")
	}
}

// TestPositionalParams runs the handshake with params by position.
func TestPositionalParams(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	for _, tr := range e.transports() {
		priv, err := ecdh.P256().GenerateKey(rand.Reader)
		must(t, err)
		pub := priv.PublicKey().Bytes()
		var res protocol.HelloResult
		wantResult(t, tr.send(t, body(t, 1, protocol.MethodHello, []any{protocol.Bytes(pub), uuid.NewString()})), &res)
		doc, err := e.Verifier.Verify(res.Attestation, pub)
		must(t, err)
		serverPub, err := ecdh.P256().NewPublicKey(doc.PublicKey)
		must(t, err)
		key, err := priv.ECDH(serverPub)
		must(t, err)
		nonce, ct, tag, err := handshake.Encrypt(key, []byte(request("register", "register_demo", `{"a":"1"}`, nil)))
		must(t, err)
		var got string
		wantResult(t, tr.send(t, body(t, 1, protocol.MethodSubmit,
			[]any{res.UUID, protocol.Bytes(nonce), protocol.Bytes(ct), protocol.Bytes(tag)})), &got)
		if got != res.UUID {
			t.Fatalf("submit answered %q", got)
		}
	}
}

func TestAttestationAndHealth(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	for _, tr := range e.transports() {
		var ok string
		wantResult(t, tr.send(t, body(t, 1, protocol.MethodHealth, nil)), &ok)
		if ok != "OK" {
			t.Fatalf("health = %q", ok)
		}
		userData, nonce, pub := []byte("user data"), []byte{1, 2, 3}, clientKey(t)
		var doc protocol.Bytes
		wantResult(t, tr.send(t, body(t, 1, protocol.MethodAttestation, map[string]any{
			"user_data": protocol.Bytes(userData), "nonce": protocol.Bytes(nonce), "public_key": protocol.Bytes(pub)})), &doc)
		d, err := e.Verifier.Verify(doc, userData)
		must(t, err)
		if !bytes.Equal(d.Nonce, nonce) || !bytes.Equal(d.PublicKey, pub) {
			t.Fatalf("document binds nonce %x and key %x", d.Nonce, d.PublicKey)
		}
		wantResult(t, tr.send(t, body(t, 1, protocol.MethodAttestation, nil)), &doc)
		if d, err = e.Verifier.Verify(doc, nil); err != nil || d.UserData != nil || d.PublicKey != nil {
			t.Fatalf("empty attestation: %+v, %v", d, err)
		}
	}
}

package server_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

// post sends one JSON-RPC call over HTTP without a *testing.T, for use
// from many goroutines at once.
func post(url, method string, params any) (reply, error) {
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	if err != nil {
		return reply{}, err
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	var r reply
	if err := json.Unmarshal(data, &r); err != nil {
		return reply{}, fmt.Errorf("HTTP %d: %q: %w", resp.StatusCode, data, err)
	}
	return r, nil
}

// pair runs hello and submit for id over HTTP; it returns the error
// reply, if any.
func (e *env) pair(id, plain string) (*reply, error) {
	url := e.HTTP.URL + "/"
	s, r, err := e.helloAt(url, id)
	if err != nil || r != nil {
		return r, err
	}
	return s.submitAt(url, plain)
}

// helloAt runs a handshake for id with the frontend at url.
func (e *env) helloAt(url, id string) (session, *reply, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return session{}, nil, err
	}
	pub := priv.PublicKey().Bytes()
	r, err := post(url, protocol.MethodHello, map[string]any{"user_pubkey": protocol.Bytes(pub), "uuid": id})
	if err != nil || r.Error != nil {
		return session{}, &r, err
	}
	var res protocol.HelloResult
	if err := json.Unmarshal(r.Result, &res); err != nil {
		return session{}, nil, err
	}
	doc, err := e.Verifier.Verify(res.Attestation, pub)
	if err != nil {
		return session{}, nil, err
	}
	serverPub, err := ecdh.P256().NewPublicKey(doc.PublicKey)
	if err != nil {
		return session{}, nil, err
	}
	key, err := priv.ECDH(serverPub)
	if err != nil {
		return session{}, nil, err
	}
	return session{uuid: res.UUID, key: key}, nil, nil
}

// submitAt sends the session's one submit to the frontend at url.
func (s session) submitAt(url, plain string) (*reply, error) {
	nonce, ct, tag, err := handshake.Encrypt(s.key, []byte(plain))
	if err != nil {
		return nil, err
	}
	r, err := post(url, protocol.MethodSubmit, protocol.SubmitParams{UUID: s.uuid, Nonce: nonce, CipherText: ct, AuthTag: tag})
	if err != nil || r.Error != nil {
		return &r, err
	}
	var got string
	if err := json.Unmarshal(r.Result, &got); err != nil || got != s.uuid {
		return nil, fmt.Errorf("submit answered %s, want %q (%v)", r.Result, s.uuid, err)
	}
	return nil, nil
}

// TestConcurrentPairs: many hellos and submits at once share the store's
// round trips (lookups and inserts are grouped); each still gets its own
// answer: a recorded uuid is refused at hello, every accepted submit has
// its row and its job, and nothing else is recorded or queued.
func TestConcurrentPairs(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	ctx := t.Context()
	plain := request("register", "register_demo", `{"x":"7"}`, nil)
	const fresh, taken = 48, 16
	recorded := make(map[string]bool)
	for range taken {
		id := uuid.NewString()
		must(t, e.Store.Insert(ctx, store.Request{ID: id, ProofType: "register", Circuit: "register_demo", Version: 1}))
		recorded[id] = true
	}
	ids := make([]string, 0, fresh+taken)
	for id := range recorded {
		ids = append(ids, id)
	}
	for range fresh {
		ids = append(ids, uuid.NewString())
	}
	type outcome struct {
		id  string
		r   *reply
		err error
	}
	out := make(chan outcome, len(ids))
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			r, err := e.pair(id, plain)
			out <- outcome{id, r, err}
		})
	}
	wg.Wait()
	close(out)
	accepted := 0
	for o := range out {
		switch {
		case o.err != nil:
			t.Errorf("%s: %v", o.id, o.err)
		case recorded[o.id]:
			if o.r == nil || o.r.Error == nil || o.r.Error.Code != -32600 || o.r.Error.Message != "UUID already exists" {
				t.Errorf("%s (recorded): %+v, want -32600 UUID already exists", o.id, o.r)
			}
		case o.r != nil:
			t.Errorf("%s: error %+v", o.id, o.r.Error)
		default:
			accepted++
			p, err := e.Store.Get(ctx, o.id)
			if err != nil || p.Status != status.Pending || p.Circuit != "register_demo" || !p.Onchain || p.EndpointType != "celo" {
				t.Errorf("%s: row %+v, %v", o.id, p, err)
			}
		}
	}
	if accepted != fresh {
		t.Fatalf("%d pairs accepted, want %d", accepted, fresh)
	}
	if n := e.StreamCount(t); n != fresh {
		t.Fatalf("%d jobs queued, want %d", n, fresh)
	}
}

// TestShutdownDrainsSubmits: submits in flight when Serve is told to stop
// are finished (their batched inserts included) before it returns, and a
// submit is answered with success exactly when its row is recorded and its
// job queued.
func TestShutdownDrainsSubmits(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- e.Server.Serve(ctx, ln) }()
	url := "http://" + ln.Addr().String() + "/"
	plain := request("register", "register_demo", `{"x":"9"}`, nil)

	const n = 32
	sessions := make([]session, n)
	for i := range sessions {
		s, r, err := e.helloAt(url, uuid.NewString())
		if err != nil || r != nil {
			t.Fatalf("hello: %v %+v", err, r)
		}
		sessions[i] = s
	}
	answered := make([]bool, n)
	first := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() {
			r, err := s.submitAt(url, plain)
			answered[i] = err == nil && r == nil
			if answered[i] {
				once.Do(func() { close(first) })
			}
		})
	}
	go func() { wg.Wait(); once.Do(func() { close(first) }) }() // none succeeded: fail below, don't hang
	<-first
	stop() // while the other submits are on their way or in flight
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	wg.Wait()
	ok := 0
	for i, s := range sessions {
		recorded, err := e.Store.Exists(t.Context(), s.uuid)
		must(t, err)
		if recorded != answered[i] {
			t.Errorf("%s: answered with success %v, recorded %v", s.uuid, answered[i], recorded)
		}
		if answered[i] {
			ok++
		}
	}
	if q := e.StreamCount(t); q != uint64(ok) {
		t.Fatalf("%d jobs queued for %d accepted submits", q, ok)
	}
	t.Logf("%d of %d submits were accepted before the shutdown", ok, n)
}

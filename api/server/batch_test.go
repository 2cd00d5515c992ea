package server_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/protocol"
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

// pair runs hello and submit for id; it returns the error reply, if any.
func (e *env) pair(id, plain string) (*reply, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	pub := priv.PublicKey().Bytes()
	url := e.HTTP.URL + "/"
	r, err := post(url, protocol.MethodHello, map[string]any{"user_pubkey": protocol.Bytes(pub), "uuid": id})
	if err != nil || r.Error != nil {
		return &r, err
	}
	var res protocol.HelloResult
	if err := json.Unmarshal(r.Result, &res); err != nil {
		return nil, err
	}
	doc, err := e.Verifier.Verify(res.Attestation, pub)
	if err != nil {
		return nil, err
	}
	serverPub, err := ecdh.P256().NewPublicKey(doc.PublicKey)
	if err != nil {
		return nil, err
	}
	key, err := priv.ECDH(serverPub)
	if err != nil {
		return nil, err
	}
	nonce, ct, tag, err := handshake.Encrypt(key, []byte(plain))
	if err != nil {
		return nil, err
	}
	r, err = post(url, protocol.MethodSubmit, protocol.SubmitParams{UUID: res.UUID, Nonce: nonce, CipherText: ct, AuthTag: tag})
	if err != nil || r.Error != nil {
		return &r, err
	}
	var got string
	if err := json.Unmarshal(r.Result, &got); err != nil || got != id {
		return nil, fmt.Errorf("submit answered %s, want %q (%v)", r.Result, id, err)
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
	ctx := context.Background()
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
			if err != nil || p.Status != store.Pending || p.Circuit != "register_demo" || !p.Onchain || p.EndpointType != "celo" {
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

package client_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/api/internal/apitest"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/status"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func dial(t *testing.T, e *apitest.Env, url string, opts client.Options) *client.Client {
	t.Helper()
	if opts.Verifier == nil {
		opts.Verifier = e.Verifier
	}
	c, err := client.Dial(t.Context(), url, opts)
	must(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// recorder keeps the progress events.
type recorder struct {
	mu     sync.Mutex
	events []client.Event
}

func (r *recorder) progress(ev client.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) trail() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		s := string(ev.Stage)
		if ev.Stage == client.StageStatus {
			s += "=" + string(rune('0'+ev.Status.Status))
		}
		out = append(out, s)
	}
	return out
}

// waitFor waits until the trail holds step.
func (r *recorder) waitFor(t *testing.T, step string) {
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(r.trail(), step) {
		if time.Now().After(deadline) {
			t.Errorf("progress never reached %s: %v", step, r.trail())
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// work plays a worker: it takes the job, checks the sealed inputs, and
// moves the row to proven, announcing each step.
func work(t *testing.T, e *apitest.Env, f family.Family, wantInputs string, announce bool, before func(code status.Code)) string {
	t.Helper()
	ctx := t.Context()
	msg := e.FetchJob(t, f)
	env, err := job.Unmarshal(msg.Data())
	must(t, err)
	inputs, err := e.Sealer.Open(env.RequestID, env.Sealed)
	must(t, err)
	if string(inputs) != wantInputs {
		t.Errorf("worker got inputs %s, want %s", inputs, wantInputs)
	}
	step := func(code status.Code) {
		if announce {
			must(t, e.Events.PublishStatus(ctx, job.StatusEvent{RequestID: env.RequestID, Status: code, At: time.Now()}))
		}
	}
	if before != nil {
		before(1)
	}
	_, err = e.Store.MarkWitnessGenerated(ctx, env.RequestID)
	must(t, err)
	step(1)
	if before != nil {
		before(2)
	}
	_, err = e.Store.MarkProofGenerated(ctx, env.RequestID, json.RawMessage(`{"protocol":"groth16"}`), []string{"1", "2"})
	must(t, err)
	step(2)
	return env.RequestID
}

func TestSubmitAndWait(t *testing.T) {
	t.Parallel()
	e := apitest.Start(t, apitest.Options{})
	inputs := `{"secret":"1234","dg1":["1","2","3"]}`
	cases := []struct {
		name string
		url  string
		opts client.Options
	}{
		{"websocket", e.WSURL(), client.Options{}},
		{"websocket, compressed key", e.WSURL(), client.Options{CompressedKey: true}},
		{"http polling", e.HTTP.URL + "/", client.Options{PollInterval: 50 * time.Millisecond}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, e, tc.url, tc.opts)
			must(t, c.Health(t.Context()))
			var rec recorder
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			id, err := c.Submit(ctx, client.Request{Type: "register", Circuit: "register_demo", Inputs: json.RawMessage(inputs), EndpointType: "celo"}, rec.progress)
			must(t, err)
			done := make(chan string)
			// The worker takes each step once the client has seen the
			// previous status, so the trail is deterministic.
			go func() {
				done <- work(t, e, family.Register, inputs, true, func(next status.Code) {
					rec.waitFor(t, "status="+string(rune('0'+next-1)))
				})
			}()
			final, err := c.Wait(ctx, id, rec.progress)
			must(t, err)
			if worked := <-done; worked != id {
				t.Fatalf("worker proved %s, client submitted %s", worked, id)
			}
			if final.Status != status.ProofGenerated || !final.HasProof() || !slices.Equal(final.PublicInputs, []string{"1", "2"}) {
				t.Fatalf("final status %+v", final)
			}
			trail := rec.trail()
			if !slices.Equal(trail[:3], []string{"hello", "attested", "submitted"}) || trail[len(trail)-1] != "status=2" {
				t.Fatalf("progress %v", trail)
			}
			if c.WebSocket() && !slices.Equal(trail, []string{"hello", "attested", "submitted", "status=0", "status=1", "status=2"}) {
				t.Fatalf("progress over a subscription %v, want every status", trail)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	e := apitest.Start(t, apitest.Options{})
	ctx := t.Context()
	for _, url := range []string{e.WSURL(), e.HTTP.URL + "/"} {
		c := dial(t, e, url, client.Options{})
		_, err := c.Status(ctx, uuid.NewString())
		var se *client.Error
		if !errors.As(err, &se) || se.Code != protocol.CodeInvalidRequest || se.Message != protocol.MsgUUIDNotFound ||
			!client.IsCode(err, -32600) {
			t.Fatalf("%s: Status of an unknown uuid: %v", url, err)
		}
		_, err = c.Submit(ctx, client.Request{Type: "register", Circuit: "nope", Inputs: json.RawMessage(`{}`)}, nil)
		if !errors.As(err, &se) || se.Message != "Could not find the given circuit name: nope" {
			t.Fatalf("%s: Submit of an unknown circuit: %v", url, err)
		}
		_, err = c.Hello(ctx, uuid.NewString(), []byte{4, 1, 2})
		if !errors.As(err, &se) || se.Message != protocol.MsgKeyLength {
			t.Fatalf("%s: Hello with a short key: %v", url, err)
		}
	}
	noVerifier, err := client.Dial(ctx, e.WSURL(), client.Options{})
	must(t, err)
	defer noVerifier.Close()
	if _, err := noVerifier.Submit(ctx, client.Request{Type: "register", Circuit: "register_demo", Inputs: json.RawMessage(`{}`)}, nil); err == nil {
		t.Fatal("Submit ran without a verifier")
	}
	h := dial(t, e, e.HTTP.URL+"/", client.Options{})
	if err := h.Subscribe(ctx, uuid.NewString(), func(protocol.Status) {}); !errors.Is(err, client.ErrNoSubscription) {
		t.Fatalf("Subscribe over HTTP: %v", err)
	}
	if _, err := client.Dial(ctx, "ftp://x/", client.Options{}); err == nil {
		t.Fatal("Dial accepted ftp://")
	}
}

// TestAttestationRejected: a document from an unpinned root stops the
// client before it encrypts anything; nothing is recorded.
func TestAttestationRejected(t *testing.T) {
	t.Parallel()
	e := apitest.Start(t, apitest.Options{})
	other, err := attest.NewDev(attest.DevConfig{Dir: t.TempDir(), ModuleID: "someone-else"})
	must(t, err)
	wrong, err := attest.NewVerifier(attest.VerifierConfig{Roots: []*x509.Certificate{other.RootCert()}, AllowAnyPCR0: true, MaxAge: time.Minute})
	must(t, err)
	c := dial(t, e, e.WSURL(), client.Options{Verifier: wrong})
	id := uuid.NewString()
	_, err = c.Submit(t.Context(), client.Request{UUID: id, Type: "register", Circuit: "register_demo", Inputs: json.RawMessage(`{}`)}, nil)
	if !errors.Is(err, client.ErrAttestation) || !errors.Is(err, attest.ErrUntrustedRoot) {
		t.Fatalf("Submit with a foreign attestation root: %v", err)
	}
	if ok, err := e.Store.Exists(t.Context(), id); err != nil || ok {
		t.Fatalf("request recorded after a rejected attestation (%v, %v)", ok, err)
	}
}

// Only the submitter cancels: another client, with its own request's token
// or none, is refused and the request stays pending; the submitter's
// receipt cancels it, over either transport.
func TestCancel(t *testing.T) {
	t.Parallel()
	e := apitest.Start(t, apitest.Options{})
	ctx := t.Context()
	for _, url := range []string{e.WSURL(), e.HTTP.URL + "/"} {
		c := dial(t, e, url, client.Options{})
		other := dial(t, e, url, client.Options{})
		req := client.Request{Type: "disclose", Circuit: "vc_and_disclose", Inputs: json.RawMessage(`{"a":"1"}`),
			EndpointType: "https", Endpoint: "https://example.org"}
		rc, err := c.SubmitReceipt(ctx, req, nil)
		must(t, err)
		if len(rc.CancelToken) != 32 {
			t.Fatalf("receipt token has %d bytes", len(rc.CancelToken))
		}
		theirs, err := other.SubmitReceipt(ctx, req, nil)
		must(t, err)
		for name, token := range map[string][]byte{"another request's token": theirs.CancelToken, "a made-up token": make([]byte, 32), "none": nil} {
			_, err := other.Cancel(ctx, rc.UUID, token)
			var se *client.Error
			if !errors.As(err, &se) || se.Code != protocol.CodeNotSubmitter || se.Message != protocol.MsgNotSubmitter {
				t.Fatalf("%s: Cancel = %v, want %d %q", name, err, protocol.CodeNotSubmitter, protocol.MsgNotSubmitter)
			}
		}
		if st, err := c.Status(ctx, rc.UUID); err != nil || st.Status != status.Pending {
			t.Fatalf("status after refused cancels: %+v, %v", st, err)
		}
		testCancelled(t, ctx, c, rc)
	}
}

func testCancelled(t *testing.T, ctx context.Context, c *client.Client, rc client.Receipt) {
	t.Helper()
	id := rc.UUID
	res, err := c.Cancel(ctx, id, rc.CancelToken)
	must(t, err)
	if !res.Cancelled || res.Status != status.Failed {
		t.Fatalf("Cancel = %+v", res)
	}
	final, err := c.Wait(ctx, id, nil)
	must(t, err)
	if final.Status != status.Failed || final.Reason == nil || *final.Reason != protocol.CancelReason {
		t.Fatalf("Wait after cancel = %+v", final)
	}
}

// TestWaitWithoutEvents: the row reaches a terminal status but no event is
// published (events are hints and can be lost). Wait notices on its own
// after StallTimeout.
func TestWaitWithoutEvents(t *testing.T) {
	t.Parallel()
	e := apitest.Start(t, apitest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := dial(t, e, e.WSURL(), client.Options{StallTimeout: 200 * time.Millisecond})
	id, err := c.Submit(ctx, client.Request{Type: "register", Circuit: "register_demo", Inputs: json.RawMessage(`{"a":"1"}`)}, nil)
	must(t, err)
	go work(t, e, family.Register, `{"a":"1"}`, false, nil)
	final, err := c.Wait(ctx, id, nil)
	must(t, err)
	if final.Status != status.ProofGenerated {
		t.Fatalf("Wait = %+v", final)
	}
}

// TestWaitAfterSocketLoss: the frontend closes every WebSocket while a
// client waits; the client carries on by polling over HTTP POST.
func TestWaitAfterSocketLoss(t *testing.T) {
	t.Parallel()
	e := apitest.Start(t, apitest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := dial(t, e, e.WSURL(), client.Options{PollInterval: 50 * time.Millisecond})
	id, err := c.Submit(ctx, client.Request{Type: "dsc", Circuit: "dsc_sha256_rsa_65537_4096", Inputs: json.RawMessage(`{"a":"1"}`)}, nil)
	must(t, err)
	var rec recorder
	waited := make(chan error, 1)
	go func() {
		st, err := c.Wait(ctx, id, rec.progress)
		if err == nil && st.Status != status.ProofGenerated {
			err = errors.New("not proven")
		}
		waited <- err
	}()
	time.Sleep(200 * time.Millisecond) // let Wait subscribe
	must(t, e.Server.CloseWebSockets(ctx))
	if _, err := e.Store.MarkProofGenerated(ctx, id, json.RawMessage(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("Wait after the socket closed: %v (progress %v)", err, rec.trail())
	}
	if c.WebSocket() {
		t.Fatal("the client still reports an open WebSocket")
	}
	// Later calls go over HTTP POST too.
	st, err := c.Status(ctx, id)
	if err != nil || st.Status != status.ProofGenerated {
		t.Fatalf("Status after the socket closed: %+v, %v", st, err)
	}
}

// TestConfidentialSpace: against a frontend answering with tokens, the
// client verifies the token with its TokenVerifier (with either key
// encoding), derives the key from eat_nonce[1] and submits; a client that
// can only verify Nitro documents, or that pins another root, stops before
// it encrypts anything.
func TestConfidentialSpace(t *testing.T) {
	t.Parallel()
	e := apitest.Start(t, apitest.Options{GCP: true})
	ctx := t.Context()
	for _, compressed := range []bool{false, true} {
		c := dial(t, e, e.WSURL(), client.Options{TokenVerifier: e.TokenVerifier, CompressedKey: compressed})
		var r recorder
		id, err := c.Submit(ctx, client.Request{Type: "dsc", Circuit: "dsc_sha256_rsa_65537_4096", Inputs: json.RawMessage(`{"a":"1"}`)}, r.progress)
		must(t, err)
		if got := r.trail(); !slices.Equal(got, []string{"hello", "attested", "submitted"}) {
			t.Fatalf("compressed=%v: trail %v", compressed, got)
		}
		work(t, e, family.DSC, `{"a":"1"}`, true, nil)
		if st, err := c.Wait(ctx, id, nil); err != nil || st.Status != status.ProofGenerated {
			t.Fatalf("compressed=%v: Wait = %+v, %v", compressed, st, err)
		}
	}

	nitroOnly := dial(t, e, e.WSURL(), client.Options{Verifier: e.Verifier})
	other, err := attest.NewDevGCP(attest.DevGCPConfig{Dir: t.TempDir()})
	must(t, err)
	wrongRoot, err := attest.NewTokenVerifier(attest.TokenVerifierConfig{Roots: []*x509.Certificate{other.RootCert()},
		AllowAnyImage: true, AllowDebug: true, MaxAge: time.Minute})
	must(t, err)
	for _, tc := range []struct {
		name string
		c    *client.Client
		want error
	}{
		{name: "no token verifier", c: nitroOnly, want: client.ErrAttestation},
		{name: "foreign root", c: dial(t, e, e.WSURL(), client.Options{TokenVerifier: wrongRoot}), want: attest.ErrUntrustedRoot},
	} {
		id := uuid.NewString()
		_, err := tc.c.Submit(ctx, client.Request{UUID: id, Type: "register", Circuit: "register_demo", Inputs: json.RawMessage(`{}`)}, nil)
		if !errors.Is(err, client.ErrAttestation) || !errors.Is(err, tc.want) {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if ok, err := e.Store.Exists(ctx, id); err != nil || ok {
			t.Fatalf("%s: request recorded after a rejected attestation (%v, %v)", tc.name, ok, err)
		}
	}
}

// Package apitest starts a whole frontend for tests: api/server on an
// httptest server, over an embedded NATS JetStream and a fresh Postgres
// database (internal/devstack/stacktest), with a development attester, a
// fake circuit folder, and two seams: the server key of the next session
// (to replay recorded handshakes) and a switch that makes enqueueing fail.
//
// Packages using it call stacktest.Main from TestMain.
package apitest

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/api/server"
	"github.com/openpassport/prover-fleet/internal/devstack"
	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/store"
)

// Circuits are the circuits of the fake circuit folder: the recorded
// vectors' and a demo circuit.
var Circuits = []string{
	"register_sha256_sha256_sha256_rsa_65537_4096",
	"dsc_sha256_rsa_65537_4096",
	"vc_and_disclose",
	"vc_and_disclose_id",
	"register_demo",
}

// FakeCircuits lays out a circuit and a zkey folder with empty files named
// as shared/circuitdir's layout (C++ and WebAssembly builds alternately):
// the frontend only checks presence.
func FakeCircuits(t testing.TB) (circuits, zkeys string) {
	t.Helper()
	l := circuitdir.Layout{CircuitDir: t.TempDir(), ZkeyDir: t.TempDir()}
	for i, name := range Circuits {
		path := l.Generator(name)
		if i%2 == 1 {
			path = l.Wasm(name)
		}
		must(t, os.MkdirAll(filepath.Dir(path), 0o755))
		must(t, os.WriteFile(path, nil, 0o755))
		must(t, os.WriteFile(l.Zkey(name), nil, 0o644))
	}
	return l.CircuitDir, l.ZkeyDir
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// KeySlot chooses the server key of the next session.
type KeySlot struct {
	mu   sync.Mutex
	next *ecdh.PrivateKey
}

// Set makes priv the next session's server key.
func (k *KeySlot) Set(priv *ecdh.PrivateKey) { k.mu.Lock(); k.next = priv; k.mu.Unlock() }

// Generate is the handshake's key generator: the key set last, else a
// random one.
func (k *KeySlot) Generate() (*ecdh.PrivateKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.next != nil {
		p := k.next
		k.next = nil
		return p, nil
	}
	return ecdh.P256().GenerateKey(rand.Reader)
}

// SwitchQueue is the real publisher, made to fail on demand: it stands in
// for a JetStream that refuses, or for a publish whose acknowledgement never
// comes and whose message is lost on the way (a frontend whose connection
// died with the message in its reconnect buffer), which the real one cannot
// be made to do for one call. (Tests of a real NATS outage stop Env.NATS.)
type SwitchQueue struct {
	Real server.Queue
	// Fail refuses publishes: the job is certainly not queued.
	Fail atomic.Bool
	// Lose drops publishes and answers as a timeout would: outcome unknown.
	Lose atomic.Bool
}

// ErrQueueDown is what a failing SwitchQueue returns.
var ErrQueueDown = fmt.Errorf("apitest: queue unavailable: %w", jobqueue.ErrNotQueued)

// ErrNoAnswer is what a losing SwitchQueue returns.
var ErrNoAnswer = errors.New("apitest: no acknowledgement: context deadline exceeded")

// Publish implements server.Queue.
func (q *SwitchQueue) Publish(ctx context.Context, env job.Envelope) error {
	switch {
	case q.Fail.Load():
		return ErrQueueDown
	case q.Lose.Load():
		return ErrNoAnswer
	}
	return q.Real.Publish(ctx, env)
}

// Republish implements server.Queue.
func (q *SwitchQueue) Republish(ctx context.Context, env job.Envelope, round int) error {
	switch {
	case q.Fail.Load():
		return ErrQueueDown
	case q.Lose.Load():
		return ErrNoAnswer
	}
	return q.Real.Republish(ctx, env, round)
}

// Queued implements server.Queue.
func (q *SwitchQueue) Queued(ctx context.Context, f family.Family, requestID string) (bool, error) {
	return q.Real.Queued(ctx, f, requestID)
}

// PanicAttester panics on demand, to prove no panic reaches a client.
type PanicAttester struct {
	attest.Attester
	Panic atomic.Bool
}

// Attest implements attest.Attester.
func (a *PanicAttester) Attest(ctx context.Context, r attest.Request) ([]byte, error) {
	if a.Panic.Load() {
		panic("apitest: attester exploded")
	}
	return a.Attester.Attest(ctx, r)
}

// Options adjust the frontend.
type Options struct {
	Families    []family.Family
	SessionTTL  time.Duration
	MaxSessions int
	// Queue edits the stream configuration before it is set up.
	Queue func(*jobqueue.Config)
	// GCP makes the attester a development Confidential Space one
	// (attest.DevGCP) instead of the Nitro-format attest.Dev; its tokens
	// verify with Env.TokenVerifier.
	GCP bool
	// Frontend edits the frontend's configuration before it starts. The
	// per-source limits (MaxSessionsPerSource, SessionShare,
	// MaxConnectionsPerSource, HelloRate) are off unless it sets them:
	// every test client has the same address.
	Frontend func(*server.Config)
	// Observer hears about calls, refusals and closed WebSockets.
	Observer server.Observer
}

// Env is one running frontend and its infrastructure.
type Env struct {
	Server *server.Server
	HTTP   *httptest.Server
	// NATS is the embedded server; stopping it makes a real outage.
	NATS     *devstack.NATS
	Store    *store.Store
	NC       *nats.Conn
	JS       jetstream.JetStream
	Events   *jobqueue.Events
	Sealer   *job.Sealer
	Verifier *attest.Verifier
	// TokenVerifier checks the tokens of Options.GCP's attester.
	TokenVerifier *attest.TokenVerifier
	Keys          *KeySlot
	Queue         *SwitchQueue
	Attester      *PanicAttester
	QueueCfg      jobqueue.Config
	Logs          *Buffer
}

// Buffer collects log output for assertions.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }

// String returns everything written so far.
func (s *Buffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Start runs a frontend until the test ends. Logs go to t.Log at debug
// level and to Env.Logs.
func Start(t *testing.T, o Options) *Env {
	t.Helper()
	ctx := context.Background()
	pool := stacktest.Postgres(t)
	natsSrv := stacktest.NATSServer(t)
	nc, err := nats.Connect(natsSrv.URL(), nats.Name(t.Name()), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond))
	must(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	must(t, err)
	qcfg := jobqueue.DefaultConfig()
	qcfg.Memory = true
	if o.Queue != nil {
		o.Queue(&qcfg)
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
	var attester attest.Attester = dev
	var tokens *attest.TokenVerifier
	if o.GCP {
		gcp, err := attest.NewDevGCP(attest.DevGCPConfig{Dir: t.TempDir()})
		must(t, err)
		tokens, err = attest.NewTokenVerifier(attest.TokenVerifierConfig{
			Roots: []*x509.Certificate{gcp.RootCert()}, AllowedImageDigests: []string{gcp.ImageDigest()},
			AllowDebug: true, MaxAge: time.Minute,
		})
		must(t, err)
		attester = gcp
	}
	sealer, err := job.NewSealer(job.NewKey())
	must(t, err)
	circuits, zkeys := FakeCircuits(t)
	e := &Env{
		NATS: natsSrv, Store: store.New(pool), NC: nc, JS: js, Events: jobqueue.NewEvents(nc),
		Sealer: sealer, Verifier: verifier, TokenVerifier: tokens, Keys: &KeySlot{}, Queue: &SwitchQueue{Real: pub},
		Attester: &PanicAttester{Attester: attester}, QueueCfg: qcfg, Logs: &Buffer{},
	}
	logger := slog.New(slog.NewJSONHandler(io.MultiWriter(e.Logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := server.Config{
		Families: o.Families, CircuitFolder: circuits, ZkeyFolder: zkeys,
		SessionTTL: o.SessionTTL, MaxSessions: o.MaxSessions,
		MaxSessionsPerSource: -1, SessionShare: -1, MaxConnectionsPerSource: -1, HelloRate: -1,
	}
	if o.Frontend != nil {
		o.Frontend(&cfg)
	}
	e.Server, err = server.New(server.Deps{
		Store: e.Store, Queue: e.Queue, Events: e.Events, Attester: e.Attester, Sealer: sealer,
		Logger: logger, GenerateKey: e.Keys.Generate, Observer: o.Observer,
	}, cfg)
	must(t, err)
	sweepCtx, stop := context.WithCancel(ctx)
	go e.Server.RunSessions(sweepCtx)
	e.HTTP = httptest.NewUnstartedServer(e.Server.Handler())
	e.HTTP.Listener = e.Server.Listener(e.HTTP.Listener)
	e.HTTP.Start()
	t.Cleanup(func() {
		stop()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = e.Server.CloseWebSockets(cctx)
		e.HTTP.Close()
	})
	return e
}

// WSURL is the frontend's WebSocket URL.
func (e *Env) WSURL() string { return "ws" + strings.TrimPrefix(e.HTTP.URL, "http") + "/" }

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// FetchJob takes the next job of a family off the stream, as a worker
// does (jobqueue.Taker), and acks it (which deletes it).
func (e *Env) FetchJob(t *testing.T, f family.Family) jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tk, err := jobqueue.NewTaker(e.JS, jobqueue.TakerConfig{Stream: e.QueueCfg.Stream, Family: f, Wait: 5 * time.Second})
	must(t, err)
	must(t, tk.Start(ctx))
	defer tk.Stop()
	batch, err := tk.Fetch(1)
	must(t, err)
	for m := range batch.Messages() {
		must(t, m.Ack())
		return m
	}
	t.Fatalf("no job of the %s family: %v", f, batch.Error())
	return nil
}

// StreamCount is the number of jobs waiting on the stream.
func (e *Env) StreamCount(t *testing.T) uint64 {
	t.Helper()
	s, err := e.JS.Stream(context.Background(), e.QueueCfg.Stream)
	must(t, err)
	info, err := s.Info(context.Background())
	must(t, err)
	return info.State.Msgs
}

// StartLauncher stands in for the Confidential Space launcher, which cannot
// run here: an HTTP server on a unix socket answering POST /v1/token as the
// launcher's teeserver does (a JSON TokenOptions body, unknown fields
// refused, audience and token_type required) with a token of dev over the
// nonces it was sent. It returns the socket's path; the server stops when
// the test ends.
func StartLauncher(t *testing.T, dev *attest.DevGCP) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "launcher") // unix socket paths are short
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "teeserver.sock")
	ln, err := net.Listen("unix", socket)
	must(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/token", func(w http.ResponseWriter, r *http.Request) {
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		var req struct {
			Audience  string   `json:"audience"`
			TokenType string   `json:"token_type"`
			Nonces    []string `json:"nonces"`
		}
		if err := dec.Decode(&req); err != nil || req.Audience == "" || req.TokenType != attest.TokenTypePKI {
			http.Error(w, fmt.Sprintf("bad token request: %v %+v", err, req), http.StatusBadRequest)
			return
		}
		// The nonces are GCPNonces of a Request; rebuild it for dev.
		var fields [][]byte
		for _, n := range req.Nonces {
			b, err := base64.StdEncoding.DecodeString(n)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fields = append(fields, b)
		}
		var ar attest.Request
		for i, f := range fields {
			switch i {
			case 0:
				ar.UserData = f
			case 1:
				ar.PublicKey = f
			case 2:
				ar.Nonce = f
			}
		}
		tok, err := dev.Attest(r.Context(), ar)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(tok)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return socket
}

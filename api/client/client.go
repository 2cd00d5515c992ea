// Package client talks to the frontend the way the phone app does, for
// tests, the demo and `proverctl submit`: it opens a WebSocket (or uses
// HTTP POST), says hello with a fresh P-256 key, verifies the attestation
// in whichever format the server answers — a Nitro document (user_data is
// our key, freshness, chain, PCR0) or a Confidential Space token
// (eat_nonce[0] is our key, chain, times, debug status, image digest) —
// derives the AES-256-GCM key from the server key it binds, encrypts the
// request and submits it, then follows the request by subscription,
// falling back to polling.
//
//	c, err := client.Dial(ctx, "ws://localhost:8888/", client.Options{Verifier: verifier})
//	defer c.Close()
//	id, err := c.Submit(ctx, client.Request{Type: "register", Circuit: "register_demo", Inputs: inputs}, progress)
//	final, err := c.Wait(ctx, id, progress)
//
// Errors from the server are *Error, carrying the JSON-RPC code and
// message; an attestation that does not verify, or that comes in a format
// no verifier was given for, is ErrAttestation.
package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/sourcegraph/jsonrpc2"

	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/status"
)

// Verifier checks a Nitro attestation document (*attest.Verifier).
type Verifier interface {
	Verify(doc, wantUserData []byte) (*attest.Document, error)
}

// TokenVerifier checks a Confidential Space token (*attest.TokenVerifier).
type TokenVerifier interface {
	Verify(token, clientKey []byte) (*attest.Token, error)
}

// Options configure a Client.
type Options struct {
	// Verifier checks a hello's Nitro document and TokenVerifier its
	// Confidential Space token; the format the server answers in picks the
	// one used. Submit refuses to run without either (the attestation is
	// what vouches for the server's key), and refuses an attestation in a
	// format whose verifier is nil.
	Verifier      Verifier
	TokenVerifier TokenVerifier
	// CompressedKey sends the client key as 33 bytes (newer app builds)
	// instead of 65.
	CompressedKey bool
	// HTTPClient is used in HTTP mode (default http.DefaultClient).
	HTTPClient *http.Client
	// PollInterval is the polling period of Wait without a subscription
	// (default 1 s).
	PollInterval time.Duration
	// StallTimeout is how long Wait waits on a subscription without news
	// before it checks the status itself (default 30 s): status events are
	// hints and can be lost.
	StallTimeout time.Duration
	// Logger receives the JSON-RPC connection's own diagnostics (default
	// discarded).
	Logger *slog.Logger
}

// Error is an error answer from the server.
type Error struct {
	Code    int64
	Message string
	Data    string // the error's data when it is a JSON string, else its JSON
}

func (e *Error) Error() string {
	if e.Data != "" {
		return fmt.Sprintf("server error %d: %s (%s)", e.Code, e.Message, e.Data)
	}
	return fmt.Sprintf("server error %d: %s", e.Code, e.Message)
}

func fromRPC(err error) error {
	var re *jsonrpc2.Error
	if !errors.As(err, &re) {
		return err
	}
	e := &Error{Code: re.Code, Message: re.Message}
	if re.Data != nil {
		var s string
		if json.Unmarshal(*re.Data, &s) == nil {
			e.Data = s
		} else {
			e.Data = string(*re.Data)
		}
	}
	return e
}

// IsCode reports whether err is a server error with this code.
func IsCode(err error, code int64) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

var (
	// ErrAttestation: the hello's attestation document did not verify.
	ErrAttestation = errors.New("client: attestation document rejected")
	// ErrNoSubscription: subscriptions need a WebSocket.
	ErrNoSubscription = errors.New("client: subscriptions need a WebSocket connection")
	// ErrClosed: the connection closed.
	ErrClosed = errors.New("client: connection closed")
)

// Client is a connection to one frontend. Safe for concurrent use.
type Client struct {
	opts Options

	// WebSocket mode.
	conn *wsConn
	subs *listeners

	// HTTP mode, and the WebSocket's fallback once it has closed: the
	// frontend serves POST on the WebSocket's path.
	endpoint string
	seq      atomic.Uint64
}

// Dial connects to a frontend: ws:// or wss:// opens a WebSocket,
// http:// or https:// uses one POST per call (no subscriptions). Once a
// WebSocket has closed, calls go over HTTP POST to the same host and path.
func Dial(ctx context.Context, rawURL string, opts Options) (*Client, error) {
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 30 * time.Second
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c := &Client{opts: opts}
	switch u.Scheme {
	case "http", "https":
		c.endpoint = u.String()
		return c, nil
	case "ws", "wss":
		h := *u
		h.Scheme = strings.Replace(u.Scheme, "ws", "http", 1)
		c.endpoint = h.String()
	default:
		return nil, fmt.Errorf("client: URL scheme %q: want ws, wss, http or https", u.Scheme)
	}
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, u.String(), nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", u.Redacted(), err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c.subs = &listeners{m: make(map[string][]chan protocol.Status)}
	c.conn = newWSConn(ws, c.subs.notify, logger)
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	if err := c.conn.Close(); err != nil && !errors.Is(err, jsonrpc2.ErrClosed) {
		return err
	}
	return nil
}

// WebSocket reports whether the client holds an open WebSocket.
func (c *Client) WebSocket() bool {
	if c.conn == nil {
		return false
	}
	select {
	case <-c.conn.DisconnectNotify():
		return false
	default:
		return true
	}
}

// call runs one method over the WebSocket, or over HTTP POST when there
// is none (any more).
func (c *Client) call(ctx context.Context, method string, params, result any) error {
	if c.WebSocket() {
		return c.wsCall(ctx, method, params, result)
	}
	return c.post(ctx, method, params, result)
}

// wsCall runs one method over the WebSocket only.
func (c *Client) wsCall(ctx context.Context, method string, params, result any) error {
	err := c.conn.Call(ctx, method, params, result)
	if errors.Is(err, jsonrpc2.ErrClosed) {
		return fmt.Errorf("%w: %s", ErrClosed, method)
	}
	return fromRPC(err)
}

func (c *Client) post(ctx context.Context, method string, params, result any) error {
	body, err := encodeRequest(c.seq.Add(1), method, params)
	if err != nil {
		return fmt.Errorf("client: %s params: %w", method, err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("client: %s: %w", method, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := c.opts.HTTPClient.Do(hreq)
	if err != nil {
		return fmt.Errorf("client: %s: %w", method, err)
	}
	defer hresp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hresp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("client: %s: read answer: %w", method, err)
	}
	resp, err := parseMessage(data)
	if err != nil || (resp.Error == nil && resp.Result == nil) {
		return fmt.Errorf("client: %s: HTTP %d, not a JSON-RPC answer: %.200s", method, hresp.StatusCode, data)
	}
	if resp.Error != nil {
		return fromRPC(resp.Error)
	}
	if result == nil || isNull(resp.Result) {
		return nil
	}
	if err := decodeResult(resp.Result, result); err != nil {
		return fmt.Errorf("client: %s result: %w", method, err)
	}
	return nil
}

// Health calls openpassport_health.
func (c *Client) Health(ctx context.Context) error {
	var s string
	if err := c.call(ctx, protocol.MethodHealth, nil, &s); err != nil {
		return err
	}
	if s != protocol.HealthOK {
		return fmt.Errorf("client: health answered %q", s)
	}
	return nil
}

// Hello calls openpassport_hello with a client key and uuid as given.
func (c *Client) Hello(ctx context.Context, id string, clientKey []byte) (protocol.HelloResult, error) {
	var res protocol.HelloResult
	err := c.call(ctx, protocol.MethodHello, protocol.HelloParams{UserPubkey: clientKey, UUID: id}, &res)
	return res, err
}

// SubmitEncrypted calls openpassport_submit_request with an encrypted
// request and returns the uuid the server answers.
func (c *Client) SubmitEncrypted(ctx context.Context, p protocol.SubmitParams) (string, error) {
	var id string
	err := c.call(ctx, protocol.MethodSubmit, p, &id)
	return id, err
}

// Attestation calls openpassport_attestation.
func (c *Client) Attestation(ctx context.Context, p protocol.AttestationParams) ([]byte, error) {
	var doc protocol.Bytes
	err := c.call(ctx, protocol.MethodAttestation, p, &doc)
	return doc, err
}

// Status calls openpassport_status.
func (c *Client) Status(ctx context.Context, id string) (protocol.Status, error) {
	var st protocol.Status
	err := c.call(ctx, protocol.MethodStatus, protocol.UUIDParams{UUID: id}, &st)
	return st, err
}

// Cancel calls openpassport_cancel with the request's cancel token (a
// Receipt's CancelToken: only the submitter has it). A token that is not
// the submitter's is refused: an *Error with code
// protocol.CodeNotSubmitter.
func (c *Client) Cancel(ctx context.Context, id string, token []byte) (protocol.CancelResult, error) {
	var res protocol.CancelResult
	err := c.call(ctx, protocol.MethodCancel, protocol.CancelParams{UUID: id, CancelToken: token}, &res)
	return res, err
}

// Request is a proof request as the app builds it.
type Request struct {
	Type            family.ProofType
	Circuit         string
	Inputs          json.RawMessage // the circuit's input object
	Onchain         bool
	EndpointType    string
	Endpoint        string
	UserDefinedData string
	SelfDefinedData string
	Version         int // 0 means 1
	// UUID is the request id; empty means a random one.
	UUID string
}

// payload is the app's decrypted request (PROTOCOL.md).
type payload struct {
	Type            string  `json:"type"`
	Onchain         bool    `json:"onchain"`
	EndpointType    string  `json:"endpointType,omitempty"`
	Endpoint        string  `json:"endpoint,omitempty"`
	UserDefinedData string  `json:"userDefinedData"`
	SelfDefinedData string  `json:"selfDefinedData"`
	Version         int     `json:"version"`
	Circuit         circuit `json:"circuit"`
}

type circuit struct {
	Name   string `json:"name"`
	Inputs string `json:"inputs"`
}

// Stage names a step of Submit and Wait, for progress displays.
type Stage string

// Stages, in order.
const (
	StageHello     Stage = "hello"     // hello answered
	StageAttested  Stage = "attested"  // attestation verified
	StageSubmitted Stage = "submitted" // request recorded and queued
	StageStatus    Stage = "status"    // a status was seen (Status is set)
)

// Event is one progress step. Status is set for StageStatus.
type Event struct {
	Stage  Stage
	UUID   string
	Status protocol.Status
	At     time.Time
}

// Progress receives events; it may be nil.
type Progress func(Event)

func (p Progress) emit(stage Stage, id string, st protocol.Status) {
	if p != nil {
		p(Event{Stage: stage, UUID: id, Status: st, At: time.Now()})
	}
}

// Submit runs the app's whole handshake: a fresh P-256 key, hello,
// attestation check (user_data must be our key as sent), ECDH with the
// document's public_key, AES-256-GCM encryption of the request, submit. It
// returns the uuid once the server has recorded and queued the request.
// SubmitReceipt returns the cancel token too.
func (c *Client) Submit(ctx context.Context, r Request, progress Progress) (string, error) {
	rc, err := c.SubmitReceipt(ctx, r, progress)
	clear(rc.CancelToken)
	return rc.UUID, err
}

// Receipt is what a submit leaves its client: the request's uuid and its
// cancel token, which only the two ends of the session can derive
// (handshake.CancelToken); keep it to cancel the request later (Cancel,
// proverctl cancel --token). The server keeps only its hash.
type Receipt struct {
	UUID        string
	CancelToken []byte
}

// SubmitReceipt is Submit, returning the request's cancel token with its
// uuid.
func (c *Client) SubmitReceipt(ctx context.Context, r Request, progress Progress) (Receipt, error) {
	id, token, err := c.submit(ctx, r, progress)
	return Receipt{UUID: id, CancelToken: token}, err
}

func (c *Client) submit(ctx context.Context, r Request, progress Progress) (string, []byte, error) {
	if c.opts.Verifier == nil && c.opts.TokenVerifier == nil {
		return "", nil, errors.New("client: Options.Verifier or Options.TokenVerifier is required to submit")
	}
	if !json.Valid(r.Inputs) {
		return "", nil, errors.New("client: Request.Inputs is not JSON")
	}
	id := r.UUID
	if id == "" {
		id = uuid.NewString()
	}
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, fmt.Errorf("client: key: %w", err)
	}
	pub := priv.PublicKey().Bytes()
	if c.opts.CompressedKey {
		pub = compress(pub)
	}
	hello, err := c.Hello(ctx, id, pub)
	if err != nil {
		return "", nil, err
	}
	progress.emit(StageHello, hello.UUID, protocol.Status{})
	serverKey, err := c.verifyAttestation(hello.Attestation, pub)
	if err != nil {
		return "", nil, err
	}
	progress.emit(StageAttested, hello.UUID, protocol.Status{})
	key, err := handshake.SharedKey(priv, serverKey)
	if err != nil {
		return "", nil, err
	}
	defer clear(key)
	token, err := handshake.CancelToken(key, hello.UUID)
	if err != nil {
		return "", nil, err
	}
	version := r.Version
	if version == 0 {
		version = 1
	}
	plain, err := json.Marshal(payload{
		Type:            string(r.Type),
		Onchain:         r.Onchain,
		EndpointType:    r.EndpointType,
		Endpoint:        r.Endpoint,
		UserDefinedData: r.UserDefinedData,
		SelfDefinedData: r.SelfDefinedData,
		Version:         version,
		Circuit:         circuit{Name: r.Circuit, Inputs: string(r.Inputs)},
	})
	if err != nil {
		return "", nil, fmt.Errorf("client: encode request: %w", err)
	}
	nonce, ct, tag, err := handshake.Encrypt(key, plain)
	clear(plain)
	if err != nil {
		return "", nil, err
	}
	got, err := c.SubmitEncrypted(ctx, protocol.SubmitParams{UUID: hello.UUID, Nonce: nonce, CipherText: ct, AuthTag: tag})
	if err != nil {
		return "", nil, err
	}
	if got != hello.UUID {
		return "", nil, fmt.Errorf("client: server answered uuid %q for %q", got, hello.UUID)
	}
	progress.emit(StageSubmitted, got, protocol.Status{})
	return got, token, nil
}

// verifyAttestation checks a hello's attestation with the verifier of its
// format and returns the server key it binds.
func (c *Client) verifyAttestation(att, pub []byte) (*ecdh.PublicKey, error) {
	format, err := attest.DetectFormat(att)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAttestation, err)
	}
	var raw []byte
	switch {
	case format == attest.FormatNitro && c.opts.Verifier != nil:
		doc, err := c.opts.Verifier.Verify(att, pub)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAttestation, err)
		}
		raw = doc.PublicKey
	case format == attest.FormatGCP && c.opts.TokenVerifier != nil:
		tok, err := c.opts.TokenVerifier.Verify(att, pub)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAttestation, err)
		}
		raw = tok.ServerKey
	default:
		return nil, fmt.Errorf("%w: the server answered in the %s format, which this client was not set up to verify", ErrAttestation, format)
	}
	key, err := handshake.ParseClientKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: the attested server key: %w", ErrAttestation, err)
	}
	return key, nil
}

// compress turns a 65-byte uncompressed P-256 key into its 33-byte form.
func compress(pub []byte) []byte {
	out := make([]byte, 33)
	out[0] = 2 | pub[64]&1
	copy(out[1:], pub[1:33])
	return out
}

// Subscribe calls openpassport_subscribe and passes fn the current status
// and then every change, until a terminal status (it returns nil), ctx is
// done or the connection closes (ErrClosed). It needs a WebSocket.
func (c *Client) Subscribe(ctx context.Context, id string, fn func(protocol.Status)) error {
	_, err := c.follow(ctx, id, fn, 0)
	return err
}

// follow subscribes to id. With stall > 0, a subscription without news
// for that long is checked with openpassport_status, since status events
// are hints that can be lost.
func (c *Client) follow(ctx context.Context, id string, fn func(protocol.Status), stall time.Duration) (protocol.Status, error) {
	if c.conn == nil {
		return protocol.Status{}, ErrNoSubscription
	}
	norm, err := uuid.Parse(id)
	if err != nil {
		return protocol.Status{}, fmt.Errorf("client: %q is not a UUID", id)
	}
	// Listen before subscribing: the first update may follow the answer
	// immediately.
	ch := c.subs.add(norm.String())
	defer c.subs.remove(norm.String(), ch)
	var cur protocol.Status
	if err := c.wsCall(ctx, protocol.MethodSubscribe, protocol.UUIDParams{UUID: id}, &cur); err != nil {
		return protocol.Status{}, err
	}
	fn(cur)
	for !cur.Terminal() {
		var timer <-chan time.Time
		if stall > 0 {
			timer = time.After(stall)
		}
		var st protocol.Status
		select {
		case <-ctx.Done():
			return cur, ctx.Err()
		case <-c.conn.DisconnectNotify():
			return cur, ErrClosed
		case st = <-ch:
		case <-timer:
			if st, err = c.Status(ctx, id); err != nil {
				return cur, err
			}
		}
		if st.Status != cur.Status {
			cur = st
			fn(st)
		}
	}
	return cur, nil
}

// Wait follows a request until its status is terminal and returns that
// status. On a WebSocket it subscribes (checking the status itself after
// StallTimeout without news); without one, or when the connection drops or
// the server refuses the subscription, it polls openpassport_status every
// PollInterval. progress sees every status.
func (c *Client) Wait(ctx context.Context, id string, progress Progress) (protocol.Status, error) {
	last := status.Code(-1)
	see := func(st protocol.Status) {
		if st.Status != last {
			last = st.Status
			progress.emit(StageStatus, st.UUID, st)
		}
	}
	if c.WebSocket() {
		st, err := c.follow(ctx, id, see, c.opts.StallTimeout)
		var se *Error
		switch {
		case err == nil:
			return st, nil
		case ctx.Err() != nil:
			return st, ctx.Err()
		case errors.As(err, &se) && se.Code != protocol.CodeServerBusy && se.Code != protocol.CodeInternalError:
			return st, err // e.g. UUID not found: polling would not help
		case se == nil && !errors.Is(err, ErrClosed):
			return st, err
		}
		// The socket closed (calls now go over HTTP POST) or the server
		// refused the subscription: poll.
	}
	t := time.NewTicker(c.opts.PollInterval)
	defer t.Stop()
	for {
		st, err := c.Status(ctx, id)
		if err != nil {
			return st, err
		}
		see(st)
		if st.Terminal() {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-t.C:
		}
	}
}

// listeners routes status notifications to the subscriptions waiting for
// them.
type listeners struct {
	mu sync.Mutex
	m  map[string][]chan protocol.Status
}

func (l *listeners) add(id string) chan protocol.Status {
	ch := make(chan protocol.Status, 16)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[id] = append(l.m[id], ch)
	return ch
}

func (l *listeners) remove(id string, ch chan protocol.Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	list := l.m[id]
	for i, c := range list {
		if c == ch {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(l.m, id)
	} else {
		l.m[id] = list
	}
}

// notify takes the server's notifications. It runs on the connection's
// read loop, so it never blocks (a full listener misses an update and
// catches up through Wait's stall check).
func (l *listeners) notify(method string, params json.RawMessage) {
	if method != protocol.NotifyStatusUpdate || isNull(params) {
		return
	}
	var st protocol.Status
	if json.Unmarshal(params, &st) != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ch := range l.m[strings.ToLower(st.UUID)] {
		select {
		case ch <- st:
		default:
		}
	}
}
